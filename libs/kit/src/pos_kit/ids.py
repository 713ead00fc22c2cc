"""Opaque, prefixed, time-ordered ids (`prod_...`, `ord_...`, `evt_...`)."""

from __future__ import annotations

import hashlib
import os
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, rem = divmod(value, 32)
        chars.append(_ALPHABET[rem])
    return "".join(reversed(chars))


def new_id(prefix: str) -> str:
    """A 26-character ULID-style body: 48 bits of milliseconds then 80 random bits.

    Time first keeps ids roughly insertion-ordered, which keeps B-tree inserts cheap and makes
    cursor pagination by id stable.
    """
    millis = time.time_ns() // 1_000_000
    body = _encode(millis, 10) + _encode(int.from_bytes(os.urandom(10), "big"), 16)
    return f"{prefix}_{body}"


def derived_id(prefix: str, millis: int, *seed: str) -> str:
    """The same id every time for the same time and seed: an id an operation picks before it
    calls other services, so that a re-run after a crash passes them the same id again."""
    digest = hashlib.sha256("\0".join(seed).encode()).digest()[:10]
    body = _encode(millis, 10) + _encode(int.from_bytes(digest, "big"), 16)
    return f"{prefix}_{body}"


def new_nonce() -> str:
    """A random value kept with a start that ids are derived from (`derived_id`'s seed): a new
    start under the same seed then derives new ids, even within the same millisecond."""
    return os.urandom(8).hex()


def has_prefix(value: str, prefix: str) -> bool:
    return value.startswith(prefix + "_") and len(value) == len(prefix) + 27
