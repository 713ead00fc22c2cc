"""Promotions, their lifecycle, and the validation of offers and carts. Plain Python: no storage
or transport here. What an offer gives is in `rules.py`; how offers price a cart, `engine.py`."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pos_kit.errors import Conflict, FieldViolation, raise_if, require
from pos_kit.money import BPS, MINOR_UNITS, Money
from pos_promotion.domain import engine
from pos_promotion.domain.coupons import CouponRedeemed, CouponReleased
from pos_promotion.domain.engine import Context, Line, Manual, ManualKind, Priced
from pos_promotion.domain.rules import (
    MONEY_KINDS,
    ORDER_KINDS,
    Conditions,
    Kind,
    Level,
    Offer,
    Rule,
    Selector,
)

# A sales channel's name, as the order service takes it (`register`, `web`, `marketplace_x`):
# an offer for a channel no sale can name would never apply.
CHANNEL = re.compile(r"[a-z][a-z0-9_]{0,31}")
MAX_NAME_LENGTH = 200
MAX_REASON_LENGTH = 200
MAX_SELECTOR_ENTRIES = 1_000
MAX_TIERS = 20
# Bounds well above what the order service sends (200 lines of at most 10,000 units), so a
# checkout never trips them, while a cart still cannot add up past a protobuf int64.
MAX_LINES = 1_000
MAX_QUANTITY = 1_000_000
MAX_UNITS = 1_000_000
INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class MoneyInput:
    """An amount as a client sent it, before we know it is valid money."""

    amount: int
    currency: str


class Status(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    ENDED = "ended"
    # Deleted (never used): a tombstone only the change feed shows; nothing reads it otherwise.
    DELETED = "deleted"


class Schedule(StrEnum):
    """Where now is against the offer's window (`starts_at`/`ends_at`), read only: derived at
    each read from the clock, not a state anyone sets, and apart from `status` (the merchant's
    pause and end). It applies to a sale when `status` is active, this is running, and the
    other conditions (days, hours, channels, ...) hold."""

    SCHEDULED = "scheduled"  # its window has not opened yet
    RUNNING = "running"  # inside its window, or it has none
    FINISHED = "finished"  # its window has closed


# An offer naming no time zone reads its window at each sale's location, in that location's
# zone: it opens first where clocks are furthest ahead and closes last where they are
# furthest behind. The extremes of the offsets in use (Pacific/Kiritimati, Etc/GMT+12).
AHEAD_MOST = timedelta(hours=14)
BEHIND_MOST = timedelta(hours=-12)


def _instant(local: datetime, zone: str, offset: timedelta) -> datetime:
    if zone:
        return local.replace(tzinfo=ZoneInfo(zone)).astimezone(UTC)
    return (local - offset).replace(tzinfo=UTC)


def window(c: Conditions) -> tuple[datetime | None, datetime | None]:
    """The instants (UTC) the window opens and closes, None for an open end: exact in the
    offer's own zone; with none, when it opens at the first location anywhere and closes at
    the last, so `scheduled` means no sale anywhere could get it yet and `finished` none ever
    again."""
    opens = None if c.starts_at is None else _instant(c.starts_at, c.time_zone, AHEAD_MOST)
    closes = None if c.ends_at is None else _instant(c.ends_at, c.time_zone, BEHIND_MOST)
    return opens, closes


def schedule_of(c: Conditions, at: datetime) -> Schedule:
    opens, closes = window(c)
    if opens is not None and at < opens:
        return Schedule.SCHEDULED
    if closes is not None and at >= closes:
        return Schedule.FINISHED
    return Schedule.RUNNING


@dataclass
class Promotion:
    offer: Offer
    status: Status = Status.ACTIVE
    version: int = 1
    used: bool = False  # a coupon of it was reserved: end it, do not delete it
    created_at: datetime | None = None
    updated_at: datetime | None = None
    ended_at: datetime | None = None

    @property
    def id(self) -> str:
        return self.offer.id

    @property
    def name(self) -> str:
        return self.offer.name

    @property
    def active(self) -> bool:
        return self.status is Status.ACTIVE

    def schedule(self, at: datetime | None = None) -> Schedule:
        return schedule_of(self.offer.conditions, at or datetime.now(UTC))

    def check_version(self, expected: int) -> None:
        if expected and expected != self.version:
            raise stale(self.version)

    def move_to(self, status: Status) -> bool:
        """Pause, resume or end; False when it is already there (a replay changes nothing)."""
        if self.status is status:
            return False
        if self.status is Status.ENDED:
            raise Conflict("an ended promotion cannot change", "promotion_ended")
        self.status = status
        self.version += 1
        return True

    def redefine(self, offer: Offer) -> None:
        if self.status is Status.ENDED:
            raise Conflict("an ended promotion cannot change", "promotion_ended")
        self.offer = offer
        self.version += 1


def stale(current: int) -> Conflict:
    return Conflict(
        "the promotion changed since the version you sent",
        "version_mismatch",
        {"current_version": str(current)},
    )


@dataclass(frozen=True)
class PromotionCreated:
    promotion: Promotion


@dataclass(frozen=True)
class PromotionUpdated:
    promotion: Promotion


@dataclass(frozen=True)
class PromotionEnded:
    promotion: Promotion


@dataclass(frozen=True)
class PromotionDeleted:
    promotion_id: str


# ---------- offers ----------


def is_zone(name: str) -> bool:
    """An IANA zone name the system knows (a folder of zones, like "America", is not one)."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def _currency_violations(field_name: str, currency: str) -> list[FieldViolation]:
    return require(
        currency in MINOR_UNITS,
        field_name,
        f"{currency!r} is not a supported ISO 4217 currency code",
    )


