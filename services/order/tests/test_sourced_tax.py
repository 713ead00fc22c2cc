"""Tax of a shipment sourcing places (no store named): its lines are taxed where the goods leave
from, the store sourcing picked, as those of a shipment naming that store are; a line split
over stores is taxed at each store's rules; and the totals, each fulfilment's share and the
order partners are told of say so, before any payment is taken."""

from __future__ import annotations

from dataclasses import replace

import pytest
from fakes import FakeStock
from test_lifecycle_machine import OrderLifecycle, run

from pos_kit.money import Money
from pos_order.domain.model import (
    Allocation,
    FulfillmentRequest,
    FulfillmentType,
    LineRequest,
    Order,
    OrderCreated,
    PricedItem,
    SellingLocation,
)
from pos_order.domain.pricing import Buyer
from pos_order.service.handlers import drafts
from pos_order.service.ports import CreateOrderCommand
from pos_order.service.pricing import PricedCart

USD = "USD"


class Stores:
    """loc_1 sells at 10 %; loc_2 (another state) ships at 5 %; loc_3 ships at 20 % with prices
    that hold their tax (stated the other way from the selling store's)."""

    stores = {
        "loc_1": SellingLocation("loc_1", USD, 1000, ship_enabled=True),
        "loc_2": SellingLocation("loc_2", USD, 500, ship_enabled=True),
        "loc_3": SellingLocation("loc_3", USD, 2000, tax_inclusive=True, ship_enabled=True),
    }
    items = {"TEE": PricedItem("TEE", "T-shirt", Money(2000, USD))}

    async def price_snapshot(
        self, location_id: str, skus: list[str]
    ) -> tuple[SellingLocation, dict[str, PricedItem]]:
        return self.stores[location_id], {s: self.items[s] for s in skus}


class SourcedAt(FakeStock):
    """Sourcing picks the stores of `plan`, each shipping so many units of every line."""

    def __init__(self, plan: list[tuple[str, int]]) -> None:
        super().__init__(TEE=100)
        self.plan = plan

    async def source(
        self,
        request_id: str,
        lines: list[tuple[str, int]],
        destination: tuple[float, float],
        ttl_seconds: int,
        reference: str,
        currency: str,
    ) -> list[Allocation]:
        out = []
        for store, units in self.plan:
            mine = [(sku, units) for sku, _ in lines]
            rid = await self.hold(f"{request_id}/{store}", store, mine, ttl_seconds, reference)
            out.append(Allocation(store, mine, rid))
        return out

    async def propose(
        self, lines: list[tuple[str, int]], destination: tuple[float, float], currency: str
    ) -> list[Allocation]:
        self._check()
        return [Allocation(store, [(sku, units) for sku, _ in lines], "")
                for store, units in self.plan]  # fmt: skip


SOURCED = FulfillmentRequest(FulfillmentType.SHIPMENT, "", "1 Main St", (39.7, -89.6))


def _shop(plan: list[tuple[str, int]]) -> OrderLifecycle:
    m = OrderLifecycle()
    m.ports = replace(m.ports, catalog=Stores(), stock=SourcedAt(plan))
    return m


def _order(
    m: OrderLifecycle, fulfillment: FulfillmentRequest, quantity: int, customer_id: str = ""
) -> Order:
    cmd = CreateOrderCommand(
        m._request_id(), "web", "loc_1", customer_id, [LineRequest("TEE", quantity)], [fulfillment]
    )
    order = m._attempt(lambda: drafts.CreateOrder(cmd, m.ports, m.new_uow, m.policy, lambda o: o))
    assert isinstance(order, Order), order
    return order


def _taxed(order: Order) -> list[tuple[str, int, int, int, dict[str, int]]]:
    stores = {f.id: f.location_id for f in order.fulfillments}
    return [
        (stores[ln.fulfillment_id], ln.quantity, ln.discount, ln.tax, ln.tax_rates)
        for ln in order.lines
    ]


def _money(order: Order) -> tuple[int, int, int, int, list[int]]:
    t = order.totals
    return (t.subtotal.amount, t.discount.amount, t.tax.amount, t.total.amount,
            [f.amount for f in order.fulfillments])  # fmt: skip


