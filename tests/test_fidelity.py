"""Regression tests for the causes the notebook corpus found (docs/corpus.md).

Each test states what a plain run guarantees; each failed before the fix named in the comment
above it (tests/test_corpus.py has the notebooks they come from).
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from resumable_nb.fingerprint import fingerprint
from tests.conftest import Kernels, Shell

# MPL (fixed by resumable_nb/_fp_matplotlib.py): transforms kept their parents in a dict keyed by
# id(), and caches, callbacks and stale flags that drawing and restoring change.
_FIGURE = """
import io, pickle, sys
import matplotlib
matplotlib.use("agg")
import matplotlib.pyplot as plt
from matplotlib.transforms import Affine2D
from resumable_nb.fingerprint import fingerprint

def figure(data=(1, 2, 3), color="red", label="line", title="t", angle=30.0, size=(4, 3), xlim=None):
    fig, ax = plt.subplots(figsize=size)
    ax.plot(list(data), color=color, label=label)
    ax.legend()
    ax.set_title(title)
    ax.text(0.5, 0.5, "x", transform=Affine2D().rotate_deg(angle) + ax.transAxes)
    if xlim is not None:
        ax.set_xlim(*xlim)
    return fig

def draw(fig):
    fig.savefig(io.BytesIO(), format="png")
    return fig