def _selector_violations(name: str, s: Selector) -> list[FieldViolation]:
    out: list[FieldViolation] = []
    for part, values in (
        ("skus", s.skus),
        ("product_ids", s.product_ids),
        ("categories", s.categories),
    ):
        out += require(
            len(values) <= MAX_SELECTOR_ENTRIES,
            f"{name}.{part}",
            f"must have at most {MAX_SELECTOR_ENTRIES} entries",
        )
        out += require(all(v.strip() for v in values), f"{name}.{part}", "must not hold blanks")
    return out


def _rule_violations(r: Rule, currency: str) -> list[FieldViolation]:
    v: list[FieldViolation] = []
    v += require(
        r.level is Level.ITEM or r.kind in ORDER_KINDS, "rule.level", f"{r.kind} applies to items"
    )
    v += _selector_violations("rule.items", r.items)
    v += require(
        r.level is Level.ITEM or r.items.everything, "rule.items", "an order rule names no items"
    )
    v += require(r.limit_per_order >= 0, "rule.limit_per_order", "must not be negative")
    # Only these count what they give per order; on another rule the limit would be stored,
    # shown and never hold.
    counted = r.kind in (Kind.BUY_X_GET_Y, Kind.BUNDLE) or (
        r.kind is Kind.AMOUNT_OFF and r.level is Level.ITEM
    )
    v += require(
        counted or not r.limit_per_order,
        "rule.limit_per_order",
        "only for buy_x_get_y, bundle and an item amount_off",
    )
    if r.kind in MONEY_KINDS:
        v += _currency_violations("rule.amount.currency", currency)
        low = 1 if r.kind is Kind.AMOUNT_OFF else 0
        v += require(r.amount >= low, "rule.amount.amount", f"must be at least {low}")
    else:
        v += require(not r.amount, "rule.amount", f"{r.kind} takes no amount")
    if r.kind in (Kind.PERCENT_OFF, Kind.BUY_X_GET_Y):
        v += require(1 <= r.percent_bps <= BPS, "rule.percent_bps", f"must be between 1 and {BPS}")
    else:
        v += require(not r.percent_bps, "rule.percent_bps", f"{r.kind} takes no percent_bps")
    v += require(
        r.kind is Kind.BUY_X_GET_Y or not r.buy_quantity,
        "rule.buy_quantity",
        "only for buy_x_get_y",
    )
    v += require(
        r.kind in (Kind.BUY_X_GET_Y, Kind.BUNDLE, Kind.FREE_ITEM) or not r.get_quantity,
        "rule.get_quantity",
        "only for buy_x_get_y, bundle and free_item",
    )
    if r.kind is Kind.BUY_X_GET_Y:
        v += require(1 <= r.buy_quantity <= MAX_UNITS, "rule.buy_quantity", "must be at least 1")
        v += require(1 <= r.get_quantity <= MAX_UNITS, "rule.get_quantity", "must be at least 1")
        if r.get_items is not None:
            v += _selector_violations("rule.get_items", r.get_items)
    else:
        v += require(r.get_items is None, "rule.get_items", "only for buy_x_get_y")
    if r.kind is Kind.BUNDLE:
        v += require(
            2 <= r.get_quantity <= MAX_UNITS, "rule.get_quantity", "a bundle has 2 or more units"
        )
    if r.kind is Kind.FREE_ITEM:
        v += require(1 <= r.get_quantity <= MAX_UNITS, "rule.get_quantity", "must be at least 1")
    if r.kind is Kind.TIERS:
        v += require(
            1 <= len(r.tiers) <= MAX_TIERS, "rule.tiers", f"must have 1 to {MAX_TIERS} tiers"
        )
        for i, t in enumerate(r.tiers):
            v += require(t.min_quantity >= 1, f"rule.tiers[{i}].min_quantity", "must be at least 1")
            v += require(
                1 <= t.percent_bps <= BPS,
                f"rule.tiers[{i}].percent_bps",
                f"must be between 1 and {BPS}",
            )
        # The tier at fault is named: the later of two for one quantity, and the one for more
        # units that gives no more than the one for fewer before it.
        first: dict[int, int] = {}
        for i, t in enumerate(r.tiers):
            j = first.setdefault(t.min_quantity, i)
            v += require(
                j == i,
                f"rule.tiers[{i}].min_quantity",
                f"repeats rule.tiers[{j}]: two tiers for the same quantity contradict each other",
            )
        ordered = sorted(range(len(r.tiers)), key=lambda i: (r.tiers[i].min_quantity, i))
        for a, b in itertools.pairwise(ordered):
            fewer, more = r.tiers[a], r.tiers[b]
            if fewer.min_quantity == more.min_quantity:
                continue  # named above
            v += require(
                fewer.percent_bps < more.percent_bps,
                f"rule.tiers[{b}].percent_bps",
                f"must be more than rule.tiers[{a}].percent_bps: a larger quantity must give a "
                "larger discount",
            )
    else:
        v += require(not r.tiers, "rule.tiers", "only for tiers")
    return v


