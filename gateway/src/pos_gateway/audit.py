"""The audit log: who did what, at which register or with which credential, and when.

Entries are only ever added (the table's trigger refuses UPDATE, and DELETE but for the
retention purge below). An entry is written in the same transaction as the change it records
when the change is the gateway's own (staff, registers, sign-ins, overrides); an action a
service carries out (a refund, a void) is recorded once the service has answered.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, func, select, text, true
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from pos_gateway.auth import Principal
from pos_gateway.tables import audit_log, merchant_settings
from pos_kit.db import reads
from pos_kit.ids import new_id

DEFAULT_RETENTION_DAYS = 365
MIN_RETENTION_DAYS = 30
MAX_RETENTION_DAYS = 3650


@dataclass(frozen=True)
class Actor:
    staff_id: str | None = None
    approved_by: str | None = None
    register_id: str | None = None
    credential_id: str | None = None


def actor_of(principal: Principal, approved_by: str | None = None) -> Actor:
    """A register's requests name the register and who is signed in at it; any other
    credential names itself."""
    if principal.register_id is not None:
        return Actor(principal.staff_id, approved_by, principal.register_id, None)
    return Actor(None, approved_by, None, principal.key_id)


async def record(
    conn: AsyncConnection,
    merchant_id: str,
    action: str,
    actor: Actor,
    resource: tuple[str, str] | None = None,
    details: dict[str, Any] | None = None,
    request_id: str | None = None,
) -> None:
    """Add an entry; with a request id, a retry of that request adds none a second time."""
    kind, ident = resource if resource is not None else (None, None)
    await conn.execute(
        pg_insert(audit_log)
        .values(
            id=new_id("aud"),
            merchant_id=merchant_id,
            action=action,
            staff_id=actor.staff_id,
            approved_by=actor.approved_by,
            register_id=actor.register_id,
            credential_id=actor.credential_id,
            resource_type=kind,
            resource_id=ident,
            details=details or {},
            request_id=request_id or None,
        )
        .on_conflict_do_nothing()
    )


@dataclass(frozen=True)
class Filters:
    action: str | None = None
    staff_id: str | None = None
    register_id: str | None = None
    resource_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


async def entries(
    engine: AsyncEngine, merchant_id: str, filters: Filters, before: str, limit: int
) -> list[dict[str, Any]]:
    """Newest first (ids are time-ordered): the `limit` next after id `before`."""
    t = audit_log
    conditions = [t.c.merchant_id == merchant_id, t.c.id < before if before else true()]
    if filters.action:
        # `refund` matches `refund`; `staff.*` every staff action.
        if filters.action.endswith(".*"):
            conditions.append(t.c.action.startswith(filters.action[:-1], autoescape=True))
        else:
            conditions.append(t.c.action == filters.action)
    if filters.staff_id:
        conditions.append(
            (t.c.staff_id == filters.staff_id) | (t.c.approved_by == filters.staff_id)
        )
    if filters.register_id:
        conditions.append(t.c.register_id == filters.register_id)
    if filters.resource_id:
        conditions.append(t.c.resource_id == filters.resource_id)
    if filters.since:
        conditions.append(t.c.occurred_at >= filters.since)
    if filters.until:
        conditions.append(t.c.occurred_at < filters.until)
    async with reads(engine) as conn:
        rows = await conn.execute(
            select(t).where(and_(*conditions)).order_by(t.c.id.desc()).limit(limit)
        )
        return [dict(row._mapping) for row in rows]


@dataclass(frozen=True)
class Retention:
    days: int
    updated_at: datetime | None
    # Bumped by every change; 1 while the default applies.
    version: int


class VersionMismatch(Exception):
    """If-Match named another version than the settings' `current_version`."""

    def __init__(self, current_version: int) -> None:
        super().__init__("the audit settings changed since the version you sent")
        self.current_version = current_version


_SETTINGS = (
    merchant_settings.c.audit_retention_days,
    merchant_settings.c.updated_at,
    merchant_settings.c.version,
)


async def _retention(conn: AsyncConnection, merchant_id: str, lock: bool = False) -> Retention:
    query = select(*_SETTINGS).where(merchant_settings.c.merchant_id == merchant_id)
    row = (await conn.execute(query.with_for_update() if lock else query)).first()
    return Retention(DEFAULT_RETENTION_DAYS, None, 1) if row is None else Retention(*row)


async def retention_days(engine: AsyncEngine, merchant_id: str) -> Retention:
    async with reads(engine) as conn:
        return await _retention(conn, merchant_id)


async def set_retention_days(
    engine: AsyncEngine,
    merchant_id: str,
    days: int,
    actor: Actor,
    request_id: str,
    expected_version: int = 0,
) -> Retention:
    """The settings after the change: a new version and its audit entry when `days` differs,
    none when it does not; with `expected_version`, another version is VersionMismatch."""
    async with engine.begin() as conn:
        # Twice at most: a first change can lose the race to create the row to another first
        # change; without If-Match it is then applied on top of the winner's, as any later.
        for attempt in (1, 2):
            before = await _retention(conn, merchant_id, lock=True)
            if expected_version and expected_version != before.version:
                raise VersionMismatch(before.version)
            if before.days == days:
                return before
            version = before.version + 1
            written = await conn.execute(
                pg_insert(merchant_settings)
                .values(merchant_id=merchant_id, audit_retention_days=days, version=version)
                .on_conflict_do_update(
                    index_elements=["merchant_id"],
                    set_={"audit_retention_days": days, "version": version,
                          "updated_at": func.now()},
                    where=merchant_settings.c.version == before.version,
                )
                .returning(*_SETTINGS)
            )  # fmt: skip
            row = written.first()
            if row is not None:
                break
            if expected_version or attempt == 2:  # another first change won the race
                raise VersionMismatch((await _retention(conn, merchant_id)).version)
        assert row is not None
        await record(
            conn, merchant_id, "settings.audit_retention_changed", actor,
            details={"from": before.days, "to": days, "version": version},
            request_id=request_id,
        )  # fmt: skip
        return Retention(*row)


async def purge_expired(engine: AsyncEngine) -> int:
    """Drop the entries older than their merchant's retention period (the default's for a
    merchant that set none); the only DELETE the table's trigger lets through."""
    kept = (
        select(merchant_settings.c.audit_retention_days)
        .where(merchant_settings.c.merchant_id == audit_log.c.merchant_id)
        .scalar_subquery()
    )
    days = func.coalesce(kept, DEFAULT_RETENTION_DAYS)
    async with engine.begin() as conn:
        await conn.execute(text("SET LOCAL omnitill.audit_purge = 'on'"))
        gone = await conn.execute(
            delete(audit_log).where(
                audit_log.c.occurred_at < func.now() - func.make_interval(0, 0, 0, days)
            )
        )
    return int(gone.rowcount or 0)
