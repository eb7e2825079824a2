"""Adversary round 3: attacks on numpy views re-established on restore, arrays that own their
data, files a step only writes (written back on a hit), and replayed setup.

Each test compares a hit (after ``shell.fresh()``: the namespace of a new kernel, same cache)
with what a plain run leaves. Those that fail today are ``xfail(strict=True)`` with the reason.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import Kernels as StartKernel
from tests.conftest import Shell
from tests.kernels import Kernel


def _kill_mid_cell(k: Kernel) -> None:
    """SIGKILL the kernel while a cell runs, as an OOM kill would."""
    k.run_until("print('busy', flush=True)\nimport time\ntime.sleep(60)", "busy")
    k.kill()


def _plain_then_hit(shell: Shell, setup: str, cell: str, after: str = "") -> None:
    """Run ``setup`` and ``cell`` (a plain run), then the same in a fresh namespace (a hit)."""
    shell.run(setup)
    shell.run(cell)
    if after:
        shell.run(after)
    shell.fresh()
    shell.run(setup)
    shell.run(cell)
    assert shell.count("s") == 1, "the second run must be a hit"


# -- (a) views re-established on restore ---------------------------------------------------------
def test_a_negative_stride_view_writes_through_to_the_same_element(shell: Shell) -> None:
    cell = "%%step s\nmark('s')\nv = a[6:2:-1]"
    _plain_then_hit(shell, "import numpy as np\na = np.zeros(10)", cell)
    shell.run("v[0] = 5")
    assert shell.ns["a"].tolist() == [0, 0, 0, 0, 0, 0, 5, 0, 0, 0]


def test_a_view_is_rebuilt_over_the_name_the_step_read(shell: Shell) -> None:
    """The step read `b`: the view is stored as a view of `b` (not of `a`, the first name
    sharing its memory), and rebuilt over `b` in a kernel where `a` and `b` are now two arrays."""
    cell = "%%step s\nmark('s')\nv = b[1:4]"
    shell.run("import numpy as np\na = np.arange(6.)\nb = a[:]")
    shell.run(cell)
    shell.fresh()
    shell.run("import numpy as np\na = np.arange(6.)\nb = np.arange(6.)")
    shell.run(cell)
    assert shell.count("s") == 1
    shell.run("v[0] = 99")
    assert (shell.ns["b"][1], shell.ns["a"][1]) == (99, 1)


def test_a_view_is_never_rebuilt_over_a_name_that_no_longer_shares_its_memory(shell: Shell) -> None:
    cell = "%%step s\nmark('s')\nv = b[1:4]"
    shell.run("import numpy as np\na = np.arange(6.)\nb = a[:]")
    shell.run(cell)
    shell.fresh()
    shell.run("import numpy as np\na = np.arange(6.)\nb = np.arange(6.)")
    shell.run(cell)
    assert shell.count("s") == 1
    shell.run("v[0] = 99")
    assert shell.ns["a"][1] == 1, "a write through v reached an array the step never read"


def test_a_reversed_view_stays_a_view(shell: Shell) -> None:
    cell = "%%step s\nmark('s')\nw = a[::-2]"
    _plain_then_hit(shell, "import numpy as np\na = np.arange(300000.)", cell)
    shell.run("w[0] = -2")
    assert shell.ns["a"][-1] == -2


def test_a_read_only_view_stays_read_only(shell: Shell) -> None:
    cell = "%%step s\nmark('s')\nv = a[1:4]\nv.flags.writeable = False"
    _plain_then_hit(shell, "import numpy as np\na = np.arange(6.)", cell)
    assert shell.ns["v"].flags.writeable is False


@pytest.mark.parametrize("make", ["np.broadcast_to(a, (4, 3))",
                                  "np.lib.stride_tricks.sliding_window_view(a, 2)"],
                         ids=["broadcast_to", "sliding_window_view"])
def test_a_read_only_stride_trick_view_stays_read_only(shell: Shell, make: str) -> None:
    cell = f"%%step s\nmark('s')\nv = {make}"
    _plain_then_hit(shell, "import numpy as np\na = np.arange(3.)", cell)
    assert shell.ns["v"].flags.writeable is False


@pytest.mark.parametrize(("setup", "body", "write", "check"), [
    ("a = np.arange(10.)", "v = a[1:6]\nw = a[3:8]", "v[3] = 77", "a[4] == 77 and w[1] == 77"),
    ("", "a = np.arange(24.).reshape(4, 6)\nv = a[1:, ::2]\nw = v[1:, 1:]", "w[0, 0] = -5",
     "a[2, 2] == -5 and v[1, 1] == -5"),
    ("a = np.asfortranarray(np.arange(24.).reshape(4, 6))", "v = a[1:3, 2:5]", "v[0, 0] = -1",
     "a[1, 2] == -1"),
    ("a = np.zeros(5, dtype=[('x', 'i4'), ('y', 'f8')])", "v = a[1:4]\nf = a['y']", "f[1] = 3.5",
     "a['y'][1] == 3.5 and v['y'][0] == 3.5"),
    ("a = np.arange(8, dtype='>f8')", "v = a[2:6]", "v[0] = 42", "a[2] == 42"),
    ("a = np.arange(6.) + 1j", "r = a.real\ni = a.imag", "r[1] = -9", "a[1].real == -9"),
    ("a = np.arange(4, dtype='i8')", "v = a.view('i4')", "v[0] = 123", "a[0] == 123"),
    ("a = np.arange(6.)", "v = a[1:4]", "a[2] = 50", "v[1] == 50"),
], ids=["overlapping", "view-of-view", "fortran-offset", "record", "big-endian", "complex-parts",
        "dtype-view", "base-written"])
def test_views_that_hold(shell: Shell, setup: str, body: str, write: str, check: str) -> None:
    _plain_then_hit(shell, "import numpy as np\n" + setup, "%%step s\nmark('s')\n" + body)
    shell.run(write)
    shell.run(f"_ok = bool({check})")
    assert shell.ns["_ok"]


def test_a_view_of_an_array_a_later_step_mutates_holds(shell: Shell) -> None:
    c1 = "%%step s\nmark('s')\nv = a[1:4]"
    c2 = "%%step s2\nmark('s2')\na[2] = 50"
    shell.run("import numpy as np\na = np.arange(6.)")
    shell.run(c1)
    shell.run(c2)
    shell.fresh()
    shell.run("import numpy as np\na = np.arange(6.)")
    shell.run(c1)
    shell.run(c2)
    assert shell.count("s") == 1 and shell.count("s2") == 1
    assert shell.ns["v"].tolist() == [1, 50, 3]
    shell.run("a[1] = 7")
    assert shell.ns["v"][0] == 7


# -- (e) files a step only writes, written back on a hit ----------------------------------------
def test_a_write_back_follows_the_symlink_as_it_is_now(shell: Shell, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    d = tmp_path / "nb"
    d.mkdir()
    monkeypatch.chdir(d)
    (d / "a.txt").write_text("")
    (d / "b.txt").write_text("")
    os.symlink("a.txt", d / "out.txt")
    cell = "%%step s\nmark('s')\nwith open('out.txt', 'w') as f:\n    f.write('hello')"
    shell.run(cell)
    shell.fresh()
    (d / "a.txt").write_text("keep me")
    os.unlink(d / "out.txt")
    os.symlink("b.txt", d / "out.txt")
    shell.run(cell)
    assert shell.count("s") == 1
    assert ((d / "a.txt").read_text(), (d / "b.txt").read_text()) == ("keep me", "hello")


def test_a_write_back_outside_the_working_directory_follows_the_working_directory(
        shell: Shell, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for sub in ("p1/nb", "p2/nb"):
        (tmp_path / sub).mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "p1/nb")
    cell = "%%step s\nmark('s')\nwith open('../out.txt', 'w') as f:\n    f.write('hello')"
    shell.run(cell)
    shell.fresh()
    (tmp_path / "p1/out.txt").write_text("p1 own")
    monkeypatch.chdir(tmp_path / "p2/nb")
    shell.run(cell)
    assert shell.count("s") in (1, 2)  # a re-run would be fine; a hit must write p2's file
    assert (tmp_path / "p1/out.txt").read_text() == "p1 own"
    assert (tmp_path / "p2/out.txt").read_text() == "hello"


def test_a_file_written_after_a_chdir_in_the_step_is_written_back(
        shell: Shell, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "p1/sub").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "p1")
    cell = ("%%step s\nmark('s')\nimport os\nos.chdir('sub')\n"
            "with open('out.txt', 'w') as f:\n    f.write('hello')\nos.chdir('..')")
    shell.run(cell)
    (tmp_path / "p1/sub/out.txt").unlink()
    shell.fresh()
    shell.run(cell)
    assert shell.count("s") in (1, 2)
    assert (tmp_path / "p1/sub/out.txt").read_text() == "hello"


def test_a_write_back_goes_to_the_new_working_directory(shell: Shell, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    for sub in ("p1", "p2"):
        (tmp_path / sub).mkdir()
    monkeypatch.chdir(tmp_path / "p1")
    cell = "%%step s\nmark('s')\nwith open('out.txt', 'w') as f:\n    f.write('hello')"
    shell.run(cell)
    shell.fresh()
    (tmp_path / "p1/out.txt").write_text("p1 own")
    monkeypatch.chdir(tmp_path / "p2")
    shell.run(cell)
    assert (tmp_path / "p1/out.txt").read_text() == "p1 own"
    assert (tmp_path / "p2/out.txt").read_text() == "hello"


def test_resume_rebuilds_a_negative_stride_view_over_the_same_elements(start: StartKernel) -> None:
    k = start()
    k.ok("import numpy as np\na = np.zeros(10)")
    k.ok("%%step s\nmark('s')\nv = a[6:2:-1]")
    _kill_mid_cell(k)
    k2 = start()
    k2.ok("%resume")
    assert start.count("s") == 1
    k2.ok("v[0] = 5")
    assert k2.value("a.tolist()") == [0, 0, 0, 0, 0, 0, 5, 0, 0, 0]


# -- (b) arrays that own their data: subclasses ------------------------------------------------
def test_a_read_only_memmap_stays_read_only(shell: Shell, tmp_path: Path) -> None:
    np.arange(5.).tofile(tmp_path / "m.dat")
    setup = f"import numpy as np\n_p = {str(tmp_path / 'm.dat')!r}"
    _plain_then_hit(shell, setup, "%%step s\nmark('s')\nmm = np.memmap(_p, dtype='f8', mode='r')")
    assert shell.ns["mm"].flags.writeable is False


def test_a_read_write_memmap_still_writes_its_file(shell: Shell, tmp_path: Path) -> None:
    np.arange(5.).tofile(tmp_path / "m.dat")
    setup = f"import numpy as np\n_p = {str(tmp_path / 'm.dat')!r}"
    _plain_then_hit(shell, setup, "%%step s\nmark('s')\nmm = np.memmap(_p, dtype='f8', mode='r+')")
    shell.run("mm[0] = 42\nmm.flush()")
    assert np.fromfile(tmp_path / "m.dat").tolist() == [42, 1, 2, 3, 4]


@pytest.mark.parametrize(("body", "check"), [
    ("r = np.arange(5.)\nr.flags.writeable = False", "not r.flags.writeable and r.flags.owndata"),
    ("f = np.asfortranarray(np.arange(12.).reshape(3, 4))",
     "f.flags.f_contiguous and not f.flags.c_contiguous and f.flags.owndata and f[1, 2] == 6"),
    ("t = np.arange(24.).reshape(2, 3, 4).transpose(1, 2, 0).copy(order='K')",
     "t.strides == (32, 8, 96) and t[1, 2, 1] == 18"),
    ("m = np.ma.masked_array([1., 2., 3.], mask=[0, 1, 0])\nm.harden_mask()",
     "m.hardmask and m.mask.tolist() == [False, True, False]"),
    ("df = pd.DataFrame(np.arange(6.).reshape(3, 2), columns=['a', 'b'])",
     "df['b'].tolist() == [1, 3, 5] and df.dtypes.tolist() == [np.float64] * 2"),
    ("s = pd.Series(pd.Categorical(['a', 'b', 'a'], categories=['b', 'a'], ordered=True))",
     "s.cat.codes.tolist() == [1, 0, 1] and s.cat.ordered"),
], ids=["read-only", "fortran", "transposed-3d", "hard-mask", "frame-from-array", "categorical"])
def test_owning_arrays_that_hold(shell: Shell, body: str, check: str) -> None:
    _plain_then_hit(shell, "import numpy as np\nimport pandas as pd", "%%step s\nmark('s')\n" + body)
    shell.run(f"_ok = bool({check})")
    assert shell.ns["_ok"]


# -- (c) closed files, (d) NpzFile, (f) setup magics ---------------------------------------------
def test_closed_files_and_npz_hold(shell: Shell, tmp_path: Path) -> None:
    np.savez(tmp_path / "z.npz", x=np.arange(3), y=np.eye(2))
    (tmp_path / "t.txt").write_text("abc")
    setup = f"import numpy as np\n_d = {str(tmp_path)!r}"
    cell = ("%%step s\nmark('s')\nz = np.load(_d + '/z.npz')\n"
            "with open(_d + '/t.txt') as f:\n    text = f.read()\n"
            "g = open(_d + '/t.txt', 'ab', buffering=0)\ng.close()")
    _plain_then_hit(shell, setup, cell)
    shell.run("_ok = (sorted(z.files) == ['x', 'y'] and z['x'].tolist() == [0, 1, 2] "
              "and f.closed and f.mode == 'r' and text == 'abc' and g.closed and g.mode == 'ab' "
              "and type(g).__name__ == 'FileIO')")
    assert shell.ns["_ok"]
    assert (tmp_path / "t.txt").read_text() == "abc"


def test_setup_magics_replayed_by_a_hit_hold(shell: Shell, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RNB_ADV3", raising=False)
    cell = ("%%step s\nmark('s')\n%cd sub\n%precision 2\n%env RNB_ADV3=1\n"
            "import os\nx = os.environ['RNB_ADV3']")
    shell.run(cell)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RNB_ADV3")
    shell.fresh()
    shell.run("%precision")
    shell.run(cell)
    assert shell.count("s") == 1
    assert os.getcwd() == str(tmp_path / "sub") and os.environ.get("RNB_ADV3") == "1"
    assert shell.ip.display_formatter.formatters["text/plain"].float_precision == "2"
    shell.run("%precision")


@pytest.mark.parametrize("fresh", [False, True], ids=["same-kernel", "new-kernel"])
def test_a_hit_never_overwrites_a_file_a_plain_run_would_leave_alone(
        shell: Shell, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh: bool) -> None:
    monkeypatch.chdir(tmp_path)
    cell = ("%%step s\nmark('s')\nfrom pathlib import Path\np = Path('config.txt')\n"
            "if not p.exists():\n    p.write_text('default')\nn = 1")
    shell.run(cell)
    (tmp_path / "config.txt").write_text("edited by the user")
    if fresh:
        shell.fresh()
    shell.run(cell)
    assert (tmp_path / "config.txt").read_text() == "edited by the user"


def test_partial_resume_names_the_step_left_to_run(start: StartKernel) -> None:
    k = start()
    k.ok("%%step s1\nmark('s1')\nimport numpy as np\na = np.arange(3)")
    k.ok("%%step s2\nmark('s2')\na += 1\nb = int(a.sum())\ng = (i for i in range(3))")
    _kill_mid_cell(k)
    k2 = start()
    reply = k2.ok("%resume")
    assert "Left to run: s2" in reply.stdout
    assert start.count("s1") == 1 and start.count("s2") == 1


def test_a_view_reversed_on_one_axis_writes_through_to_the_same_element(shell: Shell) -> None:
    _plain_then_hit(shell, "import numpy as np\na = np.zeros((4, 4))",
                    "%%step s\nmark('s')\nv = a[::-1, 1:3]")
    shell.run("v[0, 0] = 5")
    assert shell.ns["a"][3, 1] == 5 and shell.ns["a"].sum() == 5


@pytest.mark.parametrize(("setup", "body", "write", "check"), [
    ("a = np.arange(4.)\nc = a", "a *= 2", "a[0] = 9", "c is a and c.tolist() == [9, 2, 4, 6]"),
    ("a = np.arange(4.)\nc = a[:2]", "a *= 2", "a[0] = 9", "c.tolist() == [9, 2]"),
    ("a = np.arange(4.)\nc = a[::-1]", "a *= 2", "a[0] = 9", "c.tolist() == [6, 4, 2, 9]"),
    ("a = np.arange(4.)\nd = {'k': a}", "a += 1", "a[0] = 9", "d['k'] is a"),
    ("", "a = np.zeros(10)\nv = a[6:2:-1]", "v[0] = 5", "a[6] == 5 and a.sum() == 5"),
], ids=["same-object", "view-of-mutated", "reversed-view-of-mutated", "held-in-dict",
        "reversed-view-of-an-output"])
def test_aliases_of_an_array_a_step_mutates_hold(shell: Shell, setup: str, body: str, write: str,
                                                 check: str) -> None:
    _plain_then_hit(shell, "import numpy as np\n" + setup, "%%step s\nmark('s')\n" + body)
    shell.run(write)
    shell.run(f"_ok = bool({check})")
    assert shell.ns["_ok"]


def test_resume_writes_back_a_file_the_step_only_wrote(start: StartKernel) -> None:
    k = start()
    k.ok("%%step s\nmark('s')\nwith open('out.txt', 'w') as f:\n    f.write('xyz')\nz = 1")
    _kill_mid_cell(k)
    (start.folder / "out.txt").unlink()
    k2 = start()
    k2.ok("%resume")
    assert start.count("s") == 1 and k2.value("z") == 1
    assert (start.folder / "out.txt").read_text() == "xyz"


def test_resume_re_establishes_views_of_a_plain_cell_array(start: StartKernel) -> None:
    k = start()
    k.ok("import numpy as np\na = np.zeros(10)")
    k.ok("%%step s\nmark('s')\nv = a[2:5]\nw = a[::2]")
    _kill_mid_cell(k)
    k2 = start()
    k2.ok("%resume")
    k2.ok("v[0] = 5\nw[4] = 7")
    assert k2.value("a.tolist()") == [0, 0, 5, 0, 0, 0, 0, 0, 7, 0]


def test_a_big_restored_array_is_copy_on_write(shell: Shell) -> None:
    cell = "%%step s\nmark('s')\nimport numpy as np\nbig = np.arange(400000.)\nsub = big[5:10]"
    _plain_then_hit(shell, "", cell)
    shell.run("big[7] = -1.0")
    assert shell.ns["sub"][2] == -1.0
    shell.fresh()
    shell.run(cell)
    assert shell.count("s") == 1 and shell.ns["big"][7] == 7.0 and shell.ns["sub"][2] == 7.0


def test_an_empty_view_keeps_its_strides(shell: Shell) -> None:
    """An empty slice (a[4:4]) keeps the strides (8,) a plain run gives it (numpy's copy and
    empty_like would make them (0,))."""
    _plain_then_hit(shell, "import numpy as np\na = np.arange(5.)", "%%step s\nmark('s')\nw = a[4:4]")
    assert shell.ns["w"].strides == (8,)


def test_matplotlib_settings_after_a_hit_and_after_resume_hold(start: StartKernel) -> None:
    cells = ["import matplotlib.pyplot as plt",
             "%%step s\nmark('s')\nplt.style.use('ggplot')\nplt.rcParams['lines.linewidth'] = 7\nx = 1",
             "%%step s2\nmark('s2')\nwith plt.rc_context({'lines.linewidth': 9}):\n    y = 2\n"
             "plt.rcParams['axes.grid'] = False"]
    rc = "{k: str(v) for k, v in __import__('matplotlib').rcParams.items()}"
    k = start()
    for cell in cells:
        k.ok(cell)
    expected = k.value(rc)
    _kill_mid_cell(k)
    k2 = start()
    k2.ok("%resume")
    assert k2.value(rc) == expected
    k3 = start()
    for cell in cells:
        k3.ok(cell)
    assert start.count("s") == 1 and start.count("s2") == 1
    assert k3.value(rc) == expected


def test_a_memmap_made_with_w_plus_comes_back_over_its_file_without_emptying_it(
        shell: Shell, tmp_path: Path) -> None:
    setup = f"import numpy as np\n_p = {str(tmp_path / 'w.dat')!r}"
    cell = ("%%step s\nmark('s')\nmm = np.memmap(_p, dtype='f8', mode='w+', shape=(4,))\n"
            "mm[:] = [1, 2, 3, 4]\nmm.flush()")
    _plain_then_hit(shell, setup, cell)
    assert shell.ns["mm"].tolist() == [1, 2, 3, 4]
    assert np.fromfile(tmp_path / "w.dat").tolist() == [1, 2, 3, 4]
    shell.run("mm[1] = 9\nmm.flush()")
    assert np.fromfile(tmp_path / "w.dat").tolist() == [1, 9, 3, 4]


def test_a_hit_never_overwrites_a_file_a_called_function_writes_only_if_absent(
        shell: Shell, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    shell.run("import os\ndef ensure(p):\n    if not os.path.exists(p):\n"
              "        with open(p, 'w') as f:\n            f.write('default')")
    cell = "%%step s\nmark('s')\nensure('config.txt')\nn = 1"
    shell.run(cell)
    (tmp_path / "config.txt").write_text("edited by the user")
    shell.run(cell)
    assert (tmp_path / "config.txt").read_text() == "edited by the user"
    assert shell.count("s") == 2  # the file it may write changed: a plain run


def test_an_unconditional_write_only_file_still_hits_and_is_written_back(
        shell: Shell, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cell = "%%step s\nmark('s')\nwith open('out.txt', 'w') as f:\n    f.write('mine')"
    shell.run(cell)
    (tmp_path / "out.txt").write_text("rewritten by a later step")
    shell.fresh()
    shell.run(cell)
    assert shell.count("s") == 1 and (tmp_path / "out.txt").read_text() == "mine"
