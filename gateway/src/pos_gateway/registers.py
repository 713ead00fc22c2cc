"""Registers (tills) and their pairing with a device.

A register is made at a location, unpaired, and may be renamed until it is retired. A manager
asks for a pairing code (shown once, valid ten minutes, stored as a keyed hash); the device
sends the code, once, and gets the register's credential (shown once, stored as a keyed hash)
scoped to that location and the register scopes. Pairing again (a new device) replaces the
credential: the old device stops. Retiring a register drops its credential and ends its
session: it stops at once.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select, true, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from pos.gateway.v1 import events_pb2 as pb
from pos_gateway import audit, keys, outbox
from pos_gateway.outbox import stamp
from pos_gateway.sessions import end_sessions
from pos_gateway.tables import pairing_codes, register_sessions, registers
from pos_kit.changes import list_changed
from pos_kit.db import reads
from pos_kit.ids import new_id
from pos_kit.paging import ChangeCursor

PAIRING_SECONDS = 600
# No 0/O or 1/I: a code is read off one screen and typed on another.
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 10  # 50 bits: out of reach of guessing within its ten minutes
CODE_PATTERN = rf"^[{CODE_ALPHABET}]{{{CODE_LENGTH}}}$"


class RequestReused(Exception):
    """The Idempotency-Key already made something else."""


class Refused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class VersionMismatch(Exception):
    """The register is at another version than the one the change was decided on."""

    def __init__(self, current_version: int) -> None:
        super().__init__("the register changed since the version you sent")
        self.current_version = current_version


_COLUMNS = (
    registers.c.id,
    registers.c.location_id,
    registers.c.name,
    registers.c.status,
    registers.c.created_at,
    registers.c.paired_at,
    registers.c.retired_at,
    registers.c.updated_at,
    registers.c.version,
)


@dataclass(frozen=True)
class Register:
    id: str
    location_id: str
    name: str
    status: str
    created_at: datetime
    paired_at: datetime | None
    retired_at: datetime | None
    updated_at: datetime
    version: int

    def snapshot(self) -> dict[str, Any]:
        return {"id": self.id, "location_id": self.location_id, "name": self.name,
                "status": self.status, "version": self.version}  # fmt: skip

    def message(self) -> pb.Register:
        """As the register's events carry it: the whole resource, as GET answers it."""
        return pb.Register(
            id=self.id, location_id=self.location_id, name=self.name, status=self.status,
            created_at=stamp(self.created_at), paired_at=stamp(self.paired_at),
            retired_at=stamp(self.retired_at), updated_at=stamp(self.updated_at),
            version=self.version,
        )  # fmt: skip


async def _get(conn: AsyncConnection, merchant_id: str, register_id: str) -> Register | None:
    row = (
        await conn.execute(
            select(*_COLUMNS).where(
                registers.c.merchant_id == merchant_id, registers.c.id == register_id
            )
        )
    ).first()
    return None if row is None else Register(*row)


async def get(engine: AsyncEngine, merchant_id: str, register_id: str) -> Register | None:
    async with reads(engine) as conn:
        return await _get(conn, merchant_id, register_id)


async def create(
    engine: AsyncEngine,
    merchant_id: str,
    location_id: str,
    name: str,
    actor: audit.Actor,
    request_id: str,
) -> Register:
    """The register this request made (a retry gets the same one)."""
    values = {"id": new_id("reg"), "merchant_id": merchant_id, "location_id": location_id,
              "name": name, "status": "unpaired", "request_id": request_id}  # fmt: skip
    async with engine.begin() as conn:
        made = await conn.execute(
            pg_insert(registers)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["merchant_id", "request_id"])
            .returning(registers.c.id)
        )
        ident = made.scalar()
        fresh = ident is not None
        if ident is None:
            row = (
                await conn.execute(
                    select(registers).where(
                        registers.c.merchant_id == merchant_id,
                        registers.c.request_id == request_id,
                    )
                )
            ).one()
            if (row.location_id, row.name) != (location_id, name):
                raise RequestReused()
            ident = row.id
        found = await _get(conn, merchant_id, ident)
        assert found is not None
        await audit.record(
            conn, merchant_id, "register.created", actor, ("register", ident),
            {"register": found.snapshot()}, request_id,
        )  # fmt: skip
        if fresh:  # a retry of the same request announces nothing twice
            await outbox.publish(conn, merchant_id, pb.RegisterCreated(register=found.message()))
        return found


