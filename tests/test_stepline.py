"""The one ``%%step`` line parser: its table of lines, and proof through a real InteractiveShell
that ``%replay``, ``%resume --run`` and the panel's Re-run compute the magic's key."""

from __future__ import annotations

import doctest
from pathlib import Path

import nbformat
import pytest

from resumable_nb import stepline
from resumable_nb.errors import StepUsageError
from resumable_nb.resume import parse_cells
from resumable_nb.stepline import USAGE, StepLine, parse_step_line
from tests.conftest import Shell


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("s", StepLine("s")),
        ("  s  ", StepLine("s")),
        ("s --force", StepLine("s", force=True)),
        ("--force s", StepLine("s", force=True)),
        ("s --ignore=a", StepLine("s", ignore=("a",))),
        ("s --ignore a", StepLine("s", ignore=("a",))),
        ("s --ignore b a", StepLine("s", ignore=("a", "b"))),
        ("s --ignore a b --force", StepLine("s", force=True, ignore=("a", "b"))),
        ("s --ignore a --ignore b", StepLine("s", ignore=("b",))),  # argparse: the last one wins
        ("s --ignore a a", StepLine("s", ignore=("a",))),
        ("'s' --ignore \"a\"", StepLine("s", ignore=("a",))),
        ("load.v2-x", StepLine("load.v2-x")),
    ],
)
def test_parse_step_line(line: str, expected: StepLine) -> None:
    assert parse_step_line(line) == expected


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("", "needs a step name"),
        ("--force", "needs a step name"),
        ("--ignore a s", "needs a step name"),  # the name comes first: --ignore takes the rest
        ("9bad", "invalid step name '9bad'"),
        ("'two words'", "invalid step name 'two words'"),
        ("s t", "unrecognized arguments: t"),
        ("s --nope", "unrecognized arguments: --nope"),
        ("s --forc", "unrecognized arguments: --forc"),  # no abbreviations
        ("s --ignore", "--ignore: expected at least one argument"),
        ("s --ignore 1x", "'1x' is not one"),
        ("s --ignore 'a", "no closing quotation"),
    ],
)
def test_bad_lines_raise_one_line(line: str, message: str) -> None:
    with pytest.raises(StepUsageError, match=None) as info:
        parse_step_line(line)
    text = str(info.value)
    assert message in text and "\n" not in text


@pytest.mark.parametrize("line", ["s", "s --force", "s --ignore b a", "s --force --ignore=a",
                                  "s --reads 'b/*.csv' a.csv --writes 'o ut.txt' --retries 2 "
                                  "--retry-delay 0.5"])
def test_str_is_a_line_that_parses_back(line: str) -> None:
    parsed = parse_step_line(line)
    assert parse_step_line(str(parsed)) == parsed


def test_usage_line_and_doctests() -> None:
    assert USAGE == ("%%step NAME [--force] [--ignore NAME ...] [--reads PATTERN ...] "
                     "[--writes PATTERN ...] [--retries N] [--retry-delay S]")
    assert doctest.testmod(stepline).failed == 0


def test_step_help_is_generated(shell: Shell) -> None:
    doc = shell.ip.find_cell_magic("step").__doc__
    assert doc.startswith(f"usage: {USAGE}\n")
    assert "Example::" in doc and "%%step clean" in doc
    assert "--ignore NAME" in doc and "--force" in doc


def test_notebook_cells_use_the_same_parser() -> None:
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("%%step s --ignore=a\nb = a"),
        nbformat.v4.new_code_cell("%%step 9bad\nx = 1"),  # runs as a cell, to fail in the magic
        nbformat.v4.new_code_cell("%%steps\nx = 1"),
        nbformat.v4.new_markdown_cell("%%step m"),
        nbformat.v4.new_code_cell("x = 1"),
    ])
    cells = parse_cells(nb)
    assert [c.spec for c in cells] == [StepLine("s", ignore=("a",)), None, None, None]
    assert (cells[0].line, cells[0].body) == ("s --ignore=a", "b = a")
    assert [c.index for c in cells] == [0, 1, 2, 4]


# -- every way of running a step computes the magic's key --------------------------------------
_CELLS = ["%load_ext resumable_nb", "%%step first\nmark('first')\na = 1",
          "%%step s --ignore=a\nmark('s')\nb = a + 1"]


def _notebook(folder: Path) -> Path:
    path = folder / "pipeline.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in _CELLS]),
                   str(path))
    return path


@pytest.fixture
def declared(shell: Shell, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Steps ``first`` and ``s`` (``--ignore=a``) run by the magic; the key the magic computed."""
    monkeypatch.setenv("RESUMABLE_NB_NOTEBOOK", str(_notebook(tmp_path)))
    shell.fresh()
    shell.run(_CELLS[1])
    shell.run(_CELLS[2])
    key = shell.last.key
    assert key is not None
    return key


def test_replay_hits_the_magics_entry(shell: Shell, declared: str) -> None:
    shell.run("%replay --from first")
    assert shell.count("first") == 2, "the replayed step runs"
    assert (shell.last.name, shell.last.key) == ("s", declared)
    assert shell.count("s") == 1, "s hit the entry the magic stored"


def test_resume_run_hits_the_magics_entry(shell: Shell, declared: str) -> None:
    shell.fresh()  # a second kernel completes only `first`: `s` is left to run
    shell.run(_CELLS[1])
    shell.fresh()
    shell.run("%resume --run")
    assert (shell.last.name, shell.last.key) == ("s", declared)
    assert shell.count("s") == 1, "s hit the entry the magic stored"
    assert shell.ns["b"] == 2


def test_panel_rerun_writes_the_magics_entry(shell: Shell, declared: str) -> None:
    shell.magics.session.rerun("s")
    assert (shell.last.name, shell.last.key) == ("s", declared)
    assert shell.count("s") == 2, "Re-run ignores the cache entry"
    shell.run(_CELLS[2])
    assert shell.last.key == declared
    assert shell.count("s") == 2, "the magic hits the entry Re-run stored"
