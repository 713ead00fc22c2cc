"""Batch upsert of products by external_id: each item on its own, the whole batch in a few
statements (one lock-and-read per key kind, one write per table), not one round trip per item."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from enum import Enum

from pos_inventory.domain.barcodes import barcode_key
from pos_inventory.domain.catalog import (
    Product,
    ProductFields,
    concurrent_change,
    normalized,
    product_violations,
)
from pos_inventory.domain.model import ProductCreated, ProductUpdated
from pos_inventory.service.catalog import (
    barcode_fields,
    sku_fields,
    sku_has_stock,
    still_stocked,
    with_variant_ids,
)
from pos_inventory.service.ports import InventoryUnitOfWork
from pos_kit.errors import DomainError, FieldViolation, InvalidArgument
from pos_kit.ids import new_id

MAX_BATCH = 1000


class Outcome(Enum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    FAILED = "failed"


@dataclass
class ItemResult:
    index: int
    external_id: str
    outcome: Outcome
    product: Product | None = None
    error: DomainError | None = None


def _failed(
    index: int, fields: ProductFields, code: str, violations: list[FieldViolation]
) -> ItemResult:
    message = "; ".join(f"{v.field}: {v.description}" for v in violations)
    return ItemResult(
        index, fields.external_id, Outcome.FAILED, error=DomainError(message, code, violations)
    )


def _keys(fields: ProductFields) -> list[str]:
    codes = [*fields.barcodes, *(b for v in fields.variants for b in v.barcodes)]
    return [barcode_key(c) for c in codes]


def _skus(fields: ProductFields) -> list[str]:
    return [fields.sku, *(v.sku for v in fields.variants)]


def check_batch(size: int) -> None:
    if not 1 <= size <= MAX_BATCH:
        raise InvalidArgument(
            f"a batch holds 1 to {MAX_BATCH} products, not {size}",
            [FieldViolation("products", f"must hold 1 to {MAX_BATCH} items")],
            "batch_too_large" if size else "invalid_argument",
        )


async def upsert_products(
    uow: InventoryUnitOfWork, items: list[ProductFields | DomainError]
) -> list[ItemResult]:
    """Create or replace each product named by its external_id; a result per item, in order.

    An item is checked against the catalog as it was before the batch: an item cannot take a
    SKU another item of the same batch gives up.
    """
    check_batch(len(items))
    results: dict[int, ItemResult] = {}
    good: dict[int, ProductFields] = {}
    for i, item in enumerate(items):
        if isinstance(item, DomainError):
            results[i] = ItemResult(i, "", Outcome.FAILED, error=item)
            continue
        fields = normalized(item)
        problems = product_violations(fields)
        if not fields.external_id:
            problems.append(FieldViolation("external_id", "is required to upsert"))
        if problems:
            results[i] = _failed(i, fields, "invalid_argument", problems)
        else:
            good[i] = fields

    # Keys named twice in one batch: which item is meant is a guess, so neither applies.
    ext = Counter(f.external_id for f in good.values())
    skus = Counter(s for f in good.values() for s in set(_skus(f)))
    codes = Counter(k for f in good.values() for k in set(_keys(f)))
    for i, f in list(good.items()):
        twice = (
            [FieldViolation("external_id", "appears in another item")]
            if ext[f.external_id] > 1
            else []
        )
        twice += [
            FieldViolation("sku", f"{s} appears in another item") for s in _skus(f) if skus[s] > 1
        ]
        twice += [
            FieldViolation("barcodes", f"{k} appears in another item")
            for k in _keys(f)
            if codes[k] > 1
        ]
        if twice:
            results[i] = _failed(i, f, "duplicate_in_batch", twice)
            del good[i]

    existing = {
        p.external_id: p
        for p in await uow.products.by_external_ids(
            [f.external_id for f in good.values()], lock=True
        )
    }
    sku_owner = {
        s: p.id
        for p in await uow.products.by_skus([s for f in good.values() for s in _skus(f)])
        for s in p.skus()
    }
    # The SKUs each item would take off its product, locked and read for stock in one go (in
    # SKU order, like every lock of SKUs: one item at a time could deadlock with a transfer).
    dropping = {
        i: set(existing[f.external_id].skus()) - set(_skus(f))
        for i, f in good.items()
        if f.external_id in existing
    }
    stocked = set(await still_stocked(uow, set().union(*dropping.values())))
    all_keys = [k for f in good.values() for k in _keys(f)]
    code_owner = (
        {k: p.id for p in await uow.products.by_barcodes(all_keys) for k in p.barcode_skus()}
        if all_keys
        else {}
    )

    created: list[Product] = []
    changed: list[Product] = []
    for i, fields in good.items():
        product = existing.get(fields.external_id)
        own = product.id if product else None
        clash = {s for s in _skus(fields) if sku_owner.get(s, own) != own}
        if clash:
            paths = sku_fields(Product.new("", fields), clash)
            results[i] = _failed(
                i, fields, "sku_taken",
                [FieldViolation(f, "already belongs to another product") for f in paths],
            )  # fmt: skip
            continue
        taken_keys = {k for k in _keys(fields) if code_owner.get(k, own) != own}
        if taken_keys:
            paths = barcode_fields(Product.new("", fields), taken_keys)
            results[i] = _failed(
                i, fields, "barcode_taken",
                [FieldViolation(f, "already belongs to another product") for f in paths],
            )  # fmt: skip
            continue
        if product is None:
            product = with_variant_ids(Product.new(new_id("prod"), fields))
            created.append(product)
            results[i] = ItemResult(i, fields.external_id, Outcome.CREATED, product)
        elif normalized(product.fields()) == fields:
            results[i] = ItemResult(i, fields.external_id, Outcome.UNCHANGED, product)
        else:
            held = sorted(dropping[i] & stocked)
            if held:
                refused = sku_has_stock(held, product.fields(), fields)
                results[i] = _failed(i, fields, refused.code, refused.violations)
                continue
            product.describe(fields)
            with_variant_ids(product)
            product.version += 1
            changed.append(product)
            results[i] = ItemResult(i, fields.external_id, Outcome.UPDATED, product)

    if not await uow.products.add_many(created):
        raise concurrent_change()
    await uow.products.replace_many(changed)
    for p in created:
        uow.publish(ProductCreated(p))
    for p in changed:
        uow.publish(ProductUpdated(p))
    return [results[i] for i in range(len(items))]
