"""Catalog protobuf messages <-> domain: variants, product input, statuses."""

from __future__ import annotations

from pos.common.v1 import money_pb2
from pos.inventory.v1 import inventory_pb2
from pos_inventory.domain.catalog import ProductFields, ProductStatus, Variant
from pos_kit.enums import ProtoEnum
from pos_kit.errors import FieldViolation, InvalidArgument
from pos_kit.money import Money, MoneyError
from pos_kit.proto_money import to_proto

STATUSES = ProtoEnum(ProductStatus, inventory_pb2.ProductStatus)


def variant_to_proto(v: Variant) -> inventory_pb2.ProductVariant:
    msg = inventory_pb2.ProductVariant(
        id=v.id, sku=v.sku, name=v.name, options=v.options, barcodes=v.barcodes
    )
    if v.price is not None:
        msg.price.CopyFrom(to_proto(v.price))
    if v.unit_cost is not None:
        msg.unit_cost.CopyFrom(to_proto(v.unit_cost))
    return msg


def _money(path: str, value: money_pb2.Money, problems: list[FieldViolation]) -> Money:
    try:
        return Money(value.amount, value.currency)
    except MoneyError as exc:
        problems.append(FieldViolation(f"{path}.currency", str(exc)))
        return Money(value.amount, "USD")  # a stand-in: the problem above refuses the input


def fields_from_proto(
    msg: inventory_pb2.ProductInput, mask: set[str] | None = None
) -> ProductFields:
    """Client input as domain fields; a bad currency anywhere is a field error, all at once.

    With a `mask`, only the fields it names are read (the others are left to their defaults).
    Variant ids sent by a client are ignored: a variant is known by its SKU.
    """
    problems: list[FieldViolation] = []
    wanted = mask if mask is not None else {"price", "variants"}
    price = _money("price", msg.price, problems) if "price" in wanted else Money(0, "USD")
    variants = [
        Variant(
            "",
            v.sku,
            v.name,
            dict(v.options),
            _money(f"variants[{i}].price", v.price, problems) if v.HasField("price") else None,
            list(v.barcodes),
            _money(f"variants[{i}].unit_cost", v.unit_cost, problems)
            if v.HasField("unit_cost")
            else None,
        )
        for i, v in enumerate(msg.variants if "variants" in wanted else [])
    ]
    fields = ProductFields(
        msg.sku,
        msg.name,
        price,
        msg.description,
        msg.category,
        msg.tax_category,
        msg.external_id,
        list(msg.barcodes),
        variants,
        msg.open_price,
        _money("unit_cost", msg.unit_cost, problems)
        if "unit_cost" in (mask or {"unit_cost"}) and msg.HasField("unit_cost")
        else None,
    )
    if problems:
        raise InvalidArgument("the product is not valid", problems)
    return fields


def create_input(req: inventory_pb2.CreateProductRequest) -> inventory_pb2.ProductInput:
    return inventory_pb2.ProductInput(
        sku=req.sku,
        name=req.name,
        price=req.price,
        description=req.description,
        category=req.category,
        tax_category=req.tax_category,
        external_id=req.external_id,
        barcodes=req.barcodes,
        variants=req.variants,
        open_price=req.open_price,
        unit_cost=req.unit_cost if req.HasField("unit_cost") else None,
    )
