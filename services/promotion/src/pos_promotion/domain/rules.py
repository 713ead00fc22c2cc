"""What an offer gives and when it applies: plain values, no arithmetic on a cart here.

An offer is one `Rule` (what it takes off) plus its `Conditions` (when and for whom) plus how it
combines with others (`priority`, `exclusive`, `stackable`). The engine (`engine.py`) applies a
set of offers to a cart; this module only describes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time
from enum import StrEnum


class Kind(StrEnum):
    PERCENT_OFF = "percent_off"  # items or order: a rate off
    AMOUNT_OFF = "amount_off"  # items: per unit; order: once
    BUY_X_GET_Y = "buy_x_get_y"  # buy X qualifying units, get Y (cheapest first) at a rate off
    BUNDLE = "bundle"  # any N units of a set for a fixed price (mix and match)
    TIERS = "tiers"  # a rate off the qualifying units by how many are bought
    SALE_PRICE = "sale_price"  # a fixed unit price
    FREE_ITEM = "free_item"  # up to N qualifying units free (usually with a threshold)


class Level(StrEnum):
    """The stackable classes: item offers change lines; order offers the whole order."""

    ITEM = "item"
    ORDER = "order"


# The documented order of application (engine.py says why): earlier stages run first, and each
# offer takes off what the stages before it left.
ITEM_STAGES: tuple[Kind, ...] = (
    Kind.SALE_PRICE,
    Kind.BUY_X_GET_Y,
    Kind.BUNDLE,
    Kind.FREE_ITEM,
    Kind.TIERS,
    Kind.PERCENT_OFF,
    Kind.AMOUNT_OFF,
)
ORDER_STAGES: tuple[Kind, ...] = (Kind.PERCENT_OFF, Kind.AMOUNT_OFF)
ORDER_KINDS = frozenset(ORDER_STAGES)
# The kinds whose rule holds an amount, in the offer's currency.
MONEY_KINDS = frozenset({Kind.AMOUNT_OFF, Kind.BUNDLE, Kind.SALE_PRICE})


@dataclass(frozen=True)
class Selector:
    """Which lines an item rule looks at: a line matches by SKU, product or any category.
    A selector naming nothing matches every line."""

    skus: frozenset[str] = frozenset()
    product_ids: frozenset[str] = frozenset()
    categories: frozenset[str] = frozenset()

    @property
    def everything(self) -> bool:
        return not (self.skus or self.product_ids or self.categories)

    def matches(self, sku: str, product_id: str, categories: frozenset[str]) -> bool:
        if self.everything:
            return True
        return (
            sku in self.skus
            or (bool(product_id) and product_id in self.product_ids)
            or not self.categories.isdisjoint(categories)
        )


EVERYTHING = Selector()


@dataclass(frozen=True)
class Tier:
    min_quantity: int
    percent_bps: int


@dataclass(frozen=True)
class Rule:
    kind: Kind
    level: Level = Level.ORDER
    items: Selector = EVERYTHING
    percent_bps: int = 0  # PERCENT_OFF, BUY_X_GET_Y (10000 = free)
    amount: int = 0  # AMOUNT_OFF (minor units), BUNDLE (the bundle's price), SALE_PRICE (unit)
    buy_quantity: int = 0  # BUY_X_GET_Y: X
    get_quantity: int = 0  # BUY_X_GET_Y: Y; FREE_ITEM: units given free; BUNDLE: N
    get_items: Selector | None = None  # BUY_X_GET_Y: what is discounted (None: same as items)
    tiers: tuple[Tier, ...] = ()
    # How many times it applies in one order: BUY_X_GET_Y sets, bundles, AMOUNT_OFF units;
    # 0 is no limit.
    limit_per_order: int = 0


@dataclass(frozen=True)
class Conditions:
    # The window, as wall-clock times: in the offer's own `time_zone` when it names one (the
    # same moment at every location), else at each location in its own time zone (passed in
    # with the cart), else in UTC.
    starts_at: datetime | None = None  # naive local
    ends_at: datetime | None = None  # naive local, exclusive
    time_zone: str = ""  # an IANA zone; empty: the location's
    days: frozenset[int] = frozenset()  # 0 = Monday; empty: every day
    # Hours of the day, [from, until); until <= from runs across midnight and belongs to the
    # day it starts on (Friday 22:00-02:00 covers Saturday 01:00).
    hours_from: time | None = None
    hours_until: time | None = None
    channels: frozenset[str] = frozenset()
    location_ids: frozenset[str] = frozenset()
    customer_groups: frozenset[str] = frozenset()
    # Of the qualifying lines (an order offer's or a free item's: the whole order), at list
    # price (after manual price overrides), in the offer's currency.
    min_quantity: int = 0
    min_amount: int = 0


@dataclass(frozen=True)
class Offer:
    id: str
    name: str
    rule: Rule
    conditions: Conditions = field(default_factory=Conditions)
    currency: str = ""  # needed by amounts; an offer in another currency does not apply
    priority: int = 0  # higher first within a stage
    exclusive: bool = False  # alone or not at all; the best for the customer wins
    stackable: bool = True  # False: at most one non-stackable offer per level applies
    requires_coupon: bool = False

    @property
    def level(self) -> Level:
        return self.rule.level