def test_a_sourced_shipment_is_taxed_at_the_store_it_leaves_from_as_a_named_one_is() -> None:
    m = _shop([("loc_2", 2)])
    named = _order(m, FulfillmentRequest(FulfillmentType.SHIPMENT, "loc_2", "1 Main St"), 2)
    sourced = _order(m, SOURCED, 2)
    assert _taxed(named) == [("loc_2", 2, 0, 200, {"tax": 500})]
    assert _taxed(sourced) == _taxed(named)
    assert _money(sourced) == _money(named) == (4000, 0, 200, 4200, [4200])
    # Stored and announced so: partners are told the tax the order is paid with.
    assert _money(m.order(sourced.id)) == _money(sourced)
    (told,) = [
        e.order
        for e in m.store.published
        if isinstance(e, OrderCreated) and e.order.id == sourced.id
    ]
    assert _money(told) == _money(sourced) and _taxed(told) == _taxed(sourced)


def test_a_line_split_over_stores_is_taxed_at_each_store_s_rules() -> None:
    m = _shop([("loc_1", 1), ("loc_2", 2)])
    order = _order(m, SOURCED, 3)
    assert _taxed(order) == [
        ("loc_1", 1, 0, 200, {"tax": 1000}),
        ("loc_2", 2, 0, 200, {"tax": 500}),
    ]
    # Each fulfilment's share is what its own lines cost with their own tax.
    assert _money(order) == (6000, 0, 400, 6400, [2200, 4200])


def test_a_store_stating_prices_the_other_way_leaves_the_selling_store_s_rules() -> None:
    """As for a named store: an order's prices are all inclusive or all exclusive of tax."""
    m = _shop([("loc_3", 1)])
    sourced = _order(m, SOURCED, 1)
    named = _order(m, FulfillmentRequest(FulfillmentType.SHIPMENT, "loc_3", "1 Main St"), 1)
    assert _taxed(sourced) == [("loc_3", 1, 0, 200, {"tax": 1000})]
    assert _money(sourced) == _money(named) == (2000, 0, 200, 2200, [2200])


def test_a_tax_exempt_customer_s_sourced_shipment_stays_without_tax() -> None:
    m = _shop([("loc_2", 1)])
    m.store.customers[("mer_a", "cus_1")] = 1
    m.store.buyers[("mer_a", "cus_1")] = Buyer((), tax_exempt=True)
    order = _order(m, SOURCED, 1, "cus_1")
    assert _taxed(order) == [("loc_2", 1, 0, 0, {"tax": 500})]
    assert _money(order) == (2000, 0, 0, 2000, [2000])


def test_a_submitted_draft_s_sourced_shipment_is_taxed_where_it_leaves_from() -> None:
    m = _shop([("loc_2", 1)])
    cmd = CreateOrderCommand(
        m._request_id(), "web", "loc_1", "", [LineRequest("TEE", 1)], [SOURCED], draft=True
    )
    draft = m._attempt(lambda: drafts.CreateOrder(cmd, m.ports, m.new_uow, m.policy, lambda o: o))
    assert isinstance(draft, Order), draft
    assert _money(draft) == (2000, 0, 200, 2200, [2200])  # no store yet: the selling one's
    submitted = m._attempt(
        lambda: drafts.SubmitOrder(
            m._request_id(), draft.id, (), m.ports, m.new_uow, m.policy, lambda o: o
        )
    )
    assert isinstance(submitted, Order), submitted
    assert _taxed(submitted) == [("loc_2", 1, 0, 100, {"tax": 500})]
    assert _money(submitted) == (2000, 0, 100, 2100, [2100])


