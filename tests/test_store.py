"""The store on a real temp directory: round trips, verification before unpickling, atomicity,
permissions, full and read-only disks (real tmpfs / read-only bind mounts when we may mount)."""

from __future__ import annotations

import os
import subprocess
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import diskcache
import numpy as np
import pytest

from resumable_nb.errors import CorruptEntry, StoreError
from resumable_nb.store import Store
from tests.conftest import edit_manifest


@pytest.fixture
def store(tmp_path: Path, _key_file: Path) -> Iterator[Store]:
    s = Store(tmp_path / "cache", _key_file)
    yield s
    s.close()


def put(store: Store, key: str, outputs: dict[str, Any]) -> Any:
    return store.put(key, "step", {"outputs": outputs, "deleted": (), "events": [], "result": None},
                     {}, outputs=tuple(outputs), deleted=(), duration=1.0)


def payload_file(store: Store, key: str) -> Path:
    entry = store.get(key)
    assert entry is not None
    return store.root / "objects" / entry.file


def test_round_trip_with_out_of_band_buffers(store: Store) -> None:
    arrays = {"a": np.arange(1000, dtype="f8"), "b": np.ones((3, 5), dtype="i2"),
              "c": np.array(["x", "yy"]), "small": 7}
    entry = put(store, "k1", arrays)
    assert len(entry.buffers) >= 2
    assert all(offset % 64 == 0 for offset, _, _ in entry.buffers)
    loaded = store.load(store.get("k1"), {})["outputs"]
    for name in ("a", "b", "c"):
        np.testing.assert_array_equal(loaded[name], arrays[name])
        assert loaded[name].dtype == arrays[name].dtype
    loaded["a"][0] = -1  # restored arrays are ordinary writable arrays
    assert store.load(store.get("k1"), {})["outputs"]["a"][0] == 0


def test_missing_key_is_a_miss(store: Store) -> None:
    assert store.get("nope") is None


@pytest.mark.parametrize("where", [0, 100, -10, "middle"])
def test_a_flipped_byte_anywhere_is_detected(store: Store, where: int | str) -> None:
    put(store, "k", {"a": np.arange(50_000)})
    path = payload_file(store, "k")
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if where == "middle" else int(where)
    data[i] ^= 0x40
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptEntry, match="integrity"):
        store.load(store.get("k"), {})


