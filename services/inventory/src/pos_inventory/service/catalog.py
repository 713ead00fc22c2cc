"""Use cases of the catalog: products, their versions, search and the checkout's price snapshot."""

from __future__ import annotations

from pos_inventory.domain.barcodes import barcode_key
from pos_inventory.domain.catalog import (
    UPDATABLE,
    Product,
    ProductFields,
    ProductStatus,
    concurrent_change,
    normalized,
    product_violations,
)
from pos_inventory.domain.model import (
    Location,
    ProductArchived,
    ProductCreated,
    ProductUpdated,
    validate_sku_list,
)
from pos_inventory.domain.search import ProductQuery, validate_query
from pos_inventory.service.ports import InventoryUnitOfWork
from pos_kit.errors import AlreadyExists, Conflict, FieldViolation, NotFound, raise_if
from pos_kit.ids import new_id
from pos_kit.money import Money
from pos_kit.paging import PageRequest


def taken(code: str, what: str, fields: list[str]) -> AlreadyExists:
    error = AlreadyExists(f"{what} already belongs to another product", code)
    error.violations = [FieldViolation(f, "already belongs to another product") for f in fields]
    return error


def sku_fields(product: Product, skus: set[str]) -> list[str]:
    """The request fields holding `skus`, so an error names what to fix."""
    named = [] if product.sku not in skus else ["sku"]
    return named + [f"variants[{i}].sku" for i, v in enumerate(product.variants) if v.sku in skus]


def barcode_fields(product: Product, keys: set[str]) -> list[str]:
    """The request fields holding barcodes whose keys are `keys` (a UPC-A and its EAN-13 are
    one key), so an error names each one to fix."""
    named = [f"barcodes[{i}]" for i, b in enumerate(product.barcodes) if barcode_key(b) in keys]
    for i, v in enumerate(product.variants):
        named += [
            f"variants[{i}].barcodes[{j}]"
            for j, b in enumerate(v.barcodes)
            if barcode_key(b) in keys
        ]
    return named


def with_variant_ids(product: Product) -> Product:
    for v in product.variants:
        v.id = v.id or new_id("var")
    return product


async def refuse_taken(uow: InventoryUnitOfWork, product: Product) -> None:
    """Name the SKUs, barcodes or external id another product of the merchant already has."""
    others = [p for p in await uow.products.by_skus(product.skus()) if p.id != product.id]
    clash = set(product.skus()) & {s for p in others for s in p.skus()}
    if clash:
        raise taken("sku_taken", f"sku {', '.join(sorted(clash))}", sku_fields(product, clash))
    keys = product.barcode_skus()
    if keys:
        owned = [p for p in await uow.products.by_barcodes(list(keys)) if p.id != product.id]
        clash = set(keys) & {k for p in owned for k in p.barcode_skus()}
        if clash:
            fields = barcode_fields(product, clash)
            raise taken("barcode_taken", f"barcode {', '.join(sorted(clash))}", fields)
    if product.external_id:
        same = await uow.products.by_external_ids([product.external_id])
        if any(p.id != product.id for p in same):
            raise taken("external_id_taken", "external_id", ["external_id"])


async def add_product(uow: InventoryUnitOfWork, fields: ProductFields) -> Product:
    fields = normalized(fields)
    raise_if(product_violations(fields))
    product = with_variant_ids(Product.new(new_id("prod"), fields))
    await refuse_taken(uow, product)
    if not await uow.products.add(product):
        await refuse_taken(uow, product)  # who won the race, if it has committed
        raise concurrent_change()
    uow.publish(ProductCreated(product))
    return product


async def create_product(uow: InventoryUnitOfWork, sku: str, name: str, price: Money) -> Product:
    return await add_product(uow, ProductFields(sku, name, price))


async def get_product(uow: InventoryUnitOfWork, product_id: str, lock: bool = False) -> Product:
    product = await uow.products.get(product_id, lock)
    if product is None:
        raise NotFound("product", product_id)
    return product


def stale(current: int) -> Conflict:
    return Conflict(
        "the product changed since the version you sent",
        "version_mismatch",
        {"current_version": str(current)},
    )


async def current(uow: InventoryUnitOfWork, product_id: str, expected_version: int) -> Product:
    # Locked for the change: two changes made without If-Match are applied one after the other
    # (each to what the other left), never one refused as stale for a version nobody sent.
    product = await get_product(uow, product_id, lock=True)
    if expected_version and expected_version != product.version:
        raise stale(product.version)
    return product


async def store(uow: InventoryUnitOfWork, product: Product, event: object) -> Product:
    seen = product.version
    product.version += 1
    # The write re-checks the version, so of two concurrent updates only one wins.
    if not await uow.products.save(product, seen):
        raise stale((await get_product(uow, product.id)).version)
    uow.publish(event)
    return product


