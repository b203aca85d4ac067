"""Import members, questionnaire answers and activity events from CSV or JSON Lines files.

Files are streamed and committed in batches; every record is validated, and each refused record
goes to a rejects CSV (line, field, reason, raw) while valid ones are stored. Re-importing a file
adds nothing: members and answers are upserted, events deduplicated by idempotency key. CSV files
may be ``;``-separated and Windows-1252, as spreadsheets save them (detected, or given). The
formats are documented in ``docs/imports.md``, which a test checks against the constants here.

Every text that enters nurture follows one rule, :func:`clean_text` (and
:func:`check_json_value` for JSON values): the HTTP API applies the same functions.
"""

from nurture.ingest.activity import (
    ACTIVITY_COLUMNS,
    ACTIVITY_REQUIRED_COLUMNS,
    ACTIVITY_TYPES,
    EARLY_ARRIVAL,
    PUBLICATION_DAY_START,
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
from nurture.ingest.fields import (
    EARLIEST_DATE,
    FUTURE_TOLERANCE,
    MAX_JSON_DEPTH,
    MAX_JSON_INTEGER,
    check_json_value,
    clean_text,
)
from nurture.ingest.members import (
    CONSENT_STATUSES,
    MEMBER_COLUMNS,
    MEMBER_REQUIRED_COLUMNS,
    import_members,
)
from nurture.ingest.readers import (
    DELIMITERS,
    MAX_RECORD_LINES,
    SUFFIXES,
    FileLayout,
    ImportFileError,
)
from nurture.ingest.rejects import REJECTS_COLUMNS

__all__ = [
    "ACTIVITY_COLUMNS",
    "ACTIVITY_REQUIRED_COLUMNS",
    "ACTIVITY_TYPES",
    "ANSWER_COLUMNS",
    "ANSWER_REQUIRED_COLUMNS",
    "CONSENT_STATUSES",
    "DEFAULT_BATCH_SIZE",
    "DELIMITERS",
    "EARLIEST_DATE",
    "EARLY_ARRIVAL",
    "FUTURE_TOLERANCE",
    "MAX_JSON_DEPTH",
    "MAX_JSON_INTEGER",
    "MAX_RECORD_LINES",
    "MEMBER_COLUMNS",
    "MEMBER_REQUIRED_COLUMNS",
    "PUBLICATION_DAY_START",
    "REJECTS_COLUMNS",
    "SUFFIXES",
    "AnswerValidator",
    "FileLayout",
    "ImportFileError",
    "ImportSummary",
    "check_json_value",
    "clean_text",
    "derive_idempotency_key",
    "import_activity",
    "import_answers",
    "import_members",
]
