"""Orders, their lines, fulfilments, totals and the checkout saga's persisted state.

Plain Python: no storage or transport here. States and names follow
../shared/docs/commerce-states.md.
"""

from __future__ import annotations

import re
from copy import deepcopy
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import Enum

from pos_kit.errors import Conflict, DomainError, ErrorKind, FieldViolation, raise_if, require
from pos_kit.money import Money
from pos_order.domain.coupons import Coupons, CouponStep, CouponUse
from pos_order.domain.pricing import (
    LINE_KINDS,
    LineDiscount,
    Manual,
    PricingWarning,
    price,
    pricing_warnings,
    validate_manual,
)
from pos_order.domain.tax import LocationTax, TaxTable

MAX_LINES = 200
MAX_QUANTITY = 10_000
# The largest order total, in minor units: any one amount the API takes is at most this, and a
# total beyond it is a mistake (a price or quantity mistyped), never a sale to charge a card for.
MAX_TOTAL = 10**12
MAX_FULFILLMENTS = 20
MAX_METADATA = 50


class OrderStatus(Enum):
    DRAFT = "draft"
    PENDING_PAYMENT = "pending_payment"
    CONFIRMED = "confirmed"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    # Only rows written before the saga: a declined checkout is now cancelled.
    PAYMENT_DECLINED = "payment_declined"


class Tender(Enum):
    CASH = "cash"
    CARD = "card"
    GIFT_CARD = "gift_card"
    EXTERNAL = "external"


class FulfillmentType(Enum):
    IN_STORE = "in_store"
    PICKUP = "pickup"
    SHIPMENT = "shipment"


class FulfillmentStatus(Enum):
    FULFILLED = "fulfilled"
    RESERVED = "reserved"
    READY_FOR_PICKUP = "ready_for_pickup"
    PICKED_UP = "picked_up"
    PICKED = "picked"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


F = FulfillmentStatus
# The steps a caller may take, per fulfilment type (expiry and cancellation are the saga's):
# one at a time, as commerce-states.md draws them (a pickup is ready before it is picked up, a
# shipment picked before it is shipped), so a partner reading the feed sees every state.
STEPS: dict[FulfillmentType, dict[FulfillmentStatus, set[FulfillmentStatus]]] = {
    FulfillmentType.IN_STORE: {},
    FulfillmentType.PICKUP: {
        F.RESERVED: {F.READY_FOR_PICKUP},
        F.READY_FOR_PICKUP: {F.PICKED_UP},
    },
    FulfillmentType.SHIPMENT: {
        F.RESERVED: {F.PICKED},
        F.PICKED: {F.SHIPPED},
        F.SHIPPED: {F.DELIVERED},
    },
}
ENDED = {F.FULFILLED, F.PICKED_UP, F.DELIVERED, F.CANCELLED, F.EXPIRED}
# Once goods left the store the order can no longer be cancelled (returns are their own thing).
LEFT_THE_STORE = {F.FULFILLED, F.PICKED_UP, F.SHIPPED, F.DELIVERED}
# A fulfilment captures its share when it reaches one of these.
CAPTURES_AT = {F.PICKED_UP, F.SHIPPED}


class SagaState(Enum):
    RUNNING = "running"  # steps still to take forward
    COMPENSATING = "compensating"  # undoing: void, refund, release
    DONE = "done"  # nothing left for the resumer


class TenderState(Enum):
    SENT = "sent"  # asked; the answer not recorded yet (lost, or a crash)
    PENDING = "pending"  # the processor's answer is not known: the payment reconciler's
    AUTHORIZED = "authorized"
    CAPTURED = "captured"
    FAILED = "failed"
    VOIDED = "voided"


LIVE_TENDERS = {TenderState.AUTHORIZED, TenderState.CAPTURED}
# Tenders whose money is in hand when taken (in the drawer, or taken by another system), never
# authorised: a register sale paid so goes on while the payment service is away, and its payment
# is recorded there later (`TenderRecord.to_record`). A card or a gift card must be asked.
TAKEN_IN_HAND = {Tender.CASH, Tender.EXTERNAL}


class PointsState(Enum):
    """The loyalty points an order redeems: held (`<order>/points/hold`) before any payment,
    redeemed at confirmation, given back when the order is cancelled."""

    SENT = "sent"  # asked to hold; the answer not recorded yet
    HELD = "held"
    FINALIZED = "finalized"  # redeemed with the confirmation
    RELEASED = "released"  # cancelled before confirmation: free again
    REVERSED = "reversed"  # cancelled after confirmation: given back


# Points a single order may redeem: far above any real balance, well inside int64 once priced.
MAX_REDEEM_POINTS = 1_000_000_000


class HoldState(Enum):
    SENT = "sent"
    HELD = "held"
    COMMITTED = "committed"
    RELEASED = "released"
    RESTOCKED = "restocked"  # committed, then the fulfilment ended unsold: back in stock


@dataclass(frozen=True)
class GiftCardAsk:
    """A gift card sold as an order line: its value, and the code of a pre-printed card (empty:
    the payment service generates one). The code is a bearer secret: it is never stored here."""

    amount: Money
    code: str = ""


@dataclass(frozen=True)
class LineRequest:
    sku: str
    quantity: int
    fulfillment: int = 0
    manual: Manual | None = None
    unit_price: Money | None = None  # entered at the sale: open-price products only
    gift_card: GiftCardAsk | None = None


Point = tuple[float, float]  # latitude, longitude


@dataclass(frozen=True)
class FulfillmentRequest:
    type: FulfillmentType
    location_id: str  # a shipment's may be empty: sourcing picks the store(s)
    ship_to: str = ""
    destination: Point | None = None


@dataclass(frozen=True)
class Allocation:
    """What sourcing chose: a store, the lines it ships, and the hold it made there."""

    location_id: str
    lines: list[tuple[str, int]]
    reservation_id: str


@dataclass(frozen=True)
class PricedItem:
    sku: str
    name: str
    unit_price: Money
    tax_category: str = ""
    product_id: str = ""  # what promotions select items by, beside the SKU
    category: str = ""
    open_price: bool = False  # the price is entered at the sale
    # What a unit costs the merchant (minor units, the price's currency); None: not known.
    unit_cost: int | None = None


@dataclass(frozen=True)
class SellingLocation:
    id: str
    currency: str
    tax_rate_bps: int
    # Per tax category; a category not listed is taxed at tax_rate_bps.
    tax_rates_bps: dict[str, int] = field(default_factory=dict, hash=False, compare=False)
    time_zone: str = ""
    tax_inclusive: bool = False  # shelf prices contain their tax (VAT)
    # Several taxes (state, city): when set they replace tax_rate_bps and tax_rates_bps.
    taxes: tuple[LocationTax, ...] = ()
    # What the merchant lets the store do for online orders: hand over pickups, ship. Not a
    # price: the read model's copy (in-store sales only) does not keep them.
    pickup_enabled: bool = field(default=False, compare=False)
    ship_enabled: bool = field(default=False, compare=False)
    # Closed by the merchant: it sells, hands over and ships no more (nor does the read model
    # know it: an in-store sale priced from it while inventory is away is not refused).
    inactive: bool = field(default=False, compare=False)

    @property
    def tax_table(self) -> TaxTable:
        if self.taxes:
            return TaxTable.of_taxes(list(self.taxes), self.tax_inclusive)
        return TaxTable.simple(self.tax_rate_bps, self.tax_rates_bps, self.tax_inclusive)


@dataclass
class OrderLine:
    sku: str
    name: str
    quantity: int
    unit_price: Money
    fulfillment_id: str = ""
    tax_category: str = ""
    # What the pricing step gave the line (minor units): its discounts with their offer and
    # reason, their sum, and its tax (per tax, summed).
    discount: int = 0
    tax: int = 0
    discounts: list[LineDiscount] = field(default_factory=list)
    taxes: list[tuple[str, int]] = field(default_factory=list)
    # Each tax's rate (basis points) as the line was taxed (empty: priced before they were
    # kept); not compared: what the line is, its amounts say.
    tax_rates: dict[str, int] = field(default_factory=dict, compare=False)
    # Whether each tax compounded on the taxes listed before it, as the line was taxed (empty:
    # priced before it was kept; its receipt reads the store's settings); not compared either.
    tax_compound: dict[str, bool] = field(default_factory=dict, compare=False)
    product_id: str = ""
    category: str = ""
    # Asked for at the sale; what it gave is in `discounts` (promotion_id "manual").
    manual: Manual | None = field(default=None, compare=False)
    # `L<n>`, by the line's place in the request: a gift card's activation and a return name it.
    id: str = ""
    # A gift card sold as this line (no SKU, no stock, no tax, no discount): whether the caller
    # supplied a pre-printed code (kept only by the caller), and the card once issued.
    gift_card: bool = False
    code_supplied: bool = False
    gift_card_id: str = ""
    gift_card_last4: str = ""
    # Sold below what a unit costs the merchant by a discount or a price given by hand, which
    # the caller was permitted (`sell_below_cost`) to give; not compared, as `tax_rates`.
    below_cost: bool = field(default=False, compare=False)

    @property
    def line_total(self) -> Money:
        return self.unit_price * self.quantity

    @property
    def net(self) -> int:
        """What the line brings in after its discounts, without its tax (minor units)."""
        return self.line_total.amount - self.discount


def below_cost(
    lines: list[OrderLine], items: dict[str, PricedItem], tax_inclusive: bool
) -> list[int]:
    """The lines a discount or a price given by hand (a manual discount, an open product's
    entered price) leaves below what their units cost the merchant: a line's net, without its
    tax, under its unit cost times its quantity. Offers the merchant set up and points the
    customer redeems are the merchant's own choices, so a line they alone take below cost is
    not counted; with a manual discount on it too, the whole discount counts."""
    out = []
    for i, line in enumerate(lines):
        item = items.get(line.sku)
        if line.gift_card or item is None or item.unit_cost is None:
            continue
        by_hand = item.open_price or any(d.promotion_id == "manual" for d in line.discounts)
        net = line.net - (line.tax if tax_inclusive else 0)
        if by_hand and net < item.unit_cost * line.quantity:
            out.append(i)
    return out


def below_cost_refused(lines: list[int]) -> DomainError:
    return DomainError(
        "a discount or price given by hand sells below cost: the signed-in member may not do "
        "that alone, a manager's override is needed for this action",
        "permission_required",
        [FieldViolation(f"lines[{i}]", "is sold below its unit cost") for i in lines],
        {"permission": "sell_below_cost"},
        ErrorKind.FORBIDDEN,
    )


@dataclass(frozen=True)
class Totals:
    subtotal: Money
    discount: Money
    tax: Money
    total: Money


@dataclass
class Fulfillment:
    id: str
    type: FulfillmentType
    location_id: str
    status: FulfillmentStatus
    amount: int = 0  # this fulfilment's share of the total, minor units
    captured: int = 0  # what was captured for it; refunds do not lower it
    # What of `captured` went back when it was cancelled or expired (returns are their own).
    refunded: int = 0
    reservation_id: str = ""
    hold: HoldState | None = None
    carrier: str = ""
    tracking_number: str = ""
    ship_to: str = ""
    expires_at: datetime | None = None  # pickup: when it expires unless picked up
    destination: Point | None = None  # shipment: where to, for sourcing

    @property
    def held(self) -> bool:
        return self.type is not FulfillmentType.IN_STORE

    @property
    def sourced(self) -> bool:
        """A shipment whose store sourcing picks (or picked)."""
        return self.type is FulfillmentType.SHIPMENT and self.destination is not None


@dataclass
class TenderRecord:
    """One `take payment` step: `<order id>/payment/<n>`."""

    n: int
    tender: Tender
    amount: int
    request_id: str
    asked_by: str = ""  # the caller's request id, so its retry finds this step again
    # That request's fingerprint (hex of the kit's, bearer codes keyed): the same request id with
    # another body finds this step too, and must not pay for it with its own card or code. Empty:
    # not the caller's (a checkout's, an exchange's), or recorded before it was kept.
    fingerprint: str = ""
    payment_id: str = ""
    state: TenderState = TenderState.SENT
    captured: int = 0
    # What this service's own steps refunded of it (returns, compensation).
    refunded: int = 0
    # What the payment service last said the payment refunded in all (its refund events,
    # the answers to refunds and payment reads): refunds made outside this service too.
    refunded_seen: int = 0
    # What returns of an exchange's new order gave back to it of the exchange credit it backs
    # (counted in `refunded` too): the part of the credit it no longer backs.
    credit_refunded: int = 0
    # What the payment service released of it without capturing it (a void of what was left
    # once no fulfilment would capture more, or the authorisation's expiry): it pays for
    # nothing.
    voided: int = 0
    # Taken at the till while the payment service was away (cash in the drawer): captured here
    # with no payment yet. The resumer records it under `request_id` once that service is back
    # (the same request a retry of the sale sends, so it is recorded once); then it has its
    # `payment_id` and this is False.
    to_record: bool = False
    # The cash handed over (minor units), kept so the payment is recorded as the till took it.
    cash_tendered: int | None = None
    # The payment service refused for good to record it (`RECORD_REFUSED_FOR_GOOD`): held for
    # a person, no longer asked by the resumer.
    record_refused: str = ""
    # The register and member it was asked at (the call's metadata; empty from the back office
    # or before this was kept). A cancel that meets it still being taken gives its payment back
    # as from there (`saga.giving_back_at`): that till is told the order was cancelled and hands
    # the money back, so cash comes out of the drawer it went into.
    register_id: str = ""
    staff_id: str = ""

    @property
    def refunded_now(self) -> int:
        """What went back of it: the larger of the two counts, each of which only grows, so
        a refund told by both is counted once."""
        return max(self.refunded, self.refunded_seen)


