"""Summaries as sentences: the numbers a person looks for, in words, from any summary shape."""

from __future__ import annotations

from nurture.delivery import DeliverySummary
from nurture.journeys import JourneySummary
from nurture.sentences import (
    describe_content_sync,
    describe_delivery,
    describe_journeys,
    describe_provider_events,
    describe_segmentation,
    plural,
)


def test_delivery_reads_as_the_issue_asks() -> None:
    assert describe_delivery(DeliverySummary(sent=498, suppressed=2)) == (
        "delivered 500: 498 sent, 2 suppressed"
    )


def test_delivery_names_failures_retries_and_doubts_only_when_there_are_some() -> None:
    summary = {"sent": 5, "failed": 2, "retried": 1, "unknown": 1, "skipped": 3}

    assert describe_delivery(summary) == (
        "delivered 9: 5 sent, 0 suppressed, 2 failed, 1 to retry later, "
        "1 in doubt (status unknown) (3 already taken or not due)"
    )


def test_journeys_name_the_holds_that_happened() -> None:
    summary = JourneySummary(enrolled=1, messages_queued=4, advanced=3, quiet_deferred=2)

    assert describe_journeys(summary) == (
        "journeys: 1 member enrolled, 4 emails queued, 3 advanced, 0 completed, "
        "0 reached their goal, 0 exited, 2 held for quiet hours"
    )


def test_segmentation_rounds_the_score_and_reads_without_one() -> None:
    assert describe_segmentation({"n_segments": 5, "n_members": 40, "quality": 0.13681}) == (
        "5 segments of 40 members (silhouette 0.137)"
    )
    assert describe_segmentation({"n_segments": 0, "n_members": 1, "quality": None}) == (
        "0 segments of 1 member"
    )
    assert describe_segmentation(
        {"n_segments": 1, "n_members": 2, "rule_sizes": {"a": 1}, "rule_errors": {"a": "x"}}
    ) == ("1 segment of 2 members, 1 rule segment, 1 rule failed: a")


def test_other_summaries() -> None:
    assert describe_content_sync({"added": 1, "unchanged": 2}, embedded=1) == (
        "content library: 1 item added, 0 updated, 2 unchanged, 0 removed; 1 embedded"
    )
    assert describe_provider_events({"received": 3, "recorded": 2, "duplicates": 1}) == (
        "provider events: 3 received, 2 recorded, 1 duplicates"
    )
    assert plural(1, "address", "addresses") == "1 address"
    assert plural(0, "email") == "0 emails"
