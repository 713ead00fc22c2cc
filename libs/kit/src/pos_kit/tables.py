"""The plumbing tables every service database has: outbox, inbox and processed requests.

Each service adds them to its own MetaData (so its Alembic history creates them beside its
domain tables) with `add_kit_tables`.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    func,
    text,
)


@dataclass(frozen=True)
class KitTables:
    outbox: Table
    inbox: Table
    requests: Table


def outbox_table(metadata: MetaData) -> Table:
    """The outbox alone, for a database that publishes events but consumes none and keeps its
    stored answers its own way (the gateway's)."""
    return Table(
        "outbox",
        metadata,
        Column("seq", BigInteger, Identity(), primary_key=True),
        Column("event_id", Text, nullable=False, unique=True),
        Column("subject", Text, nullable=False),
        Column("event_type", Text, nullable=False),
        Column("merchant_id", Text, nullable=False),
        Column("payload", LargeBinary, nullable=False),
        Column("traceparent", Text),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("published_at", DateTime(timezone=True)),
        # The relay only ever looks at unpublished rows: keep that index tiny.
        Index("outbox_unpublished", "seq", postgresql_where=text("published_at IS NULL")),
    )


def add_kit_tables(metadata: MetaData) -> KitTables:
    outbox = outbox_table(metadata)
    inbox = Table(
        "inbox",
        metadata,
        Column("consumer", Text, nullable=False),
        Column("event_id", Text, nullable=False),
        Column("processed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        PrimaryKeyConstraint("consumer", "event_id", name="inbox_pkey"),
    )
    requests = Table(
        "processed_requests",
        metadata,
        Column("merchant_id", Text, nullable=False),
        Column("request_id", Text, nullable=False),
        Column("operation", Text, nullable=False),
        Column("fingerprint", LargeBinary, nullable=False),
        Column("response", LargeBinary),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        PrimaryKeyConstraint("merchant_id", "request_id", name="processed_requests_pkey"),
    )
    return KitTables(outbox, inbox, requests)
