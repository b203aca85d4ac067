"""Every error nurture raises on purpose.

The tree::

    NurtureError
    ├── ConfigurationError (ValueError)        a setting is missing or wrong
    │   └── WorkspaceNotFoundError             ... the workspace folder is not there
    ├── DatabaseError (RuntimeError)           the database cannot be reached, logged into or
    │                                          migrated
    ├── WorkspaceFileError (ValueError)        a file a marketer writes is invalid
    │   ├── WorkspaceValidationError           ... any files of a workspace, checked together
    │   ├── ContentValidationError             a content item (Markdown + front matter)
    │   ├── QuestionnaireValidationError       the questionnaire definition
    │   ├── JourneyValidationError             a journey YAML file
    │   ├── SegmentRuleValidationError         the rule segments (segments.yaml)
    │   └── RankingFileValidationError         the ranking weights (ranking.yaml)
    ├── TemplateError (ValueError)             an email template fails to load or render
    ├── ImportRecordError (ValueError)         a row of an import file is refused
    │   └── ImportFileError                    ... or the whole file cannot be read
    ├── EvaluationDataError (ValueError)       the data to evaluate on is missing or invalid
    ├── InvalidUnsubscribeTokenError (ValueError)  a tampered, malformed or stale unsubscribe link
    ├── MemberNotFoundError (LookupError)      no member has the address asked for
    ├── BackfillRefusedError (RuntimeError)    a run would email too much of the community at once
    ├── EmbeddingError (RuntimeError)          the embedding model cannot load or run
    └── DeliveryError (RuntimeError)           a mail backend refused or failed
        └── PermanentDeliveryError             ... and retrying will not help

Messages name the thing (file, line, record), what was expected and what was found.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "BackfillRefusedError",
    "ConfigurationError",
    "ContentValidationError",
    "DatabaseError",
    "DeliveryError",
    "EmbeddingError",
    "EvaluationDataError",
    "ImportFileError",
    "ImportRecordError",
    "InvalidUnsubscribeTokenError",
    "JourneyValidationError",
    "MemberNotFoundError",
    "NurtureError",
    "PermanentDeliveryError",
    "Problem",
    "QuestionnaireValidationError",
    "RankingFileValidationError",
    "SegmentRuleValidationError",
    "TemplateError",
    "WorkspaceFileError",
    "WorkspaceNotFoundError",
    "WorkspaceValidationError",
]


class NurtureError(Exception):
    """Root of every error nurture raises on purpose."""


class ConfigurationError(NurtureError, ValueError):
    """A setting is missing or has an invalid value."""


class WorkspaceNotFoundError(ConfigurationError):
    """The workspace folder does not exist, or holds none of a workspace's files."""


class DatabaseError(NurtureError, RuntimeError):
    """The database cannot be reached, refuses the login, or its schema cannot be brought up.

    The message names the database (never its password) and what to do.
    """


@dataclass(frozen=True)
class Problem:
    """One problem found in a file: where it is and what is wrong.

    Attributes:
        path: The file the problem is in.
        line: 1-based line number, when known.
        column: 1-based column number, when known.
        field: Dotted path of the field at fault (``steps.2.template``), when known.
        message: What was expected and what was found.
    """

    path: Path | str
    message: str
    line: int | None = None
    column: int | None = None
    field: str | None = None

    def __str__(self) -> str:
        where = str(self.path)
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        field = f" [{self.field}]" if self.field else ""
        return f"{where}{field}: {self.message}"


class WorkspaceFileError(NurtureError, ValueError):
    """One or more files a marketer wrote are invalid; ``problems`` lists each one."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))


class WorkspaceValidationError(WorkspaceFileError):
    """Files of a workspace are invalid: every problem of every file, checked together.

    Raised by ``nurture.workspace.load_workspace``, which loads every marketer file before
    raising, so that one run lists everything to fix.
    """


class ContentValidationError(WorkspaceFileError):
    """A content item (Markdown with front matter) is invalid."""


class QuestionnaireValidationError(WorkspaceFileError):
    """The questionnaire definition is invalid."""


class JourneyValidationError(WorkspaceFileError):
    """A journey definition is invalid."""


class SegmentRuleValidationError(WorkspaceFileError):
    """The rule segments file (``segments.yaml``) is invalid, or a rule of it does not compile."""


class RankingFileValidationError(WorkspaceFileError):
    """The ranking weights file (``ranking.yaml``) is invalid."""


class TemplateError(NurtureError, ValueError):
    """An email template cannot be loaded or rendered; the message names template and line."""


class ImportRecordError(NurtureError, ValueError):
    """A record of an import file is refused.

    Attributes:
        line: 1-based line number of the record in its file.
        field: The field at fault, when known.
        reason: Why the record was refused.
    """

    def __init__(self, reason: str, *, line: int | None = None, field: str | None = None) -> None:
        self.line = line
        self.field = field
        self.reason = reason
        where = f"line {line}" if line is not None else "record"
        what = f" field {field!r}" if field else ""
        super().__init__(f"{where}{what}: {reason}")


class ImportFileError(ImportRecordError):
    """An import file cannot be read at all, so none of its records is stored.

    Raised for an unknown suffix, a file that is not UTF-8, an empty CSV file and a CSV header
    that is unusable (a required column missing, an unknown, duplicate or unnamed column). The
    message starts with the file and, when known, the line.

    Attributes:
        path: The file.
        line: 1-based line of the problem, when known.
        reason: What is wrong, without the file and line.
    """

    def __init__(self, path: Path | str, reason: str, *, line: int | None = None) -> None:
        super().__init__(reason, line=line)
        self.path = Path(path)
        where = f"{path}, line {line}" if line is not None else str(path)
        self.args = (f"{where}: {reason}",)


class EvaluationDataError(NurtureError, ValueError):
    """The data to evaluate on is missing or invalid; ``problems`` lists each one with its place.

    Attributes:
        problems: Every problem found (file, line and field when known).
    """

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))


class InvalidUnsubscribeTokenError(NurtureError, ValueError):
    """An unsubscribe token is malformed, was tampered with, or is too old."""


class MemberNotFoundError(NurtureError, LookupError):
    """No member has the e-mail address asked for (export, erasure...)."""


class BackfillRefusedError(NurtureError, RuntimeError):
    """A run would start emailing more of the community at once than the backfill limit allows.

    Nothing of the run's journeys is kept: no member enrolled, no email queued.
    """


class EmbeddingError(NurtureError, RuntimeError):
    """The embedding model cannot be loaded or fails to encode."""


class DeliveryError(NurtureError, RuntimeError):
    """A mail backend failed to deliver a message; a retry may succeed.

    Args:
        message: What went wrong, with the provider's reason (never the member's address).
        retry_after: Seconds the provider asked to wait before the next try (a 429's rate-limit
            reset), when it said.
        ambiguous: The request was sent but no answer came back (a read timeout, a dropped
            connection): the provider may have accepted the message.
    """

    def __init__(
        self, message: str, *, retry_after: float | None = None, ambiguous: bool = False
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.ambiguous = ambiguous


class PermanentDeliveryError(DeliveryError):
    """A mail backend refused a message for good (for example an invalid address)."""
