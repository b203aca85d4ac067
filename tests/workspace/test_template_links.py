"""Every marketing email shows the unsubscribe and preference links, or the workspace is refused.

Validation renders each email and looks for both links in both parts: an ``<a href>`` to each
signed URL in the HTML, each URL in the text. Emails only transactional journeys send are exempt.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from nurture.errors import WorkspaceValidationError
from nurture.journeys import load_journeys
from nurture.workspace import load_workspace, transactional_templates, validate_templates

CONTENT = Path(__file__).resolve().parents[2] / "content"
TEMPLATES_DIR = CONTENT / "templates"
COMMUNITY = "Builders & Co"

PLAIN_TEXT = "Hello {{ member.first_name }},\n\nNews from {{ community_name }}.\n"
LINKED_TEXT = (
    PLAIN_TEXT + "Preferences: {{ preferences_url }}\nUnsubscribe: {{ unsubscribe_url }}\n"
)
LINKED_HTML = (
    '<html><body><p>Hello</p><a href="{{ preferences_url | safe_url }}">Preferences</a> '
    '<a href="{{ unsubscribe_url | safe_url }}">Unsubscribe</a></body></html>\n'
)

HTML_VARIANTS = {
    "no link at all": ("<html><body><p>Hello {{ member.first_name }}</p></body></html>\n", 2),
    "no preference link": (
        '<html><body><a href="{{ unsubscribe_url }}">Unsubscribe</a></body></html>\n',
        1,
    ),
    "no unsubscribe link": (
        '<html><body><a href="{{ preferences_url }}">Preferences</a></body></html>\n',
        1,
    ),
    "urls as plain words": (
        "<html><body><p>{{ unsubscribe_url }} {{ preferences_url }}</p></body></html>\n",
        2,
    ),
    "links in a comment": (
        '<html><body><!-- <a href="{{ unsubscribe_url }}">x</a> '
        '<a href="{{ preferences_url }}">y</a> --></body></html>\n',
        2,
    ),
    "hard-coded links": (
        '<html><body><a href="https://nurture.example.org/unsubscribe/abc">Unsubscribe</a>'
        '<a href="https://nurture.example.org/preferences/abc">Preferences</a></body></html>\n',
        2,
    ),
    "links in one language only": (
        "<html><body>{% if lang == 'fr' %}"
        '<a href="{{ unsubscribe_url }}">x</a><a href="{{ preferences_url }}">y</a>'
        "{% endif %}</body></html>\n",
        2,
    ),
}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A copy of the shipped templates, to add emails to."""
    return Path(shutil.copytree(TEMPLATES_DIR, tmp_path / "templates"))


def _email(folder: Path, html: str, text: str, name: str = "news") -> None:
    (folder / f"{name}.html.j2").write_text(html, encoding="utf-8")
    (folder / f"{name}.txt.j2").write_text(text, encoding="utf-8")


def _link_problems(problems: list) -> list:
    return [
        problem for problem in problems if "unsubscribe and preference links" in problem.message
    ]


def test_the_shipped_templates_show_both_links() -> None:
    assert validate_templates(TEMPLATES_DIR, community_name=COMMUNITY) == []


@pytest.mark.parametrize(("html", "missing"), HTML_VARIANTS.values(), ids=HTML_VARIANTS.keys())
def test_an_html_part_without_both_links_is_refused(folder: Path, html: str, missing: int) -> None:
    _email(folder, html, LINKED_TEXT)
    problems = validate_templates(folder, community_name=COMMUNITY)
    assert problems, "expected the missing links to be found"
    assert all(problem.line == 1 for problem in problems)
    assert {Path(problem.path).name for problem in problems} == {"news.html.j2"}
    message = problems[0].message
    assert "marketing email must show the unsubscribe and preference links" in message
    assert message.count("a link to {{") == missing
    assert "transactional: true" in message


def test_a_text_part_without_the_links_is_refused(folder: Path) -> None:
    _email(folder, LINKED_HTML, PLAIN_TEXT)
    problems = validate_templates(folder, community_name=COMMUNITY)
    assert [(Path(p.path).name, p.line) for p in problems] == [("news.txt.j2", 1)]
    assert "{{ unsubscribe_url }} and {{ preferences_url }}" in problems[0].message
    assert str(problems[0]).startswith(f"{folder / 'news.txt.j2'}:1: ")


def test_both_links_in_both_parts_pass(folder: Path) -> None:
    _email(folder, LINKED_HTML, LINKED_TEXT)
    assert validate_templates(folder, community_name=COMMUNITY) == []


def test_transactional_emails_are_exempt(folder: Path) -> None:
    _email(folder, HTML_VARIANTS["no link at all"][0], PLAIN_TEXT, name="notice")
    _email(folder, HTML_VARIANTS["no link at all"][0], PLAIN_TEXT, name="news")
    problems = validate_templates(folder, community_name=COMMUNITY, transactional={"notice"})
    assert {Path(problem.path).name for problem in _link_problems(problems)} == {
        "news.html.j2",
        "news.txt.j2",
    }


def test_a_template_is_transactional_only_when_every_journey_sending_it_is(
    tmp_path: Path,
) -> None:
    journeys = tmp_path / "journeys"
    journeys.mkdir()
    templates = tmp_path / "templates"
    templates.mkdir()
    for name in ("notice", "shared", "news"):
        _email(templates, LINKED_HTML, LINKED_TEXT, name=name)

    def journey(key: str, transactional: bool, *templates_sent: str) -> None:
        steps = "".join(
            f"  - {{id: s{i}, type: send, template: {name}, subject: Hi, next: s{i + 1}}}\n"
            for i, name in enumerate(templates_sent)
        )
        (journeys / f"{key}.yaml").write_text(
            f"id: {key}\nname: {key}\ncategory: care\ntransactional: {str(transactional).lower()}\n"
            "trigger: {type: member_joined, within_days: 7}\nsteps:\n"
            f"{steps}  - {{id: s{len(templates_sent)}, type: exit}}\n",
            encoding="utf-8",
        )

    journey("account", True, "notice", "shared")
    journey("promo", False, "shared", "news")
    loaded = load_journeys(journeys, templates)
    assert transactional_templates(loaded) == {"notice"}


def _workspace(tmp_path: Path, *, transactional: bool) -> Path:
    workspace = Path(shutil.copytree(CONTENT, tmp_path / "workspace"))
    templates = workspace / "templates"
    _email(templates, HTML_VARIANTS["no link at all"][0], PLAIN_TEXT, name="bare")
    journey = (workspace / "journeys" / "birthday.yaml").read_text(encoding="utf-8")
    journey = journey.replace("id: birthday", "id: bare_notice").replace(
        "template: birthday", "template: bare"
    )
    if transactional:
        journey = journey.replace("category: care", "category: care\ntransactional: true")
    (workspace / "journeys" / "bare_notice.yaml").write_text(journey, encoding="utf-8")
    return workspace


def test_the_workspace_check_refuses_a_marketing_email_without_links(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path, transactional=False)
    with pytest.raises(WorkspaceValidationError) as raised:
        load_workspace(workspace)
    names = {(Path(problem.path).name, problem.line) for problem in raised.value.problems}
    assert names == {("bare.html.j2", 1), ("bare.txt.j2", 1)}


def test_the_workspace_check_lets_a_transactional_email_without_links_through(
    tmp_path: Path,
) -> None:
    workspace = _workspace(tmp_path, transactional=True)
    loaded = load_workspace(workspace)
    assert "bare_notice" in {journey.id for journey in loaded.journeys}
