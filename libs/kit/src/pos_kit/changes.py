"""Change feeds that never skip: lists with `updated_since` and a cursor over (updated_at, id).

A partner polls a list ordered by `updated_at` and resumes from the last `updated_at` it saw.
That is gap-free only if no row can still appear with an `updated_at` below what a poll already
returned. Two things make it so:

1. `updated_at` is the moment of the write (`clock_timestamp()`, set by a trigger on every
   insert and update: `stamp_changes_sql`), not the start of its transaction (`now()`), so a
   transaction that begins early but writes late does not stamp its row in the past.
2. A poll returns only rows changed before the *horizon*: the start of the oldest transaction
   in this database that has written something and not yet ended (from `pg_stat_activity`,
   read in a statement before the rows are read). A row that is still uncommitted was written
   after its transaction started, so at or after the horizon: it is held back until it
   commits, and no row below the horizon can appear later.

The price: while a transaction is open, the feed stops at its start; it never skips. Every
writer of a service's database connects as that service's role, whose sessions it can see.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Row, Select, text, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from pos_kit.paging import ChangeCursor, PageRequest

_HORIZON = text(
    "SELECT least(clock_timestamp(), min(xact_start)) FROM pg_stat_activity "
    "WHERE datname = current_database() AND backend_xid IS NOT NULL "
    "AND pid <> pg_backend_pid()"
)


async def horizon(conn: AsyncConnection) -> datetime:
    """Rows changed before this instant are all committed, and no more can join them."""
    value: datetime = (await conn.execute(_HORIZON)).scalar_one()
    return value


async def list_changed(
    conn: AsyncConnection,
    query: Select[Any],
    updated_at: ColumnElement[Any],
    item_id: ColumnElement[Any],
    since: datetime,
    cursor: ChangeCursor | None,
    limit: int,
) -> Sequence[Row[Any]]:
    """Rows changed at or after `since` and before the horizon, oldest change first."""
    before = await horizon(conn)  # first: rows read after it cannot be older than it
    query = query.where(updated_at >= since, updated_at < before)
    if cursor is not None:
        query = query.where(tuple_(updated_at, item_id) > tuple_(cursor.updated_at, cursor.id))
    rows: Sequence[Row[Any]] = (
        await conn.execute(query.order_by(updated_at, item_id).limit(limit))
    ).all()
    return rows


async def list_page(
    conn: AsyncConnection,
    query: Select[Any],
    updated_at: ColumnElement[Any],
    item_id: ColumnElement[Any],
    page: PageRequest,
) -> Sequence[Row[Any]]:
    """A page of a list that is also a change feed: by id, or with `page.since` by change."""
    if page.since is not None:
        return await list_changed(
            conn, query, updated_at, item_id, page.since, page.cursor, page.fetch
        )
    if page.after:
        query = query.where(item_id > page.after)
    rows: Sequence[Row[Any]] = (await conn.execute(query.order_by(item_id).limit(page.fetch))).all()
    return rows


STAMP_FUNCTION = """
CREATE OR REPLACE FUNCTION stamp_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- The moment of the write, not the transaction's start: see pos_kit/changes.py.
    NEW.updated_at := clock_timestamp();
    RETURN NEW;
END
$$
"""


def stamp_changes_sql(table: str, version_column: str = "") -> list[str]:
    """Statements for a migration: `table.updated_at` is stamped on every insert and update.

    With `version_column`, only on an update that changes it: a table whose rows are also
    written for bookkeeping (an order's `touched_at`) changes for the feed only when the
    resource does, and every change of the resource bumps its version."""
    if not version_column:
        return [
            STAMP_FUNCTION,
            f"DROP TRIGGER IF EXISTS {table}_stamp_change ON {table}",
            f"CREATE TRIGGER {table}_stamp_change BEFORE INSERT OR UPDATE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION stamp_change()",
        ]
    return [
        STAMP_FUNCTION,
        f"DROP TRIGGER IF EXISTS {table}_stamp_change ON {table}",
        f"DROP TRIGGER IF EXISTS {table}_stamp_insert ON {table}",
        f"CREATE TRIGGER {table}_stamp_insert BEFORE INSERT ON {table} "
        "FOR EACH ROW EXECUTE FUNCTION stamp_change()",
        f"CREATE TRIGGER {table}_stamp_change BEFORE UPDATE ON {table} FOR EACH ROW "
        f"WHEN (OLD.{version_column} IS DISTINCT FROM NEW.{version_column}) "
        "EXECUTE FUNCTION stamp_change()",
    ]