def _conditions_violations(c: Conditions, currency: str) -> list[FieldViolation]:
    v: list[FieldViolation] = []
    v += require(
        not c.time_zone or is_zone(c.time_zone), "conditions.time_zone", "is not an IANA time zone"
    )
    if c.starts_at and c.ends_at:
        v += require(c.ends_at > c.starts_at, "conditions.ends_at", "must be after starts_at")
    v += require(
        all(0 <= d <= 6 for d in c.days), "conditions.days_of_week", "must be 1 (Monday) to 7"
    )
    v += require(
        (c.hours_from is None) == (c.hours_until is None),
        "conditions.hours_until",
        "hours_from and hours_until go together",
    )
    if c.hours_from is not None and c.hours_until is not None:
        v += require(
            c.hours_from != c.hours_until, "conditions.hours_until", "must differ from hours_from"
        )
    v += require(c.min_quantity >= 0, "conditions.min_quantity", "must not be negative")
    v += require(c.min_amount >= 0, "conditions.min_amount.amount", "must not be negative")
    if c.min_amount:
        v += _currency_violations("conditions.min_amount.currency", currency)
    for part, values in (
        ("channels", c.channels),
        ("location_ids", c.location_ids),
        ("customer_groups", c.customer_groups),
    ):
        v += require(len(values) <= MAX_SELECTOR_ENTRIES, f"conditions.{part}", "too many entries")
    v += [
        FieldViolation("conditions.channels", f"{name!r} is not a channel name (like web)")
        for name in sorted(c.channels)
        if not CHANNEL.fullmatch(name)
    ]
    return v