@dataclass
class Capture:
    """A planned capture, stored before it is asked for so its amount never changes."""

    request_id: str
    payment_id: str
    amount: int
    fulfillment_id: str
    done: bool = False


@dataclass(frozen=True)
class DraftPricing:
    """A draft as it was priced before a submit priced it again (with the coupons that submit
    was given): what a refused submit puts back (`Order.back_to_draft`), so nothing of the
    refused request stays on the draft, its coupons' discount least of all."""

    customer_id: str
    lines: list[OrderLine]
    totals: Totals
    discounts_applied: bool
    fulfillments: list[Fulfillment]
    points: int = 0
    points_discount: int = 0
    tax_inclusive: bool | None = None
    tax_exempt: bool = False


@dataclass(frozen=True)
class DraftAsk:
    """What a draft asks for, as its caller gave it (the cart): priced again at each edit and
    at its submit, since the catalog, the promotions, the customer and the loyalty program may
    change while it waits. `coupon_codes` is only ever filled in memory, by a submit that
    was given them: a code is never stored, so a draft keeps none."""

    lines: list[LineRequest]
    fulfillments: list[FulfillmentRequest]
    coupon_codes: tuple[str, ...] = ()
    order_manual: Manual | None = None
    redeem_points: int = 0
    # How many coupon codes its submit was given, to be reserved once its stock is held (the
    # codes themselves stay with the submit's request).
    coupons_given: int = 0
    # While a submit is under way: the draft as it was priced before it (see DraftPricing).
    was: DraftPricing | None = None


@dataclass
class Saga:
    state: SagaState = SagaState.RUNNING
    confirm_requested: bool = False
    tenders: list[TenderRecord] = field(default_factory=list)
    captures: list[Capture] = field(default_factory=list)
    # Compensation and restock request ids already done.
    done_steps: list[str] = field(default_factory=list)
    cancel_reason: str = ""
    # The holds' time to live as asked: a hold whose answer was lost is asked again, exactly
    # the same, to learn its id and release it.
    hold_ttl: int = 0
    # The coupons the order named: reserved, redeemed or released with the order.
    coupons: Coupons = field(default_factory=Coupons)
    # Loyalty points redeemed on the order and what they took off it (minor units), priced
    # before the order was saved; `points_state` None when it redeems none.
    points: int = 0
    points_discount: int = 0
    points_state: PointsState | None = None
    # An exchange's new order: the order its returned units came from, that return, and the
    # part of the new total the returned units pay for (minor units; no payment carries it).
    exchange_of: str = ""
    exchange_return_id: str = ""
    credit: int = 0
    # What returns of the new order gave back of that credit (to the original order's tenders).
    credit_returned: int = 0
    # An order saved before its stock is held is announced (`created`) in the transaction that
    # records its last hold, so what partners hear of names its stores, and an order refused
    # for want of stock is one nobody heard of.
    announce_when_held: bool = False
    # A register's one-call sale (`Checkout`): announced at its end only (confirmed, or
    # cancelled), so partners never hear of a sale that was not made; nothing of it is
    # announced while its payment is awaited.
    one_call_sale: bool = False
    # Fulfilments of a confirmed order being cancelled one by one (CancelFulfillment), and
    # those whose capturing step (picked up, shipped) is under way: each marked under the order
    # row's lock before anything is asked, so a step and a cancel of the same fulfilment never
    # both go ahead, and the resumer finishes a cancel whose driver is gone.
    cancelling: list[str] = field(default_factory=list)
    stepping: list[str] = field(default_factory=list)
    # Those of `cancelling` ended by their pickup's expiry rather than a caller's cancel: the
    # same steps under the same ids, ending `expired` (the resumer marks them when due).
    expiring: list[str] = field(default_factory=list)
    # Where each cancel a caller asked was made: the register and member (empty from the back
    # office), keyed by the fulfilment cancelled, "" for the whole order. Its refunds are asked
    # as from there whoever drives them (the request, its retry, the resumer), so cash given
    # back counts in that register's open shift. A cancel the service made itself (an expiry,
    # an abandoned sale, a failed saga's compensation) has none: it gives back at the register
    # the sale was made at (`saga.giving_back_at`).
    cancelled_at: dict[str, tuple[str, str]] = field(default_factory=dict)
    # A cancelled fulfilment's captured share given back, planned per payment (from what the
    # payment service said was left to refund) and stored before it is asked for, so a re-run
    # asks the same amounts under the same ids (`<order>/refund/<fulfilment>/<payment>`).
    refunds: list[Capture] = field(default_factory=list)
    # What refunds naming units (price adjustments) had given back for a cancelled
    # fulfilment's units when its refunds were planned, taken off them: per fulfilment, per
    # SKU, the units taken to be adjusted and what they were given back. Those units went with
    # the cancel, so a return or another such refund of the SKU no longer counts it
    # (`returns.adjustments`).
    cancel_adjusted: dict[str, dict[str, tuple[int, int]]] = field(default_factory=dict)
    # What a cancelled fulfilment's refunds could not give back from any payment's captured
    # money (goodwill took it, and the rest of the order is only authorised), taken off what
    # the order's live fulfilments capture later: per cancelled fulfilment, per fulfilment
    # still to capture, the amount (`Order.capture_cut`). Planned with the refunds, so it is
    # taken once, and never captured: what it leaves authorised is voided with the rest.
    capture_cut: dict[str, dict[str, int]] = field(default_factory=dict)
    # A draft's cart (see DraftAsk): set while it is a draft and until its submit has held,
    # reserved and set aside everything; None for any other order.
    draft: DraftAsk | None = None
    # How many times the draft was submitted: a submit refused (short stock) puts it back to
    # draft, and the next one holds under new request ids (`Order.hold_key`), since inventory
    # answers a request id with what it did for it (a hold released since).
    submits: int = 0
    # How the order was priced, which a shipment sourcing places needs to tax its lines where
    # they leave from once it has picked the stores: whether its prices hold their tax (the
    # selling store's way), and whether its customer buys without tax. None: priced before
    # they were kept (its sourced lines keep the selling store's tax).
    tax_inclusive: bool | None = None
    tax_exempt: bool = False
    # An exchange's new order cancelled because the exchange was refused once it was made (a
    # tender refused or declined, the credit refunded meanwhile): that refusal as its caller
    # heard it, so a retry of the request hears it again, word for word.
    refusal: DomainError | None = None


@dataclass(frozen=True)
class StatusChange:
    status: str
    at: datetime
    reason: str = ""


