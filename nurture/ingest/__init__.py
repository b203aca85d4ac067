"""Import members, questionnaire answers and activity events from CSV or JSON Lines files.

Files are streamed and committed in batches; every record is validated, and each refused record
goes to a rejects CSV (line, field, reason, raw) while valid ones are stored. Re-importing a file
adds nothing: members and answers are upserted, events deduplicated by idempotency key.
"""

from nurture.ingest.activity import ACTIVITY_TYPES, derive_idempotency_key, import_activity
from nurture.ingest.answers import AnswerValidator, import_answers
from nurture.ingest.batches import DEFAULT_BATCH_SIZE, ImportSummary
from nurture.ingest.members import CONSENT_STATUSES, LANGUAGES, import_members
from nurture.ingest.readers import SUFFIXES
from nurture.ingest.rejects import REJECTS_COLUMNS

__all__ = [
    "ACTIVITY_TYPES",
    "CONSENT_STATUSES",
    "DEFAULT_BATCH_SIZE",
    "LANGUAGES",
    "REJECTS_COLUMNS",
    "SUFFIXES",
    "AnswerValidator",
    "ImportSummary",
    "derive_idempotency_key",
    "import_activity",
    "import_answers",
    "import_members",
]
