"""The remote store layer against a real S3 server (moto's, on 127.0.0.1): no client mocks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("obstore")
moto_server = pytest.importorskip("moto.server")

from resumable_nb.cachedir import CacheDir  # noqa: E402
from resumable_nb.errors import CorruptEntry, StoreError  # noqa: E402
from resumable_nb.remote import (  # noqa: E402
    NotebookId,
    RemoteStore,
    RemoteUnavailable,
    RemoteURL,
    concat_segments,
    list_runs,
    notebook_identity,
    object_name,
    read_run,
    segment_name,
)
from resumable_nb.uploader import Uploader  # noqa: E402

BUCKET = "rnb-test"


class S3:
    """A moto server that a test can stop and start again on the same port."""

    def __init__(self) -> None:
        self.server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        self.host, self.port = self.server.get_host_and_port()
        self.endpoint = f"http://{self.host}:{self.port}"
        self.running = True

    def stop(self) -> None:
        if self.running:
            self.server.stop()
            self.running = False

    def start(self) -> None:
        self.server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()
        self.running = True
        _make_bucket(self.endpoint)  # moto's state is per process; creating again is harmless


def _make_bucket(endpoint: str) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="test",
                      aws_secret_access_key="test", region_name="us-east-1")
    try:
        s3.create_bucket(Bucket=BUCKET)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch):
    server = S3()
    _make_bucket(server.endpoint)
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    yield server
    server.stop()


@pytest.fixture
def remote(s3: S3, request: pytest.FixtureRequest) -> RemoteStore:
    # A prefix per test: moto keeps one state per process, shared by every server.
    return RemoteStore(f"s3://{BUCKET}/t/{request.node.name}", timeout=3.0)


def _random_file(path: Path, mib: int) -> Path:
    with open(path, "wb") as f:
        for _ in range(mib):
            f.write(os.urandom(1 << 20))
    return path


# -- addresses ---------------------------------------------------------------------------------
def test_url_parsing() -> None:
    assert RemoteURL.parse("s3://bucket/team/cache/") == RemoteURL("s3", "bucket", "team/cache")
    assert RemoteURL.parse("s3://bucket") == RemoteURL("s3", "bucket", "")
    assert str(RemoteURL.parse("gs://b/p")) == "gs://b/p"
    for bad in ("http://host/b", "s3:///nobucket", "s3://b/a/../c", "/local/dir"):
        with pytest.raises(StoreError):
            RemoteURL.parse(bad)


def test_import_is_lazy() -> None:
    code = ("import sys, resumable_nb.remote, resumable_nb.uploader; "
            "print('obstore' in sys.modules, 'boto3' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


# -- objects -----------------------------------------------------------------------------------
def test_small_blobs_listing_and_exists(remote: RemoteStore) -> None:
    assert remote.get_blob("manifests/k1.json") is None
    assert not remote.exists("manifests/k1.json")
    assert remote.put_blob("manifests/k1.json", b'{"m": 1}')
    assert not remote.put_blob("manifests/k1.json", b'{"m": 2}')  # first writer wins
    assert remote.get_blob("manifests/k1.json") == b'{"m": 1}'
    remote.put_blob("manifests/k2.json", b"x" * 10)
    remote.put_blob("objects/a.rnb", b"payload")
    assert remote.exists("objects/a.rnb") and remote.size("objects/a.rnb") == 7
    listed = {o.name: o.size for o in remote.list("manifests/")}
    assert listed == {"manifests/k1.json": 8, "manifests/k2.json": 10}
    assert {o.name for o in remote.list()} == {"manifests/k1.json", "manifests/k2.json", "objects/a.rnb"}
    with pytest.raises(ValueError):
        remote.get_blob("../escape")
    with pytest.raises(CorruptEntry):  # a planted giant is not read into memory
        remote.get_blob("manifests/k2.json", max_size=4)


def test_streaming_round_trip_bounded_memory(s3: S3, tmp_path: Path) -> None:
    """64 MiB up and down (multipart), in a fresh process whose peak RSS must stay far below
    the file's size: obstore allocates outside Python, so tracemalloc would see nothing."""
    src = _random_file(tmp_path / "src.bin", 64)
    code = f"""
import os, resource, json
from resumable_nb.remote import RemoteStore
r = RemoteStore("s3://{BUCKET}/t/stream", timeout=5.0)
r.put_blob("warm", b"x"); r.get_blob("warm")
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
assert r.put_file("objects/big.rnb", {str(src)!r})
assert not r.put_file("objects/big.rnb", {str(src)!r})  # already there: skipped
fd = os.open({str(src)!r}, os.O_RDONLY)
r.put_file("objects/big-fd.rnb", fd, skip_existing=False); os.close(fd)
n = r.get_file("objects/big.rnb", {str(tmp_path / "dst.bin")!r}, expected_size=64 << 20)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"n": n, "grew_mib": (peak - base) / 1024}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["n"] == 64 << 20
    assert (tmp_path / "dst.bin").read_bytes() == src.read_bytes()
    assert result["grew_mib"] < 48, result  # parts of 8 MiB, 4 in flight: about 32 MiB


def test_get_file_to_descriptor_and_missing(remote: RemoteStore, tmp_path: Path) -> None:
    remote.put_blob("objects/small.rnb", b"abc" * 1000)
    fd = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        assert remote.get_file("objects/small.rnb", fd) == 3000
    finally:
        os.close(fd)
    assert (tmp_path / "out").read_bytes() == b"abc" * 1000
    assert remote.get_file("objects/nope.rnb", tmp_path / "never") is None
    assert not (tmp_path / "never").exists()


def test_truncated_or_tampered_object(remote: RemoteStore, tmp_path: Path) -> None:
    """The size check catches truncation; a same-size tamper downloads (the store's MAC is what
    rejects it: this layer never judges content)."""
    original = os.urandom(100_000)
    remote.put_blob("objects/p.rnb", original)
    remote.put_blob("objects/p.rnb", original[:50_000], if_absent=False)  # truncated in the bucket
    dest = tmp_path / "p.rnb"
    with pytest.raises(CorruptEntry, match="50000 bytes, its manifest says 100000"):
        remote.get_file("objects/p.rnb", dest, expected_size=len(original))
    assert not dest.exists() and not list(tmp_path.iterdir())  # no half file left behind
    tampered = bytes([original[0] ^ 1]) + original[1:]
    remote.put_blob("objects/p.rnb", tampered, if_absent=False)
    assert remote.get_file("objects/p.rnb", dest, expected_size=len(original)) == len(original)
    assert dest.read_bytes() == tampered


def test_put_if_absent_two_concurrent_writers(remote: RemoteStore, tmp_path: Path) -> None:
    barrier = threading.Barrier(2)
    results: dict[int, bool] = {}

    def write(i: int) -> None:
        barrier.wait()
        results[i] = remote.put_blob("manifests/race.json", f"writer {i}".encode())

    threads = [threading.Thread(target=write, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results.values()) == [False, True]
    winner = next(i for i, won in results.items() if won)
    assert remote.get_blob("manifests/race.json") == f"writer {winner}".encode()

    # Two writers of the same content-addressed payload (multipart): both succeed, one object.
    src = _random_file(tmp_path / "same.rnb", 20)
    errors: list[BaseException] = []

    def upload() -> None:
        barrier.wait()
        try:
            remote.put_file("objects/same.rnb", src, skip_existing=False)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=upload) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert remote.get_file("objects/same.rnb", tmp_path / "back.rnb", expected_size=20 << 20)
    assert (tmp_path / "back.rnb").read_bytes() == src.read_bytes()


def test_stopped_server_is_unavailable_within_the_timeout(s3: S3, tmp_path: Path) -> None:
    remote = RemoteStore(f"s3://{BUCKET}/t/down", timeout=2.0)
    remote.put_blob("manifests/k.json", b"{}")
    s3.stop()
    for call in (lambda: remote.get_blob("manifests/k.json"), lambda: remote.exists("objects/x.rnb"),
                 lambda: list(remote.list("objects/")), lambda: remote.put_blob("manifests/j.json", b"{}"),
                 lambda: remote.get_file("objects/x.rnb", tmp_path / "x")):
        start = time.monotonic()
        with pytest.raises(RemoteUnavailable) as info:
            call()
        assert time.monotonic() - start < 15
        message = str(info.value)
        assert "\n" not in message and "AWS_ENDPOINT_URL" in message
        assert isinstance(info.value, StoreError)


# -- the uploader ------------------------------------------------------------------------------
def test_uploader_keeps_pending_work_while_down(s3: S3, tmp_path: Path) -> None:
    remote = RemoteStore(f"s3://{BUCKET}/t/uploader", timeout=2.0)
    cache = tmp_path / "cache"
    payload = _payload(cache, 1)
    notices: list[str] = []
    s3.stop()
    up = Uploader(remote, cache, retry_interval=0.2, on_notice=notices.append)
    start = time.monotonic()
    up.submit(payload, object_name(payload))
    up.submit_blob("manifests/k.json", b'{"signed": true}')
    assert time.monotonic() - start < 1  # a step never waits for the network
    assert not up.flush(timeout=3)
    assert [p.name for p in up.pending()] == [object_name(payload), "manifests/k.json"]
    assert len(notices) == 1 and "kept in" in notices[0]  # said once, not per retry
    assert up.close(timeout=0.5) is False  # the kernel goes away; markers stay on disk

    s3.start()  # a new server on the same port
    again = Uploader(remote, cache, retry_interval=0.2, on_notice=notices.append)
    assert again.recover() == 2
    assert again.flush(timeout=20)
    again.close()
    assert remote.get_blob("manifests/k.json") == b'{"signed": true}'
    assert remote.size(object_name(payload)) == 1 << 20
    assert not list((cache / "remote-pending").iterdir())


def test_uploader_recovers_after_restart_without_new_uploader(s3: S3, tmp_path: Path) -> None:
    remote = RemoteStore(f"s3://{BUCKET}/t/live", timeout=2.0)
    notices: list[str] = []
    up = Uploader(remote, tmp_path, retry_interval=0.2, max_retry_interval=0.5, on_notice=notices.append)
    up.submit_blob("manifests/a.json", b"a")
    assert up.flush(timeout=10)
    s3.stop()
    up.submit_blob("manifests/b.json", b"b")
    deadline = time.monotonic() + 10
    while not up.down and time.monotonic() < deadline:
        time.sleep(0.05)
    assert up.down
    s3.start()
    assert up.flush(timeout=20)
    up.close()
    assert remote.get_blob("manifests/b.json") == b"b"
    assert len(notices) == 2 and "reachable again" in notices[1]


def test_uploader_overflow_stays_on_disk(remote: RemoteStore, tmp_path: Path) -> None:
    up = Uploader(remote, tmp_path, maxsize=2)
    for i in range(6):
        up.submit_blob(f"manifests/{i}.json", str(i).encode())
    assert up.flush(timeout=20)
    up.close()
    assert sorted(o.name for o in remote.list("manifests/")) == [f"manifests/{i}.json" for i in range(6)]


def test_uploader_drops_a_vanished_local_file(remote: RemoteStore, tmp_path: Path) -> None:
    up = Uploader(remote, tmp_path / "cache")
    gone = "cd" * 32 + ".rnb"
    up.submit(gone, object_name(gone))
    assert up.flush(timeout=10)
    up.close()
    assert not remote.exists(object_name(gone))


def test_a_planted_upload_marker_is_never_acted_on(remote: RemoteStore, tmp_path: Path) -> None:
    """A cloned repository's .resumable_nb/remote-pending/ asking to upload ~/.ssh/id_rsa, or
    a blob: unsigned markers are deleted (inside the folder), never uploaded."""
    secret = tmp_path / "id_rsa"
    secret.write_text("SECRETKEY-PRIVATE")
    cache = tmp_path / "cache"
    CacheDir(cache).sub("remote-pending")
    planted = {"a.json": {"name": "leak/id_rsa", "path": str(secret)},
               "b.json": {"name": "objects/" + "ab" * 32 + ".rnb", "file": "../../id_rsa"},
               "c.json": {"name": "manifests/x.json", "data": "cGxhbnRlZA=="}}
    for name, record in planted.items():
        (cache / "remote-pending" / name).write_text(json.dumps(record))
    up = Uploader(remote, cache)
    assert up.recover() == 0 and up.flush(timeout=10)
    up.close()
    assert list(remote.list()) == [] and secret.read_text() == "SECRETKEY-PRIVATE"
    assert not list((cache / "remote-pending").iterdir())


def test_a_symlinked_pending_folder_is_refused(remote: RemoteStore, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "settings.json").write_text("{}")
    cache = tmp_path / "cache"
    CacheDir(cache).close()
    (cache / "remote-pending").symlink_to(docs)
    with pytest.raises(StoreError, match="symbolic link"):
        Uploader(remote, cache)
    assert (docs / "settings.json").read_text() == "{}"


def _payload(cache: Path, mib: int) -> str:
    """A payload file in the cache's objects/, named as the store names them."""
    name = "ab" * 32 + ".rnb"
    with CacheDir(cache) as folder:
        folder.sub("objects")
    _random_file(cache / "objects" / name, mib).chmod(0o600)
    return name