async def listed(
    engine: AsyncEngine, merchant_id: str, location_id: str | None, before: str, limit: int
) -> list[Register]:
    t = registers
    query = (
        select(*_COLUMNS)
        .where(
            t.c.merchant_id == merchant_id,
            t.c.location_id == location_id if location_id else true(),
            t.c.id < before if before else true(),
        )
        .order_by(t.c.id.desc())
        .limit(limit)
    )
    async with reads(engine) as conn:
        return [Register(*row) for row in await conn.execute(query)]


async def changed(
    engine: AsyncEngine,
    merchant_id: str,
    location_id: str | None,
    since: datetime,
    after: ChangeCursor | None,
    limit: int,
) -> list[Register]:
    """The change feed: registers changed at or after `since` (after the cursor), oldest
    change first, never skipping one a slow transaction commits later (pos_kit.changes)."""
    t = registers
    query = select(*_COLUMNS).where(
        t.c.merchant_id == merchant_id,
        t.c.location_id == location_id if location_id else true(),
    )
    async with reads(engine) as conn:
        rows = await list_changed(conn, query, t.c.updated_at, t.c.id, since, after, limit)
        return [Register(*tuple(row)) for row in rows]


async def rename(
    engine: AsyncEngine,
    merchant_id: str,
    register_id: str,
    name: str,
    actor: audit.Actor,
    request_id: str,
    expected_version: int = 0,
) -> Register | None:
    """The register under its new name; None: no such register. With `expected_version`, a
    register at another version is refused (VersionMismatch) and nothing changes; then
    Refused (`register_retired`) for a retired one. The name it already has changes nothing
    (no new version, no audit entry, no event). Its device and whoever is signed in at it go
    on as before."""
    async with engine.begin() as conn:
        row = (
            await conn.execute(
                select(*_COLUMNS)
                .where(registers.c.merchant_id == merchant_id, registers.c.id == register_id)
                .with_for_update()
            )
        ).first()
        if row is None:
            return None
        before = Register(*row)
        if expected_version and expected_version != before.version:
            raise VersionMismatch(before.version)
        if before.status == "retired":
            raise Refused("register_retired")
        if before.name == name:
            return before
        await conn.execute(
            update(registers)
            .where(registers.c.merchant_id == merchant_id, registers.c.id == register_id)
            .values(name=name, version=registers.c.version + 1)  # updated_at: its trigger's
        )
        after = await _get(conn, merchant_id, register_id)
        assert after is not None
        await audit.record(
            conn, merchant_id, "register.updated", actor, ("register", register_id),
            {"changed": ["name"], "before": before.snapshot(), "register": after.snapshot()},
            request_id,
        )  # fmt: skip
        await outbox.publish(conn, merchant_id, pb.RegisterUpdated(register=after.message()))
        return after


async def retire(
    engine: AsyncEngine,
    merchant_id: str,
    register_id: str,
    actor: audit.Actor,
    request_id: str,
    expected_version: int = 0,
) -> Register | None:
    """Retired for good: its credential is dropped and its session ended, in one transaction.
    With `expected_version`, a register at another version is refused (VersionMismatch) and
    nothing changes, as in rename: a retirement decided on what the register was is not
    applied to one changed since (paired with another device, say)."""
    async with engine.begin() as conn:
        if expected_version:
            current = (
                await conn.execute(
                    select(registers.c.version)
                    .where(registers.c.merchant_id == merchant_id, registers.c.id == register_id)
                    .with_for_update()
                )
            ).scalar()
            if current is None:
                return None
            if current != expected_version:
                raise VersionMismatch(current)
        changed = await conn.execute(
            update(registers)
            .where(
                registers.c.merchant_id == merchant_id,
                registers.c.id == register_id,
                registers.c.status != "retired",
            )
            .values(
                status="retired",
                credential_hash=None,
                retired_at=func.now(),
                version=registers.c.version + 1,
            )
            .returning(registers.c.id)
        )
        if changed.first() is not None:
            await end_sessions(
                conn, merchant_id, register_sessions.c.register_id == register_id, "retired", actor
            )
            found = await _get(conn, merchant_id, register_id)
            assert found is not None
            await audit.record(
                conn, merchant_id, "register.retired", actor, ("register", register_id),
                {"register": found.snapshot()}, request_id,
            )  # fmt: skip
            await outbox.publish(conn, merchant_id, pb.RegisterRetired(register=found.message()))
            return found
        return await _get(conn, merchant_id, register_id)


def _code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


