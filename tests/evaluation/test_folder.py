"""Dataset folders: the example loads, and every kind of bad file is refused with file and line."""

import datetime as dt
import shutil
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from nurture.evaluation import (
    EvaluationDataError,
    load_dataset_folder,
    nurture_sandbox,
    stage_folder,
)
from nurture.evaluation.folder import REFERENCE_TIME, library_items
from nurture.settings import Settings
from nurture.storage import Answer, ContentItem
from nurture.workspace import load_content_item, load_questionnaire, sync_content_items

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "evaluation"


def test_the_example_dataset_loads() -> None:
    dataset = load_dataset_folder(EXAMPLE)

    assert len(dataset.member_ids) == 100
    assert len(dataset.item_ids) == 35
    assert 300 <= len(dataset.train) + len(dataset.test) <= 700
    kinds = {question.column: question.kind for question in dataset.questions}
    assert kinds == {
        "role": "single_choice",
        "interests": "multiple_choice",
        "experience_years": "scale",
    }
    assert dataset.now == max(dataset.train_times)
    data = dataset.evaluation_data()
    assert len(data.members_to_evaluate("cold-start")) == 15
    assert len(data.members_to_evaluate("warm")) > 60


def test_the_example_files_are_what_the_script_writes(tmp_path: Path) -> None:
    script = tmp_path / "generate.py"
    shutil.copy(EXAMPLE / "generate.py", script)
    namespace: dict[str, object] = {"__name__": "example", "__file__": str(script)}
    exec(compile(script.read_text(encoding="utf-8"), str(script), "exec"), namespace)
    namespace["main"]()  # type: ignore[operator]
    for name in ("members.csv", "items.csv", "train.csv", "test.csv"):
        assert (tmp_path / name).read_bytes() == (EXAMPLE / name).read_bytes(), name


def _folder(tmp_path: Path, **files: str) -> Path:
    contents = {
        "members": "id,role,text\nm1,founder,I want to grow\nm2,maintainer,\n",
        "items": "id,title,text,tags\ni1,Growth,How to grow,growth|b2b\ni2,Code,Review code,\n",
        "train": "member_id,item_id\nm1,i1\n",
        "test": "member_id,item_id,weight,timestamp\nm1,i2,2,2025-01-02T00:00:00Z\nm2,i1,,\n",
    }
    contents.update(files)
    tmp_path.mkdir(parents=True, exist_ok=True)
    for name, text in contents.items():
        (tmp_path / f"{name}.csv").write_text(text, encoding="utf-8")
    return tmp_path


def _problems(folder: Path) -> list[str]:
    with pytest.raises(EvaluationDataError) as error:
        load_dataset_folder(folder)
    return [str(problem) for problem in error.value.problems]


def test_a_minimal_folder_with_optional_columns_left_out(tmp_path: Path) -> None:
    dataset = load_dataset_folder(_folder(tmp_path))

    assert dataset.train_times == [REFERENCE_TIME]
    assert dataset.test.weight.tolist() == [2.0, 1.0]
    assert not dataset.uses_languages


def test_timestamps_read_iso_and_unix_seconds(tmp_path: Path) -> None:
    folder = _folder(
        tmp_path,
        train="member_id,item_id,timestamp\nm1,i1,1735689600\nm1,i2,2025-01-03 10:00:00\n",
    )
    assert load_dataset_folder(folder).train_times == [
        dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
        dt.datetime(2025, 1, 3, 10, tzinfo=dt.UTC),
    ]


def test_a_missing_folder_or_file(tmp_path: Path) -> None:
    assert _problems(tmp_path / "nowhere") == [f"{tmp_path / 'nowhere'}: dataset folder not found"]
    folder = _folder(tmp_path)
    (folder / "test.csv").unlink()
    assert _problems(folder) == [f"{folder / 'test.csv'}: file not found"]


def test_every_bad_record_is_named_with_file_and_line(tmp_path: Path) -> None:
    folder = _folder(
        tmp_path,
        members="id,language\nm1,en\nm1,en\n,fr\nm2,de\n",
        items="id,title,language\ni1,Growth,en\ni2,,fr\n",
        train=(
            "member_id,item_id,weight,timestamp\n"
            "m1,i1,1,\n"
            "m9,i1,1,\n"
            "m1,i7,1,\n"
            "m1,i1,-2,\n"
            "m1,i1,1,yesterday\n"
        ),
    )
    members, items, train = folder / "members.csv", folder / "items.csv", folder / "train.csv"

    assert _problems(folder) == [
        f"{members}:3: duplicate id 'm1': line 2 has it",
        f"{members}:4 [id]: empty id",
        f"{members}:5 [language]: language 'de': expected en or fr",
        f"{items}:3 [title]: empty title",
        f"{train}:3: member 'm9' is not in members.csv",
        f"{train}:4: item 'i7' is not in items.csv",
        f"{train}:5 [weight]: weight '-2': expected a positive number",
        f"{train}:6 [timestamp]: timestamp 'yesterday': expected ISO 8601 "
        "(2024-05-01T09:30:00Z) or Unix seconds",
    ]


def test_bad_headers_are_refused_whole(tmp_path: Path) -> None:
    folder = _folder(
        tmp_path,
        train="member,item_id\nm1,i1\n",
        test="member_id,item_id,item_id\nm1,i1,i1\n",
    )
    assert _problems(folder) == [
        f"{folder / 'train.csv'}:1 [member_id]: required column 'member_id' is missing",
        f"{folder / 'train.csv'}:1 [member]: unknown column 'member'; expected member_id, "
        "item_id, weight, timestamp",
        f"{folder / 'test.csv'}:1 [item_id]: column 'item_id' appears more than once",
    ]


