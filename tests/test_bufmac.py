"""Buffer MACs (resumable_nb/bufmac.py) through a real store on a temp directory: big buffers
by AES-GMAC where it is the faster, small ones and older entries by keyed BLAKE3, and a change
to either the data or the MAC's text is caught before anything is unpickled."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from resumable_nb import bufmac
from resumable_nb.bufmac import GMAC_MIN, BufferMacs
from resumable_nb.errors import CorruptEntry
from resumable_nb.store import Store
from tests.conftest import edit_manifest

pytest.importorskip("cryptography")


@pytest.fixture
def store(tmp_path: Path, _key_file: Path) -> Iterator[Store]:
    s = Store(tmp_path / "cache", _key_file)
    yield s
    s.close()


@pytest.fixture(params=[True, False], ids=["gmac", "blake3"])
def prefer_gmac(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """What the once-per-process probe would answer on a machine with / without AES
    instructions."""
    monkeypatch.setattr(bufmac, "_faster", [request.param])
    return bool(request.param)


def _put(store: Store, key: str, outputs: dict[str, Any]) -> Any:
    return store.put(key, "step", {"outputs": outputs, "deleted": (), "events": [], "result": None},
                     {}, outputs=tuple(outputs), deleted=(), duration=1.0)


def test_big_buffers_take_gmac_and_small_ones_blake3(store: Store, prefer_gmac: bool) -> None:
    big, small = np.arange(GMAC_MIN // 8 * 3, dtype="f8"), np.arange(100, dtype="i8")
    entry = _put(store, "k", {"big": big, "small": small})
    kinds = sorted("gmac" if mac.startswith("g1:") else "blake3" for _, _, mac in entry.buffers)
    assert kinds == (["blake3", "gmac"] if prefer_gmac else ["blake3", "blake3"])
    out = store.load(store.get("k"), {})["outputs"]
    np.testing.assert_array_equal(out["big"], big)
    np.testing.assert_array_equal(out["small"], small)


def test_a_flipped_byte_in_a_gmac_buffer_is_caught(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bufmac, "_faster", [True])
    entry = _put(store, "k", {"big": np.zeros(GMAC_MIN // 8 * 2)})
    offset, length, mac = max(entry.buffers, key=lambda b: b[1])
    assert mac.startswith("g1:")
    path = store.root / "objects" / entry.file
    data = bytearray(path.read_bytes())
    data[offset + length // 2] ^= 1
    path.write_bytes(bytes(data))
    store._small.clear()
    with pytest.raises(CorruptEntry, match="integrity"):
        store.load(store.get("k"), {})


def test_entries_written_with_blake3_still_restore_where_gmac_is_preferred(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bufmac, "_faster", [False])
    big = np.random.default_rng(0).random(GMAC_MIN // 8 * 2)
    entry = _put(store, "old", {"big": big})
    assert not any(mac.startswith("g1:") for _, _, mac in entry.buffers)
    monkeypatch.setattr(bufmac, "_faster", [True])
    np.testing.assert_array_equal(store.load(store.get("old"), {})["outputs"]["big"], big)


@pytest.mark.parametrize("mac", ["g1:", "g1:zz", "g1:" + "00" * 15, "g1:" + "00" * 17,
                                 "g1:" + "00" * 16, "", "not hex"])
def test_a_mac_that_cannot_be_read_never_verifies(mac: str) -> None:
    assert BufferMacs(b"k" * 32).check(b"\x00" * 64, mac) is False


def test_gmac_over_pieces_is_gmac_over_the_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """Associated data over 2 GiB goes to OpenSSL in pieces: the tag must not depend on them."""
    monkeypatch.setattr(bufmac, "_faster", [True])
    macs = BufferMacs(b"s" * 32)
    data = np.random.default_rng(1).integers(0, 255, GMAC_MIN + 12345, dtype=np.uint8)
    mac = macs.make(data)
    monkeypatch.setattr(bufmac, "_AAD_CHUNK", 4097)
    assert macs.check(data, mac)
    data[GMAC_MIN] ^= 1
    assert not macs.check(data, mac)


def test_the_same_buffer_gets_the_same_mac(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Payload names are content-addressed (the team store's writers of one step agree on one
    object, and a damaged object is replaced by the next writer's): the MAC is deterministic,
    and any change to the data changes it."""
    monkeypatch.setattr(bufmac, "_faster", [True])
    macs = BufferMacs(b"s" * 32)
    data = np.arange(GMAC_MIN, dtype=np.uint8)
    assert macs.make(data) == macs.make(data.copy())
    other = data.copy()
    other[-1] ^= 1
    assert macs.make(other) != macs.make(data)
    assert macs.make(data[:-1]) != macs.make(data)  # the length counts too
    first = _put(store, "a", {"big": np.ones(GMAC_MIN // 8 * 2)})
    second = _put(store, "b", {"big": np.ones(GMAC_MIN // 8 * 2)})
    assert first.file == second.file


def test_a_mac_made_under_another_secret_does_not_verify(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bufmac, "_faster", [True])
    data = bytes(GMAC_MIN)
    assert not BufferMacs(b"a" * 32).check(data, BufferMacs(b"b" * 32).make(data))
    assert BufferMacs(b"a" * 32).check(data, BufferMacs(b"a" * 32).make(data))


def test_the_manifest_signs_the_gmac_tag(store: Store, _key_file: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Swapping in a MAC computed by someone without the key means editing the signed
    manifest: the entry is then refused as a whole."""
    monkeypatch.setattr(bufmac, "_faster", [True])
    _put(store, "k", {"big": np.zeros(GMAC_MIN // 8 * 2)})
    edit_manifest(store.root, "k", lambda m: m["buffers"][-1].__setitem__(2, "g1:" + "00" * 16))
    other = Store(store.root, _key_file)  # another kernel: this one trusts what it verified
    with pytest.raises(CorruptEntry, match="signature"):
        other.get("k")
    other.close()
