"""``load_workspace``: every marketer file in one order, cross-checked once; declared languages."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from sqlalchemy import select
from typer.testing import CliRunner

from nurture.cli import app
from nurture.delivery import STRINGS, TemplateRenderer
from nurture.errors import Problem, WorkspaceValidationError
from nurture.languages import DEFAULT_LANGUAGES, resolve_language
from nurture.runtime import Runtime
from nurture.settings import Settings
from nurture.stages import import_file
from nurture.storage import Member
from nurture.workspace import (
    WorkspaceConfig,
    WorkspacePaths,
    check_journey_files,
    load_workspace,
    read_workspace_config,
)
from tests.pipeline_helpers import CONTENT

GERMAN = {
    "recommended_for_you": "Für Sie ausgewählt",
    "why_for_you": "Warum für Sie:",
    "open_item": "Öffnen",
    "footer_reason": "Sie erhalten diese E-Mail als Mitglied von {community}.",
    "preferences": "E-Mail-Einstellungen verwalten",
    "unsubscribe": "Abmelden",
    "unsubscribe_text": "Mit einem Klick abmelden",
    "preferences_line": "E-Mail-Einstellungen verwalten: {url}",
    "unsubscribe_line": "Mit einem Klick abmelden: {url}",
    "kind.article": "Artikel",
    "kind.event": "Veranstaltung",
    "kind.webinar": "Webinar",
    "kind.masterclass": "Masterclass",
    "kind.discussion": "Diskussion",
    "time_in_zone": "{time} Uhr ({city})",
    "time_in_utc": "{time} Uhr UTC",
}


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A copy of the demo workspace (content/), to change."""
    return Path(shutil.copytree(CONTENT, tmp_path / "workspace"))


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def _problems(workspace: Path) -> list[Problem]:
    with pytest.raises(WorkspaceValidationError) as raised:
        load_workspace(workspace)
    return raised.value.problems


def _line_of(path: Path, needle: str) -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    return next(number for number, line in enumerate(lines, start=1) if needle in line)


def test_the_demo_workspace_loads() -> None:
    workspace = load_workspace(CONTENT)
    assert workspace.root == CONTENT
    assert workspace.languages == DEFAULT_LANGUAGES == ("en", "fr")
    assert workspace.config.default_language == "en"
    assert workspace.question_keys[:2] == ["role", "community_kind"]
    assert workspace.segment_keys == ["french-founders", "event-regulars", "quiet-newcomers"]
    assert workspace.sending_rules.budget is not None
    journeys = sorted(p for p in (CONTENT / "journeys").iterdir() if p.suffix == ".yaml")
    assert [Path(j.source_path).name for j in workspace.journeys] == [p.name for p in journeys]
    assert len(workspace.content_items) == len(list((CONTENT / "library").rglob("*.md")))
    assert workspace.config.missing_ui_strings() == {}


def test_the_settings_name_the_same_files() -> None:
    settings = Settings(workspace=CONTENT)
    paths = WorkspacePaths(CONTENT)
    assert settings.questionnaire_path == paths.questionnaire
    assert settings.content_dir == paths.library
    assert settings.segments_path == paths.segments
    assert settings.sending_rules_path == paths.sending
    assert settings.journeys_dir == paths.journeys
    assert settings.templates_dir == paths.templates


def test_every_problem_of_every_file_is_listed_in_one_error(workspace: Path) -> None:
    declaration = workspace / "workspace.yaml"
    _replace(declaration, "languages: [en, fr]", "langages: [en, fr]")
    questionnaire = workspace / "questionnaire.yaml"
    _replace(questionnaire, "    kind: single_choice", "    knd: single_choice")
    item = workspace / "library" / "build-a-customer-academy.md"
    _replace(item, "kind: article", "kind: podcast")
    sending = workspace / "sending.yaml"
    _replace(sending, "  messages: 3", "  mesages: 3")
    journey = workspace / "journeys" / "welcome.yaml"
    _replace(journey, "duration: 3d", "duraton: 3d")
    template = workspace / "templates" / "reengagement.txt.j2"
    _replace(template, "{{ community_name }}", "{{ comunity }}")

    problems = _problems(workspace)

    by_file = {Path(p.path).name for p in problems}
    assert by_file >= {
        "workspace.yaml",
        "questionnaire.yaml",
        "build-a-customer-academy.md",
        "sending.yaml",
        "welcome.yaml",
        "reengagement.txt.j2",
    }
    typo = next(
        p for p in problems if Path(p.path) == questionnaire and p.field == "questions.0.knd"
    )
    assert (typo.line, typo.column) == (_line_of(questionnaire, "knd:"), 5)
    assert any(Path(p.path) == item and p.field == "kind" for p in problems)
    assert any(Path(p.path) == sending and p.field == "budget.mesages" for p in problems)
    assert any(Path(p.path) == journey and "duraton" in p.message for p in problems)
    # Without a valid questionnaire its keys are unknown: journeys and rules are not blamed.
    assert not [p for p in problems if "unknown question" in p.message]