def validate_offer(offer: Offer, parse_violations: list[FieldViolation] | None = None) -> Offer:
    """The offer as given, name trimmed, or InvalidArgument naming every field that is wrong."""
    offer = replace(offer, name=offer.name.strip())
    v = list(parse_violations or [])
    v += require(bool(offer.name), "name", "is required")
    v += require(
        len(offer.name) <= MAX_NAME_LENGTH, "name", f"must be at most {MAX_NAME_LENGTH} characters"
    )
    v += _rule_violations(offer.rule, offer.currency)
    v += _conditions_violations(offer.conditions, offer.currency)
    raise_if(v)
    return offer


def edited_currency(
    current: Offer, fields: set[str], sent: str
) -> tuple[str, list[FieldViolation]]:
    """The currency of an offer whose rule or conditions (`fields`) are replaced by parts whose
    amounts are in `sent` (empty: they hold none). A part left as it was keeps its amounts in
    the current currency, so a sent amount in another is refused."""
    if "rule" not in fields and current.rule.kind in MONEY_KINDS:
        sent_field = "conditions.min_amount.currency"
    elif "conditions" not in fields and current.conditions.min_amount:
        sent_field = "rule.amount.currency"
    else:
        return sent, []
    return current.currency, require(
        sent in ("", current.currency),
        sent_field,
        f"must be the promotion's currency {current.currency!r}",
    )


def first_kind_offer(
    promotion_id: str,
    name: str,
    percent_off_bps: int,
    minimum: MoneyInput | None,
    conditions: Conditions | None = None,
    conditions_currency: str = "",
    parse_violations: list[FieldViolation] | None = None,
) -> Offer:
    """The promotion the first API version knew: a percent off the order from a subtotal,
    under `conditions` if any (a window, days, hours, channels, ...)."""
    conditions = conditions or Conditions()
    threshold = conditions.min_amount if minimum is None else minimum.amount
    currency = conditions_currency if minimum is None else minimum.currency
    v = list(parse_violations or [])
    v += require(1 <= percent_off_bps <= BPS, "percent_off_bps", f"must be between 1 and {BPS}")
    if minimum is not None:
        v += _currency_violations("minimum_subtotal.currency", minimum.currency)
        v += require(minimum.amount >= 0, "minimum_subtotal.amount", "must not be negative")
        # The subtotal is checked above as the field it was sent in.
        v += _conditions_violations(replace(conditions, min_amount=0), currency)
    else:
        v += _conditions_violations(conditions, currency)
    offer = Offer(
        promotion_id,
        name,
        Rule(Kind.PERCENT_OFF, Level.ORDER, percent_bps=percent_off_bps),
        replace(conditions, min_amount=max(threshold, 0)),
        currency=currency,
    )
    # Checked together so every bad field is named at once; the rule's own check would repeat
    # percent_off_bps as rule.percent_bps.
    name_v = require(bool(name.strip()), "name", "is required")
    name_v += require(
        len(name.strip()) <= MAX_NAME_LENGTH,
        "name",
        f"must be at most {MAX_NAME_LENGTH} characters",
    )
    raise_if(name_v + v)
    return replace(offer, name=name.strip())


def new_promotion(offer: Offer) -> Promotion:
    return Promotion(offer)


# ---------- carts ----------


@dataclass(frozen=True)
class CartLineInput:
    sku: str
    quantity: int
    unit_price: MoneyInput
    product_id: str = ""
    categories: tuple[str, ...] = ()
    manual: Manual | None = None


@dataclass(frozen=True)
class Cart:
    currency: str
    lines: tuple[Line, ...]
    context: Context = field(default_factory=Context)

    @property
    def subtotal(self) -> Money:
        return Money(sum(ln.unit_price * ln.quantity for ln in self.lines), self.currency)


