"""What orders need from storage and from other services, as protocols."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import TracebackType
from typing import Protocol, Self

from pos_kit.idempotency import Claim
from pos_kit.money import Money
from pos_kit.paging import PageRequest
from pos_order.domain.coupons import CouponUse
from pos_order.domain.model import (
    Allocation,
    FulfillmentRequest,
    FulfillmentStatus,
    LineRequest,
    Order,
    OrderLine,
    OrderStatus,
    Point,
    PricedItem,
    SellingLocation,
    Tender,
)
from pos_order.domain.pricing import Buyer, KnownCustomer, Manual
from pos_order.domain.returns import ReceiptlessLimit, Return, UnitsRefund

# Storage. Every repository is bound to one merchant when the unit of work builds it.


@dataclass(frozen=True)
class OrderFilters:
    status: OrderStatus | None = None
    channel: str = ""
    location_id: str = ""
    customer_id: str = ""
    fulfillment_status: FulfillmentStatus | None = None
    register_id: str = ""
    staff_id: str = ""
    # Created in [created_since, created_before): a day's or a shift's orders.
    created_since: datetime | None = None
    created_before: datetime | None = None


@dataclass(frozen=True)
class ReturnFilters:
    """What narrows a list of returns; each one set must hold."""

    order_id: str = ""
    status: str = ""
    register_id: str = ""
    staff_id: str = ""
    # Created in [created_since, created_before): a day's or a shift's returns.
    created_since: datetime | None = None
    created_before: datetime | None = None


@dataclass(frozen=True)
class OrderSettings:
    capture_pickup_at_order: bool = False
    pickup_expiry_seconds: int = 7 * 24 * 3600
    hold_seconds: int = 15 * 60
    return_window_days: int = 30
    # The merchant's own words, printed on receipts with the window's sentence.
    return_policy_text: str = ""
    # Bumped by every change; 1 while the service's defaults apply.
    version: int = 1
    # Returns without a receipt: the most store credit one customer may get from them in a
    # rolling window. None: no limit.
    receiptless_limit: ReceiptlessLimit | None = None


class OrderRepository(Protocol):
    async def add(self, order: Order) -> bool: ...
    async def save(self, order: Order) -> None: ...
    async def save_if_version(self, order: Order, version: int) -> bool:
        """Write the order back if its row is still at `version` (every change bumps it):
        False, and nothing written, when another change came first."""
        ...

    async def get(self, order_id: str, *, lock: bool = False) -> Order | None: ...
    async def list(self, page: PageRequest, filters: OrderFilters | None = None) -> list[Order]:
        """By id, after `page.after`: up to `page.fetch` orders."""
        ...

    async def touch(self, order_id: str, idle_for: timedelta = timedelta(0)) -> None: ...
    async def discard(self, order_id: str) -> None: ...
    async def erase_customer(self, customer_id: str) -> None:
        """Drop what the customer's orders hold that could be personal (see handlers)."""
        ...


class KnownCustomers(Protocol):
    """The merchant's customer ids as the order service has learnt them."""

    async def contains(self, customer_id: str) -> bool: ...
    async def remember(
        self, customer_id: str, version: int, buyer: Buyer | None = None
    ) -> None: ...
    async def resolve(self, customer_id: str) -> KnownCustomer | None:
        """The customer a sale naming this id is for: the id itself, or the survivor of the
        merges it went through, with their groups and tax exemption as the events told; None:
        an id (or a survivor) not known here (one read answers both for an unmerged id)."""
        ...

    async def merged(self, loser_id: str, winner_id: str) -> None:
        """`loser_id` was merged into `winner_id`: a sale naming it is the winner's."""
        ...

    async def forget(self, customer_id: str) -> None: ...
    async def erased(self, customer_id: str) -> bool | None:
        """Whether the id was erased (None: not known here), held against an erasure until
        this transaction ends."""
        ...


