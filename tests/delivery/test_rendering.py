import datetime as dt
from pathlib import Path
from types import SimpleNamespace

import pytest

from nurture.delivery import (
    TemplateRenderer,
    list_email_templates,
    resolve_language,
    verify_unsubscribe_token,
)
from nurture.errors import TemplateError

from .conftest import ITEMS, NOW, SECRET, TEMPLATES_DIR, make_renderer


def _member(**overrides):
    values = {
        "id": 7,
        "first_name": "Ada",
        "last_name": "Lovelace",
        "email": "ada@example.org",
        "language": "en",
    }
    values.update(overrides)
    return SimpleNamespace(**values)


def _message(**overrides):
    values = {
        "id": 12,
        "template": "welcome",
        "subject": "Welcome to {{ community_name }}, {{ member.first_name }}!",
        "context": {"items": ITEMS},
        "journey_key": "welcome",
        "step_id": "hello",
    }
    values.update(overrides)
    return SimpleNamespace(**values)


WELCOME_COPY = {
    "en": ("Hi Ada,", "Thank you for joining us", "welcome event", "The Builders &amp; Co team"),
    "fr": ("Bonjour Ada,", "Merci de nous avoir rejoints", "accueil", "L'équipe Builders &amp; Co"),
}


@pytest.mark.parametrize("language", ["en", "fr"])
@pytest.mark.parametrize("template", ["welcome", "welcome_followup"])
def test_both_parts_render_with_items_and_reasons(renderer, language, template):
    email = renderer.render_message(
        _message(template=template), _member(language=language), now=NOW
    )
    for part in (email.html, email.text):
        assert "Grow a B2B community" in part
        assert "you said you want to grow a B2B community" in part
        assert "https://example.org/b2b" in part
        assert "Ada" in part
        assert "/unsubscribe/" in part
        assert "/preferences/" in part
    assert '<a href="https://example.org/b2b"' in email.html
    assert "Masterclass" in email.html
    assert email.subject == "Welcome to Builders & Co, Ada!"
    assert f'<html lang="{language}">' in email.html
    if language == "fr":
        assert "Pourquoi pour vous" in email.text
        assert "Se désinscrire" in email.text
    else:
        assert "Why for you:" in email.text
        assert "Unsubscribe" in email.text


@pytest.mark.parametrize("language", ["en", "fr"])
def test_welcome_is_personal_and_shows_three_items(renderer, language):
    context = {
        "items": ITEMS,
        "questionnaire_url": "https://example.org/questionnaire",
        "welcome_event": {"when": "3 December", "url": "https://example.org/welcome-event"},
    }
    email = renderer.render_message(_message(context=context), _member(language=language), now=NOW)
    for snippet in WELCOME_COPY[language]:
        assert snippet in email.html
    assert "https://example.org/questionnaire" in email.html
    assert "https://example.org/questionnaire" in email.text
    assert "https://example.org/welcome-event" in email.text
    assert "3 December" in email.html
    assert "A fourth item" not in email.html
    assert "A fourth item" not in email.text


def test_welcome_skips_questionnaire_when_answered_and_optional_context(renderer):
    context = {
        "items": ITEMS,
        "questionnaire_url": "https://example.org/questionnaire",
        "questionnaire_answered": True,
    }
    email = renderer.render_message(_message(context=context), _member(), now=NOW)
    assert "questionnaire" not in email.text
    minimal = renderer.render_message(_message(context={}), _member(), now=NOW)
    assert "Hi Ada," in minimal.text
    assert "Why for you" not in minimal.text


def test_unsubscribe_headers_carry_a_valid_token(renderer):
    email = renderer.render_message(_message(), _member(), now=NOW)
    header = email.headers["List-Unsubscribe"]
    assert header.startswith("<https://nurture.example.org/unsubscribe/")
    assert header.endswith(">")
    assert email.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    token = header[1:-1].rsplit("/", 1)[1]
    assert verify_unsubscribe_token(token, SECRET) == 7
    assert header[1:-1] in email.text


def test_html_is_autoescaped_text_and_subject_are_not(renderer):
    member = _member(first_name="<script>alert(1)</script>")
    email = renderer.render_message(_message(), member, now=NOW)
    assert "<script>" not in email.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in email.html
    assert "<script>alert(1)</script>" in email.text
    assert email.subject == "Welcome to Builders & Co, <script>alert(1)</script>!"


def test_subject_is_one_line(renderer):
    message = _message(subject="  Hello\n{{ member.first_name }}\r\n  again ")
    assert renderer.render_message(message, _member(), now=NOW).subject == "Hello Ada again"


def test_unsafe_item_urls_become_hash(renderer):
    items = [dict(ITEMS[0], url="javascript:alert(1)")]
    email = renderer.render_message(_message(context={"items": items}), _member(), now=NOW)
    assert "javascript:" not in email.html
    assert "javascript:" not in email.text


def _write(folder: Path, name: str, text: str) -> None:
    (folder / name).write_text(text, encoding="utf-8")


@pytest.fixture
def scratch_templates(tmp_path):
    for name in ("layout.html.j2", "layout.txt.j2", "_items.html.j2", "_items.txt.j2"):
        _write(tmp_path, name, (TEMPLATES_DIR / name).read_text(encoding="utf-8"))
    return tmp_path


