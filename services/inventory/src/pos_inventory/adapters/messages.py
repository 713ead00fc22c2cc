"""Domain objects <-> pos.inventory.v1 protobuf messages."""

from __future__ import annotations

from pos.inventory.v1 import inventory_pb2
from pos_inventory.adapters.product_messages import STATUSES, variant_to_proto
from pos_inventory.domain.catalog import Product
from pos_inventory.domain.model import Location, Reason, StockLevel
from pos_kit.proto_money import to_proto

REASONS = {
    inventory_pb2.ADJUSTMENT_REASON_RECEIVED: Reason.RECEIVED,
    inventory_pb2.ADJUSTMENT_REASON_SOLD: Reason.SOLD,
    inventory_pb2.ADJUSTMENT_REASON_RETURNED: Reason.RETURNED,
    inventory_pb2.ADJUSTMENT_REASON_DAMAGED: Reason.DAMAGED,
    inventory_pb2.ADJUSTMENT_REASON_CORRECTION: Reason.CORRECTION,
}
REASON_CODES = {reason: code for code, reason in REASONS.items()}


def location_to_proto(x: Location) -> inventory_pb2.Location:
    msg = inventory_pb2.Location(
        id=x.id, name=x.name, currency=x.currency, tax_rate_bps=x.tax_rate_bps, version=x.version
    )
    if x.created_at is not None:
        msg.created_at.FromDatetime(x.created_at)
    return msg


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
        status=STATUSES[p.status],
        external_id=p.external_id,
        barcodes=p.barcodes,
        variants=[variant_to_proto(v) for v in p.variants],
    )
    if p.created_at is not None:
        msg.created_at.FromDatetime(p.created_at)
    if p.updated_at is not None:
        msg.updated_at.FromDatetime(p.updated_at)
    return msg


def level_to_proto(s: StockLevel) -> inventory_pb2.StockLevel:
    return inventory_pb2.StockLevel(
        sku=s.sku,
        location_id=s.location_id,
        on_hand=s.on_hand,
        reserved=s.reserved,
        available=s.available,
    )
