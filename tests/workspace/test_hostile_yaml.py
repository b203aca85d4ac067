"""Hostile YAML in every kind of marketer file: refused with file:line:col, bounded in memory.

Every file a marketer writes goes through one reader (``nurture.marketer_files.located_yaml``). Each
attack below is written into each kind of file (a journey, ``sending.yaml``, ``segments.yaml``,
``questionnaire.yaml``, the front matter of a library item, ``workspace.yaml``) and must come
back as one problem naming the file, line and column: never a ``RecursionError``, a traceback
or gigabytes of memory. Memory is measured with ``tracemalloc``, never time.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nurture.cli import app
from nurture.errors import Problem, WorkspaceValidationError
from nurture.journeys.loader import read_journey
from nurture.journeys.policy import read_sending_rules
from nurture.marketer_files import (
    MAX_ALIAS_NODES,
    MAX_FILE_BYTES,
    MAX_NESTING_DEPTH,
    YamlLimits,
    parse_located_yaml,
)
from nurture.segmentation.rules import read_segment_rules
from nurture.workspace import (
    load_content_item,
    load_workspace,
    read_questionnaire,
    read_workspace_config,
)
from tests.pipeline_helpers import CONTENT

MEMORY_BOUND = 8 * 1024 * 1024
"""Most memory (bytes, traced peak) refusing any attack may take; the attacks used 1-4 GB."""


@dataclass(frozen=True)
class Kind:
    """A kind of marketer file: where it lives in a workspace and how it is loaded."""

    name: str
    relative: str
    load: Callable[[Path], list[Problem]]
    front_matter: bool = False

    def write(self, root: Path, payload: bytes) -> tuple[Path, int]:
        """Write ``payload`` as this kind of file; return it and the lines before the payload."""
        path = root / self.relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if self.front_matter:
            path.write_bytes(b"---\n" + payload + b"---\nThe body.\n")
            return path, 1
        path.write_bytes(payload)
        return path, 0


KINDS = [
    Kind("journey", "journeys/hostile.yaml", lambda path: read_journey(path)[1]),
    Kind("sending.yaml", "sending.yaml", lambda path: read_sending_rules(path).problems),
    Kind("segments.yaml", "segments.yaml", lambda path: read_segment_rules(path).problems),
    Kind(
        "questionnaire.yaml", "questionnaire.yaml", lambda path: read_questionnaire(path).problems
    ),
    Kind(
        "library front matter",
        "library/hostile.md",
        lambda path: load_content_item(path)[1],
        front_matter=True,
    ),
    Kind("workspace.yaml", "workspace.yaml", lambda path: read_workspace_config(path.parent)[1]),
]


def _laughs(levels: int, *, mapping: bool = False) -> tuple[str, int, int]:
    """A "billion laughs" document; the line and column of the alias that goes over budget."""
    lines = ['a0: &a0 "lol"']
    sizes = [1]
    spent, refused = 0, None
    for level in range(1, levels + 1):
        alias = f"*a{level - 1}"
        if mapping:
            body = ", ".join(f"k{index}: {alias}" for index in range(9))
            lines.append(f"a{level}: &a{level} {{{body}}}")
            first_column = len(f"a{level}: &a{level} {{k0: ") + 1
        else:
            lines.append(f"a{level}: &a{level} [{', '.join([alias] * 9)}]")
            first_column = len(f"a{level}: &a{level} [") + 1
        for index in range(9):
            spent += sizes[-1]  # an alias costs the nodes it stands for
            if refused is None and spent > MAX_ALIAS_NODES:
                step = len(f"k{index}: {alias}, ") if mapping else len(f"{alias}, ")
                refused = (level + 1, first_column + index * step)
        # the node itself, then its items (or its keys and values)
        sizes.append(1 + 9 * (sizes[-1] + (1 if mapping else 0)))
    assert refused is not None, "too few levels to go over the budget"
    return "\n".join(lines) + "\n", *refused


def _merge_laughs(levels: int) -> tuple[str, int, int]:
    """Laughs through merge keys (``<<``), which PyYAML expands into every mapping."""
    lines = ["a0: &a0 {x: lol, y: lol}"]
    for level in range(1, levels + 1):
        aliases = ", ".join([f"*a{level - 1}"] * 9)
        lines.append(f"a{level}: &a{level} {{<<: [{aliases}], z{level}: lol}}")
    text = "\n".join(lines) + "\n"
    document, problems = parse_located_yaml(text, "probe.yaml")
    assert document is None and len(problems) == 1
    return text, problems[0].line or 0, problems[0].column or 0


@dataclass(frozen=True)
class Attack:
    """One hostile document: its bytes, and where and why it must be refused."""

    name: str
    payload: bytes
    line: int  # in the payload, 1-based
    column: int
    words: str
    whole_file: bool = False  # the position is counted in the whole file, not the payload


def _attacks() -> list[Attack]:
    attacks = []
    for levels in (7, 9, 12):
        text, line, column = _laughs(levels)
        attacks.append(
            Attack(f"laughs-{levels}", text.encode(), line, column, "aliases stand for more")
        )
    text, line, column = _laughs(8, mapping=True)
    attacks.append(Attack("laughs-mappings", text.encode(), line, column, "aliases stand for"))
    text, line, column = _merge_laughs(10)
    attacks.append(Attack("laughs-merge-keys", text.encode(), line, column, "aliases stand for"))
    attacks.append(Attack("recursive-alias", b"x: &loop [1, *loop]\n", 1, 14, "a recursive alias"))
    depth = MAX_NESTING_DEPTH
    attacks += [
        Attack(
            "500-lists-flow",
            ("x: " + "[" * 500 + "]" * 500 + "\n").encode(),
            1,
            4 + depth,  # the scanner refuses the first bracket past the limit of flow levels
            f"nested deeper than {depth} levels",
        ),
        Attack(
            "500-lists-block",
            ("x:\n" + "- " * 500 + "leaf\n").encode(),
            2,
            1 + 2 * (depth - 1),  # the mapping is level 1, the lists follow
            f"nested deeper than {depth} levels",
        ),
        Attack(
            "5000-mappings-flow",
            ("x: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n").encode(),
            1,
            4 + 4 * (depth - 1),  # with the block mapping around it, one level is too many
            f"nested deeper than {depth} levels",
        ),
        Attack(
            "mappings-block",
            "".join(" " * level + "a:\n" for level in range(depth + 10)).encode()
            + b" " * (depth + 10)
            + b"1\n",
            depth + 1,
            depth + 1,
            f"nested deeper than {depth} levels",
        ),
        Attack(
            "alias-of-a-deep-list",
            (
                "deep: &deep " + "[" * 30 + "]" * 30 + "\n"
                "x: " + "[" * (depth - 30) + "*deep" + "]" * (depth - 30) + "\n"
            ).encode(),
            2,
            4 + depth - 30,  # the mapping, depth - 30 lists, then 30 more through the alias
            "alias *deep nests deeper",
        ),
    ]
    big = b"x: |\n" + (b"  " + b"a" * 99 + b"\n") * 100_000  # 10 MB
    attacks.append(Attack("10-MB-file", big, 0, 0, "file too large", whole_file=True))
    for name, text in (
        ("latin-1-value", "version: 1\nname: Café\n"),
        ("latin-1-key", "a: 1\nb: 2\nrésumé: 3\n"),
        ("latin-1-comment", "# déjà vu\na: 1\n"),
    ):
        line_number, line_text = next(
            (number, line)
            for number, line in enumerate(text.splitlines(), start=1)
            if not line.isascii()
        )
        column = next(index for index, char in enumerate(line_text, 1) if not char.isascii())
        attacks.append(
            Attack(name, text.encode("latin-1"), line_number, column, "not UTF-8 text: byte 0x")
        )
    attacks.append(Attack("nul-character", b"a: 1\nb: x\x00y\n", 2, 5, "is not allowed"))
    return attacks


ATTACKS = _attacks()


def _located(problems: list[Problem], path: Path, line: int, column: int, words: str) -> Problem:
    report = "\n".join(map(str, problems))
    matching = [
        p
        for p in problems
        if Path(p.path) == path and p.line == line and p.column == column and words in p.message
    ]
    assert matching, f"no problem at {path.name}:{line}:{column} with {words!r} in:\n{report}"
    assert str(matching[0]).startswith(f"{path}:{line}:{column}")
    return matching[0]


@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: kind.name)
@pytest.mark.parametrize("attack", ATTACKS, ids=lambda attack: attack.name)
def test_every_kind_of_file_refuses_the_attack_with_its_line_and_column(
    tmp_path: Path, kind: Kind, attack: Attack
) -> None:
    path, offset = kind.write(tmp_path, attack.payload)
    line, column = attack.line + offset, attack.column
    if attack.whole_file:  # where the file crosses the size limit
        crossing = path.read_bytes()[:MAX_FILE_BYTES]
        line, column = crossing.count(b"\n") + 1, MAX_FILE_BYTES - crossing.rfind(b"\n")
    tracemalloc.start()
    try:
        problems = kind.load(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    _located(problems, path, line, column, attack.words)
    assert len(problems) == 1, problems  # refused before anything else is looked at
    assert peak < MEMORY_BOUND, f"{peak / 1e6:.1f} MB to refuse {attack.name}"


@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: kind.name)
@pytest.mark.parametrize(
    ("text", "line", "column", "first"),
    [
        ("x: 1\ny: 2\nx: 3\n", 3, 1, 1),
        ("top:\n  a: 1\n  b:\n    - {c: 1, c: 2}\n", 4, 14, 4),
        ("'quoted': 1\nquoted: 2\n", 2, 1, 1),
    ],
    ids=["top-level", "nested-flow", "quoted"],
)
def test_every_kind_of_file_refuses_a_duplicate_key_with_one_message(
    tmp_path: Path, kind: Kind, text: str, line: int, column: int, first: int
) -> None:
    path, offset = kind.write(tmp_path, text.encode())
    problem = _located(kind.load(path), path, line + offset, column, "duplicate key")
    assert problem.message.endswith(
        f": already given on line {first + offset}; expected each key once"
    )


def test_anchors_within_the_budget_are_fine(tmp_path: Path) -> None:
    questionnaire = tmp_path / "questionnaire.yaml"
    questionnaire.write_text(
        "version: 1\n"
        "questions:\n"
        "  - key: role\n"
        "    kind: single_choice\n"
        "    labels: &role {en: Role, fr: Rôle}\n"
        "    options:\n"
        "      - {key: founder, labels: &founder {en: Founder, fr: Fondateur}}\n"
        "  - key: main_role\n"
        "    kind: single_choice\n"
        "    labels: *role\n"
        "    options:\n"
        "      - {key: founder, labels: *founder}\n",
        encoding="utf-8",
    )
    loaded = read_questionnaire(questionnaire)
    assert loaded.problems == []
    assert loaded.value is not None
    assert loaded.value.question("main_role").labels.get("fr") == "Rôle"


def test_the_limits_can_be_tightened() -> None:
    text = "a: &a [1, 2, 3]\nb: [*a, *a]\n"
    assert parse_located_yaml(text, "f.yaml")[1] == []
    document, problems = parse_located_yaml(text, "f.yaml", limits=YamlLimits(max_alias_nodes=5))
    assert document is None
    assert [(p.line, p.column) for p in problems] == [(2, 9)]
    _, problems = parse_located_yaml("a: [[1]]\n", "f.yaml", limits=YamlLimits(max_depth=2))
    assert [(p.line, p.column, p.message) for p in problems] == [
        (1, 5, "nested deeper than 2 levels of lists and mappings")
    ]


def test_positions_name_every_key_and_item() -> None:
    document, problems = parse_located_yaml(
        "steps:\n  - id: hello\n    next: [a, b]\n", "f.yaml", line_offset=3
    )
    assert problems == [] and document is not None
    assert document.positions[("steps", 0, "next", 1)].line == 6
    assert document.locate(("steps", 0, "send", "next")).column == 5  # tags are skipped
    assert document.find(("steps", 0, "missing"))[0] == ("steps", 0)


def test_a_bomb_in_a_workspace_is_listed_with_the_other_problems(tmp_path: Path) -> None:
    import shutil

    workspace = Path(shutil.copytree(CONTENT, tmp_path / "workspace"))
    laughs, line, column = _laughs(9)
    bomb = workspace / "journeys" / "bomb.yaml"
    bomb.write_text(laughs, encoding="utf-8")
    deep = workspace / "segments.yaml"
    deep.write_text("segments: " + "[" * 500 + "]" * 500 + "\n", encoding="utf-8")
    with pytest.raises(WorkspaceValidationError) as raised:
        load_workspace(workspace)
    _located(raised.value.problems, bomb, line, column, "aliases stand for more")
    _located(raised.value.problems, deep, 1, 11 + MAX_NESTING_DEPTH, "nested deeper")

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
    assert result.exit_code == 1
    assert f"{bomb}:{line}:{column}: aliases stand for more than" in result.stderr
    assert "Traceback" not in result.output and "RecursionError" not in result.output
