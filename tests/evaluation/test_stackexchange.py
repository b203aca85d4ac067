"""The Stack Exchange converters on tiny synthetic files in the raw formats (no real data)."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from nurture.errors import EvaluationDataError
from nurture.evaluation import load_dataset_folder
from nurture.evaluation.stackexchange import (
    ATTRIBUTION_FILE,
    Event,
    cold_start_split,
    convert_lightfm,
    convert_site_dump,
    html_to_text,
    read_lightfm_archive,
    read_site_dump,
    warm_split,
    write_dataset_folder,
)
from nurture.settings import Settings

from .conftest import evaluate_app

runner = CliRunner()

USERS = """<?xml version="1.0" encoding="utf-8"?>
<users>
  <row Id="-1" DisplayName="Community" AboutMe="&lt;p&gt;I am a bot&lt;/p&gt;" />
  <row Id="1" DisplayName="Ann" AboutMe="&lt;p&gt;I love &lt;b&gt;Roman&lt;/b&gt;
    history &amp;amp; coins&lt;/p&gt;" />
  <row Id="2" DisplayName="Bob" />
  <row Id="3" DisplayName="Cid" AboutMe="&lt;p&gt;Medieval   maps&lt;/p&gt;" />
</users>
"""
POSTS = [
    ["Id", "PostTypeId", "ParentId", "OwnerUserId", "Title", "Body", "Tags", "CreationDate"],
    [
        "10",
        "1",
        "",
        "1",
        "Why tags?",
        "<p>Body\nof ten</p>",
        "<tags><discussion>",
        "2012-01-01T00:00:00.000",
    ],
    ["11", "1", "", "2", "Close votes", "<p>Eleven</p>", "<support>", "2012-01-02T00:00:00.000"],
    [
        "12",
        "1",
        "",
        "-1",
        "Bot question",
        "<p>Twelve</p>",
        "<discussion>",
        "2012-01-03T00:00:00.000",
    ],
    ["20", "2", "10", "2", "", "<p>answer</p>", "", "2012-01-04T00:00:00.000"],
    ["21", "2", "11", "1", "", "<p>answer</p>", "", "2012-01-05T00:00:00.000"],
    ["22", "2", "12", "3", "", "<p>answer</p>", "", "2012-01-06T00:00:00.000"],
    ["30", "5", "", "1", "", "<p>tag wiki</p>", "", "2012-01-01T00:00:00.000"],
]
COMMENTS = """<?xml version="1.0" encoding="utf-8"?>
<comments>
  <row Id="1" PostId="20" UserId="1" Text="thanks" CreationDate="2012-01-07T00:00:00.000" />
  <row Id="2" PostId="10" UserId="3" Text="hm" CreationDate="2012-01-08T00:00:00.000" />
  <row Id="3" PostId="11" UserDisplayName="gone" Text="x" CreationDate="2012-01-09T00:00:00.000" />
  <row Id="4" PostId="12" UserId="3" Text="again" CreationDate="2012-01-10T00:00:00.000" />
  <row Id="5" PostId="30" UserId="2" Text="wiki" CreationDate="2012-01-11T00:00:00.000" />
