"""Rule segments: segments.yaml validation with file and line, sandboxed evaluation, storage."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from sqlalchemy import func, select

from nurture.embedding import HashingEmbedder
from nurture.errors import SegmentRuleValidationError, WorkspaceFileError
from nurture.profiling import build_profiles
from nurture.segmentation import (
    SegmentRule,
    current_segments,
    effective_memberships,
    evaluate_rule_segments,
    load_segment_rules,
    rename_segment,
    segment_members,
)
from nurture.segmentation import rules as rules_module
from nurture.storage.models import (
    ActivityEvent,
    Answer,
    Member,
    Segment,
    SegmentationRun,
    SegmentMembership,
)
from nurture.workspace import load_questionnaire

from .conftest import GROUPS, NOW

HERE = Path(__file__).parent
VALID = sorted((HERE / "valid").iterdir())
INVALID = sorted((HERE / "invalid").iterdir())
CONTENT = HERE.parents[1] / "content"
QUESTION_KEYS = ["role", "goals", "experience", "expectations"]
EXPECT = re.compile(r"#\s*expect:\s*(\d+):\s*([\w.]*):\s*(.+?)\s*$")


def _expectations(path: Path) -> list[tuple[int, str | None, str]]:
    found = []
    for text in path.read_text(encoding="utf-8").splitlines():
        match = EXPECT.search(text)
        if match:
            found.append((int(match.group(1)), match.group(2) or None, match.group(3)))
    return found


def rule(key: str, expression: str) -> SegmentRule:
    return SegmentRule.model_validate(
        {"key": key, "label": {"en": key.title(), "fr": key}, "rule": expression}
    )


@pytest.mark.parametrize("path", VALID, ids=lambda path: path.name)
def test_valid_fixture_loads(path: Path) -> None:
    rules = load_segment_rules(path, question_keys=QUESTION_KEYS)
    assert all(isinstance(r, SegmentRule) for r in rules)
    assert len(rules) == {"empty.yaml": 0, "minimal.yaml": 1, "full.yaml": 3}[path.name]


@pytest.mark.parametrize("path", INVALID, ids=lambda path: path.name)
def test_invalid_fixture_reports_file_line_and_field(path: Path) -> None:
    expected = _expectations(path)
    assert expected, f"{path.name} has no '# expect: LINE: FIELD: message' comment"
    with pytest.raises(SegmentRuleValidationError) as caught:
        load_segment_rules(path, question_keys=QUESTION_KEYS)
    problems = caught.value.problems
    report = str(caught.value)
    assert len(problems) == len(expected), report
    for line, field, message in expected:
        matching = [
            p for p in problems if p.line == line and p.field == field and message in p.message
        ]
        assert matching, f"no problem at line {line} [{field}] with {message!r} in:\n{report}"
        assert Path(matching[0].path).name == path.name
        assert f"{path.name}:{line}" in report


def test_errors_are_workspace_file_errors_and_an_absent_file_declares_nothing(tmp_path) -> None:
    assert issubclass(SegmentRuleValidationError, WorkspaceFileError)
    assert issubclass(SegmentRuleValidationError, ValueError)
    assert load_segment_rules(tmp_path / "segments.yaml") == []


def test_question_keys_are_only_checked_when_given() -> None:
    path = HERE / "invalid" / "unknown_names.yaml"
    with pytest.raises(SegmentRuleValidationError) as caught:
        load_segment_rules(path)
    assert len(caught.value.problems) == 2  # 'answer' and 'langage'/'posts', not 'rol'
    assert "langage" in str(caught.value) and "'posts'" in str(caught.value)


def test_the_demo_workspace_rules_load() -> None:
    questionnaire = load_questionnaire(CONTENT / "questionnaire.yaml")
    rules = load_segment_rules(
        CONTENT / "segments.yaml", question_keys=[q.key for q in questionnaire.questions]
    )
    assert [r.key for r in rules] == ["french-founders", "event-regulars", "quiet-newcomers"]


def test_rules_are_evaluated_beside_the_clusters(session, questionnaire, population) -> None:
    founders = {m for m, group in population.items() if GROUPS[group] == "founder"}
    posts = dict(
        session.execute(
            select(ActivityEvent.member_id, func.count())
            .where(ActivityEvent.type == "post", ActivityEvent.occurred_at > NOW - dt.timedelta(90))
            .group_by(ActivityEvent.member_id)
        )
        .tuples()
        .all()
    )
    rules = [
        rule("founders", "answers.role == 'founder'"),
        rule("posters", "activity.post.d90 >= 2"),
        rule("first-cluster", "segment == 'seg-1'"),
        rule("nobody", "answers.experience > 5 and member.language == 'fr'"),
    ]
    build_profiles(session, HashingEmbedder(32), questionnaire, NOW)
    summary = segment_members(session, questionnaire=questionnaire, now=NOW, rules=rules)
    session.commit()

    assert summary.rule_sizes == {
        "founders": 30,
        "posters": sum(1 for count in posts.values() if count >= 2),
        "first-cluster": summary.sizes["seg-1"],
        "nobody": 0,
    }
    assert summary.rule_labels["founders"] == "Founders"
    assert summary.rule_errors == {}
    segment = session.scalars(select(Segment).where(Segment.key == "founders")).one()
    assert segment.kind == "rule" and segment.active and segment.last_run_id == summary.run_id
    assert segment.card["rule"] == "answers.role == 'founder'"
    assert segment.card["labels"] == {"en": "Founders", "fr": "founders"}
    members = set(
        session.scalars(
            select(SegmentMembership.member_id).where(
                SegmentMembership.segment_id == segment.id,
                SegmentMembership.run_id == summary.run_id,
            )
        )
    )
    assert members == founders
    assert all(segment.id in effective_memberships(session)[m] for m in founders)
    assert len(current_segments(session)) == 120  # clusters only, rules beside them
    assert session.scalar(select(func.count()).select_from(SegmentationRun)) == 1

    # A rule left out of the file: its segment goes inactive and loses its members.
    again = evaluate_rule_segments(session, rules[:1], NOW, run_id=summary.run_id)
    session.commit()
    assert again.removed == ["first-cluster", "nobody", "posters"]
    posters = session.scalars(select(Segment).where(Segment.key == "posters")).one()
    assert not posters.active
    assert all(posters.id not in ids for ids in effective_memberships(session).values())
    with pytest.raises(ValueError, match="declared by rule"):
        rename_segment(session, "founders", "Our founders")


def test_rules_read_only_and_failures_are_counted(session, population) -> None:
    rules = [
        rule("mutating", "answers.goals.append('x') or true"),
        rule("type-error", "answers.expectations + 1 > 0"),
        rule("huge", "'x' * 1000000000"),
        rule("missing-answer", "answers.nope > 3"),
    ]
    summary = evaluate_rule_segments(session, rules, NOW)
    session.commit()
    assert summary.run_id is not None  # no clustering yet: a run of its own
    assert summary.sizes == dict.fromkeys(["mutating", "type-error", "huge", "missing-answer"], 0)
    assert set(summary.errors) == {"mutating", "type-error", "huge"}  # a missing answer: no error
    assert "120 member(s)" in summary.errors["mutating"]
    assert "SecurityError" in summary.errors["mutating"]
    assert "SecurityError" in summary.errors["huge"]
    goals = session.scalars(select(Answer.value).where(Answer.question_key == "goals")).all()
    assert not any("x" in value for value in goals)


def test_member_fields_lifecycle_and_attributes(session) -> None:
    member = Member(
        email="claire@example.fr",
        language="fr",
        joined_at=NOW - dt.timedelta(days=400),
        attributes={"country": "FR"},
    )
    session.add(member)
    session.commit()
    rules = [
        rule("veterans", "member.days_since_joined >= 400 and member.attributes.country == 'FR'"),
        rule("unprofiled", "lifecycle is none and segment is none"),
        rule("domain", "member.email.endswith('.fr')"),
    ]
    summary = evaluate_rule_segments(session, rules, NOW)
    assert summary.sizes == {"veterans": 1, "unprofiled": 1, "domain": 1}


def test_evaluating_again_rewrites_only_the_memberships_that_changed(
    session, questionnaire, population
) -> None:
    founders = sorted(m for m, group in population.items() if GROUPS[group] == "founder")
    others = sorted(m for m, group in population.items() if GROUPS[group] != "founder")
    rules = [rule("founders", "answers.role == 'founder'")]
    build_profiles(session, HashingEmbedder(32), questionnaire, NOW)
    run_id = segment_members(session, questionnaire=questionnaire, now=NOW, rules=rules).run_id
    session.commit()
    segment_id = session.scalars(select(Segment.id).where(Segment.key == "founders")).one()

    def rows() -> dict[int, tuple[int, dt.datetime]]:
        query = select(
            SegmentMembership.member_id, SegmentMembership.id, SegmentMembership.created_at
        ).where(SegmentMembership.run_id == run_id, SegmentMembership.segment_id == segment_id)
        return {member: (row, at) for member, row, at in session.execute(query).tuples()}

    before = rows()
    left, joined = founders[0], others[0]
    for member_id, role in ((left, "member"), (joined, "founder")):
        answer = session.scalars(
            select(Answer).where(Answer.member_id == member_id, Answer.question_key == "role")
        ).one()
        answer.value = role
    session.commit()
    later = NOW + dt.timedelta(days=1)

    summary = evaluate_rule_segments(session, rules, later, run_id=run_id)
    session.commit()

    after = rows()
    assert sorted(after) == sorted({*founders[1:], joined}) and summary.sizes["founders"] == 30
    assert summary.entered == 1 and summary.left == 1
    # Those still in keep their rows; only the member who joined has a new one.
    assert {m: after[m] for m in founders[1:]} == {m: before[m] for m in founders[1:]}
    assert after[joined][1].replace(tzinfo=dt.UTC) == later


def test_few_changes_leave_the_tables_statistics_alone(
    session, questionnaire, population, monkeypatch: pytest.MonkeyPatch
) -> None:
    counted: list[list[str]] = []
    monkeypatch.setattr(
        rules_module,
        "refresh_statistics",
        lambda _session, tables: counted.append([table.__tablename__ for table in tables]),
    )
    rules = [rule("founders", "answers.role == 'founder'")]
    build_profiles(session, HashingEmbedder(32), questionnaire, NOW)
    first = segment_members(session, questionnaire=questionnaire, now=NOW, rules=rules)
    tables = ["segment_memberships", "segment_assignments"]
    assert counted == [tables]  # a whole evaluation counts them again

    later = NOW + dt.timedelta(hours=1)
    again = evaluate_rule_segments(session, rules, later, run_id=first.run_id, only_changed=True)
    assert again.sizes == {"founders": 30}
    assert counted == [tables]  # nobody entered or left: not again

    evaluate_rule_segments(session, rules, later + dt.timedelta(hours=1), run_id=first.run_id)
    assert counted == [tables, tables]