def _manual_violations(name: str, m: Manual, list_price: int | None) -> list[FieldViolation]:
    v = require(bool(m.reason.strip()), f"{name}.reason", "a manual discount needs a reason")
    v += require(len(m.reason) <= MAX_REASON_LENGTH, f"{name}.reason", "is too long")
    v += require(bool(m.requested_by.strip()), f"{name}.requested_by", "say who asked for it")
    if m.kind is ManualKind.PERCENT:
        v += require(0 <= m.value <= BPS, f"{name}.value", f"must be between 0 and {BPS}")
    elif m.kind is ManualKind.AMOUNT:
        v += require(0 <= m.value <= INT64_MAX, f"{name}.value", "must not be negative")
    elif list_price is None:
        v.append(FieldViolation(f"{name}.kind", "a price override is for a line"))
    else:
        v += require(
            0 <= m.value <= list_price,
            f"{name}.value",
            "a new price is between 0 and the list price",
        )
    return v


def new_cart(lines: list[CartLineInput], currency: str, context: Context | None = None) -> Cart:
    """A valid cart in one currency, or InvalidArgument naming every field that is wrong."""
    context = context or Context()
    violations = _currency_violations("currency", currency)
    violations += require(bool(lines), "lines", "must have at least one line")
    violations += require(len(lines) <= MAX_LINES, "lines", f"must have at most {MAX_LINES}")
    for i, line in enumerate(lines[:MAX_LINES]):
        violations += require(
            1 <= line.quantity <= MAX_QUANTITY,
            f"lines[{i}].quantity",
            f"must be between 1 and {MAX_QUANTITY}",
        )
        violations += require(
            line.unit_price.amount >= 0, f"lines[{i}].unit_price.amount", "must not be negative"
        )
        violations += require(
            line.unit_price.currency == currency,
            f"lines[{i}].unit_price.currency",
            f"must be the cart currency {currency!r}",
        )
        if line.manual is not None:
            violations += _manual_violations(
                f"lines[{i}].manual", line.manual, line.unit_price.amount
            )
    if context.manual is not None:
        violations += _manual_violations("order_manual", context.manual, None)
    if context.time_zone:
        violations += require(
            is_zone(context.time_zone), "location_time_zone", "is not an IANA time zone"
        )
    raise_if(violations)
    cart = Cart(
        currency,
        tuple(
            Line(
                ln.sku,
                ln.quantity,
                ln.unit_price.amount,
                ln.product_id,
                frozenset(ln.categories),
                ln.manual,
            )
            for ln in lines
        ),
        context,
    )
    # Checked after the lines are known to be sane: the total is what would not fit downstream.
    raise_if(require(cart.subtotal.amount <= INT64_MAX, "lines", "the subtotal is too large"))
    return cart


def discounts_for(promotions: list[Promotion], cart: Cart) -> Priced:
    """The active promotions applied to the cart (engine.py states the order and the rules)."""
    offers = [p.offer for p in promotions if p.active]
    return engine.price(offers, cart.lines, cart.currency, cart.context)


def price_with_coupons(
    promotions: list[Promotion], cart: Cart, coupon_offers: frozenset[str]
) -> tuple[Priced, frozenset[str]]:
    """The cart priced with every active offer, the coupon offers its codes enable among them,
    and which of those coupon offers gave nothing. The one way a preview and a reservation
    price a cart with coupons: a coupon whose offer loses to an automatic one (a non-stackable
    of higher priority, an exclusive that gives more) gives nothing, and is not reserved; nor is
    the code of an offer that no longer asks for one (it applies without the code)."""
    with_coupons = replace(cart, context=replace(cart.context, coupon_offers=coupon_offers))
    priced = discounts_for(promotions, with_coupons)
    needs_code = {p.id for p in promotions if p.offer.requires_coupon}
    gave = {a.source for a in priced.applied} & needs_code
    return priced, coupon_offers - gave


def format_money(m: Money) -> str:
    return engine.format_amount(m.amount, m.currency)


# Every domain event this service raises; each has an integration event (adapters/events.py).
EVENTS = (
    PromotionCreated,
    PromotionUpdated,
    PromotionEnded,
    PromotionDeleted,
    CouponRedeemed,
    CouponReleased,
)
