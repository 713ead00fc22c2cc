"""Ending register sessions, each end in the audit log.

A member is signed out by signing out, and also when someone else signs in at the register,
when the member is deactivated, locked by wrong PINs or taken off the register's location, and
when the register is retired or paired with a new device. Each of those ends a session as
surely as a sign-out, so each is recorded as one (`staff.signed_out` with the `reason`), in the
transaction that ends it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.expression import ColumnElement

from pos_gateway import audit
from pos_gateway.tables import register_sessions, registers


async def end_sessions(
    conn: AsyncConnection,
    merchant_id: str,
    which: ColumnElement[bool],
    reason: str,
    by: audit.Actor,
) -> list[Any]:
    """End the merchant's open sessions `which` selects; each ended one is an entry naming the
    member and the register, the `reason`, and who caused it (`by`)."""
    s = register_sessions
    ended = (
        await conn.execute(
            update(s)
            .where(s.c.merchant_id == merchant_id, s.c.ended_at.is_(None), which)
            .values(ended_at=func.now())
            .returning(s.c.id, s.c.staff_id, s.c.register_id)
        )
    ).all()
    for row in ended:
        details = {"reason": reason, **_cause(by)}
        actor = audit.Actor(staff_id=row.staff_id, register_id=row.register_id)
        await audit.record(
            conn, merchant_id, "staff.signed_out", actor, ("register_session", row.id), details
        )
    return list(ended)


def at_registers_outside(location_ids: list[str]) -> ColumnElement[bool]:
    """The sessions at registers whose location is not one of `location_ids`."""
    return register_sessions.c.register_id.in_(
        select(registers.c.id).where(registers.c.location_id.not_in(location_ids))
    )


def _cause(by: audit.Actor) -> dict[str, str]:
    if by.staff_id:
        return {"by_staff_id": by.staff_id}
    if by.credential_id:
        return {"by_credential_id": by.credential_id}
    return {}
