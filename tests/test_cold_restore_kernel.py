"""Restoring a big array in a new kernel: a flipped byte in its payload is never returned as
data, neither by a hit nor by ``%resume`` (the default, verified restore maps the payload and
checks every buffer's MAC over the mapping before unpickling)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Kernels as StartKernel

pytestmark = pytest.mark.kernel

N = 4_000_000  # 32 MB of float64: big enough to be mapped, not read
CELL = (f"%%step big\nmark('big')\nimport numpy as np\nbig = np.arange({N}, dtype='f8') * 0.5\n"
        "small = 7")
CHECK = f"bool(np.array_equal(big, np.arange({N}, dtype='f8') * 0.5))"


def _flip_a_byte_in_the_array(cache: Path) -> None:
    payload = max((cache / "objects").iterdir(), key=lambda p: p.stat().st_size)
    size = payload.stat().st_size
    assert size > N * 8
    with payload.open("r+b") as f:  # well inside the array's buffer, past the pickle stream
        f.seek(size - N * 4)
        byte = f.read(1)
        f.seek(size - N * 4)
        f.write(bytes([byte[0] ^ 0x10]))


def test_a_flipped_byte_is_never_restored_by_a_hit_or_by_resume(start: StartKernel) -> None:
    k1 = start()
    k1.ok(CELL)
    assert start.count("big") == 1
    k1.close()
    _flip_a_byte_in_the_array(start.folder / "cache")

    k2 = start()  # %resume in a new kernel: the corrupt step is not restored as data
    k2.ok("import numpy as np")
    reply = k2.run("%resume")
    if k2.value("'big' in globals()"):
        assert k2.value(CHECK)
    else:
        assert "big" in reply.stdout + reply.stderr  # says which step could not be used
    k2.close()

    k3 = start()  # a hit in a new kernel: a miss, the step runs again and gives the right data
    reply = k3.ok(CELL)
    assert "restored from cache" not in reply.stdout
    assert start.count("big") == 2
    k3.ok("import numpy as np")
    assert k3.value(CHECK)
    k3.close()

    k4 = start()  # the entry stored again is whole: now a verified hit
    reply = k4.ok(CELL)
    assert "restored from cache" in reply.stdout and start.count("big") == 2
    k4.ok("import numpy as np")
    assert k4.value(CHECK)
    assert k4.value("big.flags.writeable")