def test_journey_files_are_checked_against_the_workspace(workspace: Path, tmp_path: Path) -> None:
    journey = tmp_path / "extra.yaml"
    journey.write_text(
        "id: extra\nname: Extra\ncategory: care\n"
        "trigger: {type: segment_entered, segment: french-founder}\n"
        "audience: \"answers.rol == 'founder'\"\n"
        "steps: [{id: done, type: exit}]\n",
        encoding="utf-8",
    )
    definitions, problems = check_journey_files(workspace, [journey])
    assert definitions == []
    assert {(p.line, p.field) for p in problems} == {(4, "trigger.segment"), (5, "audience")}
    welcome = workspace / "journeys" / "welcome.yaml"
    definitions, problems = check_journey_files(workspace, [welcome])
    assert (problems, [d.id for d in definitions]) == ([], ["welcome"])


def test_a_workspace_without_its_declaration_writes_in_english_and_french(
    workspace: Path,
) -> None:
    (workspace / "workspace.yaml").unlink()
    assert read_workspace_config(workspace) == (WorkspaceConfig(), [])
    assert load_workspace(workspace).languages == ("en", "fr")


@pytest.mark.parametrize(
    ("text", "line", "column", "field", "words"),
    [
        ("languages: [en, fr, en]\n", 1, 21, "languages.2", "declared twice"),
        ("languages: [EN]\n", 1, 13, "languages.0", "should match pattern"),
        ("languages: []\n", 1, 1, "languages", "at least 1 item"),
        (
            "languages: [en]\nstrings:\n  de: {open_item: Öffnen}\n",
            3,
            3,
            "strings.de",
            "not declared",
        ),
        ("langages: [en, fr]\n", 1, 1, "langages", "did you mean 'languages'"),
    ],
)
def test_the_declaration_is_checked(
    workspace: Path, text: str, line: int, column: int, field: str, words: str
) -> None:
    path = workspace / "workspace.yaml"
    path.write_text(text, encoding="utf-8")
    config, problems = read_workspace_config(workspace)
    assert config == WorkspaceConfig()  # the defaults, so the other files are still checked
    matching = [
        p
        for p in problems
        if (p.line, p.column, p.field) == (line, column, field) and words in p.message
    ]
    assert matching, problems


def _add_language(path: Path, code: str) -> None:
    """Give every ``{en: ..., fr: ...}`` text of a YAML file a ``code`` version too."""

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            if set(value) == {"en", "fr"}:
                return {**value, code: f"[{code}] {value['en']}"}
            return {key: walk(item) for key, item in value.items()}
        if isinstance(value, list):
            return [walk(item) for item in value]
        return value

    data = walk(yaml.safe_load(path.read_text(encoding="utf-8")))
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")


def _declare(workspace: Path, languages: list[str], strings: dict[str, Any] | None = None) -> None:
    document: dict[str, Any] = {"languages": languages}
    if strings:
        document["strings"] = strings
    (workspace / "workspace.yaml").write_text(
        yaml.safe_dump(document, allow_unicode=True), encoding="utf-8"
    )


def _german_workspace(workspace: Path, *, strings: bool = True) -> None:
    _declare(workspace, ["en", "fr", "de"], {"de": GERMAN} if strings else None)
    _add_language(workspace / "questionnaire.yaml", "de")
    _add_language(workspace / "segments.yaml", "de")
    item = workspace / "library" / "build-a-customer-academy.md"
    _replace(item, "language: en", "language: de")
    welcome = workspace / "journeys" / "welcome.yaml"
    _replace(
        welcome,
        '      fr: "Bienvenue dans {{ community_name }}, {{ member.first_name }} !"',
        '      fr: "Bienvenue dans {{ community_name }}, {{ member.first_name }} !"\n'
        '      de: "Willkommen bei {{ community_name }}, {{ member.first_name }}!"',
    )
    brand = workspace / "brand.yaml"
    brand.write_text(
        brand.read_text(encoding="utf-8")
        + "  de: Sie erhalten diese E-Mail als Mitglied von {community}.\n",
        encoding="utf-8",
    )


