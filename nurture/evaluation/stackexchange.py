"""Stack Exchange data as dataset folders for ``nurture evaluate --dataset DIR``.

Two raw formats are read, as they are published (``/work/shared/datasets/README.md`` describes
them):

- a **site dump** (``Users.xml``, ``Posts.csv`` or ``Posts.xml``, ``Comments.xml``), such as
  History Meta Stack Exchange: members are users (their "About me" as text), items questions
  (title, body as plain text, tags), and a member interacts with a question when they asked it,
  answered it or commented on it or on one of its answers;
- **LightFM's archive** (``data.npz``), such as Cross Validated: who answered which question
  when, and each question's tags.

The splits are the protocols of the datasets' README: *warm* (each member's last 20 % of events
held out, in time), *cold start* (20 % of the members with a self-description held out, only
their text known) and LightFM's global time cut-off. Reading is the only I/O besides
:func:`write_dataset_folder`; everything between is pure. The output is derived from
CC BY-SA content: :data:`ATTRIBUTION_FILE` is written beside the CSV files.
"""

from __future__ import annotations

import csv
import datetime as dt
import html
import math
import re
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from nurture.errors import EvaluationDataError, Problem

__all__ = [
    "ATTRIBUTION_FILE",
    "COLD_START_SEED",
    "COLD_START_SHARE",
    "WARM_TEST_SHARE",
    "ConvertedDataset",
    "Event",
    "LightFMArchive",
    "Protocol",
    "Question",
    "SiteDump",
    "cold_start_split",
    "convert_lightfm",
    "convert_site_dump",
    "html_to_text",
    "read_lightfm_archive",
    "read_site_dump",
    "warm_split",
    "write_dataset_folder",
]

Protocol = Literal["warm", "cold-start", "both"]
"""Which split a site dump is converted with (``both``: cold start for the held-out members,
warm for the others; the two modes of ``nurture evaluate`` score disjoint members)."""

WARM_TEST_SHARE = 0.2
"""Share of each member's events held out by the warm protocol (the last ones)."""
COLD_START_SHARE = 0.2
"""Share of the eligible members held out by the cold-start protocol."""
COLD_START_SEED = 42
"""Seed of ``numpy.random.RandomState`` drawing the cold-start members."""
LIGHTFM_TEST_SHARE = 0.1
"""Share of the answers held out by LightFM's protocol (the last ones, over everyone)."""
ATTRIBUTION_FILE = "ATTRIBUTION.txt"
"""Written beside the CSV files: where the data comes from and under which licence."""
COMMUNITY_USER = -1
"""Stack Exchange's bot account, left out."""
MAX_ITEM_TEXT = 1000
"""Characters of a question's body kept as the item's text (its start)."""

_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")
_TAGS = re.compile(r"<([^<>]+)>")


def html_to_text(value: str) -> str:
    """Plain text of an HTML fragment: tags removed, entities unescaped, whitespace collapsed."""
    return _SPACE.sub(" ", html.unescape(_TAG.sub(" ", value))).strip()


@dataclass(frozen=True, order=True)
class Event:
    """One interaction of a member with a question.

    Attributes:
        at: When it happened (UTC).
        question: The question's id.
        user: The member's id.
        kind: ``asked``, ``answered`` or ``commented``.
    """

    at: dt.datetime
    question: int
    user: int
    kind: str


@dataclass(frozen=True)
class Question:
    """A question of a site dump, as an item."""

    id: int
    title: str
    text: str
    tags: tuple[str, ...]


@dataclass(frozen=True)
class SiteDump:
    """What a Stack Exchange site dump holds for an evaluation.

    Attributes:
        about: Each user's self-description as plain text (users without one left out).
        questions: The questions, by id.
        events: Every interaction of a known user (the bot account left out).
    """

    about: dict[int, str]
    questions: dict[int, Question]
    events: list[Event]


@dataclass
class ConvertedDataset:
    """A dataset folder's content before it is written.

    Attributes:
        members: ``(id, text)`` of each member.
        items: ``(id, title, text, tags)`` of each item.
        train: ``(member id, item id, timestamp)`` training pairs.
        test: ``(member id, item id, timestamp)`` test pairs.
        source: What the data is, for the attribution file.
        counts: Figures of the conversion (pairs, members...).
    """

    members: list[tuple[str, str]]
    items: list[tuple[str, str, str, tuple[str, ...]]]
    train: list[tuple[str, str, str]]
    test: list[tuple[str, str, str]]
    source: str
    counts: dict[str, int] = field(default_factory=dict)