"""


@pytest.fixture
def mpl() -> Iterator[dict[str, Any]]:
    ns: dict[str, Any] = {}
    exec(compile(_FIGURE, "<figure>", "exec", dont_inherit=True), ns)
    yield ns
    ns["plt"].close("all")


def test_figure_fingerprint_survives_a_round_trip(mpl: dict[str, Any]) -> None:
    fig = mpl["figure"]()
    assert fingerprint(pickle.loads(pickle.dumps(fig))) == fingerprint(fig)


def test_figure_fingerprint_survives_drawing_restoring_and_hashing(mpl: dict[str, Any]) -> None:
    fig = mpl["draw"](mpl["figure"]())
    drawn = fingerprint(fig)
    assert fingerprint(fig) == drawn, "hashing a figure must not change it (CallbackRegistry's id counter)"
    restored = pickle.loads(pickle.dumps(fig))
    assert fingerprint(restored) == drawn, "a restore resets stale flags and transform caches"
    assert fingerprint(mpl["draw"](restored)) == drawn
    assert fingerprint(restored.axes[0]) == fingerprint(fig.axes[0])


def test_figure_fingerprint_is_the_same_in_two_processes(mpl: dict[str, Any]) -> None:
    script = _FIGURE + "\nfig = draw(figure())\nprint(fingerprint(fig), fingerprint(figure()))\n"
    outputs = set()
    for seed in ("0", "1"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                              check=True, cwd=Path(__file__).parent.parent)
        outputs.add(done.stdout.strip())
    assert len(outputs) == 1, outputs
    drawn, undrawn = outputs.pop().split()
    assert drawn == fingerprint(mpl["draw"](mpl["figure"]())) and undrawn == fingerprint(mpl["figure"]())


@pytest.mark.parametrize("change", [
    {"data": (1, 2, 4)}, {"color": "blue"}, {"label": "other"}, {"title": "u"}, {"angle": 31.0},
    {"size": (4, 3.5)}, {"xlim": (0, 5)},
])
def test_what_a_figure_draws_still_changes_its_fingerprint(mpl: dict[str, Any],
                                                           change: dict[str, Any]) -> None:
    base, other = mpl["figure"](), mpl["figure"](**change)
    assert fingerprint(base) == fingerprint(mpl["figure"]())
    assert fingerprint(other) != fingerprint(base)
    assert fingerprint(other.axes[0]) != fingerprint(base.axes[0])
    assert fingerprint(mpl["draw"](other)) != fingerprint(mpl["draw"](base)), "also once drawn"


def test_changing_a_drawn_figure_changes_its_fingerprint(mpl: dict[str, Any]) -> None:
    fig = mpl["draw"](mpl["figure"]())
    before = fingerprint(fig)
    fig.axes[0].lines[0].set_ydata([1, 2, 5])
    assert fingerprint(fig) != before
    after = fingerprint(fig)
    fig.axes[0].texts[0].get_transform().get_affine()  # fills caches: no content change
    fig.axes[0].lines[0].set_color("green")
    assert fingerprint(fig) not in (before, after)


def test_a_step_reading_a_restored_figure_hits(shell: Shell) -> None:
    make = ("%%step make\nimport matplotlib\nmatplotlib.use('agg')\nimport matplotlib.pyplot as plt\n"
            "fig, ax = plt.subplots()\nax.plot([1, 2, 3])")
    use = "%%step use\nmark('use')\nax.set_title('t')\ntitle = ax.get_title()"
    _reader_hits_after_a_restore(shell, make, use)


# MASKED (fixed by resumable_nb/_fp_numpy.py): a MaskedArray (pcolor's data, also in a colorbar)
# has _fill_value None until pickled and a 0-d array after; hashed through its __dict__, axes
# holding a pcolor fingerprinted differently once restored, and every step reading them missed.
def test_a_step_reading_restored_axes_with_a_pcolor_and_a_colorbar_hits(shell: Shell) -> None:
    make = ("%%step make\nimport numpy as np\nimport matplotlib\nmatplotlib.use('agg')\n"
            "import matplotlib.pyplot as plt\nfig = plt.figure()\nax = fig.add_subplot(111)\n"
            "img = ax.pcolor(*np.meshgrid(np.arange(4.0), np.arange(3.0)), np.ones((3, 4)))\n"
            "fig.colorbar(img)")
    use = "%%step use\nmark('use')\nn = len(ax.get_children())"
    _reader_hits_after_a_restore(shell, make, use)


def test_a_step_reading_a_restored_masked_array_hits(shell: Shell) -> None:
    make = "%%step make\nimport numpy as np\nm = np.ma.masked_invalid([1.0, np.nan, 3.0])"
    use = "%%step use\nmark('use')\ntotal = m.sum()"
    _reader_hits_after_a_restore(shell, make, use)


# SETUP (fixed by resumable_nb/setup_magics.py): '%matplotlib nbagg' in a step chose the backend
# in a plain run, not on a hit; later figures were then drawn and closed as a plain run's never
# were, and the steps reading them missed (extra_gradient_descent, after MASKED).
@pytest.mark.kernel
def test_a_hit_replays_the_session_setup_magics_of_its_step(start: Kernels) -> None:
    step = "%%step setup\nmark('setup')\n%precision 3\n%matplotlib agg\nimport numpy as np"
    probe = ("(get_ipython().display_formatter.formatters['text/plain'].float_format, "
             "__import__('matplotlib').get_backend())")
    first = start()
    first.ok(step)
    assert first.value(probe) == ("%.3f", "agg")
    first.close()
    second = start()  # a new kernel: its defaults
    assert second.value(probe) != ("%.3f", "agg")
    second.ok(step)
    assert start.count("setup") == 1, "a hit"
    assert second.value(probe) == ("%.3f", "agg"), "as after a plain run"


# CLOSED_FILE (fixed in serialize.py): 'with open(name) as f:' leaves f bound to a closed file,
# which was refused as an output, so the step was never cached (hml2_tools_pandas c108).
def test_a_step_that_reads_a_file_with_a_with_block_hits(shell: Shell, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("one\n")
    step = "%%step read\nmark('read')\nwith open('notes.txt') as f:\n    text = f.read()"
    shell.run(step)
    assert shell.last.stored, shell.last.notices
    shell.fresh()
    shell.run(step)
    assert shell.last.status == "cached" and shell.count("read") == 1
    assert shell.ns["f"].closed and shell.ns["f"].name == "notes.txt" and shell.ns["text"] == "one\n"
    (tmp_path / "notes.txt").write_text("two\n")
    shell.run(step)
    assert shell.count("read") == 2 and shell.ns["text"] == "two\n", "the file is still an input"


# MPLSTATE (fixed by resumable_nb/mplstate.py): plt.style.use('classic') and matplotlib.use(...)
# in a step changed matplotlib's global rcParams in a plain run, not on a hit or %resume: axes
# autoscaled later (lazily, under the rcParams of the moment) got other limits (amp_part4).
_STYLE = ("%%step style\nmark('style')\nimport matplotlib.pyplot as plt\nplt.style.use('classic')\n"
          "fig, ax = plt.subplots()\nax.plot([1, 2, 3], [28.5, 61.5, 40])")


@pytest.mark.parametrize("how", ["hit", "%resume"])
def test_matplotlib_settings_a_step_changed_are_left_as_a_plain_run_leaves_them(shell: Shell,
                                                                                how: str) -> None:
    import matplotlib

    saved = dict(matplotlib.rcParams)
    try:
        shell.run("import matplotlib\nmatplotlib.use('agg')")
        shell.run(_STYLE)
        plain = (matplotlib.rcParams["axes.autolimit_mode"], shell.ns["ax"].get_ylim())
        assert plain[0] == "round_numbers"
        shell.fresh()
        matplotlib.rcdefaults()  # a new kernel
        shell.run("import matplotlib\nmatplotlib.use('agg')")
        shell.run(_STYLE if how == "hit" else "%resume")
        assert shell.count("style") == 1
        assert (matplotlib.rcParams["axes.autolimit_mode"], shell.ns["ax"].get_ylim()) == plain
    finally:
        dict.update(matplotlib.rcParams, saved)


# VIEWS (fixed by aliases.views + serialize): a view made in a step (a_slice = a[2:5]) came back
# as its own array, so writing through it after a hit or %resume left the base unchanged
# (hml2_tools_numpy a_slice, g2 = g.reshape(...)).
@pytest.mark.parametrize("how", ["one step", "two steps", "%resume"])
def test_a_restored_view_still_writes_through_to_its_base(shell: Shell, how: str) -> None:
    cells = (["%%step make\nimport numpy as np\na = np.arange(10)\na_slice = a[2:5]\ng2 = a.reshape(2, 5)"]
             if how == "one step" else
             ["%%step make\nimport numpy as np\na = np.arange(10)",
              "%%step view\na_slice = a[2:5]\ng2 = a.reshape(2, 5)"])
    for cell in cells:
        shell.run(cell)
    shell.fresh()
    if how == "%resume":
        shell.run("%resume")
    else:
        for cell in cells:
            shell.run(cell)
            assert shell.last.status == "cached"
    shell.run("a_slice[0] = 99\ng2[1, 0] = 55")  # a plain cell, as in the notebook
    assert shell.ns["a"].tolist() == [0, 1, 99, 3, 4, 55, 6, 7, 8, 9], "as in a plain run"


# BUNCH (fixed by resumable_nb/_fp_sklearn.py): sklearn's Bunch keeps _deprecated_key_to_warnings
# in its live __dict__, which its no-op __setstate__ drops on a restore.
def test_bunch_fingerprint_survives_a_round_trip() -> None:
    from sklearn.datasets import load_iris

    iris = load_iris()
    assert fingerprint(pickle.loads(pickle.dumps(iris))) == fingerprint(iris)


def test_a_bunch_still_changes_with_its_items() -> None:
    from sklearn.utils import Bunch

    b = Bunch(a=1, data=[1, 2])
    assert fingerprint(b) == fingerprint(Bunch(a=1, data=[1, 2]))
    assert fingerprint(b) != fingerprint(Bunch(a=1, data=[1, 3]))
    assert fingerprint(b) != fingerprint(Bunch(a=1, other=[1, 2]))
    assert fingerprint(b) != fingerprint({"a": 1, "data": [1, 2]}), "the type counts"
    b.data.append(3)
    assert fingerprint(b) == fingerprint(Bunch(a=1, data=[1, 2, 3]))


def test_a_step_reading_a_restored_bunch_hits(shell: Shell) -> None:
    make = "%%step load\nfrom sklearn import datasets\niris = datasets.load_iris()"
    use = "%%step use\nmark('use')\nX = iris['data'][:, 3:]"
    _reader_hits_after_a_restore(shell, make, use)


def _reader_hits_after_a_restore(shell: Shell, make: str, use: str) -> None:
    """``make`` then ``use`` (which marks 'use'); in a fresh namespace ``make`` hits, and
    ``use``, reading what ``make`` restored, must hit too (never run a second time)."""
    shell.run(make)
    shell.run(use)
    shell.fresh()
    shell.run(make)
    assert shell.last.status == "cached"
    shell.run(use)
    assert shell.count("use") == 1, f"the step re-ran: {shell.last.reason}"


# COMPILED (fixed): runner.StepRunner._execute compiled the whole step body as one module where
# IPython compiles a plain cell statement by statement; on 3.11 a method call on a name imported
# in the same unit then compiled to other bytecode. It now compiles like IPython.
def test_a_function_defined_in_a_step_fingerprints_as_in_a_plain_cell(shell: Shell) -> None:
    code = "import math\ndef f(x):\n    return math.floor(x)\n"
    shell.run(code)
    plain = fingerprint(shell.ns["f"], shell.ns)
    shell.run("%%step define\n" + code)
    assert fingerprint(shell.ns["f"], shell.ns) == plain


def test_a_future_import_in_a_step_applies_to_the_statements_after_it(shell: Shell) -> None:
    # Compiled statement by statement, like a plain cell: the flag must carry on.
    import __future__

    try:
        shell.run("%%step fut\nfrom __future__ import annotations\n"
                  "def g(x: undefined_name) -> None:\n    pass\nann = g.__annotations__")
        assert shell.ns["ann"] == {"x": "undefined_name", "return": "None"}
    finally:
        # The shell is one instance for the whole session, and IPython keeps a cell's future
        # flags for the cells after it: later tests would compile with postponed annotations.
        shell.ip.compile.flags &= ~__future__.annotations.compiler_flag


def test_a_function_from_a_step_still_changes_with_its_code(shell: Shell) -> None:
    shell.run("%%step define\nimport math\ndef f(x):\n    return math.floor(x)\n")
    before = fingerprint(shell.ns["f"], shell.ns)
    shell.run("%%step define\nimport math\ndef f(x):\n    return math.ceil(x)\n")
    assert fingerprint(shell.ns["f"], shell.ns) != before


# PYLAB (fixed in serialize.py): 'from pylab import *' binds matplotlib's rcParamsDefault, whose
# pickled copy cannot be unpickled, so the step's entry could never be restored.
def test_a_pylab_star_import_step_hits_and_brings_back_its_names(shell: Shell) -> None:
    import matplotlib

    shell.run("import matplotlib\nmatplotlib.use('agg')")
    step = "%%step pylab\nmark('pylab')\nfrom pylab import *"
    shell.run(step)
    names = {k for k in shell.ns if not k.startswith("_")}
    shell.fresh()
    shell.run("import matplotlib\nmatplotlib.use('agg')")
    shell.run(step)
    assert shell.last.status == "cached", shell.last.reason
    assert shell.count("pylab") == 1
    assert names <= set(shell.ns)
    assert shell.ns["rcParams"] is matplotlib.rcParams
    assert shell.ns["rcParamsDefault"] is matplotlib.rcParamsDefault


# PYLAB, the rest: numpy.random's functions came back bound to a copy of the global generator;
# rcParams changed through the module by a later step came back unchanged on a hit.
def test_pylab_names_after_a_hit_are_the_libraries_own(shell: Shell) -> None:
    import matplotlib
    import numpy as np

    saved = dict(matplotlib.rcParams)
    steps = ["%%step pylab\nmark('pylab')\nfrom pylab import *",
             "%%step style\nmark('style')\nmatplotlib.rcParams.update({'font.size': 17.0})",
             "%%step again\nmark('again')\nimport matplotlib\nmatplotlib.rcParams['lines.linewidth'] = 5.0"]
    try:
        shell.run("import matplotlib\nmatplotlib.use('agg')")
        for step in steps:
            shell.run(step)
        shell.fresh()
        matplotlib.rcdefaults()  # a new kernel
        shell.run("import matplotlib\nmatplotlib.use('agg')")
        for step in steps:
            shell.run(step)
            assert shell.last.status == "cached", shell.last.reason
        assert shell.count("pylab") == 1 and shell.count("style") == 1
        assert shell.ns["rcParams"] is matplotlib.rcParams and matplotlib.rcParams["font.size"] == 17.0
        assert matplotlib.rcParams["lines.linewidth"] == 5.0, "changed through a module the step imports"
        assert shell.ns["beta"] is np.random.beta and shell.ns["seed"] is np.random.seed
    finally:
        dict.update(matplotlib.rcParams, saved)