def test_syntax_error_names_template_and_line(scratch_templates):
    _write(scratch_templates, "broken.html.j2", "line one\nline two\n{% if %}\n")
    _write(scratch_templates, "broken.txt.j2", "fine\n")
    renderer = make_renderer(scratch_templates)
    with pytest.raises(TemplateError, match=r"broken\.html\.j2 line 3.*syntax error"):
        renderer.render_message(_message(template="broken"), _member(), now=NOW)


def test_undefined_variable_names_template_and_line(scratch_templates):
    _write(scratch_templates, "typo.html.j2", "<p>Hi</p>\n\n<p>{{ membre.first_name }}</p>\n")
    _write(scratch_templates, "typo.txt.j2", "Hi\n")
    renderer = make_renderer(scratch_templates)
    with pytest.raises(TemplateError, match=r"typo\.html\.j2 line 3.*'membre' is undefined"):
        renderer.render_message(_message(template="typo"), _member(), now=NOW)


def test_error_in_a_partial_names_the_partial(scratch_templates):
    _write(scratch_templates, "_bad.txt.j2", "ok\n{{ nope }}\n")
    _write(scratch_templates, "inc.html.j2", "<p>x</p>\n")
    _write(scratch_templates, "inc.txt.j2", "top\n{% include '_bad.txt.j2' %}\n")
    renderer = make_renderer(scratch_templates)
    with pytest.raises(TemplateError, match=r"_bad\.txt\.j2 line 2 \(rendering inc\.txt\.j2\)"):
        renderer.render_message(_message(template="inc"), _member(), now=NOW)


def test_missing_part_is_an_error(scratch_templates):
    _write(scratch_templates, "lonely.html.j2", "<p>x</p>\n")
    renderer = make_renderer(scratch_templates)
    with pytest.raises(TemplateError, match=r"missing lonely\.txt\.j2"):
        renderer.render_message(_message(template="lonely"), _member(), now=NOW)


def test_template_name_cannot_leave_the_folder(renderer):
    with pytest.raises(TemplateError, match="expected a name"):
        renderer.render_message(_message(template="../secrets"), _member(), now=NOW)


def test_subject_errors_name_the_line(renderer):
    with pytest.raises(TemplateError, match=r"subject of message 12.*line 2.*undefined"):
        renderer.render_message(_message(subject="Hi\n{{ nobody }}"), _member(), now=NOW)
    with pytest.raises(TemplateError, match=r"subject of message 12.*syntax error"):
        renderer.render_message(_message(subject="Hi {{ "), _member(), now=NOW)


SANDBOX_ESCAPES = [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ t.__globals__ }}",
    "{{ member.__class__ }}",
    "{{ items.append(1) }}",
    "{{ self._TemplateReference__context }}",
]


@pytest.mark.parametrize("source", SANDBOX_ESCAPES)
def test_sandbox_escapes_are_refused_in_templates(scratch_templates, source):
    _write(scratch_templates, "evil.html.j2", "<p>hello</p>\n" + source + "\n")
    _write(scratch_templates, "evil.txt.j2", "hello\n")
    renderer = make_renderer(scratch_templates)
    with pytest.raises(TemplateError, match=r"evil\.html\.j2"):
        renderer.render_message(_message(template="evil"), _member(), now=NOW)


@pytest.mark.parametrize("source", SANDBOX_ESCAPES)
def test_sandbox_escapes_are_refused_in_subjects(renderer, source):
    with pytest.raises(TemplateError, match="subject of message 12"):
        renderer.render_message(_message(subject=source), _member(), now=NOW)


def test_unknown_ui_string_is_a_template_error(scratch_templates):
    _write(scratch_templates, "t.html.j2", "{{ t('no_such_key') }}\n")
    _write(scratch_templates, "t.txt.j2", "x\n")
    renderer = make_renderer(scratch_templates)
    with pytest.raises(TemplateError, match=r"t\.html\.j2 line 1.*no_such_key"):
        renderer.render_message(_message(template="t"), _member(), now=NOW)


@pytest.mark.parametrize(
    ("tag", "expected"),
    [("fr", "fr"), ("fr-CA", "fr"), ("FR_fr", "fr"), ("en-GB", "en"), ("de", "en"), (None, "en")],
)
def test_resolve_language(tag, expected):
    assert resolve_language(tag) == expected


def test_shipped_templates_are_listed():
    templates = list_email_templates(TEMPLATES_DIR)
    assert templates == sorted(templates)
    assert {"welcome", "welcome_followup", "birthday", "digest"} <= set(templates)
    assert not any(name.startswith("_") or name == "layout" for name in templates)


def test_renderer_accepts_a_relative_folder(monkeypatch):
    monkeypatch.chdir(TEMPLATES_DIR.parent)
    renderer = TemplateRenderer(
        "templates",
        community_name="C",
        public_base_url="http://localhost:8000",
        unsubscribe_secret=SECRET,
    )
    email = renderer.render_message(_message(), _member(), now=NOW + dt.timedelta(days=1))
    assert "Hi Ada," in email.text