@dataclass
class Order:
    id: str
    location_id: str
    customer_id: str
    lines: list[OrderLine]
    totals: Totals
    discounts_applied: bool
    status: OrderStatus = OrderStatus.PENDING_PAYMENT
    channel: str = "register"
    fulfillments: list[Fulfillment] = field(default_factory=list)
    saga: Saga = field(default_factory=Saga)
    notes: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    version: int = 1
    timeline: list[StatusChange] = field(default_factory=list)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    # An unconfirmed order is abandoned (compensated) after this.
    expires_at: datetime | None = None
    # A register sale: the register and the staff member signed in at it; empty otherwise.
    register_id: str = ""
    staff_id: str = ""
    events: list[object] = field(default_factory=list, repr=False, compare=False)

    # -- reading ------------------------------------------------------------------------------

    @property
    def currency(self) -> str:
        return self.totals.total.currency

    @property
    def cancel_reason(self) -> str:
        return self.saga.cancel_reason

    @property
    def warnings(self) -> list[PricingWarning]:
        """What the order says of how it was priced (list prices while promotions were down)."""
        return pricing_warnings(self.discounts_applied)

    @property
    def payment_ids(self) -> list[str]:
        return [t.payment_id for t in self.saga.tenders if t.payment_id]

    @property
    def tender_types(self) -> list[str]:
        """The tender type of each payment in `payment_ids`, in the same order."""
        return [t.tender.value for t in self.saga.tenders if t.payment_id]

    @property
    def tender_amounts(self) -> list[int]:
        """What each payment in `payment_ids` pays for the order: what it was taken for less
        what went back of it (cash handed back before the confirmation), nothing for one that
        holds no money (declined, voided, its answer unknown)."""
        return [
            max(0, t.amount - t.voided - t.refunded_now) if t.state in LIVE_TENDERS else 0
            for t in self.saga.tenders
            if t.payment_id
        ]

    @property
    def payment_id(self) -> str:
        ids = self.payment_ids
        return ids[-1] if ids else ""

    @property
    def paid(self) -> int:
        """What live tenders hold for the order (authorised or captured), net of refunds, and
        an exchange's credit (the returned units paying for part of the new order) less what
        its own returns gave back of that credit."""
        if self.status is OrderStatus.CANCELLED:
            # Compensated: every authorisation was voided, so what the customer still pays is
            # what was captured and not refunded.
            return sum(max(0, t.captured - t.refunded_now) for t in self.saga.tenders)
        held = sum(
            t.amount - t.voided - t.refunded_now
            for t in self.saga.tenders
            if t.state in LIVE_TENDERS
        )
        return held + self.saga.credit - self.saga.credit_returned

    def refunded_in_all(self, payment_id: str, refunded: int) -> bool:
        """The payment service says the payment has refunded `refunded` in all (refunds made
        outside a return, through the payments API, count too). A payment's refunds only grow:
        the tender keeps the larger of what it heard and this, so an answer or an event that
        arrives late undoes nothing. True when it changed."""
        for t in self.saga.tenders:
            if t.payment_id == payment_id and refunded > t.refunded_seen:
                before = t.refunded_now
                t.refunded_seen = refunded
                return t.refunded_now != before
        return False

    def payment_voided(self, payment_id: str, voided: int = 0) -> bool:
        """The payment service voided a payment of the order that was only authorised (through
        the payments API, or its authorisation window passed): its tender pays for nothing any
        more, and what it held is due again. One captured in part and then voided (`voided`:
        what the void released) keeps its captures and holds nothing more: a fulfilment that
        was to capture the rest is refused as unpaid (`share_not_covered`), not sent to a
        capture the payment service refuses. True when it changed."""
        for t in self.saga.tenders:
            if t.payment_id != payment_id:
                continue
            if t.state is TenderState.AUTHORIZED and not t.captured:
                t.state = TenderState.VOIDED
                return True
            if t.captured and voided > t.voided:
                t.voided = voided
                return True
        return False

    @property
    def money_held(self) -> int:
        """What the tenders captured and did not give back, by this order's own count: what
        cancelling the whole order would refund."""
        return sum(max(0, t.captured - t.refunded_now) for t in self.saga.tenders)

    def refund_needs_permission(self, payments_held: int = 0) -> None:
        """A cancel asked by a caller who may not give money back (a register's member
        without the `refund` permission, no override): refused if it would refund anything
        (`payments_held`: what the payment service says is captured and not refunded), or if
        a tender's answer is not known yet (it may be money taken, given back with the rest).
        Asked before the cancel is marked, under the row's lock."""
        held = max(self.money_held, payments_held)
        unanswered = any(
            t.state in (TenderState.SENT, TenderState.PENDING) for t in self.saga.tenders
        )
        if held > 0 or unanswered:
            raise refund_refused(
                f"this cancel gives {held} back"
                if held > 0
                else "a tender's answer is not known yet: this cancel may give money back"
            )

    def cash_a_cancel_gives_back(
        self,
        fulfillment_id: str = "",
        payments_held: dict[str, int] | None = None,
        given_back: int = 0,
    ) -> list[str]:
        """The cash payments a cancel marked now would refund (in the order taken): for the
        whole order (`fulfillment_id` empty) what any cash tender holds captured and not
        refunded, by this order's count or the payment service's (`payments_held`); for one
        fulfilment marked `cancelling`, the cash its refunds reach (`refunds_for`, less what
        price adjustments of its units gave back already, `given_back`), and, its last live
        one of an order of which nothing left the store, what the order holds too."""
        held = payments_held or {}
        whole = [
            t.payment_id
            for t in self.saga.tenders
            if t.tender is Tender.CASH
            and t.payment_id
            and max(t.captured - t.refunded_now, held.get(t.payment_id, 0)) > 0
        ]
        if not fulfillment_id:
            return whole
        f = self.fulfillment(fulfillment_id)
        assert f is not None
        cash = {t.payment_id for t in self.saga.tenders if t.tender is Tender.CASH}
        # Its share goes back where it was captured from, and what those payments no longer
        # have (goodwill given back from them) from the others (`refunds_for`).
        left = {
            t.payment_id: max(t.captured - t.refunded_now, held.get(t.payment_id, 0))
            for t in self.saga.tenders
            if t.payment_id
        }
        plan = self.refunds_for(f.id, left, given_back)
        if f.captured - f.refunded <= 0:
            # Nothing of its own goes back: only a cut on its capture no live fulfilment takes.
            plan = self._cut_refunds(left, self._cut_passed_on(f.id, given_back)[1])
        share = [p for p in plan if p in cash]
        last = not any(
            x.status not in ENDED and x.id not in self.saga.cancelling for x in self.fulfillments
        ) and not any(x.status in LEFT_THE_STORE for x in self.fulfillments)
        return list(dict.fromkeys([*share, *(whole if last else [])]))

    def fulfillment_refund_needs_permission(self, fulfillment_id: str, given_back: int = 0) -> None:
        """As `refund_needs_permission`, for one fulfilment marked `cancelling`: its captured
        share goes back, less what price adjustments of its units gave back already
        (`given_back`, as `refunds_for` plans it); the last live one of an order of which
        nothing left the store takes the order with it, and whatever the order holds goes back
        too."""
        f = self.fulfillment(fulfillment_id)
        assert f is not None
        # Judged by what the cancel gives back: a share adjusted in full gives nothing back
        # and needs no permission. Judged by the capture alone, it was refused.
        share = max(0, f.captured - f.refunded - max(0, given_back))
        # And a cut on its capture that no live fulfilment takes: given back from what the
        # payments captured (`_cut_passed_on`).
        share += min(self._cut_passed_on(f.id, given_back)[1], self.money_held)
        last = not any(
            x.status not in ENDED and x.id not in self.saga.cancelling for x in self.fulfillments
        ) and not any(x.status in LEFT_THE_STORE for x in self.fulfillments)
        if share > 0:
            raise refund_refused(f"this cancel gives {share} back")
        if last:
            self.refund_needs_permission()

    @property
    def cancelled_total(self) -> int:
        """What the cancelled and expired fulfilments' shares come to: not sold."""
        return sum(f.amount for f in self.fulfillments if f.status in (F.CANCELLED, F.EXPIRED))

    @property
    def goods_total(self) -> int:
        """What loyalty earns on: the order's total less the gift cards it sold."""
        cards = sum(ln.line_total.amount for ln in self.lines if ln.gift_card)
        return self.totals.total.amount - cards

    @property
    def cancelled_goods(self) -> int:
        """What of the order's goods (gift cards sold apart, as for a return) went with its
        cancelled and expired fulfilments: never handed over, so they keep no points."""
        given_back = 0
        for f in self.fulfillments:
            if f.status in (F.CANCELLED, F.EXPIRED):
                cards = sum(ln.line_total.amount for ln in self.lines_of(f) if ln.gift_card)
                given_back += max(0, f.amount - cards)
        return given_back

    @property
    def balance_due(self) -> int:
        if self.status is OrderStatus.CANCELLED:
            return 0  # nothing is owed for an order that will not be fulfilled
        return max(0, self.totals.total.amount - self.paid)

    def fulfillment(self, fulfillment_id: str) -> Fulfillment | None:
        return next((f for f in self.fulfillments if f.id == fulfillment_id), None)

    def lines_of(self, f: Fulfillment) -> list[OrderLine]:
        return [ln for ln in self.lines if ln.fulfillment_id == f.id]

    @property
    def coupons_due(self) -> bool:
        """A redemption (confirmed) or a release (cancelled) of its coupons still to ask."""
        step = self.saga.coupons.step
        if self.status is OrderStatus.CANCELLED:
            return self.saga.coupons.to_release
        return step is CouponStep.RESERVED and self.status in (
            OrderStatus.CONFIRMED,
            OrderStatus.COMPLETED,
        )

    def coupons_reserved(self, uses: list[CouponUse]) -> None:
        if self.saga.coupons.step is CouponStep.SENT:
            self.saga.coupons.step = CouponStep.RESERVED
            self.saga.coupons.uses = list(uses)

    def coupons_settled(self, announce: bool = False) -> None:
        """The promotion service answered the redemption (confirmed) or release (cancelled).
        `announce`: settled in a change of its own, after the confirmation (or the
        cancellation) was announced: a new version (its `coupons[].status`) no other event
        tells, announced (`updated`)."""
        if announce:
            self.events.append(OrderUpdated(self))
        if not self.coupons_due:
            return
        self.saga.coupons.step = (
            CouponStep.RELEASED if self.status is OrderStatus.CANCELLED else CouponStep.REDEEMED
        )

    @property
    def stock_asked(self) -> bool:
        """Whether inventory may have been asked to hold the order's stock. The holds are
        asked once its coupons are reserved and its points held (`CreateOrder`), so an order
        stopped before those (refused, abandoned) asked for none."""
        if self.saga.draft is not None:
            return True  # a draft's submit holds its stock first (SubmitOrder)
        return (
            self.saga.coupons.step is not CouponStep.SENT
            and self.saga.points_state is not PointsState.SENT
        )

    def hold_key(self, f: Fulfillment) -> str:
        """The fulfilment as its hold's request ids name it (`<order>/hold/<key>`, release,
        sourcing): its id, and for a draft submitted again after a refusal, the submit's
        number too, so that submit holds anew rather than hearing the first one's answer."""
        return f.id if self.saga.submits <= 1 else f"{f.id}~{self.saga.submits}"

    def tender_for(self, asked_by: str) -> TenderRecord | None:
        return next((t for t in self.saga.tenders if t.asked_by == asked_by), None)

    # -- changing -----------------------------------------------------------------------------

    def _moved(self, status: str, at: datetime, reason: str = "") -> None:
        self.timeline.append(StatusChange(status, at, reason))

    def created(self, at: datetime, announce: bool = True) -> None:
        """`announce`: an order from the register's one-call sale is not announced before its
        payment: partners see it confirmed (or cancelled) within the same request."""
        self._moved(self.status.value, at)
        for f in self.fulfillments:
            self._moved(f"{f.id}:{f.status.value}", at)
        if announce:
            self.events.append(OrderCreated(self))

    def announce_if_held(self) -> None:
        """An order waiting to be announced until its stock is held: once no hold is still
        to take, its `created` event is raised (once: the flag is cleared with it)."""
        if self.saga.announce_when_held and not any(
            f.hold is HoldState.SENT for f in self.fulfillments
        ):
            self.saga.announce_when_held = False
            self.events.append(OrderCreated(self))

    def source(
        self,
        fulfillment_id: str,
        allocations: list[Allocation],
        taxed_at: dict[str, TaxTable] | None = None,
    ) -> None:
        """Sourcing held the fulfilment's lines at one store or split them over several: the
        first store takes the fulfilment, each other one a fulfilment of its own (its lines
        and its share of the first's amount, by value), its lines taxed by the rules
        `taxed_at` gives for its store (none: as they were priced, at the selling store's)."""
        f = self.fulfillment(fulfillment_id)
        if f is None or f.hold is not HoldState.SENT or not allocations:
            return
        asked = {ln.sku: ln for ln in self.lines_of(f)}
        made = [f]
        for k, _ in enumerate(allocations[1:], start=1):
            made.append(
                Fulfillment(
                    f"{f.id}.{k + 1}",
                    FulfillmentType.SHIPMENT,
                    "",
                    F.RESERVED,
                    ship_to=f.ship_to,
                    destination=f.destination,
                )
            )
        before = self.lines
        parts: dict[str, list[OrderLine]] = {}  # each sku's parts, in the allocations' order
        # A line split over stores splits its discounts and taxes by quantity (the cents add up).
        quantities: dict[str, list[int]] = {}
        for allocation in allocations:
            for sku, quantity in allocation.lines:
                quantities.setdefault(sku, []).append(quantity)
        taken: dict[str, int] = {}
        for part, allocation in zip(made, allocations, strict=True):
            part.location_id = allocation.location_id
            part.reservation_id = allocation.reservation_id
            part.hold = HoldState.HELD
            for sku, quantity in allocation.lines:
                k = taken[sku] = taken.get(sku, -1) + 1
                line = asked[sku]
                part_line = _part_of(line, quantity, quantities[sku], k, part.id)
                # A line split over stores keeps its id in the first, a suffix in the others.
                part_line.id = line.id if k == 0 or not line.id else f"{line.id}.{k + 1}"
                parts.setdefault(sku, []).append(part_line)
        # The lines keep the order the buyer gave them: a line's parts stand where it stood.
        self.lines = []
        for ln in before:
            self.lines.extend(parts.pop(ln.sku, []) if ln.fulfillment_id == f.id else [ln])
        # Priced before sourcing picked the stores, at the selling store's rules: each line is
        # taxed where it leaves from, as a shipment naming its store is (`taxed_at`: the rules
        # of each store that states prices the order's way), and the totals move with it.
        inclusive = bool(self.saga.tax_inclusive)
        moved = sum(self._taxed_at(self.lines_of(part), (taxed_at or {}).get(part.location_id))
                    for part in made)  # fmt: skip
        added = 0 if inclusive else moved
        if moved:
            t, cur = self.totals, self.currency
            self.totals = replace(
                t, tax=t.tax + Money(moved, cur), total=t.total + Money(added, cur)
            )
        # Each store's share is what its lines cost after their discounts, with their own tax.
        weights = [sum(_paid(ln, inclusive) for ln in self.lines_of(part)) for part in made]
        for part, share in zip(made, split_total(f.amount + added, weights), strict=True):
            part.amount = share
        at = datetime.now(UTC)
        for part in made[1:]:
            self.fulfillments.append(part)
            self._moved(f"{part.id}:{part.status.value}", at)

    def _taxed_at(self, lines: list[OrderLine], table: TaxTable | None) -> int:
        """`lines` taxed by `table` (none: left as they are), each after its discount: by how
        much their tax moved."""
        if table is None:
            return 0
        moved = 0
        for ln in lines:
            if ln.gift_card:
                continue
            off = [LineDiscount("", ln.discount, "")]
            ((p,), _) = price([ln.line_total.amount], [ln.tax_category], [off], table,
                              exempt_customer=self.saga.tax_exempt)  # fmt: skip
            moved += p.tax - ln.tax
            ln.tax, ln.taxes, ln.tax_rates = p.tax, list(p.taxes), dict(p.rates)
            ln.tax_compound = dict(p.compound)
        return moved

    def require_pending(self, doing: str = "it takes no more tenders") -> None:
        if self.status is OrderStatus.PENDING_PAYMENT and self.saga.state is (
            SagaState.COMPENSATING
        ):
            # Its cancel (or abandonment) is recorded and being carried out: it reads pending
            # until its holds and payments are given back, but is waiting for nothing.
            raise Conflict(f"the order is being cancelled: {doing}", "order_not_pending")
        if self.status is not OrderStatus.PENDING_PAYMENT or self.saga.state is not (
            SagaState.RUNNING
        ):
            raise Conflict(f"the order is {self.status.value}: {doing}", "order_not_pending")
        if self.saga.confirm_requested:
            raise Conflict("the order is being confirmed", "order_confirming")
        if self.saga.draft is not None:
            # A draft's submit under way (its holds, coupons or points not all taken yet): a
            # tender now could confirm it with stock not held. Its submit, retried, ends it.
            raise Conflict(
                f"the order's submit is not finished: {doing}; submit it again",
                "order_submitting",
            )

    @property
    def unclaimed(self) -> int:
        """What neither a live tender nor one whose answer is awaited covers: what a new
        tender may take (of a confirmed order, what is due: `amount_due`). A tender in flight
        may still be approved, so its amount is spoken for until it is declined: two tenders
        sent at once never both take the balance."""
        in_flight = sum(
            t.amount
            for t in self.saga.tenders
            if t.state in (TenderState.SENT, TenderState.PENDING)
        )
        owed = self.amount_due if self.status is OrderStatus.CONFIRMED else self.balance_due
        return max(0, owed - in_flight)

    @property
    def amount_due(self) -> int:
        """A confirmed order: what its fulfilments still to capture (a pickup not picked up, a
        shipment not shipped, none being cancelled) need that neither a capture (done or
        planned) nor what is left of a live authorisation holds. More than zero once an
        authorisation was voided (through the payments API, what a partial capture left, or
        at the end of its window): the step that captures is refused (`payment_required`)
        until a new tender takes it. Zero for any other order (`balance_due` is theirs)."""
        if self.status is not OrderStatus.CONFIRMED:
            return 0
        need = sum(
            max(0, f.amount - f.captured - self._planned_for(f) - self.capture_cut(f))
            for f in self._still_capturing()
        )
        held = sum(
            max(0, t.amount - t.voided - t.captured - _planned(self.saga.captures, t.payment_id))
            for t in self.saga.tenders
            if t.state is TenderState.AUTHORIZED
        )
        return max(0, need - held)

    def add_tender(self, tender: Tender, amount: int, asked_by: str) -> TenderRecord:
        if self.status is OrderStatus.CONFIRMED and self.saga.state is not (SagaState.COMPENSATING):
            return self._tender_for_what_is_due(tender, amount, asked_by)
        self.require_pending()
        open_amount = self.unclaimed
        if open_amount == 0 and self.balance_due > 0:
            raise Conflict(
                "the other tenders' answers are not known yet and would cover the balance; "
                "try again shortly",
                "payment_pending",
            )
        if open_amount == 0:
            raise Conflict("the tenders already cover the total", "balance_covered")
        if amount <= 0 or amount > open_amount:
            raise_if(
                [FieldViolation("amount", f"must be between 1 and the balance due ({open_amount})")]
            )
        return self._new_tender(tender, amount, asked_by)

    def _tender_for_what_is_due(self, tender: Tender, amount: int, asked_by: str) -> TenderRecord:
        """A confirmed order takes a tender only for what its authorisations and captures no
        longer hold of its unfinished fulfilments' shares (`amount_due`): the capture plan
        then takes the rest from it, so the refused step goes ahead. Anything more would be
        money held for nothing."""
        if self.saga.state is SagaState.RUNNING:
            # A step capturing or a fulfilment being cancelled: what is due is changing.
            raise Conflict(
                "a fulfilment of this order is being handed over, shipped or cancelled: "
                "add the tender once it is",
                "fulfillment_in_progress",
            )
        open_amount = self.unclaimed
        if open_amount == 0 and self.amount_due > 0:
            raise Conflict(
                "another tender's answer is not known yet and would cover what is due; "
                "try again shortly",
                "payment_pending",
            )
        if open_amount == 0:
            raise Conflict(
                "the order is confirmed and its payments hold what its fulfilments still "
                "need: nothing is due",
                "payment_not_required",
            )
        if amount <= 0 or amount > open_amount:
            raise_if(
                [FieldViolation("amount", f"must be between 1 and the amount due ({open_amount})")]
            )
        return self._new_tender(tender, amount, asked_by)

    def _new_tender(self, tender: Tender, amount: int, asked_by: str) -> TenderRecord:
        n = len(self.saga.tenders) + 1
        record = TenderRecord(n, tender, amount, f"{self.id}/payment/{n}", asked_by)
        self.saga.tenders.append(record)
        return record

    def tender_refused(self, n: int) -> None:
        """The payment service refused tender `n` before taking anything (a field it refuses,
        a token the processor never issued), or answered that the processor could not be
        reached (`processor_unavailable`: no payment made): it is no longer awaited, so it
        speaks for nothing and the next tender is taken at once. It names no request any
        more: the caller's request may come again, corrected or retried, as a new tender.

        The tender's end, as a decline's answer is: its version announced (`updated`). The
        tender's read may have written what the payment service said of the order's other
        payments (a void, a refund, a `pending` one settled: `paid` moved), which no other
        event tells: the void's own event, heard later, finds it counted."""
        record = self.saga.tenders[n - 1]
        if record.state is TenderState.SENT and not record.payment_id:
            record.state = TenderState.FAILED
            record.asked_by = ""
            self.events.append(OrderUpdated(self))

    @property
    def tenders_to_record(self) -> list[TenderRecord]:
        """Tenders taken in hand while the payment service was away, not recorded there yet."""
        return [t for t in self.saga.tenders if t.to_record]

    def refuse_while_unrecorded(self, what: str) -> None:
        """Money cannot go back through a payment that is not recorded yet: a 409 to retry
        once the resumer has recorded it (seconds after the payment service is back), or, the
        record refused for good, once a person has settled it."""
        held = [t for t in self.tenders_to_record if t.record_refused]
        if held:
            raise Conflict(
                f"{what}: the payment service refused to record this sale's "
                f"{held[0].tender.value} ({held[0].record_refused}): it is held for a person "
                "to settle",
                "payment_record_refused",
                {"order_id": self.id, "refusal": held[0].record_refused},
            )
        if self.tenders_to_record:
            raise Conflict(
                f"{what}: this sale's {self.tenders_to_record[0].tender.value} is not recorded "
                "by the payment service yet (it was away at the sale); retry shortly",
                "payment_not_recorded",
                {"order_id": self.id},
            )

    def tender_taken_in_hand(self, n: int, cash_tendered: int | None) -> None:
        """Tender `n` (cash, an external tender) was taken while the payment service could not
        record it: the money is in hand, so it is captured for the order, to be recorded."""
        record = self.saga.tenders[n - 1]
        if record.payment_id or record.tender not in TAKEN_IN_HAND:
            return
        record.state = TenderState.CAPTURED
        record.captured = record.amount
        record.to_record = True
        record.cash_tendered = cash_tendered

    def tender_recorded(self, n: int, payment_id: str, refunded: int = 0) -> None:
        """The payment service recorded tender `n` taken in hand: it has its payment now, and
        what it captured is the fulfilments' as for money recorded at the sale. Recorded after
        the sale was announced (its saga done): a new version (`payment_ids`, no longer in
        `tenders_to_record`), announced (`updated`) as no other event of the order tells it."""
        record = self.saga.tenders[n - 1]
        if not record.to_record:
            return
        record.payment_id = payment_id
        record.to_record = False
        record.record_refused = ""
        record.refunded_seen = max(record.refunded_seen, refunded)
        self.attribute_taken()
        self.events.append(OrderUpdated(self))

    def tender_record_refused(self, n: int, code: str) -> None:
        """The payment service refused for good to record tender `n` taken in hand: it is held
        for a person (the money is in hand, the sale made), no longer asked by the resumer. A
        new version (`tenders_to_record[].refusal`), announced (`updated`)."""
        record = self.saga.tenders[n - 1]
        if record.to_record and record.record_refused != code:
            record.record_refused = code
            self.events.append(OrderUpdated(self))

    @property
    def tenders_to_record_now(self) -> list[TenderRecord]:
        """The tenders taken in hand the resumer still asks the payment service to record."""
        return [t for t in self.tenders_to_record if not t.record_refused]

    def tender_answered(
        self, n: int, payment_id: str, state: TenderState, captured: int = 0
    ) -> None:
        record = self.saga.tenders[n - 1]
        record.payment_id = payment_id
        record.state = state
        record.captured = max(record.captured, captured)

    def request_confirmation(self) -> None:
        if self.saga.confirm_requested and self.saga.state is SagaState.RUNNING:
            return  # a retry, or the resumer finishing it
        self.require_pending("only an order waiting for payment is confirmed")
        if any(t.state in (TenderState.SENT, TenderState.PENDING) for t in self.saga.tenders):
            raise Conflict(
                "a tender's answer is not known yet; try again shortly", "payment_pending"
            )
        if self.balance_due > 0:
            raise Conflict(
                f"the tenders do not cover the total: {self.balance_due} still due",
                "balance_due",
                {"balance_due": str(self.balance_due)},
            )
        self.saga.confirm_requested = True

    def plan_captures(self, fulfillments: list[Fulfillment]) -> list[Capture]:
        """Capture these fulfilments' shares from the tenders, first taken first. Stored
        before any capture is asked for: a re-run asks the same amounts under the same ids."""
        plan: list[Capture] = []
        left = {
            t.n: t.amount - t.voided - t.captured - _planned(self.saga.captures, t.payment_id)
            for t in self.saga.tenders
        }
        for f in fulfillments:
            # `f.captured` counts the captures done (and what was captured when taken); the
            # captures still to ask for come off too.
            due = (
                f.amount
                - f.captured
                - sum(
                    c.amount for c in self.saga.captures if c.fulfillment_id == f.id and not c.done
                )
                - self.capture_cut(f)
            )
            for t in self.saga.tenders:
                if due <= 0:
                    break
                if t.state is not TenderState.AUTHORIZED or left[t.n] <= 0:
                    continue
                take = min(due, left[t.n])
                plan.append(Capture(f"{self.id}/capture/{f.id}/{t.n}", t.payment_id, take, f.id))
                left[t.n] -= take
                due -= take
        self.saga.captures.extend(plan)
        return plan

    def share_not_covered(self, f: Fulfillment) -> int:
        """What of the fulfilment's share neither a capture (done or planned) nor an
        authorisation still holds: more than zero once its card's authorisation was voided
        (by hand, or at the end of its window) or taken by another capture. Its goods must
        not leave the store for nothing."""
        planned = sum(
            c.amount for c in self.saga.captures if c.fulfillment_id == f.id and not c.done
        )
        return max(0, f.amount - f.captured - planned - self.capture_cut(f))

    def capture_cut(self, f: Fulfillment) -> int:
        """What is taken off the fulfilment's capture for cancelled fulfilments' refunds that
        no payment's captured money could give back (`Saga.capture_cut`): never captured."""
        return sum(by.get(f.id, 0) for by in self.saga.capture_cut.values())

    def unpaid_after_refunds(self, given_back: int, planned: dict[str, int]) -> int:
        """What of the price the order is still sold for its tenders no longer hold, once
        refunds are counted: more than zero after money went back that no return, cancel or
        price adjustment accounts for (a refund through the payments API of the whole payment,
        or of part of it). `given_back`: what the order's returns (pending ones too) and its
        refunds naming units (price adjustments) took off its price; `planned`: per payment,
        what its pending returns are to refund (the larger of that plus this service's own
        count and the payment service's count is what went back, never their sum). What is
        left authorised of a cancelled fulfilment's share only makes this smaller: it never
        refuses a step for nothing."""
        # What was taken off the live fulfilments' captures (a cancel's refund no captured
        # money could give back) was given back by not being taken.
        cut = sum(
            self.capture_cut(f)
            for f in self.fulfillments
            if f.status not in (F.CANCELLED, F.EXPIRED)
        )
        owed = self.totals.total.amount - self.cancelled_total - given_back - cut
        held = sum(
            t.amount - t.voided - max(t.refunded + planned.get(t.payment_id, 0), t.refunded_seen)
            for t in self.saga.tenders
            if t.state in LIVE_TENDERS
        )
        held += self.saga.credit - self.saga.credit_returned
        return max(0, owed - held)

    def step_refused(self, fulfillment_id: str) -> None:
        """A capture of the fulfilment's step was refused for good (the authorisation voided or
        expired since): its planned captures are dropped and the step unmarked, so the order
        is not left half-stepped (neither handed over nor cancellable) with the resumer asking
        for ever; what was captured stays the fulfilment's."""
        self.saga.captures = [
            c for c in self.saga.captures if c.done or c.fulfillment_id != fulfillment_id
        ]
        if fulfillment_id in self.saga.stepping:
            self.saga.stepping.remove(fulfillment_id)
        self.steps_settled()

    def attribute_taken(self) -> None:
        """Money captured when it was taken (cash, an external tender, a register's card
        captured at once) is assigned to the fulfilments, first come first, as captures
        already done: each fulfilment shows what was captured for it, what a later capture
        takes is only the rest, and a pickup that expires refunds its share."""
        for t in self.saga.tenders:
            self._assign_taken(t, self.fulfillments)

    def taken_for_what_is_due(self, n: int) -> None:
        """Tender `n` of a confirmed order (`amount_due`) was captured when taken (cash, an
        external tender): assigned at once to the fulfilments still to capture, as at a
        confirmation, so their step captures nothing more and a cancel refunds it."""
        self._assign_taken(self.saga.tenders[n - 1], self._still_capturing())

    def _assign_taken(self, t: TenderRecord, fulfillments: list[Fulfillment]) -> None:
        if not t.payment_id:
            return
        done = sum(c.amount for c in self.saga.captures if c.payment_id == t.payment_id and c.done)
        # What was refunded of it before (through the payments API) pays for nothing: the
        # other tenders' captures take that part.
        free = t.captured - t.refunded_now - done
        for f in fulfillments:
            if free <= 0:
                break
            take = min(f.amount - f.captured - self._planned_for(f) - self.capture_cut(f), free)
            if take <= 0:
                continue
            self.saga.captures.append(
                Capture(f"{self.id}/taken/{f.id}/{t.n}", t.payment_id, take, f.id, done=True)
            )
            f.captured += take
            free -= take

    def _planned_for(self, f: Fulfillment) -> int:
        """The captures of the fulfilment still to ask for."""
        return sum(c.amount for c in self.saga.captures if c.fulfillment_id == f.id and not c.done)

    def _still_capturing(self) -> list[Fulfillment]:
        """A confirmed order's fulfilments whose share is captured by a step still to come
        (picked up, shipped), none being cancelled."""
        return [
            f
            for f in self.fulfillments
            if f.status not in ENDED | LEFT_THE_STORE and f.id not in self.saga.cancelling
        ]

    def captured(self, capture: Capture) -> None:
        capture.done = True
        for t in self.saga.tenders:
            if t.payment_id == capture.payment_id:
                t.captured += capture.amount
                if t.captured >= t.amount:
                    t.state = TenderState.CAPTURED
        f = self.fulfillment(capture.fulfillment_id)
        if f is not None:
            f.captured += capture.amount

    def confirm(self, at: datetime) -> None:
        """Holds committed and captures done: the order is confirmed."""
        if self.status is OrderStatus.CONFIRMED or self.status is OrderStatus.COMPLETED:
            return
        self.status = OrderStatus.CONFIRMED
        self._moved(self.status.value, at)
        for f in self.fulfillments:
            if f.type is FulfillmentType.IN_STORE:
                f.status = F.FULFILLED
                self._moved(f"{f.id}:{f.status.value}", at)
            # An exchange holds its in-store lines too (before anything is refunded).
            if f.hold is HoldState.HELD:
                f.hold = HoldState.COMMITTED
        self.saga.state = SagaState.DONE
        self.events.append(OrderConfirmed(self))
        self._maybe_complete(at)

    def _maybe_complete(self, at: datetime) -> None:
        """Every fulfilment ended, and something was handed over: completed."""
        if (
            self.status is OrderStatus.CONFIRMED
            and all(f.status in ENDED for f in self.fulfillments)
            and any(f.status in LEFT_THE_STORE for f in self.fulfillments)
        ):
            self.status = OrderStatus.COMPLETED
            self._moved(self.status.value, at)
            self.events.append(OrderCompleted(self))

    def begin_cancel(self, reason: str) -> None:
        if self.status is OrderStatus.CANCELLED:
            return
        if self.saga.state is SagaState.COMPENSATING:
            return
        if self.status not in (
            OrderStatus.PENDING_PAYMENT,
            OrderStatus.CONFIRMED,
            OrderStatus.DRAFT,
        ):
            raise Conflict(f"a {self.status.value} order cannot be cancelled", "order_final")
        if any(f.status in LEFT_THE_STORE for f in self.fulfillments):
            raise Conflict(
                "goods of this order have left the store: return them instead", "order_fulfilled"
            )
        if self.status is OrderStatus.CONFIRMED and self.saga.cancelling:
            # One fulfilment's cancel is under way: cancelling the whole order beside it would
            # give the same share back twice over; once it is done, the rest may be cancelled.
            raise Conflict(
                "a fulfilment of this order is being cancelled: cancel the order once it is",
                "fulfillment_in_progress",
            )
        if self.status is OrderStatus.CONFIRMED and self.saga.state is SagaState.RUNNING:
            # A pickup being handed over or a shipment leaving (its share captured first): the
            # step decided under this row's lock, before this cancel, so it wins; cancelling
            # beside it left a cancelled order with goods gone and their capture kept.
            raise Conflict(
                "a fulfilment of this order is being handed over or shipped: once it is, "
                "return its goods instead",
                "fulfillment_in_progress",
            )
        self.saga.state = SagaState.COMPENSATING
        self.saga.cancel_reason = reason

    def cancelled(self, at: datetime, awaiting: bool = False) -> None:
        """`awaiting`: a payment of the order is still `pending` (taken beside the cancel):
        the order is cancelled, and its saga stays compensating, for the resumer to give that
        payment back once it is settled, should its tender's driver not."""
        state = SagaState.COMPENSATING if awaiting else SagaState.DONE
        if self.status is OrderStatus.CANCELLED:
            # A compensation done again (a tender answered after the cancel): nothing new.
            self.saga.state = state
            return
        self.status = OrderStatus.CANCELLED
        self.saga.state = state
        # An exchange's new order cancelled: its return is dropped, so no credit stands.
        self.saga.credit = 0
        self.saga.draft = None  # a draft's codes are kept no longer than the draft
        self._moved(self.status.value, at, self.saga.cancel_reason)
        for f in self.fulfillments:
            if f.status not in ENDED:
                f.status = F.CANCELLED
                self._moved(f"{f.id}:{f.status.value}", at, self.saga.cancel_reason)
        self.events.append(OrderCancelled(self))

    def step_fulfillment(
        self,
        fulfillment_id: str,
        to: FulfillmentStatus,
        carrier: str = "",
        tracking_number: str = "",
    ) -> Fulfillment:
        f = self.fulfillment(fulfillment_id)
        if f is None:
            from pos_kit.errors import NotFound

            raise NotFound("fulfillment", fulfillment_id)
        if to is not F.SHIPPED:
            # Only `shipped` keeps them: never a 200 that silently drops what was sent.
            raise_if(
                [
                    *require(not carrier, "carrier", "is only given at shipped"),
                    *require(not tracking_number, "tracking_number", "is only given at shipped"),
                ]
            )
        if f.status is to:
            shipped_as = (f.carrier, f.tracking_number)
            if (
                to is F.SHIPPED
                and (carrier or tracking_number)
                and (
                    carrier,
                    tracking_number,
                )
                != shipped_as
            ):
                # Never a silent 200 that keeps the old tracking: the client must know.
                raise Conflict(
                    "the fulfilment was shipped already, with another carrier or tracking number",
                    "fulfillment_already_shipped",
                    {"carrier": f.carrier, "tracking_number": f.tracking_number},
                )
            return f  # already there: a retry
        if self.status is not OrderStatus.CONFIRMED:
            raise Conflict(
                f"the order is {self.status.value}: only a confirmed order is fulfilled",
                "order_not_confirmed",
            )
        if self.saga.state is SagaState.COMPENSATING:
            raise Conflict(
                "the order is being cancelled: only a confirmed order is fulfilled",
                "order_not_confirmed",
            )
        if f.id in self.saga.cancelling or f.status is F.CANCELLED:
            # The cancel marked it first, under this row's lock: the goods stay in the store.
            raise Conflict(
                "the fulfilment is cancelled or being cancelled: its goods stay in the store",
                "fulfillment_cancelled",
            )
        if to not in STEPS[f.type].get(f.status, set()):
            nexts = ", ".join(sorted(s.value for s in STEPS[f.type].get(f.status, set())))
            refused = Conflict(
                f"a {f.type.value} fulfilment goes from {f.status.value} to "
                + (nexts or "nothing more"),
                "invalid_transition",
            )
            # The step asked for is the field at fault: `errors[]` names `status` and what may
            # come next (none until 2026-12-05).
            reason = (
                f"must be one of {nexts}" if nexts else "nothing comes after " + (f.status.value)
            )
            refused.violations = [FieldViolation("status", reason)]
            raise refused
        if to is F.SHIPPED:
            raise_if(
                [
                    *require(bool(carrier), "carrier", "is required at shipped"),
                    *require(bool(tracking_number), "tracking_number", "is required at shipped"),
                ]
            )
        return f

    def fulfillment_moved(
        self,
        f: Fulfillment,
        to: FulfillmentStatus,
        at: datetime,
        carrier: str = "",
        tracking_number: str = "",
        reason: str = "",
    ) -> None:
        f.status = to
        if to is F.SHIPPED:
            f.carrier, f.tracking_number = carrier, tracking_number
        self._moved(f"{f.id}:{to.value}", at, reason)
        self.events.append(OrderFulfillmentUpdated(self, f.id, status=to))
        self._maybe_complete(at)

    # -- one fulfilment cancelled -------------------------------------------------------------

    def begin_fulfillment_cancel(self, fulfillment_id: str) -> bool:
        """Mark a pickup or shipment that has not left the store as being cancelled, under the
        order row's lock. False when there is nothing to start: it is cancelled already, or its
        cancel is under way (a retry drives it on)."""
        f = self.fulfillment(fulfillment_id)
        if f is None:
            from pos_kit.errors import NotFound

            raise NotFound("fulfillment", fulfillment_id)
        if f.status is F.EXPIRED or f.id in self.saga.expiring:
            # Its expiry came first (marked under this row's lock): it ends `expired`, and its
            # driver (the resumer) gives it back under the ids a cancel would use.
            raise Conflict(
                "the pickup expired: its units are back in stock and its share given back",
                "fulfillment_expired",
            )
        if f.id in self.saga.cancelling or f.status is F.CANCELLED:
            return False
        if f.type is FulfillmentType.IN_STORE:
            # Handed over at the sale: its goods are with the customer, a return takes them
            # back. A 409 rather than a 400: the request is well formed, the fulfilment's
            # state is what refuses it.
            raise Conflict(
                "an in-store fulfilment's goods were handed over at the sale: return them instead",
                "fulfillment_in_store",
            )
        if f.status in LEFT_THE_STORE:
            raise Conflict(
                f"the fulfilment is {f.status.value}: its goods left the store, return them "
                "instead",
                "fulfillment_left_store",
            )
        if self.status is not OrderStatus.CONFIRMED or self.saga.state is SagaState.COMPENSATING:
            doing = (
                "being cancelled"
                if self.saga.state is SagaState.COMPENSATING
                else (self.status.value)
            )
            raise Conflict(
                f"the order is {doing}: only a confirmed order's fulfilments are cancelled one "
                "by one (an order not confirmed yet is cancelled whole)",
                "order_not_confirmed",
            )
        if f.id in self.saga.stepping or any(
            c.fulfillment_id == f.id and not c.done for c in self.saga.captures
        ):
            # Its hand-over or shipment wrote this row first (its share being captured): that
            # step wins; once done, its goods are returned instead.
            raise Conflict(
                "the fulfilment is being handed over or shipped: once it is, return its goods "
                "instead",
                "fulfillment_in_progress",
            )
        self.saga.cancelling.append(f.id)
        self.saga.state = SagaState.RUNNING
        return True

    def begin_pickup_expiry(self, fulfillment_id: str, at: datetime) -> bool:
        """Mark a pickup whose wait is over as being ended by its expiry, under the order row's
        lock: it is then given back exactly as a cancelled fulfilment is (`cancelling`, the same
        steps and ids), and ends `expired`. False when it is not due, or something else has it:
        a cancel under way (the cancel gives back the same, under the same ids), or its hand-over
        (the hand-over decided first and wins)."""
        f = self.fulfillment(fulfillment_id)
        if (
            f is None
            or f.type is not FulfillmentType.PICKUP
            or f.status not in (F.RESERVED, F.READY_FOR_PICKUP)
            or f.expires_at is None
            or f.expires_at > at
            or self.status is not OrderStatus.CONFIRMED
            or self.saga.state is SagaState.COMPENSATING
            or f.id in self.saga.cancelling
            or f.id in self.saga.stepping
            or any(c.fulfillment_id == f.id and not c.done for c in self.saga.captures)
        ):
            return False
        self.saga.cancelling.append(f.id)
        self.saga.expiring.append(f.id)
        self.saga.state = SagaState.RUNNING
        return True

    def plan_refunds(
        self,
        fulfillment_id: str,
        refundable: dict[str, int],
        adjusted: dict[str, tuple[int, int]] | None = None,
    ) -> None:
        """What was captured for a fulfilment being cancelled goes back (`refunds_for`), each
        payment at most what the payment service says it has left to refund, less what refunds
        naming its units gave back already (`adjusted`: per SKU, the units and what they were
        given back, recorded with the plan). Planned once: a re-run asks the same amounts under
        the same ids."""
        if (
            fulfillment_id in self.saga.cancel_adjusted
            or fulfillment_id in self.saga.capture_cut
            or any(r.fulfillment_id == fulfillment_id for r in self.saga.refunds)
        ):
            return
        adjusted = {sku: a for sku, a in (adjusted or {}).items() if a[0] > 0}
        if adjusted:
            self.saga.cancel_adjusted[fulfillment_id] = adjusted
        given_back = sum(amount for _, amount in adjusted.values())
        plan, short = self._refunds_and_short(fulfillment_id, refundable, given_back)
        for payment_id, take in plan.items():
            self.saga.refunds.append(
                Capture(
                    f"{self.id}/refund/{fulfillment_id}/{payment_id}",
                    payment_id,
                    take,
                    fulfillment_id,
                )
            )
        # A cut earlier cancels took off this fulfilment's capture is still owed: passed on to
        # the live fulfilments still to capture, and what none can take given back from what
        # the payments have left, under ids of its own (not this fulfilment's refunds).
        passed_on, to_refund = self._cut_passed_on(fulfillment_id, given_back)
        if passed_on is not None:
            self.saga.capture_cut = passed_on
        left = {p: max(0, a) - plan.get(p, 0) for p, a in refundable.items()}
        for payment_id, take in self._cut_refunds(left, to_refund).items():
            self.saga.refunds.append(
                Capture(
                    f"{self.id}/refund/{fulfillment_id}/{payment_id}/cut",
                    payment_id,
                    take,
                    fulfillment_id,
                )
            )
        # What no payment's captured money can give back is taken off what the order still
        # captures (a shipment not shipped yet): the customer pays that much less for it, so
        # the goodwill stays given. Before, it was dropped, and the later capture took the
        # goodwill back.
        cut: dict[str, int] = {}
        for f in self._still_capturing():
            if short <= 0:
                break
            if f.id == fulfillment_id or f.id in self.saga.stepping or self._planned_for(f):
                continue  # its capture is planned already (its step under way)
            take = min(short, f.amount - f.captured - self.capture_cut(f))
            if take > 0:
                cut[f.id] = take
                short -= take
        if cut:
            self.saga.capture_cut[fulfillment_id] = cut
        self._take_back_adjusted(fulfillment_id, given_back)

    def _cut_passed_on(
        self, fulfillment_id: str, given_back: int
    ) -> tuple[dict[str, dict[str, int]] | None, int]:
        """A fulfilment being cancelled whose capture earlier cancels cut (`saga.capture_cut`:
        what their refunds could not give back from any payment's captured money) will never
        capture, so that cut gives nothing back any more. What of it stands for price
        adjustments of its own units beyond what was captured for it stays (its cancel would
        take that back, `_take_back_adjusted`, and the cut nets it); the rest is still owed to
        the customer. It is passed on to the order's live fulfilments still to capture, each
        within what it has left to capture, under the cancelled fulfilment it came from (the
        first figure: the new `saga.capture_cut`, None when nothing moves); what none can take
        (the rest captured already, or left the store) is the second figure, given back from
        the payments' captured money with this cancel. Nothing moves when the cancel takes the
        order with it: everything captured goes back then. Before, the cut was dropped: a
        third fulfilment captured its whole share, or what was captured kept it, and the
        goodwill the cut stood for was taken back."""
        f = self.fulfillment(fulfillment_id)
        assert f is not None
        cut = self.capture_cut(f)
        if cut <= 0 or self._takes_the_order(fulfillment_id):
            return None, 0
        captured = sum(c.amount for c in self.saga.captures if c.fulfillment_id == f.id and c.done)
        carry = cut - min(cut, max(0, given_back - captured))
        if carry <= 0:
            return None, 0
        room = {
            x.id: max(0, x.amount - x.captured - self.capture_cut(x))
            for x in self._still_capturing()
            if x.id != f.id and x.id not in self.saga.stepping and not self._planned_for(x)
        }
        moved = {origin: dict(by) for origin, by in self.saga.capture_cut.items()}
        to_refund = 0
        for by in moved.values():
            part = min(by.get(f.id, 0), carry)
            if part <= 0:
                continue
            carry -= part
            by[f.id] -= part
            if not by[f.id]:
                del by[f.id]
            for target, free in room.items():
                take = min(part, free)
                if take > 0:
                    by[target] = by.get(target, 0) + take
                    room[target] -= take
                    part -= take
            to_refund += part
        return moved, to_refund

    def _cut_refunds(self, left: dict[str, int], amount: int) -> dict[str, int]:
        """`amount` given back from what the payments have `left` to refund, from the last
        taken backwards (as `refunds_for` gives back what a cancel's own payments lack)."""
        plan: dict[str, int] = {}
        for t in reversed(self.saga.tenders):
            if amount <= 0:
                break
            take = min(amount, left.get(t.payment_id, 0)) if t.payment_id else 0
            if take > 0:
                plan[t.payment_id] = plan.get(t.payment_id, 0) + take
                amount -= take
        return plan

    def _take_back_adjusted(self, fulfillment_id: str, given_back: int) -> None:
        """What refunds naming the cancelled fulfilment's units gave back beyond what was
        captured for it (its share only authorised: that money came from what the order
        captured for other goods) is captured from the authorisations, its share's, before the
        rest is voided (`<order>/adjusted/<fulfilment>/<n>`, planned with its refunds): the
        goods kept are then paid in full, captured less refunded what they are sold for. Less
        what a cut on its capture stood for already (an earlier cancel's refund its payments
        could not give back: the adjustment, taken from their captured money); nothing when it
        takes the order with it (all that is captured goes back then). Before, the adjustment
        stayed given: the goods kept were sold for that much less."""
        f = self.fulfillment(fulfillment_id)
        assert f is not None
        captured = sum(c.amount for c in self.saga.captures if c.fulfillment_id == f.id and c.done)
        owed = min(
            given_back - captured - self.capture_cut(f),
            f.amount - f.captured - self._planned_for(f) - self.capture_cut(f),
        )
        if owed <= 0 or self._takes_the_order(f.id):
            return
        for t in self.saga.tenders:
            if owed <= 0:
                break
            if t.state is not TenderState.AUTHORIZED or not t.payment_id:
                continue
            left = t.amount - t.voided - t.captured - _planned(self.saga.captures, t.payment_id)
            take = min(owed, left)
            if take > 0:
                self.saga.captures.append(
                    Capture(f"{self.id}/adjusted/{f.id}/{t.n}", t.payment_id, take, f.id)
                )
                owed -= take

    def _takes_the_order(self, fulfillment_id: str) -> bool:
        """Whether the fulfilment (being cancelled) is the order's last live one and nothing
        of the order left the store: its cancel takes the order with it."""
        return not any(
            x.status not in ENDED and x.id not in self.saga.cancelling and x.id != fulfillment_id
            for x in self.fulfillments
        ) and not any(x.status in LEFT_THE_STORE for x in self.fulfillments)

    def adjusted_taken_back(self, request_ids: list[str], refused: list[str]) -> None:
        """A cancel's captures of what a price adjustment gave back (`_take_back_adjusted`)
        made (`request_ids`), or refused for good (`refused`: its authorisation voided or past
        its window since; nothing holds that money any more, and the adjustment stays given)
        and dropped, so the cancel goes on."""
        for c in self.saga.captures:
            if c.request_id in request_ids and not c.done:
                self.captured(c)
        self.saga.captures = [c for c in self.saga.captures if c.request_id not in refused]

    def refunds_for(
        self, fulfillment_id: str, refundable: dict[str, int], given_back: int = 0
    ) -> dict[str, int]:
        """What a cancel of the fulfilment gives back to each payment: what was captured for
        it less what refunds naming its units (price adjustments) gave back already
        (`given_back`), as a return of those units would, to the payments it was captured
        from, each at most what it has left to refund (`refundable`). What they no longer have
        (a refund naming no units, goodwill, gave it back before) is given back from the
        order's other payments, from the last taken backwards, each within what it has left:
        the goodwill stays given, and the customer gets back what the cancelled goods were
        paid, never more than was captured in all. Before, the cancel gave back the whole
        capture whatever a price adjustment had given back of it, and what its payment no
        longer had came from the others: the adjustment was paid twice."""
        plan = self._refunds_and_short(fulfillment_id, refundable, given_back)[0]
        # And a cut on its capture that passes on to no live fulfilment (`_cut_passed_on`).
        to_refund = self._cut_passed_on(fulfillment_id, given_back)[1]
        left = {p: max(0, a) - plan.get(p, 0) for p, a in refundable.items()}
        for payment_id, take in self._cut_refunds(left, to_refund).items():
            plan[payment_id] = plan.get(payment_id, 0) + take
        return plan

    def _refunds_and_short(
        self, fulfillment_id: str, refundable: dict[str, int], given_back: int = 0
    ) -> tuple[dict[str, int], int]:
        """`refunds_for`, and what no payment had left to give back of what is owed."""
        owed: dict[str, int] = {}
        for c in self.saga.captures:
            if c.fulfillment_id == fulfillment_id and c.done:
                owed[c.payment_id] = owed.get(c.payment_id, 0) + c.amount
        due = max(0, sum(owed.values()) - max(0, given_back))
        left = {p: max(0, amount) for p, amount in refundable.items()}
        plan: dict[str, int] = {}
        for payment_id, amount in owed.items():
            take = min(amount, due, left.get(payment_id, 0))
            if take > 0:
                plan[payment_id] = take
                left[payment_id] -= take
                due -= take
        for t in reversed(self.saga.tenders):
            if due <= 0:
                break
            take = min(due, left.get(t.payment_id, 0)) if t.payment_id else 0
            if take > 0:
                plan[t.payment_id] = plan.get(t.payment_id, 0) + take
                left[t.payment_id] -= take
                due -= take
        return plan, due

    def replan_refund(self, request_id: str, refundable: int) -> None:
        """A planned refund the payment service refused for want of money left to refund (a
        refund made outside the cancel gave it back meanwhile): nothing was written under its
        id, so it is planned again at what the payment has left, never more than it was; with
        nothing left it is dropped, and the fulfilment gets back what the payment still had."""
        for r in self.saga.refunds:
            if r.request_id == request_id and not r.done:
                r.amount = min(r.amount, max(0, refundable))
                if r.amount == 0:
                    self.saga.refunds.remove(r)
                return

    def still_to_capture(self) -> int:
        """What the live fulfilments (not ended, not being cancelled) have still to capture."""
        return sum(
            max(0, f.amount - f.captured - self.capture_cut(f))
            for f in self.fulfillments
            if f.status not in ENDED and f.id not in self.saga.cancelling
        )

    def fulfillment_cancelled(self, fulfillment_id: str, refunded: list[str], at: datetime) -> None:
        """Its units back in stock, its refunds (request ids) done: the fulfilment is
        cancelled (or, ended by its pickup's expiry, `expired`), `fulfillment_updated` raised.
        The last live fulfilment of an order of which nothing was handed over takes the order
        with it (`begin_cancel`, with the reason it ended for: the caller then compensates what
        is left, coupons and points with it); with something handed over, the order completes
        once the rest is done."""
        if fulfillment_id not in self.saga.cancelling:
            return
        self.saga.cancelling.remove(fulfillment_id)
        expired = fulfillment_id in self.saga.expiring
        if expired:
            self.saga.expiring.remove(fulfillment_id)
        f = self.fulfillment(fulfillment_id)
        assert f is not None
        for r in self.saga.refunds:
            if r.request_id in refunded and not r.done:
                r.done = True
                for t in self.saga.tenders:
                    if t.payment_id == r.payment_id:
                        t.refunded += r.amount
        # What of its capture went back, so `captured - refunded` reads as what it keeps: its
        # cancel's refunds, and what price adjustments of its units gave back before, which
        # the cancel took off its refunds (`saga.cancel_adjusted`). Without them a pickup of
        # 25.00 adjusted by 10.00 and cancelled read 15.00 refunded, keeping 10.00 the
        # customer had back. Never more than was captured for it: an adjustment an earlier
        # cancel's cut stood for (`_take_back_adjusted`) was not captured here.
        # So do what its refunds could not give back and later captures are cut by
        # (`saga.capture_cut`, wherever it went since): its goodwill share went back that way.
        # Without it a pickup of 25.00 cancelled after 5.00 of goodwill read as keeping 5.00
        # that the payments no longer held. Not what its cancel gave back of a cut on its own
        # capture (`/cut` refunds): that was another cancelled fulfilment's.
        refunds = sum(
            r.amount
            for r in self.saga.refunds
            if r.fulfillment_id == f.id and r.done and not r.request_id.endswith("/cut")
        )
        refunds += sum(self.saga.capture_cut.get(f.id, {}).values())
        adjusted = sum(amount for _, amount in self.saga.cancel_adjusted.get(f.id, {}).values())
        f.refunded = max(
            f.refunded,
            min(f.captured, refunds + min(adjusted, max(0, f.captured - refunds))),
        )
        if f.hold is HoldState.HELD or f.hold is HoldState.SENT:
            f.hold = HoldState.RELEASED
        elif f.hold is HoldState.COMMITTED:
            f.hold = HoldState.RESTOCKED
        self.steps_settled()
        reason = "expired" if expired else "requested"
        if f.status not in ENDED:
            self.fulfillment_moved(f, F.EXPIRED if expired else F.CANCELLED, at, reason=reason)
        if (
            self.status is OrderStatus.CONFIRMED
            and self.saga.state is SagaState.DONE
            and all(x.status in ENDED for x in self.fulfillments)
            and not any(x.status in LEFT_THE_STORE for x in self.fulfillments)
        ):
            self.begin_cancel(reason)
            if fulfillment_id in self.saga.cancelled_at:
                # The order goes with its last fulfilment: what it gives back is the cancel's,
                # at the register that cancel was asked at.
                self.saga.cancelled_at[""] = self.saga.cancelled_at[fulfillment_id]

    def steps_settled(self) -> None:
        """Nothing of a confirmed order under way any more (no capture planned, no step or
        cancel of a fulfilment unfinished): the resumer has nothing left to take further."""
        if (
            self.status in (OrderStatus.CONFIRMED, OrderStatus.COMPLETED)
            and self.saga.state is SagaState.RUNNING
            and not self.saga.cancelling
            and not self.saga.stepping
            and not any(not c.done for c in self.saga.captures)
        ):
            self.saga.state = SagaState.DONE

    # -- drafts -------------------------------------------------------------------------------

    def made_draft(self, ask: DraftAsk) -> None:
        """A new order kept unsubmitted: priced, nothing held, reserved or set aside, nothing
        for the resumer to do (its saga done) and no expiry."""
        self.status = OrderStatus.DRAFT
        self.expires_at = None
        points, discount = self.saga.points, self.saga.points_discount
        self.saga = Saga(SagaState.DONE, points=points, points_discount=discount, draft=ask)
        for f in self.fulfillments:
            f.hold = None

    def require_draft(self, doing: str) -> None:
        if self.status is not OrderStatus.DRAFT:
            raise Conflict(
                f"the order is {self.status.value}: {doing}",
                "order_not_draft",
                {"status": self.status.value},
            )

    def repriced(self, priced: Order, ask: DraftAsk) -> None:
        """A draft edited (or about to be submitted): what `priced` is (the same order priced
        again from `ask`) replaces its lines, totals, customer and fulfilments."""
        self.require_draft("only a draft is edited")
        self.customer_id = priced.customer_id
        self.lines, self.totals = priced.lines, priced.totals
        self.discounts_applied = priced.discounts_applied
        self.fulfillments = priced.fulfillments
        for f in self.fulfillments:
            f.hold = None
        self.saga.points, self.saga.points_discount = (
            priced.saga.points,
            priced.saga.points_discount,
        )
        self.saga.tax_inclusive, self.saga.tax_exempt = (
            priced.saga.tax_inclusive,
            priced.saga.tax_exempt,
        )
        self.saga.draft = ask

    def edited(self, priced: Order, ask: DraftAsk) -> None:
        """A draft's cart edited, priced again (`repriced`) and announced (`updated`): a
        partner keeping orders from events sees each version of the cart."""
        self.repriced(priced, ask)
        self.events.append(OrderUpdated(self))

    def submit(self, priced: Order, hold_seconds: int, at: datetime, coupons: int = 0) -> None:
        """The draft, priced again now (with the `coupons` codes its submit was given), waits
        for payment: its pickups and shipments to be held (all or none), then its coupons
        reserved and its points held (`stock_held`); until they are, `saga.draft` is kept, so
        a refusal can put it back (`back_to_draft`)."""
        ask = self.saga.draft
        assert ask is not None
        was = DraftPricing(
            self.customer_id,
            deepcopy(self.lines),
            self.totals,
            self.discounts_applied,
            deepcopy(self.fulfillments),
            self.saga.points,
            self.saga.points_discount,
            self.saga.tax_inclusive,
            self.saga.tax_exempt,
        )
        self.repriced(priced, replace(ask, coupon_codes=(), coupons_given=coupons, was=was))
        self.status = OrderStatus.PENDING_PAYMENT
        self.expires_at = at + timedelta(seconds=hold_seconds)
        self.saga.state = SagaState.RUNNING
        self.saga.submits += 1
        self.saga.hold_ttl = hold_seconds
        self.saga.cancel_reason = ""
        for f in self.fulfillments:
            if f.held:
                f.hold = HoldState.SENT
        self._moved(self.status.value, at)

    @property
    def asks_coupons_or_points(self) -> bool:
        """A submitting draft's coupons or points still to be asked for (`stock_held`)."""
        ask = self.saga.draft
        return ask is not None and (
            (ask.coupons_given > 0 and self.saga.coupons.step is CouponStep.NONE)
            or (bool(self.saga.points) and self.saga.points_state is None)
        )

    def stock_held(self) -> None:
        """A submitting draft's stock is held: its coupons and points are asked for next. Only
        now, so a submit refused for stock (or left by its driver before its holds) has asked
        nothing of the promotion and customer services, which keep one reservation and one
        points hold per order and would answer a later submit with the one given back."""
        if not self.asks_coupons_or_points:
            return
        assert self.saga.draft is not None
        if self.saga.draft.coupons_given and self.saga.coupons.step is CouponStep.NONE:
            self.saga.coupons = Coupons(CouponStep.SENT)
        if self.saga.points and self.saga.points_state is None:
            self.saga.points_state = PointsState.SENT

    @property
    def may_be_draft_again(self) -> bool:
        """Whether a submitting draft whose submit is given up may be a draft again: nothing
        was asked of the promotion or customer services for it (else it is cancelled)."""
        return (
            self.saga.draft is not None
            and not self.saga.tenders
            and self.saga.coupons.step is CouponStep.NONE
            and self.saga.points_state is None
        )

    def submitted(self) -> None:
        """Everything the submit takes is taken: the draft's cart (its codes) is dropped, and
        the change is announced (`updated`, status `pending_payment`, its stock held): the
        order was announced `created` once, as a draft, and is never created twice; a submit
        refused and put back to draft is told as its own update. Once: a later call finds no
        cart."""
        if self.status is OrderStatus.PENDING_PAYMENT and self.saga.draft is not None:
            self.saga.draft = None
            self.events.append(OrderUpdated(self))

    def back_to_draft(self, at: datetime, reason: str) -> None:
        """A submit refused (short stock, a coupon or the points refused) once what it took is
        given back: a draft again, priced as it was before the submit (not with the coupons
        the submit was given, which the draft does not keep, nor the stores a sourcing picked),
        priced again at its next edit or submit."""
        ask = self.saga.draft
        if self.status is not OrderStatus.PENDING_PAYMENT or ask is None:
            return
        self.status = OrderStatus.DRAFT
        self.expires_at = None
        self.saga.state = SagaState.DONE
        self.saga.cancel_reason = ""
        self.saga.coupons = Coupons()
        self.saga.points_state = None
        was = ask.was
        if was is not None:  # None: submitted before the draft's pricing was kept
            self.customer_id, self.lines, self.totals = was.customer_id, was.lines, was.totals
            self.discounts_applied, self.fulfillments = was.discounts_applied, was.fulfillments
            self.saga.points, self.saga.points_discount = was.points, was.points_discount
            self.saga.tax_inclusive, self.saga.tax_exempt = was.tax_inclusive, was.tax_exempt
        self.saga.draft = replace(ask, coupons_given=0, was=None)
        for f in self.fulfillments:
            f.hold, f.reservation_id = None, ""
        self._moved(self.status.value, at, reason)
        # Announced with the reason in its timeline: the order was pending payment meanwhile.
        self.events.append(OrderUpdated(self))

    def touched(self, at: datetime) -> None:
        self.version += 1
        self.updated_at = at

    def credit_given_back(self, at: datetime) -> None:
        """A return of its exchange's new order gave the exchange's credit back to its tenders
        (or carried it on from the order it was itself exchanged from): its tenders' refunded
        amounts and `paid` moved, a new version, announced (`updated`) as no other event of
        the order tells it (the return's `order_returned` carries the new order)."""
        self.touched(at)
        self.events.append(OrderUpdated(self))

    def payments_heard(self, at: datetime) -> None:
        """A refund of its payments made outside a return (the payments API), or a void of one
        (the payments API, its authorisation's window), heard from the payment service's event
        once it changed what the order counts (`refunded_in_all`, `payment_voided`): `paid` and
        the balance moved, a new version, announced (`updated`) as no other event of the order
        tells it."""
        self.touched(at)
        self.events.append(OrderUpdated(self))

    def tender_asked(self, at: datetime) -> None:
        """A tender taken in steps (`AddTender`) recorded on the order before the payment
        service is asked for it (so the resumer finds it should its driver die), with what
        the tender's read learnt of the order's other payments (a void, a refund, a `pending`
        one settled: `paid` may have moved): a new version, announced (`updated`). Its answer
        (or refusal) is another, announced too (`tender_heard`, `tender_refused`)."""
        self.touched(at)
        self.events.append(OrderUpdated(self))

    def tender_heard(self, at: datetime) -> None:
        """A tender taken in steps (`AddTender`: a pending order's, or a confirmed order's for
        what is due, `amount_due`) has its answer: `paid` and its payments (a declined one
        too, in `payment_ids`) moved, a new version, announced (`updated`) as no other event
        of the order tells it."""
        self.touched(at)
        self.events.append(OrderUpdated(self))

    def rest_voided(self) -> None:
        """What the order's authorisations held beyond what its live fulfilments capture (a
        cancelled or expired fulfilment's share) was voided and written (`saga.void_the_rest`):
        `paid` went down, a new version, announced (`updated`) as no other event of the order
        tells it (the payment's own `payment.voided`, heard later, finds it counted)."""
        self.events.append(OrderUpdated(self))

    def tenders_learnt(self) -> None:
        """The resumer learnt what became of the tenders (a `pending` one settled or failed,
        one whose answer was lost found among the payments, one that never reached the
        payment service given up, a void or refund made through the payments API) and wrote
        it (`saga.sync_tenders`): `paid` and `payment_ids` may have moved, a new version,
        announced (`updated`) as no other event of the order tells it. So for an order whose
        confirmation was asked (a web order being confirmed, an exchange's new order) too: its
        end (confirmed, cancelled) comes at a later version, and what this version says (a
        card voided meanwhile, `paid` down) may be why. Not for an order partners have not
        heard of yet: a register's one-call sale (announced at its end only), an order
        waiting for its stock to be held (`announce_when_held`)."""
        if not self.saga.one_call_sale and not self.saga.announce_when_held:
            self.events.append(OrderUpdated(self))

    def exchange_tenders_written(self) -> None:
        """An exchange's new order had its tenders for the difference recorded, answered (a
        card's `pending` answer too, after which the exchange answers 503 and nothing else
        of the order moves until its payment settles) or learnt again on a retry of the
        exchange (`service/exchanges.py`): `payment_ids`, `tender_types` and `paid` may have
        moved, a new version, announced (`updated`) as no other event of the order tells it.
        Only once the order was announced (`order.created`, when its stock was held): before
        that partners have not heard of it, and it may yet be withdrawn."""
        if not self.saga.announce_when_held:
            self.events.append(OrderUpdated(self))

    def annotated(self, notes: str | None, metadata: dict[str, str] | None, at: datetime) -> None:
        """What is kept on the order beside the sale (a packing note, a partner's own ids)
        changed, in any status: nothing is priced, held or paid; a new version, announced."""
        if notes is not None:
            self.notes = notes
        if metadata is not None:
            self.metadata = dict(metadata)
        self.touched(at)
        self.events.append(OrderUpdated(self))


