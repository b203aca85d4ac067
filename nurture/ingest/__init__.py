"""Import members, questionnaire answers and activity events from CSV or JSON Lines files.

Files are streamed and committed in batches; every record is validated, and each refused record
goes to a rejects CSV (line, field, reason, raw) while valid ones are stored. Re-importing a file
adds nothing: members and answers are upserted, events deduplicated by idempotency key. The
formats are documented in ``docs/imports.md``, which a test checks against the constants here.
"""

from nurture.ingest.activity import (
    ACTIVITY_COLUMNS,
    ACTIVITY_REQUIRED_COLUMNS,
    ACTIVITY_TYPES,
    derive_idempotency_key,
    import_activity,
)
from nurture.ingest.answers import (
    ANSWER_COLUMNS,
    ANSWER_REQUIRED_COLUMNS,
    AnswerValidator,
    import_answers,
)
from nurture.ingest.batches import DEFAULT_BATCH_SIZE, ImportSummary
from nurture.ingest.members import (
    CONSENT_STATUSES,
    MEMBER_COLUMNS,
    MEMBER_REQUIRED_COLUMNS,
    import_members,
)
from nurture.ingest.readers import MAX_RECORD_LINES, SUFFIXES, ImportFileError
from nurture.ingest.rejects import REJECTS_COLUMNS

__all__ = [
    "ACTIVITY_COLUMNS",
    "ACTIVITY_REQUIRED_COLUMNS",
    "ACTIVITY_TYPES",
    "ANSWER_COLUMNS",
    "ANSWER_REQUIRED_COLUMNS",
    "CONSENT_STATUSES",
    "DEFAULT_BATCH_SIZE",
    "MAX_RECORD_LINES",
    "MEMBER_COLUMNS",
    "MEMBER_REQUIRED_COLUMNS",
    "REJECTS_COLUMNS",
    "SUFFIXES",
    "AnswerValidator",
    "ImportFileError",
    "ImportSummary",
    "derive_idempotency_key",
    "import_activity",
    "import_answers",
    "import_members",
]