@dataclass(frozen=True)
class Start:
    """A checkout (order, return, exchange) request's start, as stored: its order or return
    ids derive from it (`claim`), the same on every run of it (a retry, the resumer's)."""

    at: datetime  # when the request was first claimed
    # Random, made with the start and read back by every run of it: a start made anew under
    # the same request id (its order withdrawn) derives new ids, even within the millisecond.
    # Empty: a start kept from before nonces, whose ids derive as they did then.
    nonce: str
    # Whether this call made the start (the request's first run, or its first since its order
    # was withdrawn): then nothing derived from it exists yet.
    fresh: bool = False

    def claim(self, merchant_id: str, request_id: str) -> Claim:
        return Claim(merchant_id, request_id, self.at, self.nonce)


class CheckoutStarts(Protocol):
    async def start(self, request_id: str, fingerprint: bytes) -> Start:
        """The request's start, made now if there is none: the same on every retry of it.
        `fingerprint`: the request's (`pos_kit.idempotency.request_fingerprint_of`, bearer codes
        keyed), kept with the start; the same request id with another fingerprint is refused
        (`RequestIdReused`): its order or return is the first body's, never this one's."""
        ...

    async def forget(self, request_id: str) -> None:
        """Its order was withdrawn: a retry of the request starts anew (a new order id)."""
        ...

    async def earlier(self, request_id: str) -> Start | None:
        """The request id's start as it stands, whatever body made it (None: none yet)."""
        ...


class SettingsStore(Protocol):
    async def get(self, *, lock: bool = False) -> OrderSettings | None: ...
    async def put(self, settings: OrderSettings) -> bool:
        """Write `settings` if the stored ones are still at the version before theirs (1: none
        stored yet); False, and nothing written, when another change came first."""
        ...

    async def lease(self, holder: str, seconds: float) -> bool:
        """Take the settings' lease for `holder` for `seconds` (or extend its own): False, and
        nothing taken, while another holder's stands."""
        ...

    async def holds_lease(self, holder: str) -> bool:
        """The lease is still `holder`'s: lapsed or not, no other took it since."""
        ...

    async def release(self, holder: str) -> None: ...


class PriceBook(Protocol):
    """The read model a register sale is priced from while inventory is down."""

    async def remember_prices(self, items: list[tuple[PricedItem, int]]) -> None: ...
    async def forget_prices(self, skus: list[str]) -> None: ...
    async def remember_location(self, location: SellingLocation) -> None: ...
    async def snapshot(
        self, location_id: str, skus: list[str]
    ) -> tuple[SellingLocation | None, dict[str, PricedItem]]: ...


class ReturnsOfOrder(Protocol):
    async def of_order(self, order_id: str) -> list[Return]: ...

    # Whether a refund hold of the order is live, and how many it has had (returns.py).
    async def refund_hold(self, order_id: str) -> tuple[bool, int]: ...


class OrderUnitOfWork(Protocol):
    merchant_id: str

    @property
    def returns(self) -> ReturnsOfOrder: ...

    @property
    def prices(self) -> PriceBook: ...

    @property
    def orders(self) -> OrderRepository: ...

    @property
    def customers(self) -> KnownCustomers: ...

    @property
    def checkouts(self) -> CheckoutStarts: ...

    @property
    def settings(self) -> SettingsStore: ...

    def publish(self, event: object) -> None: ...
    async def commit(self) -> None: ...
    def reading(self) -> Self:
        """Only reads: ends with COMMIT, not ROLLBACK (`pos_kit.uow.UnitOfWork.reading`)."""
        ...

    async def __aenter__(self) -> Self: ...
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


NewUow = Callable[[], OrderUnitOfWork]

# Other services, called with the caller's merchant by the kit's gRPC client.


class Catalog(Protocol):
    async def price_snapshot(
        self, location_id: str, skus: list[str]
    ) -> tuple[SellingLocation, dict[str, PricedItem]]: ...


