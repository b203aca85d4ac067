"""Templates are written by marketers, not programmers: whatever they write stays in the sandbox.

Every escape attempt must fail safely: a ``TemplateError`` naming the template and the line,
nothing executed, nothing leaked, the process unharmed.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from jinja2.sandbox import MAX_RANGE

from nurture.errors import TemplateError
from nurture.workspace import validate_templates

from .conftest import ITEMS, NOW, TEMPLATES_DIR, make_renderer

ESCAPES = {
    "subclasses": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "mro": "{{ ''.__class__.__mro__ }}",
    "cycler globals": "{{ cycler.__init__.__globals__ }}",
    "cycler os": "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "joiner globals": "{{ joiner.__init__.__globals__ }}",
    "lipsum globals": "{{ lipsum.__globals__ }}",
    "namespace init": "{{ namespace.__init__ }}",
    "t globals": "{{ t.__globals__ }}",
    "template context": "{{ self._TemplateReference__context }}",
    "member class": "{{ member.__class__ }}",
    "attr filter": "{{ member | attr('__class__') }}",
    "mutation append": "{% set x = [].append(1) %}",
    "mutation of items": "{{ items.append(1) }}",
    "mutation pop": "{{ items.pop() }}",
    "mutation of member": "{{ member.update({'email': 'x@evil.example'}) }}",
    "flask config": "{{ config }}",
    "request": "{{ request.application }}",
    "range": "{{ range(10**9) | list }}",
    "range just over": f"{{{{ range({MAX_RANGE + 1}) | length }}}}",
    "repeat": "{{ 'x' * 10**8 }}",
    "repeat list": "{{ [1, 2] * 10**7 }}",
    "power": "{{ 10 ** 1000000 }}",
    "format attribute": '{{ "{0.__class__}".format(member) }}',
    "format globals": '{{ "{0.__init__.__globals__}".format(cycler) }}',
    "format_map": '{{ "{m.__class__}".format_map({"m": member}) }}',
    "t default format": "{{ t('no.such.key', default='{x.__init__.__globals__}', x=cycler) }}",
    "percent format": "{{ '%s' | format(member.__class__) }}",
    "include outside": "{% include '../secret.txt' %}",
    "include absolute": "{% include '/etc/passwd' %}",
    "recursion": "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
}


def _member() -> SimpleNamespace:
    return SimpleNamespace(
        id=7, first_name="Ada", last_name="Lovelace", email="ada@example.org", language="en"
    )


def _message(template: str = "evil", subject: str = "Hello") -> SimpleNamespace:
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
    """A templates folder holding the shipped layouts and partials, next to a secret file."""
    templates = tmp_path / "templates"
    templates.mkdir()
    for path in TEMPLATES_DIR.glob("*.j2"):
        if path.name.startswith(("layout.", "_")):
            (templates / path.name).write_text(path.read_text(encoding="utf-8"), "utf-8")
    (tmp_path / "secret.txt").write_text("TOP-SECRET-VALUE\n", encoding="utf-8")
    return templates


def _evil(folder: Path, source: str) -> None:
    (folder / "evil.html.j2").write_text("<p>hello</p>\n" + source + "\n", encoding="utf-8")
    (folder / "evil.txt.j2").write_text("hello\n", encoding="utf-8")


@pytest.mark.parametrize("source", ESCAPES.values(), ids=ESCAPES.keys())
def test_escapes_in_templates_fail_with_template_and_line(folder: Path, source: str) -> None:
    _evil(folder, source)
    with pytest.raises(TemplateError, match=r"evil\.html\.j2 line 2") as raised:
        make_renderer(folder).render_message(_message(), _member(), now=NOW)
    assert "TOP-SECRET-VALUE" not in str(raised.value)
    assert "<module" not in str(raised.value)  # no globals dumped into the message


@pytest.mark.parametrize("source", ESCAPES.values(), ids=ESCAPES.keys())
def test_escapes_in_subjects_fail_safely(source: str) -> None:
    with pytest.raises(TemplateError, match="subject of message 12"):
        make_renderer().render_message(_message("welcome", source), _member(), now=NOW)


def test_an_escape_never_runs_its_payload(folder: Path, tmp_path: Path) -> None:
    proof = tmp_path / "pwned"
    payloads = [
        f"{{{{ cycler.__init__.__globals__.os.system('touch {proof}') }}}}",
        "{{ ''.__class__.__mro__[1].__subclasses__()[0].__init__.__globals__"
        f"['__builtins__']['open']('{proof}', 'w').write('x') }}}}",
        f"{{{{ lipsum.__globals__['os'].popen('touch {proof}').read() }}}}",
    ]
    renderer = make_renderer(folder)
    for payload in payloads:
        _evil(folder, payload)
        with pytest.raises(TemplateError):
            renderer.render_message(_message(), _member(), now=NOW)
    assert not proof.exists()


def test_the_context_is_left_unchanged(folder: Path) -> None:
    message = _message()
    _evil(folder, "{% for item in items %}{% set item.title = 'x' %}{% endfor %}")
    with pytest.raises(TemplateError, match=r"evil\.html\.j2"):
        make_renderer(folder).render_message(message, _member(), now=NOW)
    assert message.context["items"] == ITEMS


def test_limits_leave_room_for_real_templates(folder: Path) -> None:
    _evil(
        folder,
        f"{{{{ range({MAX_RANGE}) | list | length }}}} {{{{ '=' * 40 }}}} {{{{ 2 ** 64 }}}} "
        '{{ "{:,}".format(1000) }} {{ t("footer_reason", community="A & B") }}',
    )
    email = make_renderer(folder).render_message(_message(), _member(), now=NOW)
    assert f"{MAX_RANGE} {'=' * 40} {2**64} 1,000" in email.html
    assert "member of A &amp; B." in email.html


def test_ui_string_fields_are_not_format_strings(folder: Path) -> None:
    _evil(folder, "{{ t('footer_reason', community='{0.__class__}') }}")
    email = make_renderer(folder).render_message(_message(), _member(), now=NOW)
    assert "member of {0.__class__}." in email.html


def test_validation_reports_an_escape_as_a_problem(folder: Path) -> None:
    _evil(folder, ESCAPES["cycler globals"])
    problems = validate_templates(folder, community_name="Builders & Co")
    assert problems
    assert all(Path(problem.path).name == "evil.html.j2" for problem in problems)
    assert problems[0].line == 2
    assert "refused by the sandbox" in problems[0].message


def test_linked_stylesheets_are_never_read(folder: Path, tmp_path: Path) -> None:
    stylesheet = tmp_path / "private.css"
    stylesheet.write_text("p { color: #abcdef; }\n", encoding="utf-8")
    links = "".join(
        f'<link rel="stylesheet" href="{href}">'
        for href in (str(stylesheet), stylesheet.as_uri(), "../private.css")
    )
    (folder / "linked.html.j2").write_text(
        '{% extends "layout.html.j2" %}{% block content %}' + links + "<p>Hi</p>{% endblock %}\n",
        encoding="utf-8",
    )
    (folder / "linked.txt.j2").write_text("Hi\n", encoding="utf-8")
    email = make_renderer(folder).render_message(_message("linked"), _member(), now=NOW)
    assert "#abcdef" not in email.html
    assert "private.css" not in email.html
