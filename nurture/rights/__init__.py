"""Members' data rights: export everything held about a member, or erase it for good."""

from nurture.rights.access import EXPORT_FORMAT, EXPORT_SECTIONS, export_member, format_export
from nurture.rights.erasure import ERASURE_SOURCE, ErasureSummary, erase_member
from nurture.rights.member_data import (
    DERIVED_TABLES,
    MEMBER_TABLES,
    OTHER_TABLES,
    find_members,
    member_keyed_tables,
    provider_events_of,
)
from nurture.rights.outbox import erase_from_outbox

__all__ = [
    "DERIVED_TABLES",
    "ERASURE_SOURCE",
    "EXPORT_FORMAT",
    "EXPORT_SECTIONS",
    "MEMBER_TABLES",
    "OTHER_TABLES",
    "ErasureSummary",
    "erase_from_outbox",
    "erase_member",
    "export_member",
    "find_members",
    "format_export",
    "member_keyed_tables",
    "provider_events_of",
]
