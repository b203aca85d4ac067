"""How a run went: what it did in a line, and what in it needs a person's attention."""

from __future__ import annotations

from nurture.outcomes import MESSAGE_LENGTH, run_outcome

NIGHTLY = {
    "imports": [
        {"file": "members.csv", "kind": "members", "outcome": "done", "read": 3, "refused": 0},
        {
            "file": "answers.jsonl",
            "kind": "answers",
            "outcome": "done",
            "read": 5,
            "refused": 2,
            "rejects": "/data/rejects/answers.jsonl.rejects.csv",
        },
        {"file": "members-x.csv", "kind": "members", "outcome": "failed", "error": "no email"},
    ],
    "content": {"added": 0},
    "profile": {"profiled": 40, "texts_embedded": 3},
    "segment": {"n_segments": 5, "n_members": 40, "quality": 0.25, "rule_errors": {}},
    "match": {"recommendations": 400, "members": 40},
}


def test_a_clean_run_says_what_it_did_and_needs_nothing() -> None:
    outcome = run_outcome("nightly", {**NIGHTLY, "imports": NIGHTLY["imports"][:1]})

    assert not outcome.needs_attention
    assert outcome.message == (
        "nightly: imported 1 file of 1; profiled 40 members; 5 segments of 40 members "
        "(silhouette 0.250); 400 recommendations for 40 members"
    )


def test_refused_files_and_records_need_attention() -> None:
    outcome = run_outcome("nightly", NIGHTLY)

    assert outcome.attention == (
        "import file members-x.csv refused (no email); it was moved to imports/failed",
        "2 records of answers.jsonl refused (see /data/rejects/answers.jsonl.rejects.csv)",
    )
    assert outcome.message.startswith("nightly: import file members-x.csv refused")
    assert "imported 2 files of 3" in outcome.message


def test_deliver_failures_doubts_and_condition_errors_need_attention() -> None:
    outcome = run_outcome(
        "deliver",
        {
            "recover": {"sent": 0, "unknown": 1},
            "journeys": {"enrolled": 2, "messages_queued": 5, "condition_errors": 3},
            "send": {"sent": 3, "failed": 1, "unknown": 1},
        },
    )

    assert [item.split(" ", 2)[:2] for item in outcome.attention] == [
        ["1", "email"],
        ["3", "journey"],
        ["1", "email"],
        ["1", "email"],
    ]
    assert "delivered 5: 3 sent, 0 suppressed, 1 failed" in outcome.did


def test_nothing_ran_and_long_messages_are_cut() -> None:
    assert run_outcome("deliver", {}).message == "deliver: nothing to do"
    many = [{"file": f"members-{n}.csv", "outcome": "failed", "error": "x" * 50} for n in range(40)]
    message = run_outcome("nightly", {"imports": many}).message
    assert len(message) == MESSAGE_LENGTH and message.endswith("…")