def refund_refused(what: str) -> DomainError:
    return DomainError(
        f"{what}: the signed-in member may not refund alone, a manager's override is needed "
        "for this action",
        "permission_required",
        metadata={"permission": "refund"},
        kind=ErrorKind.FORBIDDEN,
    )


def _part_of(
    line: OrderLine, quantity: int, quantities: list[int], k: int, fulfillment_id: str
) -> OrderLine:
    def share(amount: int) -> int:
        return split_total(amount, quantities)[k]

    discounts = [LineDiscount(d.promotion_id, share(d.amount), d.reason, d.requested_by)
                 for d in line.discounts]  # fmt: skip
    taxes = [(name, share(amount)) for name, amount in line.taxes]
    # A part's discount is what its discounts add up to, and its tax its taxes, where the
    # line's did (shared apart, each sum could round a cent away from its parts).
    found = sum(d.amount for d in line.discounts)
    owed = sum(amount for _, amount in line.taxes)
    return OrderLine(
        line.sku,
        line.name,
        quantity,
        line.unit_price,
        fulfillment_id,
        line.tax_category,
        discount=sum(d.amount for d in discounts)
        if line.discounts and found == line.discount
        else share(line.discount),
        tax=sum(a for _, a in taxes) if line.taxes and owed == line.tax else share(line.tax),
        discounts=[d for d in discounts if d.amount],
        taxes=taxes,
        tax_rates=dict(line.tax_rates),
        tax_compound=dict(line.tax_compound),
        product_id=line.product_id,
        category=line.category,
        # Each part is the line as sold: its price given by hand and its approval below cost.
        manual=line.manual,
        below_cost=line.below_cost,
    )


