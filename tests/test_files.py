"""Files a step reads and writes, ``--retries`` and top-level ``await``: in a real
InteractiveShell (fast) and in real kernels (``@pytest.mark.kernel``)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from resumable_nb.files import FileHashes, literal_paths
from tests.conftest import Kernels, Shell


@pytest.fixture
def cwd(tmp_path: Path) -> Iterator[Path]:
    """The kernel's working directory: a folder of its own, as a notebook's folder is."""
    work = tmp_path / "work"
    work.mkdir()
    old = os.getcwd()
    os.chdir(work)
    yield work
    os.chdir(old)


def _age(path: Path) -> None:
    """Make a file look written a minute ago (recently written files are always re-hashed)."""
    t = time.time() - 60
    os.utime(path, (t, t))


def test_literal_paths_are_strings_and_paths_built_from_literals() -> None:
    import ast

    tree = ast.parse("import pathlib\nf(Path('data') / 'x.csv', os.path.join('a', 'b'), 'c.txt', "
                     "f'{name}.csv', pathlib.Path('d', 'e'))")
    assert literal_paths(tree) >= {"data/x.csv", "a/b", "c.txt", "d/e"}
    assert "data" not in literal_paths(tree)


def test_a_changed_file_reruns_the_step_and_names_it(shell: Shell, cwd: Path) -> None:
    (cwd / "data.csv").write_text("a\n1\n")
    cell = "%%step load\nmark('load')\ntext = open('data.csv').read()"
    shell.run(cell)
    shell.run(cell)
    assert shell.count("load") == 1 and shell.last.status == "cached"
    (cwd / "data.csv").write_text("a\n2\n")
    shell.run(cell)
    assert shell.count("load") == 2 and shell.ns["text"] == "a\n2\n"
    assert shell.last.reason == "file data.csv changed"
    shell.fresh()  # a new kernel: the miss reason comes from the stored entry
    (cwd / "data.csv").write_text("a\n3\n")
    shell.run(cell)
    assert shell.count("load") == 3 and shell.last.reason == "file data.csv changed"


def test_a_path_in_a_variable_is_an_input(shell: Shell, cwd: Path) -> None:
    (cwd / "in.txt").write_text("1")
    shell.run("from pathlib import Path\nsrc = Path('in.txt')")
    cell = "%%step read\nmark('read')\nv = src.read_text()"
    shell.run(cell)
    (cwd / "in.txt").write_text("2")
    shell.run(cell)
    assert shell.count("read") == 2 and shell.ns["v"] == "2"


def test_a_folder_is_read_through_reads_not_by_naming_it(shell: Shell, cwd: Path) -> None:
    """A folder named in the code is not an input (notebooks name output folders that several
    steps write into: keying on them made every such step miss, hml2_06 in the corpus);
    ``--reads 'd/*'`` declares a folder's files."""
    (cwd / "d").mkdir()
    (cwd / "d" / "a.txt").write_text("1")
    cell = "%%step ls --reads 'd/*'\nimport os\nmark('ls')\nnames = sorted(os.listdir('d'))"
    shell.run(cell)
    shell.run(cell)
    assert shell.count("ls") == 1
    (cwd / "d" / "b.txt").write_text("2")
    shell.run(cell)
    assert shell.count("ls") == 2 and shell.ns["names"] == ["a.txt", "b.txt"]
    named = "%%step out\nimport os\nmark('out')\nos.makedirs('figs', exist_ok=True)\nopen('figs/1.txt', 'w')"
    shell.run(named)
    (cwd / "figs" / "2.txt").write_text("another step's figure")
    shell.run(named)
    assert shell.count("out") == 1


def test_a_file_the_step_writes_is_its_product_not_its_input(shell: Shell, cwd: Path) -> None:
    """np.save('m.npy'), %%file helper.py: on the next run the file exists, unchanged since the
    step wrote it; it must not turn into an input that makes the step miss (corpus: spl_lecture1
    c116, spl_lecture2 c28/c31). Changed by someone else, it counts again."""
    cell = "%%step save\nmark('save')\nopen('made.txt', 'w').write('42')"
    shell.run(cell)
    shell.fresh()
    shell.run(cell)
    assert shell.count("save") == 1
    # It only writes the file: a plain run overwrites whatever is there, and so does a hit.
    (cwd / "made.txt").write_text("edited by hand")
    shell.run(cell)
    assert shell.count("save") == 1 and (cwd / "made.txt").read_text() == "42"


