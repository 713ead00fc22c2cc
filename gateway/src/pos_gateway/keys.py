"""API keys: `pos_test_` / `pos_live_` + random body + checksum; stored as a keyed hash.

The checksum lets the gateway (and secret scanners) reject a mistyped or made-up key without a
database look-up; the keyed hash means the table alone is useless to a thief.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
import zlib

_ALPHABET = string.ascii_letters + string.digits
_BODY_LENGTH = 32
_CHECK_LENGTH = 6

ALL_SCOPES = (
    "catalog:read",
    "catalog:write",
    "inventory:read",
    "inventory:write",
    "customers:read",
    "customers:write",
    "promotions:read",
    "promotions:write",
    "orders:read",
    "orders:write",
    "payments:read",
    "payments:write",
    "events:read",
    "webhooks:manage",
    "credentials:manage",
    "registers:read",
    "registers:manage",
    "staff:manage",
    "register:session",
    "audit:read",
    "audit:manage",
)
# What a paired register's credential carries: selling at its location, nothing more.
REGISTER_SCOPES = frozenset(
    {
        "catalog:read",
        "inventory:read",
        "customers:read",
        "customers:write",
        "promotions:read",
        "orders:read",
        "orders:write",
        "payments:read",
        "payments:write",
        "registers:read",
        "register:session",
    }
)
REGISTER_PREFIX = "pos_reg_"


def _base62(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, rem = divmod(value, 62)
        chars.append(_ALPHABET[rem])
    return "".join(reversed(chars))


def _checksum(prefix_and_body: str) -> str:
    return _base62(zlib.crc32(prefix_and_body.encode()), _CHECK_LENGTH)


def generate(mode: str = "test") -> str:
    if mode not in ("test", "live"):
        raise ValueError("mode must be test or live")
    body = "".join(secrets.choice(_ALPHABET) for _ in range(_BODY_LENGTH))
    head = f"pos_{mode}_{body}"
    return head + _checksum(head)


def well_formed(key: str) -> bool:
    if not key.startswith(("pos_test_", "pos_live_")):
        return False
    if len(key) != len("pos_test_") + _BODY_LENGTH + _CHECK_LENGTH:
        return False
    head, check = key[:-_CHECK_LENGTH], key[-_CHECK_LENGTH:]
    return hmac.compare_digest(_checksum(head), check)


def keyed_hash(secret: str, key: str) -> bytes:
    return hmac.new(secret.encode(), key.encode(), hashlib.sha256).digest()


def hint(key: str) -> str:
    return key[: len("pos_test_") + 4] + "…"


def generate_register_credential() -> str:
    body = "".join(secrets.choice(_ALPHABET) for _ in range(_BODY_LENGTH))
    head = REGISTER_PREFIX + body
    return head + _checksum(head)


def well_formed_register(credential: str) -> bool:
    if len(credential) != len(REGISTER_PREFIX) + _BODY_LENGTH + _CHECK_LENGTH:
        return False
    head, check = credential[:-_CHECK_LENGTH], credential[-_CHECK_LENGTH:]
    return credential.startswith(REGISTER_PREFIX) and hmac.compare_digest(_checksum(head), check)
