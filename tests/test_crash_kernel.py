"""Real kernels, real SIGKILLs: a dead kernel costs nothing that was already computed."""

from __future__ import annotations

import random

import numpy as np
import pytest

from resumable_nb._faults import POINTS
from tests.conftest import Kernels as StartKernel

pytestmark = pytest.mark.kernel


STEPS = [
    ("load", "import numpy as np\nraw = np.arange(1000.0)\nmeta = {'n': 1000}"),
    ("clean", "raw[::2] = 0.0\nclean = raw[raw > 0]\nmeta['clean'] = len(clean)"),
    ("train", "weights = clean.mean() * np.ones(3)"),
]


def _cell(name: str, body: str) -> str:
    return f"%%step {name}\nmark('{name}')\n{body}"


def test_kill_during_a_step_body_then_resume(start: StartKernel) -> None:
    k = start()
    k.ok(_cell(*STEPS[0]))
    k.ok(_cell(*STEPS[1]))
    expected = {"raw": k.value("raw.tolist()"), "meta": k.value("meta"), "clean": k.value("clean.tolist()")}
    k.run_until(_cell("train", "print('training', flush=True)\nimport time\ntime.sleep(120)"),
                "training")
    k.kill()

    k2 = start()
    reply = k2.ok("%resume")
    assert start.count("load") == 1 and start.count("clean") == 1
    assert "Restored 2 steps (load, clean)" in reply.stdout
    assert "Step 'train' was interrupted: the kernel died while it ran." in reply.stdout
    for name, value in expected.items():
        assert k2.value(f"{name}.tolist()" if name != "meta" else name) == value
    k2.ok(_cell(*STEPS[2]))
    assert start.count("train") == 2  # once killed, once now
    assert k2.value("weights.tolist()") == [float(np.mean([v for v in expected["clean"]]))] * 3


@pytest.mark.parametrize("point", POINTS)
def test_kill_at_every_point_of_persisting_a_step(start: StartKernel, point: str) -> None:
    """After a kill anywhere in storing step 'clean', %resume is consistent: 'clean' is either
    complete and restored, or reported interrupted and then re-run; nothing half-written loads."""
    k = start(RESUMABLE_NB_FAULT=f"{point}:kill@2")  # step 'load' persists; 'clean' dies
    k.ok(_cell(*STEPS[0]))
    k.kc.execute(_cell(*STEPS[1]))
    deadline = __import__("time").monotonic() + 30
    while k.km.is_alive() and __import__("time").monotonic() < deadline:
        __import__("time").sleep(0.02)
    assert not k.km.is_alive(), f"the fault at {point} did not kill the kernel"
    k.close()

    k2 = start()
    reply = k2.ok("%resume")
    restored_clean = "Restored 2 steps (load, clean)" in reply.stdout
    if point == "journal-after-finish":
        assert restored_clean
    else:
        assert "Restored 1 step (load)" in reply.stdout
        assert "Step 'clean' was interrupted" in reply.stdout
        k2.ok(_cell(*STEPS[1]))
    assert k2.value("meta") == {"n": 1000, "clean": 500}
    assert k2.value("clean.tolist()") == [float(v) for v in range(1, 1000, 2)]
    assert k2.value("float(raw.sum())") == float(sum(range(1, 1000, 2)))


def test_random_kills_while_storing_big_arrays(start: StartKernel) -> None:
    """Kill at random moments while steps store 50-200 MB arrays: what %resume restores is
    always exactly what was computed."""
    rnd = random.Random(1234)
    sizes = {f"s{i}": rnd.randint(50, 200) * 2**20 // 8 for i in range(4)}
    cells = "\n".join(
        f"get_ipython().run_cell_magic('step', '{name}', "
        f"'{name} = np.random.default_rng({i}).random({n})\\nprint(\"{name} done\", flush=True)')"
        for i, (name, n) in enumerate(sizes.items()))

    def check_restored(k: object, label: str) -> list[str]:
        restored = [n for n in sizes if k.value(f"'{n}' in globals()")]  # type: ignore[attr-defined]
        for i, name in enumerate(sizes):
            if name in restored:
                same = k.value(f"bool(__import__('numpy').array_equal({name}, "  # type: ignore[attr-defined]
                               f"__import__('numpy').random.default_rng({i}).random({sizes[name]})))")
                assert same, f"{label}: {name} restored with other content"
        return restored

    for trial in range(4):
        k = start()
        k.ok("import numpy as np")
        k.run("%resume")  # nothing to resume yet on the first trial: fine
        k.kc.execute(cells)
        __import__("time").sleep(rnd.uniform(0.3, 3.0))
        k.kill()
        k2 = start()
        reply = k2.run("%resume")
        assert reply.status == "ok" or "nothing to resume" in reply.stdout + reply.stderr + str(
            reply.messages)
        check_restored(k2, f"trial {trial}")
        k2.close()
    # Then a run that is not killed: afterwards every array must come back, equal.
    k = start()
    k.ok("import numpy as np")
    k.run("%resume")
    k.ok(cells)
    k.close()
    last = start()
    last.ok("%resume")
    assert check_restored(last, "after a complete run") == list(sizes)


def test_two_kernels_on_one_notebook(start: StartKernel) -> None:
    k1 = start()
    k1.ok(_cell(*STEPS[0]))
    k2 = start()
    reply = k2.ok(_cell(*STEPS[0]))
    # Said once, at the second kernel's first journaled cell (its plain setup cell).
    told = k2.setup_stderr + reply.stderr  # type: ignore[attr-defined]
    assert "held by another kernel, pid" in told and str(k1.pid) in told
    assert len([line for line in told.splitlines() if "held by" in line]) == 1
    assert "restored from cache" in reply.stdout  # caching still works in the second kernel
    k1.kill()
    k2.ok(_cell(*STEPS[1]))  # the hold is released by the first kernel's death
    assert k2.value("get_ipython()._resumable_nb_magics.session.journal() is not None")
