"""%%step in real ipykernel kernels (jupyter_client) sharing one cache dir."""

from __future__ import annotations

import base64
import re

import pytest

from tests.conftest import Kernels as StartKernel

pytestmark = pytest.mark.kernel


def test_hit_in_the_same_and_in_a_new_kernel(start: StartKernel) -> None:
    cell = "%%step load\nmark('load')\nimport numpy as np\ndata = np.arange(10) ** 2\ntotal = int(data.sum())"
    k1 = start()
    k1.ok(cell)
    k1.ok(cell)
    assert start.count("load") == 1
    k2 = start()
    reply = k2.ok(cell)
    assert start.count("load") == 1
    assert "restored from cache" in reply.stdout
    assert k2.value("total") == 285
    assert k2.value("data.tolist()") == [i * i for i in range(10)]


@pytest.mark.parametrize(
    ("setup", "change"),
    [
        ("v = 1", "v = 2"),
        ("v = {'a', 'b'}", "v.add('c')"),
        ("import numpy as np; v = np.zeros((2, 3))", "v = np.zeros((3, 2))"),
        ("import numpy as np; v = np.zeros(3, 'f8')", "v = np.zeros(3, 'f4')"),
        ("import pandas as pd; v = pd.DataFrame({'n': [1, 2], 's': ['p', 'q']})", "v.loc[1, 's'] = 'r'"),
    ],
    ids=["scalar", "set-member", "np-shape", "np-dtype", "df-string"],
)
def test_changed_input_reruns_in_a_kernel(start: StartKernel, setup: str, change: str) -> None:
    cell = "%%step use\nmark('use')\nr = repr(v)"
    k = start()
    k.ok(setup)
    k.ok(cell)
    k.ok(change)
    k.ok(cell)
    assert start.count("use") == 2
    k2 = start()
    k2.ok(setup)
    k2.ok(cell)
    assert start.count("use") == 2, "the original input hits in a new kernel"


def test_transitive_functions_in_a_kernel(start: StartKernel) -> None:
    defs = "SCALE = 3\ndef f(x):\n    return x * SCALE\ndef g(x):\n    return f(x) + 1"
    cell = "%%step call\nmark('call')\nres = g(2)"
    k = start()
    k.ok(defs)
    k.ok(cell)
    k2 = start()
    k2.ok(defs)
    k2.ok(cell)
    assert start.count("call") == 1
    k2.ok("def f(x):\n    return x * SCALE * 10")
    k2.ok(cell)
    assert start.count("call") == 2 and k2.value("res") == 61
    k2.ok("SCALE = 4")
    k2.ok(cell)
    assert start.count("call") == 3 and k2.value("res") == 81


def test_in_place_mutation_restored_in_a_new_kernel(start: StartKernel) -> None:
    setup = ("import pandas as pd, numpy as np\nlst = [1]\nconf = {}\n"
             "df = pd.DataFrame({'a': [1.0, np.nan, 3.0]})\nclass Box:\n    pass\nbox = Box()")
    cell = ("%%step mutate\nmark('mutate')\nlst.append(2)\nconf['k'] = 'v'\nbox.attr = 7\n"
            "df.dropna(inplace=True)")
    k = start()
    k.ok(setup)
    k.ok(cell)
    k2 = start()
    k2.ok(setup)
    k2.ok(cell)
    assert start.count("mutate") == 1
    assert k2.value("lst") == [1, 2]
    assert k2.value("conf") == {"k": "v"}
    assert k2.value("box.attr") == 7
    assert k2.value("df['a'].tolist()") == [1.0, 3.0]


def test_rich_output_replayed_in_order_in_a_new_kernel(start: StartKernel) -> None:
    cell = ("%%step show\nimport sys\nimport pandas as pd\nimport matplotlib.pyplot as plt\n"
            "from IPython.display import display, HTML\n"
            "print('first')\nprint('warn', file=sys.stderr)\ndisplay(HTML('<i>second</i>'))\n"
            "plt.plot([1, 2, 3])\nplt.show()\nprint('third')\n"
            "frame = pd.DataFrame({'x': [1, 2]})\nframe")
    k = start()
    first = k.ok(cell)
    k2 = start()
    second = k2.ok(cell)
    assert "restored from cache" in second.stdout

    def shape(reply: object) -> list[tuple[str, str]]:
        kinds = []
        for kind, payload in reply.outputs:
            if kind in ("stdout", "stderr"):
                text = "".join(line for line in payload.splitlines(keepends=True)
                               if not line.startswith("[resumable_nb]"))
                if text:
                    kinds.append((kind, text))
            elif kind in ("display_data", "execute_result"):
                kinds.append((kind, ",".join(sorted(payload))))
        return kinds

    assert shape(second) == shape(first)
    kinds = [kind for kind, _ in shape(second)]
    assert kinds == ["stdout", "stderr", "display_data", "display_data", "stdout", "execute_result"]
    png = next(p for kind, p in second.outputs if kind == "display_data" and "image/png" in p)
    assert base64.b64decode(png["image/png"]).startswith(b"\x89PNG")
    result = next(p for kind, p in second.outputs if kind == "execute_result")
    assert "text/html" in result and "<table" in result["text/html"]


def test_keys_do_not_depend_on_pythonhashseed(start: StartKernel) -> None:
    setup = ("words = {'alpha', 'beta', 'gamma', 'delta', 'epsilon'}\n"
             "index = {w: len(w) for w in ['x', 'yy', 'zzz']}\nnested = (frozenset(words), index)")
    cell = ("%%step seeds\nmark('seeds')\nsizes = sorted(len(w) for w in words) + list(index.values())\n"
            "n = nested")
    keys = []
    for seed in ("1", "2", "3"):
        k = start(PYTHONHASHSEED=seed)
        k.ok(setup)
        k.ok(cell)
        keys.append(k.value("get_ipython()._resumable_nb_magics.runner.history[-1].key"))
    assert len(set(keys)) == 1
    assert start.count("seeds") == 1


def test_an_error_in_a_step_leaves_the_kernel_healthy(start: StartKernel) -> None:
    k = start()
    reply = k.run("%%step bad\nmark('bad')\nx = 1\n1 / 0")
    assert reply.status == "error"
    errors = [m for m in reply.messages if m["msg_type"] == "error"]
    assert len(errors) == 1 and errors[0]["content"]["ename"] == "ZeroDivisionError"
    tb = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(errors[0]["content"]["traceback"]))
    assert "----> 4 1 / 0" in tb and "runner.py" not in tb and "run_cell_magic" not in tb
    assert k.value("1 + 1") == 2
    k.run("%%step bad\nmark('bad')\nx = 1\n1 / 0")
    assert start.count("bad") == 2