def _planned(captures: list[Capture], payment_id: str) -> int:
    return sum(c.amount for c in captures if c.payment_id == payment_id and not c.done)


# An event carries the order as it stands when its transaction commits (the version GET
# answers): a register sale's `confirmed` and `completed`, raised together, show the same order.
@dataclass(frozen=True)
class OrderCreated:
    order: Order


@dataclass(frozen=True)
class OrderConfirmed:
    order: Order


@dataclass(frozen=True)
class OrderUpdated:
    """An order changed with no other event of it: a draft edited, or put back after a refused
    submit; any order's notes or metadata changed; a refund of its payments made outside a
    return, or a void of one, heard of; its coupons redeemed (or released) after the
    confirmation (or the cancellation); an exchange's credit given back to its tenders by a
    return of the exchange's new order; a tender taken in steps (a pending order's, or one
    for what a confirmed order has due) recorded before it is asked, answered, or refused
    before anything was taken; cash taken while the payment service was away recorded there
    after the sale (or its record refused for good); an exchange's new order's tenders
    recorded or answered; what the resumer learnt of its tenders; what its authorisations
    held beyond its live fulfilments' shares voided."""

    order: Order


@dataclass(frozen=True)
class OrderCancelled:
    order: Order


@dataclass(frozen=True)
class OrderCompleted:
    order: Order


