"""A cart priced without selling it (the preview a checkout would charge)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from pos_kit.errors import Conflict, Unavailable, raise_if
from pos_order.domain.coupons import validate_codes
from pos_order.domain.model import (
    FulfillmentRequest,
    FulfillmentType,
    LineRequest,
    Order,
    build_fulfillments,
    price_points,
    validate_order,
    validate_redemption,
    validate_total,
)
from pos_order.domain.pricing import ORDER_KINDS, Buyer, Manual, validate_manual
from pos_order.service import pricing, saga
from pos_order.service.handlers.customers import current_customer
from pos_order.service.handlers.new_order import points_may_discount, points_named
from pos_order.service.ports import AppliedDiscount, CheckoutPorts, NewUow


@dataclass(frozen=True)
class CartCommand:
    location_id: str
    channel: str
    customer_id: str
    lines: list[LineRequest]
    fulfillments: list[FulfillmentRequest]
    coupon_codes: tuple[str, ...] = ()
    order_manual: Manual | None = None
    redeem_points: int = 0


async def calculate_cart(
    cmd: CartCommand, ports: CheckoutPorts, new_uow: NewUow
) -> pricing.PricedCart:
    """The cart preview: the pricing step a checkout and an order run, writing nothing. A
    coupon that cannot apply is in the answer's quote (`rejected`), not an error."""
    fulfillments = cmd.fulfillments or [
        FulfillmentRequest(FulfillmentType.IN_STORE, cmd.location_id)
    ]
    validate_order(cmd.channel or "register", cmd.location_id, cmd.lines, fulfillments, {})
    raise_if(
        validate_codes(cmd.coupon_codes)
        + validate_manual(cmd.order_manual, "order_manual", ORDER_KINDS)
        + validate_redemption(cmd.redeem_points, cmd.customer_id)
    )
    buyer, customer_id = Buyer(), cmd.customer_id
    if customer_id:
        # Priced for the customer a sale would be recorded under (a duplicate merged away is
        # its survivor: their groups, their coupons' limits, their points).
        customer_id, buyer = await current_customer(new_uow, ports.customers, customer_id)
    cart = await pricing.price_cart(
        ports,
        new_uow,
        cmd.location_id,
        customer_id,
        cmd.lines,
        fulfillments,
        cmd.channel or "register",
        cmd.coupon_codes,
        cmd.order_manual,
        buyer,
    )
    # What a sale of this cart would refuse, the preview refuses the same way (a 400 naming
    # the lines), rather than answer a total no order can have.
    raise_if(validate_total(cart.totals))
    if cmd.redeem_points:
        # Priced as a sale prices them (nothing is held: a preview writes nothing).
        if ports.loyalty is None:
            raise Unavailable("loyalty points cannot be priced now", "customer_unavailable")
        available = await ports.loyalty.available(customer_id)
        if available is not None and cmd.redeem_points > available:
            # As the sale's hold would refuse them: a preview shows no discount no sale gets.
            raise points_named(
                Conflict(
                    "the customer does not have that many points available",
                    "insufficient_points",
                    {"available": str(max(available, 0))},
                )
            )
        worth = price_points(
            cmd.redeem_points, await ports.loyalty.point_value(), points_may_discount(cart)
        )
        # The answer's order discounts name it too, as they name every other one.
        redeemed = AppliedDiscount(
            pricing.POINTS, worth.amount, f"{cmd.redeem_points} loyalty points redeemed", "order"
        )
        quote = replace(cart.quote, discounts=(*cart.quote.discounts, redeemed))
        cart = replace(cart, totals=pricing.apply_points(cart, worth.amount), quote=quote)
    return await _as_sourced(ports, cart, cmd.lines, fulfillments)


async def _as_sourced(
    ports: CheckoutPorts,
    cart: pricing.PricedCart,
    lines: list[LineRequest],
    fulfillments: list[FulfillmentRequest],
) -> pricing.PricedCart:
    """A shipment naming no store is taxed where it leaves from once sourcing picks its
    store(s) (saga.py): so is the preview, at the stores sourcing proposes now (holding
    nothing), by the same code the sale runs (`Order.source`), a line it splits shown in its
    parts as the order will have them. No store can ship it: the sale's 409
    `insufficient_stock` naming what is short, as the sale would answer."""
    sourced = [
        i
        for i, f in enumerate(fulfillments)
        if f.type is FulfillmentType.SHIPMENT and not f.location_id and f.destination
    ]
    if not sourced or ports.stock is None:
        return cart
    location = cart.location
    # The order the sale would make of this cart, in memory: the cart's lines are left as
    # priced (copies are sourced).
    order = Order(
        id="cart",
        location_id=location.id,
        customer_id="",
        lines=[replace(ln) for ln in cart.lines],
        totals=cart.totals,
        discounts_applied=cart.quote.applied,
    )
    order.saga.tax_inclusive, order.saga.tax_exempt = location.tax_inclusive, cart.tax_exempt
    order.fulfillments = build_fulfillments(
        order.id, fulfillments, order.lines, lines, cart.totals.total.amount,
        location.tax_inclusive,
    )  # fmt: skip
    for i in sourced:
        f = order.fulfillments[i]
        destination = fulfillments[i].destination
        assert destination is not None
        allocations = await ports.stock.propose(
            [(ln.sku, ln.quantity) for ln in order.lines_of(f)], destination, location.currency
        )
        order.source(f.id, allocations, await saga.tax_rules(ports, order, allocations))
    for ln in order.lines:
        ln.fulfillment_id = ""  # a preview has no fulfilments
    return replace(cart, lines=order.lines, totals=order.totals)