@dataclass(frozen=True)
class CustomerFound:
    """What the customer service answers of an id: its version, and, for a duplicate merged
    into another customer, that customer's id."""

    version: int
    merged_into: str = ""


class CustomerLookup(Protocol):
    async def find(self, customer_id: str) -> CustomerFound | None:
        """The customer as it stands, or None when the merchant has no such customer (or it
        was erased)."""
        ...


class Loyalty(Protocol):
    """The customer service's points, for an order that redeems some; keyed by the order."""

    async def point_value(self) -> int:
        """What one point takes off an order (minor units); 0 when the program redeems none."""
        ...

    async def available(self, customer_id: str) -> int | None:
        """The points the customer may redeem now (held ones aside); None: no such customer."""
        ...

    async def hold(
        self, request_id: str, order_id: str, customer_id: str, points: int, currency: str
    ) -> int:
        """Set the points aside for the order; the discount they make (minor units)."""
        ...

    async def finalize(self, request_id: str, order_id: str) -> None: ...
    async def release(self, request_id: str, order_id: str) -> None: ...
    async def reverse(self, request_id: str, order_id: str, reason: str) -> None:
        """After confirmation: give back what the order redeemed, take back what it earned."""
        ...


@dataclass(frozen=True)
class CartContext:
    """What the promotion service judges an offer's conditions by, beside the lines."""

    location_id: str = ""
    channel: str = ""
    customer_id: str = ""
    coupon_codes: tuple[str, ...] = ()
    time_zone: str = ""  # the location's: offers' windows and hours are its wall-clock time
    order_manual: Manual | None = None  # a discount on the whole order given by hand
    customer_groups: tuple[str, ...] = ()

    @property
    def must_ask(self) -> bool:
        """Coupons or manual discounts: list price is no answer when promotion is down."""
        return bool(self.coupon_codes) or self.order_manual is not None


@dataclass(frozen=True)
class RejectedCoupon:
    index: int  # its position in the request's coupon_codes
    reason: str  # coupon_unknown, coupon_expired, coupon_exhausted, ...
    message: str


@dataclass(frozen=True)
class AppliedDiscount:
    promotion_id: str  # or "manual"
    amount: int
    reason: str
    level: str  # item | order
    lines: tuple[tuple[int, int], ...] = ()  # (line index, amount)
    requested_by: str = ""


@dataclass(frozen=True)
class DiscountQuote:
    total: Money
    applied: bool  # False when promotion could not be asked: sold at list price
    rejected: tuple[RejectedCoupon, ...] = ()
    discounts: tuple[AppliedDiscount, ...] = ()
    line_discounts: tuple[int, ...] = ()  # per line, in the order asked


class Discounts(Protocol):
    async def quote(
        self, lines: list[OrderLine], currency: str, cart: CartContext | None = None
    ) -> DiscountQuote: ...


class Coupons(Protocol):
    """The promotion service's coupon reservations, keyed by the order."""

    async def reserve(
        self,
        request_id: str,
        order_id: str,
        lines: list[OrderLine],
        currency: str,
        cart: CartContext,
    ) -> list[CouponUse]:
        """All the codes or none; a code that cannot apply is a Conflict `coupon_*`."""
        ...

    async def redeem(self, request_id: str, order_id: str) -> None: ...
    async def release(self, request_id: str, order_id: str) -> None: ...


@dataclass(frozen=True)
class PaymentResult:
    payment_id: str
    status: str  # pending | authorized | captured | failed | voided
    raw: object  # the payment as the payment service answered it, returned to the caller
    captured_amount: int = 0
    refunded_amount: int = 0
    amount: int = 0
    # Released without being captured (a void, the authorisation's expiry).
    voided_amount: int = 0
    # Why a failed payment failed (the payment service's stable code).
    decline_code: str = ""

    @property
    def captured(self) -> bool:
        return self.status == "captured"


# The payment service's code for a card the processor never had (its reconciler's finding after
# a crash mid-charge): no decline, the sale was not taken.
PROCESSOR_UNREACHED = "processor_unavailable"