@dataclass(frozen=True)
class OrderFulfillmentUpdated:
    order: Order
    fulfillment_id: str
    # A fulfilment cancelled or expired: what loyalty reverses points by, as for a return
    # (OrderReturned): what of the order's goods its completed returns and its cancelled and
    # expired fulfilments took back so far. Set by the service, which reads the returns.
    goods_given_back: int | None = None
    # The status this change took it to: the order may have moved on by the time the event is
    # written (several changes in one transaction share the order's snapshot).
    status: FulfillmentStatus | None = None

    @property
    def gives_back(self) -> bool:
        f = self.order.fulfillment(self.fulfillment_id)
        return f is not None and f.status in (F.CANCELLED, F.EXPIRED)


_GIFT_CODE = re.compile(r"[A-Za-z0-9_-]{8,64}")
MAX_GIFT_CARD = 1_000_000  # minor units; the payment service's per-merchant maximum applies too


def validate_gift_card_line(i: int, line: LineRequest) -> list[FieldViolation]:
    assert line.gift_card is not None
    card = line.gift_card
    return [
        *require(not line.sku, f"lines[{i}].sku", "must be empty on a gift card line"),
        *require(line.quantity == 1, f"lines[{i}].quantity", "must be 1 on a gift card line"),
        # A card sells at its value, never discounted: refused rather than dropped unread.
        *require(
            line.manual is None,
            f"lines[{i}].manual",
            "must be absent on a gift card line: a gift card is not discounted",
        ),
        *require(
            line.unit_price is None,
            f"lines[{i}].unit_price",
            "must be absent on a gift card line: its value is gift_card.amount",
        ),
        *require(
            1 <= card.amount.amount <= MAX_GIFT_CARD,
            f"lines[{i}].gift_card.amount",
            f"must be between 1 and {MAX_GIFT_CARD}",
        ),
        *require(
            not card.code or _GIFT_CODE.fullmatch(card.code) is not None,
            f"lines[{i}].gift_card.code",
            "must be 8 to 64 letters, digits, '-' or '_'",
        ),
    ]