@pytest.mark.parametrize("use", [
    "text = open('made.txt').read() if os.path.exists('made.txt') else ''\n"
    "open('made.txt', 'w').write(text + '1')",
    "open('made.txt', 'a').write('1')",
    "with open('made.txt', 'r+') as f:\n    f.write('1')",
    "fd = os.open('made.txt', os.O_WRONLY | os.O_CREAT)\nos.write(fd, b'1')\nos.close(fd)",
], ids=["read-then-write", "append", "update", "os.open-no-truncate"])
def test_a_file_the_step_reads_or_appends_to_stays_its_input(shell: Shell, cwd: Path, use: str) -> None:
    """REWRITTEN's fix must never make a step that reads a file hit stale: reading, appending,
    updating in place all depend on what the file held."""
    cell = f"%%step upd\nimport os\nmark('upd')\n{use}"
    (cwd / "made.txt").write_text("0")
    for _ in range(3):
        shell.run(cell)
    ran = shell.count("upd")
    shell.run(cell)
    assert shell.count("upd") == ran, "as the step left it: its own product"
    (cwd / "made.txt").write_text("edited by hand")
    shell.run(cell)
    assert shell.count("upd") == ran + 1, "changed by someone else: it counts again"


def test_a_file_one_step_writes_and_a_later_one_rewrites(shell: Shell, cwd: Path) -> None:
    """REWRITTEN (corpus: spl_lecture2 c28/c30, hml2_tools_numpy c171/c173): each step only
    writes the file; on the next run all hit, and the step reading it between them reads what
    the first one wrote, as in a plain run."""
    first = "%%step first\nmark('first')\nimport numpy as np\nnp.savetxt('m.csv', np.eye(2))"
    read = "%%step read\nmark('read')\nimport numpy as np\nm = np.loadtxt('m.csv')"
    again = "%%step again\nmark('again')\nimport numpy as np\nnp.savetxt('m.csv', np.eye(2), delimiter=',')"
    for _ in range(2):
        for cell in (first, read, again):
            shell.run(cell)
        shell.fresh()
    assert [shell.count(s) for s in ("first", "read", "again")] == [1, 1, 1]
    assert "," in (cwd / "m.csv").read_text()
    shell.run(first)
    assert "," not in (cwd / "m.csv").read_text(), "a hit writes back what the step wrote"


def test_the_working_folder_and_its_parents_are_not_hashed(shell: Shell, cwd: Path) -> None:
    cell = "%%step sep\nmark('sep')\nparts = 'a.b'.split('.')"
    shell.run(cell)
    (cwd / "other.txt").write_text("x")
    shell.run(cell)
    assert shell.count("sep") == 1


def test_reads_glob_sees_a_new_matching_file(shell: Shell, cwd: Path) -> None:
    (cwd / "in").mkdir()
    (cwd / "in" / "1.csv").write_text("1")
    cell = "%%step all --reads 'in/*.csv'\nimport glob\nmark('all')\nn = len(glob.glob('in/*.csv'))"
    shell.run(cell)
    shell.run(cell)
    assert shell.count("all") == 1
    (cwd / "in" / "2.csv").write_text("2")
    shell.run(cell)
    assert shell.count("all") == 2 and shell.ns["n"] == 2
    assert shell.last.reason == "files matching 'in/*.csv' changed"


def test_a_deleted_product_comes_back_on_a_hit(shell: Shell, cwd: Path) -> None:
    cell = ("%%step save --writes out/result.txt\nimport os\nmark('save')\n"
            "os.makedirs('out', exist_ok=True)\nopen('out/result.txt', 'w').write('42')")
    shell.run(cell)
    (cwd / "out" / "result.txt").unlink()
    shell.run(cell)
    assert shell.count("save") == 1 and shell.last.status == "cached"
    assert (cwd / "out" / "result.txt").read_text() == "42"
    (cwd / "out" / "result.txt").write_text("tampered")
    shell.run(cell)
    assert shell.count("save") == 1 and (cwd / "out" / "result.txt").read_text() == "42"
    assert not [p for p in (cwd / "out").iterdir() if p.name != "result.txt"]  # no temp left


def test_a_big_product_is_stored_out_of_band(shell: Shell, cwd: Path) -> None:
    cell = ("%%step big --writes big.bin\nmark('big')\n"
            "open('big.bin', 'wb').write(bytes(range(256)) * 20000)")
    shell.run(cell)
    (cwd / "big.bin").unlink()
    shell.run(cell)
    assert shell.count("big") == 1 and (cwd / "big.bin").read_bytes() == bytes(range(256)) * 20000


