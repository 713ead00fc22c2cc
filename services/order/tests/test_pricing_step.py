"""The pricing step on in-memory fakes: a line collected or shipped from another store is taxed
at that store's rates; an open-price product sells at the price entered, which no other product
takes; a manual price above list is refused before promotion is asked."""

from __future__ import annotations

import pytest
from fakes import FixedDiscount

from pos_kit.errors import InvalidArgument
from pos_kit.money import Money
from pos_order.adapters.messages import cart_to_proto
from pos_order.domain.model import (
    FulfillmentRequest,
    FulfillmentType,
    LineRequest,
    PricedItem,
    SellingLocation,
)
from pos_order.domain.pricing import Manual
from pos_order.service import pricing
from pos_order.service.ports import CheckoutPorts

USD = "USD"


class TwoStores:
    """loc_1 sells at 8.25 %, loc_2 (another town) at 5 %; DELI is open-price; only loc_2 hands
    over pickups and ships."""

    stores = {
        "loc_1": SellingLocation("loc_1", USD, 825),
        "loc_2": SellingLocation("loc_2", USD, 500, pickup_enabled=True, ship_enabled=True),
        "loc_3": SellingLocation("loc_3", USD, 500),  # a back office: no pickup, no shipping
    }
    items = {
        "TEE": PricedItem("TEE", "T-shirt", Money(2000, USD)),
        "DELI": PricedItem("DELI", "Deli", Money(100, USD), open_price=True),
        "EURO-TEE": PricedItem("EURO-TEE", "Euro tee", Money(1800, "EUR")),
    }

    async def price_snapshot(
        self, location_id: str, skus: list[str]
    ) -> tuple[SellingLocation, dict[str, PricedItem]]:
        return self.stores[location_id], {s: self.items[s] for s in skus}


def _ports() -> CheckoutPorts:
    return CheckoutPorts(TwoStores(), FixedDiscount(0), None, None)  # type: ignore[arg-type]


def _no_uow() -> object:
    raise AssertionError("inventory answers: the read model is not read")


async def test_a_pickup_elsewhere_is_taxed_where_it_is_collected() -> None:
    fulfillments = [
        FulfillmentRequest(FulfillmentType.IN_STORE, "loc_1"),
        FulfillmentRequest(FulfillmentType.PICKUP, "loc_2"),
    ]
    lines = [LineRequest("TEE", 1, 0), LineRequest("TEE", 1, 1)]
    cart = await pricing.price_cart(_ports(), _no_uow, "loc_1", "", lines, fulfillments, "web")  # type: ignore[arg-type]
    assert [ln.tax for ln in cart.lines] == [165, 100]  # 8.25 % and 5 % of 20.00
    assert cart.totals.tax == Money(265, USD) and cart.totals.total == Money(4265, USD)


async def test_an_open_price_product_sells_at_the_price_entered_and_only_it_does() -> None:
    inside = [FulfillmentRequest(FulfillmentType.IN_STORE, "loc_1")]
    entered = [LineRequest("DELI", 2, unit_price=Money(349, USD))]
    cart = await pricing.price_cart(_ports(), _no_uow, "loc_1", "", entered, inside, "register")  # type: ignore[arg-type]
    assert cart.lines[0].unit_price == Money(349, USD) and cart.totals.subtotal == Money(698, USD)
    for lines, field in (
        ([LineRequest("DELI", 1)], "lines[0].unit_price"),
        ([LineRequest("TEE", 1, unit_price=Money(1, USD))], "lines[0].unit_price"),
        (
            [LineRequest("TEE", 1, manual=Manual("price", 2500, "why", "stf_1"))],
            "lines[0].manual.value",
        ),
    ):
        with pytest.raises(InvalidArgument) as err:
            await pricing.price_cart(_ports(), _no_uow, "loc_1", "", lines, inside, "register")  # type: ignore[arg-type]
        assert field in {v.field for v in err.value.violations}


async def test_a_product_priced_in_another_currency_than_the_stores_is_refused_by_line() -> None:
    """A merchant may sell in several currencies and a product has one price: sold at a store
    of another currency, its line is a 400 naming it (never a total in two currencies, nor a
    500), in the pricing step that comes before any hold or charge."""
    inside = [FulfillmentRequest(FulfillmentType.IN_STORE, "loc_1")]
    lines = [LineRequest("TEE", 1), LineRequest("EURO-TEE", 1)]
    with pytest.raises(InvalidArgument) as err:
        await pricing.price_cart(_ports(), _no_uow, "loc_1", "", lines, inside, "register")  # type: ignore[arg-type]
    assert [(v.field, v.description) for v in err.value.violations] == [
        ("lines[1].sku", "is priced in EUR, the location sells in USD")
    ]


async def test_a_pickup_or_shipment_from_a_store_that_does_not_offer_it_is_refused() -> None:
    pickup, ship, inside = (
        FulfillmentType.PICKUP,
        FulfillmentType.SHIPMENT,
        FulfillmentType.IN_STORE,
    )
    lines = [LineRequest("TEE", 1, 0), LineRequest("TEE", 1, 1)]
    for fulfillments, refused in (
        (
            [FulfillmentRequest(pickup, ""), FulfillmentRequest(pickup, "loc_2")],
            ["fulfillments[0].location_id"],  # loc_1, where it is sold, hands over nothing
        ),
        (
            [FulfillmentRequest(inside, "loc_1"), FulfillmentRequest(ship, "loc_3")],
            ["fulfillments[1].location_id"],
        ),
        (
            [FulfillmentRequest(pickup, "loc_3"), FulfillmentRequest(ship, "loc_1")],
            ["fulfillments[0].location_id", "fulfillments[1].location_id"],
        ),
    ):  # fmt: skip
        with pytest.raises(InvalidArgument) as err:
            await pricing.price_cart(_ports(), _no_uow, "loc_1", "", lines, fulfillments, "web")  # type: ignore[arg-type]
        assert sorted(v.field for v in err.value.violations) == refused
    # Sourced shipments (no store named) are inventory's to place among the stores that ship.
    sourced = [
        FulfillmentRequest(FulfillmentType.PICKUP, "loc_2"),
        FulfillmentRequest(FulfillmentType.SHIPMENT, "", destination=(40.0, -89.0)),
    ]
    cart = await pricing.price_cart(_ports(), _no_uow, "loc_1", "", lines, sourced, "web")  # type: ignore[arg-type]
    assert len(cart.lines) == 2