def validate_lines(lines: list[LineRequest], fulfillments: int = 1) -> list[FieldViolation]:
    violations: list[FieldViolation] = []
    violations += require(bool(lines), "lines", "must have at least one line")
    violations += require(len(lines) <= MAX_LINES, "lines", f"must have at most {MAX_LINES}")
    for i, line in enumerate(lines[:MAX_LINES]):
        if line.gift_card is not None:
            violations += validate_gift_card_line(i, line)
            violations += require(
                0 <= line.fulfillment < fulfillments,
                f"lines[{i}].fulfillment",
                f"must name one of the {fulfillments} fulfilments (0 to {fulfillments - 1})",
            )
            continue
        violations += require(bool(line.sku), f"lines[{i}].sku", "is required")
        violations += require(
            1 <= line.quantity <= MAX_QUANTITY,
            f"lines[{i}].quantity",
            f"must be between 1 and {MAX_QUANTITY}",
        )
        violations += require(
            0 <= line.fulfillment < fulfillments,
            f"lines[{i}].fulfillment",
            f"must name one of the {fulfillments} fulfilments (0 to {fulfillments - 1})",
        )
        violations += validate_manual(line.manual, f"lines[{i}].manual", LINE_KINDS)
    # The later of two lines of one SKU in one fulfilment is the one to fix: its place is named.
    first: dict[tuple[str, int], int] = {}
    for i, line in enumerate(lines):
        if line.gift_card is not None:
            continue
        earlier = first.setdefault((line.sku, line.fulfillment), i)
        violations += require(
            earlier == i,
            f"lines[{i}].sku",
            f"repeats the sku of line {earlier}: a sku is one line within a fulfilment",
        )
    return violations