def test_a_missing_product_is_an_error_naming_it(shell: Shell, cwd: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    result = shell.run("%%step save --writes missing.txt\nx = 1", ok=False)
    assert not result.success
    assert "--writes 'missing.txt'" in str(result.error_in_exec)
    assert shell.last.status == "failed" and not shell.last.stored


def test_await_in_a_step(shell: Shell) -> None:
    cell = "%%step a\nimport asyncio\nmark('a')\nawait asyncio.sleep(0)\nx = 1\nx + 1"
    assert shell.run(cell).result == 2
    assert repr(shell.run(cell).result) == "2"  # replayed
    assert shell.count("a") == 1 and shell.ns["x"] == 1


def test_retries_restore_an_input_changed_in_place(shell: Shell, cwd: Path) -> None:
    shell.run("items = [1, 2]")
    cell = ("%%step flaky --retries 2\nimport os\nmark('flaky')\nitems.append(3)\n"
            "if not os.path.exists('ok'):\n    open('ok', 'w').close()\n    raise ValueError('once')\n"
            "total = sum(items)")
    shell.run(cell)
    assert shell.count("flaky") == 2 and shell.ns["total"] == 6 and shell.ns["items"] == [1, 2, 3]
    attempts = [r for r in shell.magics.runner.history if r.name == "flaky"]
    assert [r.status for r in attempts] == ["failed", "ran"]


def test_retries_run_out(shell: Shell) -> None:
    result = shell.run("%%step bad --retries 1 --retry-delay 0.01\nmark('bad')\n1 / 0", ok=False)
    assert isinstance(result.error_in_exec, ZeroDivisionError)
    assert shell.count("bad") == 2


def test_stepline_rejects_negative_retries(shell: Shell) -> None:
    result = shell.run("%%step x --retries -1\ny = 1", ok=False)
    assert "--retries" in str(result.error_in_exec or result.error_before_exec)


def test_hashes_are_remembered_by_stat(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"x" * 10)
    _age(f)
    hashes = FileHashes()
    first = hashes.digest(str(f))
    assert hashes.hashed_bytes == 10
    assert hashes.digest(str(f)) == first and hashes.hashed_bytes == 10
    f.write_bytes(b"y" * 10)  # same size; new mtime and ctime
    assert hashes.digest(str(f)) != first


# -- real kernels ------------------------------------------------------------------------------
@pytest.mark.kernel
def test_kernel_csv_input_reruns_when_changed_and_hits_in_a_new_kernel(start: Kernels) -> None:
    csv = start.folder / "data.csv"
    csv.write_text("a\n1\n")
    _age(csv)
    cell = "%%step load\nmark('load')\nrows = open('data.csv').read().split()"
    k = start()
    k.ok(cell)
    k.ok(cell)
    assert start.count("load") == 1
    csv.write_text("a\n2\n")
    k.ok(cell)
    assert start.count("load") == 2 and k.value("rows") == ["a", "2"]
    k2 = start()
    out = k2.ok(cell)
    assert start.count("load") == 2 and "restored from cache" in out.stdout


@pytest.mark.kernel
def test_kernel_reads_product_await_and_retries(start: Kernels) -> None:
    (start.folder / "in").mkdir()
    (start.folder / "in" / "1.csv").write_text("1")
    k = start()
    reads = "%%step all --reads 'in/*.csv'\nimport glob\nmark('all')\nn = len(glob.glob('in/*.csv'))"
    k.ok(reads)
    (start.folder / "in" / "2.csv").write_text("2")
    k.ok(reads)
    assert start.count("all") == 2 and k.value("n") == 2

    save = "%%step save --writes result.txt\nmark('save')\nopen('result.txt', 'w').write('42')"
    k.ok(save)
    (start.folder / "result.txt").unlink()
    k.ok(save)
    assert start.count("save") == 1 and (start.folder / "result.txt").read_text() == "42"

    aw = "%%step aw\nimport asyncio\nmark('aw')\nawait asyncio.sleep(0)\nx = 1"
    k.ok(aw)
    flaky = ("%%step flaky --retries 2\nimport os\nmark('flaky')\n"
             "if not os.path.exists('ok'):\n    open('ok', 'w').close()\n    raise ValueError('once')\n"
             "y = 2")
    k.ok(flaky)
    assert start.count("flaky") == 2 and k.value("y") == 2
    k.ok("%steps")
    table = k.ok("print(get_ipython().find_magic('steps').__self__.session.table())").stdout
    row = next(line for line in table.splitlines() if line.startswith("flaky"))
    assert " 2 " in row  # two attempts

    k2 = start()
    out = k2.ok(aw)
    assert start.count("aw") == 1 and "restored from cache" in out.stdout and k2.value("x") == 1


# -- paths built from str / Path inputs, and held in containers (adversary round 2) ----------

@pytest.mark.parametrize(
    ("setup", "body"),
    [
        ("from pathlib import Path\nDATA = Path('data')", "v = (DATA / 'd.txt').read_text()"),
        ("import os\nDIR = 'data'", "v = open(os.path.join(DIR, 'd.txt')).read()"),
        ("from pathlib import Path\nDIR = 'data'", "v = Path(DIR, 'd.txt').read_text()"),
        ("DIR = 'data'", "v = open(DIR + '/d.txt').read()"),
        ("from pathlib import Path\nDATA = Path('data')\nsub = 'd.txt'", "v = (DATA / sub).read_text()"),
        ("from pathlib import Path\ncfg = {'dir': Path('data')}",
         "v = (cfg['dir'] / 'd.txt').read_text()"),
        ("from pathlib import Path\ncfg = {'path': Path('data') / 'd.txt'}",
         "v = open(cfg['path']).read()"),
        ("paths = ['data/d.txt']", "v = ''\nfor p in paths:\n    v += open(p).read()"),
        ("from pathlib import Path\nDATA = Path('data')\n"
         "def load():\n    return (DATA / 'd.txt').read_text()", "v = load()"),
        ("import os\nDIR = 'data'\n"
         "def load(name='d.txt'):\n    return open(os.path.join(DIR, 'd.txt')).read()", "v = load()"),
    ],
    ids=["path-div", "os.path.join", "Path-args", "str-concat", "two-names", "dict-dir", "dict-path",
         "list", "in-a-function", "join-in-a-function"],
)
def test_a_file_named_through_str_or_path_inputs_is_an_input(shell: Shell, cwd: Path, setup: str,
                                                               body: str) -> None:
    (cwd / "data").mkdir()
    (cwd / "data" / "d.txt").write_text("1")
    shell.run(setup)
    cell = f"%%step built\nmark('built')\n{body}"
    shell.run(cell)
    shell.run(cell)
    assert shell.count("built") == 1, "the file's own step did not hit"
    (cwd / "data" / "d.txt").write_text("2")
    shell.run(cell)
    assert shell.count("built") == 2 and shell.ns["v"] == "2"
    assert "file " in shell.last.reason and "d.txt changed" in shell.last.reason


def test_strings_in_containers_cost_a_stat_only_when_they_look_like_paths(cwd: Path) -> None:
    from resumable_nb.files import MAX_HELD_PATHS, path_strings

    (cwd / "README").write_text("x")
    words = ["the", "README", "a.csv", "dir/x"]
    assert path_strings([words]) == {"a.csv", "dir/x"}
    assert path_strings(["README"]) == {"README"}  # a str input itself: any string
    many = [f"f{i}.txt" for i in range(5000)]
    assert len(path_strings([many])) == MAX_HELD_PATHS
    nested = {"a": [("x.csv", {"k": "y/z.txt"})], "n": 1.5}
    assert path_strings([nested]) == {"x.csv", "y/z.txt"}
    loop: list[object] = ["p.txt"]
    loop.append(loop)
    assert path_strings([loop]) == {"p.txt"}


def test_path_templates_resolve_only_str_and_path_values() -> None:
    from pathlib import Path

    from resumable_nb.files import resolve_paths
    from resumable_nb.fingerprint import path_templates

    code = compile("a = (DATA / 'x.csv')\nb = os.path.join(N, 'y')\nc = D + '.csv'\n"
                   "d = cfg['dir'] / 'z'", "<t>", "exec")
    values = {"DATA": Path("data"), "N": 3, "D": "out/run", "cfg": {"dir": "c"}}
    assert resolve_paths(path_templates(code), values) >= {"data/x.csv", "out/run.csv", "c/z"}
    assert not any(p.startswith("3") for p in resolve_paths(path_templates(code), values))


@pytest.mark.parametrize("body", [
    "from pathlib import Path\nDATA = Path('data')\nv = (DATA / 'd.txt').read_text()",
    "import os\nDIR = 'data'\nv = open(os.path.join(DIR, 'd.txt')).read()",
], ids=["Path", "str"])
def test_a_path_built_from_a_name_the_step_binds_to_a_literal(shell: Shell, cwd: Path, body: str) -> None:
    (cwd / "data").mkdir()
    (cwd / "data" / "d.txt").write_text("1")
    cell = f"%%step own\nmark('own')\n{body}"
    shell.run(cell)
    shell.run(cell)
    assert shell.count("own") == 1
    (cwd / "data" / "d.txt").write_text("2")
    shell.run(cell)
    assert shell.count("own") == 2 and shell.ns["v"] == "2"
