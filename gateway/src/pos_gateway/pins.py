"""Staff PINs: a slow, salted, keyed hash (scrypt over an HMAC of the PIN), never the PIN.

A PIN has only 4 to 8 digits, so a fast hash of it is brute-forced in a blink by whoever reads
the table. scrypt makes each guess cost tens of milliseconds and megabytes of memory, the salt
makes each member's guesses separate work, and the HMAC under GATEWAY_SECRET_KEY means the table
alone is not enough to start guessing. Online guessing is stopped by the lock (staff.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import re

PIN_PATTERN = r"^[0-9]{4,8}$"
_PIN = re.compile(PIN_PATTERN)
# scrypt's cost: 2^14 x 8 x 128 bytes = 16 MiB and ~50 ms a hash on the project's machine.
_N, _R, _P = 2**14, 8, 1
_LENGTH = 32


def well_formed(pin: str) -> bool:
    return _PIN.fullmatch(pin) is not None


def _derive(secret: str, pin: str, salt: bytes) -> bytes:
    keyed = hmac.new(secret.encode(), pin.encode(), hashlib.sha256).digest()
    return hashlib.scrypt(keyed, salt=salt, n=_N, r=_R, p=_P, dklen=_LENGTH)


async def hash_pin(secret: str, pin: str) -> tuple[bytes, bytes]:
    """(hash, salt) of a new PIN; off the event loop, as it is slow on purpose."""
    salt = os.urandom(16)
    return await asyncio.to_thread(_derive, secret, pin, salt), salt


async def matches(secret: str, pin: str, salt: bytes, stored: bytes) -> bool:
    found = await asyncio.to_thread(_derive, secret, pin, salt)
    return hmac.compare_digest(found, stored)