async def update_product(
    uow: InventoryUnitOfWork,
    product_id: str,
    changes: ProductFields,
    mask: set[str],
    expected_version: int,
) -> Product:
    unknown = sorted(mask - UPDATABLE)
    raise_if(
        [FieldViolation("update_mask", f"cannot change {', '.join(unknown)}")] if unknown else []
    )
    raise_if([] if mask else [FieldViolation("update_mask", "must name at least one field")])
    product = await current(uow, product_id, expected_version)
    before = normalized(product.fields())
    fields = product.fields()
    for name in mask:
        setattr(fields, name, getattr(changes, name))
    fields = normalized(fields)
    raise_if(product_violations(fields))
    if fields == before:
        return product  # nothing changed: no new version, no event
    had = set(product.skus())
    product.describe(fields)
    with_variant_ids(product)
    await refuse_taken(uow, product)
    held = await still_stocked(uow, had - set(product.skus()))
    if held:
        raise sku_has_stock(held, before, fields)
    return await store(uow, product, ProductUpdated(product))


async def still_stocked(uow: InventoryUnitOfWork, dropped: set[str]) -> list[str]:
    """Of the SKUs a change would take off a product, those with units on hand or held: their
    stock and ledger are kept by SKU, so renamed away they would be left behind (and a later
    product given the SKU would inherit them).

    The SKUs are locked first: a stock write that found one in the catalog has it held until
    it commits, so its units are read here; a later one waits for this change and, the SKU
    gone, is refused (`require_items`)."""
    if not dropped:
        return []
    await uow.products.lock_skus(sorted(dropped))
    levels = await uow.stock.levels(sorted(dropped), None)
    return sorted({lv.sku for lv in levels if lv.on_hand or lv.reserved})


def sku_has_stock(skus: list[str], before: ProductFields, after: ProductFields) -> Conflict:
    """The refusal of a change from `before` to `after` that takes away `skus`, each named by
    the field of the request that took it away (`kept_fields`)."""
    refused = Conflict(
        f"{', '.join(skus)} still has stock on hand or held: bring it to zero (an adjustment "
        "or a transfer) before the product stops selling it under that SKU",
        "sku_has_stock",
        {"skus": ",".join(skus)},
    )
    refused.violations = [
        FieldViolation(path, f"{sku} still has stock")
        for sku, path in kept_fields(skus, before, after)
    ]
    return refused


def kept_fields(
    skus: list[str], before: ProductFields, after: ProductFields
) -> list[tuple[str, str]]:
    """(sku, field) for SKUs a change takes away, as `errors[].field` names fields everywhere:
    the product's own is `sku`; a variant's is `variants[i].sku` when the request still has the
    variant at `i` (the same name and options) under another SKU, else `variants` (the list
    dropped it, so no item of the request holds it)."""
    out: list[tuple[str, str]] = []
    for sku in skus:
        if sku == before.sku:
            out.append((sku, "sku"))
            continue
        old = next((v for v in before.variants if v.sku == sku), None)
        same = [
            i
            for i, v in enumerate(after.variants)
            if old is not None
            and (v.name, v.options) == (old.name, old.options)
            and (v.name or v.options)
        ]
        out.append((sku, f"variants[{same[0]}].sku" if len(same) == 1 else "variants"))
    return out


async def archive_product(
    uow: InventoryUnitOfWork, product_id: str, expected_version: int
) -> Product:
    product = await current(uow, product_id, expected_version)
    if product.archived:
        return product
    product.status = ProductStatus.ARCHIVED
    return await store(uow, product, ProductArchived(product))


async def unarchive_product(
    uow: InventoryUnitOfWork, product_id: str, expected_version: int
) -> Product:
    """Back on sale: announced as a change (`ProductUpdated`), so every copy of the catalog
    (the order service's prices) takes its SKUs again. Its SKUs and barcodes stayed its own
    while archived, so nothing can collide."""
    product = await current(uow, product_id, expected_version)
    if not product.archived:
        return product
    product.status = ProductStatus.ACTIVE
    return await store(uow, product, ProductUpdated(product))


async def price_snapshot(
    uow: InventoryUnitOfWork, skus: list[str], location_id: str
) -> tuple[list[Product], Location | None]:
    """Prices of every SKU asked for (all or an error) and the selling location.

    Each product comes as sold under the SKU asked for: a variant's SKU, name and price.
    """
    validate_sku_list(skus)
    owner = {s: p for p in await uow.products.by_skus(skus) for s in p.skus()}
    missing = sorted(set(skus) - owner.keys())
    if missing:
        error = NotFound("product", ", ".join(missing))
        error.metadata["skus"] = ",".join(missing)
        raise error
    archived = sorted({s for s in skus if owner[s].archived})
    if archived:
        raise Conflict(
            f"archived products cannot be sold: {', '.join(archived)}",
            "product_archived",
            {"skus": ",".join(archived)},
        )
    location = None
    if location_id:
        location = await uow.locations.get(location_id)
        if location is None:
            raise NotFound("location", location_id)
    # In the order asked for (each once), so a caller can zip them with its lines.
    return [owner[s].sold_as(s) for s in dict.fromkeys(skus)], location


async def search_products(
    uow: InventoryUnitOfWork, query: ProductQuery, page: PageRequest
) -> list[Product]:
    validate_query(query)
    return await uow.products.search(query, page)


async def list_products(
    uow: InventoryUnitOfWork, page: PageRequest, status: ProductStatus | None = None
) -> list[Product]:
    """By id (of one status, if given), or the change feed partners poll (oldest change
    first, resumable by cursor). A feed of one status would never tell a poller a product left
    it, so the two do not combine."""
    if status is not None and page.since is not None:
        raise_if([FieldViolation("status", "cannot be combined with updated_since")])
    return await uow.products.list(page, status)