# -- the journal, mirrored ---------------------------------------------------------------------
def test_journal_segments_round_trip(remote: RemoteStore, tmp_path: Path) -> None:
    ident = NotebookId("github.com/org/repo", "analysis/clean.ipynb")
    run_a, run_b = "20261202T100000.000001-aaaaaa", "20261202T110000.000001-bbbbbb"
    up = Uploader(remote, tmp_path)
    up.submit_blob(segment_name(ident, run_a, 0), b'{"kind": "run_started"}\tx\n')
    up.submit_blob(segment_name(ident, run_a, 1), b'{"kind": "step_started"}\tx\n{"kind": "step_fin')
    up.submit_blob(segment_name(ident, run_b, 0), b"b0\n")
    up.submit_blob(segment_name(ident, run_b, 2), b"b2\n")  # seq 1 not uploaded (yet)
    other = NotebookId("github.com/org/repo", "analysis/clean.ipynb.bak")
    up.submit_blob(segment_name(other, run_a, 0), b"other\n")
    assert up.flush(timeout=20)
    up.close()
    assert list_runs(remote, ident) == [run_a, run_b]
    assert read_run(remote, ident, run_a) == b'{"kind": "run_started"}\tx\n{"kind": "step_started"}\tx\n'
    assert read_run(remote, ident, run_b) == b"b0\n"  # stops at the gap
    assert read_run(remote, ident, "20990101T000000.000000-cccccc") == b""
    assert segment_name(ident, run_a, 3).startswith("journal/github.com%2Forg%2Frepo/analysis%2Fclean.ipynb/")


