"""Which register, member and shift a payment or refund is taken at.

The register and the member come from the call's metadata (the gateway sets them from a
register's credential; pos_kit.context) and are kept on the row. The shift is attached when the
money moves (a payment's first capture, each capture operation's success, a refund's success),
in that same transaction: it is the shift open at the row's register (a capture's: its
payment's) then, read with a share lock on the shift's row. A close
locks that row for update, so it waits for every transaction that attached money to the shift
to commit before it sums them, and money that moves after the close finds no open shift. So a
shift's totals never miss a movement nor count one twice, however sales, captures recorded
after the processor answered, and the close interleave.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, Table, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from pos_kit.context import register_var, staff_var
from pos_payment.adapters.tables import shifts


def stamp() -> dict[str, str]:
    """The register and member of the call, for a new payment or refund row."""
    register = register_var.get() or ""
    return {"register_id": register, "staff_id": staff_var.get() or ""} if register else {}


async def attach(
    conn: AsyncConnection,
    table: Table,
    merchant_id: str,
    row_id: str,
    moved: ColumnElement[bool],
) -> None:
    """Attach the row to its register's open shift, once its money has moved (`moved`)."""
    row = (
        await conn.execute(
            select(table.c.register_id).where(
                table.c.merchant_id == merchant_id,
                table.c.id == row_id,
                table.c.register_id != "",
                table.c.shift_id == "",
                moved,
            )
        )
    ).first()
    if row is not None:
        await attach_at(conn, table, merchant_id, row_id, row.register_id)


async def attach_at(
    conn: AsyncConnection, table: Table, merchant_id: str, row_id: str, register_id: str
) -> None:
    """Attach a row whose money has moved at `register_id`, and which has no shift yet, to
    that register's open shift (when one is open)."""
    shift = await open_shift(conn, merchant_id, register_id)
    if shift is not None:
        await conn.execute(
            update(table)
            .where(table.c.merchant_id == merchant_id, table.c.id == row_id)
            .values(shift_id=shift[0])
        )


async def open_shift(
    conn: AsyncConnection, merchant_id: str, register_id: str
) -> tuple[str, str] | None:
    """The register's open shift, its id and currency, read with a share lock: money moved
    in this transaction counts towards it, and a close waits for the transaction."""
    row = (
        await conn.execute(
            select(shifts.c.id, shifts.c.currency)
            .where(
                shifts.c.merchant_id == merchant_id,
                shifts.c.register_id == register_id,
                shifts.c.status == "open",
            )
            .with_for_update(read=True)
        )
    ).first()
    return None if row is None else (row.id, row.currency)