</comments>
"""


@pytest.fixture
def dump_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / "Users.xml").write_text(USERS, encoding="utf-8")
    (folder / "Comments.xml").write_text(COMMENTS, encoding="utf-8")
    with (folder / "Posts.csv").open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows(POSTS)
    return folder


def _at(day: int) -> dt.datetime:
    return dt.datetime(2012, 1, day, tzinfo=dt.UTC)


def test_html_becomes_plain_text() -> None:
    assert html_to_text("<p>a &amp;amp; <b>b</b>\n\n c</p>") == "a &amp; b c"
    assert html_to_text("") == ""


def test_a_site_dump_gives_questions_texts_and_every_interaction(dump_folder: Path) -> None:
    dump = read_site_dump(dump_folder)

    assert dump.about == {1: "I love Roman history & coins", 3: "Medieval maps"}
    assert sorted(dump.questions) == [10, 11, 12]
    assert dump.questions[10].title == "Why tags?"
    assert dump.questions[10].text == "Body of ten"
    assert dump.questions[10].tags == ("tags", "discussion")
    # the bot's question is an item, but the bot never a member; the deleted account's comment
    # and the comment on a tag wiki are not interactions
    assert [(e.user, e.question, e.kind) for e in dump.events] == [
        (1, 10, "asked"),
        (2, 11, "asked"),
        (2, 10, "answered"),
        (1, 11, "answered"),
        (3, 12, "answered"),
        (1, 10, "commented"),
        (3, 10, "commented"),
        (3, 12, "commented"),
    ]


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(EvaluationDataError, match=r"Users\.xml"):
        read_site_dump(tmp_path)


def test_warm_split_holds_out_each_members_last_events_but_not_seen_or_asked_ones() -> None:
    events = [
        Event(_at(1), 1, 7, "asked"),
        Event(_at(2), 2, 7, "commented"),
        Event(_at(3), 3, 7, "answered"),
        Event(_at(4), 4, 7, "answered"),
        Event(_at(5), 2, 7, "commented"),  # held out, but question 2 is in train: dropped
        Event(_at(6), 1, 7, "commented"),  # held out, own question: dropped
        Event(_at(1), 5, 8, "answered"),  # a member with one event trains only
        Event(_at(1), 6, 9, "answered"),
        Event(_at(1), 5, 9, "answered"),  # same time: the question id orders, 6 is last
    ]
    train, test = warm_split(events)

    # member 7: 6 events, ceil(1.2) = 2 held out; member 9: ceil(0.4) = 1
    assert sorted((e.user, e.question) for e in train) == [
        (7, 1),
        (7, 2),
        (7, 3),
        (7, 4),
        (8, 5),
        (9, 5),
    ]
    assert [(e.user, e.question) for e in test] == [(9, 6)]


def test_cold_start_split_holds_out_a_seeded_fifth_of_members_with_text() -> None:
    about = {user: f"text {user}" for user in range(1, 11)}
    events = [Event(_at(1), 100 + user, user, "answered") for user in range(1, 12)]
    events += [Event(_at(2), 200 + user, user, "asked") for user in range(1, 12)]
    held, train, test = cold_start_split(events, about)

    eligible = list(range(1, 11))  # member 11 has no text
    expected = [eligible[i] for i in np.random.RandomState(42).permutation(10)[:2]]
    assert held == expected
    assert {e.user for e in train} == set(range(1, 12)) - set(held)
    assert sorted((e.user, e.question) for e in test) == sorted((u, 100 + u) for u in held)


def test_both_protocols_in_one_folder_that_evaluate_reads(
    dump_folder: Path, tmp_path: Path
) -> None:
    dataset = convert_site_dump(read_site_dump(dump_folder), "both", site="Tiny Meta")
    out = tmp_path / "out"
    write_dataset_folder(dataset, out)

    loaded = load_dataset_folder(out)
    assert loaded.item_ids == ["10", "11", "12"]
    assert loaded.item_cells[0]["tags"] == "tags|discussion"
    assert set(loaded.member_ids) == {"1", "2", "3"}
    texts = dict(zip(loaded.member_ids, (c["text"] for c in loaded.member_cells), strict=True))
    assert texts["2"] == ""
    assert "CC BY-SA" in (out / ATTRIBUTION_FILE).read_text(encoding="utf-8")
    assert "Tiny Meta" in (out / ATTRIBUTION_FILE).read_text(encoding="utf-8")
    # users 1 and 3 have text and answered or commented on someone else's question: with two
    # eligible, round(0.4) = 0 held out, so "both" is the warm split here
    assert dataset.counts["cold_start_members"] == 0
    assert dataset.train[0] == ("1", "10", "2012-01-01T00:00:00Z")


def _archive(path: Path) -> Path:
    # 3 users x 4 questions; times 100..800; the 0.9 cut-off is at position int(0.9 * 8) = 7
    rows = np.array([0, 0, 0, 1, 1, 2, 0, 1], dtype=np.int32)
    cols = np.array([0, 1, 0, 2, 3, 0, 3, 1], dtype=np.int32)
    times = np.array([100, 200, 300, 400, 500, 600, 700, 800], dtype=np.float32)
    np.savez(
        path,
        interactions_shape=np.array([[3, 4]], dtype=np.int32),
        interactions_row=rows,
        interactions_col=cols,
        interactions_data=times,
        features_shape=np.array([[4, 2]], dtype=np.int32),
        features_row=np.array([0, 0, 1], dtype=np.int32),
        features_col=np.array([0, 1, 1], dtype=np.int32),
        features_data=np.ones(3, dtype=np.float32),
        labels=np.array(["bayesian", "prior"]),
    )
    return path


def test_lightfm_protocol_cuts_in_time_and_keeps_users_with_two_training_answers(
    tmp_path: Path,
) -> None:
    archive = read_lightfm_archive(_archive(tmp_path / "data.npz"))
    dataset = convert_lightfm(archive, site="Tiny CV")

    # cut-off 800: user 0 has 4 training answers, user 1 two, user 2 one (dropped)
    assert [m for m, _ in dataset.members] == ["0", "1"]
    assert dataset.counts["cutoff"] == 800
    assert dataset.train == [
        ("0", "0", "100"),
        ("0", "1", "200"),
        ("1", "2", "400"),
        ("1", "3", "500"),
        ("0", "3", "700"),
    ]
    assert dataset.test == [("1", "1", "800")]
    assert [item[1] for item in dataset.items] == [
        "bayesian, prior",
        "prior",
        "untagged question",
        "untagged question",
    ]


def test_the_command_converts_both_formats(
    settings: Settings, dump_folder: Path, tmp_path: Path
) -> None:
    app = evaluate_app(settings)
    result = runner.invoke(
        app, ["evaluate", "convert", "stackexchange", str(dump_folder), str(tmp_path / "a")]
    )
    assert result.exit_code == 0, result.output
    assert "train pairs" in result.output
    assert (tmp_path / "a" / "members.csv").is_file()

    cv = tmp_path / "cv"
    cv.mkdir()
    _archive(cv / "data.npz")
    result = runner.invoke(
        app, ["evaluate", "convert", "stackexchange", str(cv), str(tmp_path / "b"), "--site", "CV"]
    )
    assert result.exit_code == 0, result.output
    assert load_dataset_folder(tmp_path / "b").member_ids == ["0", "1"]

    result = runner.invoke(
        app,
        [
            "evaluate",
            "convert",
            "stackexchange",
            str(cv),
            str(tmp_path / "c"),
            "--protocol",
            "warm",
        ],
    )
    assert result.exit_code != 0


def test_the_command_refuses_to_write_into_the_source_tree(
    settings: Settings, dump_folder: Path
) -> None:
    inside = Path(__file__).resolve().parent / "converted"
    result = runner.invoke(
        evaluate_app(settings),
        ["evaluate", "convert", "stackexchange", str(dump_folder), str(inside)],
    )
    assert result.exit_code != 0
    assert not inside.exists()
