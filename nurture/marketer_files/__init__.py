"""How every file a marketer writes is read: bounded, line-aware YAML and typed models.

The lowest layer of the workspace's files: :mod:`~nurture.marketer_files.located_yaml` reads
YAML under size, depth and alias limits, remembering where every value was written;
:mod:`~nurture.marketer_files.model_files` validates a document against a pydantic model and
turns every error into a ``file:line:col`` problem; :mod:`~nurture.marketer_files.localized`
holds the texts written once per workspace language. The packages that own a file's meaning
(journeys, segmentation, workspace) build on these; ``nurture.workspace.load_workspace`` reads
them all.
"""

from nurture.marketer_files.localized import (
    LANGUAGES_CONTEXT,
    LanguageCode,
    LocalizedText,
    context_languages,
)
from nurture.marketer_files.located_yaml import (
    DEFAULT_YAML_LIMITS,
    MAX_ALIAS_NODES,
    MAX_FILE_BYTES,
    MAX_NESTING_DEPTH,
    YamlLimits,
    parse_located_yaml,
)
from nurture.marketer_files.model_files import ModelFile, load_model_file

__all__ = [
    "DEFAULT_YAML_LIMITS",
    "LANGUAGES_CONTEXT",
    "MAX_ALIAS_NODES",
    "MAX_FILE_BYTES",
    "MAX_NESTING_DEPTH",
    "LanguageCode",
    "LocalizedText",
    "ModelFile",
    "YamlLimits",
    "context_languages",
    "load_model_file",
    "parse_located_yaml",
]
