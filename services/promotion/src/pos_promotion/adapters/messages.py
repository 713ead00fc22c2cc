"""Domain objects <-> pos.promotion.v1 protobuf messages."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, time

from pos.common.v1 import money_pb2
from pos.promotion.v1 import promotion_pb2 as pb
from pos_kit.enums import ProtoEnum
from pos_kit.errors import FieldViolation
from pos_kit.money import Money
from pos_kit.proto_money import to_proto
from pos_promotion.domain.coupons import Coupon, CouponStatus, Reservation
from pos_promotion.domain.engine import Context, Manual, ManualKind, Priced
from pos_promotion.domain.model import CartLineInput, MoneyInput, Promotion, Schedule, Status
from pos_promotion.domain.rules import (
    MONEY_KINDS,
    Conditions,
    Kind,
    Level,
    Offer,
    Rule,
    Selector,
    Tier,
)

KINDS = {
    pb.OFFER_KIND_PERCENT_OFF: Kind.PERCENT_OFF,
    pb.OFFER_KIND_AMOUNT_OFF: Kind.AMOUNT_OFF,
    pb.OFFER_KIND_BUY_X_GET_Y: Kind.BUY_X_GET_Y,
    pb.OFFER_KIND_BUNDLE: Kind.BUNDLE,
    pb.OFFER_KIND_TIERS: Kind.TIERS,
    pb.OFFER_KIND_SALE_PRICE: Kind.SALE_PRICE,
    pb.OFFER_KIND_FREE_ITEM: Kind.FREE_ITEM,
}
KINDS_PB = {v: k for k, v in KINDS.items()}
LEVELS = {pb.OFFER_LEVEL_ITEM: Level.ITEM, pb.OFFER_LEVEL_ORDER: Level.ORDER}
LEVELS_PB = {v: k for k, v in LEVELS.items()}
STATUSES_PB = {
    Status.ACTIVE: pb.PROMOTION_STATUS_ACTIVE,
    Status.PAUSED: pb.PROMOTION_STATUS_PAUSED,
    Status.ENDED: pb.PROMOTION_STATUS_ENDED,
    Status.DELETED: pb.PROMOTION_STATUS_DELETED,
}
# A list's status filter: unset is none, a number not in the enum is refused naming it.
STATUSES = ProtoEnum(Status, pb.PromotionStatus)
COUPON_STATUSES = ProtoEnum(CouponStatus, pb.CouponStatus)
SCHEDULES = ProtoEnum(Schedule, pb.ScheduleState)
MANUAL_KINDS = {
    pb.MANUAL_KIND_PERCENT: ManualKind.PERCENT,
    pb.MANUAL_KIND_AMOUNT: ManualKind.AMOUNT,
    pb.MANUAL_KIND_PRICE: ManualKind.PRICE,
}


def money_input(value: money_pb2.Money) -> MoneyInput:
    """Raw, not yet validated: the domain checks the currency with every other field."""
    return MoneyInput(value.amount, value.currency)


def _selector(s: pb.ItemSelector) -> Selector:
    return Selector(frozenset(s.skus), frozenset(s.product_ids), frozenset(s.categories))


def _selector_pb(s: Selector) -> pb.ItemSelector:
    return pb.ItemSelector(
        skus=sorted(s.skus), product_ids=sorted(s.product_ids), categories=sorted(s.categories)
    )


# The years a window may name, as every time the API takes (1970 to 9998).
FIRST_YEAR, LAST_YEAR = 1970, 9998


class _Parse:
    """Collects what cannot even be read, to report with the domain's own checks."""

    def __init__(self) -> None:
        self.violations: list[FieldViolation] = []
        self.currencies: set[str] = set()

    def local(self, name: str, value: str) -> datetime | None:
        if not value:
            return None
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = None
        if parsed is None or parsed.tzinfo is not None:
            self.violations.append(FieldViolation(name, "a local time YYYY-MM-DDTHH:MM, no offset"))
            return None
        # The years every time of the API is of: a window is read from UTC+14 to UTC-12, and
        # year 1 or the end of 9999 would fall off the calendar there.
        if not FIRST_YEAR <= parsed.year <= LAST_YEAR:
            self.violations.append(
                FieldViolation(name, f"a local time of the years {FIRST_YEAR} to {LAST_YEAR}")
            )
            return None
        return parsed

    def clock(self, name: str, value: str) -> time | None:
        if not value:
            return None
        try:
            return time.fromisoformat(value)
        except ValueError:
            self.violations.append(FieldViolation(name, "a time of day HH:MM"))
            return None

    def money(self, value: money_pb2.Money) -> int:
        self.currencies.add(value.currency)
        return value.amount


