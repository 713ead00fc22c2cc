"""Domain objects <-> pos.inventory.v1 protobuf messages."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from pos.inventory.v1 import inventory_pb2, stock_pb2
from pos_inventory.adapters.product_messages import STATUSES, variant_to_proto
from pos_inventory.domain.catalog import Product
from pos_inventory.domain.ledger import EntryKind, LedgerEntry
from pos_inventory.domain.model import (
    Address,
    GeoPoint,
    Location,
    LocationKind,
    LocationStatus,
    LocationTax,
    Reason,
    StockLevel,
)
from pos_inventory.domain.reservations import Line, Reservation, ReservationStatus
from pos_inventory.domain.sourcing import Strategy
from pos_kit.enums import ProtoEnum
from pos_kit.proto_money import to_proto

REASONS = ProtoEnum(Reason, inventory_pb2.AdjustmentReason)
KINDS = ProtoEnum(LocationKind, inventory_pb2.LocationKind)
LOCATION_STATUSES = ProtoEnum(LocationStatus, inventory_pb2.LocationStatus)
ENTRY_KINDS = ProtoEnum(EntryKind, inventory_pb2.LedgerEntryKind)
RESERVATION_STATUSES = ProtoEnum(ReservationStatus, stock_pb2.ReservationStatus)
STRATEGIES = ProtoEnum(Strategy, stock_pb2.SourcingStrategy)


def reason_to_proto(reason: Reason | None) -> inventory_pb2.AdjustmentReason.ValueType:
    """A count or a transfer has no reason: unspecified."""
    return (
        inventory_pb2.ADJUSTMENT_REASON_UNSPECIFIED if reason is None else REASONS.to_proto(reason)
    )


def _stamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def when(stamp: Timestamp, is_set: bool) -> datetime | None:
    return stamp.ToDatetime(tzinfo=UTC) if is_set else None


def location_to_proto(x: Location) -> inventory_pb2.Location:
    msg = inventory_pb2.Location(
        id=x.id,
        name=x.name,
        currency=x.currency,
        tax_rate_bps=x.tax_rate_bps,
        version=x.version,
        kind=KINDS.to_proto(x.kind),
        address=inventory_pb2.Address(**asdict(x.address)),
        time_zone=x.time_zone,
        tax_rates_bps=x.tax_rates_bps,
        pickup_enabled=x.pickup_enabled,
        ship_enabled=x.ship_enabled,
        prices_include_tax=x.prices_include_tax,
        taxes=[
            inventory_pb2.LocationTax(
                name=t.name, rate_bps=t.rate_bps, rates_bps=t.rates_bps, compound=t.compound
            )
            for t in x.taxes
        ],
        status=LOCATION_STATUSES.to_proto(x.status),
    )
    if x.geo is not None:
        msg.geo.CopyFrom(geo_to_proto(x.geo))
    if x.created_at is not None:
        msg.created_at.FromDatetime(x.created_at)
    if x.updated_at is not None:
        msg.updated_at.FromDatetime(x.updated_at)
    return msg


def location_from_proto(request: inventory_pb2.CreateLocationRequest) -> Location:
    return Location(
        id="",
        currency=request.currency,
        kind=KINDS.optional(request.kind, "kind") or LocationKind.STORE,
        **_settings(request),  # type: ignore[arg-type]
    )


def location_changes(request: inventory_pb2.UpdateLocationRequest) -> dict[str, object]:
    """The fields the request's mask names, as the domain holds them; a name that is no
    changeable field is kept (valued None), for the handler to refuse."""
    values = _settings(request)
    if "status" in request.update_mask.paths:
        values["status"] = LOCATION_STATUSES.from_proto(request.status, "status")
    return {name: values.get(name) for name in request.update_mask.paths}


def _settings(
    r: inventory_pb2.CreateLocationRequest | inventory_pb2.UpdateLocationRequest,
) -> dict[str, object]:
    """What a location's creation sets and a change may change, read one way for both."""
    a = r.address
    return {
        "name": r.name,
        "tax_rate_bps": r.tax_rate_bps,
        "address": Address(a.line1, a.line2, a.city, a.region, a.postal_code, a.country),
        "geo": geo_from_proto(r.geo) if r.HasField("geo") else None,
        "time_zone": r.time_zone or "UTC",
        "tax_rates_bps": dict(r.tax_rates_bps),
        "pickup_enabled": r.pickup_enabled,
        "ship_enabled": r.ship_enabled,
        "prices_include_tax": r.prices_include_tax,
        "taxes": [
            LocationTax(t.name.strip(), t.rate_bps, dict(t.rates_bps), t.compound) for t in r.taxes
        ],
    }


def geo_to_proto(g: GeoPoint) -> inventory_pb2.GeoPoint:
    return inventory_pb2.GeoPoint(latitude=g.latitude, longitude=g.longitude)


def geo_from_proto(g: inventory_pb2.GeoPoint) -> GeoPoint:
    return GeoPoint(g.latitude, g.longitude)


def product_to_proto(p: Product) -> inventory_pb2.Product:
    msg = inventory_pb2.Product(
        id=p.id,
        sku=p.sku,
        name=p.name,
        price=to_proto(p.price),
        version=p.version,
        description=p.description,
        category=p.category,
        tax_category=p.tax_category,
        status=STATUSES.to_proto(p.status),
        external_id=p.external_id,
        barcodes=p.barcodes,
        variants=[variant_to_proto(v) for v in p.variants],
        open_price=p.open_price,
    )
    if p.unit_cost is not None:
        msg.unit_cost.CopyFrom(to_proto(p.unit_cost))
    if p.created_at is not None:
        msg.created_at.FromDatetime(p.created_at)
    if p.updated_at is not None:
        msg.updated_at.FromDatetime(p.updated_at)
    return msg


def level_to_proto(s: StockLevel) -> inventory_pb2.StockLevel:
    msg = inventory_pb2.StockLevel(
        sku=s.sku,
        location_id=s.location_id,
        on_hand=s.on_hand,
        reserved=s.reserved,
        available=s.available,
    )
    if s.updated_at is not None:
        msg.updated_at.FromDatetime(s.updated_at)
    return msg


def entry_to_proto(e: LedgerEntry) -> inventory_pb2.LedgerEntry:
    return inventory_pb2.LedgerEntry(
        id=e.id,
        sku=e.sku,
        location_id=e.location_id,
        kind=ENTRY_KINDS.to_proto(e.kind),
        reason=reason_to_proto(e.reason),
        quantity=e.quantity,
        delta=e.delta,
        on_hand_after=e.on_hand_after,
        superseded=e.superseded,
        occurred_at=_stamp(e.occurred_at),
        recorded_at=_stamp(e.recorded_at),
        reference=e.reference,
        note=e.note,
    )


def lines_from_proto(lines: list[stock_pb2.StockLine]) -> list[Line]:
    return [(line.sku, line.quantity) for line in lines]


def lines_to_proto(lines: list[Line]) -> list[stock_pb2.StockLine]:
    return [stock_pb2.StockLine(sku=sku, quantity=quantity) for sku, quantity in lines]


def reservation_to_proto(r: Reservation) -> stock_pb2.Reservation:
    msg = stock_pb2.Reservation(
        id=r.id,
        location_id=r.location_id,
        status=RESERVATION_STATUSES.to_proto(r.status),
        lines=lines_to_proto(r.lines),
        reference=r.reference,
    )
    for field, moment in (
        ("expires_at", r.expires_at),
        ("created_at", r.created_at),
        ("updated_at", r.updated_at),
    ):
        if moment is not None:
            getattr(msg, field).FromDatetime(moment)
    return msg
