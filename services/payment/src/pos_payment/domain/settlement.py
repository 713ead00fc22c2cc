"""The settlement report: one location's local day, per tender, as the store closes it.

Plain Python. The day is the location's calendar day in its own time zone, so a store in
New York closes at its midnight, not at UTC's; a day is [local midnight, next local midnight),
23 or 25 hours long across a daylight-saving change. Every amount is a sum of money movements
(captures and refunds) by the time each movement happened, so the same totals come out however
the day's sales were split into payments.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from pos_kit.errors import FieldViolation, raise_if, require
from pos_kit.money import MoneyError, check_currency
from pos_kit.zones import is_iana_zone

TENDERS = ("cash", "card", "gift_card", "external")


@dataclass(frozen=True)
class Day:
    location_id: str
    date: date
    time_zone: str
    currency: str

    @property
    def starts_at(self) -> datetime:
        return datetime.combine(self.date, time(0), ZoneInfo(self.time_zone))

    @property
    def ends_at(self) -> datetime:
        return datetime.combine(self.date + timedelta(days=1), time(0), ZoneInfo(self.time_zone))


FIRST_DAY = date(1970, 1, 1)
LAST_DAY = date(9998, 12, 31)


def validate_day(location_id: str, day: str, time_zone: str, currency: str) -> Day:
    violations: list[FieldViolation] = require(bool(location_id), "location_id", "is required")
    violations += require(len(location_id) <= 64, "location_id", "must be at most 64 characters")
    parsed = None
    try:
        parsed = date.fromisoformat(day) if len(day) == 10 else None
    except ValueError:
        parsed = None
    violations += require(parsed is not None, "date", "must be a date, YYYY-MM-DD")
    # A day whose bounds, in any time zone, are timestamps the API can write (RFC 3339, UTC).
    if parsed is not None:
        violations += require(
            FIRST_DAY <= parsed <= LAST_DAY,
            "date",
            f"must be between {FIRST_DAY.isoformat()} and {LAST_DAY.isoformat()}",
        )
    # A zone of the IANA database, not any file ZoneInfo opens (`localtime`, `right/UTC`), as
    # the gateway and the inventory service check a location's.
    violations += require(
        is_iana_zone(time_zone), "time_zone", "must be an IANA time zone, e.g. Europe/Paris"
    )
    try:
        check_currency(currency)
    except MoneyError:
        violations.append(FieldViolation("currency", "must be an ISO 4217 code"))
    raise_if(violations)
    assert parsed is not None
    return Day(location_id, parsed, time_zone, currency)


@dataclass(frozen=True)
class Movement:
    """Captures or refunds of one tender and brand: their sum and how many (the store sums
    them per group, so a day of many payments arrives as a few rows)."""

    tender: str
    brand: str
    refund: bool
    amount: int
    count: int = 1


@dataclass
class Totals:
    name: str
    captured: int = 0
    captured_count: int = 0
    refunded: int = 0
    refunded_count: int = 0

    @property
    def net(self) -> int:
        return self.captured - self.refunded

    def add(self, movement: Movement) -> None:
        if movement.refund:
            self.refunded += movement.amount
            self.refunded_count += movement.count
        else:
            self.captured += movement.amount
            self.captured_count += movement.count


@dataclass
class SettlementReport:
    day: Day
    tenders: list[Totals]
    card_brands: list[Totals]
    gift_cards_sold: int
    gift_cards_sold_count: int
    tips: int
    computed_at: datetime
    # Cards issued as store credit (a return without a receipt): money given back, not taken.
    store_credit_issued: int = 0
    store_credit_issued_count: int = 0
    # Cards sold with an order whose sale was undone that day (the order cancelled, the line
    # returned): what was taken off them, apart from the day's sales.
    gift_card_sales_undone: int = 0
    gift_card_sales_undone_count: int = 0
    # Cards given away as a promotion: value no one paid for.
    promotional_issued: int = 0
    promotional_issued_count: int = 0
    # Of the cards sold, the value paid for in cash at a register (`paid_in_cash`): cash in
    # the drawer no payment took, so in no tender.
    gift_cards_sold_cash: int = 0
    # Value taken off cards at the location through the gift card API rather than as a
    # payment's tender, net of what the API gave back to cards there: no payment of ours, so
    # in no tender, but value redeemed at the store all the same.
    redeemed_directly: int = 0

    @property
    def gift_cards_redeemed(self) -> int:
        """Value taken off gift cards at the location that day, whatever the route: the gift
        card tender's net and the gift card API's redemptions there, so that it stands against
        `gift_cards_sold`, which counts cards sold there whatever the route too."""
        tender = next(t.net for t in self.tenders if t.name == "gift_card")
        return tender + self.redeemed_directly

    @property
    def net(self) -> int:
        return sum(t.net for t in self.tenders)


def build_report(
    day: Day,
    movements: Iterable[Movement],
    sold: tuple[int, int],
    tips: int,
    computed_at: datetime,
    store_credit: tuple[int, int] = (0, 0),
    undone: tuple[int, int] = (0, 0),
    promotional: tuple[int, int] = (0, 0),
    redeemed_directly: int = 0,
    sold_cash: int = 0,
) -> SettlementReport:
    """Every tender appears (zeros included), so a report always has the same shape."""
    tenders = {name: Totals(name) for name in TENDERS}
    brands: dict[str, Totals] = defaultdict(lambda: Totals(""))
    for m in movements:
        tenders.setdefault(m.tender, Totals(m.tender)).add(m)
        if m.tender == "card":
            brand = brands[m.brand or "unknown"]
            brand.name = m.brand or "unknown"
            brand.add(m)
    return SettlementReport(
        day,
        list(tenders.values()),
        sorted(brands.values(), key=lambda t: t.name),
        sold[0],
        sold[1],
        tips,
        computed_at,
        store_credit[0],
        store_credit[1],
        undone[0],
        undone[1],
        promotional[0],
        promotional[1],
        gift_cards_sold_cash=sold_cash,
        redeemed_directly=redeemed_directly,
    )