@dataclass(frozen=True)
class TenderAsk:
    """A tender as the caller gave it: what the payment service is asked to take."""

    tender: Tender
    amount: Money
    capture: bool
    card_token: str = ""
    cash_tendered: Money | None = None
    gift_card_code: str = ""
    external_reference: str = ""


class Payments(Protocol):
    async def charge(
        self,
        request_id: str,
        order_id: str,
        location_id: str,
        tender: Tender,
        amount: Money,
        cash_tendered: Money | None,
        card_token: str,
        needs_shift: bool = False,
    ) -> PaymentResult:
        """The register's authorise-and-capture in one call. `needs_shift`: cash at a
        register is refused (409 `cash_needs_open_shift`, nothing taken) when no shift is
        open there as the payment service takes it (a sale that read one open, closed since);
        not asked when recording cash taken in hand earlier (`saga.record_taken`)."""
        ...

    async def take(
        self, request_id: str, order_id: str, location_id: str, ask: TenderAsk
    ) -> PaymentResult: ...
    async def capture(self, request_id: str, payment_id: str, amount: Money) -> PaymentResult: ...
    async def void(self, request_id: str, payment_id: str) -> PaymentResult:
        """Release what is left of the payment's authorisation, the uncaptured rest of one
        captured in part included (what the order will not capture any more)."""
        ...

    async def refund(self, request_id: str, payment_id: str, amount: Money) -> None: ...
    async def of_order(self, order_id: str) -> list[PaymentResult]:
        """Every payment taken for the order, in the order taken: the truth about its money."""
        ...

    async def refunds_of(self, order_id: str) -> list[UnitsRefund]:
        """Every refund of the order's payments, with the units each named."""
        ...

    async def open_shift_at(self, register_id: str) -> str:
        """The id of the shift open at the register, or "" for none."""
        ...


@dataclass(frozen=True)
class Short:
    sku: str
    quantity: int


class Stock(Protocol):
    async def hold(
        self,
        request_id: str,
        location_id: str,
        lines: list[tuple[str, int]],
        ttl_seconds: int,
        reference: str,
    ) -> str:
        """The reservation id; out of stock raises `insufficient_stock` naming what is short."""
        ...

    async def source(
        self,
        request_id: str,
        lines: list[tuple[str, int]],
        destination: Point,
        ttl_seconds: int,
        reference: str,
        currency: str,
    ) -> list[Allocation]:
        """Sourcing for a shipment: holds at the chosen store(s), each selling in `currency`
        (the order's); none has enough is `insufficient_stock` naming what is short."""
        ...

    async def propose(
        self, lines: list[tuple[str, int]], destination: Point, currency: str
    ) -> list[Allocation]:
        """What `source` would choose now, holding nothing (its allocations have no
        reservation); none has enough is `insufficient_stock` as there."""
        ...

    async def commit(self, request_id: str, reservation_id: str) -> None: ...
    async def release(self, request_id: str, reservation_id: str) -> None: ...
    async def restock(
        self, request_id: str, location_id: str, lines: list[tuple[str, int]], reference: str
    ) -> None:
        """Units that were sold (committed) come back to stock."""
        ...


@dataclass(frozen=True)
class IssuedCard:
    gift_card_id: str
    last4: str
    code: str  # shown once: empty when the payment service replays an earlier issue


