"""%%step through a real InteractiveShell: hits, misses, outputs, errors, replayed output."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import Shell

# -- hits and misses ---------------------------------------------------------------------------


def test_same_code_and_inputs_hits_and_restores(shell: Shell) -> None:
    shell.run("a = 3")
    cell = "%%step s\nmark('s')\nb = [a] * 2\nc = {'k': a}"
    shell.run(cell)
    assert shell.last.status == "ran" and shell.last.stored
    shell.run(cell)
    assert shell.count("s") == 1
    assert shell.last.status == "cached"
    shell.fresh()
    shell.run("a = 3")
    shell.run(cell)
    assert shell.count("s") == 1
    assert shell.ns["b"] == [3, 3] and shell.ns["c"] == {"k": 3}


@pytest.mark.parametrize(
    ("setup", "change"),
    [
        ("v = 1", "v = 2"),
        ("v = [1, 2, 3]", "v[1] = 20"),
        ("v = {'a': 1, 'b': 2}", "v['b'] = 3"),
        ("v = {'x', 'y'}", "v.add('z')"),
        ("import numpy as np; v = np.arange(6.0)", "v[4] = -1"),
        ("import numpy as np; v = np.zeros((2, 3))", "v = np.zeros((3, 2))"),
        ("import numpy as np; v = np.zeros(4, dtype='f8')", "v = np.zeros(4, dtype='i8')"),
        ("import pandas as pd; v = pd.DataFrame({'a': [1.0, 2.0]})", "v.loc[1, 'a'] = 5.0"),
        ("import pandas as pd; v = pd.DataFrame({'s': ['x', 'y']})", "v.loc[0, 's'] = 'z'"),
        ("import pandas as pd; v = pd.DataFrame({'s': ['x', 'y']}, dtype=object)", "v.loc[0, 's'] = 'z'"),
    ],
    ids=["scalar", "list-item", "dict-value", "set-member", "np-element", "np-shape", "np-dtype",
         "df-cell", "df-str-column", "df-object-column"],
)
def test_changing_an_input_reruns_and_changing_back_hits(shell: Shell, setup: str, change: str) -> None:
    shell.run(setup)
    shell.run("import copy; original = copy.deepcopy(v)")
    cell = "%%step use\nmark('use')\nout = repr(v)"
    shell.run(cell)
    shell.run(change)
    shell.run(cell)
    assert shell.count("use") == 2, "a changed input must re-run the step"
    changed_out = shell.ns["out"]
    shell.run("v = copy.deepcopy(original)")
    shell.run(cell)
    assert shell.count("use") == 2, "changing the input back must hit the first entry"
    assert shell.ns["out"] != changed_out


def test_comments_and_whitespace_hit_code_changes_miss(shell: Shell) -> None:
    shell.run("%%step w\nmark('w')\nx = 1 + 2")
    shell.run("%%step w\n# a comment\nmark( 'w' )\n\nx   =   1+2  # more")
    assert shell.count("w") == 1
    shell.run("%%step w\nmark('w')\nx = 1 + 3")
    assert shell.count("w") == 2
    assert shell.ns["x"] == 4


def test_step_name_is_not_part_of_the_key(shell: Shell) -> None:
    shell.run("%%step one\nmark('n')\nx = 5")
    shell.run("%%step two\nmark('n')\nx = 5")
    assert shell.count("n") == 1


def test_force_reruns_and_overwrites(shell: Shell) -> None:
    shell.run("%%step f\nmark('f')\nx = 1")
    shell.run("%%step f --force\nmark('f')\nx = 1")
    assert shell.count("f") == 2
    assert shell.last.status == "ran" and shell.last.reason == "--force"
    shell.run("%%step f\nmark('f')\nx = 1")
    assert shell.count("f") == 2


def test_ignore_leaves_an_input_out_of_the_key(shell: Shell) -> None:
    shell.run("noise = 1; data = 2")
    shell.run("%%step i --ignore noise\nmark('i')\ny = data + noise")
    shell.run("noise = 100")
    shell.run("%%step i --ignore noise\nmark('i')\ny = data + noise")
    assert shell.count("i") == 1
    assert shell.ns["y"] == 3  # the user's responsibility, as documented


# -- code defined in the notebook ---------------------------------------------------------------


def test_transitive_function_changes_rerun(shell: Shell) -> None:
    shell.run("K = 10\ndef f(x):\n    return x + K\ndef g(x):\n    return f(x) * 2")
    cell = "%%step call\nmark('call')\nr = g(1)"
    shell.run(cell)
    shell.run(cell)
    assert shell.count("call") == 1
    shell.run("def f(x):\n    return x - K")
    shell.run(cell)
    assert shell.count("call") == 2 and shell.ns["r"] == -18
    shell.run("K = 11")
    shell.run(cell)
    assert shell.count("call") == 3 and shell.ns["r"] == -20


@pytest.mark.parametrize(
    ("define", "redefine"),
    [
        ("h = lambda x: x + 1", "h = lambda x: x + 2"),
        ("def h(x, k=1):\n    return x + k", "def h(x, k=2):\n    return x + k"),
        ("def mk(n):\n    return lambda x: x + n\nh = mk(1)", "h = mk(2)"),
        ("class H:\n    def __call__(self, x):\n        return x + 1\nh = H()",
         "class H:\n    def __call__(self, x):\n        return x + 2\nh = H()"),
    ],
    ids=["lambda", "defaults", "closure", "class"],
)
def test_notebook_code_is_keyed_by_content(shell: Shell, define: str, redefine: str) -> None:
    shell.run(define)
    cell = "%%step code\nmark('code')\nr = h(1)"
    shell.run(cell)
    shell.run(define)  # re-running the same definition: same content, a hit
    shell.run(cell)
    assert shell.count("code") == 1
    shell.run(redefine)
    shell.run(cell)
    assert shell.count("code") == 2 and shell.ns["r"] == 3


def test_installed_functions_count_by_version_not_source() -> None:
    from resumable_nb.fingerprint import Fingerprinter, module_identity

    assert module_identity("numpy") == f"numpy=={np.__version__}"
    fp = Fingerprinter({})
    assert fp.hash(np.mean) == fp.hash(np.mean)
    assert fp.hash(pd.read_csv) != fp.hash(pd.read_json)
    assert not fp.globals_read, "installed functions are not followed into their globals"


def test_defined_functions_and_classes_restore_in_a_new_kernel(shell: Shell) -> None:
    cell = ("%%step defs\nmark('defs')\nBASE = 100\nclass P:\n    def __init__(self, v):\n"
            "        self.v = v\n    def total(self):\n        return self.v + BASE\n"
            "def make(v):\n    return P(v)\np = make(1)\nadd = lambda x: x + BASE")
    shell.run(cell)
    shell.fresh()
    shell.run(cell)
    assert shell.count("defs") == 1
    shell.run("assert isinstance(p, P) and p.total() == 101 and add(1) == 101")
    shell.run("BASE = 5")
    shell.run("assert add(1) == 6")  # restored functions read the live namespace


# -- outputs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setup", "mutation", "var", "check"),
    [
        ("lst = [1]", "lst.append(2)", "lst", "lst == [1, 2]"),
        ("d = {}", "d['k'] = 'v'", "d", "d == {'k': 'v'}"),
        ("class O: pass\nobj = O()", "obj.attr = 7", "obj", "obj.attr == 7"),
        ("import pandas as pd, numpy as np\ndf = pd.DataFrame({'a': [1.0, np.nan, 3.0]})",
         "df.dropna(inplace=True)", "df", "len(df) == 2"),
    ],
    ids=["list-append", "dict-setitem", "setattr", "dropna-inplace"],
)
def test_in_place_mutation_is_an_output(shell: Shell, setup: str, mutation: str, var: str,
                                        check: str) -> None:
    shell.run(setup)
    cell = f"%%step mut\nmark('mut')\n{mutation}"
    shell.run(cell)
    assert shell.last.outputs == (var,)
    shell.fresh()
    shell.run(setup)
    shell.run(cell)
    assert shell.count("mut") == 1
    shell.run(f"assert {check}")


def test_del_is_replayed_on_a_hit(shell: Shell) -> None:
    shell.run("tmp = 1; keep = 2")
    cell = "%%step d\nmark('d')\ndel tmp\nkeep2 = keep"
    shell.run(cell)
    assert "tmp" not in shell.ns
    shell.run("tmp = 1")
    shell.run(cell)
    assert shell.count("d") == 1
    assert "tmp" not in shell.ns and shell.ns["keep2"] == 2


def test_dynamic_names_are_caught_by_the_namespace_diff(shell: Shell) -> None:
    cell = "%%step dyn\nmark('dyn')\nglobals()['made'] = 41 + 1"
    shell.run(cell)
    assert "made" in shell.last.outputs
    shell.fresh()
    shell.run(cell)
    assert shell.count("dyn") == 1 and shell.ns["made"] == 42


def test_a_dynamic_step_says_so_once_per_kernel(shell: Shell, capsys: pytest.CaptureFixture[str]) -> None:
    for i in range(3):
        shell.run(f"%%step dyn\nglobals()['made'] = {i}")
    err = capsys.readouterr().err
    assert err.count("hides what it reads and writes") == 1


# -- replayed output ---------------------------------------------------------------------------


def test_stdout_stderr_and_display_replay_in_order(shell: Shell, capsys: pytest.CaptureFixture[str]) -> None:
    cell = ("%%step out\nimport sys\nfrom IPython.display import display, HTML\n"
            "print('one')\nprint('two', file=sys.stderr)\ndisplay(HTML('<b>three</b>'))\nprint('four')\n"
            "41 + 1")
    shell.run(cell)
    first = capsys.readouterr()
    shell.run(cell)
    second = capsys.readouterr()
    assert shell.last.status == "cached"
    replayed = second.out.split("\n", 1)[1]  # after the "[resumable_nb] ... restored" line
    assert replayed.index("one") < replayed.index("HTML") < replayed.index("four") < replayed.index("42")
    assert replayed.count("HTML object") == 1
    assert "two" in second.err
    assert [line for line in first.out.splitlines() if not line.startswith("[resumable_nb]")] == [
        line for line in second.out.splitlines() if not line.startswith("[resumable_nb]")]


def test_last_expression_is_the_cell_result_on_miss_and_hit(shell: Shell) -> None:
    cell = "%%step e\nvalue = 6\nvalue * 7"
    r1 = shell.run(cell)
    r2 = shell.run(cell)
    assert r1.result == 42
    assert repr(r2.result) == "42"
    quiet = shell.run("%%step q\nz = 1\nz + 1;")
    assert quiet.result is None


def test_ipython_syntax_inside_a_step(shell: Shell, capsys: pytest.CaptureFixture[str]) -> None:
    shell.run("%%step sh\nmark('sh')\nfiles = !echo hello\n!echo direct\n%time t = sum(range(10))")
    assert list(shell.ns["files"]) == ["hello"] and shell.ns["t"] == 45
    shell.run("%%step sh\nmark('sh')\nfiles = !echo hello\n!echo direct\n%time t = sum(range(10))")
    assert shell.count("sh") == 1


# -- errors ------------------------------------------------------------------------------------


def test_exception_is_shown_once_at_the_users_line_and_nothing_is_cached(
        shell: Shell, capsys: pytest.CaptureFixture[str]) -> None:
    cell = "%%step boom\nmark('boom')\nok = 1\nraise ValueError('bad value')"
    result = shell.run(cell, ok=False)
    out = capsys.readouterr()
    text = out.out + out.err
    assert isinstance(result.error_in_exec, ValueError)
    assert text.count("ValueError: bad value") == 1 and text.count("Traceback") == 1
    assert "raise ValueError('bad value')" in text
    assert "runner.py" not in text and "magics.py" not in text
    shell.run(cell, ok=False)
    assert shell.count("boom") == 2
    shell.run("x = 1 + 1")  # the shell is healthy
    assert shell.ns["x"] == 2


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ("%%step\nx = 1", "needs a step name"),
        ("%%step 9bad\nx = 1", "invalid step name"),
        ("%%step a b\nx = 1", "unrecognized arguments"),
        ("%%step a --nope\nx = 1", "unrecognized arguments"),
        ("%%step a\n   \n", "empty"),
        ("%%step a --ignore 1x\ny = 1", "is not one"),
        ("%%step a\nx = (", "not valid Python"),
        ("%%step a\nx = 2\nreturn x", "'return' outside function (line 3 of the cell)"),
        ("%%step a\nbreak", "'break' outside loop"),
    ],
)
def test_bad_input_gives_one_line_and_changes_nothing(
        shell: Shell, capsys: pytest.CaptureFixture[str], cell: str, message: str) -> None:
    shell.run("x = 'untouched'")
    before = {k for k in shell.ns if not k.startswith("_")}
    shell.run(cell, ok=False)
    out = capsys.readouterr()
    lines = [line for line in (out.out + out.err).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert message in lines[0]
    assert shell.ns["x"] == "untouched"
    assert {k for k in shell.ns if not k.startswith("_")} == before
    assert not list(shell.cache.glob("objects/*.rnb"))


def test_unfingerprintable_input_runs_every_time_with_a_notice(
        shell: Shell, capsys: pytest.CaptureFixture[str]) -> None:
    shell.run("import threading\nlock = threading.Lock()")
    cell = "%%step lk\nmark('lk')\nwith lock:\n    y = 1"
    shell.run(cell)
    shell.run(cell)
    assert shell.count("lk") == 2
    err = capsys.readouterr().err
    assert "input 'lock'" in err and "--ignore lock" in err
    assert len([line for line in err.splitlines() if "lock" in line]) == 2


@pytest.mark.parametrize(
    ("make", "name"),
    [("gen = (i for i in range(3))", "gen"),
     ("import sqlite3\nconn = sqlite3.connect(':memory:')", "conn"),
     ("fh = open(__import__('os').devnull, 'w')", "fh")],
)
def test_unstorable_output_leaves_step_uncached_and_vars_intact(
        shell: Shell, capsys: pytest.CaptureFixture[str], make: str, name: str) -> None:
    cell = f"%%step u\nmark('u')\nother = 5\n{make}"
    shell.run(cell)
    err = capsys.readouterr().err
    assert f"output {name}" in err and "not cached" in err
    assert name in shell.ns and shell.ns["other"] == 5
    shell.run(cell)
    assert shell.count("u") == 2


def test_corrupted_or_truncated_payload_is_detected_and_rerun(
        shell: Shell, capsys: pytest.CaptureFixture[str]) -> None:
    shell.run("import numpy as np")
    cell = "%%step c\nmark('c')\narr = np.arange(100_000) * 2"
    shell.run(cell)
    [payload] = shell.cache.glob("objects/*.rnb")
    data = bytearray(payload.read_bytes())
    data[len(data) // 2] ^= 0x01
    payload.write_bytes(bytes(data))
    shell.fresh()
    shell.run("import numpy as np")
    shell.run(cell)
    assert shell.count("c") == 2
    assert "cache entry is corrupt" in capsys.readouterr().out  # the miss line says why
    assert (shell.ns["arr"] == np.arange(100_000) * 2).all()
    # truncated: the rewritten entry is cut short
    [payload] = [p for p in shell.cache.glob("objects/*.rnb") if p != payload] or [payload]
    payload.write_bytes(payload.read_bytes()[:1000])
    shell.fresh()
    shell.run("import numpy as np")
    shell.run(cell)
    assert shell.count("c") == 3
    assert (shell.ns["arr"] == np.arange(100_000) * 2).all()
    shell.run(cell)
    assert shell.count("c") == 3, "the re-run overwrote the bad entry"


def test_a_corrupt_entry_is_reported_once(shell: Shell, capsys: pytest.CaptureFixture[str]) -> None:
    """One corrupt entry, one line about it: the miss line says why the step runs, and a
    notice on stderr saying it again was a second copy (issue 9). Without verbose, the notice
    is the one line."""
    for verbose in (True, False):
        cell = f"%%step c{verbose}\nmark('c')\nrows = list(range({100 + verbose}))"
        before = set(shell.cache.glob("objects/*.rnb"))
        shell.run(cell)
        [payload] = set(shell.cache.glob("objects/*.rnb")) - before
        data = bytearray(payload.read_bytes())
        data[len(data) // 2] ^= 0x01
        payload.write_bytes(bytes(data))
        shell.fresh()
        shell.run(f"%config ResumableNB.verbose = {verbose}")
        capsys.readouterr()
        shell.run(cell)
        captured = capsys.readouterr()
        shell.run("%config ResumableNB.verbose = True")  # the shell's config outlives the test
        lines = [ln for ln in (captured.out + captured.err).splitlines() if "corrupt" in ln]
        assert len(lines) == 1, lines
        assert shell.ns["rows"] == list(range(100 + verbose))


def test_restore_never_half_writes_the_namespace(shell: Shell) -> None:
    shell.run("class Thing:\n    pass")
    cell = "%%step t\nmark('t')\na1 = 1\nthing = Thing()"
    shell.run(cell)
    shell.fresh()
    shell.run("class Thing:\n    pass")
    shell.run("a1 = 'old'")
    # The entry refers to Thing by reference; a different Thing must not be re-attached.
    shell.run("class Thing:\n    x = 1")
    shell.run(cell)
    assert shell.count("t") == 2
    assert shell.ns["a1"] == 1 and type(shell.ns["thing"]).__dict__.get("x") == 1


def test_cache_dir_is_private(shell: Shell) -> None:
    shell.run("%%step p\nq = 1")
    assert (shell.cache.stat().st_mode & 0o777) == 0o700


def test_cache_dir_writable_by_others_is_refused(shell: Shell, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    shell.run(f"%config ResumableNB.cache_dir = {str(shared)!r}")
    shell.run("%%step r\nmark('r')\nq = 1")
    shell.run("%%step r\nmark('r')\nq = 1")
    assert shell.count("r") == 2 and shell.ns["q"] == 1
    err = capsys.readouterr().err
    assert "others can write" in err and err.count("caching is off") == 1


def _damage_index(db: Path, how: str) -> None:
    if how == "garbage":
        db.write_bytes(b"not a database " * 500)
    else:  # pages past the header overwritten: sqlite says "database disk image is malformed"
        data = bytearray(db.read_bytes())
        data[4096:] = b"\xab" * (len(data) - 4096)
        db.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["garbage", "malformed"])
def test_a_damaged_index_is_moved_aside_and_caching_stays_on(
        shell: Shell, capsys: pytest.CaptureFixture[str], how: str) -> None:
    """Issue 9: a damaged index (not a database, or malformed) no longer turns caching off with a
    hint about read-only folders: it is renamed aside inside the cache, a new one starts, one
    line says what happened and what was kept, and steps are cached again."""
    cell = "%%step r\nmark('r')\nq = list(range(50))"
    shell.run(cell)
    shell.run("%%step s\nmark('s')\nw = 2")
    shell.ip.run_cell("%unload_ext resumable_nb")  # closes the index, as the kernel's end does
    db = shell.cache / "index" / "cache.db"
    _damage_index(db, how)
    damaged = db.read_bytes()
    shell.fresh()
    capsys.readouterr()
    shell.run(cell)
    err = capsys.readouterr().err
    assert shell.count("r") == 2 and shell.ns["q"] == list(range(50))
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    assert "cache index" in lines[0] and "moved aside" in lines[0] and "re-run" in lines[0], lines
    assert "caching is off" not in err and "read-only" not in err
    [aside] = (shell.cache / "index").glob("cache.db.corrupt-*")
    assert aside.read_bytes() == damaged and aside.name in lines[0]
    shell.run(cell)
    assert shell.count("r") == 2 and shell.last.status == "cached", "caching is on again"
    shell.run("%steps")  # the journal was kept: the earlier run's steps are still known
    assert "s " in capsys.readouterr().out


def test_a_damaged_index_next_to_a_planted_link_moves_nothing(tmp_path: Path) -> None:
    """The repair renames only the index's own files, by descriptor: a planted link beside a
    damaged index is refused as before (caching off, the link named), nothing is renamed, and
    the file it points at is untouched."""
    from resumable_nb.errors import StoreError
    from resumable_nb.store import Store

    cache = tmp_path / "cache"
    Store(cache).close()
    _damage_index(cache / "index" / "cache.db", "garbage")
    outside = tmp_path / "thesis.tex"
    outside.write_text("precious")
    (cache / "index" / "cache.db-wal").symlink_to(outside)
    with pytest.raises(StoreError, match="symbolic link"):
        Store(cache)
    assert sorted(p.name for p in (cache / "index").iterdir()) == ["cache.db", "cache.db-wal"]
    assert outside.read_text() == "precious" and (cache / "index" / "cache.db-wal").is_symlink()


def test_reload_ext_leaves_one_magic_and_one_configurable(shell: Shell) -> None:
    shell.run("%reload_ext resumable_nb")
    shell.run("%reload_ext resumable_nb")
    kinds = [type(c).__name__ for c in shell.ip.configurables]
    assert kinds.count("ResumableNB") == 1


def test_cache_dir_follows_the_env_and_the_notebook(tmp_path: Path) -> None:
    from resumable_nb.location import cache_root

    nb = tmp_path / "sub" / "analysis.ipynb"
    assert cache_root("", {"__vsc_ipynb_file__": str(nb)}, env={}) == nb.parent / ".resumable_nb"
    assert cache_root("", {"__session__": str(nb)}, env={}) == nb.parent / ".resumable_nb"
    assert cache_root("", {}, env={"JPY_SESSION_NAME": str(nb)}) == nb.parent / ".resumable_nb"
    assert cache_root("", {}, env={"RESUMABLE_NB_DIR": str(tmp_path / "x")}) == tmp_path / "x"
    assert cache_root(str(tmp_path / "y"), {}, env={"RESUMABLE_NB_DIR": "z"}) == tmp_path / "y"
    assert cache_root("", {}, env={}) == Path.cwd() / ".resumable_nb"


def test_pandas_and_numpy_outputs_round_trip(shell: Shell) -> None:
    cell = ("%%step frames\nimport numpy as np, pandas as pd\n"
            "arr = np.arange(12, dtype='f4').reshape(3, 4)\n"
            "df = pd.DataFrame({'a': [1, 2], 's': ['x', None], 'c': pd.Categorical(['p', 'q'])})\n"
            "alias = [arr, arr]")
    shell.run(cell)
    shell.fresh()
    shell.run(cell)
    assert shell.last.status == "cached"
    arr = shell.ns["arr"]
    assert arr.dtype == np.float32 and arr.shape == (3, 4)
    assert shell.ns["alias"][0] is shell.ns["alias"][1]
    pd.testing.assert_frame_equal(shell.ns["df"], pd.DataFrame(
        {"a": [1, 2], "s": ["x", None], "c": pd.Categorical(["p", "q"])}))


def test_after_a_hit_underscore_and_out_hold_the_value_not_a_display(shell: Shell) -> None:
    shell.run("%%step listing\n[1, 2, 3]")
    shell.fresh()
    result = shell.run("%%step listing\n[1, 2, 3]")
    assert shell.last.status == "cached"
    assert result.result == [1, 2, 3] and shell.ns["_"] == [1, 2, 3]
    shell.run("doubled = _ * 2")
    assert shell.ns["doubled"] == [1, 2, 3, 1, 2, 3]
    assert list(shell.ns["Out"].values())[-1] == [1, 2, 3], shell.ns["Out"]


def test_an_unpicklable_last_expression_still_caches_the_step(shell: Shell) -> None:
    shell.run("%%step gen\nx = 1\n(i for i in range(3))")
    assert shell.last.stored
    shell.fresh()
    shell.run("%%step gen\nx = 1\n(i for i in range(3))")
    assert shell.last.status == "cached" and shell.ns["x"] == 1


def test_a_miss_says_what_differs_from_the_latest_entry(shell: Shell,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    shell.run("thr = 1\nother = 5")
    shell.run("%%step pick\nkept = [v for v in range(10) if v > thr]")
    shell.run("thr = 2")
    shell.run("%%step pick\nkept = [v for v in range(10) if v > thr]")
    assert shell.last.reason == "input thr changed"
    shell.run("%%step pick\nkept = [v for v in range(10) if v > thr + other]")
    assert shell.last.reason == "its code changed; new input other"
    capsys.readouterr()
    shell.run("thr = 3")
    shell.run("%why pick")
    out = capsys.readouterr().out
    assert out.startswith("step 'pick': input thr changed")
    assert "thr" in out and "->" in out


def test_why_says_when_a_step_would_hit(shell: Shell, capsys: pytest.CaptureFixture[str]) -> None:
    shell.run("%%step one\nx = 1")
    capsys.readouterr()
    shell.run("%why one")
    assert "it would hit" in capsys.readouterr().out
    shell.run("%why nope", ok=False)


def test_a_change_through_a_view_or_a_shared_object_is_an_output(shell: Shell) -> None:
    """Issue 9, aliasing: the state after a hit equals a plain run's, also for variables the
    step changed without naming them."""
    setup = "import numpy as np\nbase = np.arange(5)\ninner = [1]\ncfg = {'xs': inner}"
    shell.run(setup)
    shell.run("%%step view\nsub = base[:3]")
    shell.run("%%step poke\nsub[0] = 99\ncfg['xs'].append(2)")
    assert {"base", "inner", "cfg", "sub"} <= set(shell.last.outputs)
    plain = (shell.ns["base"].tolist(), list(shell.ns["inner"]), shell.ns["cfg"])
    shell.fresh()
    shell.run(setup)
    shell.run("%%step view\nsub = base[:3]")
    shell.run("%%step poke\nsub[0] = 99\ncfg['xs'].append(2)")
    assert shell.last.status == "cached"
    assert (shell.ns["base"].tolist(), list(shell.ns["inner"]), shell.ns["cfg"]) == plain


def test_two_cells_with_one_step_name_are_told_once(shell: Shell, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    nb = tmp_path / "two.ipynb"
    cells = [{"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
              "source": src} for src in ("%%step load\nx = 1", "%%step load\nx = 2", "%%step other\ny = 1")]
    nb.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    shell.ns["__session__"] = str(nb)
    shell.run("%%step load\nx = 1")
    shell.run("%%step load\nx = 2")
    shell.run("%%step other\ny = 1")
    err = capsys.readouterr().err
    assert err.count("2 cells of two.ipynb are named 'load'") == 1 and "'other'" not in err


# -- tracebacks ------------------------------------------------------------------------------
def _traceback(text: str) -> list[str]:
    """The traceback block of a cell's output, from the dashed header to the error line."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("-----"))
    return lines[start:]


