"""MACs of a payload's out-of-band buffers: the data of arrays and frames.

A MAC says by its text which kind it is:

- ``g1:<tag>`` (hex): GHASH-then-AES. GMAC under one derived key and a fixed nonce gives
  GHASH of the buffer masked by a constant: an almost-universal hash, computed by AES-GCM
  with carry-less-multiply instructions at ~25 GB/s on one core here, 3.5x keyed BLAKE3 on
  the same core (benchmarks/cold.py; the check bounds a verified restore of a big array,
  which maps the file and reads nothing else). That hash is then encrypted, one AES block
  under a second derived key: hash-then-PRF, a deterministic MAC. Someone who reads the
  cache sees only encrypted hashes, so learns nothing of the hash key; without the keys no
  tag can be made for other data. Deterministic, unlike GMAC with random nonces: the same
  buffer gets the same tag, so payload names stay content-addressed (a team's writers of the
  same step agree on one object, and a damaged one is repaired by the next writer).
  Used for buffers of :data:`GMAC_MIN` bytes and more when ``cryptography`` imports and this
  is the faster of the two on this machine (measured once per process).
- a bare hex digest: keyed BLAKE3, for small buffers (the AES setup costs ~4 us), for entries
  written before, and on machines without AES and carry-less-multiply instructions.

Both keys are derived from the user's secret; the tags sit in the HMAC-signed manifest.
"""

from __future__ import annotations

import hmac
import time
from typing import Any

import blake3

from .keys import derive

__all__ = ["GMAC_MIN", "BufferMacs"]

GMAC_MIN = 1 << 20
_PREFIX = "g1:"
_AAD_CHUNK = 1 << 30  # OpenSSL takes an int length: associated data is fed in pieces


class BufferMacs:
    """Makes and checks buffer MACs under keys derived from one secret."""

    def __init__(self, key: bytes) -> None:
        self._blake3_key = derive(key, "buffer")
        self._hash_key = derive(key, "buffer ghash")
        self._prf_key = derive(key, "buffer ghash prf")

    def blake3(self, data: Any) -> str:
        """Keyed BLAKE3 of ``data``, hex (both cores for a big buffer)."""
        return blake3.blake3(data, key=self._blake3_key, max_threads=blake3.blake3.AUTO).hexdigest()

    def make(self, data: Any) -> str:
        """The MAC to store for buffer ``data`` (a contiguous byte view)."""
        if memoryview(data).nbytes >= GMAC_MIN and _gmac_is_faster():
            return _PREFIX + self._ghash_aes(data).hex()
        return self.blake3(data)

    def check(self, data: Any, mac: str) -> bool:
        """Does ``data`` have MAC ``mac``? False for a MAC that cannot be read, too."""
        if not mac.startswith(_PREFIX):
            return hmac.compare_digest(self.blake3(data), mac)
        try:
            tag = bytes.fromhex(mac[len(_PREFIX):])
        except ValueError:
            return False
        if len(tag) != 16:
            return False
        try:
            return hmac.compare_digest(self._ghash_aes(data), tag)
        except ImportError:  # written where cryptography was installed, read where it is not
            return False

    def _ghash_aes(self, data: Any) -> bytes:
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        masked_hash = _gmac(self._hash_key, _FIXED_NONCE, data)
        encryptor = Cipher(algorithms.AES(self._prf_key), modes.ECB()).encryptor()
        return encryptor.update(masked_hash) + encryptor.finalize()


_FIXED_NONCE = bytes(12)


def _gmac(key: bytes, nonce: bytes, data: Any) -> bytes:
    """GMAC: AES-GCM's tag over ``data`` as associated data and no plaintext (one pass)."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    encryptor = Cipher(algorithms.AES(key), modes.GCM(nonce)).encryptor()
    view = memoryview(data).cast("B")
    for start in range(0, len(view), _AAD_CHUNK):
        encryptor.authenticate_additional_data(view[start:start + _AAD_CHUNK])
    encryptor.finalize()
    return bytes(encryptor.tag)


_faster: list[bool] = []  # the probe's answer, once per process


def _gmac_is_faster() -> bool:
    """Is GMAC faster than keyed BLAKE3 here? (Hardware AES and carry-less multiply: ~3.5x;
    in software: slower.)"""
    if not _faster:
        try:
            sample = bytes(GMAC_MIN)
            key = bytes(32)
            _gmac(key, bytes(12), sample)  # the first call loads OpenSSL's ciphers
            spent = [float("inf"), float("inf")]
            for _ in range(3):  # the best of three: one slice of another process's load is no answer
                for i, make in enumerate((lambda: _gmac(key, bytes(12), sample),
                                          lambda: blake3.blake3(sample, key=key).digest())):
                    start = time.perf_counter()
                    make()
                    spent[i] = min(spent[i], time.perf_counter() - start)
            _faster.append(spent[0] < spent[1])
        except ImportError:
            _faster.append(False)
    return _faster[0]
