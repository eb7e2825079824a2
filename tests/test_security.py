"""A cache folder someone else prepared must never make us delete, overwrite or execute.

Each test plants what an attacker could — a shipped ``.resumable_nb/`` in a cloned repository,
links in a folder others can write to, a journal written with another key — with real files,
real symlinks and, where ownership matters, a second local user (created here when running as
root). The victim's files must come out untouched and nothing planted may run.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import pwd
import resource
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from resumable_nb import cli
from resumable_nb.errors import CorruptEntry, StoreError
from resumable_nb.journal import Journal, journal_name, read_events, runs
from resumable_nb.keys import load_key
from resumable_nb.store import Store
from tests.conftest import Shell

PAYLOAD = {"outputs": {"a": np.arange(10)}, "deleted": (), "events": [], "result": None}


def put(store: Store, key: str, step: str = "step") -> None:
    store.put(key, step, PAYLOAD, {}, outputs=("a",), deleted=(), duration=0.1)


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A user's precious file, in a folder of its own, outside any cache."""
    d = tmp_path / "docs"
    d.mkdir()
    (d / "thesis.tex").write_text("three years of work\n")
    return d / "thesis.tex"


def plant_row(cache: Path, key: str, *, filename: str | None, raw: int = 1, mode: int = 2) -> None:
    """Insert a row into diskcache's table as an attacker with write access to the folder would."""
    with contextlib.closing(sqlite3.connect(cache / "index" / "cache.db")) as db:
        db.execute("INSERT INTO Cache (key, raw, store_time, expire_time, access_time, access_count, "
                   "tag, size, mode, filename, value) VALUES (?, ?, 0, NULL, 0, 0, NULL, 10, ?, ?, NULL)",
                   (key, raw, mode, filename))
        db.commit()


# -- 1. planted index rows ----------------------------------------------------------------------
@pytest.mark.parametrize("operation", ["get", "delete", "delete_step", "gc", "put over it"])
def test_a_planted_index_row_never_deletes_a_file_outside_the_cache(
        tmp_path: Path, victim: Path, operation: str) -> None:
    cache = tmp_path / "cache"
    Store(cache).close()
    plant_row(cache, "k", filename=str(victim))
    store = Store(cache)
    try:
        if operation == "get":
            with pytest.raises(CorruptEntry):
                store.get("k")
        elif operation == "delete":
            store.delete("k")
        elif operation == "delete_step":
            store.delete_step("step")
        elif operation == "gc":
            store.gc(keep=set())
        else:
            put(store, "k")
            assert store.load(store.get("k"), {})["outputs"]["a"].tolist() == list(range(10))
    finally:
        store.close()
    assert victim.read_text() == "three years of work\n" and victim.parent.is_dir()


def test_reading_many_manifests_at_once_trusts_no_planted_row(tmp_path: Path, victim: Path) -> None:
    """%resume reads its manifests in a few queries (Store.get_many): a planted row (a file
    name, a pickle, a record signed with another key) is left out, and get() says why."""
    cache = tmp_path / "cache"
    with contextlib.closing(Store(cache)) as store:
        put(store, "good")
        record = store.record("good")
    assert record is not None
    plant_row(cache, "file", filename=str(victim))
    plant_row(cache, "pickle", filename=None, mode=4)
    forged = json.loads(record)
    forged["sig"] = "0" * 64
    with contextlib.closing(sqlite3.connect(cache / "index" / "cache.db")) as db:
        db.execute("INSERT INTO Cache (key, raw, store_time, expire_time, access_time, access_count, "
                   "tag, size, mode, filename, value) VALUES ('forged', 1, 0, NULL, 0, 0, NULL, 10, 1, "
                   "NULL, ?)", (json.dumps(forged).encode(),))
        db.commit()
    with contextlib.closing(Store(cache)) as store:
        found = store.get_many(["good", "file", "pickle", "forged", "absent"])
        assert list(found) == ["good"] and found["good"] == store.get("good")
        for key in ("file", "pickle", "forged"):
            with pytest.raises(CorruptEntry):
                store.get(key)
    assert victim.read_text() == "three years of work\n"


