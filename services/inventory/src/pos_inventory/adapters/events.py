"""Domain events -> the integration events of pos.inventory.v1: one mapper per event."""

from __future__ import annotations

from collections.abc import Callable

from google.protobuf.message import Message

from pos.inventory.v1 import events_pb2, stock_events_pb2
from pos_inventory.adapters.messages import (
    entry_to_proto,
    level_to_proto,
    location_to_proto,
    product_to_proto,
    reason_to_proto,
    reservation_to_proto,
)
from pos_inventory.domain.model import (
    LocationCreated,
    LocationUpdated,
    LowStock,
    ProductArchived,
    ProductCreated,
    ProductUpdated,
    ReservationChanged,
    ReservationCommitted,
    ReservationCreated,
    ReservationExpired,
    ReservationReleased,
    StockChanged,
)
from pos_kit.events import EventRegistry

REGISTRY = EventRegistry()


@REGISTRY.maps(LocationCreated)
def _location_created(event: LocationCreated) -> events_pb2.LocationCreated:
    return events_pb2.LocationCreated(location=location_to_proto(event.location))


@REGISTRY.maps(LocationUpdated)
def _location_updated(event: LocationUpdated) -> events_pb2.LocationUpdated:
    return events_pb2.LocationUpdated(location=location_to_proto(event.location))


@REGISTRY.maps(ProductCreated)
def _product_created(event: ProductCreated) -> events_pb2.ProductCreated:
    return events_pb2.ProductCreated(product=product_to_proto(event.product))


@REGISTRY.maps(ProductUpdated)
def _product_updated(event: ProductUpdated) -> events_pb2.ProductUpdated:
    return events_pb2.ProductUpdated(product=product_to_proto(event.product))


@REGISTRY.maps(ProductArchived)
def _product_archived(event: ProductArchived) -> events_pb2.ProductArchived:
    return events_pb2.ProductArchived(product=product_to_proto(event.product))


@REGISTRY.maps(StockChanged)
def _stock_changed(event: StockChanged) -> events_pb2.StockChanged:
    entry = event.entry
    return events_pb2.StockChanged(
        level=level_to_proto(event.level),
        delta=entry.delta,
        reason=reason_to_proto(entry.reason),
        entry=entry_to_proto(entry),
    )


@REGISTRY.maps(LowStock)
def _low_stock(event: LowStock) -> stock_events_pb2.LowStock:
    return stock_events_pb2.LowStock(level=level_to_proto(event.level), threshold=event.threshold)


def _reservation_event(
    message: Callable[..., Message],
) -> Callable[[ReservationChanged], Message]:
    # `Callable[..., Message]`, not `type[Message]`: the base class's stubs take no fields.
    def mapper(event: ReservationChanged) -> Message:
        return message(
            reservation=reservation_to_proto(event.reservation),
            levels=[level_to_proto(level) for level in event.levels],
        )

    return mapper


# The four reservation events carry the same fields: the reservation and its lines' levels.
for _domain, _message in (
    (ReservationCreated, stock_events_pb2.ReservationCreated),
    (ReservationCommitted, stock_events_pb2.ReservationCommitted),
    (ReservationReleased, stock_events_pb2.ReservationReleased),
    (ReservationExpired, stock_events_pb2.ReservationExpired),
):
    REGISTRY.maps(_domain)(_reservation_event(_message))
