import datetime as dt
import html
import re
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace
from typing import get_args

import pytest

from nurture.delivery import (
    STRINGS,
    TemplateRenderer,
    list_email_templates,
    resolve_language,
    verify_unsubscribe_token,
)
from nurture.errors import TemplateError
from nurture.languages import DEFAULT_LANGUAGES
from nurture.workspace.library import ContentKind

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
    assert 'href="https://example.org/b2b"' in email.html
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


# --- CSS inlining ---------------------------------------------------------------------------


class _Elements(HTMLParser):
    """Every start tag of a document, with its attributes; the text of its <style> blocks."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.styles: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {name: value or "" for name, value in attrs}))
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.styles.append(data)


def _elements(html: str) -> _Elements:
    parser = _Elements()
    parser.feed(html)
    return parser


def _declarations(style: str) -> dict[str, str]:
    pairs = (part.split(":", 1) for part in style.split(";") if ":" in part)
    return {name.strip(): " ".join(value.split()) for name, value in pairs}


def _css_classes(source: str) -> set[str]:
    return {name for value in re.findall(r'class="([^"{]*)"', source) for name in value.split()}


def test_every_styled_element_gets_its_css_inline(renderer):
    context = {"items": ITEMS, "questionnaire_url": "https://example.org/questionnaire"}
    email = renderer.render_message(_message(context=context), _member(), now=NOW)
    document = _elements(email.html)
    body = [(tag, attrs) for tag, attrs in document.tags if tag not in ("html", "head", "meta")]
    classed = [(tag, attrs) for tag, attrs in body if attrs.get("class")]
    assert len(classed) > 10
    for tag, attrs in classed:
        assert attrs.get("style"), (tag, attrs)
    paragraphs = [_declarations(attrs.get("style", "")) for tag, attrs in body if tag == "p"]
    assert paragraphs and all("margin" in declarations for declarations in paragraphs)
    button = next(attrs for _, attrs in body if attrs.get("class") == "button")
    assert _declarations(button["style"])["background-color"] == "#2f6f5e"
    # Only the @media rules are left in a <style> block, for the clients that read it.
    assert len(document.styles) == 1
    assert document.styles[0].strip().startswith("@media")
    assert ".button" not in document.styles[0]


def test_inline_css_keeps_the_look_of_the_layout(renderer):
    email = renderer.render_message(_message(), _member(), now=NOW)
    tags = _elements(email.html).tags
    masthead = next(attrs for _, attrs in tags if attrs.get("class") == "masthead")
    assert _declarations(masthead["style"]) == {
        "padding": "20px 32px",
        "border-bottom": "3px solid #2f6f5e",
        "font-family": "Georgia, 'Times New Roman', serif",
        "font-size": "20px",
        "font-weight": "bold",
        "color": "#2f6f5e",
    }
    lead_in = next(attrs for _, attrs in tags if attrs.get("class") == "lead-in")
    assert _declarations(lead_in["style"]) == {"margin": "0 0 8px 0"}


def test_every_class_the_templates_use_is_defined_in_the_layout():
    layout = (TEMPLATES_DIR / "layout.html.j2").read_text(encoding="utf-8")
    stylesheet = layout[layout.index("<style>") : layout.index("</style>")]
    defined = set(re.findall(r"\.([a-z][a-z0-9-]*)", stylesheet))
    for path in sorted(TEMPLATES_DIR.glob("*.html.j2")):
        used = _css_classes(path.read_text(encoding="utf-8"))
        assert used <= defined, (path.name, sorted(used - defined))


def test_a_style_attribute_wins_and_remote_stylesheets_are_never_fetched(scratch_templates):
    _write(
        scratch_templates,
        "styled.html.j2",
        '{% extends "layout.html.j2" %}{% block content %}'
        '<link rel="stylesheet" href="http://127.0.0.1:9/never.css">'
        '<p class="lead-in" style="margin:0 0 2px 0; color:#ff0000;">Hello</p>'
        "{% endblock %}\n",
    )
    _write(scratch_templates, "styled.txt.j2", "Hello\n")
    renderer = make_renderer(scratch_templates)
    email = renderer.render_message(_message(template="styled"), _member(), now=NOW)
    assert "never.css" not in email.html
    hello = re.search(r'<p class="lead-in" style="([^"]*)">Hello</p>', email.html)
    assert hello is not None, email.html
    assert _declarations(hello.group(1)) == {"margin": "0 0 2px 0", "color": "#ff0000"}


def test_autoescape_survives_inlining(renderer):
    items = [dict(ITEMS[0], title="<img src=x onerror=alert(1)> & co")]
    email = renderer.render_message(_message(context={"items": items}), _member(), now=NOW)
    assert "<img" not in email.html
    assert "&lt;img src=x onerror=alert(1)&gt; &amp; co" in email.html


def test_text_part_has_no_markup(renderer):
    for language in ("en", "fr"):
        email = renderer.render_message(_message(), _member(language=language), now=NOW)
        assert not re.search(r"<[a-z/!][^>]*>", email.text), email.text


# --- French and English ---------------------------------------------------------------------


def test_every_ui_string_exists_in_both_languages():
    assert set(STRINGS) == set(DEFAULT_LANGUAGES)
    keys = {language: set(strings) for language, strings in STRINGS.items()}
    assert keys["fr"] == keys["en"]
    for language, strings in STRINGS.items():
        for key, text in strings.items():
            assert text.strip(), (language, key)
            placeholders = set(re.findall(r"\{(\w+)\}", text))
            assert placeholders == set(re.findall(r"\{(\w+)\}", STRINGS["en"][key])), key


def test_every_string_the_layouts_and_partials_use_is_translated():
    used = {f"kind.{kind}" for kind in get_args(ContentKind)}
    for path in sorted(TEMPLATES_DIR.glob("*.j2")):
        if path.name.startswith(("layout.", "_")):
            source = path.read_text(encoding="utf-8")
            used |= set(re.findall(r"""\bt\(\s*['"]([\w]+(?:\.[\w]+)*)['"]\s*[,)]""", source))
    assert {"footer_reason", "preferences", "unsubscribe_text", "why_for_you"} <= used
    for language in DEFAULT_LANGUAGES:
        assert used <= set(STRINGS[language]), (language, sorted(used - set(STRINGS[language])))


