"""The global random generators: which steps key on where they stood (rng.seeded), and what
``%resume`` leaves when plain cells re-run between restored steps."""

from __future__ import annotations

import ast
import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from resumable_nb import rng
from tests.conftest import Shell


def _cell(shell: Shell, code: str) -> None:
    """Run a cell as a frontend does (journaled as a plain cell when it is one)."""
    assert shell.ip.run_cell(code, store_history=True).success


@pytest.fixture(autouse=True)
def _generators() -> Iterator[None]:
    """The shell runs in this process: put the generators back for the rest of the suite."""
    states = random.getstate(), np.random.get_state()
    yield
    random.setstate(states[0])
    np.random.set_state(states[1])


@pytest.mark.parametrize(("body", "expect"), [
    ("import numpy as np\nnp.random.seed(0)\nx = np.random.rand(3)", {"numpy"}),
    ("import random\nrandom.seed(0)\nx = random.random()", {"random"}),
    ("np.random.seed(0)\nx = np.random.rand()", {"numpy"}),  # np from the namespace
    ("SEED = 3\nnp.random.seed(SEED)", {"numpy"}),
    ('"""doc"""\nfrom numpy.random import seed\nseed(0)', {"numpy"}),
    ("random.seed(1)\nnp.random.seed(seed=2)", {"random", "numpy"}),
    ("import numpy.random as npr\nnpr.seed(-1)", {"numpy"}),
    ("nseed(0)", {"numpy"}),  # a seed function held by the namespace
    # A draw, a read or any call that might draw comes first: the before-state counts.
    ("x = np.random.rand()\nnp.random.seed(0)", set()),
    ("s = np.random.get_state()\nnp.random.seed(0)", set()),
    ("f()\nnp.random.seed(0)", set()),
    ("import helper\nnp.random.seed(0)", set()),  # its import may draw
    ("np.random.seed(f())", set()),
    ("np.random.seed()", set()),  # fresh entropy
    ("np.random.seed(*a)", set()),
    ("for i in range(2):\n    np.random.seed(i)", set()),
    ("np = other\nnp.random.seed(0)", set()),
    ("np = 1\nnp.random.seed(0)", set()),
    ("obj.random.seed(0)", set()),  # not a module: not evaluated
    ("np.random.default_rng(0)", set()),
], ids=lambda v: v if isinstance(v, str) else "")
def test_seeded_reads_only_what_it_can_prove(body: str, expect: set[str]) -> None:
    ns = {"np": np, "random": random, "nseed": np.random.seed, "obj": object()}
    assert rng.seeded(ast.parse(body), ns) == expect


def test_drawing_before_seeding_still_keys_on_the_before_state(shell: Shell) -> None:
    shell.run("import numpy as np\nnp.random.seed(1)")
    cell = "%%step ds\nmark('ds')\nx = float(np.random.rand())\nnp.random.seed(0)"
    shell.run(cell)
    first = shell.ns["x"]
    shell.run("np.random.seed(2)")
    shell.run(cell)
    assert shell.count("ds") == 2 and shell.ns["x"] != first


def test_self_seeding_hit_leaves_the_generator_where_the_step_did(shell: Shell) -> None:
    cell = "%%step ss\nmark('ss')\nimport numpy as np\nnp.random.seed(5)\nx = np.random.rand(2)"
    shell.run("import numpy as np")
    shell.run(cell)
    shell.run("after = float(np.random.rand())")
    plain = shell.ns["after"]
    shell.fresh()
    shell.run("import numpy as np\nnp.random.rand(7);")  # elsewhere: does not matter
    shell.run(cell)
    shell.run("after = float(np.random.rand())")
    assert shell.count("ss") == 1 and shell.ns["after"] == plain