def test_concat_segments() -> None:
    assert concat_segments({0: b"a\n", 1: b"b\nc", 3: b"d\n"}) == b"a\nb\n"
    assert concat_segments({1: b"x\n"}) == b""


# -- which notebook, across machines -----------------------------------------------------------
def _repo(root: Path, origin: str | None) -> Path:
    (root / ".git").mkdir(parents=True)
    config = "[core]\n\tbare = false\n"
    if origin:
        config += f'[remote "origin"]\n\turl = {origin}\n\tfetch = +refs/heads/*:refs/remotes/origin/*\n'
    (root / ".git" / "config").write_text(config)
    return root


def test_notebook_identity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RESUMABLE_NB_PROJECT", raising=False)
    repo = _repo(tmp_path / "checkout-on-laptop", "git@github.com:org/repo.git")
    (repo / "analysis").mkdir()
    nb = repo / "analysis" / "clean.ipynb"
    assert notebook_identity(nb) == NotebookId("github.com/org/repo", "analysis/clean.ipynb")
    # Another machine, another folder name, an https clone: the same identity.
    other = _repo(tmp_path / "ci" / "build-17", "https://github.com/org/repo")
    assert notebook_identity(other / "analysis" / "clean.ipynb") == notebook_identity(nb)
    # No origin: the repository folder's name.
    bare = _repo(tmp_path / "scratch", None)
    assert notebook_identity(bare / "a.ipynb") == NotebookId("scratch", "a.ipynb")
    # A worktree: .git is a file pointing into the main repository, whose config has the origin.
    gitdir = repo / ".git" / "worktrees" / "wt"
    gitdir.mkdir(parents=True)
    (gitdir / "commondir").write_text("../..\n")
    wt = tmp_path / "wt"
    wt.mkdir()
    (wt / ".git").write_text(f"gitdir: {gitdir}\n")
    assert notebook_identity(wt / "n.ipynb") == NotebookId("github.com/org/repo", "n.ipynb")
    # Not in a repository: the file name.
    loose = tmp_path / "loose" / "deep"
    loose.mkdir(parents=True)
    assert notebook_identity(loose / "x.ipynb") == NotebookId("_", "x.ipynb")
    # The override names the project; the notebook part stays.
    assert notebook_identity(nb, env={"RESUMABLE_NB_PROJECT": "team-x"}) == NotebookId(
        "team-x", "analysis/clean.ipynb")


def test_hung_server_is_unavailable_within_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that accepts connections and never answers (the case a refused connection
    does not cover): the deadline, retries included, still bounds the call."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)  # connections complete in the kernel's backlog; nothing ever reads them
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{listener.getsockname()[1]}")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        remote = RemoteStore(f"s3://{BUCKET}/t/hung", timeout=1.0)
        start = time.monotonic()
        with pytest.raises(RemoteUnavailable):
            remote.get_blob("manifests/k.json")
        assert time.monotonic() - start < 15
    finally:
        listener.close()
