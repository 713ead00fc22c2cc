"""The pricing step: what a checkout, an order and the cart preview run, the same code, so the
preview and the sale never disagree by a cent (prices from inventory or the read model,
discounts from the promotion service, tax and totals in the order domain)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from pos_kit.errors import (
    DomainError,
    ErrorKind,
    FieldViolation,
    Unavailable,
    named_by,
    raise_if,
    require,
)
from pos_kit.money import Money
from pos_order.domain import pricing
from pos_order.domain.model import (
    FulfillmentRequest,
    FulfillmentType,
    LineRequest,
    OrderLine,
    PricedItem,
    SellingLocation,
    Totals,
    price_lines,
)
from pos_order.domain.pricing import Buyer, Manual
from pos_order.service.ports import (
    CartContext,
    CheckoutPorts,
    DiscountQuote,
    NewUow,
    RejectedCoupon,
)

log = logging.getLogger(__name__)


async def price_snapshot(
    ports: CheckoutPorts,
    new_uow: NewUow,
    location_id: str,
    skus: list[str],
    fulfillments: list[FulfillmentRequest],
) -> tuple[SellingLocation, dict[str, PricedItem], bool]:
    """Prices as the catalog stands, from the inventory service; while it is down, an
    in-store sale is priced from the read model (stale by at most the product events' lag, and
    a location's tax rate as of its last sale), and anything to hold is a 503."""
    try:
        location, items = await ports.catalog.price_snapshot(location_id, skus)
        return location, items, True
    except Unavailable:
        if any(f.type is not FulfillmentType.IN_STORE for f in fulfillments):
            raise
        async with new_uow().reading() as uow:
            known, items = await uow.prices.snapshot(location_id, skus)
        if known is None or set(items) != set(skus):
            raise  # never sold there, or a SKU not known here: no price to sell at
        log.warning("inventory unavailable: priced from the order service's read model")
        return known, items, False


@dataclass(frozen=True)
class PricedCart:
    location: SellingLocation
    live: bool  # priced from inventory (not the read model)
    lines: list[OrderLine]  # each with its discounts and its tax
    quote: DiscountQuote
    totals: Totals
    leaves_from: list[SellingLocation] = field(default_factory=list)
    tax_exempt: bool = False
    items: dict[str, PricedItem] = field(default_factory=dict)  # as the catalog priced them


async def price_cart(
    ports: CheckoutPorts,
    new_uow: NewUow,
    location_id: str,
    customer_id: str,
    lines: list[LineRequest],
    fulfillments: list[FulfillmentRequest],
    channel: str,
    coupon_codes: tuple[str, ...] = (),
    order_manual: Manual | None = None,
    buyer: Buyer | None = None,
) -> PricedCart:
    buyer = buyer or Buyer()
    skus = sorted({ln.sku for ln in lines if ln.gift_card is None})
    try:
        location, items, live = await price_snapshot(
            ports, new_uow, location_id, skus, fulfillments
        )
    except DomainError as exc:
        raise _named_in_request(exc, lines) from None
    if location.inactive:
        raise DomainError(
            f"location {location.id!r} is inactive: it no longer sells",
            "location_inactive",
            [FieldViolation("location_id", "the location is inactive")],
            {"location_id": location.id},
            ErrorKind.CONFLICT,
        )
    priced = price_lines(lines, items, location)
    # Every other store named to fulfil from must be the merchant's: another merchant's is
    # refused (404) like a made-up one, before anything is saved or held. Its tax rules are
    # those of the lines it hands over or ships (where the goods leave from).
    stores = {location.id: location}
    for elsewhere in sorted({f.location_id for f in fulfillments} - {location.id, ""}):
        try:
            stores[elsewhere] = (await ports.catalog.price_snapshot(elsewhere, skus))[0]
        except DomainError as exc:
            named = [
                f"fulfillments[{i}].location_id"
                for i, f in enumerate(fulfillments)
                if f.location_id == elsewhere
            ]
            raise _missing(exc, named) from None
    raise_if(_offered(fulfillments, stores, location))
    cart = CartContext(
        location.id,
        channel,
        customer_id,
        coupon_codes,
        location.time_zone,
        order_manual,
        buyer.groups,
    )
    leaves_from = [
        stores.get(fulfillments[ln.fulfillment].location_id, location)
        if ln.fulfillment < len(fulfillments)
        else location
        for ln in lines
    ]
    # Gift cards sold as lines are stored value: no offer, point or tax touches them; they
    # count in the subtotal and the total only.
    goods, goods_from = _goods(priced, leaves_from)
    quote = (
        await ports.discounts.quote(goods, location.currency, cart)
        if goods
        else _nothing_to_discount(location.currency, coupon_codes, order_manual)
    )
    totals = _with_cards(apply(goods, quote, location, goods_from, buyer.tax_exempt), priced)
    return PricedCart(location, live, priced, quote, totals, leaves_from, buyer.tax_exempt, items)


# The promotion service's refusal of a code that gives the cart no discount.
NOT_APPLICABLE = "coupon_not_applicable"


def _nothing_to_discount(
    currency: str, coupon_codes: tuple[str, ...], order_manual: Manual | None
) -> DiscountQuote:
    """A cart of gift cards alone, which the promotion service is not asked about: its coupons
    give it nothing (refused as the promotion service refuses such a code, rather than used
    up for no discount), and a manual discount of the order has nothing to take off (refused
    rather than dropped unread)."""
    raise_if(
        require(
            order_manual is None,
            "order_manual",
            "has nothing to discount: gift card lines are not discounted",
        )
    )
    rejected = tuple(
        RejectedCoupon(i, NOT_APPLICABLE, "the coupon gives this cart no discount")
        for i in range(len(coupon_codes))
    )
    return DiscountQuote(Money.zero(currency), applied=True, rejected=rejected)


def _named_in_request(exc: DomainError, lines: list[LineRequest]) -> DomainError:
    """The catalog's NotFound as the fields of this request that named what is missing (a 404
    with `errors[]`, as a 400 names its fields): the selling store as `location_id`, an
    unknown SKU (another merchant's too: the catalog cannot tell them apart) as each line
    selling it. The catalog names its own request's fields, which the caller never sent."""
    if exc.metadata.get("resource") == "location":
        return _missing(exc, ["location_id"])
    unknown = set(exc.metadata.get("skus", "").split(",")) - {""}
    return _missing(
        exc,
        [
            f"lines[{i}].sku"
            for i, ln in enumerate(lines)
            if ln.gift_card is None and ln.sku in unknown
        ],
    )


def _missing(exc: DomainError, fields: list[str]) -> DomainError:
    """A NotFound named by `fields`; any other refusal as it is."""
    if exc.kind is not ErrorKind.NOT_FOUND or not fields:
        return exc
    return named_by(exc, fields)


def _offered(
    fulfillments: list[FulfillmentRequest],
    stores: dict[str, SellingLocation],
    selling: SellingLocation,
) -> list[FieldViolation]:
    """A pickup goes to a store that hands pickups over, a shipment from a named store to one
    that ships (as the merchant set each location): the same rule inventory's sourcing keeps
    when it picks the stores itself. Every store is in the order's currency."""
    violations = []
    for i, f in enumerate(fulfillments):
        store = stores.get(f.location_id, selling) if f.location_id else selling
        if store.currency != selling.currency:
            # One order, one currency: a store keeping its books in another would be taxed
            # and paid in a currency that is not its own.
            violations.append(
                FieldViolation(
                    f"fulfillments[{i}].location_id",
                    f"location {store.id} sells in {store.currency}, this order in "
                    f"{selling.currency}",
                )
            )
            continue
        if store.inactive:
            violations.append(
                FieldViolation(f"fulfillments[{i}].location_id", f"location {store.id} is inactive")
            )
        elif f.type is FulfillmentType.PICKUP and not store.pickup_enabled:
            violations.append(
                FieldViolation(
                    f"fulfillments[{i}].location_id",
                    f"location {store.id} does not offer pickup (pickup_enabled is false)",
                )
            )
        elif f.type is FulfillmentType.SHIPMENT and f.location_id and not store.ship_enabled:
            violations.append(
                FieldViolation(
                    f"fulfillments[{i}].location_id",
                    f"location {store.id} does not ship orders (ship_enabled is false)",
                )
            )
    return violations


def _goods(
    lines: list[OrderLine], leaves_from: list[SellingLocation]
) -> tuple[list[OrderLine], list[SellingLocation]]:
    kept = [(ln, at) for ln, at in zip(lines, leaves_from, strict=True) if not ln.gift_card]
    return [ln for ln, _ in kept], [at for _, at in kept]


def _with_cards(totals: Totals, lines: list[OrderLine]) -> Totals:
    cards = sum(ln.line_total.amount for ln in lines if ln.gift_card)
    cur = totals.total.currency
    return Totals(totals.subtotal + Money(cards, cur), totals.discount, totals.tax,
                  totals.total + Money(cards, cur))  # fmt: skip


POINTS = "loyalty_points"


def apply_points(cart: PricedCart, amount: int) -> Totals:
    """Loyalty points redeemed on the order: one more order-level discount after the
    promotions' (spread over what each line has left, by largest remainder), before tax; the
    lines and totals are priced again with it."""
    lines, leaves_from = _goods(cart.lines, cart.leaves_from)
    left = [ln.line_total.amount - ln.discount for ln in lines]
    shares = pricing.allocate(amount, left)
    promoted = [list(ln.discounts) for ln in lines]
    for found, share in zip(promoted, shares, strict=True):
        if share:
            found.append(pricing.LineDiscount(POINTS, share, "Loyalty points redeemed"))
    totals = _priced(lines, promoted, cart.location, leaves_from, cart.tax_exempt)
    return _with_cards(totals, cart.lines)


def apply(
    lines: list[OrderLine],
    quote: DiscountQuote,
    location: SellingLocation,
    leaves_from: list[SellingLocation] | None = None,
    tax_exempt: bool = False,
) -> Totals:
    """The quote's discounts on the lines, then each line's tax; the totals (per line, then
    summed: see domain/tax.py). A line handed over or shipped from another store is taxed at
    that store's rates, unless it states prices the other way (inclusive vs exclusive): an
    order's prices are one or the other, the selling location's."""
    totals = [ln.line_total.amount for ln in lines]
    offers = [
        pricing.OfferShare(d.promotion_id, d.reason, d.lines, d.requested_by)
        for d in quote.discounts
    ]
    discount = min(max(quote.total.amount, 0), sum(totals))
    shares = pricing.line_discounts(totals, discount, offers, list(quote.line_discounts))
    return _priced(lines, shares, location, leaves_from, tax_exempt)


def _priced(
    lines: list[OrderLine],
    shares: list[list[pricing.LineDiscount]],
    location: SellingLocation,
    leaves_from: list[SellingLocation] | None,
    tax_exempt: bool,
) -> Totals:
    own = [
        store.tax_table if store.tax_inclusive == location.tax_inclusive else location.tax_table
        for store in (leaves_from or [location] * len(lines))
    ]
    totals = [ln.line_total.amount for ln in lines]
    priced, t = pricing.price(
        totals,
        [ln.tax_category for ln in lines],
        shares,
        location.tax_table,
        exempt_customer=tax_exempt,
        line_tables=own,
    )
    for line, p in zip(lines, priced, strict=True):
        line.discount, line.tax = p.discount, p.tax
        line.discounts, line.taxes = list(p.discounts), list(p.taxes)
        line.tax_rates, line.tax_compound = dict(p.rates), dict(p.compound)
    cur = location.currency
    return Totals(Money(t.subtotal, cur), Money(t.discount, cur), Money(t.tax, cur),
                  Money(t.total, cur))  # fmt: skip