def test_cli_gc_and_clear_never_follow_a_planted_row(tmp_path: Path, victim: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    nb = tmp_path / "nb.ipynb"
    nb.write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    cache = tmp_path / "cache"
    Store(cache).close()
    plant_row(cache, "k1", filename=str(victim))
    plant_row(cache, "k2", filename="../../docs/thesis.tex")
    assert cli.main(["gc", "--cache-dir", str(cache)]) == 0
    assert cli.main(["clear", str(nb), "--cache-dir", str(cache)]) == 0
    assert victim.read_text() == "three years of work\n"


def test_a_pickled_key_in_the_index_is_skipped_not_unpickled(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with contextlib.closing(Store(cache)) as store:
        put(store, "good")
    marker = tmp_path / "ran"
    evil = pickle.dumps(_Boom(str(marker)))
    plant_row(cache, evil, filename=None, raw=0, mode=1)  # type: ignore[arg-type]
    with contextlib.closing(Store(cache)) as store:
        assert list(store.keys()) == ["good"]
        assert store.gc(keep={"good"}) == (0, 0)
    assert not marker.exists()


class _Boom:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple:
        return (open, (self.path, "w"))


# -- 2. links and ownership inside the cache folder -----------------------------------------
@pytest.mark.parametrize("sub", ["index", "objects", "tmp", "journal"])
def test_a_symlinked_subfolder_is_refused(tmp_path: Path, sub: str) -> None:
    cache = tmp_path / "cache"
    outside = tmp_path / "outside"
    outside.mkdir()
    cache.mkdir(mode=0o700)
    (cache / sub).symlink_to(outside)
    with pytest.raises(StoreError, match="symbolic link"):
        if sub == "journal":
            Journal(cache, str(tmp_path / "nb.ipynb")).acquire()
        else:
            Store(cache)
    assert list(outside.iterdir()) == []


def test_a_symlinked_cache_root_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "cache").symlink_to(real)
    with pytest.raises(StoreError, match="symbolic link"):
        Store(tmp_path / "cache")
    assert list(real.iterdir()) == []


@pytest.mark.parametrize("kind", ["lock", "journal", "journal-hardlink", "index-db"])
def test_planted_links_to_the_users_files_are_never_written(tmp_path: Path, victim: Path, kind: str) -> None:
    cache = tmp_path / "cache"
    nb = str(tmp_path / "nb.ipynb")
    (cache / "journal").mkdir(parents=True, mode=0o700)
    (cache / "index").mkdir(mode=0o700)
    cache.chmod(0o700)
    name = journal_name(nb)
    target = {"lock": cache / "journal" / (name[:-len(".jsonl")] + ".lock"),
              "journal": cache / "journal" / name, "journal-hardlink": cache / "journal" / name,
              "index-db": cache / "index" / "cache.db"}[kind]
    if kind == "journal-hardlink":
        os.link(victim, target)
    else:
        target.symlink_to(victim)
    with pytest.raises(StoreError, match=r"symbolic link|hard links"):
        if kind == "index-db":
            Store(cache)
        else:
            j = Journal(cache, nb)
            j.acquire()
            j.start_run()
    assert victim.read_text() == "three years of work\n"


def test_a_group_writable_root_or_subfolder_is_refused_and_a_readable_one_made_private(
        tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(0o775)
    with pytest.raises(StoreError, match="others can write to it; run `chmod 700"):
        Store(cache)
    cache.chmod(0o755)  # what a git clone gives: ours, readable by others
    (cache / "objects").mkdir(mode=0o755)
    Store(cache).close()
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    assert stat.S_IMODE((cache / "objects").stat().st_mode) == 0o700
    assert stat.S_IMODE((cache / "index" / "cache.db").stat().st_mode) == 0o600
    (cache / "tmp").chmod(0o777)
    with pytest.raises(StoreError, match="others can write"):
        Store(cache)


def test_a_swapped_root_after_opening_changes_nothing(tmp_path: Path, victim: Path) -> None:
    """A check-then-use race: once open, the folder is held by descriptor; replacing its path
    with a link to the user's files redirects nothing."""
    cache = tmp_path / "cache"
    store = Store(cache)
    journal = Journal(store.dir, str(tmp_path / "nb.ipynb"), key=store.journal_key)  # type: ignore[arg-type]
    assert journal.acquire()
    cache.rename(tmp_path / "moved")
    cache.symlink_to(victim.parent)
    put(store, "k")
    journal.start_run()
    journal.step_finished("s", "ran", key="k", duration=0.1)
    journal.release()
    store.close()
    assert sorted(p.name for p in victim.parent.iterdir()) == ["thesis.tex"]
    assert victim.read_text() == "three years of work\n"
    assert len(list((tmp_path / "moved" / "objects").iterdir())) == 1
    assert (tmp_path / "moved" / "journal" / journal.name).stat().st_size > 0


# -- 3. the journal is authenticated -------------------------------------------------------------
def _planted_run(cache: Path, notebook: str | None, source: str, key: str = "k" * 64) -> None:
    """A journal written with someone else's key: a completed run whose step left work to do."""
    j = Journal(cache, notebook, key=b"attacker's key" * 3)
    j.acquire()
    j.start_run()
    j.step_started("evil", key, source)
    j.step_finished("evil", "failed", key=None, duration=0.1, error="boom")
    j.end_run("failed")
    j.release()


def test_resume_run_never_executes_code_from_a_journal_made_with_another_key(
        shell: Shell, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "pwned"
    _planted_run(shell.cache, None, f"open({str(marker)!r}, 'w').write('pwned')")
    shell.fresh()
    shell.run("%resume --run", ok=False)
    out = capsys.readouterr()
    assert not marker.exists()
    text = out.out + out.err
    assert "not signed with your key" in text and "nothing to resume" in text


def test_a_rewritten_key_in_the_journal_is_never_used(shell: Shell,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """Pointing a step's record at an older entry (a rollback) breaks its MAC: the record is
    ignored, with a warning, and the entry it names is not restored for that step."""
    shell.run("%%step old\nx = 1")
    old_key = shell.last.key
    shell.run("%%step new\ny = 2")
    new_key = shell.last.key
    path = shell.magics.session.journal().path
    path.write_bytes(path.read_bytes().replace(new_key.encode(), old_key.encode()))
    shell.fresh()
    capsys.readouterr()
    shell.run("%resume")
    out = capsys.readouterr()
    assert "not signed with your key" in out.out + out.err
    assert "Restored 1 step (old)" in out.out and shell.ns["x"] == 1 and "y" not in shell.ns


def test_resume_run_shows_the_code_it_runs_when_the_notebook_is_unknown(
        shell: Shell, capsys: pytest.CaptureFixture[str]) -> None:
    shell.run("%%step a\nx = 1")
    shell.run("%%step b\nraise ValueError('later')", ok=False)
    shell.fresh()
    capsys.readouterr()
    shell.run("%resume --run", ok=False)
    out = capsys.readouterr().out
    assert "running the step sources recorded in the run journal" in out
    assert "--- %%step b\nraise ValueError('later')" in out


def test_a_journal_made_with_another_key_reads_as_someone_elses(tmp_path: Path) -> None:
    nb = str(tmp_path / "nb.ipynb")
    _planted_run(tmp_path / "cache", nb, "pass")
    events, warning = read_events(tmp_path / "cache" / "journal" / journal_name(nb))
    assert events == [] and warning is not None and "4 records not signed with your key" in warning


# -- 4. journal robustness ------------------------------------------------------------------------
def test_a_torn_record_does_not_swallow_the_next_runs_records(tmp_path: Path) -> None:
    nb = str(tmp_path / "nb.ipynb")
    j = Journal(tmp_path, nb)
    j.acquire()
    j.start_run()
    j.step_finished("a", "ran", key="k1", duration=0.1, started=("k1", "x = 1"))
    j.release()
    with open(j.path, "ab") as f:
        f.write(b'{"kind":"step_finished","run":"r","sta')  # the kernel died mid-append
    j2 = Journal(tmp_path, nb)
    j2.acquire()
    run = j2.start_run()
    j2.step_finished("b", "ran", key="k2", duration=0.1, started=("k2", "y = 2"))
    j2.release()
    events, warning = read_events(j.path)
    assert [s.name for s in runs(events)[run].steps] == ["b"]
    assert warning is not None and "1 damaged record was skipped" in warning


def test_a_signed_record_with_a_missing_field_is_skipped_not_a_crash(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nb = tmp_path / "nb.ipynb"
    nb.write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    cache = tmp_path / "cache"
    j = Journal(cache, str(nb))
    j.acquire()
    run = j.start_run()
    j._append([{"kind": "step_finished", "run": run, "time": 1.0}], durable=True)  # no step, no status
    j.step_finished("a", "ran", key="k1", duration=0.1)
    j.release()
    events, warning = read_events(j.path)
    assert [s.name for s in runs(events)[run].steps] == []  # a finish with no start: nothing
    assert warning is not None and "1 damaged record was skipped" in warning
    for command in (["status", str(nb)], ["runs", str(nb)], ["events", str(nb)], ["gc"]):
        assert cli.main([*command, "--cache-dir", str(cache)]) == 0


def test_gc_deletes_nothing_while_a_journal_has_a_warning(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    cache = tmp_path / "cache"
    with contextlib.closing(Store(cache)) as store:
        put(store, "unreferenced")
    _planted_run(cache, str(tmp_path / "nb.ipynb"), "pass")
    assert cli.main(["gc", "--cache-dir", str(cache)]) == 0
    out = capsys.readouterr()
    assert "collected nothing" in out.out and "not signed with your key" in out.err
    with contextlib.closing(Store(cache)) as store:
        assert list(store.keys()) == ["unreferenced"]


# -- 5. the key file ---------------------------------------------------------------------------
def test_a_key_file_that_is_a_link_or_a_folder_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real.key"
    real.write_bytes(os.urandom(32))
    real.chmod(0o600)
    (tmp_path / "link.key").symlink_to(real)
    with pytest.raises(StoreError, match="symbolic link"):
        load_key(tmp_path / "link.key")
    (tmp_path / "dir.key").mkdir()
    with pytest.raises(StoreError, match="not a regular file"):
        load_key(tmp_path / "dir.key")


def test_key_folders_are_created_private_under_umask_000(tmp_path: Path) -> None:
    code = ("import os, sys; os.umask(0); from pathlib import Path; "
            "from resumable_nb.keys import load_key; load_key(Path(sys.argv[1]))")
    key = tmp_path / "a" / "b" / "hmac.key"
    subprocess.run([sys.executable, "-c", code, str(key)], check=True)
    for folder in (tmp_path / "a", tmp_path / "a" / "b"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


# -- 6. a transient I/O error keeps the entry ---------------------------------------------------
def test_a_transient_read_error_is_a_miss_that_keeps_the_entry(tmp_path: Path) -> None:
    store = Store(tmp_path / "cache")
    put(store, "k")
    entry = store.get("k")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowest_free = os.dup(0)
    os.close(lowest_free)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))  # the next open: EMFILE
    try:
        with pytest.raises(StoreError) as info:
            store.load(entry, {})
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert not isinstance(info.value, CorruptEntry)
    assert store.load(store.get("k"), {})["outputs"]["a"].tolist() == list(range(10))
    store.close()


# -- 7. what reaches the terminal ----------------------------------------------------------------
def test_control_characters_in_journal_text_are_escaped(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    nb = tmp_path / "nb.ipynb"
    nb.write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    j = Journal(tmp_path / "cache", str(nb))
    j.acquire()
    j.start_run()
    j.step_started("a", None, "x")
    j.step_finished("a", "failed", key=None, duration=0.1, error="\x1b]0;owned\x07\x1b[2Jgone")
    j.release()
    for command in ("events", "status"):
        assert cli.main([command, str(nb), "--cache-dir", str(tmp_path / "cache")]) == 0
        out = capsys.readouterr().out
        assert "\x1b" not in out and "\x07" not in out and "\\x1b" in out


# -- 8. another local user ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def other_user() -> Iterator[pwd.struct_passwd]:
    """A throwaway local user to act as the attacker (created when running as root)."""
    if os.geteuid() != 0 or shutil.which("useradd") is None:
        pytest.skip("needs root and useradd to create a second local user")
    name = "rnb-attacker"
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                   check=False, capture_output=True)
    user = pwd.getpwnam(name)
    yield user
    subprocess.run(["userdel", name], check=False, capture_output=True)


@pytest.fixture
def shared_folder() -> Iterator[Path]:
    """A notebook folder that everyone can write to (no sticky bit), outside root's 0700 tmp."""
    d = Path(tempfile.mkdtemp(prefix="rnb-shared-", dir="/tmp"))
    d.chmod(0o777)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def as_user(user: pwd.struct_passwd, *argv: str) -> None:
    subprocess.run(list(argv), user=user.pw_uid, group=user.pw_gid, check=True, capture_output=True)


def test_another_user_cannot_plant_the_cache_folder(other_user: pwd.struct_passwd, shared_folder: Path,
                                                    victim: Path) -> None:
    as_user(other_user, "mkdir", "-m", "777", str(shared_folder / ".resumable_nb"))
    with pytest.raises(StoreError, match="belongs to another user"):
        Store(shared_folder / ".resumable_nb")
    as_user(other_user, "rmdir", str(shared_folder / ".resumable_nb"))
    as_user(other_user, "ln", "-s", str(victim.parent), str(shared_folder / ".resumable_nb"))
    with pytest.raises(StoreError, match="symbolic link"):
        Store(shared_folder / ".resumable_nb")
    assert sorted(p.name for p in victim.parent.iterdir()) == ["thesis.tex"]


def test_another_user_swapping_the_folder_mid_session_redirects_nothing(
        other_user: pwd.struct_passwd, shared_folder: Path, tmp_path: Path) -> None:
    bait = Path(tempfile.mkdtemp(prefix="rnb-bait-", dir="/tmp"))
    try:
        bait.chmod(0o777)
        store = Store(shared_folder / ".resumable_nb")
        as_user(other_user, "mv", str(shared_folder / ".resumable_nb"), str(shared_folder / "moved"))
        as_user(other_user, "ln", "-s", str(bait), str(shared_folder / ".resumable_nb"))
        put(store, "k")
        assert store.load(store.get("k"), {})["outputs"]["a"].tolist() == list(range(10))
        store.close()
        assert list(bait.iterdir()) == []
    finally:
        shutil.rmtree(bait, ignore_errors=True)


def test_another_users_key_file_or_subfolder_is_refused(other_user: pwd.struct_passwd,
                                                        tmp_path: Path) -> None:
    key = tmp_path / "their.key"
    key.write_bytes(os.urandom(32))
    key.chmod(0o600)
    os.chown(key, other_user.pw_uid, other_user.pw_gid)
    with pytest.raises(StoreError, match="belongs to another user"):
        load_key(key)
    cache = tmp_path / "cache"
    (cache / "objects").mkdir(parents=True)
    cache.chmod(0o700)
    os.chown(cache / "objects", other_user.pw_uid, other_user.pw_gid)
    with pytest.raises(StoreError, match="belongs to another user"):
        Store(cache)


def test_a_planted_run_record_is_ignored(tmp_path: Path) -> None:
    """``resumable-nb run`` keeps per-run parameters next to the journal: a record not signed
    with the user's key (shipped, or written by someone else) reads as absent."""
    from resumable_nb.nbfile import read_record, record_path, write_record

    journal = tmp_path / "cache" / "journal" / journal_name(str(tmp_path / "nb.ipynb"))
    write_record(journal, "run-1", {"parameters": {"alpha": "3"}})
    assert read_record(journal) == {"run-1": {"parameters": {"alpha": "3"}}}
    path = record_path(journal)
    path.write_bytes(path.read_bytes().replace(b'"3"', b'"__import__(\\"os\\")"'))
    assert read_record(journal) == {}


def test_a_planted_journal_link_never_stops_a_step(shell: Shell, victim: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Steps still run: a journal file that is a planted link is a one-line notice, not the
    step's error (and the linked file is untouched)."""
    (shell.cache / "journal").mkdir(mode=0o700, parents=True, exist_ok=True)
    shell.cache.chmod(0o700)
    link = shell.cache / "journal" / journal_name(None)
    link.unlink(missing_ok=True)
    link.symlink_to(victim)
    shell.fresh()
    shell.run("%%step a\nx = 41")
    assert shell.ns["x"] == 41 and victim.read_text() == "three years of work\n"
    assert "symbolic link" in capsys.readouterr().err


def test_progress_lines_escape_control_characters() -> None:
    import io

    from resumable_nb.progress import Progress

    out = io.StringIO()
    progress = Progress(out, live=False)
    progress.say("failed at step 'bad' (ValueError: \x1b]0;PWNED\x07\x1b[2J)")
    progress.done("evil\x1b[31m", "failed", 0.1, "\x1b[2J")
    assert "\x1b" not in out.getvalue() and "\\x1b]0;PWNED" in out.getvalue()
