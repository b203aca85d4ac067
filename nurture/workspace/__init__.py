"""Files marketers write, as typed models, and the whole workspace loaded at once.

:func:`load_workspace` loads every file of a workspace in one order and cross-checks them
(see :mod:`nurture.workspace.loading`); it raises one
:class:`~nurture.errors.WorkspaceValidationError` listing every problem with its file, line,
column and field. Each kind of file also has its own loader (``load_questionnaire``,
``load_content_library``...). Every YAML file goes through one safe, bounded, line-aware reader
(:mod:`nurture.marketer_files.located_yaml`) and one skeleton that validates it into its pydantic
model (:mod:`nurture.marketer_files.model_files`).
"""

from nurture.workspace.brand import BRAND_FILE, Brand, BrandColours, load_brand, read_brand
from nurture.workspace.config import (
    WORKSPACE_FILE,
    WorkspaceConfig,
    load_workspace_config,
    read_workspace_config,
)
from nurture.workspace.library import (
    SCHEDULED_KINDS,
    ContentItemSpec,
    ContentKind,
    ContentSyncSummary,
    load_content_item,
    load_content_library,
    read_content_library,
    sync_content_items,
)
from nurture.workspace.loading import (
    Workspace,
    WorkspacePaths,
    check_journey_files,
    load_workspace,
)
from nurture.workspace.questionnaire import (
    AnswerValue,
    Question,
    QuestionKind,
    Questionnaire,
    QuestionOption,
    load_questionnaire,
    read_questionnaire,
)
from nurture.workspace.templates import (
    SubjectSample,
    journey_subjects,
    transactional_templates,
    validate_templates,
)

__all__ = [
    "BRAND_FILE",
    "SCHEDULED_KINDS",
    "WORKSPACE_FILE",
    "AnswerValue",
    "Brand",
    "BrandColours",
    "ContentItemSpec",
    "ContentKind",
    "ContentSyncSummary",
    "Question",
    "QuestionKind",
    "QuestionOption",
    "Questionnaire",
    "SubjectSample",
    "Workspace",
    "WorkspaceConfig",
    "WorkspacePaths",
    "check_journey_files",
    "journey_subjects",
    "load_brand",
    "load_content_item",
    "load_content_library",
    "load_questionnaire",
    "load_workspace",
    "load_workspace_config",
    "read_brand",
    "read_content_library",
    "read_questionnaire",
    "read_workspace_config",
    "sync_content_items",
    "transactional_templates",
    "validate_templates",
]