def validate_checkout(
    location_id: str,
    lines: list[LineRequest],
    tender: Tender | None,
    cash_tendered: Money | None = None,
    card_token: str = "",
) -> None:
    violations: list[FieldViolation] = []
    violations += require(bool(location_id), "location_id", "is required")
    violations += validate_lines(lines)
    violations += require(tender is not None, "tender_type", "must be CASH or CARD")
    violations += tender_shape(tender, cash_tendered, card_token)
    raise_if(violations)


_TOKEN = re.compile(r"tok_[A-Za-z0-9_]{1,60}")


def tender_shape(
    tender: Tender | None, cash_tendered: Money | None, card_token: str
) -> list[FieldViolation]:
    """The payment service's rules for a register tender's fields, checked before anything is
    claimed or saved: bad input writes nothing (the payment service checks them again)."""
    violations: list[FieldViolation] = []
    if tender is Tender.CARD:
        violations += require(
            _TOKEN.fullmatch(card_token) is not None,
            "card_token",
            "must be a token from the tokenizer (tok_ followed by letters, digits or _)",
        )
        violations += require(cash_tendered is None, "cash_tendered", "is only for a cash tender")
    if tender is Tender.CASH:
        violations += require(not card_token, "card_token", "is only for a card tender")
        violations += require(
            cash_tendered is not None, "cash_tendered", "is required for a cash tender"
        )
    return violations


def validate_redemption(points: int, customer_id: str) -> list[FieldViolation]:
    return [
        *require(
            0 <= points <= MAX_REDEEM_POINTS,
            "redeem_points",
            f"must be between 0 and {MAX_REDEEM_POINTS}",
        ),
        *require(
            points == 0 or bool(customer_id), "redeem_points", "needs the order's customer_id"
        ),
    ]


def price_points(points: int, point_value: int, discountable: Money) -> Money:
    """What `points` take off an order, at the program's value of a point: never more than
    what is left to discount (the subtotal less the promotions' discount)."""
    raise_if(
        require(
            point_value > 0,
            "redeem_points",
            "the merchant's loyalty program redeems no points",
        )
    )
    worth = Money(points * point_value, discountable.currency)
    raise_if(
        require(
            worth.amount <= discountable.amount,
            "redeem_points",
            f"are worth {worth.amount}, more than the {discountable.amount} left to discount",
        )
    )
    return worth


def validate_register_tender(tender: Tender, total: Money, cash_tendered: Money | None) -> None:
    """Once priced, before the order is saved: the cash handed over covers the total."""
    if tender is not Tender.CASH or cash_tendered is None or total.amount <= 0:
        return
    raise_if(
        [
            *require(
                cash_tendered.currency == total.currency,
                "cash_tendered.currency",
                "must be the currency of the amount",
            ),
            *require(
                cash_tendered.currency != total.currency or cash_tendered.amount >= total.amount,
                "cash_tendered.amount",
                f"must cover the total ({total.amount})",
            ),
        ]
    )


def validate_order(
    channel: str,
    location_id: str,
    lines: list[LineRequest],
    fulfillments: list[FulfillmentRequest],
    metadata: dict[str, str],
) -> None:
    violations: list[FieldViolation] = []
    violations += require(bool(channel), "channel", "is required")
    violations += require(len(channel) <= 32, "channel", "must be at most 32 characters")
    violations += require(bool(location_id), "location_id", "is required")
    violations += require(
        len(fulfillments) <= MAX_FULFILLMENTS,
        "fulfillments",
        f"must have at most {MAX_FULFILLMENTS}",
    )
    for i, f in enumerate(fulfillments):
        if f.type is FulfillmentType.SHIPMENT:
            violations += require(
                bool(f.ship_to), f"fulfillments[{i}].ship_to", "is required for a shipment"
            )
            violations += require(
                bool(f.location_id) or f.destination is not None,
                f"fulfillments[{i}].destination",
                "is required when no location_id is given: sourcing picks the store from it",
            )
            if f.destination is not None:
                lat, lon = f.destination
                violations += require(
                    -90 <= lat <= 90 and -180 <= lon <= 180,
                    f"fulfillments[{i}].destination",
                    "must be a latitude in [-90, 90] and a longitude in [-180, 180]",
                )
        else:
            violations += require(
                bool(f.location_id), f"fulfillments[{i}].location_id", "is required"
            )
            # An address given to a pickup or an in-store sale would be kept and never used:
            # the client has mixed up its fulfilments, and hears so.
            violations += require(
                not f.ship_to, f"fulfillments[{i}].ship_to", "is only for a shipment"
            )
            violations += require(
                f.destination is None, f"fulfillments[{i}].destination", "is only for a shipment"
            )
            # In store, the goods are in the buyer's hands where the sale is made: never
            # refused for stock, nothing held. At another store nobody hands them over, and
            # nothing would stop a sale of units that store does not have (on hand gone
            # negative): that is a pickup there (held), or a shipment from it.
            violations += require(
                f.type is not FulfillmentType.IN_STORE
                or not f.location_id
                or not location_id
                or f.location_id == location_id,
                f"fulfillments[{i}].location_id",
                "an in-store fulfilment is at the order's location_id, where the goods are "
                "handed over: sell from another store with a pickup or a shipment",
            )
    violations += validate_lines(lines, max(1, len(fulfillments)))
    for i, line in enumerate(lines[:MAX_LINES]):
        # A gift card is handed over with the sale: no stock to hold, source or restock.
        if (
            line.gift_card is not None
            and fulfillments
            and 0 <= line.fulfillment < len(fulfillments)
        ):
            violations += require(
                fulfillments[line.fulfillment].type is FulfillmentType.IN_STORE,
                f"lines[{i}].fulfillment",
                "a gift card line is sold in store",
            )
    used = {line.fulfillment for line in lines}
    for i in range(len(fulfillments)):
        violations += require(i in used, f"fulfillments[{i}]", "has no line")
    violations += metadata_violations(metadata)
    raise_if(violations)


def metadata_violations(metadata: dict[str, str]) -> list[FieldViolation]:
    """An order's metadata: at most MAX_METADATA keys of 1 to 40 characters, values at most
    500."""
    violations = require(
        len(metadata) <= MAX_METADATA, "metadata", f"must have at most {MAX_METADATA} keys"
    )
    for key, value in metadata.items():
        violations += require(
            0 < len(key) <= 40 and len(value) <= 500,
            f"metadata.{key[:40]}",
            "keys are 1 to 40 characters, values at most 500",
        )
    return violations


def price_lines(
    lines: list[LineRequest], items: dict[str, PricedItem], location: SellingLocation
) -> list[OrderLine]:
    """The price snapshot: each line priced as the catalog stands at the moment of sale."""
    violations: list[FieldViolation] = []
    for i, line in enumerate(lines):
        item = items.get(line.sku)
        if item is not None and item.unit_price.currency != location.currency:
            violations.append(
                FieldViolation(
                    f"lines[{i}].sku",
                    f"is priced in {item.unit_price.currency}, the location sells in "
                    f"{location.currency}",
                )
            )
    for i, line in enumerate(lines):
        item = items.get(line.sku)
        if item is None:
            continue
        entered = line.unit_price
        if item.open_price:
            violations += require(
                entered is not None,
                f"lines[{i}].unit_price",
                "is required: this product's price is entered at the sale",
            )
            if entered is not None:
                violations += require(
                    entered.currency == location.currency and entered.amount >= 0,
                    f"lines[{i}].unit_price",
                    f"must be zero or more, in {location.currency}",
                )
        else:
            violations += require(
                entered is None,
                f"lines[{i}].unit_price",
                "is only for an open-price product (its price is the catalog's)",
            )
        if line.manual is not None and line.manual.kind == "price":
            listed = entered if item.open_price and entered is not None else item.unit_price
            violations += require(
                line.manual.value <= listed.amount,
                f"lines[{i}].manual.value",
                f"a new price must not be above the list price ({listed.amount})",
            )
    for i, line in enumerate(lines):
        if line.gift_card is not None and line.gift_card.amount.currency != location.currency:
            violations.append(
                FieldViolation(
                    f"lines[{i}].gift_card.amount.currency",
                    f"must be {location.currency}, the location's currency",
                )
            )
    raise_if(violations)
    priced: list[OrderLine] = []
    for i, line in enumerate(lines):
        if line.gift_card is not None:
            priced.append(
                OrderLine(
                    "",
                    "Gift card",
                    1,
                    line.gift_card.amount,
                    id=f"L{i + 1}",
                    gift_card=True,
                    code_supplied=bool(line.gift_card.code),
                )
            )
            continue
        item = items[line.sku]
        priced.append(
            OrderLine(
                line.sku,
                item.name,
                line.quantity,
                # An open-price product sells at the price entered (checked above).
                line.unit_price
                if item.open_price and line.unit_price is not None
                else item.unit_price,
                tax_category=item.tax_category,
                product_id=item.product_id,
                category=item.category,
                manual=line.manual,
                id=f"L{i + 1}",
            )
        )
    return priced


def validate_total(totals: Totals) -> list[FieldViolation]:
    """The one rule on what a sale comes to, checked alike by the cart preview, the checkout
    and an order: its total after tax (and its goods before any discount) within the largest
    order total. Until 2026-12-05 only the goods were checked: tax could take the total past
    it, the preview answered it, an order was made, and the checkout's payment was refused
    naming the payment's own `amount.amount`."""
    return require(
        max(totals.subtotal.amount, totals.total.amount) <= MAX_TOTAL,
        "lines",
        f"come to more than the largest order total ({MAX_TOTAL} minor units)",
    )


def compute_totals(
    lines: list[OrderLine], discount: Money, tax_rate_bps: int, currency: str = ""
) -> Totals:
    """Subtotal, discount (never more than the goods' subtotal), tax on the discounted goods,
    total. A gift card line is stored value, not a sale of goods: no discount, no tax."""
    currency = currency or lines[0].unit_price.currency
    goods = Money.zero(currency)
    cards = Money.zero(currency)
    for line in lines:
        if line.gift_card:
            cards = cards + line.line_total
        else:
            goods = goods + line.line_total
    discount = Money(min(max(discount.amount, 0), goods.amount), currency)
    taxable = goods - discount
    tax = taxable.apply_rate(tax_rate_bps)
    return Totals(goods + cards, discount, tax, taxable + tax + cards)


def split_total(total: int, weights: list[int]) -> list[int]:
    """Each fulfilment's share of the total, by its lines' value; the last takes the rounding,
    so the shares always add up to the total."""
    whole = sum(weights)
    if whole <= 0:
        return [total] + [0] * (len(weights) - 1)
    shares = [total * w // whole for w in weights[:-1]]
    return [*shares, total - sum(shares)]


def _paid(ln: OrderLine, tax_inclusive: bool) -> int:
    """What a line costs the customer: after its discounts, with its tax."""
    return ln.line_total.amount - ln.discount + (0 if tax_inclusive else ln.tax)


def build_fulfillments(
    order_id: str,
    requests: list[FulfillmentRequest],
    lines: list[OrderLine],
    wanted: list[LineRequest],
    total: int,
    tax_inclusive: bool = False,
) -> list[Fulfillment]:
    made = [
        Fulfillment(
            f"{order_id}-{i + 1}",
            r.type,
            r.location_id,
            F.FULFILLED if r.type is FulfillmentType.IN_STORE else F.RESERVED,
            ship_to=r.ship_to,
            # Sourcing picks the store only when none was named.
            destination=r.destination if not r.location_id else None,
        )
        for i, r in enumerate(requests)
    ]
    for line, asked in zip(lines, wanted, strict=True):
        line.fulfillment_id = made[asked.fulfillment].id

    # Each fulfilment's share of the total by what its lines cost after their discounts and
    # with their own tax (a line shipped from another store pays that store's rate): by their
    # shelf value, a pickup at 8.25 % beside a shipment at 7 % took a share of the other's tax.
    weights = [sum(_paid(ln, tax_inclusive) for ln in lines if ln.fulfillment_id == f.id)
               for f in made]  # fmt: skip
    for f, share in zip(made, split_total(total, weights), strict=True):
        f.amount = share
        # An in-store fulfilment is handed over when the order is confirmed, not before.
        if f.type is FulfillmentType.IN_STORE:
            f.status = F.RESERVED
        else:
            f.hold = HoldState.SENT
    return made


# Every domain event this service raises; each has an integration event (adapters/events.py).
EVENTS = (
    OrderCreated,
    OrderConfirmed,
    OrderUpdated,
    OrderCancelled,
    OrderCompleted,
    OrderFulfillmentUpdated,
)
