"""Process settings (procstate.py): which enter the key, which a hit and %resume make again."""

from __future__ import annotations

import decimal
import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from resumable_nb import procstate
from tests.conftest import Kernels, Shell


@pytest.fixture(autouse=True)
def _put_back() -> Iterator[None]:
    """Every test here changes process-wide settings: put them back."""
    ctx = decimal.getcontext().copy()
    err = np.geterr()
    argv, path, cwd = list(sys.argv), list(sys.path), os.getcwd()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        options = {k: pd.get_option(k) for k in ("future.no_silent_downcasting", "compute.use_numexpr")}
    filters = list(warnings.filters)
    yield
    decimal.setcontext(ctx)
    np.seterr(**err)
    sys.argv[:], sys.path[:] = argv, path
    os.chdir(cwd)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for k, v in options.items():
            pd.set_option(k, v)
    warnings.filters[:] = filters
    warnings._filters_mutated()  # type: ignore[attr-defined]


# -- the key ---------------------------------------------------------------------------------

def test_a_new_process_has_no_entry_whatever_it_imports() -> None:
    """Fresh settings add nothing to the key, with or without numpy, pandas, decimal loaded
    (keys of existing entries are unchanged; a library's 'ignore' filters change nothing)."""
    code = ("import json, sys; from resumable_nb import procstate; a = procstate.key_entries();"
            "import decimal, numpy, pandas, warnings, IPython.core.completer;"
            "warnings.filterwarnings('ignore', 'x');"
            "print(json.dumps([a, procstate.key_entries()]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[{}, {}]"


@pytest.mark.parametrize(("change", "entry"), [
    ("decimal.getcontext().prec = 5", "proc:decimal"),
    ("decimal.getcontext().rounding = decimal.ROUND_DOWN", "proc:decimal"),
    ("decimal.getcontext().traps[decimal.Inexact] = True", "proc:decimal"),
    ("np.seterr(divide='raise')", "proc:numpy.seterr"),
    ("warnings.simplefilter('error')", "proc:warnings"),
    ("warnings.filterwarnings('error', category=RuntimeWarning, append=True)", "proc:warnings"),
    ("pd.set_option('future.no_silent_downcasting', True)", "proc:pandas"),
    ("sys.argv = ['train.py', '--lr', '0.1']", "proc:argv"),
], ids=lambda s: s if s.startswith("proc:") else None)
def test_each_keyed_setting_enters_the_key_when_changed(change: str, entry: str) -> None:
    before = procstate.key_entries()
    exec(change, {"decimal": decimal, "np": np, "pd": pd, "warnings": warnings, "sys": sys})
    after = procstate.key_entries()
    assert after.get(entry) is not None and after.get(entry) != before.get(entry)


def test_filters_that_cannot_raise_leave_the_key_alone() -> None:
    before = procstate.key_entries()
    warnings.simplefilter("ignore", DeprecationWarning)
    warnings.filterwarnings("default", message="x")
    warnings.filterwarnings("error", category=UserWarning, append=True)
    keyed = procstate.key_entries()
    warnings.filterwarnings("ignore", message="after the error filter", append=True)
    warnings.filterwarnings("ignore", message="a library's, at import")
    assert procstate.key_entries() == keyed != before


def test_the_interpreters_own_argv_is_not_keyed() -> None:
    own = tuple(sys.argv)
    assert procstate.key_entries().get("proc:argv") is None, (sys.argv, sys.orig_argv)
    sys.argv = [*own[:1]]
    assert procstate.key_entries().get("proc:argv") is not None


def test_settings_the_step_changed_are_recorded_and_applied() -> None:
    before = procstate.snapshot()
    decimal.getcontext().prec = 7
    np.seterr(over="raise")
    sys.path.insert(0, "/nonexistent/front")
    sys.path.append("/nonexistent/end")
    warnings.simplefilter("ignore", UserWarning)
    made = procstate.changed(before)
    assert made["decimal"] == {"prec": 7} and made["numpy.seterr"] == {"over": "raise"}
    assert made["sys.path"] == {"front": ["/nonexistent/front"], "end": ["/nonexistent/end"]}
    assert set(made) == {"decimal", "numpy.seterr", "sys.path", "warnings"}
    decimal.getcontext().prec = 28
    np.seterr(over="warn")
    sys.path[:] = [p for p in sys.path if not p.startswith("/nonexistent")]
    warnings.resetwarnings()
    procstate.apply(made)
    assert decimal.getcontext().prec == 7 and np.geterr()["over"] == "raise"
    assert sys.path[0] == "/nonexistent/front" and sys.path[-1] == "/nonexistent/end"
    assert warnings.filters[0][:3] == ("ignore", None, UserWarning)
    procstate.apply(made)  # again (a second hit): nothing doubles
    assert sys.path.count("/nonexistent/front") == 1 and len(warnings.filters) == 1


# -- through a shell -------------------------------------------------------------------------

@pytest.mark.parametrize(("setup", "change", "said"), [
    ("import numpy as np", "np.seterr(divide='raise')", "numpy error state changed"),
    ("import decimal", "decimal.getcontext().prec = 5", "decimal context changed"),
    ("import warnings", "warnings.simplefilter('error')", "warnings filters changed"),
    ("import sys", "sys.argv = ['x', '2']", "sys.argv changed"),
])
def test_a_miss_names_the_setting(shell: Shell, setup: str, change: str, said: str) -> None:
    shell.run(setup)
    cell = "%%step s\nmark('s')\nx = 1"
    shell.run(cell)
    shell.run(change)
    shell.run(cell)
    assert shell.count("s") == 2 and shell.last.reason == said
    shell.run("import warnings\nwarnings.resetwarnings()")


@pytest.mark.parametrize(("body", "check"), [
    ("import numpy as np\nnp.seterr(all='ignore')", "np.geterr()['divide'] == 'ignore'"),
    ("import warnings\nwarnings.simplefilter('ignore', UserWarning)",
     "warnings.filters[0][:3] == ('ignore', None, UserWarning)"),
    ("import pandas as pd\npd.set_option('future.no_silent_downcasting', True)",
     "pd.get_option('future.no_silent_downcasting') is True"),
    ("import sys\nsys.argv = ['train.py', '--epochs', '3']", "sys.argv == ['train.py', '--epochs', '3']"),
], ids=["seterr", "warnings", "pandas", "argv"])
def test_a_hit_in_a_new_kernel_makes_the_steps_settings(shell: Shell, body: str, check: str) -> None:
    own = list(sys.argv)
    cell = f"%%step set\nmark('set')\n{body}\nn = 1"
    shell.run(cell)
    shell.run("import warnings, sys, numpy as np, pandas as pd")
    assert shell.ip.ev(check)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np.seterr(all="warn", under="ignore")
        pd.set_option("future.no_silent_downcasting", False)
    warnings.resetwarnings()
    sys.argv = own
    shell.fresh()
    shell.run(cell)
    shell.run("import warnings, sys, numpy as np, pandas as pd")
    assert shell.count("set") == 1 and shell.ip.ev(check)


def test_resume_makes_the_settings_of_every_step(shell: Shell, tmp_path: Path) -> None:
    """sys.path and the folder a step set: a later import works after %resume, and an output
    whose class lives in that folder unpickles."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "procstate_helper.py").write_text("class Box:\n    v = 3\n")
    (tmp_path / "work").mkdir()
    os.chdir(tmp_path)
    shell.run("%%step a\nmark('a')\nimport os, sys\nsys.path.append(os.path.abspath('src'))\n"
              "os.chdir('work')\nimport procstate_helper\nbox = procstate_helper.Box()")
    sys.path.remove(str(tmp_path / "src"))
    sys.modules.pop("procstate_helper")
    os.chdir(tmp_path)
    shell.fresh()
    shell.run("%resume")
    assert shell.count("a") == 1 and type(shell.ns["box"]).v == 3
    assert os.getcwd() == str(tmp_path / "work") and str(tmp_path / "src") in sys.path
    sys.modules.pop("procstate_helper", None)


def test_a_step_that_sets_what_it_reads_runs_once_more_in_the_same_kernel(shell: Shell) -> None:
    """The key is taken before the step: the setting it made is in the key of its next run
    (one more run; then a hit, and the first entry hits in a new kernel). Documented."""
    cell = "%%step dp\nmark('dp')\nimport decimal\ndecimal.getcontext().prec = 5\nn = 1"
    shell.run(cell)
    shell.run(cell)
    shell.run(cell)
    assert shell.count("dp") == 2


@pytest.mark.kernel
def test_a_hit_in_a_new_kernel_makes_sys_path_and_the_folder(start: Kernels) -> None:
    """The common idiom: a step puts src/ on sys.path and moves into a folder; in a new kernel
    the hit does too, so the next plain cell's import and relative read work."""
    src = start.folder / "src"
    src.mkdir()
    (src / "proc_helper.py").write_text("def twice(x):\n    return 2 * x\n")
    (start.folder / "data").mkdir()
    (start.folder / "data" / "n.txt").write_text("21")
    step = ("%%step setup\nmark('setup')\nimport os, sys\nsys.path.append(os.path.abspath('src'))\n"
            "os.chdir('data')\nn = 1")
    after = "__import__('proc_helper').twice(int(open('n.txt').read()))"
    first = start()
    first.ok(step)
    assert first.value(after) == 42
    first.close()
    second = start()
    second.ok(step)
    assert start.count("setup") == 1, "a hit"
    assert second.value(after) == 42, "as after a plain run"