async def new_pairing_code(
    engine: AsyncEngine,
    secret: str,
    merchant_id: str,
    register_id: str,
    actor: audit.Actor,
    request_id: str,
) -> tuple[str | None, datetime] | None:
    """(code, expiry) for the register; the code is None when an earlier attempt of the same
    request made it (it is kept only as a hash). None: no such register. Refused
    (`register_retired`) for a retired one."""
    code = _code()
    async with engine.begin() as conn:
        found = await _get(conn, merchant_id, register_id)
        if found is None:
            return None
        if found.status == "retired":
            raise Refused("register_retired")
        made = await conn.execute(
            pg_insert(pairing_codes)
            .values(
                code_hash=keys.keyed_hash(secret, code),
                merchant_id=merchant_id,
                register_id=register_id,
                expires_at=func.now() + func.make_interval(0, 0, 0, 0, 0, 0, PAIRING_SECONDS),
                request_id=request_id,
            )
            .on_conflict_do_nothing(index_elements=["merchant_id", "request_id"])
            .returning(pairing_codes.c.expires_at)
        )
        expires = made.scalar()
        if expires is not None:
            await audit.record(
                conn, merchant_id, "register.pairing_code_issued", actor,
                ("register", register_id), {}, request_id,
            )  # fmt: skip
            return code, expires
        row = (
            await conn.execute(
                select(pairing_codes.c.register_id, pairing_codes.c.expires_at).where(
                    pairing_codes.c.merchant_id == merchant_id,
                    pairing_codes.c.request_id == request_id,
                )
            )
        ).one()
        if row.register_id != register_id:
            raise RequestReused()
        return None, row.expires_at


async def held_by(engine: AsyncEngine, secret: str, code: str) -> tuple[str, Register] | None:
    """The merchant and register a pairing code still out (unused, unexpired) is for, read
    without spending it: what the pairing would be refused for is checked before it is made.
    None: `pair` answers it (`pairing_code_invalid`)."""
    p = pairing_codes
    async with reads(engine) as conn:
        row = (
            await conn.execute(
                select(p.c.merchant_id, p.c.register_id)
                .where(p.c.code_hash == keys.keyed_hash(secret, code), p.c.used_at.is_(None),
                       p.c.expires_at > func.now())
            )
        ).first()  # fmt: skip
        if row is None:
            return None
        found = await _get(conn, row.merchant_id, row.register_id)
        return None if found is None else (row.merchant_id, found)


@dataclass(frozen=True)
class Paired:
    merchant_id: str
    register: Register
    credential: str


async def pair(engine: AsyncEngine, secret: str, code: str) -> Paired:
    """Exchange a pairing code, once, for the register's new credential. Refused:
    `pairing_code_invalid` (unknown, used or expired: the device cannot tell which, nor can a
    guesser) or `register_retired`."""
    credential = keys.generate_register_credential()
    p = pairing_codes
    async with engine.begin() as conn:
        row = (
            await conn.execute(
                select(p.c.merchant_id, p.c.register_id)
                .where(p.c.code_hash == keys.keyed_hash(secret, code), p.c.used_at.is_(None),
                       p.c.expires_at > func.now())
                .with_for_update()
            )
        ).first()  # fmt: skip
        if row is None:
            raise Refused("pairing_code_invalid")
        # The register has its device: every other code still out for it is spent with this
        # one, so an older code (shown on a screen, then another asked for) cannot take the
        # register over later. One that another pairing holds right now is skipped, not
        # waited for: that pairing finishes last and wins, as before.
        still_out = (
            select(p.c.code_hash)
            .where(p.c.merchant_id == row.merchant_id, p.c.register_id == row.register_id,
                   p.c.used_at.is_(None))
            .with_for_update(skip_locked=True)
        )  # fmt: skip
        await conn.execute(
            update(p)
            .where(or_(p.c.code_hash == keys.keyed_hash(secret, code),
                       p.c.code_hash.in_(still_out)))
            .values(used_at=func.now())
        )  # fmt: skip
        changed = await conn.execute(
            update(registers)
            .where(registers.c.id == row.register_id, registers.c.status != "retired")
            .values(
                status="paired",
                credential_hash=keys.keyed_hash(secret, credential),
                paired_at=func.now(),
                version=registers.c.version + 1,
            )
            .returning(registers.c.id)
        )
        if changed.first() is None:
            raise Refused("register_retired")
        # A new device: whoever was signed in at the old one is signed out.
        await end_sessions(
            conn, row.merchant_id, register_sessions.c.register_id == row.register_id,
            "paired", audit.Actor(register_id=row.register_id),
        )  # fmt: skip
        found = await _get(conn, row.merchant_id, row.register_id)
        assert found is not None
        await audit.record(
            conn, row.merchant_id, "register.paired", audit.Actor(register_id=found.id),
            ("register", found.id), {"register": found.snapshot()},
        )  # fmt: skip
        await outbox.publish(conn, row.merchant_id, pb.RegisterPaired(register=found.message()))
        return Paired(row.merchant_id, found, credential)