def test_the_read_model_names_a_variant_as_inventory_prices_it() -> None:
    """A register sale priced from the read model (inventory down) names a variant's line as
    inventory's own price answer does: `Tee / M`."""
    from pos.common.v1 import money_pb2
    from pos.inventory.v1 import inventory_pb2
    from pos_order.entrypoints.consumers import _priced_skus

    usd = money_pb2.Money(amount=2500, currency="USD")
    variants = [
        inventory_pb2.ProductVariant(sku="TEE-M", name="M"),
        inventory_pb2.ProductVariant(sku="TEE-X"),
    ]
    tee = inventory_pb2.Product(sku="TEE", name="Tee", price=usd, variants=variants)
    assert [(i.sku, i.name) for i in _priced_skus(tee)] == [
        ("TEE", "Tee"),
        ("TEE-M", "Tee / M"),
        ("TEE-X", "Tee"),
    ]


async def test_a_cart_priced_without_promotions_says_so_in_a_warning() -> None:
    lines = [LineRequest("TEE", 1)]
    inside = [FulfillmentRequest(FulfillmentType.IN_STORE, "loc_1")]
    away = CheckoutPorts(TwoStores(), FixedDiscount(0, applied=False), None, None)  # type: ignore[arg-type]
    cart = await pricing.price_cart(away, _no_uow, "loc_1", "", lines, inside, "web")  # type: ignore[arg-type]
    answer = cart_to_proto(cart)
    assert answer.discounts_applied is False
    assert [w.code for w in answer.warnings] == ["discounts_unavailable"]
    assert answer.warnings[0].message
    cart = await pricing.price_cart(_ports(), _no_uow, "loc_1", "", lines, inside, "web")  # type: ignore[arg-type]
    assert cart_to_proto(cart).warnings == []


def test_the_read_model_keeps_each_skus_unit_cost() -> None:
    """A sale priced from the read model judges a line's cost as one priced live: a variant's
    own cost, else the product's."""
    from pos.common.v1 import money_pb2
    from pos.inventory.v1 import inventory_pb2
    from pos_order.entrypoints.consumers import _priced_skus

    def usd(amount: int) -> money_pb2.Money:
        return money_pb2.Money(amount=amount, currency="USD")

    variants = [
        inventory_pb2.ProductVariant(sku="TEE-M", name="M"),
        inventory_pb2.ProductVariant(sku="TEE-X", name="XL", unit_cost=usd(1400)),
    ]
    tee = inventory_pb2.Product(
        sku="TEE", name="Tee", price=usd(2500), unit_cost=usd(1200), variants=variants
    )
    assert [(i.sku, i.unit_cost) for i in _priced_skus(tee)] == [
        ("TEE", 1200),
        ("TEE-M", 1200),
        ("TEE-X", 1400),
    ]
    plain = inventory_pb2.Product(sku="MUG", name="Mug", price=usd(900))
    assert [i.unit_cost for i in _priced_skus(plain)] == [None]


def test_only_a_price_given_by_hand_counts_as_selling_below_cost() -> None:
    """A line is below cost when what it brings in without its tax is under its units' cost,
    and a manual discount or an entered price made it so; an offer alone is the merchant's own
    choice."""
    from pos_order.domain.model import OrderLine, below_cost
    from pos_order.domain.pricing import LineDiscount

    items = {
        "BOOK": PricedItem("BOOK", "Book", Money(1000, USD), unit_cost=950),
        "DELI": PricedItem("DELI", "Deli", Money(100, USD), open_price=True, unit_cost=300),
        "PEN": PricedItem("PEN", "Pen", Money(1000, USD)),
    }

    def line(sku: str, price: int, *discounts: tuple[str, int], tax: int = 0) -> OrderLine:
        found = [LineDiscount(source, amount, "why") for source, amount in discounts]
        off = sum(amount for _, amount in discounts)
        return OrderLine(sku, sku, 2, Money(price, USD), discount=off, tax=tax, discounts=found)

    lines = [
        line("BOOK", 1000, ("manual", 101)),  # 18.99 for two that cost 19.00
        line("BOOK", 1000, ("manual", 100)),  # exactly the cost
        line("BOOK", 1000, ("promo_1", 500)),  # an offer alone
        line("BOOK", 1000, ("promo_1", 500), ("manual", 1)),  # an offer and a hand
        line("DELI", 250),  # an entered price under the cost
        line("PEN", 1000, ("manual", 1999)),  # no cost known
    ]
    assert below_cost(lines, items, tax_inclusive=False) == [0, 3, 4]
    # With prices holding their tax, the tax is not what the merchant keeps.
    vat = [line("BOOK", 1200, ("manual", 101), tax=400)]  # 18.99 net of its tax
    assert below_cost(vat, items, tax_inclusive=True) == [0]
    assert below_cost(vat, items, tax_inclusive=False) == []
