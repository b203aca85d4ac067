"""Files marketers write, as typed models: the questionnaire and the content library.

Each kind of file has one loader that checks it completely and raises one error listing every
problem with its file, line and field (:class:`~nurture.errors.QuestionnaireValidationError`,
:class:`~nurture.errors.ContentValidationError`).
"""

from nurture.workspace.content import (
    SCHEDULED_KINDS,
    ContentItemSpec,
    ContentKind,
    ContentSyncSummary,
    load_content_item,
    load_content_library,
    sync_content_items,
)
from nurture.workspace.questionnaire import (
    AnswerValue,
    LocalizedText,
    Question,
    QuestionKind,
    Questionnaire,
    QuestionOption,
    load_questionnaire,
)

__all__ = [
    "SCHEDULED_KINDS",
    "AnswerValue",
    "ContentItemSpec",
    "ContentKind",
    "ContentSyncSummary",
    "LocalizedText",
    "Question",
    "QuestionKind",
    "QuestionOption",
    "Questionnaire",
    "load_content_item",
    "load_content_library",
    "load_questionnaire",
    "sync_content_items",
]