def _render_for(workspace: Path, language: str) -> str:
    config, problems = read_workspace_config(workspace)
    assert problems == []
    renderer = TemplateRenderer(
        workspace / "templates",
        community_name="Builders",
        public_base_url="https://example.org",
        unsubscribe_secret="secret",
        languages=config.languages,
        strings=config.strings,
    )
    message = SimpleNamespace(
        id=1,
        template="welcome",
        subject="Hi",
        context={"items": [], "slots": {}, "trigger": {}, "questionnaire_answered": False},
        journey_key="welcome",
        step_id="send_welcome",
    )
    member = Member(id=1, email="anna@example.org", first_name="Anna", language=language)
    return renderer.render_message(message, member).text  # type: ignore[arg-type]


def test_a_third_language_is_declared_not_coded(workspace: Path, tmp_path: Path) -> None:
    _german_workspace(workspace)

    loaded = load_workspace(workspace)  # every template rendered in de too

    assert loaded.languages == ("en", "fr", "de")
    assert loaded.config.missing_ui_strings() == {}
    role = loaded.questionnaire.question("role")
    assert role.labels.get("de") == f"[de] {role.labels.get('en')}"
    item = next(i for i in loaded.content_items if i.key == "build-a-customer-academy")
    assert item.language == "de"
    welcome = next(j for j in loaded.journeys if j.id == "welcome")
    assert welcome.steps[0].subject_for("de").startswith("Willkommen")
    assert "Mit einem Klick abmelden" in _render_for(workspace, "de")
    assert "Se désinscrire en un clic" in _render_for(workspace, "fr")
    assert resolve_language("de-AT", loaded.languages) == "de"

    members = tmp_path / "members.csv"
    members.write_text(
        "external_id,email,first_name,language\n"
        "m-1,anna@example.org,Anna,de\n"
        "m-2,ben@example.org,Ben,\n"
        "m-3,carl@example.org,Carl,it\n",
        encoding="utf-8",
    )
    settings = Settings(workspace=workspace, data_dir=tmp_path / "data")
    with Runtime(settings) as runtime:
        summary = import_file(runtime, "members", members)
        assert (summary.stored, summary.refused) == (2, 1)
        assert "expected one of en, fr, de, found 'it'" in str(summary.problems[0])
        with runtime.session() as session:
            rows = session.execute(select(Member.email, Member.language)).tuples().all()
    languages = dict(rows)
    assert languages == {"anna@example.org": "de", "ben@example.org": "en"}


def test_the_first_language_is_the_default(workspace: Path, tmp_path: Path) -> None:
    _declare(workspace, ["fr", "en"])
    assert load_workspace(workspace).config.default_language == "fr"
    members = tmp_path / "members.csv"
    members.write_text("email,language\nzoe@example.org,\n", encoding="utf-8")
    settings = Settings(workspace=workspace, data_dir=tmp_path / "data")
    with Runtime(settings) as runtime:
        assert import_file(runtime, "members", members).stored == 1
        with runtime.session() as session:
            assert session.scalars(select(Member.language)).one() == "fr"
    assert "Se désinscrire en un clic" in _render_for(workspace, "de")  # not declared: default


def test_a_declared_language_needs_its_labels_and_items_their_languages(
    workspace: Path,
) -> None:
    _declare(workspace, ["en", "fr", "de"], {"de": GERMAN})
    item = workspace / "library" / "build-a-customer-academy.md"
    _replace(item, "language: en", "language: it")

    problems = _problems(workspace)

    questionnaire = workspace / "questionnaire.yaml"
    missing = [p for p in problems if Path(p.path) == questionnaire]
    assert missing and all("missing required field 'de'" in p.message for p in missing)
    assert missing[0].field == "questions.0.labels.de"
    assert missing[0].line == _line_of(questionnaire, "labels:")
    assert any(Path(p.path) == workspace / "segments.yaml" for p in problems)
    (wrong,) = [p for p in problems if Path(p.path) == item]
    assert wrong.field == "language" and wrong.line == _line_of(item, "language: it")
    assert "not one of the workspace's languages (en, fr, de)" in wrong.message


def test_a_language_without_its_strings_falls_back_and_validate_says_so(
    workspace: Path, tmp_path: Path
) -> None:
    _german_workspace(workspace, strings=False)
    loaded = load_workspace(workspace)
    assert loaded.config.missing_ui_strings() == {"de": list(STRINGS["en"])}
    assert "Unsubscribe in one click" in _render_for(workspace, "de")

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
    assert result.exit_code == 0, result.output
    assert "note: language 'de' has no UI strings recommended_for_you" in result.stderr