def test_a_flipped_byte_in_a_mapped_buffer_is_detected(store: Store) -> None:
    entry = put(store, "big", {"a": np.arange(4_000_000, dtype="f8")})  # 32 MB: mapped
    (offset, length, _), = entry.buffers
    path = payload_file(store, "big")
    with path.open("r+b") as f:
        f.seek(offset + length // 2)
        byte = f.read(1)
        f.seek(offset + length // 2)
        f.write(bytes([byte[0] ^ 0x01]))
    with pytest.raises(CorruptEntry, match="integrity"):
        store.load(store.get("big"), {})


def test_mapped_arrays_are_writable_private_copies(store: Store) -> None:
    arr = np.arange(4_000_000, dtype="f8")
    entry = put(store, "big", {"a": arr, "df_like": {"b": arr[::-1].copy()}})
    restored = store.load(entry, {})["outputs"]
    a = restored["a"]
    assert a.flags.writeable and np.array_equal(a, arr) and a.dtype == arr.dtype
    a[:] = -1  # copy-on-write: the cache file keeps the stored values
    np.testing.assert_array_equal(store.load(entry, {})["outputs"]["a"], arr)
    np.testing.assert_array_equal(restored["df_like"]["b"], arr[::-1])


def test_truncated_and_missing_payloads_are_detected(store: Store) -> None:
    put(store, "k", {"a": np.arange(50_000)})
    path = payload_file(store, "k")
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(CorruptEntry, match="size"):
        store.load(store.get("k"), {})
    path.unlink()
    with pytest.raises(CorruptEntry, match="missing"):
        store.load(store.get("k"), {})


def test_payload_is_not_unpickled_before_its_hmac_matches(store: Store, tmp_path: Path) -> None:
    """A planted payload of the right size runs no code: the HMAC check comes first."""
    put(store, "k", {"a": "x" * 200})
    path = payload_file(store, "k")
    canary = tmp_path / "pwned"

    class Evil:
        def __reduce__(self) -> Any:
            return (os.system, (f"touch {canary}",))

    import pickle

    evil = pickle.dumps({"outputs": {"a": Evil()}}, protocol=5)
    size = path.stat().st_size
    path.write_bytes(evil.ljust(size, b"."))
    with pytest.raises(CorruptEntry):
        store.load(store.get("k"), {})
    assert not canary.exists()


def test_tampered_manifest_is_detected(store: Store, _key_file: Path) -> None:
    put(store, "k", {"a": 1})
    edit_manifest(store.root, "k", lambda m: m.__setitem__("outputs", ["a", "other"]))
    other = Store(store.root, _key_file)  # another kernel: this one trusts what it verified
    with pytest.raises(CorruptEntry, match="signature"):
        other.get("k")
    other.close()


def test_a_planted_pickle_in_the_index_never_runs(store: Store, tmp_path: Path) -> None:
    """diskcache unpickles non-bytes values inside get() (CVE-2025-69872); we refuse them."""
    canary = tmp_path / "pwned"

    class Evil:
        def __reduce__(self) -> Any:
            return (os.system, (f"touch {canary}",))

    index = diskcache.Cache(str(store.root / "index"))
    index.set("k", Evil())
    index.close()
    with pytest.raises(CorruptEntry):
        store.get("k")
    assert not canary.exists()


def test_leftover_temp_files_and_unindexed_payloads_read_as_a_miss(store: Store) -> None:
    """What a kill mid-write leaves behind is never taken for an entry."""
    (store.root / "tmp" / "half.part").write_bytes(b"\x80\x05half a pickle")
    (store.root / "objects" / "orphan.rnb").write_bytes(b"\x80\x05orphan")
    assert store.get("k") is None
    put(store, "k", {"a": 1})
    assert store.load(store.get("k"), {})["outputs"] == {"a": 1}


def test_failed_pickling_leaves_nothing_behind(store: Store) -> None:
    import pickle

    with pytest.raises(pickle.PicklingError, match="generator"):
        put(store, "k", {"g": (i for i in range(3))})
    assert store.get("k") is None
    assert not list((store.root / "tmp").iterdir())
    assert not list((store.root / "objects").iterdir())


def test_storing_a_big_array_streams_instead_of_copying(store: Store) -> None:
    big = np.random.default_rng(0).random(25_000_000)  # 200 MB
    tracemalloc.start()
    try:
        put(store, "big", {"big": big})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < big.nbytes * 0.10, f"peak {peak / 1e6:.0f} MB while storing {big.nbytes / 1e6:.0f} MB"
    restored = store.load(store.get("big"), {})["outputs"]["big"]
    assert np.array_equal(restored, big)


def test_key_file_is_private_and_checked(tmp_path: Path) -> None:
    key = tmp_path / "k" / "hmac.key"
    Store(tmp_path / "c1", key).close()
    assert (key.stat().st_mode & 0o777) == 0o600
    assert (key.parent.stat().st_mode & 0o777) == 0o700
    os.chmod(key, 0o644)
    with pytest.raises(StoreError, match="chmod 600"):
        Store(tmp_path / "c2", key)


def test_entries_signed_with_another_key_are_rejected(tmp_path: Path, _key_file: Path) -> None:
    a = Store(tmp_path / "cache", _key_file)
    put(a, "k", {"a": 1})
    a.close()
    b = Store(tmp_path / "cache", tmp_path / "other.key")
    with pytest.raises(CorruptEntry):
        b.get("k")
    b.close()


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if os.geteuid() != 0 or not _mount("-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(mnt)):
        pytest.skip("cannot mount a tmpfs here")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_full_disk_gives_a_clear_error_and_leaves_nothing(tiny_disk: Path, _key_file: Path) -> None:
    s = Store(tiny_disk / "cache", _key_file)
    with pytest.raises(StoreError, match="full"):
        put(s, "k", {"big": np.zeros(1_000_000)})  # 8 MB onto a 2 MB disk
    assert s.get("k") is None
    assert not list((tiny_disk / "cache" / "tmp").iterdir())
    put(s, "small", {"a": 1})  # the store still works once there is room
    assert s.load(s.get("small"), {})["outputs"] == {"a": 1}
    s.close()


def test_a_read_only_cache_dir_is_refused_with_a_message(tmp_path: Path, _key_file: Path) -> None:
    src = tmp_path / "cache"
    Store(src, _key_file).close()
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o700)
    if os.geteuid() != 0 or not _mount("--bind", str(src), str(ro)):
        pytest.skip("cannot bind-mount here")
    try:
        if not _mount("-o", "remount,bind,ro", str(ro)):
            pytest.skip("cannot remount read-only here")
        with pytest.raises(StoreError, match="RESUMABLE_NB_DIR"):
            Store(ro, _key_file)
    finally:
        subprocess.run(["umount", "-l", str(ro)], check=False)


def test_entries_delete_step_and_gc(store: Store) -> None:
    put(store, "k1", {"a": np.arange(10)})
    put(store, "k2", {"a": np.arange(10)})  # same content: one shared payload file
    store.put("k3", "other", {"outputs": {"b": 1}, "deleted": (), "events": [], "result": None}, {},
              outputs=("b",), deleted=(), duration=0.5)
    assert {e.key for e in store.entries()} == {"k1", "k2", "k3"}
    assert len(list((store.root / "objects").glob("*.rnb"))) == 2
    store.delete("k1")
    assert store.get("k1") is None
    assert store.load(store.get("k2"), {})["outputs"]["a"].tolist() == list(range(10))
    assert store.delete_step("step") == 1
    assert {e.key for e in store.entries()} == {"k3"}
    assert len(list((store.root / "objects").glob("*.rnb"))) == 1
    (store.root / "objects" / "orphan.rnb").write_bytes(b"x" * 100)
    removed, freed = store.gc(keep=set())
    assert removed == 1 and freed >= 100
    assert not list((store.root / "objects").glob("*.rnb"))


def test_lazy_restore_maps_buffers_copy_on_write(store: Store) -> None:
    arr = np.arange(1_000_000, dtype="f8")
    put(store, "lazy", {"a": arr})
    entry = store.get("lazy")
    restored = store.load(entry, {}, lazy=True)["outputs"]["a"]
    assert np.array_equal(restored, arr)
    restored[:10] = -1  # private: the cache file is not changed
    again = store.load(entry, {})["outputs"]["a"]
    assert again[0] == 0.0 and np.array_equal(again, arr)


def test_lazy_restore_still_checks_the_pickle_stream(store: Store) -> None:
    put(store, "lazy", {"a": np.arange(1000), "b": "text"})
    path = payload_file(store, "lazy")
    data = bytearray(path.read_bytes())
    data[20] ^= 0x01  # inside the pickle stream
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptEntry):
        store.load(store.get("lazy"), {}, lazy=True)


def _index_statements(root: Path, key_file: Path) -> list[str]:
    """The SQL statements opening the store runs against an existing index."""
    import sqlite3

    seen: list[str] = []
    real_connect = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> Any:
        con = real_connect(*args, **kwargs)
        con.set_trace_callback(seen.append)
        return con

    sqlite3.connect = connect  # type: ignore[assignment]
    try:
        Store(root, key_file).close()
    finally:
        sqlite3.connect = real_connect  # type: ignore[assignment]
    return seen


def test_reopening_an_index_set_up_our_way_writes_nothing(tmp_path: Path, _key_file: Path) -> None:
    first = Store(tmp_path / "cache", _key_file)
    put(first, "k", {"x": 1})
    first.close()
    statements = _index_statements(tmp_path / "cache", _key_file)
    writes = [s for s in statements if s.split()[0].upper() in ("INSERT", "UPDATE", "CREATE", "DROP")]
    assert statements and not writes
    again = Store(tmp_path / "cache", _key_file)
    assert again.load(again.get("k"), {})["outputs"] == {"x": 1}
    assert again._index.eviction_policy == "none"
    put(again, "k2", {"y": 2})  # writes still work after the read-only open
    again.close()


def test_an_index_with_other_settings_is_set_up_again(tmp_path: Path, _key_file: Path) -> None:
    Store(tmp_path / "cache", _key_file).close()
    with diskcache.Cache(str(tmp_path / "cache" / "index"), eviction_policy="least-recently-stored",
                         size_limit=2**30) as planted:
        assert planted.eviction_policy == "least-recently-stored"
    statements = _index_statements(tmp_path / "cache", _key_file)
    assert any(s.startswith("INSERT OR REPLACE INTO Settings") for s in statements)
    store = Store(tmp_path / "cache", _key_file)
    assert (store._index.eviction_policy, store._index.size_limit) == ("none", 2**62)
    assert store._index.disk.min_file_size == 1 << 30
    store.close()
