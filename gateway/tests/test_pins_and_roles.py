"""PIN hashing and the built-in roles: no server needed."""

from __future__ import annotations

import hashlib

import pytest

from pos_gateway import keys, pins
from pos_gateway.permissions import PERMISSIONS, built_in

SECRET = "pins-test-secret-0123456789abcdef"


@pytest.mark.asyncio
async def test_a_pin_is_kept_as_a_salted_keyed_slow_hash() -> None:
    first, salt = await pins.hash_pin(SECRET, "4821")
    second, other_salt = await pins.hash_pin(SECRET, "4821")
    # The same PIN twice: different salts, different hashes; neither is a plain digest of it.
    assert salt != other_salt and first != second
    assert first != hashlib.sha256(b"4821").digest()
    assert await pins.matches(SECRET, "4821", salt, first)
    assert not await pins.matches(SECRET, "4822", salt, first)
    # Under another key the same PIN and salt do not match: the table alone is not enough.
    assert not await pins.matches("another-secret-0123456789abcdef00", "4821", salt, first)


@pytest.mark.parametrize(
    ("pin", "ok"),
    [("1234", True), ("12345678", True), ("123", False), ("123456789", False),
     ("12a4", False), ("١٢٣٤", False), ("", False)],
)  # fmt: skip
def test_a_pin_is_four_to_eight_ascii_digits(pin: str, ok: bool) -> None:
    assert pins.well_formed(pin) is ok


def test_a_cashier_may_do_none_of_the_guarded_actions_and_a_manager_all() -> None:
    cashier, manager, admin = built_in("cashier"), built_in("manager"), built_in("admin")
    assert cashier is not None and manager is not None and admin is not None
    assert cashier[0] == frozenset() and cashier[1] == 1000
    assert manager[0] == admin[0] == frozenset(PERMISSIONS)
    assert built_in("role_01j9x6v5e6f7g8h9j0k1m2n3pq") is None


def test_a_register_credential_is_checked_before_any_lookup_and_never_an_api_key() -> None:
    credential = keys.generate_register_credential()
    assert credential.startswith(keys.REGISTER_PREFIX)
    assert keys.well_formed_register(credential)
    assert not keys.well_formed(credential)
    typo = credential[:-1] + ("A" if credential[-1] != "A" else "B")
    assert not keys.well_formed_register(typo)
    # What a register may do: selling and its own session, never managing anything.
    assert "register:session" in keys.REGISTER_SCOPES
    assert not {"credentials:manage", "staff:manage", "registers:manage", "audit:read"} & set(
        keys.REGISTER_SCOPES
    )