def test_an_error_in_a_step_shows_like_one_in_a_plain_cell(
        shell: Shell, capsys: pytest.CaptureFixture[str]) -> None:
    """`Cell In[n], line k` with the cell's own execution count and line, the cell's lines
    around it, and no frame of the magic (`run_cell_magic`, hidden runner frames): what the
    same lines show in a plain cell (issue 9)."""
    shell.run("def helper():\n    return {}['missing']")
    for body in ("b = 2\n1 / 0", "b = 2\nhelper()"):
        n = shell.ip.execution_count
        shell.ip.run_cell(f"pass\n{body}", store_history=True)
        plain = _traceback(capsys.readouterr().out)
        shell.ip.run_cell(f"%%step s\n{body}", store_history=True)
        step = _traceback(capsys.readouterr().out)
        assert shell.ip.execution_count == n + 2
        expected = [line.replace(f"Cell In[{n}]", f"Cell In[{n + 1}]").replace("1 pass", "1 %%step s")
                    for line in plain]
        assert step == expected, "\n".join(step)
        stored = "\n".join(shell.ip.history_manager.exceptions[n + 1]["traceback"])
        assert "run_cell_magic" not in stored and f"Cell In[{n + 1}], line 3" in stored
    # The same exception object raised again in a later cell shows where, in full.
    shell.ip.run_cell("import sys\nraise sys.last_value", store_history=True)
    again = "\n".join(_traceback(capsys.readouterr().out))
    assert "raise sys.last_value" in again, again


