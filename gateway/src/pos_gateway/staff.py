"""Staff members, roles, PIN sign-in at a register, and managers' overrides.

PINs are checked under the member's row lock, so concurrent guesses are counted one by one:
after MAX_PIN_FAILURES wrong PINs in a row the member is locked for LOCK_SECONDS (each wrong
PIN and the lock are in the audit log), whether the PIN was given to sign in or to approve an
override.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, or_, select, true, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from pos.gateway.v1 import events_pb2 as pb
from pos_gateway import audit, outbox, pins
from pos_gateway.outbox import stamp
from pos_gateway.permissions import BUILT_IN_ROLES, PERMISSIONS, built_in
from pos_gateway.sessions import at_registers_outside, end_sessions
from pos_gateway.tables import (
    audit_log,
    overrides,
    register_sessions,
    registers,
    roles,
    staff_members,
)
from pos_kit.changes import list_changed
from pos_kit.db import reads
from pos_kit.ids import new_id
from pos_kit.paging import ChangeCursor

MAX_PIN_FAILURES = 5
LOCK_SECONDS = 900
# A register's own budget of wrong PINs, whoever they were for: a member locks after five, so
# without it a till could try four PINs on every member in turn, again and again. Past it the
# register signs no one in (PINs are not even checked) until its oldest failure in the window
# ages out.
REGISTER_PIN_BUDGET = 20
REGISTER_BUDGET_SECONDS = 900
OVERRIDE_SECONDS = 120


class RequestReused(Exception):
    """The Idempotency-Key already made something else."""


class Refused(Exception):
    """A domain refusal: `reason` is the problem's code; `extra` goes with it."""

    def __init__(self, reason: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.extra = extra


class LocationInactive(Exception):
    """A location the merchant closed would be added to the member's: `fields` names the
    request's entries that chose them (`location_ids[1]`)."""

    def __init__(self, location_id: str, fields: list[str]) -> None:
        super().__init__(location_id)
        self.location_id = location_id
        self.fields = fields


@dataclass(frozen=True)
class Member:
    id: str
    name: str
    role: str
    location_ids: list[str]
    status: str
    locked_until: datetime | None
    version: int
    created_at: datetime
    updated_at: datetime

    def snapshot(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "role": self.role,
                "location_ids": self.location_ids, "status": self.status,
                "version": self.version}  # fmt: skip

    def message(self) -> pb.StaffMember:
        """As the member's events carry it: the whole resource, as GET answers it (no PIN)."""
        return pb.StaffMember(
            id=self.id, name=self.name, role=self.role, location_ids=self.location_ids,
            status=self.status, locked_until=stamp(self.locked_until), version=self.version,
            created_at=stamp(self.created_at), updated_at=stamp(self.updated_at),
        )  # fmt: skip


_T = staff_members
# A lock that ran out is no lock: read as none (the column keeps the time until a new lock or
# PIN replaces it), so the member, the lists, the till's picker and the events say so.
_LOCKED_UNTIL = case((_T.c.locked_until > func.now(), _T.c.locked_until)).label("locked_until")
_COLUMNS = (_T.c.id, _T.c.name, _T.c.role, _T.c.location_ids, _T.c.status, _LOCKED_UNTIL,
            _T.c.version, _T.c.created_at, _T.c.updated_at)  # fmt: skip


async def _member(
    conn: AsyncConnection, merchant_id: str, staff_id: str, lock: bool = False
) -> Member | None:
    query = select(*_COLUMNS).where(_T.c.merchant_id == merchant_id, _T.c.id == staff_id)
    row = (await conn.execute(query.with_for_update() if lock else query)).first()
    return None if row is None else Member(*row)


async def get(engine: AsyncEngine, merchant_id: str, staff_id: str) -> Member | None:
    async with reads(engine) as conn:
        return await _member(conn, merchant_id, staff_id)


async def listed(
    engine: AsyncEngine,
    merchant_id: str,
    location_id: str | None,
    before: str,
    limit: int,
    active_only: bool = False,
) -> list[Member]:
    query = (
        select(*_COLUMNS)
        .where(
            _T.c.merchant_id == merchant_id,
            _T.c.location_ids.any(location_id) if location_id else true(),
            _T.c.id < before if before else true(),
            _T.c.status == "active" if active_only else true(),
        )
        .order_by(_T.c.id.desc())
        .limit(limit)
    )
    async with reads(engine) as conn:
        return [Member(*row) for row in await conn.execute(query)]


async def changed(
    engine: AsyncEngine,
    merchant_id: str,
    location_id: str | None,
    since: datetime,
    after: ChangeCursor | None,
    limit: int,
) -> list[Member]:
    """The change feed: members changed at or after `since` (after the cursor), oldest change
    first, never skipping one a slow transaction commits later (pos_kit.changes)."""
    query = select(*_COLUMNS).where(
        _T.c.merchant_id == merchant_id,
        _T.c.location_ids.any(location_id) if location_id else true(),
    )
    async with reads(engine) as conn:
        rows = await list_changed(conn, query, _T.c.updated_at, _T.c.id, since, after, limit)
        return [Member(*tuple(row)) for row in rows]


async def _role_exists(conn: AsyncConnection, merchant_id: str, role: str) -> bool:
    if built_in(role) is not None:
        return True
    # Held (FOR SHARE) until the member's change commits: a deletion of the role waits for it
    # and then finds the member, or goes first and the member's change finds no role.
    found = await conn.scalar(
        select(roles.c.id)
        .where(roles.c.merchant_id == merchant_id, roles.c.id == role)
        .with_for_update(read=True)
    )
    return found is not None


async def _check_role(conn: AsyncConnection, merchant_id: str, role: str) -> None:
    if not await _role_exists(conn, merchant_id, role):
        raise Refused(
            "resource_missing", f"role {role!r} was not found", resource="role", field="role"
        )


async def create(
    engine: AsyncEngine,
    secret: str,
    merchant_id: str,
    fields: dict[str, Any],
    pin: str,
    actor: audit.Actor,
    request_id: str,
) -> Member:
    """The member this request made (a retry gets the same one, its PIN unchanged)."""
    pin_hash, salt = await pins.hash_pin(secret, pin)
    async with engine.begin() as conn:
        await _check_role(conn, merchant_id, fields["role"])
        made = await conn.execute(
            pg_insert(_T)
            .values(id=new_id("stf"), merchant_id=merchant_id, status="active",
                    pin_hash=pin_hash, pin_salt=salt, request_id=request_id, **fields)
            .on_conflict_do_nothing(index_elements=["merchant_id", "request_id"])
            .returning(_T.c.id)
        )  # fmt: skip
        ident = made.scalar()
        first = ident is not None
        if ident is None:
            row = (
                await conn.execute(
                    select(_T).where(_T.c.merchant_id == merchant_id,
                                     _T.c.request_id == request_id)
                )
            ).one()  # fmt: skip
            if any(getattr(row, k) != v for k, v in fields.items()):
                raise RequestReused()
            ident = row.id
        found = await _member(conn, merchant_id, ident)
        assert found is not None
        await audit.record(
            conn, merchant_id, "staff.created", actor, ("staff", ident),
            {"staff": found.snapshot()}, request_id,
        )  # fmt: skip
        if first:  # a retry made nothing new: its event went out with the first
            await outbox.publish(conn, merchant_id, pb.StaffCreated(staff=found.message()))
        return found


async def update_member(
    engine: AsyncEngine,
    secret: str,
    merchant_id: str,
    staff_id: str,
    fields: dict[str, Any],
    pin: str | None,
    actor: audit.Actor,
    request_id: str,
    expected_version: int = 0,
    closed: dict[str, str] | None = None,
) -> Member | None:
    """Change what is given (a new PIN also clears a lock); None: no such member. With
    `expected_version`, a member at another version is refused (`version_mismatch`) and
    nothing changes. `closed`: the locations sent in `location_ids` that the merchant closed,
    each with the entry that named it; one the member does not work at already is refused
    (LocationInactive), decided on the member as locked. One they work at stays theirs."""
    changes = dict(fields)
    if pin is not None:
        pin_hash, salt = await pins.hash_pin(secret, pin)
        changes.update(pin_hash=pin_hash, pin_salt=salt, failed_pin_attempts=0, locked_until=None)
    async with engine.begin() as conn:
        before = await _member(conn, merchant_id, staff_id, lock=True)
        if before is None:
            return None
        if expected_version and expected_version != before.version:
            raise Refused(
                "version_mismatch",
                "the staff member changed since the version you sent",
                current_version=before.version,
            )
        if before.status == "deactivated":
            raise Refused("staff_deactivated", "a deactivated member cannot be changed")
        added = {k: f for k, f in (closed or {}).items() if k not in before.location_ids}
        if added:
            raise LocationInactive(next(iter(added)), list(added.values()))
        if pin is None and all(getattr(before, k) == v for k, v in fields.items()):
            # What it already is: no new version, no audit entry, no event (as a product's).
            return before
        if "role" in fields:
            await _check_role(conn, merchant_id, fields["role"])
        await conn.execute(
            update(_T)
            .where(_T.c.id == staff_id)
            .values(**changes, version=_T.c.version + 1)  # updated_at: its trigger's
        )
        after = await _member(conn, merchant_id, staff_id)
        assert after is not None
        if "location_ids" in fields:
            # Taken off a location: signed out of its registers at once, as a new sign-in
            # there would be refused (`staff_not_at_location`).
            await end_sessions(
                conn, merchant_id,
                (register_sessions.c.staff_id == staff_id) & at_registers_outside(
                    after.location_ids),
                "moved", actor,
            )  # fmt: skip
        changed = sorted({*fields, *(("pin",) if pin is not None else ())})
        await audit.record(
            conn, merchant_id, "staff.updated", actor, ("staff", staff_id),
            {"changed": changed, "before": before.snapshot(), "staff": after.snapshot()},
            request_id,
        )  # fmt: skip
        await outbox.publish(conn, merchant_id, pb.StaffUpdated(staff=after.message()))
        return after


async def deactivate(
    engine: AsyncEngine,
    merchant_id: str,
    staff_id: str,
    actor: audit.Actor,
    request_id: str,
    expected_version: int = 0,
) -> Member | None:
    """Deactivated for good, and signed out of any register at once. With `expected_version`,
    a member at another version is refused (`version_mismatch`) and nothing changes, as in
    update_member: a deactivation decided on what the member was (their role, their
    locations) is not applied to a member changed since."""
    async with engine.begin() as conn:
        before = await _member(conn, merchant_id, staff_id, lock=True)
        if before is None:
            return None
        if expected_version and expected_version != before.version:
            raise Refused(
                "version_mismatch",
                "the staff member changed since the version you sent",
                current_version=before.version,
            )
        if before.status == "deactivated":
            return before
        await conn.execute(
            update(_T)
            .where(_T.c.id == staff_id)
            .values(status="deactivated", version=_T.c.version + 1)  # and updated_at
        )
        await end_sessions(
            conn, merchant_id, register_sessions.c.staff_id == staff_id, "deactivated", actor
        )
        after = await _member(conn, merchant_id, staff_id)
        assert after is not None
        await audit.record(
            conn, merchant_id, "staff.deactivated", actor, ("staff", staff_id),
            {"staff": after.snapshot()}, request_id,
        )  # fmt: skip
        await outbox.publish(conn, merchant_id, pb.StaffDeactivated(staff=after.message()))
        return after


# --- roles -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Role:
    id: str
    name: str
    permissions: list[str]
    discount_limit_bps: int
    built_in: bool
    version: int = 1
    # The moment of its last change (None for a built-in role, which never changes).
    updated_at: datetime | None = None

    def snapshot(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "permissions": self.permissions,
                "discount_limit_bps": self.discount_limit_bps, "version": self.version}  # fmt: skip


_ROLE_COLUMNS = (roles.c.id, roles.c.name, roles.c.permissions, roles.c.discount_limit_bps,
                 roles.c.version, roles.c.updated_at)  # fmt: skip


def _own_role(row: Any) -> Role:
    return Role(row.id, row.name, list(row.permissions), row.discount_limit_bps, False,
                row.version, row.updated_at)  # fmt: skip


def built_in_roles() -> list[Role]:
    found = []
    for name in ("cashier", "manager", "admin"):
        granted, limit = built_in(name) or (frozenset(), 0)
        found.append(Role(name, name, [p for p in PERMISSIONS if p in granted], limit, True))
    return found


async def _role(
    conn: AsyncConnection, merchant_id: str, role_id: str, lock: bool = False
) -> Role | None:
    query = select(*_ROLE_COLUMNS).where(roles.c.merchant_id == merchant_id, roles.c.id == role_id)
    row = (await conn.execute(query.with_for_update() if lock else query)).first()
    return None if row is None else _own_role(row)


async def get_role(engine: AsyncEngine, merchant_id: str, role_id: str) -> Role | None:
    """A built-in role, or the merchant's own; None: no such role (another merchant's
    included)."""
    for fixed in built_in_roles():
        if fixed.id == role_id:
            return fixed
    async with reads(engine) as conn:
        return await _role(conn, merchant_id, role_id)


def _changeable(role_id: str) -> None:
    if built_in(role_id) is not None:
        raise Refused("role_built_in", f"the built-in role {role_id!r} cannot be changed")


def _current(before: Role, expected_version: int) -> None:
    if expected_version and expected_version != before.version:
        raise Refused("version_mismatch", "the role changed since the version you sent",
                      current_version=before.version)  # fmt: skip


async def update_role(
    engine: AsyncEngine,
    merchant_id: str,
    role_id: str,
    fields: dict[str, Any],
    actor: audit.Actor,
    request_id: str,
    expected_version: int = 0,
) -> Role | None:
    """Change what is given (`name`, `permissions`, `discount_limit_bps`); None: no such
    role. Refused: a built-in role (`role_built_in`), a name another role has in any case
    (`role_name_taken`), another version than `expected_version` (`version_mismatch`). What
    the role already is changes nothing (no new version, no audit entry). Its members hold
    the new permissions from their next action on (an override their manager approved is
    checked against the role when it is used)."""
    _changeable(role_id)
    if "name" in fields and fields["name"].strip().casefold() in BUILT_IN_ROLES:
        name = fields["name"]
        raise Refused("role_name_taken", f"{name!r} is a built-in role", field="name")
    async with engine.begin() as conn:
        before = await _role(conn, merchant_id, role_id, lock=True)
        if before is None:
            return None
        _current(before, expected_version)
        if all(getattr(before, k) == v for k, v in fields.items()):
            return before
        if "name" in fields:
            taken = await conn.scalar(
                select(roles.c.id).where(
                    roles.c.merchant_id == merchant_id,
                    roles.c.id != role_id,
                    func.lower(func.btrim(roles.c.name)) == fields["name"].strip().lower(),
                )
            )
            if taken is not None:
                name = fields["name"]
                raise Refused("role_name_taken", f"a role named {name!r} exists", field="name")
        try:
            async with conn.begin_nested():
                await conn.execute(
                    update(roles)
                    .where(roles.c.merchant_id == merchant_id, roles.c.id == role_id)
                    .values(**fields, version=roles.c.version + 1)
                )
        except IntegrityError:  # the same name, committed by another change just now
            name = fields["name"]
            raise Refused(
                "role_name_taken", f"a role named {name!r} exists", field="name"
            ) from None
        after = await _role(conn, merchant_id, role_id)
        assert after is not None
        await audit.record(
            conn, merchant_id, "role.updated", actor, ("role", role_id),
            {"changed": sorted(fields), "before": before.snapshot(), "role": after.snapshot()},
            request_id,
        )  # fmt: skip
        return after


async def delete_role(
    engine: AsyncEngine,
    merchant_id: str,
    role_id: str,
    actor: audit.Actor,
    request_id: str,
    expected_version: int = 0,
) -> Role | None:
    """The role as it was, deleted; None: no such role. Refused: a built-in role
    (`role_built_in`), a role an active member still has (`role_in_use`, with how many:
    give them another role first), another version than `expected_version`
    (`version_mismatch`). A deactivated member keeps the role's id as it was."""
    _changeable(role_id)
    async with engine.begin() as conn:
        before = await _role(conn, merchant_id, role_id, lock=True)
        if before is None:
            return None
        _current(before, expected_version)
        holding = await conn.scalar(
            select(func.count())
            .select_from(_T)
            .where(_T.c.merchant_id == merchant_id, _T.c.role == role_id,
                   _T.c.status == "active")
        )  # fmt: skip
        if holding:
            raise Refused(
                "role_in_use",
                f"{holding} active staff member(s) still have this role: give them another first",
                staff_count=int(holding),
            )
        await conn.execute(
            roles.delete().where(roles.c.merchant_id == merchant_id, roles.c.id == role_id)
        )
        await audit.record(
            conn, merchant_id, "role.deleted", actor, ("role", role_id),
            {"role": before.snapshot()}, request_id,
        )  # fmt: skip
        return before


async def list_roles(engine: AsyncEngine, merchant_id: str, after: str, limit: int) -> list[Role]:
    """The built-in roles in their order, then the merchant's by id: the `limit` next after
    the role `after` ("": from the start). A merchant's role ids (`role_...`) are never a
    built-in one's name, so one key says where either part resumes."""
    fixed = built_in_roles()
    names = [r.id for r in fixed]
    if after in names:
        fixed, own_after = fixed[names.index(after) + 1 :], ""
    elif after:
        fixed, own_after = [], after
    else:
        own_after = ""
    found = fixed[:limit]
    if len(found) == limit:
        return found
    async with reads(engine) as conn:
        rows = await conn.execute(
            select(*_ROLE_COLUMNS)
            .where(roles.c.merchant_id == merchant_id, roles.c.id > own_after)
            .order_by(roles.c.id)
            .limit(limit - len(found))
        )
        own = [_own_role(r) for r in rows]
    return [*found, *own]


async def changed_roles(
    engine: AsyncEngine, merchant_id: str, since: datetime, after: ChangeCursor | None, limit: int
) -> list[Role]:
    """The change feed: the merchant's roles made or changed at or after `since` (after the
    cursor), oldest change first, never skipping one a slow transaction commits later
    (pos_kit.changes). The built-in roles never change: they are not in it."""
    query = select(*_ROLE_COLUMNS).where(roles.c.merchant_id == merchant_id)
    async with reads(engine) as conn:
        rows = await list_changed(conn, query, roles.c.updated_at, roles.c.id, since, after, limit)
        return [_own_role(r) for r in rows]


async def create_role(
    engine: AsyncEngine,
    merchant_id: str,
    name: str,
    permissions: list[str],
    discount_limit_bps: int,
    actor: audit.Actor,
    request_id: str,
) -> Role:
    # `Manager` beside `manager` would read as the same role on every screen.
    if name.strip().casefold() in BUILT_IN_ROLES:
        raise Refused("role_name_taken", f"{name!r} is a built-in role", field="name")
    async with engine.begin() as conn:
        ident = new_id("role")
        made = await conn.execute(
            pg_insert(roles)
            .values(id=ident, merchant_id=merchant_id, name=name, permissions=permissions,
                    discount_limit_bps=discount_limit_bps, request_id=request_id)
            .on_conflict_do_nothing()
            .returning(roles.c.id)
        )  # fmt: skip
        if made.scalar() is None:
            row = (
                await conn.execute(
                    select(roles).where(
                        roles.c.merchant_id == merchant_id,
                        or_(
                            roles.c.request_id == request_id,
                            func.lower(func.btrim(roles.c.name)) == name.strip().lower(),
                        ),
                    )
                )
            ).first()
            assert row is not None
            if row.request_id != request_id:
                raise Refused("role_name_taken", f"a role named {name!r} exists", field="name")
            if (row.name, list(row.permissions), row.discount_limit_bps) != (
                name, permissions, discount_limit_bps
            ):  # fmt: skip
                raise RequestReused()
            ident = row.id
        role = await _role(conn, merchant_id, ident)
        assert role is not None
        await audit.record(
            conn, merchant_id, "role.created", actor, ("role", ident),
            {"role": {"id": ident, "name": name, "permissions": permissions,
                      "discount_limit_bps": discount_limit_bps}},
            request_id,
        )  # fmt: skip
        return role


async def _permissions(conn: AsyncConnection, merchant_id: str, role: str) -> frozenset[str]:
    fixed = built_in(role)
    if fixed is not None:
        return fixed[0]
    found = await conn.scalar(
        select(roles.c.permissions).where(roles.c.merchant_id == merchant_id, roles.c.id == role)
    )
    return frozenset(found or ())


async def may(engine: AsyncEngine, merchant_id: str, staff_id: str, permission: str) -> bool:
    async with reads(engine) as conn:
        member = await _member(conn, merchant_id, staff_id)
        if member is None or member.status != "active":
            return False
        return permission in await _permissions(conn, merchant_id, member.role)


async def discount_limit(engine: AsyncEngine, merchant_id: str, staff_id: str) -> int:
    """The discount (basis points) the member's role may give without an override."""
    async with reads(engine) as conn:
        member = await _member(conn, merchant_id, staff_id)
        if member is None or member.status != "active":
            return 0
        fixed = built_in(member.role)
        if fixed is not None:
            return fixed[1]
        found = await conn.scalar(
            select(roles.c.discount_limit_bps).where(
                roles.c.merchant_id == merchant_id, roles.c.id == member.role
            )
        )
        return int(found or 0)


# --- PIN checks, sessions, overrides ---------------------------------------------------------


async def _check_pin(
    conn: AsyncConnection,
    secret: str,
    merchant_id: str,
    staff_id: str,
    pin: str,
    location_id: str,
    actor: audit.Actor,
    field: str,
) -> Member:
    """The member, if the PIN is theirs and they may work here; each refusal is recorded
    (a wrong PIN's entry is committed even though the caller's request fails). `field` is
    the body's field that named the member, for the 404 of one that is not the merchant's."""
    if actor.register_id:
        await _register_budget(conn, merchant_id, actor)
    member = await _member(conn, merchant_id, staff_id, lock=True)
    if member is None:
        raise Refused("resource_missing", f"staff member {staff_id!r} was not found",
                      resource="staff", field=field)  # fmt: skip
    if member.status != "active":
        # The merchant's own member: a 404 would send the till looking for a typo. Said
        # before the PIN is looked at, so it tests no PIN (another merchant's is still 404).
        raise Refused(
            "staff_deactivated",
            "this staff member is deactivated: they neither sign in nor approve",
        )
    # Before the PIN is looked at: a register elsewhere may neither test a member's PIN (a
    # hit would answer differently from a miss) nor lock them out by guessing.
    if location_id not in member.location_ids:
        raise Refused("staff_not_at_location", "this member does not work at this location")
    locked = await conn.scalar(select(_T.c.locked_until > func.now()).where(_T.c.id == staff_id))
    if locked:
        raise Refused(
            "staff_locked",
            "too many wrong PINs: this member is locked for a while",
            locked_until=member.locked_until,
        )
    salt, stored = (
        await conn.execute(select(_T.c.pin_salt, _T.c.pin_hash).where(_T.c.id == staff_id))
    ).one()
    if not await pins.matches(secret, pin, bytes(salt), bytes(stored)):
        # Nothing was approved: the entries name the member whose PIN it was as their resource.
        actor = replace(actor, approved_by=None)
        failures = await conn.scalar(
            update(_T)
            .where(_T.c.id == staff_id)
            .values(failed_pin_attempts=_T.c.failed_pin_attempts + 1)
            .returning(_T.c.failed_pin_attempts)
        )
        await audit.record(conn, merchant_id, "staff.pin_failed", actor, ("staff", staff_id),
                           {"failures": failures})  # fmt: skip
        if failures is not None and failures >= MAX_PIN_FAILURES:
            # The lock shows on the member (`locked_until`): a new version, so its ETag and
            # `updated_at` move (the trigger stamps a new version: the `updated_since` feed
            # finds it) and it is announced as every change is. A wrong PIN short of it
            # changes nothing a reader sees, and stays bookkeeping.
            await conn.execute(
                update(_T)
                .where(_T.c.id == staff_id)
                .values(
                    failed_pin_attempts=0,
                    locked_until=func.now() + func.make_interval(0, 0, 0, 0, 0, 0, LOCK_SECONDS),
                    version=_T.c.version + 1,
                )
            )
            await audit.record(conn, merchant_id, "staff.locked", actor, ("staff", staff_id),
                               {"lock_seconds": LOCK_SECONDS})  # fmt: skip
            now_locked = await _member(conn, merchant_id, staff_id)
            assert now_locked is not None
            await outbox.publish(conn, merchant_id, pb.StaffUpdated(staff=now_locked.message()))
            # Locked: signed out everywhere at once (a till where they are signed in would
            # otherwise keep acting as them through the lock, the guesser's own included).
            # Once the lock is over or lifted, they sign in again with the right PIN.
            await end_sessions(
                conn, merchant_id, register_sessions.c.staff_id == staff_id, "locked", actor
            )
        if (
            actor.register_id
            and await _register_failures(conn, merchant_id, actor.register_id)
            == REGISTER_PIN_BUDGET
        ):
            await audit.record(conn, merchant_id, "register.pin_budget_exhausted", actor,
                               ("register", actor.register_id),
                               {"failures": REGISTER_PIN_BUDGET,
                                "window_seconds": REGISTER_BUDGET_SECONDS})  # fmt: skip
        raise Refused(
            "pin_incorrect",
            "the PIN is not this member's",
            attempts_left=max(0, MAX_PIN_FAILURES - (failures or 0)),
        )
    await conn.execute(update(_T).where(_T.c.id == staff_id).values(failed_pin_attempts=0))
    return member


async def _register_failures(conn: AsyncConnection, merchant_id: str, register_id: str) -> int:
    t = audit_log
    found = await conn.scalar(
        select(func.count()).where(
            t.c.register_id == register_id,
            t.c.action == "staff.pin_failed",
            t.c.occurred_at > func.now() - func.make_interval(0, 0, 0, 0, 0, 0,
                                                              REGISTER_BUDGET_SECONDS),
            t.c.merchant_id == merchant_id,
        )
    )  # fmt: skip
    return int(found or 0)


async def _register_budget(conn: AsyncConnection, merchant_id: str, actor: audit.Actor) -> None:
    """Refuse at once when the register has spent its wrong-PIN budget. Its row is locked
    first, so concurrent guesses at one register (for different members) count one by one."""
    assert actor.register_id is not None
    await conn.execute(
        select(registers.c.id).where(registers.c.id == actor.register_id).with_for_update()
    )
    if await _register_failures(conn, merchant_id, actor.register_id) >= REGISTER_PIN_BUDGET:
        raise Refused(
            "register_pin_budget_exhausted",
            "too many wrong PINs at this register: it signs no one in for a while",
            window_seconds=REGISTER_BUDGET_SECONDS,
        )


@dataclass(frozen=True)
class Session:
    id: str
    register_id: str
    staff_id: str
    started_at: datetime
    ended_at: datetime | None


def _session(row: Any) -> Session:
    return Session(row.id, row.register_id, row.staff_id, row.started_at, row.ended_at)


async def sign_in(
    engine: AsyncEngine,
    secret: str,
    merchant_id: str,
    register_id: str,
    location_id: str,
    staff_id: str,
    pin: str,
) -> Session:
    """A new session at the register (whoever was signed in there is signed out). A refusal
    commits what it recorded (the failure, the lock) and is raised after."""
    actor = audit.Actor(staff_id=staff_id, register_id=register_id)
    refused: Refused | None = None
    async with engine.begin() as conn:
        try:
            await _check_pin(
                conn, secret, merchant_id, staff_id, pin, location_id, actor, "staff_id"
            )
        except Refused as exc:
            refused = exc
        if refused is None:
            s = register_sessions
            await end_sessions(conn, merchant_id, s.c.register_id == register_id, "replaced", actor)
            row = (
                await conn.execute(
                    pg_insert(s)
                    .values(id=new_id("ses"), merchant_id=merchant_id, register_id=register_id,
                            staff_id=staff_id)
                    .returning(s)
                )
            ).one()  # fmt: skip
            session = _session(row)
            await audit.record(conn, merchant_id, "staff.signed_in", actor,
                               ("register_session", session.id))  # fmt: skip
    if refused is not None:
        raise refused
    return session


async def current_session(engine: AsyncEngine, session_id: str) -> Session | None:
    async with reads(engine) as conn:
        row = (
            await conn.execute(
                select(register_sessions).where(register_sessions.c.id == session_id)
            )
        ).first()
    return None if row is None else _session(row)


async def sign_out(
    engine: AsyncEngine, merchant_id: str, session_id: str, actor: audit.Actor
) -> Session | None:
    s = register_sessions
    async with engine.begin() as conn:
        row = (
            await conn.execute(
                update(s)
                .where(s.c.id == session_id, s.c.merchant_id == merchant_id,
                       s.c.ended_at.is_(None))
                .values(ended_at=func.now())
                .returning(s)
            )
        ).first()  # fmt: skip
        if row is None:
            return None
        await audit.record(conn, merchant_id, "staff.signed_out", actor,
                           ("register_session", session_id))  # fmt: skip
        return _session(row)


@dataclass(frozen=True)
class Override:
    id: str
    permission: str
    requested_by: str
    approved_by: str
    register_id: str
    granted_at: datetime
    expires_at: datetime
    used_at: datetime | None

    def message(self) -> pb.Override:
        """As its event carries it: the whole resource, as the grant answers it."""
        return pb.Override(
            id=self.id, permission=self.permission, requested_by=self.requested_by,
            approved_by=self.approved_by, register_id=self.register_id,
            granted_at=stamp(self.granted_at), expires_at=stamp(self.expires_at),
            used_at=stamp(self.used_at),
        )  # fmt: skip


def _override(row: Any) -> Override:
    return Override(row.id, row.permission, row.requested_by, row.approved_by, row.register_id,
                    row.granted_at, row.expires_at, row.used_at)  # fmt: skip


async def grant_override(
    engine: AsyncEngine,
    secret: str,
    merchant_id: str,
    register_id: str,
    location_id: str,
    session: Session,
    manager_id: str,
    pin: str,
    permission: str,
    request_id: str,
) -> Override:
    """A manager's PIN, given at the register, lets the signed-in member do one action of
    `permission` within OVERRIDE_SECONDS. The manager must hold the permission."""
    actor = audit.Actor(staff_id=session.staff_id, approved_by=manager_id,
                        register_id=register_id)  # fmt: skip
    refused: Refused | None = None
    granted: Override | None = None
    async with engine.begin() as conn:
        try:
            manager = await _check_pin(
                conn, secret, merchant_id, manager_id, pin, location_id, actor, "manager_id"
            )
            if permission not in await _permissions(conn, merchant_id, manager.role):
                raise Refused(
                    "approver_lacks_permission",
                    f"this member may not approve {permission}",
                    permission=permission,
                )
        except Refused as exc:
            refused = exc
        if refused is None:
            row = (
                await conn.execute(
                    pg_insert(overrides)
                    .values(
                        id=new_id("ovr"), merchant_id=merchant_id, register_id=register_id,
                        session_id=session.id, permission=permission,
                        requested_by=session.staff_id, approved_by=manager_id,
                        approver_version=manager.version, request_id=request_id or None,
                        expires_at=func.now()
                        + func.make_interval(0, 0, 0, 0, 0, 0, OVERRIDE_SECONDS),
                    )
                    .on_conflict_do_nothing(index_elements=["merchant_id", "request_id"])
                    .returning(overrides)
                )
            ).first()  # fmt: skip
            fresh = row is not None
            if row is None:
                # A retry of a grant that committed (its answer was lost): the same override,
                # not a second one to spend.
                row = (
                    await conn.execute(
                        select(overrides).where(
                            overrides.c.merchant_id == merchant_id,
                            overrides.c.request_id == request_id,
                        )
                    )
                ).one()
                if (row.session_id, row.permission, row.approved_by) != (
                    session.id, permission, manager_id
                ):  # fmt: skip
                    raise RequestReused()
            granted = _override(row)
            await audit.record(
                conn, merchant_id, "override.granted", actor, ("override", granted.id),
                {"permission": permission}, request_id,
            )  # fmt: skip
            if fresh:  # a retry announces nothing twice
                await outbox.publish(
                    conn, merchant_id, pb.OverrideGranted(override=granted.message())
                )
    if refused is not None:
        raise refused
    assert granted is not None
    return granted


async def use_override(
    engine: AsyncEngine, session_id: str, permission: str, request_id: str
) -> Override | None:
    """Take an unused, unexpired override of the session for `permission`; a retry of the
    request that took one gets the same one again."""
    o = overrides
    async with engine.begin() as conn:
        row = (
            await conn.execute(
                select(
                    o.c.id,
                    o.c.merchant_id,
                    o.c.approved_by,
                    o.c.approver_version,
                    registers.c.location_id,
                )
                .join(registers, registers.c.id == o.c.register_id)
                .where(
                    o.c.session_id == session_id,
                    o.c.permission == permission,
                    or_(
                        (o.c.used_at.is_(None)) & (o.c.expires_at > func.now()),
                        o.c.used_by_request == request_id,
                    ),
                )
                .order_by(o.c.used_by_request.is_(None), o.c.id)
                .limit(1)
                .with_for_update(skip_locked=True, of=o)
            )
        ).first()
        if row is None:
            return None
        # The manager's approval stands only while they may still do it themselves (not
        # demoted, deactivated, taken off this register's location, or their role stripped
        # of it since). A change to the manager at all since they approved spends it, even one
        # undone before it is used: demoted and promoted back, they approve again.
        approver = await _member(conn, row.merchant_id, row.approved_by)
        if approver is None or approver.status != "active":
            return None
        if row.approver_version is not None and approver.version != row.approver_version:
            return None
        if row.location_id not in approver.location_ids:
            return None
        if permission not in await _permissions(conn, row.merchant_id, approver.role):
            return None
        taken = (
            await conn.execute(
                update(o)
                .where(o.c.id == row.id)
                .values(used_at=func.now(), used_by_request=request_id)
                .returning(o)
            )
        ).one()
        return _override(taken)


async def give_back_override(engine: AsyncEngine, override_id: str, request_id: str) -> None:
    """The action the override was taken for was refused (it did nothing): the override may
    be used again."""
    o = overrides
    async with engine.begin() as conn:
        await conn.execute(
            update(o)
            .where(o.c.id == override_id, o.c.used_by_request == request_id)
            .values(used_at=None, used_by_request=None)
        )
