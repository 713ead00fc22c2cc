"""The catalog for real: gRPC in, PostgreSQL, events in the outbox of the same transaction."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import psycopg
import pytest
import pytest_asyncio
from google.protobuf.field_mask_pb2 import FieldMask

from pos.common.v1 import money_pb2
from pos.inventory.v1 import inventory_pb2 as inv
from pos.inventory.v1 import inventory_pb2_grpc
from pos_devstack.testing import Infra, serve_in_process
from pos_kit.grpc_client import RemoteError, read_error

pytestmark = pytest.mark.asyncio(loop_scope="session")

Stub = inventory_pb2_grpc.InventoryServiceStub
UPC = "036000291452"  # a real UPC-A; as EAN-13 it is 0036000291452
EAN = "4006381333931"
_ids = itertools.count(1)


@dataclass
class Catalog:
    stub: Stub
    database_url: str

    def call_for(self, merchant: str) -> Any:
        """A caller of every RPC as `merchant`."""
        return _As(self.stub, merchant)

    def count(self, sql: str, merchant: str) -> int:
        with psycopg.connect(self.database_url) as conn:
            row = conn.execute(sql, (merchant,)).fetchone()
        assert row is not None
        return int(row[0])

    def products_of(self, merchant: str) -> int:
        return self.count("SELECT count(*) FROM products WHERE merchant_id = %s", merchant)

    def events_of(self, merchant: str, kind: str) -> int:
        with psycopg.connect(self.database_url) as conn:
            row = conn.execute(
                "SELECT count(*) FROM outbox WHERE merchant_id = %s AND event_type = %s",
                (merchant, f"pos.inventory.v1.{kind}"),
            ).fetchone()
        assert row is not None
        return int(row[0])


class _As:
    def __init__(self, stub: Stub, merchant: str) -> None:
        self._stub, self._md = stub, (("x-merchant-id", merchant),)

    def __getattr__(self, rpc: str) -> Any:
        method = getattr(self._stub, rpc)

        async def call(request: Any) -> Any:
            return await method(request, metadata=self._md, timeout=10)

        return call


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def catalog(infra: Infra) -> AsyncIterator[Catalog]:
    async with serve_in_process("inventory", infra, nats_url=infra.new_nats().url) as svc:
        yield Catalog(Stub(svc.channel), svc.database_url)


def usd(amount: int) -> money_pb2.Money:
    return money_pb2.Money(amount=amount, currency="USD")


def rid() -> str:
    return f"cat-{next(_ids)}"


def tee(sku: str = "TEE", **over: Any) -> inv.CreateProductRequest:
    fields: dict[str, Any] = {
        "request_id": rid(),
        "sku": sku,
        "name": "Tee",
        "price": usd(2000),
        "description": "Organic cotton tee",
        "category": "Apparel",
        "tax_category": "standard",
        "barcodes": [EAN],
        "variants": [
            inv.ProductVariant(sku=f"{sku}-M", name="M", options={"size": "M"}, barcodes=[UPC]),
            inv.ProductVariant(sku=f"{sku}-XL", name="XL", options={"size": "XL"}, price=usd(2400)),
        ],
    }
    fields.update(over)
    return inv.CreateProductRequest(**fields)


async def refused(call: Any, request: Any) -> RemoteError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call(request)
    return read_error(err.value)


async def test_a_product_with_variants_is_sold_by_every_sku(catalog: Catalog) -> None:
    api = catalog.call_for("mer_var")
    made = (await api.CreateProduct(tee())).product
    assert made.status == inv.PRODUCT_STATUS_ACTIVE and made.version == 1
    assert [v.sku for v in made.variants] == ["TEE-M", "TEE-XL"]
    assert all(v.id.startswith("var_") for v in made.variants)
    assert dict(made.variants[0].options) == {"size": "M"}
    got = (await api.GetProduct(inv.GetProductRequest(id=made.id))).product
    assert got == made
    prices = await api.GetPrices(inv.GetPricesRequest(skus=["TEE-XL", "TEE", "TEE-M"]))
    sold = [(p.id, p.sku, p.name, p.price.amount) for p in prices.products]
    assert sold == [
        (made.id, "TEE-XL", "Tee / XL", 2400),
        (made.id, "TEE", "Tee", 2000),
        (made.id, "TEE-M", "Tee / M", 2000),
    ]
    assert catalog.events_of("mer_var", "ProductCreated") == 1


async def test_bad_input_is_refused_field_by_field_and_writes_nothing(catalog: Catalog) -> None:
    api = catalog.call_for("mer_bad")
    await api.CreateProduct(tee())
    eur = money_pb2.Money(amount=1, currency="EUR")
    bad = "INVALID_ARGUMENT"
    cases = [
        (tee("A", barcodes=["4006381333932"]), bad, {"barcodes[0]"}),
        (tee("B", variants=[inv.ProductVariant(sku="B-1", price=eur)]), bad,
         {"variants[0].price.currency"}),
        (tee("C", price=money_pb2.Money(amount=1, currency="usd")), bad, {"price.currency"}),
        (tee("D", variants=[inv.ProductVariant(sku="TEE-M")], barcodes=[]), "ALREADY_EXISTS",
         {"variants[0].sku"}),
        (tee("E", variants=[], barcodes=["0" + UPC]), "ALREADY_EXISTS", {"barcodes[0]"}),
        (tee("H", barcodes=[], variants=[inv.ProductVariant(sku="H-1", name="One"),
                                         inv.ProductVariant(sku="H-2", name="Two",
                                                            barcodes=[EAN])]),
         "ALREADY_EXISTS", {"variants[1].barcodes[0]"}),
        (tee("F", variants=[inv.ProductVariant(sku="F")], barcodes=[]), bad, {"variants"}),
        (tee("G", tax_category="Not A Code"), bad, {"tax_category"}),
    ]  # fmt: skip
    for request, code, fields in cases:
        error = await refused(api.CreateProduct, request)
        assert (error.status.name, {v.field for v in error.violations}) == (code, fields), (
            request.sku
        )
    assert catalog.products_of("mer_bad") == 1
    assert catalog.count("SELECT count(*) FROM product_skus WHERE merchant_id = %s", "mer_bad") == 3


async def test_another_merchants_product_is_not_found_everywhere(catalog: Catalog) -> None:
    mine = (await catalog.call_for("mer_own").CreateProduct(tee())).product
    theirs = catalog.call_for("mer_other")
    requests = [
        (theirs.GetProduct, inv.GetProductRequest(id=mine.id)),
        (theirs.UpdateProduct, inv.UpdateProductRequest(
            request_id=rid(), id=mine.id, product=inv.ProductInput(name="Mine now"),
            update_mask=FieldMask(paths=["name"]))),
        (theirs.ArchiveProduct, inv.ArchiveProductRequest(request_id=rid(), id=mine.id)),
        (theirs.GetPrices, inv.GetPricesRequest(skus=["TEE-M"])),
    ]  # fmt: skip
    for call, request in requests:
        assert (await refused(call, request)).status == grpc.StatusCode.NOT_FOUND
    found = await theirs.SearchProducts(inv.SearchProductsRequest(sku="TEE-M"))
    assert list(found.products) == []
    # The SKUs are theirs to use too: uniqueness is per merchant.
    await theirs.CreateProduct(tee())


async def test_an_update_bumps_the_version_and_a_stale_one_is_refused(catalog: Catalog) -> None:
    api = catalog.call_for("mer_upd")
    made = (await api.CreateProduct(tee())).product

    def rename(name: str, version: int, **fields: Any) -> inv.UpdateProductRequest:
        return inv.UpdateProductRequest(
            request_id=rid(), id=made.id, expected_version=version,
            product=inv.ProductInput(name=name, **fields),
            update_mask=FieldMask(paths=["name", *fields]),
        )  # fmt: skip

    new = (await api.UpdateProduct(rename("Tee II", 1, description="Softer"))).product
    assert (new.name, new.description, new.version) == ("Tee II", "Softer", 2)
    assert new.updated_at.ToDatetime() > made.updated_at.ToDatetime()
    assert [v.id for v in new.variants] == [v.id for v in made.variants]  # untouched
    stale = await refused(api.UpdateProduct, rename("Tee III", 1))
    assert (stale.status, stale.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "version_mismatch")
    assert stale.metadata["current_version"] == "2"
    same = (await api.UpdateProduct(rename("Tee II", 2))).product
    assert same.version == 2  # nothing changed, nothing bumped
    assert catalog.events_of("mer_upd", "ProductUpdated") == 1
    bad_mask = await refused(api.UpdateProduct, inv.UpdateProductRequest(
        request_id=rid(), id=made.id, update_mask=FieldMask(paths=["version"])))  # fmt: skip
    assert [v.field for v in bad_mask.violations] == ["update_mask"]


async def test_concurrent_updates_without_a_version_are_each_applied(catalog: Catalog) -> None:
    """No expected version sent: no 412. Each change is applied in turn to what the others
    left (a version nobody sent cannot be stale), each a version and an event of its own."""
    api = catalog.call_for("mer_race")
    made = (await api.CreateProduct(tee())).product
    names = [f"Tee {n}" for n in range(8)]
    answers = await asyncio.gather(*(
        api.UpdateProduct(inv.UpdateProductRequest(
            request_id=rid(), id=made.id, product=inv.ProductInput(name=name),
            update_mask=FieldMask(paths=["name"]),
        ))
        for name in names
    ))  # fmt: skip
    assert sorted(a.product.version for a in answers) == list(range(2, 2 + len(names)))
    assert catalog.events_of("mer_race", "ProductUpdated") == len(names)
    last = max(answers, key=lambda a: a.product.version).product
    assert (await api.GetProduct(inv.GetProductRequest(id=made.id))).product.name == last.name


async def test_an_update_may_replace_variants_keeping_ids_by_sku(catalog: Catalog) -> None:
    api = catalog.call_for("mer_vars")
    made = (await api.CreateProduct(tee())).product
    request = inv.UpdateProductRequest(
        request_id=rid(), id=made.id,
        product=inv.ProductInput(variants=[inv.ProductVariant(sku="TEE-M", name="Medium"),
                                           inv.ProductVariant(sku="TEE-S", name="Small")]),
        update_mask=FieldMask(paths=["variants"]),
    )  # fmt: skip
    new = (await api.UpdateProduct(request)).product
    assert new.variants[0].id == made.variants[0].id
    assert new.variants[1].id not in {v.id for v in made.variants}
    # TEE-XL was given up, so it is free; TEE-M's barcode went with the old variant.
    await api.CreateProduct(
        tee("OTHER", variants=[inv.ProductVariant(sku="TEE-XL")], barcodes=[UPC])
    )
    assert (await refused(api.GetPrices, inv.GetPricesRequest(skus=["TEE-L"]))).metadata == {
        "resource": "product", "skus": "TEE-L"}  # fmt: skip


async def test_an_archived_product_is_readable_but_not_sold(catalog: Catalog) -> None:
    api = catalog.call_for("mer_arch")
    made = (await api.CreateProduct(tee())).product
    request = inv.ArchiveProductRequest(request_id=rid(), id=made.id, expected_version=1)
    archived = (await api.ArchiveProduct(request)).product
    assert (archived.status, archived.version) == (inv.PRODUCT_STATUS_ARCHIVED, 2)
    got = (await api.GetProduct(inv.GetProductRequest(id=made.id))).product
    assert got.status == inv.PRODUCT_STATUS_ARCHIVED
    error = await refused(api.GetPrices, inv.GetPricesRequest(skus=["TEE-M", "TEE"]))
    assert (error.status, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "product_archived")
    assert error.metadata["skus"] == "TEE,TEE-M"
    active = await api.SearchProducts(
        inv.SearchProductsRequest(query="tee", status=inv.PRODUCT_STATUS_ACTIVE)
    )
    assert list(active.products) == []
    assert catalog.events_of("mer_arch", "ProductArchived") == 1


async def test_search_by_sku_barcode_and_words_pages_by_cursor(catalog: Catalog) -> None:
    api = catalog.call_for("mer_find")
    tees = (await api.CreateProduct(tee())).product
    for i in range(3):
        await api.CreateProduct(inv.CreateProductRequest(
            request_id=rid(), sku=f"MUG-{i}", name=f"Mug {i}", price=usd(900),
            description="Stoneware mug, dishwasher safe"))  # fmt: skip

    async def ids(**query: Any) -> list[str]:
        answer = await api.SearchProducts(inv.SearchProductsRequest(**query))
        return [p.id for p in answer.products]

    assert await ids(sku="TEE-XL") == [tees.id]
    assert await ids(barcode="0" + UPC) == [tees.id]  # the UPC read as an EAN-13
    assert await ids(barcode=EAN) == [tees.id]
    assert await ids(query="ORGANIC") == [tees.id]
    assert await ids(query="tee-x") == [tees.id]
    assert await ids(query="cotton mug") == []
    assert await ids(sku="NOPE") == []
    first = await api.SearchProducts(inv.SearchProductsRequest(query="stonew", page_size=2))
    rest = await api.SearchProducts(
        inv.SearchProductsRequest(query="stonew", page_size=2, page_token=first.next_page_token)
    )
    assert len(first.products) == 2 and len(rest.products) == 1 and not rest.next_page_token
    assert len({p.id for p in [*first.products, *rest.products]}) == 3
    empty = await refused(api.SearchProducts, inv.SearchProductsRequest(query="  "))
    assert [v.field for v in empty.violations] == ["query"]
    # No word to look for is no search either, not a search that finds everything.
    for wordless in ("%", "--", "/", "_", "__ -"):
        nothing = await refused(api.SearchProducts, inv.SearchProductsRequest(query=wordless))
        assert [v.field for v in nothing.violations] == ["query"]


async def test_a_sku_with_a_number_after_a_hyphen_is_found_by_its_words(catalog: Catalog) -> None:
    # PostgreSQL's parser reads `MUG-042` as `mug` and the integer `-042`: the SKU's words
    # are indexed too, so a search for the SKU, or its number alone, finds it.
    api = catalog.call_for("mer_sku_words")
    mug = (await api.CreateProduct(inv.CreateProductRequest(
        request_id=rid(), sku="MUG-042", name="Mug", price=usd(900)))).product  # fmt: skip
    sizes = [inv.ProductVariant(sku="SHOE-7.5/W", name="7.5")]
    shoe_in = inv.CreateProductRequest(
        request_id=rid(), sku="SHOE", name="Shoe", price=usd(900), variants=sizes
    )
    shoe = (await api.CreateProduct(shoe_in)).product

    async def ids(query: str) -> list[str]:
        answer = await api.SearchProducts(inv.SearchProductsRequest(query=query))
        return [p.id for p in answer.products]

    assert await ids("MUG-042") == [mug.id]
    assert await ids("042") == [mug.id]
    assert await ids("mug-04") == [mug.id]
    assert await ids("shoe-7.5/w") == [shoe.id]


def item(ext: str, sku: str, **over: Any) -> inv.ProductInput:
    fields: dict[str, Any] = {"external_id": ext, "sku": sku, "name": sku, "price": usd(500)}
    fields.update(over)
    return inv.ProductInput(**fields)


async def test_an_upsert_reports_each_item_and_replays_once(catalog: Catalog) -> None:
    api = catalog.call_for("mer_ups")
    first = [item("e0", "S0"), item("e1", "S1"), item("e2", "S2")]
    await api.UpsertProducts(inv.UpsertProductsRequest(request_id=rid(), products=first))
    request = inv.UpsertProductsRequest(
        request_id="ups-mixed",
        products=[
            item("e1", "S1"),  # unchanged
            item("e2", "S2", name="Renamed"),  # updated
            item("e3", "S3", variants=[inv.ProductVariant(sku="S3-A", barcodes=[UPC])]),  # created
            item("e4", "S0"),  # S0 belongs to e0
            item("e5", "S5", barcodes=["12345678"]),  # a GTIN-8 whose check digit is 0
            item("e6", "DUP"),
            item("e7", "DUP"),  # the same SKU twice in one batch
            item("", "S8"),  # no external id
            item("e9", "S9", price=money_pb2.Money(amount=5, currency="XXX")),
        ],
    )
    answer = await api.UpsertProducts(request)
    outcomes = [(r.index, r.outcome, r.error.code) for r in answer.results]
    assert outcomes == [
        (0, inv.UPSERT_OUTCOME_UNCHANGED, ""),
        (1, inv.UPSERT_OUTCOME_UPDATED, ""),
        (2, inv.UPSERT_OUTCOME_CREATED, ""),
        (3, inv.UPSERT_OUTCOME_FAILED, "sku_taken"),
        (4, inv.UPSERT_OUTCOME_FAILED, "invalid_argument"),
        (5, inv.UPSERT_OUTCOME_FAILED, "duplicate_in_batch"),
        (6, inv.UPSERT_OUTCOME_FAILED, "duplicate_in_batch"),
        (7, inv.UPSERT_OUTCOME_FAILED, "invalid_argument"),
        (8, inv.UPSERT_OUTCOME_FAILED, "invalid_argument"),
    ]
    assert [f.field for f in answer.results[4].error.field_errors] == ["barcodes[0]"]
    assert [f.field for f in answer.results[8].error.field_errors] == ["price.currency"]
    assert answer.results[1].product.version == 2
    assert answer.results[0].product.version == 1

    def effects() -> tuple[int, int, int]:
        return (
            catalog.products_of("mer_ups"),
            catalog.events_of("mer_ups", "ProductCreated"),
            catalog.events_of("mer_ups", "ProductUpdated"),
        )

    assert effects() == (4, 4, 1)
    again = await api.UpsertProducts(request)
    assert again == answer
    assert effects() == (4, 4, 1)
    found = await api.SearchProducts(inv.SearchProductsRequest(barcode=UPC))
    assert [p.external_id for p in found.products] == ["e3"]


async def test_an_oversized_or_empty_batch_is_refused_whole(catalog: Catalog) -> None:
    api = catalog.call_for("mer_big")
    too_many = [item(f"x{i}", f"X{i}") for i in range(1001)]
    for products in (too_many, []):
        error = await refused(
            api.UpsertProducts, inv.UpsertProductsRequest(request_id=rid(), products=products)
        )
        assert error.status == grpc.StatusCode.INVALID_ARGUMENT
        assert [v.field for v in error.violations] == ["products"]
    assert catalog.products_of("mer_big") == 0


async def test_a_thousand_item_upsert_creates_then_leaves_them_unchanged(catalog: Catalog) -> None:
    api = catalog.call_for("mer_1k")
    products = [
        item(f"k{i}", f"K{i}", variants=[inv.ProductVariant(sku=f"K{i}-B", name="B")])
        for i in range(1000)
    ]
    first = await api.UpsertProducts(inv.UpsertProductsRequest(request_id=rid(), products=products))
    assert {r.outcome for r in first.results} == {inv.UPSERT_OUTCOME_CREATED}
    second = await api.UpsertProducts(
        inv.UpsertProductsRequest(request_id=rid(), products=products)
    )
    assert {r.outcome for r in second.results} == {inv.UPSERT_OUTCOME_UNCHANGED}
    assert catalog.products_of("mer_1k") == 1000
    prices = await api.GetPrices(inv.GetPricesRequest(skus=["K999-B", "K0"]))
    assert [p.name for p in prices.products] == ["K999 / B", "K0"]


async def test_a_barcode_taken_names_the_field_that_holds_it(catalog: Catalog) -> None:
    """Another product's barcode, by create or by upsert: the refusal names the very field
    (`barcodes[1]`, `variants[0].barcodes[0]`; a UPC-A and its EAN-13 are one barcode), not
    the product's barcodes as a whole."""
    api = catalog.call_for("mer_codes")
    await api.CreateProduct(tee())  # EAN on the product, UPC on its variant TEE-M
    error = await refused(
        api.CreateProduct, tee("NEW", variants=[], barcodes=["12345670", "0" + UPC])
    )
    assert (error.status.name, [v.field for v in error.violations]) == (
        "ALREADY_EXISTS", ["barcodes[1]"],
    )  # fmt: skip
    answer = await api.UpsertProducts(
        inv.UpsertProductsRequest(
            request_id=rid(),
            products=[item("x1", "X1", variants=[inv.ProductVariant(sku="X1-A", barcodes=[EAN])])],
        )
    )
    (result,) = answer.results
    assert result.error.code == "barcode_taken"
    assert [f.field for f in result.error.field_errors] == ["variants[0].barcodes[0]"]
