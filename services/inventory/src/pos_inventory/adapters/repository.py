"""PostgreSQL repositories and the unit of work for inventory."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from sqlalchemy import Row, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from pos_inventory.adapters import events
from pos_inventory.adapters.products import SqlProducts
from pos_inventory.adapters.reservations import SqlExpiry, SqlReservations
from pos_inventory.adapters.stock import SqlStock
from pos_inventory.adapters.tables import locations
from pos_inventory.domain.model import (
    Address,
    GeoPoint,
    Location,
    LocationKind,
    LocationStatus,
    LocationTax,
)
from pos_kit.changes import list_page
from pos_kit.paging import PageRequest
from pos_kit.uow import UnitOfWork


def _location(row: Row[Any]) -> Location:
    m = row._mapping
    has_geo = m["latitude"] is not None and m["longitude"] is not None
    return Location(
        id=m["id"],
        name=m["name"],
        currency=m["currency"],
        tax_rate_bps=m["tax_rate_bps"],
        version=m["version"],
        created_at=m["created_at"],
        kind=LocationKind(m["kind"]),
        address=Address(**m["address"]),
        geo=GeoPoint(m["latitude"], m["longitude"]) if has_geo else None,
        time_zone=m["time_zone"],
        tax_rates_bps={k: int(v) for k, v in m["tax_rates"].items()},
        pickup_enabled=m["pickup_enabled"],
        ship_enabled=m["ship_enabled"],
        prices_include_tax=m["prices_include_tax"],
        taxes=[
            LocationTax(t["name"], t["rate_bps"], dict(t["rates_bps"]), t["compound"])
            for t in m["taxes"]
        ],
        updated_at=m["updated_at"],
        status=LocationStatus(m["status"]),
    )


class SqlLocations:
    def __init__(self, conn: AsyncConnection, merchant_id: str) -> None:
        self._conn = conn
        self._merchant = merchant_id

    async def add(self, location: Location) -> None:
        row = (
            await self._conn.execute(
                insert(locations)
                .values(
                    merchant_id=self._merchant,
                    id=location.id,
                    name=location.name,
                    currency=location.currency,
                    tax_rate_bps=location.tax_rate_bps,
                    kind=location.kind.value,
                    address=asdict(location.address),
                    latitude=location.geo.latitude if location.geo else None,
                    longitude=location.geo.longitude if location.geo else None,
                    time_zone=location.time_zone,
                    tax_rates=location.tax_rates_bps,
                    pickup_enabled=location.pickup_enabled,
                    ship_enabled=location.ship_enabled,
                    prices_include_tax=location.prices_include_tax,
                    taxes=[asdict(t) for t in location.taxes],
                )
                .returning(locations.c.created_at, locations.c.updated_at)
            )
        ).one()
        location.created_at = row.created_at
        location.updated_at = row.updated_at

    async def count_for_add(self) -> int:
        """How many locations the merchant has, holding a lock (to the end of the transaction)
        that makes two concurrent additions count one after the other."""
        await self._conn.execute(
            select(func.pg_advisory_xact_lock(func.hashtext("locations:" + self._merchant)))
        )
        count = await self._conn.execute(
            select(func.count())
            .select_from(locations)
            .where(locations.c.merchant_id == self._merchant)
        )
        return int(count.scalar_one())

    async def get(self, location_id: str, lock: bool = False) -> Location | None:
        query = select(locations).where(
            locations.c.merchant_id == self._merchant, locations.c.id == location_id
        )
        row = (await self._conn.execute(query.with_for_update() if lock else query)).first()
        return _location(row) if row else None

    async def save(self, location: Location) -> None:
        changed = await self._conn.execute(
            update(locations)
            .where(locations.c.merchant_id == self._merchant, locations.c.id == location.id)
            .values(
                name=location.name,
                tax_rate_bps=location.tax_rate_bps,
                address=asdict(location.address),
                latitude=location.geo.latitude if location.geo else None,
                longitude=location.geo.longitude if location.geo else None,
                time_zone=location.time_zone,
                tax_rates=location.tax_rates_bps,
                pickup_enabled=location.pickup_enabled,
                ship_enabled=location.ship_enabled,
                prices_include_tax=location.prices_include_tax,
                taxes=[asdict(t) for t in location.taxes],
                status=location.status.value,
                version=location.version,
            )
            .returning(locations.c.updated_at)
        )
        location.updated_at = changed.scalar_one()

    async def many(self, location_ids: list[str]) -> list[Location]:
        rows = await self._conn.execute(
            select(locations).where(
                locations.c.merchant_id == self._merchant, locations.c.id.in_(location_ids)
            )
        )
        return [_location(r) for r in rows]

    async def all(self) -> list[Location]:
        """Every location of the merchant: a few hundred at most, read for sourcing."""
        rows = await self._conn.execute(
            select(locations).where(locations.c.merchant_id == self._merchant)
        )
        return [_location(r) for r in rows]

    async def list(self, page: PageRequest, status: LocationStatus | None = None) -> list[Location]:
        """By id, or with `page.since` the change feed (oldest change first); only those in
        `status` when given."""
        query = select(locations).where(locations.c.merchant_id == self._merchant)
        if status is not None:
            query = query.where(locations.c.status == status.value)
        rows = await list_page(self._conn, query, locations.c.updated_at, locations.c.id, page)
        return [_location(r) for r in rows]


class InventoryUow(UnitOfWork):
    """The kit's unit of work plus this service's repositories and event mapping."""

    events = events.REGISTRY

    @property
    def locations(self) -> SqlLocations:
        return SqlLocations(self.conn, self.merchant_id)

    @property
    def products(self) -> SqlProducts:
        return SqlProducts(self.conn, self.merchant_id)

    @property
    def stock(self) -> SqlStock:
        return SqlStock(self.conn, self.merchant_id, self.all_rows)

    @property
    def reservations(self) -> SqlReservations:
        return SqlReservations(self.conn, self.merchant_id)

    # --- The one exception to binding: the expiry sweep serves every merchant at once ------

    @property
    def expiry(self) -> SqlExpiry:
        """Due reservations of every merchant; used only by the sweep, on an unbound unit of
        work, so that one transaction can expire a batch whoever holds them."""
        return SqlExpiry(self.conn)

    def publish_for(self, merchant_id: str, event: object) -> None:
        """`publish`, for the merchant an expired reservation belongs to (the sweep's only)."""
        self.emit(self.events.to_outgoing(event, merchant_id))