@pytest.mark.parametrize("language", ["en", "fr"])
def test_layout_and_partials_speak_the_members_language(renderer, language):
    email = renderer.render_message(_message(), _member(language=language), now=NOW)
    strings = STRINGS[language]
    for key in ("preferences", "unsubscribe_text", "kind.masterclass", "kind.event"):
        assert html.escape(strings[key], quote=False) in email.html, key
    assert strings["why_for_you"].replace("\u00a0", "&nbsp;") in email.html
    footer = strings["footer_reason"].format(community="Builders & Co")
    assert footer in email.text
    other = STRINGS["fr" if language == "en" else "en"]
    assert other["unsubscribe_text"] not in email.text


def test_an_unknown_kind_shows_as_it_is(renderer):
    items = [dict(ITEMS[0], kind="podcast")]
    email = renderer.render_message(_message(context={"items": items}), _member(), now=NOW)
    assert "podcast" in email.html and "podcast" in email.text


def test_an_edited_template_is_picked_up_once_the_reload_check_is_due(
    scratch_templates, monkeypatch
):
    import nurture.delivery.rendering as rendering

    _write(scratch_templates, "edit.html.j2", "<p>first</p>\n")
    _write(scratch_templates, "edit.txt.j2", "first\n")
    renderer = make_renderer(scratch_templates)
    assert renderer.render_message(_message(template="edit"), _member(), now=NOW).text == "first\n"
    _write(scratch_templates, "edit.txt.j2", "second, a longer text\n")
    # Within RELOAD_CHECK_SECONDS of the last check the cached template serves.
    monkeypatch.setattr(rendering, "RELOAD_CHECK_SECONDS", 3600.0)
    assert renderer.render_message(_message(template="edit"), _member(), now=NOW).text == "first\n"
    monkeypatch.setattr(rendering, "RELOAD_CHECK_SECONDS", 0.0)
    email = renderer.render_message(_message(template="edit"), _member(), now=NOW)
    assert email.text == "second, a longer text\n"


def test_ui_strings_with_equal_fields_of_other_types_format_apart(scratch_templates):
    _write(
        scratch_templates,
        "fmt.html.j2",
        "{{ t('x', default='[{n}]', n=1) }}{{ t('x', default='[{n}]', n=true) }}"
        "{{ t('x', default='[{n}]', n=1.0) }}{{ t('x', default='[{n}]', n=1) }}"
        "{{ t('x', default='[{n}]', n=[1]) }}\n",
    )
    _write(scratch_templates, "fmt.txt.j2", "{{ t('x', default='[{n}]', n=nothing) }}\n")
    renderer = make_renderer(scratch_templates)
    with pytest.raises(TemplateError, match=r"fmt\.txt\.j2 line 1.*'nothing' is undefined"):
        renderer.render_message(_message(template="fmt"), _member(), now=NOW)
    assert (
        renderer.render_template(
            "fmt.html.j2", {**renderer.build_context(_message(template="fmt"), _member(), NOW)}
        )
        == "[1][True][1.0][1][[1]]"
    )


def test_dict_keys_read_as_attributes_and_dict_methods_stay_sandboxed(scratch_templates):
    _write(
        scratch_templates,
        "d.html.j2",
        "{{ d.a }}|{{ d.get('a') }}|{{ d.keys() | list | join(',') }}\n",
    )
    _write(scratch_templates, "m.html.j2", "{{ d.missing }}\n")
    _write(scratch_templates, "u.html.j2", "{{ d.update({'a': 2}) }}\n")
    renderer = make_renderer(scratch_templates)
    assert renderer.render_template("d.html.j2", {"d": {"a": 1, "b": 2}}) == "1|1|a,b"
    with pytest.raises(TemplateError, match="has no attribute 'missing'"):
        renderer.render_template("m.html.j2", {"d": {"a": 1}})
    with pytest.raises(TemplateError, match="unsafe"):
        renderer.render_template("u.html.j2", {"d": {"a": 1}})