def _rule(r: pb.Rule, p: _Parse) -> Rule:
    kind = KINDS.get(r.kind)
    if kind is None:
        p.violations.append(FieldViolation("rule.kind", "is required"))
        kind = Kind.PERCENT_OFF
    level = LEVELS.get(r.level)
    if level is None:  # unspecified: an order offer when it can be one and names no items
        whole = not (r.items.skus or r.items.product_ids or r.items.categories)
        level = Level.ORDER if kind in (Kind.PERCENT_OFF, Kind.AMOUNT_OFF) and whole else Level.ITEM
    return Rule(
        kind,
        level,
        _selector(r.items),
        r.percent_bps,
        p.money(r.amount) if r.HasField("amount") else 0,
        r.buy_quantity,
        r.get_quantity,
        _selector(r.get_items) if r.HasField("get_items") else None,
        tuple(Tier(t.min_quantity, t.percent_bps) for t in r.tiers),
        r.limit_per_order,
    )


def _conditions(c: pb.Conditions, p: _Parse) -> Conditions:
    if any(not 1 <= d <= 7 for d in c.days_of_week):
        p.violations.append(FieldViolation("conditions.days_of_week", "must be 1 (Monday) to 7"))
    return Conditions(
        p.local("conditions.starts_at", c.starts_at),
        p.local("conditions.ends_at", c.ends_at),
        c.time_zone,
        frozenset(d - 1 for d in c.days_of_week if 1 <= d <= 7),
        p.clock("conditions.hours_from", c.hours_from),
        p.clock("conditions.hours_until", c.hours_until),
        frozenset(c.channels),
        frozenset(c.location_ids),
        frozenset(c.customer_groups),
        c.min_quantity,
        p.money(c.min_amount) if c.HasField("min_amount") else 0,
    )


def offer_parts(
    rule: pb.Rule, conditions: pb.Conditions
) -> tuple[Rule, Conditions, str, list[FieldViolation]]:
    """A rule and conditions from a request, their one currency, and what could not be read."""
    p = _Parse()
    parsed_rule, parsed_conditions = _rule(rule, p), _conditions(conditions, p)
    currencies = sorted(p.currencies)
    if len(currencies) > 1:
        p.violations.append(
            FieldViolation("conditions.min_amount.currency", "must be the rule's currency")
        )
    return parsed_rule, parsed_conditions, (currencies[0] if currencies else ""), p.violations


def first_kind_conditions(
    r: pb.CreatePromotionRequest,
) -> tuple[Conditions, str, list[FieldViolation]]:
    """The conditions of a request in the first API version's shape (`percent_off_bps`): read
    as a rule's would be, so a window, days, hours, channels, stores or groups are kept, never
    dropped without a word. Its subtotal is `minimum_subtotal` or `conditions.min_amount`."""
    p = _Parse()
    conditions = _conditions(r.conditions, p)
    if r.HasField("minimum_subtotal") and r.conditions.HasField("min_amount"):
        p.violations.append(
            FieldViolation("minimum_subtotal", "give this or conditions.min_amount, not both")
        )
    currencies = sorted(p.currencies)
    return conditions, (currencies[0] if currencies else ""), p.violations


def offer_from_create(
    promotion_id: str, r: pb.CreatePromotionRequest
) -> tuple[Offer, list[FieldViolation]]:
    rule, conditions, currency, violations = offer_parts(r.rule, r.conditions)
    # The first version's fields would be dropped without a word: a contradiction, refused.
    if r.percent_off_bps:
        violations.append(FieldViolation("percent_off_bps", "give a rule or this, not both"))
    if r.HasField("minimum_subtotal"):
        violations.append(
            FieldViolation("minimum_subtotal", "with a rule, use conditions.min_amount")
        )
    offer = Offer(
        promotion_id,
        r.name,
        rule,
        conditions,
        currency,
        r.priority,
        r.exclusive,
        r.stackable if r.HasField("stackable") else True,
        r.requires_coupon,
    )
    return offer, violations


def _local(value: datetime | None) -> str:
    return "" if value is None else value.isoformat(timespec="minutes")


def _clock(value: time | None) -> str:
    return "" if value is None else value.isoformat(timespec="minutes")


