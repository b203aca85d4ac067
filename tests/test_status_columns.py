"""Status-like columns hold a ``StrEnum``: named values in the code, the same strings stored."""

import enum

from sqlalchemy import Enum, select
from sqlalchemy.orm import Session

from nurture.storage.models import (
    Base,
    ConsentStatus,
    DeliveryStatus,
    ExitReason,
    LifecycleStage,
    SegmentKind,
    Suppression,
    SuppressionReason,
    WaitReason,
)

STATUS_WORDS = ("status", "state", "stage", "kind", "reason", "waiting_on")
"""A column whose name holds one of these words says where something stands or what it is."""

NOT_STATUSES = {
    "recommendations.reason": "a sentence shown to the member, not a code",
    "content_items.kind": "what a library item is, declared by the workspace (ContentKind)",
    "api_requests.status_code": "the HTTP status an API request was answered with, a number",
}
"""Status-like names that are free text, with the reason."""


def _status_columns() -> list[tuple[str, Enum | None]]:
    found = []
    for table in Base.metadata.sorted_tables:
        for column in table.columns:
            name = f"{table.name}.{column.name}"
            if any(word in column.name for word in STATUS_WORDS) and name not in NOT_STATUSES:
                found.append((name, column.type if isinstance(column.type, Enum) else None))
    return found


def test_every_status_like_column_is_a_str_enum() -> None:
    columns = dict(_status_columns())
    assert [name for name, kind in columns.items() if kind is None] == []
    assert all(issubclass(kind.enum_class, enum.StrEnum) for kind in columns.values() if kind)
    assert set(columns) >= {
        "members.consent_status",
        "member_profiles.lifecycle_stage",
        "segments.kind",
        "segment_assignments.state",
        "enrollments.state",
        "enrollments.exit_reason",
        "enrollments.waiting_on",
        "messages.status",
        "messages.delivery_status",
        "suppressions.reason",
    }


def test_the_stored_values_are_the_strings_the_schema_always_held() -> None:
    assert [str(value) for value in ConsentStatus] == ["granted", "denied", "unknown"]
    assert [str(value) for value in SegmentKind] == ["cluster", "rule"]
    assert [str(value) for value in LifecycleStage] == [
        "new",
        "onboarding",
        "active",
        "contributor",
        "ambassador",
        "at_risk",
        "dormant",
    ]
    assert [str(value) for value in ExitReason] == ["goal", "consent", "missing_step", "holdout"]
    assert [str(value) for value in WaitReason] == ["budget", "quiet_hours", "best_hour"]
    assert [str(value) for value in DeliveryStatus] == [
        "processed",
        "deferred",
        "delivered",
        "bounce",
        "dropped",
    ]
    assert [str(value) for value in SuppressionReason] == [
        "unsubscribed",
        "bounced",
        "complained",
        "manual",
        "erased",
    ]


def test_a_status_goes_in_as_a_string_and_comes_back_as_its_member(session: Session) -> None:
    session.add_all(
        Suppression(email_hash=f"hash-{value}", reason=str(value)) for value in SuppressionReason
    )
    session.commit()
    session.expunge_all()
    stored = dict(
        session.execute(select(Suppression.email_hash, Suppression.reason)).tuples().all()
    )
    assert stored == {f"hash-{value}": value for value in SuppressionReason}
    assert all(type(reason) is SuppressionReason for reason in stored.values())