def test_a_line_split_over_stores_keeps_its_discounts_and_taxes_adding_up_in_each_part() -> None:
    """Each part's discount is what its itemised discounts add up to, and its tax its taxes:
    split one by one by quantity and their sums split apart, a part showed a cent of discount
    (or tax) that none of its discounts (or taxes) gave, and the next one a cent less."""
    from pos_order.domain.model import OrderLine, Totals, build_fulfillments
    from pos_order.domain.pricing import LineDiscount

    usd = "USD"
    line = OrderLine("TEE", "T-shirt", 2, Money(1000, usd), discount=2, tax=2,
                     discounts=[LineDiscount("promo_1", 1, "offer"),
                                LineDiscount("manual", 1, "staff")],
                     taxes=[("state", 1), ("city", 1)])  # fmt: skip
    total = Money(2000, usd)
    order = Order("ord_1", "loc_1", "", [line],
                  Totals(total, Money(2, usd), Money(2, usd), total), True)  # fmt: skip
    order.fulfillments = build_fulfillments("ord_1", [SOURCED], [line], [LineRequest("TEE", 2)],
                                            2000)  # fmt: skip
    (f,) = order.fulfillments
    order.source(f.id, [Allocation("loc_a", [("TEE", 1)], "res_a"),
                        Allocation("loc_b", [("TEE", 1)], "res_b")])  # fmt: skip
    for part in order.lines:
        assert part.discount == sum(d.amount for d in part.discounts), part
        assert part.tax == sum(amount for _, amount in part.taxes), part
    assert sum(p.discount for p in order.lines) == 2 and sum(p.tax for p in order.lines) == 2


def test_a_line_split_over_stores_keeps_its_manual_price_and_below_cost_approval() -> None:
    """Each part of a line sourcing splits is the line as sold: the discount given by hand and
    the permitted sale below cost stay on every part (dropped, the order no longer said a line
    was sold below cost, and the sale's answer and its audit did not either)."""
    from pos_order.domain.model import OrderLine, Totals, build_fulfillments
    from pos_order.domain.pricing import LineDiscount, Manual

    usd = "USD"
    by_hand = Manual("percent", 5000, "damaged box", "stf_1")
    line = OrderLine("TEE", "T-shirt", 3, Money(1000, usd), discount=1500,
                     discounts=[LineDiscount("manual", 1500, "damaged box", "stf_1")],
                     manual=by_hand, below_cost=True)  # fmt: skip
    total, paid = Money(3000, usd), Money(1500, usd)
    order = Order("ord_1", "loc_1", "", [line],
                  Totals(total, paid, Money(0, usd), paid), True)  # fmt: skip
    order.fulfillments = build_fulfillments("ord_1", [SOURCED], [line], [LineRequest("TEE", 3)],
                                            1500)  # fmt: skip
    (f,) = order.fulfillments
    order.source(f.id, [Allocation("loc_a", [("TEE", 1)], "res_a"),
                        Allocation("loc_b", [("TEE", 2)], "res_b")])  # fmt: skip
    assert [(p.quantity, p.manual, p.below_cost) for p in order.lines] == [
        (1, by_hand, True),
        (2, by_hand, True),
    ]


def test_a_sourced_shipment_sold_below_cost_by_hand_stays_so() -> None:
    """An open-price T-shirt entered below its cost (the caller was permitted to) and shipped
    from the store sourcing picks: the order kept says the line was sold below cost, as the
    same sale shipped from a named store does."""
    m = _shop([("loc_2", 1)])
    m.ports.catalog.items = {
        "TEE": PricedItem("TEE", "T-shirt", Money(2000, USD), open_price=True, unit_cost=1500)
    }
    for fulfillment in (FulfillmentRequest(FulfillmentType.SHIPMENT, "loc_2", "1 Main St"),
                        SOURCED):  # fmt: skip
        cmd = CreateOrderCommand(
            m._request_id(), "web", "loc_1", "",
            [LineRequest("TEE", 1, unit_price=Money(1000, USD))], [fulfillment],
        )  # fmt: skip
        order = m._attempt(
            lambda cmd=cmd: drafts.CreateOrder(cmd, m.ports, m.new_uow, m.policy, lambda o: o)
        )
        assert isinstance(order, Order), order
        assert [ln.below_cost for ln in order.lines] == [True], fulfillment
        assert [ln.below_cost for ln in m.order(order.id).lines] == [True], fulfillment