def _date(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC)


def _xml_rows(path: Path) -> Iterator[dict[str, str]]:
    for _, element in ET.iterparse(path, events=("end",)):
        if element.tag == "row":
            yield dict(element.attrib)
        element.clear()


def _post_rows(folder: Path) -> Iterator[dict[str, str]]:
    csv_path = folder / "Posts.csv"
    if csv_path.is_file():
        csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
        with csv_path.open(encoding="utf-8-sig", newline="") as handle:
            yield from csv.DictReader(handle)
    else:
        yield from _xml_rows(folder / "Posts.xml")


def _integer(value: str | None) -> int | None:
    value = (value or "").strip()
    if not value:
        return None
    return int(float(value))


def read_site_dump(folder: Path) -> SiteDump:
    """Read a Stack Exchange site dump: users, posts and comments.

    The folder holds ``Users.xml``, ``Posts.csv`` (or ``Posts.xml``) and ``Comments.xml``.

    Args:
        folder: The folder holding the files.

    Returns:
        The users' texts, the questions and every interaction event.

    Raises:
        EvaluationDataError: A file is missing or a row cannot be read (file and row named).
    """
    folder = Path(folder)
    missing = [
        Problem(folder / name, "file not found")
        for name in ("Users.xml", "Comments.xml")
        if not (folder / name).is_file()
    ]
    if not (folder / "Posts.csv").is_file() and not (folder / "Posts.xml").is_file():
        missing.append(Problem(folder / "Posts.csv", "file not found (nor Posts.xml)"))
    if missing:
        raise EvaluationDataError(missing)
    about: dict[int, str] = {}
    for row in _xml_rows(folder / "Users.xml"):
        text = html_to_text(row.get("AboutMe", ""))
        user = _integer(row.get("Id"))
        if text and user is not None and user != COMMUNITY_USER:
            about[user] = text
    questions: dict[int, Question] = {}
    thread: dict[int, int] = {}  # post id -> its question's id
    posted: list[tuple[int, int | None, str, str]] = []  # (post, owner, kind, date)
    for number, row in enumerate(_post_rows(folder), start=1):
        try:
            post = int(row["Id"])
            kind = row["PostTypeId"].strip()
            if kind == "1":
                tags = tuple(_TAGS.findall(row.get("Tags") or ""))
                body = html_to_text(row.get("Body") or "")
                questions[post] = Question(
                    post, html_to_text(row.get("Title") or "") or f"Question {post}", body, tags
                )
                thread[post] = post
                posted.append(
                    (post, _integer(row.get("OwnerUserId")), "asked", row["CreationDate"])
                )
            elif kind == "2":
                thread[post] = int(row["ParentId"])
                owner = _integer(row.get("OwnerUserId"))
                posted.append((post, owner, "answered", row["CreationDate"]))
        except (KeyError, ValueError) as error:
            raise EvaluationDataError(
                [Problem(folder / "Posts.csv", f"post row {number}: {error}")]
            ) from error
    events = [
        Event(_date(date), thread[post], owner, kind)
        for post, owner, kind, date in posted
        if owner is not None and owner != COMMUNITY_USER and thread[post] in questions
    ]
    for row in _xml_rows(folder / "Comments.xml"):
        user = _integer(row.get("UserId"))
        on = _integer(row.get("PostId"))
        if user is None or user == COMMUNITY_USER or on is None or on not in thread:
            continue
        if thread[on] in questions:
            events.append(Event(_date(row["CreationDate"]), thread[on], user, "commented"))
    return SiteDump(about=about, questions=questions, events=sorted(events))