class GiftCards(Protocol):
    """The payment service's gift cards: a gift card line is activated at confirmation and
    deactivated when its order is cancelled."""

    async def issue(
        self,
        request_id: str,
        amount: Money,
        code: str,
        order_id: str,
        line_id: str,
        customer_id: str,
        location_id: str,
        reason: str = "sale",
    ) -> IssuedCard: ...

    async def deactivate(
        self, request_id: str, gift_card_id: str, reason: str, expected_balance: int = 0
    ) -> None:
        """`expected_balance` set: only while the card holds exactly that (else a Conflict
        `gift_card_balance_changed`, nothing changed)."""
        ...

    async def balance(self, gift_card_id: str) -> int | None:
        """The card's balance; None when the merchant has no such card."""
        ...

    async def max_balance(self) -> int:
        """The most the merchant lets one card hold (0: not known)."""
        ...

    async def reserve_code(
        self, request_id: str, code: str, order_id: str, line_id: str, ttl_seconds: int
    ) -> None:
        """Hold a pre-printed code for the order's line until its card is activated (which
        consumes the hold), the order's codes are released, or `ttl_seconds` pass. A code a
        card has (written any way it is read), or one another order holds: a DomainError
        `gift_card_code_taken`, nothing held."""
        ...

    async def release_codes(self, request_id: str, order_id: str) -> None:
        """End the order's holds that no activation consumed (none: nothing to do)."""
        ...

    async def card_of_line(self, order_id: str, line_id: str) -> str | None:
        """The id of the card the order's line sold, if one was made."""
        ...


@dataclass(frozen=True)
class CheckoutPorts:
    """The services the saga calls."""

    catalog: Catalog
    discounts: Discounts
    payments: Payments
    customers: CustomerLookup
    stock: Stock | None = None
    coupons: Coupons | None = None
    loyalty: Loyalty | None = None
    gift_cards: GiftCards | None = None


@dataclass(frozen=True)
class CheckoutCommand:
    request_id: str
    location_id: str
    customer_id: str
    lines: list[LineRequest]
    tender: Tender | None
    cash_tendered: Money | None
    card_token: str
    coupon_codes: tuple[str, ...] = ()
    order_manual: Manual | None = None
    redeem_points: int = 0
    # The request's fingerprint (pos_kit.idempotency.request_fingerprint_of, bearer codes keyed),
    # kept with its start: the same request id with another body is refused, not run on.
    fingerprint: bytes = b""
    # False: the caller may not sell a line below its unit cost by hand (a 403
    # `permission_required` naming `sell_below_cost`, nothing sold).
    below_cost_permitted: bool = True


@dataclass(frozen=True)
class CreateOrderCommand:
    request_id: str
    channel: str
    location_id: str
    customer_id: str
    lines: list[LineRequest]
    fulfillments: list[FulfillmentRequest]
    notes: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    coupon_codes: tuple[str, ...] = ()
    order_manual: Manual | None = None
    redeem_points: int = 0
    # The request's fingerprint (pos_kit.idempotency.request_fingerprint_of, bearer codes keyed),
    # kept with its start: the same request id with another body is refused, not run on.
    fingerprint: bytes = b""
    # Kept as a draft: priced, nothing held, no tender, until SubmitOrder.
    draft: bool = False
    # False: the caller may not sell a line below its unit cost by hand (a 403
    # `permission_required` naming `sell_below_cost`, nothing sold).
    below_cost_permitted: bool = True


@dataclass(frozen=True)
class DraftChange:
    """An edit of a draft: each field given (not None) replaces the draft's; the rest stay."""

    request_id: str
    order_id: str
    expected_version: int = 0  # 0: whatever the draft's version is
    customer_id: str | None = None
    lines: list[LineRequest] | None = None
    fulfillments: list[FulfillmentRequest] | None = None
    coupon_codes: tuple[str, ...] | None = None
    order_manual: Manual | None = None
    redeem_points: int | None = None
    notes: str | None = None
    metadata: dict[str, str] | None = None
    # The manual discount on the whole order removed (`order_manual` named with no value): None
    # above cannot say it, as it means "keep the draft's".
    clear_order_manual: bool = False
    # The most (basis points) the caller may take off a line by hand, judged on the draft's
    # manual discounts after the change; None: not judged.
    manual_limit_bps: int | None = None
    # False: the caller may not sell a line below its unit cost by hand (a 403
    # `permission_required` naming `sell_below_cost`, nothing sold).
    below_cost_permitted: bool = True
