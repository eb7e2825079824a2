"""The team store end to end: "machines" (own cache folder, own HOME, fresh processes) sharing
a bucket on a real S3 server (moto's, on 127.0.0.1). Executions are counted through a marker
file, never timed. No client mocks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("obstore")
pytest.importorskip("moto.server")

from resumable_nb.remote import RemoteStore, list_runs, manifest_name, notebook_identity
from tests.test_remote import BUCKET, S3, _make_bucket

_SCRIPT = r'''
import json, sys, time
from IPython.core.interactiveshell import InteractiveShell
ip = InteractiveShell.instance()
ip.run_cell("%load_ext resumable_nb")
def mark(tag, _log=sys.argv[2]):
    with open(_log, "a") as f:
        f.write(tag + "\n")
ip.user_ns["mark"] = mark
ip.user_ns_hidden["mark"] = mark
start = time.monotonic()
for cell in json.loads(sys.argv[1]):
    result = ip.run_cell(cell)
    if not result.success:
        print("CELL FAILED", repr(result.error_in_exec or result.error_before_exec), file=sys.stderr)
ip.run_cell("%unload_ext resumable_nb")
print("ELAPSED", time.monotonic() - start)
'''


@dataclass
class Machine:
    """One machine: its cache folder, HOME and key file; the bucket it shares."""

    folder: Path
    env: dict[str, str]
    log: Path

    def run(self, *cells: str, **extra: str) -> subprocess.CompletedProcess[str]:
        """Run ``cells`` in a new IPython process (a new kernel) on this machine."""
        env = {**os.environ, **self.env, **extra}
        env.pop("PYTEST_CURRENT_TEST", None)
        out = subprocess.run([sys.executable, "-c", _SCRIPT, json.dumps(list(cells)), str(self.log)],
                             env=env, cwd=self.folder, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-3000:]
        assert "CELL FAILED" not in out.stderr, out.stderr[-3000:]
        return out

    @property
    def cache(self) -> Path:
        return Path(self.env["RESUMABLE_NB_DIR"])


@dataclass
class Team:
    s3: S3
    url: str
    folder: Path
    key: Path
    log: Path

    def machine(self, name: str, key: Path | None = None) -> Machine:
        folder = self.folder / name
        (folder / "home").mkdir(parents=True, exist_ok=True)
        env = {"RESUMABLE_NB_DIR": str(folder / "cache"), "HOME": str(folder / "home"),
               "RESUMABLE_NB_KEY_FILE": str(key or self.key), "RESUMABLE_NB_STORE": self.url,
               "RESUMABLE_NB_PROJECT": "team-test", "RESUMABLE_NB_STORE_TIMEOUT": "3",
               "RESUMABLE_NB_NOTEBOOK": str(folder / "pipeline.ipynb")}
        return Machine(folder, env, self.log)

    def count(self, tag: str) -> int:
        return self.log.read_text().split().count(tag) if self.log.exists() else 0

    @property
    def remote(self) -> RemoteStore:
        return RemoteStore(self.url, timeout=3.0)


def _key(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(32))
    path.chmod(0o600)
    return path


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Any:
    server = S3()
    _make_bucket(server.endpoint)
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "RESUMABLE_NB_STORE"):
        monkeypatch.delenv(var, raising=False)
    for var, value in (("AWS_ENDPOINT_URL", server.endpoint), ("AWS_ACCESS_KEY_ID", "test"),
                       ("AWS_SECRET_ACCESS_KEY", "test"), ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(var, value)
    yield server
    server.stop()


@pytest.fixture
def team(s3: S3, tmp_path: Path, request: pytest.FixtureRequest) -> Team:
    return Team(s3, f"s3://{BUCKET}/team/{request.node.name}", tmp_path,
                _key(tmp_path / "keys" / "team.key"), tmp_path / "executions.log")


def _step(name: str, body: str) -> str:
    return f"%%step {name}\nmark({name!r})\n{body}"


LOAD = _step("load", "import numpy as np\nraw = np.arange(200_000.0)\nprint('loaded', raw.size)")
CLEAN = _step("clean", "clean = raw[raw % 3 == 0]\nprint('cleaned', clean.size)")


# -- read-through / write-through -------------------------------------------------------------
def test_second_machine_hits_the_first_machines_step_without_running_it(team: Team) -> None:
    a, b = team.machine("a"), team.machine("b")
    a.run(LOAD, CLEAN)
    assert team.count("load") == 1 and team.count("clean") == 1
    out = b.run(LOAD, CLEAN, "assert clean.size == 66667 and raw.sum() == sum(range(200_000))")
    assert team.count("load") == 1 and team.count("clean") == 1  # neither ran on B
    assert "step 'load' restored from cache" in out.stdout
    assert "cleaned 66667" in out.stdout  # the printed output replayed
    assert list((b.cache / "objects").iterdir())  # B's local folder has it now: a local hit next
    assert not list((b.cache / "tmp").iterdir())


def test_a_machine_with_another_key_reruns_and_never_unpickles(team: Team, tmp_path: Path) -> None:
    # A class whose unpickling leaves a trace: proof that B (team key) unpickles the entry and
    # C (another key) never does.
    (tmp_path / "tracer.py").write_text(
        "import os\n"
        "class Traced:\n"
        "    def __init__(self, v): self.v = v\n"
        "    def __setstate__(self, state):\n"
        "        open(os.environ['TRACE_LOG'], 'a').write('unpickled\\n')\n"
        "        self.__dict__.update(state)\n")
    trace = tmp_path / "trace.log"
    extra = {"PYTHONPATH": str(tmp_path), "TRACE_LOG": str(trace)}
    cell = _step("traced", "import tracer\nobj = tracer.Traced(41)")
    team.machine("a").run(cell, **extra)
    team.machine("b").run(cell, "assert obj.v == 41", **extra)
    assert team.count("traced") == 1 and trace.read_text().split() == ["unpickled"]

    c = team.machine("c", key=_key(tmp_path / "keys" / "other.key"))
    out = c.run(cell, "assert obj.v == 41", **extra)
    assert team.count("traced") == 2  # C ran it
    assert trace.read_text().split() == ["unpickled"]  # and never unpickled the team's entry
    lines = [ln for ln in out.stderr.splitlines() if "not signed with your key" in ln]
    assert len(lines) == 1 and "step 'traced'" in lines[0] and "re-runs" in lines[0]
    # C's own result is invisible to the team, whose manifest stays (first writer wins).
    b2 = team.machine("b2")
    b2.run(cell, **extra)
    assert team.count("traced") == 2


def test_stopped_server_leaves_steps_working_and_nothing_hangs(team: Team) -> None:
    a = team.machine("a")
    team.s3.stop()
    start = time.monotonic()
    out = a.run(LOAD, CLEAN, "assert clean.size == 66667")
    assert time.monotonic() - start < 30  # includes starting Python and numpy
    elapsed = float(out.stdout.split("ELAPSED")[1])
    assert elapsed < 15, out.stderr
    assert team.count("load") == 1
    down = [ln for ln in out.stderr.splitlines() if "s3://" in ln and "check" in ln]
    assert len(down) == 1, out.stderr  # said once per kernel
    # Stored locally all the same: a new kernel on A hits without the bucket.
    again = a.run(LOAD, CLEAN)
    assert team.count("load") == 1 and "restored from cache" in again.stdout
    assert list((a.cache / "remote-pending").iterdir())  # uploads kept for later

    # The bucket comes back: `resumable-nb push` sends what A has, and B hits it.
    team.s3.start()
    push = subprocess.run([sys.executable, "-m", "resumable_nb", "push"], capture_output=True,
                          text=True, env={**os.environ, **a.env}, cwd=a.folder, timeout=120)
    assert push.returncode == 0, push.stderr
    assert "pushed to s3://" in push.stdout
    assert not list((a.cache / "remote-pending").iterdir())
    team.machine("b").run(LOAD, CLEAN)
    assert team.count("load") == 1 and team.count("clean") == 1


def test_concurrent_writers_of_the_same_step(team: Team) -> None:
    cell = _step("slow", "import time\ntime.sleep(3)\nvalue = sum(range(10_000))")
    machines = [team.machine(name) for name in ("a", "b")]
    procs = []
    for m in machines:
        env = {**os.environ, **m.env}
        env.pop("PYTEST_CURRENT_TEST", None)
        procs.append(subprocess.Popen([sys.executable, "-c", _SCRIPT, json.dumps([cell]), str(team.log)],
                                      env=env, cwd=m.folder, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0 and "CELL FAILED" not in err, err
    assert team.count("slow") == 2  # both missed: nothing was in the bucket yet
    manifests = [o.name for o in team.remote.list("manifests/")]
    assert len(manifests) == 1  # one manifest: the first writer's
    team.machine("c").run(cell, "assert value == sum(range(10_000))")
    assert team.count("slow") == 2


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_damaged_object_in_the_bucket_is_detected_and_rerun(team: Team, damage: str) -> None:
    team.machine("a").run(LOAD)
    remote = team.remote
    (obj,) = [o for o in remote.list("objects/")]
    data = remote.get_blob(obj.name, max_size=1 << 30)
    assert data is not None
    flipped = data[:-100] + bytes([data[-100] ^ 1]) + data[-99:]  # same size, inside the array
    bad = data[: len(data) // 2] if damage == "truncate" else flipped
    remote.put_blob(obj.name, bad, if_absent=False)
    out = team.machine("b").run(LOAD, "assert raw.sum() == sum(range(200_000))")
    assert team.count("load") == 2  # B re-ran it
    assert "corrupt" in out.stdout + out.stderr, out.stderr
    # B's re-run replaced the damaged payload: a third machine hits it.
    team.machine("c").run(LOAD, "assert raw.sum() == sum(range(200_000))")
    assert team.count("load") == 2


# -- journal mirroring and resume elsewhere ---------------------------------------------------
def _wait_for_runs(team: Team, n_steps: int, timeout: float = 20,
                   kind: str = "step_finished") -> None:
    """Wait until the bucket's copy of the latest run holds ``n_steps`` records of ``kind``:
    the journal is mirrored in the background, so a SIGKILL before that loses the tail."""
    ident = notebook_identity("pipeline.ipynb", env={"RESUMABLE_NB_PROJECT": "team-test"})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = list_runs(team.remote, ident)
        if runs:
            from resumable_nb.remote import read_run

            data = read_run(team.remote, ident, runs[-1])
            if data.count(f'"kind":"{kind}"'.encode()) >= n_steps:
                return
        time.sleep(0.2)
    raise AssertionError("the journal never reached the bucket")


@pytest.mark.kernel
def test_run_killed_on_one_machine_resumes_on_another(team: Team) -> None:
    from tests.kernels import Kernel

    a, b = team.machine("a"), team.machine("b")

    def kernel(m: Machine) -> Kernel:
        k = Kernel(m.folder, m.env)
        k.ok("%load_ext resumable_nb")
        k.ok(f"def mark(tag, _log={str(team.log)!r}):\n    open(_log, 'a').write(tag + '\\n')")
        return k

    ka = kernel(a)
    try:
        ka.ok(LOAD)
        ka.ok(CLEAN)
        _wait_for_runs(team, 2)  # mirrored at step_finished, in the background
        ka.run_until(_step("train", "print('training', flush=True)\nimport time\ntime.sleep(120)"),
                     "training")
        # train's start reaches the bucket in the background too: without it, machine b
        # cannot know train was interrupted (a crash loses what was not yet uploaded).
        _wait_for_runs(team, 3, kind="step_started")
        ka.kill()  # SIGKILL: no goodbye, no flush
    finally:
        ka.close()
    kb = kernel(b)
    try:
        reply = kb.ok("%resume")
        assert "Restored 2 steps (load, clean)" in reply.stdout, reply.stdout + reply.stderr
        assert "Step 'train' was interrupted" in reply.stdout
        assert team.count("load") == 1 and team.count("clean") == 1
        assert kb.value("int(clean.size)") == 66667
    finally:
        kb.close()


@pytest.mark.kernel
def test_cli_run_killed_on_one_machine_resumes_on_another(team: Team) -> None:
    nb = {"cells": [
        {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None, "source": src}
        for src in (
            f"def mark(tag, _log={str(team.log)!r}):\n    open(_log, 'a').write(tag + '\\n')",
            LOAD, CLEAN,
            # Let the background uploads finish, then die like an OOM kill.
            "get_ipython()._resumable_nb_magics.session.team.flush(20)\n"
            "import os, signal\nif os.environ.get('DIE'): os.kill(os.getpid(), signal.SIGKILL)",
            _step("train", "weights = float(clean.mean())"),
        )], "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                        "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5}
    a, b = team.machine("a"), team.machine("b")
    results = []
    for m, die in ((a, "1"), (b, "")):
        path = m.folder / "pipeline.ipynb"
        path.write_text(json.dumps(nb))
        env = {**os.environ, **m.env, "DIE": die}
        env.pop("RESUMABLE_NB_NOTEBOOK")
        env.pop("RESUMABLE_NB_STORE")  # B gives it as --store
        env.pop("PYTEST_CURRENT_TEST", None)
        results.append(subprocess.run(
            [sys.executable, "-m", "resumable_nb", "run", str(path), "--store", team.url],
            env=env, cwd=m.folder, capture_output=True, text=True, timeout=300))
    died, resumed = results
    assert died.returncode == 1 and "died" in died.stderr, died.stderr
    assert resumed.returncode == 0, resumed.stderr
    assert "from the team store" in resumed.stderr
    assert "restored 2 steps without running them (load, clean)" in resumed.stderr, resumed.stderr
    assert team.count("load") == 1 and team.count("clean") == 1 and team.count("train") == 1


# -- the size bound ------------------------------------------------------------------------------
def test_max_size_evicts_least_recently_used_and_keeps_the_latest_run(shell: Any, tmp_path: Path) -> None:
    shell.run('%config ResumableNB.max_size = "2.5MB"')
    for name in ("a", "b"):  # an earlier run: 1 MB each
        shell.run(f"%%step {name}\nimport numpy as np\n{name} = np.full(125_000, {ord(name)}.0)")
    shell.fresh()  # a new kernel: a new run, which needs only c and d
    shell.run('%config ResumableNB.max_size = "2.5MB"')
    store = shell.magics.session.store()
    keys_before = {e.step: e.key for e in store.entries()}
    assert set(keys_before) == {"a", "b"}
    shell.run("%%step a\nimport numpy as np\na = np.full(125_000, 97.0)")  # a hit: a is used
    assert shell.last.status == "cached"
    shell.run("%%step c\nimport numpy as np\nc = np.full(125_000, 3.0)")
    steps = {e.step for e in store.entries()}
    assert steps == {"a", "c"}  # b was the least recently used; a is what this run restored
    shell.run("%%step d\nimport numpy as np\nd = np.full(125_000, 4.0)")
    steps = {e.step for e in store.entries()}
    # Above the bound (3 MB), but the latest run needs all three: none of them goes.
    assert steps == {"a", "c", "d"}
    assert store.size_on_disk() > 2_500_000
    shell.run("%%step c\nimport numpy as np\nc = np.full(125_000, 3.0)")
    assert shell.last.status == "cached"


def test_gc_max_size_and_gc_store(team: Team, tmp_path: Path) -> None:
    a = team.machine("a")
    a.run(LOAD)
    a.run(_step("other", "x = list(range(100_000))"))  # a later run: LOAD's entry is not needed
    env = {**os.environ, **a.env}

    def gc_cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "resumable_nb", "gc", *args],
                              env=env, capture_output=True, text=True, cwd=a.folder)

    def inventory() -> tuple[list[str], list[str], list[str]]:
        return (sorted(p.name for p in (a.cache / "objects").iterdir()),
                sorted(o.name for o in team.remote.list("manifests/")),
                sorted(o.name for o in team.remote.list("objects/")))

    # --dry-run is honoured with --max-size and --store too: it says, and removes nothing.
    before = inventory()
    dry = gc_cli("--max-size", "1KB", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.startswith("would remove 1 least recently used cache entry"), dry.stdout
    assert "dry run: nothing removed" in dry.stdout
    dry = gc_cli("--store", team.url, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.startswith("would remove") and "dry run: nothing removed" in dry.stdout, dry.stdout
    assert inventory() == before

    gc = gc_cli("--max-size", "1KB")
    assert gc.returncode == 0, gc.stderr
    assert "removed 1 least recently used cache entry" in gc.stdout, gc.stdout

    from resumable_nb.store import Store
    from resumable_nb.teamops import gc_remote

    store = Store(a.cache, Path(a.env["RESUMABLE_NB_KEY_FILE"]))
    try:
        report = gc_remote(team.remote, store, grace=0)
    finally:
        store.close()
    assert not report.refused and report.manifests == 1 and report.objects == 1
    left = [o.name for o in team.remote.list("manifests/")]
    assert len(left) == 1
    assert team.remote.get_blob(left[0]) is not None
    assert left[0] == manifest_name(left[0].removeprefix("manifests/").removesuffix(".json"))