def _timestamp(moment: dt.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _pairs(events: Iterable[Event]) -> list[tuple[str, str, str]]:
    """One ``(member, question, earliest time)`` row per distinct pair, in time order."""
    first: dict[tuple[int, int], dt.datetime] = {}
    for event in events:
        key = (event.user, event.question)
        if key not in first or event.at < first[key]:
            first[key] = event.at
    ordered = sorted(first.items(), key=lambda entry: (entry[1], entry[0]))
    return [(str(user), str(question), _timestamp(at)) for (user, question), at in ordered]


def warm_split(
    events: Sequence[Event], test_share: float = WARM_TEST_SHARE
) -> tuple[list[Event], list[Event]]:
    """Each member's last events held out: protocol (a), warm and chronological.

    A member's events are sorted by (time, question); with ``n >= 2`` of them the last
    ``ceil(test_share * n)`` are test. Test events on a question the member has in training, or
    asked, are dropped.

    Args:
        events: Interaction events.
        test_share: Share of each member's events held out.

    Returns:
        ``(train, test)`` events.
    """
    by_user: dict[int, list[Event]] = {}
    for event in events:
        by_user.setdefault(event.user, []).append(event)
    train: list[Event] = []
    test: list[Event] = []
    for user_events in by_user.values():
        ordered = sorted(user_events, key=lambda event: (event.at, event.question))
        held = math.ceil(test_share * len(ordered)) if len(ordered) >= 2 else 0
        kept, later = ordered[: len(ordered) - held], ordered[len(ordered) - held :]
        seen = {event.question for event in kept}
        asked = {event.question for event in ordered if event.kind == "asked"}
        train.extend(kept)
        test.extend(e for e in later if e.question not in seen and e.question not in asked)
    return train, test


def cold_start_split(
    events: Sequence[Event],
    about: dict[int, str],
    share: float = COLD_START_SHARE,
    seed: int = COLD_START_SEED,
) -> tuple[list[int], list[Event], list[Event]]:
    """Members held out entirely, only their self-description known: protocol (b).

    Eligible: members with a self-description who answered or commented on a question they did
    not ask. Their ids sorted as integers, ``numpy.random.RandomState(seed).permutation`` draws
    ``round(share * eligible)`` of them.

    Args:
        events: Interaction events.
        about: Self-descriptions by member id.
        share: Share of the eligible members held out.
        seed: Seed of the draw.

    Returns:
        ``(held-out member ids, train events of everyone else, test events of the held out)``;
        test events are those answering or commenting on a question the member did not ask.
    """
    asked = {(e.user, e.question) for e in events if e.kind == "asked"}
    joined = {
        e.user
        for e in events
        if e.kind != "asked" and (e.user, e.question) not in asked and e.user in about
    }
    eligible = sorted(joined)
    permutation = np.random.RandomState(seed).permutation(len(eligible))
    held = [eligible[index] for index in permutation[: round(share * len(eligible))]]
    out = set(held)
    train = [e for e in events if e.user not in out]
    test = [
        e
        for e in events
        if e.user in out and e.kind != "asked" and (e.user, e.question) not in asked
    ]
    return held, train, test


def convert_site_dump(
    dump: SiteDump, protocol: Protocol = "both", *, site: str
) -> ConvertedDataset:
    """A site dump as a dataset folder's content, split with ``protocol``.

    Args:
        dump: The dump.
        protocol: ``warm`` (protocol a), ``cold-start`` (protocol b) or ``both`` (b for the
            held-out members, a for every other member).
        site: The site's name, for the attribution.

    Returns:
        The members (those with an interaction; their self-description as text), every
        question as an item, and the training and test pairs.
    """
    if protocol == "warm":
        train_events, test_events = warm_split(dump.events)
        held: list[int] = []
    else:
        held, train_events, test_events = cold_start_split(dump.events, dump.about)
        if protocol == "both":
            warm_train, warm_test = warm_split(train_events)
            train_events, test_events = warm_train, warm_test + test_events
    train, test = _pairs(train_events), _pairs(test_events)
    users = sorted({int(m) for m, _, _ in train} | {int(m) for m, _, _ in test})
    items = [
        (str(q.id), q.title[:500], q.text[:MAX_ITEM_TEXT], q.tags)
        for q in sorted(dump.questions.values(), key=lambda question: question.id)
    ]
    return ConvertedDataset(
        members=[(str(user), dump.about.get(user, "")) for user in users],
        items=items,
        train=train,
        test=test,
        source=site,
        counts={
            **_split_counts(len(users), len(items), train, test),
            "cold_start_members": len(held),
        },
    )


@dataclass(frozen=True)
class LightFMArchive:
    """LightFM's Stack Exchange archive: answers (user, question, Unix time) and question tags."""

    users: np.ndarray
    questions: np.ndarray
    times: np.ndarray
    n_users: int
    n_questions: int
    tags: list[tuple[str, ...]]


def read_lightfm_archive(path: Path) -> LightFMArchive:
    """Read LightFM's ``data.npz`` (interactions and question-tag matrices, tag labels).

    Args:
        path: The archive, or the folder holding ``data.npz``.

    Returns:
        The answers and each question's tags.

    Raises:
        EvaluationDataError: The archive is missing or lacks an array.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "data.npz"
    if not path.is_file():
        raise EvaluationDataError([Problem(path, "file not found")])
    try:
        with np.load(path, allow_pickle=False) as data:
            n_users, n_questions = (int(v) for v in data["interactions_shape"].ravel())
            labels = [str(label) for label in data["labels"]]
            tags: list[list[str]] = [[] for _ in range(n_questions)]
            for row, col in zip(data["features_row"], data["features_col"], strict=True):
                tags[int(row)].append(labels[int(col)])
            return LightFMArchive(
                users=data["interactions_row"].astype(np.int64),
                questions=data["interactions_col"].astype(np.int64),
                times=data["interactions_data"].astype(np.int64),
                n_users=n_users,
                n_questions=n_questions,
                tags=[tuple(t) for t in tags],
            )
    except KeyError as error:
        raise EvaluationDataError([Problem(path, f"missing array {error}")]) from error


def convert_lightfm(
    archive: LightFMArchive, *, site: str, test_share: float = LIGHTFM_TEST_SHARE
) -> ConvertedDataset:
    """LightFM's protocol: one time cut-off over every answer; users with 2+ training answers.

    The cut-off is the time at position ``int((1 - test_share) * N)`` of the sorted answer
    times; answers before it train, the others test. Only users with more than one training
    answer (repeats counted) are kept; every question is an item, titled by its tags.

    Args:
        archive: The archive.
        site: The site's name, for the attribution.
        test_share: Share of the answers held out.

    Returns:
        The dataset's content (members have no text).
    """
    times = archive.times
    cutoff = np.sort(times)[int((1 - test_share) * len(times))]
    before = times < cutoff
    kept = np.bincount(archive.users[before], minlength=archive.n_users) > 1

    def pairs(mask: np.ndarray) -> list[tuple[str, str, str]]:
        first: dict[tuple[int, int], int] = {}
        for user, question, moment in zip(
            archive.users[mask].tolist(),
            archive.questions[mask].tolist(),
            times[mask].tolist(),
            strict=True,
        ):
            key = (user, question)
            if key not in first or moment < first[key]:
                first[key] = moment
        ordered = sorted(first.items(), key=lambda entry: (entry[1], entry[0]))
        return [(str(u), str(q), str(moment)) for (u, q), moment in ordered]

    train = pairs(before & kept[archive.users])
    test = pairs(~before & kept[archive.users])
    items = [
        (str(q), ", ".join(tags) if tags else "untagged question", "", tags)
        for q, tags in enumerate(archive.tags)
    ]
    users = np.flatnonzero(kept).tolist()
    return ConvertedDataset(
        members=[(str(user), "") for user in users],
        items=items,
        train=train,
        test=test,
        source=site,
        counts={**_split_counts(len(users), len(items), train, test), "cutoff": int(cutoff)},
    )


def _attribution(source: str) -> str:
    return (
        f"Contains data from {source} (Stack Exchange network), contributed by its users, "
        "licensed CC BY-SA (3.0 for content contributed up to May 2018, 4.0 after that; see "
        "https://stackoverflow.com/help/licensing).\n"
        "Converted by `nurture evaluate convert stackexchange` to nurture's evaluation format: "
        "HTML removed, bodies cut, interactions reduced to member-question pairs and split into "
        "train.csv and test.csv. Derived data: share it only under the same licence, with this "
        "attribution; no endorsement by Stack Exchange or the authors is implied.\n"
    )


def write_dataset_folder(dataset: ConvertedDataset, out: Path) -> None:
    """Write ``members.csv``, ``items.csv``, ``train.csv``, ``test.csv`` and the attribution.

    Args:
        dataset: The converted dataset.
        out: The folder (created if needed; the five files are replaced).
    """
    out.mkdir(parents=True, exist_ok=True)

    def write(name: str, header: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
        with (out / name).open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(rows)

    write("members.csv", ("id", "text"), dataset.members)
    write(
        "items.csv",
        ("id", "title", "text", "tags"),
        ((i, title, text, "|".join(tags)) for i, title, text, tags in dataset.items),
    )
    write("train.csv", ("member_id", "item_id", "timestamp"), dataset.train)
    write("test.csv", ("member_id", "item_id", "timestamp"), dataset.test)
    (out / ATTRIBUTION_FILE).write_text(_attribution(dataset.source), encoding="utf-8")


def _split_counts(
    members: int,
    items: int,
    train: Sequence[tuple[str, str, str]],
    test: Sequence[tuple[str, str, str]],
) -> dict[str, int]:
    """The sizes every converted dataset reports: members, items, pairs and test members."""
    return {
        "members": members,
        "items": items,
        "train_pairs": len(train),
        "test_pairs": len(test),
        "test_members": len({member for member, _, _ in test}),
    }
