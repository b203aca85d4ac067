"""The condition language: what a check finds, what holds, what the sandbox refuses."""

import pytest
from jinja2.exceptions import SecurityError

from nurture.expressions import (
    EXPRESSION_NAMES,
    check_expression,
    compile_expression,
    expression_holds,
    expression_reads,
    member_fields_read,
    time_reads,
)

MEMBER = {
    "member": {"language": "fr", "days_since_joined": 20, "attributes": {"country": "FR"}},
    "answers": {"role": "founder", "goals": ["run_events"]},
    "lifecycle": "active",
    "activity": {"post": {"d7": 1, "d30": 3, "d90": 3, "total": 5}, "days_since_last": 2.0},
    "segment": "seg-1",
}


@pytest.mark.parametrize(
    ("expression", "holds"),
    [
        ("answers.role == 'founder' and member.language == 'fr'", True),
        ("'run_events' in answers.goals and activity.post.d30 >= 3", True),
        ("member.attributes.country == 'DE'", False),
        ("lifecycle in ['active', 'contributor'] and segment == 'seg-1'", True),
        ("answers.experience >= 3", False),  # unanswered: does not hold
    ],
)
def test_an_expression_holds_or_not_for_a_member(expression: str, holds: bool) -> None:
    assert check_expression(expression, ["role", "goals", "experience"]) == []
    assert expression_holds(expression, MEMBER) is holds


def test_other_failures_are_left_to_the_caller() -> None:
    with pytest.raises(TypeError):
        expression_holds("answers.role > 3", MEMBER)


@pytest.mark.parametrize("expression", ["2 ** 64", "'x' * 1000", "answers.goals * 3"])
def test_the_sandbox_refuses_huge_numbers_and_repeated_texts(expression: str) -> None:
    with pytest.raises(SecurityError):
        expression_holds(expression, MEMBER)


def test_the_sandbox_changes_nothing() -> None:
    with pytest.raises(SecurityError):
        expression_holds("answers.goals.append('x')", MEMBER)
    assert MEMBER["answers"]["goals"] == ["run_events"]


def test_compiled_expressions_are_reused() -> None:
    assert compile_expression("segment == 'seg-1'") is compile_expression("segment == 'seg-1'")


def test_a_check_names_the_kind_of_expression_and_where_it_fails() -> None:
    assert check_expression("answers.role ==", kind="rule") == [
        "the rule does not compile: unexpected 'end of the rule'"
    ]
    (problem,) = check_expression("answers.role == 'a'\nand (", kind="condition")
    assert problem.startswith("the condition does not compile (line 2 of the condition): ")


def test_a_check_finds_unknown_names_fields_and_questions_with_a_suggestion() -> None:
    problems = check_expression(
        "membr.language == 'fr' or member.langage == 'fr' or activity.post.d60 > 1 "
        "or activity.posts.d7 > 1 or answers.rol == 'founder'",
        ["role"],
    )
    assert problems == [
        "unknown name 'membr'; did you mean 'member'? (expected one of: "
        + ", ".join(EXPRESSION_NAMES)
        + ")",
        "unknown member field 'langage'; did you mean 'language'? (expected one of: id, email, "
        "first_name, last_name, language, time_zone, birthday, consent_status, "
        "days_since_joined, attributes)",
        "unknown activity 'posts'; did you mean 'post'? (expected one of: post, comment, "
        "event_attended, content_view, email_open, email_click, days_since_last)",
        "unknown activity.post field 'd60'; did you mean 'd90'? (expected one of: d7, d30, d90, "
        "total)",
        "unknown question 'rol'; did you mean 'role'? (expected one of: role)",
    ]


def test_question_keys_are_only_checked_when_given_and_names_can_be_widened() -> None:
    assert check_expression("answers.anything == 1") == []
    assert check_expression("language == 'fr'") != []
    assert check_expression("language == 'fr'", names=(*EXPRESSION_NAMES, "language")) == []


@pytest.mark.parametrize(
    ("expression", "names"),
    [
        ("lifecycle != 'dormant'", {"lifecycle"}),
        ("answers.role == 'founder' and member.language == 'fr'", {"answers", "member"}),
        ("activity.post.d7 > 0 or segment is none", {"activity", "segment"}),
        ("'a' in ['a', 'b']", set()),
    ],
)
def test_the_names_an_expression_reads_are_all_it_can_reach(
    expression: str, names: set[str]
) -> None:
    assert expression_reads(expression) == names
    # What it does not read makes no difference to it.
    reached = {name: value for name, value in MEMBER.items() if name in names}
    assert expression_holds(expression, reached) == expression_holds(expression, MEMBER)


@pytest.mark.parametrize(
    ("expression", "windows", "totals", "clock"),
    [
        ("answers.role == 'founder' and member.language == 'fr'", set(), set(), False),
        ("activity.event_attended.d90 >= 2", {("event_attended", 90)}, set(), False),
        ("activity.post.d7 > 0 or activity.comment.total > 3", {("post", 7)}, {"comment"}, False),
        ("lifecycle == 'new' and segment == 'seg-1'", set(), set(), False),
        ("member.days_since_joined <= 30", set(), set(), True),
        ("activity.days_since_last < 3", set(), set(), True),
        ("activity['post'].d7 > 1", set(), set(), True),
        ("member[answers.role] == 'x'", set(), set(), True),
    ],
)
def test_time_reads_tell_what_time_alone_changes(
    expression: str, windows: set[tuple[str, int]], totals: set[str], clock: bool
) -> None:
    reads = time_reads(expression)
    assert (set(reads.windows), set(reads.totals), reads.clock) == (windows, totals, clock)


@pytest.mark.parametrize(
    ("expression", "fields"),
    [
        ("member.days_since_joined >= 14", {"days_since_joined"}),
        (
            "member['language'] == 'fr' and member.days_since_joined > 3",
            {"language", "days_since_joined"},
        ),
        ("lifecycle != 'dormant'", set()),
        ("member", None),  # the whole of it
        ("member.items() | list", None),  # not a field
        ("member[answers.role] == 'x'", None),  # a computed key
    ],
)
def test_member_fields_read_are_known_only_when_read_by_name(
    expression: str, fields: set[str] | None
) -> None:
    found = member_fields_read(expression)
    assert (set(found) if found is not None else None) == fields