# -- restored arrays own their data (below the mapping threshold) -----------------------------
@pytest.mark.parametrize("restore", ["hit", "%resume"])
def test_restored_small_arrays_own_their_data_as_after_a_plain_run(shell: Shell, restore: str) -> None:
    """Issue 9: an array under 1 MiB comes back owning its data (`a.resize(...)` works, as on
    the array a plain run leaves); one of 1 MiB or more is a private copy-on-write mapping of
    the cache file (docs/performance.md): writable, its writes never reach the file, but it does
    not own its data."""
    from resumable_nb.serialize import OWN_BELOW
    from resumable_nb.store import _MAP_MIN

    assert OWN_BELOW == _MAP_MIN  # owning below the size the store starts mapping at
    sizes = {"tiny": 10, "small": 100_000, "under": _MAP_MIN // 8 - 1, "big": _MAP_MIN // 8 * 2}
    cell = "%%step arrays\nmark('arrays')\nimport numpy as np\n" + "".join(
        f"{name} = np.arange({n}, dtype=np.float64)\n" for name, n in sizes.items()) + \
        "ft = np.asfortranarray(np.arange(12.0).reshape(3, 4))"
    shell.run(cell)
    plain = {name: shell.ns[name] for name in [*sizes, "ft"]}
    assert all(a.flags.owndata for a in plain.values())
    shell.fresh()
    shell.run(cell if restore == "hit" else "%resume")
    assert shell.count("arrays") == 1
    payloads = {p: p.read_bytes() for p in shell.cache.glob("objects/*.rnb")}
    for name, before in plain.items():
        after = shell.ns[name]
        assert np.array_equal(after, before) and after.dtype == before.dtype
        assert after.flags.f_contiguous == before.flags.f_contiguous
        assert after.flags.writeable
        if name == "big":
            assert not after.flags.owndata  # the documented trade-off
            after[0] = -1.0  # private: the cache file is not changed
        else:
            assert after.flags.owndata, name
            after.resize((after.size + 1,), refcheck=False)
    assert {p: p.read_bytes() for p in payloads} == payloads


def test_a_restored_structured_array_keeps_its_padding_bytes(shell: Shell) -> None:
    """The owning copy is byte for byte: `array.copy()` of an sklearn tree's nodes (a structured
    dtype with bytes no field covers, in a buffer numpy may find unaligned) copies field by
    field and loses those bytes, which the fingerprint sees: after a hit the tree fingerprinted
    differently from the plain run's (the corpus's hml2_06_decision_trees)."""
    pytest.importorskip("sklearn")
    from resumable_nb.fingerprint import Fingerprinter

    shell.run("from sklearn.datasets import load_iris\nX, y = load_iris(return_X_y=True)")
    cell = ("%%step tree\nmark('tree')\nfrom sklearn.tree import DecisionTreeClassifier\n"
            "clf = DecisionTreeClassifier(max_depth=2, random_state=42).fit(X, y)")
    shell.run(cell)
    plain = Fingerprinter(shell.ns).hash(shell.ns["clf"])
    nodes = shell.ns["clf"].tree_.__getstate__()["nodes"].view(np.uint8).tobytes()
    shell.fresh()
    shell.run("from sklearn.datasets import load_iris\nX, y = load_iris(return_X_y=True)")
    shell.run(cell)
    assert shell.count("tree") == 1
    assert shell.ns["clf"].tree_.__getstate__()["nodes"].view(np.uint8).tobytes() == nodes
    assert Fingerprinter(shell.ns).hash(shell.ns["clf"]) == plain
