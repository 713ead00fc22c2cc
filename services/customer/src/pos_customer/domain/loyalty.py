"""Loyalty: a merchant's program, what a purchase earns, and the points ledger's rules.

The ledger is the truth: a customer's balance is the sum of their entries, and every change of
the balance is an entry written with it. Points held for an open order are not spent yet: they
only lower what can be held or redeemed next (`available`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction
from math import floor

from pos_kit.errors import FieldViolation, raise_if, require
from pos_kit.money import MINOR_UNITS, round_half_away

EARNED, REVERSED, REDEEMED, ADJUSTED, EXPIRED = (
    "earned",
    "reversed",
    "redeemed",
    "adjusted",
    "expired",
)
MERGED_IN, MERGED_OUT = "merged_in", "merged_out"
# Entries that add points (those of them above zero), for expiry: the oldest credits are spent
# first, and each expires `expiry_days` after it was written. A credit by hand is one as an earn
# is: points are points once in the balance, and a credit that never expired would outlive
# every earned point beside it. A merge's move is not one: the duplicate's own credits count,
# at their own time.
CREDITS = frozenset({EARNED, ADJUSTED})
HELD, FINALIZED, RELEASED = "held", "finalized", "released"
TENDERS = frozenset({"card", "cash", "gift_card", "external"})
ROUNDINGS = frozenset({"down", "nearest"})
BPS = 10_000
MAX_POINTS = 10**12


@dataclass(frozen=True)
class Tier:
    name: str
    threshold_points: int
    multiplier_bps: int = BPS


@dataclass(frozen=True)
class Program:
    enabled: bool = True
    points_per_unit: int = 1
    rounding: str = "down"
    earning_tenders: tuple[str, ...] = ()
    excluded_skus: tuple[str, ...] = ()
    tiers: tuple[Tier, ...] = ()
    expiry_days: int = 0
    tier_period_days: int = 0
    point_value_minor: int = 1
    # The program a merchant starts with is version 1 (it has a version like any resource, so
    # If-Match works on it before its first change).
    version: int = 1

    def tier_for(self, earned_in_period: int) -> Tier | None:
        reached = [t for t in self.tiers if earned_in_period >= t.threshold_points]
        return max(reached, key=lambda t: t.threshold_points, default=None)

    def multiplier(self, tier_name: str) -> int:
        return next((t.multiplier_bps for t in self.tiers if t.name == tier_name), BPS)


# What a merchant that never set a program gets: one point per whole unit, rounded down.
DEFAULT_PROGRAM = Program()


@dataclass(frozen=True)
class SaleLine:
    sku: str
    total_minor: int  # what was paid for the line before tax (after its discounts)
    # A gift card sold is stored value, not a purchase: it earns nothing, and the points come
    # when the card is spent (if the program earns on gift-card tenders), never twice.
    gift_card: bool = False
    # The order line's id (`L<n>`) and units: what its returns name (empty in an event from
    # before lines had ids).
    line_id: str = ""
    quantity: int = 1


@dataclass(frozen=True)
class Sale:
    """What an order event tells loyalty: who, what was paid for, how."""

    order_id: str
    customer_id: str
    location_id: str
    currency: str
    total_minor: int
    tax_minor: int
    lines: tuple[SaleLine, ...]
    tenders: tuple[str, ...] = ()
    ordered_at: datetime | None = None
    # What each of `tenders` paid, in the same order (an order from before orders said so
    # carries none: then any earning tender earns the whole sale, as it did).
    tender_amounts: tuple[int, ...] = ()
    # When the sale was made (the order confirmed): it earns under the program in force then,
    # however late it is heard. None (an event that does not say): the program as it stands.
    sold_at: datetime | None = None

    def earning_share(self, earning: tuple[str, ...]) -> tuple[int, int]:
        """The part of the sale the earning tenders paid, as (their amount, all tenders'):
        (1, 1) when the program earns on every tender or the amounts are not known."""
        if not earning or not self.tenders:
            return 1, 1
        if len(self.tender_amounts) != len(self.tenders) or sum(self.tender_amounts) <= 0:
            return (1, 1) if set(self.tenders) & set(earning) else (0, 1)
        paid = sum(
            a for t, a in zip(self.tenders, self.tender_amounts, strict=True) if t in earning
        )
        return paid, sum(self.tender_amounts)


def points_for(program: Program, sale: Sale, tier: str = "") -> int:
    """Points a sale earns: its eligible amount (the total less tax, excluded lines and gift
    cards sold) in whole currency units times the rate and the tier's multiplier, rounded as
    the program says."""
    if not program.enabled:
        return 0
    # Paid partly with tenders that do not earn (a gift card on a card-only program): only the
    # earning tenders' share of the sale earns.
    share, paid = sale.earning_share(program.earning_tenders)
    if share <= 0:
        return 0
    excluded = set(program.excluded_skus)
    eligible = sale.total_minor - sale.tax_minor
    eligible -= sum(
        line.total_minor for line in sale.lines if line.gift_card or line.sku in excluded
    )
    if eligible <= 0:
        return 0
    unit = 10 ** MINOR_UNITS.get(sale.currency, 2)
    numerator = eligible * share * program.points_per_unit * program.multiplier(tier)
    denominator = unit * BPS * paid
    if program.rounding == "nearest":
        return max(0, int(round_half_away(numerator, denominator)))
    return int(numerator // denominator)


@dataclass(frozen=True)
class EarningLine:
    """A line's part in what its sale earned, as the program stood at the sale: its units and
    the value it earned on (what was paid for it before tax; 0 for an excluded SKU or a gift
    card sold, which earned nothing)."""

    quantity: int
    eligible_minor: int


def earning_lines(program: Program, sale: Sale) -> dict[str, EarningLine] | None:
    """Each line's part in what the sale earns, by line id; None when the lines cannot say
    which units a return takes (no lines, or lines without ids or units, as in old events)."""
    ids = [line.line_id for line in sale.lines]
    if not ids or not all(ids) or len(set(ids)) != len(ids):
        return None
    if any(line.quantity <= 0 for line in sale.lines):
        return None
    excluded = set(program.excluded_skus)
    return {
        line.line_id: EarningLine(
            line.quantity,
            0 if line.gift_card or line.sku in excluded else max(line.total_minor, 0),
        )
        for line in sale.lines
    }


@dataclass(frozen=True)
class Reversal:
    """An order's cancellation (no return id) or one of its returns or cancelled or expired
    fulfilments, as recorded when its event came: the order's goods and what the returns and
    fulfilments took back of them so far (a growing figure), and the units it took back by
    line id (None when the event did not say, or it was recorded before units were kept)."""

    return_id: str
    total: int
    refunded: int
    lines: Mapping[str, int] | None = None


def taken_back(
    earned: int, lines: Mapping[str, EarningLine], given_back: Sequence[Mapping[str, int]]
) -> int | None:
    """What the units given back (each return's or fulfilment's, by line id) take back in all of
    the `earned` points: their share of the value the sale earned on, rounded down. Returning
    every unit that earned takes back exactly `earned`; units of a line that earned nothing (an
    excluded SKU, a gift card) take back nothing; a line's units count at most once each, so
    returns together never take more than was earned. None when the lines cannot say (a unit of
    a line the sale did not record, or no line that earned): the caller then takes the share of
    the goods' value, as before lines were kept."""
    eligible = sum(line.eligible_minor for line in lines.values())
    if eligible <= 0:
        return None
    units: dict[str, int] = {}
    for each in given_back:
        for line_id, quantity in each.items():
            if line_id not in lines:
                return None
            units[line_id] = units.get(line_id, 0) + max(quantity, 0)
    returned = sum(
        (
            Fraction(lines[i].eligible_minor * min(n, lines[i].quantity), lines[i].quantity)
            for i, n in units.items()
        ),
        Fraction(0),
    )
    return min(earned, floor(earned * returned / eligible))


def expirable(credits_before_cutoff: int, debits_ever: int, available: int) -> int:
    """Points to expire, oldest first: what the credits older than the cutoff still hold after
    every debit so far spent the oldest credits first; never more than is available (points
    held for an open order are kept)."""
    return max(0, min(credits_before_cutoff - debits_ever, available))


def expiry_cutoff(program: Program, now: datetime) -> datetime | None:
    if program.expiry_days <= 0:
        return None
    return now - timedelta(days=program.expiry_days)


def tier_since(program: Program, now: datetime) -> datetime | None:
    if program.tier_period_days <= 0:
        return None
    return now - timedelta(days=program.tier_period_days)


@dataclass(frozen=True)
class Entry:
    id: str
    customer_id: str
    kind: str
    points: int
    balance_after: int
    order_id: str = ""
    reason: str = ""
    created_at: datetime | None = None
    # What it counts towards a tier, when not `points` (a cancellation's reversal: only the
    # earn it takes back, not the redeemed points it gives back).
    tier_points: int | None = None
    # A return's reversal: the return whose units it takes back points for; or a cancelled or
    # expired fulfilment's, whose goods it takes back points for (`names_fulfillment`).
    return_id: str = ""

    @property
    def fulfillment_id(self) -> str:
        return self.return_id if names_fulfillment(self.order_id, self.return_id) else ""

    @property
    def order_return_id(self) -> str:
        return "" if names_fulfillment(self.order_id, self.return_id) else self.return_id


@dataclass
class Hold:
    order_id: str
    customer_id: str
    points: int
    status: str = HELD
    currency: str = ""
    point_value_minor: int = 1


@dataclass(frozen=True)
class PointsEarned:
    entry: Entry


@dataclass(frozen=True)
class PointsRedeemed:
    entry: Entry


@dataclass(frozen=True)
class PointsAdjusted:
    entry: Entry


@dataclass(frozen=True)
class PointsExpired:
    entry: Entry


@dataclass(frozen=True)
class TierChanged:
    customer_id: str
    previous: str
    tier: str


def validate_program(p: Program) -> None:
    v: list[FieldViolation] = []
    v += require(0 <= p.points_per_unit <= 1_000, "points_per_unit", "must be 0 to 1000")
    v += require(p.rounding in ROUNDINGS, "rounding", "must be down or nearest")
    for i, tender in enumerate(p.earning_tenders):
        v += require(tender in TENDERS, f"earning_tenders[{i}]", f"one of {sorted(TENDERS)}")
        first = p.earning_tenders.index(tender)
        v += require(first == i, f"earning_tenders[{i}]", f"repeats earning_tenders[{first}]")
    v += require(len(p.excluded_skus) <= 1_000, "excluded_skus", "at most 1000")
    first_of: dict[str, int] = {}
    for i, sku in enumerate(p.excluded_skus):
        first = first_of.setdefault(sku, i)
        v += require(first == i, f"excluded_skus[{i}]", f"repeats excluded_skus[{first}]")
    v += require(len(p.tiers) <= 20, "tiers", "at most 20 tiers")
    # A customer's `tier` reads the name: spaces only, or another tier's name in another
    # case, would tell them nothing.
    first_name: dict[str, int] = {}
    for i, t in enumerate(p.tiers):
        v += require(
            len(t.name.strip()) > 0 and len(t.name) <= 50,
            f"tiers[{i}].name",
            "1 to 50 characters, not spaces only",
        )
        first = first_name.setdefault(t.name.strip().casefold(), i)
        v += require(first == i, f"tiers[{i}].name", f"repeats tiers[{first}].name (any case)")
        v += require(
            0 <= t.threshold_points <= MAX_POINTS, f"tiers[{i}].threshold_points", "0 to 10^12"
        )
        # Two tiers at one threshold: which of them a customer reaches would be arbitrary.
        same = [j for j, o in enumerate(p.tiers[:i]) if o.threshold_points == t.threshold_points]
        v += require(
            not same, f"tiers[{i}].threshold_points", f"repeats tiers[{same[0] if same else 0}]"
        )
        v += require(
            BPS <= t.multiplier_bps <= 10 * BPS,
            f"tiers[{i}].multiplier_bps",
            "10000 (x1) to 100000 (x10)",
        )
    v += require(0 <= p.expiry_days <= 3_650, "expiry_days", "0 to 3650")
    v += require(0 <= p.tier_period_days <= 3_650, "tier_period_days", "0 to 3650")
    v += require(0 <= p.point_value_minor <= 1_000_000, "point_value_minor", "0 to 1000000")
    raise_if(v)


def validate_points(points: int, where: str = "points", allow_negative: bool = False) -> None:
    low = -MAX_POINTS if allow_negative else 1
    raise_if(
        require(
            low <= points <= MAX_POINTS and points != 0,
            where,
            "must be a non-zero number of points" if allow_negative else "must be positive",
        )
    )


def names_fulfillment(order_id: str, given_back_by: str) -> bool:
    """Whether what a reversal was for is one of the order's fulfilments (their ids are the
    order's, `-<n>` after it) rather than a return."""
    return bool(order_id) and given_back_by.startswith(f"{order_id}-")