def test_every_column_needs_a_name(tmp_path: Path) -> None:
    folder = _folder(tmp_path, members="id,,role\nm1,x,founder\nm2,y,maintainer\n")
    assert _problems(folder) == [f"{folder / 'members.csv'}:1: column 2 has no name"]


def test_interactions_are_not_checked_against_an_unreadable_file(tmp_path: Path) -> None:
    folder = _folder(tmp_path, items="id,title,summary\ni1,Growth,x\n")
    assert _problems(folder) == [
        f"{folder / 'items.csv'}:1 [summary]: unknown column 'summary'; expected id, title, "
        "text, tags, language",
    ]


def test_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    (folder / "members.csv").write_bytes("id,text\nm1,café\n".encode("latin-1"))
    (problem,) = _problems(folder)
    assert problem.startswith(f"{folder / 'members.csv'}: the file is not UTF-8")


def test_an_attribute_with_too_many_values_is_left_out(tmp_path: Path) -> None:
    rows = "".join(f"m{n},code-{n},team\n" for n in range(150))
    folder = _folder(
        tmp_path,
        members=f"id,badge,team\n{rows}",
        train="member_id,item_id\nm1,i1\n",
        test="member_id,item_id\nm2,i1\n",
    )
    dataset = load_dataset_folder(folder)
    assert dataset.ignored_attributes == ["badge"]
    assert [question.key for question in dataset.questions] == ["team"]


def test_headers_match_ignoring_case_and_blank_rows_are_skipped(tmp_path: Path) -> None:
    folder = _folder(
        tmp_path,
        items=" ID ,Title,TAGS\ni1,Growth,growth\n,,\n\ni2,Code,\n",
        train="Member_ID,Item_ID\nm1,i1\nm1\n",
    )
    assert _problems(folder) == [f"{folder / 'train.csv'}:3: 1 field where the header has 2"]
    (folder / "train.csv").write_text("Member_ID,Item_ID\nm1,i1\n", encoding="utf-8")
    assert load_dataset_folder(folder).item_ids == ["i1", "i2"]


def test_an_empty_file(tmp_path: Path) -> None:
    folder = _folder(tmp_path, test="")
    assert _problems(folder) == [
        f"{folder / 'test.csv'}: the file is empty: expected a header line"
    ]


def test_awkward_values_still_make_a_valid_sandbox_workspace(tmp_path: Path) -> None:
    folder = _folder(
        tmp_path / "dataset",
        members=(
            "id,Rôle,yes?,Expectations,text\n"
            "m1,Fondateur·rice,yes,1,Je veux grandir\n"
            "m2,2024,no,2,\n"
        ),
        items='id,title,text,tags\ni1,---,"line one\n---\nline two",a|b\ni2,yes,,\n',
    )
    dataset = load_dataset_folder(folder)
    settings = Settings(data_dir=tmp_path / "data", embedding_model="hashing-64")
    with nurture_sandbox(settings, 5) as sandbox:
        ids = stage_folder(dataset, sandbox)
        questionnaire = load_questionnaire(sandbox.settings.questionnaire_path)
        library = sandbox.workspace.content_items
        with sandbox.session() as session:
            answers = set(session.execute(select(Answer.member_id, Answer.question_key)).tuples())
            synced = sync_content_items(session, library, now=dataset.now)
            stored = list(session.execute(select(ContentItem.key, ContentItem.body)).tuples())

    assert ids == {"m1": 1, "m2": 2}
    keys = [question.key for question in questionnaire.questions]
    assert keys == ["r_le", "yes", "expectations_2", "expectations"]
    assert [question.kind for question in questionnaire.questions] == [
        "single_choice",
        "single_choice",
        "scale",
        "free_text",
    ]
    assert [(spec.key, spec.title) for spec in library] == [("item-1", "---"), ("item-2", "yes")]
    assert synced.added == 2
    assert sorted(stored) == [("item-1", "line one\n---\nline two"), ("item-2", "yes")]
    assert (1, "expectations") in answers and (2, "expectations") not in answers


def test_the_library_is_what_library_files_would_give(tmp_path: Path) -> None:
    folder = _folder(
        tmp_path / "dataset",
        items=(
            "id,title,text,tags\n"
            'i1,---,"line one. line two\n---\nline three",A|b| a \n'
            "i2,yes,,\n"
            'i3,"bayesian, prior",,bayesian|prior\n'
        ),
    )
    dataset = load_dataset_folder(folder)

    library = library_items(dataset)

    assert [spec.key for spec in library] == ["item-1", "item-2", "item-3"]
    for column, spec in enumerate(library):
        cells = dataset.item_cells[column]
        front = {
            "title": cells["title"],
            "url": spec.url,
            "kind": "article",
            "language": "en",
            "tags": [tag.strip() for tag in cells["tags"].split("|") if tag.strip()],
            "summary": spec.summary,
        }
        text = cells["text"] or cells["title"]
        path = tmp_path / f"{spec.key}.md"
        path.write_text(f"---\n{yaml.safe_dump(front)}---\n{text}\n", encoding="utf-8")
        parsed, problems = load_content_item(path)
        assert problems == []
        assert parsed is not None
        assert parsed.model_dump(exclude={"source_path"}) == spec.model_dump(
            exclude={"source_path"}
        )
    assert library[0].tags == ["a", "b"]
    assert library[0].summary == "line one."
