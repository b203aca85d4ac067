"""Every render is bounded: a template bomb fails its own message, named, and nothing else.

Output size, format widths, loop iterations and wall time: a template past one of the limits
raises a ``TemplateError`` naming the template, the line and the limit's setting, in the body
or in the subject, when delivering, previewing or validating.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from nurture.delivery import TemplateRenderer, deliver_messages
from nurture.delivery.limits import DEFAULT_RENDER_LIMITS, BoundedSandbox, RenderLimits
from nurture.errors import TemplateError
from nurture.settings import Settings
from nurture.storage.models import Message, MessageStatus
from nurture.workspace import SubjectSample, validate_templates

from .conftest import ITEMS, NOW, SECRET, TEMPLATES_DIR
from .test_worker import SENDER, RecordingMailer

LIMITS = RenderLimits(max_seconds=60.0)
"""The defaults, with time enough for the other limits to be reached first on a busy machine."""
QUICK = RenderLimits(max_seconds=0.5)
"""For the bombs that only the wall time stops."""


def _limits(limit: str) -> RenderLimits:
    return QUICK if limit == "render_max_seconds" else LIMITS


BOMBS = {
    # format widths
    "percent filter": ("{{ '%999999999s'|format('x') }}", "render_max_format_width"),
    "percent precision": ("{{ '%.999999999f'|format(1.5) }}", "render_max_format_width"),
    "percent operator": ("{{ '%999999999d' % 7 }}", "render_max_format_width"),
    "percent star": ("{{ '%*s' % (999999999, 'x') }}", "'*'"),
    "str.format": ("{{ '{:>999999999}'.format('x') }}", "render_max_format_width"),
    "nested spec": ("{{ '{:{w}}'.format('x', w=999999999) }}", "render_max_format_width"),
    "format_map": ("{{ '{a:^99999999}'.format_map({'a': 1}) }}", "render_max_format_width"),
    "markup format": (
        "{{ ('<b>{}</b>'|safe).format('x'.ljust(5)) }}{{ '{:09999999}'.format(1) }}",
        "render_max_format_width",
    ),
    "t default": (
        "{{ t('no.such.key', default='{x:>999999999}', x=1) }}",
        "render_max_format_width",
    ),
    "center filter": ("{{ 'x'|center(999999999) }}", "render_max_format_width"),
    "center method": ("{{ 'x'.center(999999999) }}", "render_max_format_width"),
    "zfill": ("{{ '1'.zfill(999999999) }}", "render_max_format_width"),
    "batch": ("{{ items|batch(999999999, 'x')|list }}", "render_max_format_width"),
    "batch by name": ("{{ items|batch(linecount=999999999)|list }}", "render_max_format_width"),
    "center by name": ("{{ 'x'|center(width=999999999) }}", "render_max_format_width"),
    "tabs by name": ("{{ ('\t' * 100000).expandtabs(tabsize=500) }}", "render_max_output_chars"),
    "slice": ("{{ items|slice(999999999)|list }}", "render_max_format_width"),
    "lipsum": ("{{ lipsum(999999) }}", "render_max_format_width"),
    "tojson indent": ("{{ {'a': [1]}|tojson(999999999) }}", "render_max_format_width"),
    "through map": ("{{ items|map('center', 999999999)|list }}", "render_max_format_width"),
    "filter block": (
        "{% filter indent(999999999) %}x{% endfilter %}",
        "render_max_format_width",
    ),
    # output size
    "join filter": ("{{ range(100000)|join('x' * 100000) }}", "render_max_output_chars"),
    "join iterator": (
        "{{ range(100000)|map('string')|join('x' * 100000) }}",
        "render_max_output_chars",
    ),
    "join method": ("{{ ('x' * 100000).join(['a', 'b', 'c'] * 100) }}", "render_max_output_chars"),
    "replace filter": ("{{ ('x' * 100000)|replace('x', 'y' * 1000) }}", "render_max_output_chars"),
    "replace method": ("{{ ('x' * 100000).replace('', 'y' * 100) }}", "render_max_output_chars"),
    "indent": ("{{ ('\\n' * 100000)|indent(500) }}", "render_max_output_chars"),
    "wordwrap": (
        "{{ ('x ' * 50000)|wordwrap(1, wrapstring='-' * 100) }}",
        "render_max_output_chars",
    ),
    "expandtabs": ("{{ ('\\t' * 100000).expandtabs(500) }}", "render_max_output_chars"),
    "output in a loop": (
        "{% for i in range(10000) %}{{ 'x' * 1000 }}{% endfor %}",
        "render_max_output_chars",
    ),
    "doubling with ~": (
        "{% set ns = namespace(s='x') %}{% for i in range(64) %}"
        "{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
        "render_max_output_chars",
    ),
    "doubling with +": (
        "{% set ns = namespace(s=['x']) %}{% for i in range(64) %}"
        "{% set ns.s = ns.s + ns.s %}{% endfor %}",
        "render_max_output_chars",
    ),
    "squaring a number": (
        "{% set ns = namespace(n=3) %}{% for i in range(64) %}"
        "{% set ns.n = ns.n * ns.n %}{% endfor %}",
        "bits",
    ),
    "set block": (
        "{% set x %}{% for i in range(99999) %}{{ 'x' * 99999 }}{% endfor %}{% endset %}",
        "render_max_output_chars",
    ),
    "set block of text": (
        "{% set x %}{% for i in range(99999) %}" + "text " * 200 + "{% endfor %}{% endset %}",
        "render_max_output_chars",
    ),
    "macro buffer": (
        "{% macro m() %}{% for i in range(99999) %}{{ 'x' * 99999 }}{% endfor %}{% endmacro %}"
        "{% set y = m() %}",
        "render_max_output_chars",
    ),
    "filter block buffer": (
        "{% filter upper %}{% for i in range(99999) %}{{ 'x' * 99999 }}{% endfor %}{% endfilter %}",
        "render_max_output_chars",
    ),
    "macro output": (
        "{% macro m() %}{{ 'x' * 100000 }}{% endmacro %}"
        "{% for i in range(100) %}{{ m() }}{% endfor %}",
        "render_max_output_chars",
    ),
    # loop iterations
    "nested ranges": (
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        "render_max_loop_iterations",
    ),
    "nested lists": (
        "{% set l = range(1000)|list %}{% for a in l %}{% for b in l %}{% for c in l %}"
        "{% endfor %}{% endfor %}{% endfor %}",
        "render_max_loop_iterations",
    ),
    "loop with a test": (
        "{% for i in range(100000) if i > -1 %}{% for j in range(100) %}{% endfor %}{% endfor %}",
        "render_max_loop_iterations",
    ),
    "loop variable": (
        "{% for i in range(100000) %}{% for j in range(100) %}{{ loop.index0 * 0 }}"
        "{% endfor %}{% endfor %}",
        "render_max_loop_iterations",
    ),
    # wall time
    "exponential macro": (
        "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}"
        "{{ f(60) }}",
        "render_max_seconds",
    ),
    "recursive loop": (
        "{% for i in range(1000) recursive %}{% if loop.depth < 4 %}{{ loop(range(1000)) }}"
        "{% endif %}{% endfor %}",
        "render_max_loop_iterations",
    ),
    "sorting forever": (
        "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}"
        "{% for i in range(5) %}{{ range(100)|map('string')|sort|first }}{{ f(40) }}"
        "{% endfor %}",
        "render_max_seconds",
    ),
}


def _renderer(folder: Path = TEMPLATES_DIR, limits: RenderLimits = LIMITS) -> TemplateRenderer:
    return TemplateRenderer(
        folder,
        community_name="Builders & Co",
        public_base_url="https://nurture.example.org/",
        unsubscribe_secret=SECRET,
        limits=limits,
    )


def _member(first_name: str = "Ada") -> SimpleNamespace:
    return SimpleNamespace(
        id=7, first_name=first_name, last_name="L", email="ada@example.org", language="en"
    )


def _message(template: str = "bomb", subject: str = "Hello") -> SimpleNamespace:
    return SimpleNamespace(
        id=12,
        template=template,
        subject=subject,
        context={"items": [dict(item) for item in ITEMS]},
        journey_key="welcome",
        step_id="hello",
    )


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """The shipped templates, to which a test adds a bomb."""
    templates = tmp_path / "templates"
    templates.mkdir()
    for path in TEMPLATES_DIR.glob("*.j2"):
        (templates / path.name).write_text(path.read_text(encoding="utf-8"), "utf-8")
    return templates


def _bomb(folder: Path, source: str, name: str = "bomb") -> None:
    (folder / f"{name}.html.j2").write_text(
        '{% extends "layout.html.j2" %}\n{% block content %}\n<p>hi</p>\n'
        + source
        + "\n{% endblock %}\n",
        encoding="utf-8",
    )
    (folder / f"{name}.txt.j2").write_text(
        '{% extends "layout.txt.j2" %}\n{% block content %}hi{% endblock %}\n', encoding="utf-8"
    )


@pytest.mark.parametrize(("source", "limit"), BOMBS.values(), ids=BOMBS.keys())
def test_a_bomb_in_a_template_fails_with_template_line_and_limit(
    folder: Path, source: str, limit: str
) -> None:
    _bomb(folder, source)
    with pytest.raises(TemplateError) as raised:
        _renderer(folder, _limits(limit)).render_message(_message(), _member(), now=NOW)
    assert "bomb.html.j2 line 4" in str(raised.value)
    assert limit in str(raised.value)


@pytest.mark.parametrize(("source", "limit"), BOMBS.values(), ids=BOMBS.keys())
def test_a_bomb_in_a_subject_fails_with_the_limit(source: str, limit: str) -> None:
    with pytest.raises(TemplateError, match="subject of message 12") as raised:
        renderer = _renderer(limits=_limits(limit))
        renderer.render_message(_message("welcome", source), _member(), now=NOW)
    assert limit in str(raised.value)


def test_real_templates_are_well_within_the_limits(folder: Path) -> None:
    _bomb(
        folder,
        "{% for item in items %}{{ loop.index }}. {{ '%-20s|%5.2f'|format(item.title, 1.5) }}"
        "{{ '{:>10}'.format(item.kind) }} {{ item.title|center(30) }}{% endfor %}"
        "{{ range(1000)|join(', ') }} {{ items|map(attribute='title')|join(' / ') }}"
        "{{ 'a-b'.replace('-', ' ') }} {{ ('x' * 40)|wordwrap(10) }} {{ 'x'|indent(4) }}"
        "{{ ('word ' * 20000)|wordwrap(60)|length }} {{ 'a\tb'.expandtabs(tabsize=4) }}",
    )
    email = _renderer(folder).render_message(_message(), _member(), now=NOW)
    assert "1. Grow a B2B community" in email.text or "1. Grow a B2B community" in email.html
    assert "998, 999" in email.html


def test_limits_are_per_render_not_per_renderer(folder: Path) -> None:
    """Many renders each below the limits add up to nothing."""
    _bomb(folder, "{% for i in range(600) %}{{ 'x' * 1000 }}{% endfor %}")
    renderer = _renderer(folder, RenderLimits(max_output_chars=700_000, max_loop_iterations=700))
    for _ in range(3):
        renderer.render_message(_message(), _member(), now=NOW)


def test_the_settings_give_the_limits() -> None:
    assert RenderLimits.of(Settings()) == DEFAULT_RENDER_LIMITS
    tight = Settings(
        render_max_output_chars=5000,
        render_max_format_width=20,
        render_max_loop_iterations=100,
        render_max_seconds=0.5,
    )
    assert RenderLimits.of(tight) == RenderLimits(5000, 20, 100, 0.5)
    sandbox = BoundedSandbox(RenderLimits.of(tight))
    with pytest.raises(Exception, match="render_max_format_width"):
        sandbox.from_string("{{ '%21s' % 'x' }}").render()
    with pytest.raises(Exception, match="render_max_loop_iterations"):
        sandbox.from_string("{% for i in range(101) %}{% endfor %}").render()
    assert sandbox.from_string("{{ '%20s' % 'x' }}").render() == " " * 19 + "x"


def test_validation_refuses_a_bomb_with_file_and_line(folder: Path) -> None:
    _bomb(folder, BOMBS["exponential macro"][0])
    _bomb(folder, BOMBS["str.format"][0], name="bomb2")
    problems = validate_templates(folder, community_name="Builders & Co", limits=QUICK)
    found = {(Path(problem.path).name, problem.line) for problem in problems}
    assert found == {("bomb.html.j2", 4), ("bomb2.html.j2", 4)}
    # one problem per bomb: a template past a limit is not rendered again and again
    assert len(problems) == 2
    assert "render_max_seconds" in problems[0].message + problems[1].message


def test_validation_refuses_a_bomb_in_a_subject(folder: Path) -> None:
    subject = SubjectSample(
        source="Hi {{ '%999999999s'|format(member.first_name) }}",
        path="journeys/welcome.yaml",
        field="steps.0.subject",
    )
    problems = validate_templates(
        folder, community_name="Builders & Co", subjects=[subject], limits=LIMITS
    )
    assert len(problems) == 1
    assert problems[0].field == "steps.0.subject"
    assert str(problems[0].path) == "journeys/welcome.yaml"
    assert "render_max_format_width" in problems[0].message


@pytest.mark.parametrize("bomb", ["nested ranges", "exponential macro", "percent filter"])
def test_a_bomb_for_one_member_fails_that_message_alone(
    session, add_message, folder: Path, bomb: str
) -> None:
    """A bomb behind a condition on one member passes validation, then fails only its email."""
    source = "{% if member.first_name == 'Eve' %}" + BOMBS[bomb][0] + "{% endif %}"
    _bomb(folder, source)
    limits = _limits(BOMBS[bomb][1])
    renderer = _renderer(folder, limits)
    assert not validate_templates(folder, community_name="Builders & Co", limits=limits)
    first = add_message(template="bomb")
    eve = add_message(template="bomb", first_name="Eve")
    last = add_message(template="bomb")
    mailer = RecordingMailer()
    ids = [first.id, eve.id, last.id]
    summary = deliver_messages(session, mailer, renderer, ids, NOW, **SENDER)
    assert (summary.sent, summary.failed) == (2, 1)
    assert sorted(sent.message_id for sent in mailer.sent) == [first.id, last.id]
    row = session.get(Message, eve.id, populate_existing=True)
    assert row.status is MessageStatus.FAILED
    assert "bomb.html.j2 line 4" in row.error
    assert BOMBS[bomb][1] in row.error


def test_journeys_validate_refuses_bombs_in_a_template_and_a_subject(tmp_path: Path) -> None:
    """The workspace check (``journeys validate``, and every ``nurture run``) ends, naming both."""
    import shutil

    from typer.testing import CliRunner

    from nurture.cli import app

    content = TEMPLATES_DIR.parent
    workspace = Path(shutil.copytree(content, tmp_path / "workspace"))
    _bomb(workspace / "templates", BOMBS["nested ranges"][0], name="birthday")
    journey = workspace / "journeys" / "welcome.yaml"
    text = journey.read_text(encoding="utf-8")
    subject = next(line for line in text.splitlines() if line.strip().startswith("en:"))
    bombed = subject.split("en:")[0] + "en: \"{{ '%999999999s'|format('x') }}\""
    journey.write_text(text.replace(subject, bombed, 1), encoding="utf-8")
    result = CliRunner().invoke(
        app,
        [
            "--workspace",
            str(workspace),
            "--data-dir",
            str(tmp_path / "data"),
            "journeys",
            "validate",
        ],
    )
    assert result.exit_code == 1, result.output
    output = " ".join(result.output.split())
    assert f"{workspace / 'templates' / 'birthday.html.j2'}:4:" in output
    assert "render_max_loop_iterations" in output
    assert f"{journey}" in output
    assert "render_max_format_width" in output


def test_loops_work_as_before_within_the_limits() -> None:
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    tree = [{"name": "a", "children": [{"name": "b", "children": []}]}, {"name": "c"}]
    source = (
        "{% for n in tree recursive %}{{ loop.index }}{{ n.name }}{% if loop.last %}.{% endif %}"
        "{{ loop(n.children or []) }}{% else %}none{% endfor %}"
        "{% for i in [] %}x{% else %}-{% endfor %}"
        "{% for i in range(5) if i is odd %}{{ i }}{{ loop.length }}{% endfor %}"
    )
    bounded = BoundedSandbox().from_string(source).render(tree=tree)
    assert bounded == ImmutableSandboxedEnvironment().from_string(source).render(tree=tree)
    assert bounded == "1a1b.none2c.none-1232"