def promotion_to_proto(p: Promotion, at: datetime | None = None) -> pb.Promotion:
    """As it is at `at` (now by default): its schedule_state is read from the clock."""
    o, r, c = p.offer, p.offer.rule, p.offer.conditions
    first_kind = r.kind is Kind.PERCENT_OFF and r.level is Level.ORDER
    msg = pb.Promotion(
        id=p.id,
        name=p.name,
        percent_off_bps=r.percent_bps if first_kind else 0,
        active=p.active,
        priority=o.priority,
        exclusive=o.exclusive,
        stackable=o.stackable,
        requires_coupon=o.requires_coupon,
        status=STATUSES_PB[p.status],
        version=p.version,
        used=p.used,
        schedule_state=SCHEDULES.to_proto(p.schedule(at)),
    )
    rule = msg.rule
    rule.kind = KINDS_PB[r.kind]
    rule.level = LEVELS_PB[r.level]
    rule.items.CopyFrom(_selector_pb(r.items))
    rule.percent_bps = r.percent_bps
    if o.currency and r.kind in MONEY_KINDS:
        rule.amount.CopyFrom(to_proto(Money(r.amount, o.currency)))
    rule.buy_quantity = r.buy_quantity
    rule.get_quantity = r.get_quantity
    if r.get_items is not None:
        rule.get_items.CopyFrom(_selector_pb(r.get_items))
    rule.tiers.extend(
        pb.Tier(min_quantity=t.min_quantity, percent_bps=t.percent_bps) for t in r.tiers
    )
    rule.limit_per_order = r.limit_per_order
    cond = msg.conditions
    cond.starts_at = _local(c.starts_at)
    cond.ends_at = _local(c.ends_at)
    cond.time_zone = c.time_zone
    cond.days_of_week.extend(sorted(d + 1 for d in c.days))
    cond.hours_from = _clock(c.hours_from)
    cond.hours_until = _clock(c.hours_until)
    cond.channels.extend(sorted(c.channels))
    cond.location_ids.extend(sorted(c.location_ids))
    cond.customer_groups.extend(sorted(c.customer_groups))
    cond.min_quantity = c.min_quantity
    if c.min_amount and o.currency:
        cond.min_amount.CopyFrom(to_proto(Money(c.min_amount, o.currency)))
        if first_kind:
            msg.minimum_subtotal.CopyFrom(to_proto(Money(c.min_amount, o.currency)))
    if p.created_at is not None:
        msg.created_at.FromDatetime(p.created_at)
    if p.updated_at is not None:
        msg.updated_at.FromDatetime(p.updated_at)
    if p.ended_at is not None:
        msg.ended_at.FromDatetime(p.ended_at)
    return msg


def _manual(m: pb.ManualAdjustment) -> Manual:
    # An unspecified kind reads as an amount of `value`; the domain checks reason and who.
    return Manual(MANUAL_KINDS.get(m.kind, ManualKind.AMOUNT), m.value, m.reason, m.requested_by)


def cart_lines(lines: Iterable[pb.CartLine]) -> list[CartLineInput]:
    return [
        CartLineInput(
            ln.sku,
            ln.quantity,
            money_input(ln.unit_price),
            ln.product_id,
            tuple(ln.categories),
            _manual(ln.manual) if ln.HasField("manual") else None,
        )
        for ln in lines
    ]


def context(r: pb.CalculateDiscountsRequest, coupon_offers: frozenset[str]) -> Context:
    at = r.at.ToDatetime(tzinfo=UTC) if r.HasField("at") else datetime.now(UTC)
    return Context(
        at,
        r.location_time_zone,
        r.channel,
        r.location_id,
        frozenset(r.customer_groups),
        coupon_offers,
        _manual(r.order_manual) if r.HasField("order_manual") else None,
    )


def discounts_to_proto(
    d: Priced, currency: str, rejected: Iterable[pb.RejectedCoupon] = ()
) -> pb.CalculateDiscountsResponse:
    def money(amount: int) -> money_pb2.Money:
        return money_pb2.Money(amount=amount, currency=currency)

    return pb.CalculateDiscountsResponse(
        discounts=[
            pb.AppliedDiscount(
                promotion_id=a.source,
                amount=money(a.amount),
                reason=a.reason,
                level=LEVELS_PB[a.level],
                lines=[
                    pb.LineDiscount(line_index=i, amount=money(x))
                    for i, x in enumerate(a.lines)
                    if x
                ],
                requested_by=a.requested_by,
            )
            for a in d.applied
        ],
        total_discount=money(d.total_discount),
        line_discounts=[money(x) for x in d.line_discounts],
        rejected_coupons=list(rejected),
    )


def coupon_to_proto(c: Coupon) -> pb.Coupon:
    msg = pb.Coupon(
        id=c.id,
        promotion_id=c.promotion_id,
        code=c.code,
        code_hint=c.code_hint,
        max_uses=c.max_uses,
        max_uses_per_customer=c.max_uses_per_customer,
        redeemed_count=c.redeemed_count,
        reserved_count=c.reserved_count,
        status=COUPON_STATUSES.to_proto(c.status),
    )
    if c.expires_at is not None:
        msg.expires_at.FromDatetime(c.expires_at)
    if c.created_at is not None:
        msg.created_at.FromDatetime(c.created_at)
    if c.deactivated_at is not None:
        msg.deactivated_at.FromDatetime(c.deactivated_at)
    if c.updated_at is not None:
        msg.updated_at.FromDatetime(c.updated_at)
    return msg


def reservation_to_proto(r: Reservation, c: Coupon) -> pb.CouponReservation:
    return pb.CouponReservation(
        coupon_id=r.coupon_id, promotion_id=c.promotion_id, code_hint=c.code_hint, status=r.status
    )