def test_a_sourced_line_keeps_whether_each_tax_compounded_at_the_store_it_leaves_from() -> None:
    """Taxed again at the store sourcing picked: its rates and its compounding are that
    store's, kept with the line for its receipt (the store's settings may change later)."""
    from pos_order.domain.tax import LocationTax

    m = _shop([("loc_4", 1)])
    taxes = (LocationTax("gst", 500, {}), LocationTax("qst", 1000, {}, compound=True))
    m.ports.catalog.stores["loc_4"] = SellingLocation(
        "loc_4", USD, 0, taxes=taxes, ship_enabled=True
    )
    order = _order(m, SOURCED, 1)
    (line,) = order.lines
    # 5 % of 20.00, then 10 % of 20.00 + 1.00.
    assert (line.taxes, line.tax_rates) == ([("gst", 100), ("qst", 210)], {"gst": 500, "qst": 1000})
    assert line.tax_compound == {"gst": False, "qst": True}
    assert m.order(order.id).lines[0].tax_compound == {"gst": False, "qst": True}


def _preview(m: OrderLifecycle, fulfillment: FulfillmentRequest, quantity: int,
             customer_id: str = "") -> PricedCart:  # fmt: skip
    from pos_order.service.handlers import carts

    cmd = carts.CartCommand("loc_1", "web", customer_id, [LineRequest("TEE", quantity)],
                            [fulfillment])  # fmt: skip
    return run(carts.calculate_cart(cmd, m.ports, m.new_uow))


def _quoted(cart: PricedCart) -> list[tuple[str, int, int, int, dict[str, int]]]:
    return [(ln.id, ln.quantity, ln.discount, ln.tax, ln.tax_rates) for ln in cart.lines]


def _sold(order: Order) -> list[tuple[str, int, int, int, dict[str, int]]]:
    return [(ln.id, ln.quantity, ln.discount, ln.tax, ln.tax_rates) for ln in order.lines]


def test_the_preview_of_a_sourced_shipment_is_taxed_as_its_sale_is() -> None:
    """The preview priced a shipment naming no store at the selling store's 10 % while its
    sale was taxed at the store sourcing picked: now it is taxed at the stores sourcing
    proposes (holding nothing), a line it splits in its parts, to the cent of the sale."""
    for plan, quantity in (
        ([("loc_2", 2)], 2),  # another state, 5 %
        ([("loc_1", 1), ("loc_2", 2)], 3),  # split over the selling store and another
        ([("loc_3", 1)], 1),  # prices stated the other way: the selling store's rules
    ):
        m = _shop(plan)
        cart = _preview(m, SOURCED, quantity)
        held = dict(m.ports.stock.reserved)  # type: ignore[union-attr]
        assert all(not q for q in held.values()), plan  # a preview holds nothing
        order = _order(m, SOURCED, quantity)
        assert _quoted(cart) == _sold(order), plan
        t = cart.totals
        assert (t.subtotal, t.discount, t.tax, t.total) == (
            order.totals.subtotal, order.totals.discount, order.totals.tax, order.totals.total,
        ), plan  # fmt: skip
        assert all(ln.fulfillment_id == "" for ln in cart.lines)
    # As the sale at 5 %: 2 x 20.00 + 2.00.
    m = _shop([("loc_2", 2)])
    assert _preview(m, SOURCED, 2).totals.total == Money(4200, USD)
    # A tax-exempt customer's stays without tax.
    m.store.customers[("mer_a", "cus_1")] = 1
    m.store.buyers[("mer_a", "cus_1")] = Buyer((), tax_exempt=True)
    assert _preview(m, SOURCED, 2, "cus_1").totals.tax == Money(0, USD)


def test_the_preview_of_a_shipment_no_store_can_fill_is_refused_as_its_sale_is() -> None:
    from pos_kit.errors import DomainError

    m = OrderLifecycle()  # its stock: 6 T-shirts, at the one store sourcing knows
    m.ports = replace(m.ports, catalog=Stores())
    with pytest.raises(DomainError) as refused:
        _preview(m, SOURCED, 7)
    assert refused.value.code == "insufficient_stock"
