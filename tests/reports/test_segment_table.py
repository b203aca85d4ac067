"""``segment_table``: a short row per active segment, drawn from its card."""

from __future__ import annotations

import dataclasses
import json

import pytest
from sqlalchemy.orm import Session

from nurture.reports import segment_table
from nurture.storage.models import Segment, SegmentationRun, SegmentMembership
from tests.operations.conftest import NOW, Rows

CARD = {
    "share": 0.4,
    "distinctive": [
        {
            "question": "role",
            "option": option,
            "label": label,
            "share": share,
            "overall_share": 0.2,
            "lift": share / 0.2,
        }
        for option, label, share in [
            ("founder", "Founder", 0.62),
            ("cto", "CTO", 0.5),
            ("investor", "Investor", 0.4),
            ("student", "Student", 0.3),
        ]
    ],
    "top_terms": ["fundraising", "hiring", "pricing", "sales", "churn", "board"],
    "lifecycle": {"new": 1, "engaged": 3, "unknown": 4},
    "examples": [],
}


@pytest.fixture
def rows(session: Session) -> Rows:
    """Adds rows to the test database (the builder of tests/operations)."""
    return Rows(session)


def test_no_segments_no_rows(session: Session) -> None:
    assert segment_table(session, NOW) == []


def test_a_row_per_active_segment_from_its_card(session: Session, rows: Rows) -> None:
    members = [rows.member() for _ in range(5)]
    first = SegmentationRun(algorithm="kmeans", n_segments=1, created_at=NOW)
    second = SegmentationRun(algorithm="kmeans", n_segments=1, created_at=NOW)
    session.add_all([first, second])
    session.flush()
    founders = Segment(key="seg-1", label="Founders", size=3, card=CARD, last_run_id=second.id)
    rule = Segment(key="everyone", label="Everyone", kind="rule", size=5)
    gone = Segment(key="seg-9", label="Gone", size=2, active=False)
    session.add_all([founders, rule, gone])
    session.flush()
    for run, who in ((first, members[:2]), (second, members[:3])):
        session.add_all(
            SegmentMembership(run_id=run.id, member_id=m.id, segment_id=founders.id) for m in who
        )
    session.commit()

    table = segment_table(session, NOW)

    assert [row.key for row in table] == ["seg-1", "everyone"]
    founders_row, everyone = table
    assert (founders_row.label, founders_row.kind, founders_row.size) == ("Founders", "cluster", 3)
    assert founders_row.share == 0.4
    assert founders_row.top_traits == (
        "role = Founder: 62% vs 20% (×3.1)",
        "role = CTO: 50% vs 20% (×2.5)",
        "role = Investor: 40% vs 20% (×2.0)",
    )
    assert founders_row.top_terms == ("fundraising", "hiring", "pricing", "sales", "churn")
    assert founders_row.main_stage == "engaged"  # "unknown" is not a stage
    assert founders_row.size_change == 1
    assert (everyone.kind, everyone.size, everyone.share) == ("rule", 5, 1.0)
    assert everyone.top_traits == everyone.top_terms == ()
    assert everyone.size_change is None
    assert json.loads(json.dumps([dataclasses.asdict(row) for row in table]))[0]["size"] == 3