def test_resume_stops_before_a_step_whose_plain_input_changed(shell: Shell, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "b.txt"
    source.write_text("one")
    _cell(shell, "%%step A\nmark('A')\na = 1")
    _cell(shell, f"b = open({str(source)!r}).read()")
    _cell(shell, "%%step B\nmark('B')\nc = b + '!'")
    _cell(shell, "%%step C\nmark('C')\nd = a + 1")
    source.write_text("two")
    shell.fresh()
    capsys.readouterr()
    shell.run("%resume")
    out = capsys.readouterr().out
    assert "Step 'B' not restored: input b changed." in out
    assert "Step 'C' not restored: it ran after step 'B'" in out
    assert shell.ns["b"] == "two" and shell.ns["a"] == 1
    assert "c" not in shell.ns and "d" not in shell.ns
    shell.run("%resume --run")
    assert shell.ns["c"] == "two!" and shell.count("B") == 2


def test_resume_stops_where_a_plain_cell_now_draws_differently(shell: Shell, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    count = tmp_path / "n.txt"
    count.write_text("1")
    _cell(shell, "import numpy as np\nnp.random.seed(0)")
    _cell(shell, "%%step A\nmark('A')\na = np.random.rand(2)")
    _cell(shell, f"for _ in range(int(open({str(count)!r}).read())):\n    np.random.rand()")
    _cell(shell, "%%step B\nmark('B')\nd = float(np.random.rand())")
    count.write_text("2")
    shell.fresh()
    capsys.readouterr()
    shell.run("%resume")
    out = capsys.readouterr().out
    assert "Step 'B' not restored: the global random generator (numpy) is in another state" in out
    assert "d" not in shell.ns and shell.count("A") == 1


def test_resume_restores_rng_of_a_step_that_binds_nothing(shell: Shell) -> None:
    _cell(shell, "import numpy as np")
    _cell(shell, "%%step S\nmark('S')\nnp.random.seed(4)")
    _cell(shell, "x = float(np.random.rand())")
    _cell(shell, "%%step T\nmark('T')\ny = 1")
    _cell(shell, "after = float(np.random.rand())")
    plain = shell.ns["x"], shell.ns["after"]
    shell.fresh()
    shell.run("%resume")
    assert shell.count("S") == 1 and shell.ns["x"] == plain[0]
    assert shell.ns["after"] == plain[1]


@pytest.mark.kernel
def test_headless_run_resumes_plain_draws_between_steps(tmp_path: Path, _key_file: Path) -> None:
    """``resumable-nb run`` after a crash, with a plain cell drawing between two restored steps:
    the state must be a plain run's (b drawn after A's draws, c = a.sum() + b)."""
    from tests.test_cli import cli, write_notebook

    died = tmp_path / "died-once"
    nb = write_notebook(tmp_path / "draws.ipynb", [
        "%load_ext resumable_nb",
        f"import os, signal\nfrom pathlib import Path\nimport numpy as np\nDIED = Path({str(died)!r})"
        "\nnp.random.seed(0)",
        "%%step A\na = np.random.rand(2)",
        "b = float(np.random.rand())",
        "%%step B\nc = float(a.sum()) + b",
        "%%step K\nif not DIED.exists():\n    DIED.touch()\n    os.kill(os.getpid(), signal.SIGKILL)\nk = 1",
        "%%step D\nprint('check', c == float(a.sum()) + b, repr(b))",
    ])
    cache, out = tmp_path / "cache", tmp_path / "out.ipynb"
    first = cli("run", nb, "-o", out, cache=cache, key=_key_file)
    assert first.returncode == 1, first.stderr
    second = cli("run", nb, "-o", out, cache=cache, key=_key_file)
    assert second.returncode == 0, second.stderr
    np.random.seed(0)
    np.random.rand(2)
    b = float(np.random.rand())
    text = out.read_text()
    assert f"check True {b!r}" in text, text[-2000:]


@pytest.mark.kernel
def test_headless_run_does_not_restore_a_step_whose_plain_input_changed(tmp_path: Path,
                                                                        _key_file: Path) -> None:
    from tests.test_cli import cli, write_notebook

    died, source = tmp_path / "died-once", tmp_path / "b.txt"
    source.write_text("one")
    nb = write_notebook(tmp_path / "plain.ipynb", [
        "%load_ext resumable_nb",
        f"import os, signal\nfrom pathlib import Path\nDIED = Path({str(died)!r})",
        "%%step A\na = 1",
        f"b = open({str(source)!r}).read()",
        "%%step B\nc = b + '!'",
        "%%step K\nif not DIED.exists():\n    DIED.touch()\n    os.kill(os.getpid(), signal.SIGKILL)\nk = 1",
        "%%step D\nprint('check', repr(c))",
    ])
    cache, out = tmp_path / "cache", tmp_path / "out.ipynb"
    assert cli("run", nb, "-o", out, cache=cache, key=_key_file).returncode == 1
    source.write_text("two")
    second = cli("run", nb, "-o", out, cache=cache, key=_key_file)
    assert second.returncode == 0, second.stderr
    assert "step 'B' is not restored (input b changed)" in second.stderr
    assert "check 'two!'" in out.read_text()
