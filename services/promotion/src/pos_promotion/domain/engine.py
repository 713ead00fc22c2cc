"""The rule engine: which offers apply to a cart, in what order, and how many cents each takes.

Amounts are integer minor units of the cart's one currency throughout.

The order of application, stated once (README "How discounts combine" repeats it):
0. manual price overrides set a line's unit price before anything else;
1. item offers, by stage: sale prices, buy X get Y, bundles, free items, quantity tiers, item
   percentages, item amounts; within a stage by priority (higher first), then id;
2. manual line discounts (staff, with a reason): a percent off what the line has left, or an
   amount off each of its units (capped unit by unit);
3. order offers: order percentages, then order amounts (thresholds are either), by priority
   then id, each spread over the lines by largest remainder;
4. the manual order discount.
Every step takes off what the steps before it left, capped at it, so no line and no order ever
goes below zero and percentages compound (10 % then 5 % is 14.5 %). Units picked by buy X get Y,
bundles and free items are used up: one unit serves one such offer; an amount off each unit
is capped unit by unit (what a set left a unit, not what the whole line has left).
Qualifying (minimum amount or quantity) is judged on the prices before any discount, so one
offer never disqualifies another.

Combination: every offer that qualifies is a candidate. Non-stackable offers compete within
their level (item or order): the highest priority (then lowest id) that gives the cart something
on its own stays. Exclusive offers apply
alone: the engine prices the cart with the stack of non-exclusive candidates and with each
exclusive one alone, and keeps the largest discount for the customer (ties: the stack, then
priority, then id).

Lines are processed in a canonical order (by SKU, product, price, quantity, ...), never in the
order they were sent, so the same cart in any line order gets the same discounts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from functools import lru_cache
from zoneinfo import ZoneInfo

from pos_kit.money import BPS, MINOR_UNITS, round_half_away
from pos_promotion.domain.rules import (
    ITEM_STAGES,
    ORDER_STAGES,
    Conditions,
    Kind,
    Level,
    Offer,
    Rule,
    Selector,
)


class ManualKind(StrEnum):
    PERCENT = "percent"  # value in basis points
    AMOUNT = "amount"  # value in minor units
    PRICE = "price"  # a new unit price (lines only)


@dataclass(frozen=True)
class Manual:
    """A discount or price override staff gave at the register: always with a reason and who."""

    kind: ManualKind
    value: int
    reason: str
    requested_by: str


@dataclass(frozen=True)
class Line:
    sku: str
    quantity: int
    unit_price: int
    product_id: str = ""
    categories: frozenset[str] = frozenset()
    manual: Manual | None = None


@dataclass(frozen=True)
class Context:
    """Everything about the sale that conditions look at; the caller knows it, we ask nothing."""

    at: datetime | None = None  # aware; None: offers with a window or hours do not apply
    time_zone: str = ""  # the location's IANA zone, for offers without their own; empty: UTC
    channel: str = ""
    location_id: str = ""
    customer_groups: frozenset[str] = frozenset()
    coupon_offers: frozenset[str] = frozenset()  # offers whose coupon the cart carries
    manual: Manual | None = None  # an order-level manual discount


MANUAL = "manual"


@dataclass(frozen=True)
class Applied:
    source: str  # the offer id, or "manual"
    level: Level
    amount: int
    reason: str
    lines: tuple[int, ...]  # what it took off each line, in the order the lines were sent
    requested_by: str = ""


@dataclass(frozen=True)
class Priced:
    subtotal: int  # list prices
    applied: tuple[Applied, ...]
    line_discounts: tuple[int, ...]  # in the order the lines were sent
    total_discount: int

    @property
    def total(self) -> int:
        return self.subtotal - self.total_discount


def allocate(total: int, weights: Sequence[int]) -> list[int]:
    """`total` split in proportion to `weights`, summing exactly: largest remainder first (ties:
    larger weight, then position). With 0 <= total <= sum(weights) no share exceeds its weight."""
    whole = sum(weights)
    if whole <= 0:
        return [0] * len(weights)
    shares = [total * w // whole for w in weights]
    left = total - sum(shares)
    order = sorted(
        range(len(weights)), key=lambda i: (-(total * weights[i] % whole), -weights[i], i)
    )
    for i in order[:left]:
        shares[i] += 1
    return shares


def format_amount(amount: int, currency: str) -> str:
    """50.00 USD, 500 JPY, 1.500 KWD: minor units shown with the currency's own exponent."""
    exponent = MINOR_UNITS[currency]
    sign = "-" if amount < 0 else ""
    whole, fraction = divmod(abs(amount), 10**exponent)
    digits = f"{whole}.{fraction:0{exponent}d}" if exponent else str(whole)
    return f"{sign}{digits} {currency}"


def _percent(bps: int) -> str:
    return f"{bps / 100:g}%"


def describe(offer: Offer) -> str:
    """What a receipt or a preview shows for an offer, e.g. "Summer: 10% off orders of 50.00
    USD or more" ("or more" because reaching the threshold is enough)."""
    r, c, cur = offer.rule, offer.conditions, offer.currency
    money = (lambda a: format_amount(a, cur)) if cur in MINOR_UNITS else str
    if r.kind is Kind.PERCENT_OFF:
        what = f"{_percent(r.percent_bps)} off"
    elif r.kind is Kind.AMOUNT_OFF:
        what = f"{money(r.amount)} off" + (" each" if r.level is Level.ITEM else "")
    elif r.kind is Kind.BUY_X_GET_Y:
        got = "free" if r.percent_bps >= BPS else f"{_percent(r.percent_bps)} off"
        what = f"buy {r.buy_quantity} get {r.get_quantity} {got}"
    elif r.kind is Kind.BUNDLE:
        what = f"any {r.get_quantity} for {money(r.amount)}"
    elif r.kind is Kind.TIERS:
        what = ", ".join(f"{t.min_quantity}+ for {_percent(t.percent_bps)} off" for t in r.tiers)
    elif r.kind is Kind.SALE_PRICE:
        what = f"{money(r.amount)} each"
    else:
        what = f"{r.get_quantity} free"
    if r.level is Level.ORDER and c.min_amount > 0:
        what += f" orders of {money(c.min_amount)} or more"
    return f"{offer.name}: {what}"


def describe_manual(m: Manual) -> str:
    return f"Manual: {m.reason}"


@lru_cache(maxsize=512)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def in_time(c: Conditions, ctx: Context) -> bool:
    timed = c.starts_at or c.ends_at or c.days or c.hours_from is not None
    if not timed:
        return True
    if ctx.at is None:
        return False
    # The offer's own zone wins; one without reads the location's (until 2026-12-04 the
    # location's always won, and an offer's zone only counted for a cart with none).
    local = ctx.at.astimezone(_zone(c.time_zone or ctx.time_zone or "UTC")).replace(tzinfo=None)
    if c.starts_at is not None and local < c.starts_at:
        return False
    if c.ends_at is not None and local >= c.ends_at:
        return False
    day = local.weekday()
    if c.hours_from is not None and c.hours_until is not None:
        now = local.time()
        if c.hours_from < c.hours_until:
            if not c.hours_from <= now < c.hours_until:
                return False
        elif now >= c.hours_from:
            pass  # the evening part: today's window
        elif now < c.hours_until:
            day = (day - 1) % 7  # after midnight: the window that started yesterday
        else:
            return False
    return not c.days or day in c.days


class _Cart:
    """The working state of one pricing run, positions in canonical order."""

    def __init__(self, lines: Sequence[Line]) -> None:
        self.order = sorted(range(len(lines)), key=lambda i: _line_key(lines[i]))
        self.lines = [lines[i] for i in self.order]
        self.unit = [
            ln.manual.value if ln.manual and ln.manual.kind is ManualKind.PRICE else ln.unit_price
            for ln in self.lines
        ]
        self.base = [u * ln.quantity for u, ln in zip(self.unit, self.lines, strict=True)]
        self.remaining = list(self.base)
        self.used = [0] * len(self.lines)  # units taken by buy X get Y, bundles, free items
        # Each line's units as groups of alike units, [units, what they have left]: the first
        # holds the units no set discounted, each set's units of the line are a group of their
        # own. An amount off each unit is capped unit by unit, so a unit a set left 5.00 takes
        # 5.00 at most, and a unit no set touched can take its whole price.
        self.groups = [[[ln.quantity, b]] for ln, b in zip(self.lines, self.base, strict=True)]
        self._matched: dict[Selector, list[int]] = {}

    def matching(self, selector: Selector) -> list[int]:
        found = self._matched.get(selector)
        if found is None:
            found = self._matched[selector] = [
                p
                for p, ln in enumerate(self.lines)
                if selector.matches(ln.sku, ln.product_id, ln.categories)
            ]
        return found

    def available(self, p: int) -> int:
        return self.lines[p].quantity - self.used[p]

    def take(self, taken: dict[int, int]) -> list[int]:
        """Apply per-position discounts, each capped at what the line has left and shared by
        its groups of units in proportion to what each has left (a rate shrinks every unit
        alike)."""
        out = [0] * len(self.lines)
        for p, amount in taken.items():
            d = max(0, min(amount, self.remaining[p]))
            self.remaining[p] -= d
            out[p] = d
            groups = self.groups[p]
            if d and len(groups) > 1:
                for g, share in zip(groups, allocate(d, [g[1] for g in groups]), strict=True):
                    g[1] -= share
            elif d:
                groups[0][1] -= d
        return out

    def take_set(self, p: int, units: int, amount: int) -> int:
        """A set's discount on `units` of the line's undiscounted units: they become a group
        of their own, with what the set left them."""
        plain = self.groups[p][0]
        worth = plain[1] * units // plain[0]
        d = max(0, min(amount, worth))
        plain[0] -= units
        plain[1] -= worth
        self.groups[p].append([units, worth - d])
        self.remaining[p] -= d
        return d

    def take_each(self, p: int, amount: int, most: int) -> tuple[int, int]:
        """`amount` off each of up to `most` units of the line, each unit capped at what it
        has left; the units with the most left first, a unit with nothing left skipped. What
        it took, and from how many units."""
        total = counted = 0
        for g in sorted(self.groups[p], key=lambda g: -g[1] / g[0] if g[0] else 0):
            units, left = g
            if counted >= most or units == 0 or left == 0:
                continue
            # A group's units share what it has left evenly, the odd cents on some of them.
            each, odd = divmod(left, units)
            worth = units if each else odd
            m = min(worth, most - counted)
            big = min(m, odd)
            cut = big * min(amount, each + 1) + (m - big) * min(amount, each)
            if m < units:  # the units it took from become a group of their own
                value = big * (each + 1) + (m - big) * each
                g[0], g[1] = units - m, left - value
                self.groups[p].append([m, value - cut])
            else:
                g[1] -= cut
            total += cut
            counted += m
        self.remaining[p] -= total
        return total, counted

    def worth_most(self, positions: Iterable[int], amount: int, most: int) -> dict[int, int]:
        """How many units of each line an `amount` off each unit takes, up to `most` units
        (0: every unit with something left): the units it is worth most on first, a unit's
        share capped at what it has left, so a 3.00 unit is never taken for 10.00 off while a
        25.00 one goes without; among units it is worth as much on, the dearest first, then
        the canonical order. Within a line, take_each takes the units with the most left, the
        same ones counted here."""
        found: list[tuple[int, int, int, int]] = []  # (-worth, -left, position, units)
        for p in positions:
            for units, left in self.groups[p]:
                if units == 0 or left == 0:
                    continue
                each, odd = divmod(left, units)  # as take_each shares a group's left
                for n, value in ((odd, each + 1), (units - odd, each)):
                    if n and value:
                        found.append((-min(amount, value), -value, p, n))
        found.sort()
        picked: dict[int, int] = {}
        left_to_take = most or sum(n for *_, n in found)
        for *_, p, n in found:
            if left_to_take <= 0:
                break
            n = min(n, left_to_take)
            picked[p] = picked.get(p, 0) + n
            left_to_take -= n
        return picked

    def cheapest(
        self, positions: Iterable[int], units: int, held: dict[int, int]
    ) -> dict[int, int]:
        """The `units` cheapest available units among positions (ties: canonical order)."""
        picked: dict[int, int] = {}
        for p in sorted(positions, key=lambda p: (self.unit[p], p)):
            if units <= 0:
                break
            n = min(units, self.available(p) - held.get(p, 0))
            if n > 0:
                picked[p] = n
                units -= n
        return picked


def _line_key(ln: Line) -> tuple[object, ...]:
    m = ln.manual
    return (
        ln.sku,
        ln.product_id,
        ln.unit_price,
        ln.quantity,
        tuple(sorted(ln.categories)),
        (m.kind, m.value, m.reason, m.requested_by) if m else (),
    )


def qualifies(offer: Offer, lines: Sequence[Line], currency: str, ctx: Context) -> bool:
    c, r = offer.conditions, offer.rule
    money_in_it = r.kind in (Kind.AMOUNT_OFF, Kind.BUNDLE, Kind.SALE_PRICE) or c.min_amount > 0
    if money_in_it and offer.currency != currency:
        return False
    if offer.requires_coupon and offer.id not in ctx.coupon_offers:
        return False
    if c.channels and ctx.channel not in c.channels:
        return False
    if c.location_ids and ctx.location_id not in c.location_ids:
        return False
    if c.customer_groups and c.customer_groups.isdisjoint(ctx.customer_groups):
        return False
    if not in_time(c, ctx):
        return False
    if c.min_quantity or c.min_amount:
        qty = amount = 0
        for ln in lines:
            # A free item's threshold is the spend that earns it: the whole order counts.
            whole_order = r.level is Level.ORDER or r.kind is Kind.FREE_ITEM
            if whole_order or r.items.matches(ln.sku, ln.product_id, ln.categories):
                qty += ln.quantity
                unit = ln.unit_price
                if ln.manual and ln.manual.kind is ManualKind.PRICE:
                    unit = ln.manual.value
                amount += unit * ln.quantity
        if qty < c.min_quantity or amount < c.min_amount:
            return False
    return True


def _rank(offer: Offer) -> tuple[int, str]:
    return (-offer.priority, offer.id)


_STAGE = {(Level.ITEM, k): i for i, k in enumerate(ITEM_STAGES)}
_STAGE.update({(Level.ORDER, k): len(ITEM_STAGES) + i for i, k in enumerate(ORDER_STAGES)})


def _step(offer: Offer) -> tuple[int, int, str]:
    """Where an offer runs: its stage in the documented order, then priority, then id."""
    return (_STAGE[(offer.level, offer.rule.kind)], -offer.priority, offer.id)


def _gives(offer: Offer, lines: Sequence[Line], ctx: Context) -> bool:
    """Whether the offer alone takes anything off this cart (it names a line, forms a set)."""
    _, steps = _run([offer], lines, ctx)
    return any(sum(cuts) > 0 for source, _, cuts, _, _ in steps if source == offer.id)


def _stack(candidates: Sequence[Offer], lines: Sequence[Line], ctx: Context) -> list[Offer]:
    """The non-exclusive candidates, with one non-stackable offer per level at most: the
    highest ranked that gives the cart something (one for other goods, or forming no set,
    would shut out the others and take nothing itself)."""
    kept: list[Offer] = []
    for level in (Level.ITEM, Level.ORDER):
        mine = [o for o in candidates if o.level is level]
        solo = sorted((o for o in mine if not o.stackable), key=_rank)
        winner = next((o for o in solo if _gives(o, lines, ctx)), None)
        kept += [o for o in mine if o.stackable] + ([winner] if winner else [])
    return kept


def price(
    offers: Iterable[Offer], lines: Sequence[Line], currency: str, ctx: Context = Context()
) -> Priced:
    """Apply the offers that qualify to the cart and say what each took off, line by line."""
    candidates = [o for o in offers if qualifies(o, lines, currency, ctx)]
    options = [_stack([o for o in candidates if not o.exclusive], lines, ctx)]
    options += [[o] for o in sorted((o for o in candidates if o.exclusive), key=_rank)]
    best: tuple[int, _Cart, list[_Step]] | None = None
    for option in options:
        cart, steps = _run(option, lines, ctx)
        automatic = sum(sum(cuts) for source, _, cuts, _, _ in steps if source != MANUAL)
        if best is None or automatic > best[0]:
            best = (automatic, cart, steps)
    assert best is not None
    return _result(best[1], best[2])


# One step of a run: source, level, cut per line, its reason (an offer's is written only if
# it won and applied), who asked.
_Step = tuple[str, Level, list[int], "str | Offer", str]


def _run(offers: Sequence[Offer], lines: Sequence[Line], ctx: Context) -> tuple[_Cart, list[_Step]]:
    cart = _Cart(lines)
    steps: list[_Step] = []
    for i, ln in enumerate(cart.lines):
        if ln.manual and ln.manual.kind is ManualKind.PRICE:
            cut = (ln.unit_price - ln.manual.value) * ln.quantity
            steps.append(
                (
                    MANUAL,
                    Level.ITEM,
                    _one(len(cart.lines), i, cut),
                    ln.manual.reason,
                    ln.manual.requested_by,
                )
            )
    plan = sorted(offers, key=_step)
    for offer in plan:
        if offer.level is Level.ITEM:
            steps.append((offer.id, Level.ITEM, _item(offer.rule, cart), offer, ""))
    for p, ln in enumerate(cart.lines):
        m = ln.manual
        if m and m.kind is ManualKind.PERCENT:
            cut = _cut(m, cart.remaining[p])
            steps.append(
                (MANUAL, Level.ITEM, cart.take({p: cut}), describe_manual(m), m.requested_by)
            )
        elif m and m.kind is ManualKind.AMOUNT:
            # Off each unit of the line, capped unit by unit as an item amount is (until
            # 2026-12-05 it came off the line once, whatever its quantity).
            each, _ = cart.take_each(p, m.value, ln.quantity)
            steps.append(
                (
                    MANUAL,
                    Level.ITEM,
                    _one(len(cart.lines), p, each),
                    describe_manual(m),
                    m.requested_by,
                )
            )
    for offer in plan:
        if offer.level is Level.ORDER:
            cut = _order_cut(offer.rule, sum(cart.remaining))
            steps.append((offer.id, Level.ORDER, _spread(cart, cut), offer, ""))
    if ctx.manual is not None:
        cut = _cut(ctx.manual, sum(cart.remaining))
        steps.append(
            (
                MANUAL,
                Level.ORDER,
                _spread(cart, cut),
                describe_manual(ctx.manual),
                ctx.manual.requested_by,
            )
        )
    return cart, steps


def _one(n: int, p: int, amount: int) -> list[int]:
    out = [0] * n
    out[p] = amount
    return out


def _cut(m: Manual, base: int) -> int:
    if m.kind is ManualKind.PERCENT:
        return min(base, round_half_away(base * m.value, BPS))
    return min(base, m.value)


def _order_cut(rule: Rule, base: int) -> int:
    if rule.kind is Kind.PERCENT_OFF:
        return min(base, round_half_away(base * rule.percent_bps, BPS))
    return min(base, rule.amount)


def _spread(cart: _Cart, cut: int) -> list[int]:
    shares = allocate(cut, cart.remaining)
    return cart.take(dict(enumerate(shares)))


def _item(rule: Rule, cart: _Cart) -> list[int]:
    positions = cart.matching(rule.items)
    if rule.kind is Kind.SALE_PRICE:
        taken = {}
        for p in positions:
            if cart.unit[p] > rule.amount:
                taken[p] = (cart.unit[p] - rule.amount) * cart.lines[p].quantity
                cart.unit[p] = rule.amount
        return cart.take(taken)
    if rule.kind is Kind.PERCENT_OFF:
        return cart.take(
            {p: round_half_away(cart.remaining[p] * rule.percent_bps, BPS) for p in positions}
        )
    if rule.kind is Kind.TIERS:
        count = sum(cart.lines[p].quantity for p in positions)
        reached = [t for t in rule.tiers if t.min_quantity <= count]
        if not reached:
            return [0] * len(cart.lines)
        bps = max(reached, key=lambda t: t.min_quantity).percent_bps
        return cart.take({p: round_half_away(cart.remaining[p] * bps, BPS) for p in positions})
    if rule.kind is Kind.AMOUNT_OFF:
        # A unit a free item or a set at 100 % gave away has nothing left and is not counted.
        out = [0] * len(cart.lines)
        for p, units in cart.worth_most(positions, rule.amount, rule.limit_per_order).items():
            out[p], _ = cart.take_each(p, rule.amount, units)
        return out
    if rule.kind is Kind.FREE_ITEM:
        picked = cart.cheapest(positions, rule.get_quantity, {})
        return _use(cart, picked, BPS)
    if rule.kind is Kind.BUY_X_GET_Y:
        return _buy_x_get_y(rule, cart, positions)
    return _bundle(rule, cart, positions)


def _use(cart: _Cart, picked: dict[int, int], bps: int) -> list[int]:
    out = [0] * len(cart.lines)
    for p, n in picked.items():
        cart.used[p] += n
        out[p] = cart.take_set(p, n, round_half_away(cart.unit[p] * n * bps, BPS))
    return out


def _buy_x_get_y(rule: Rule, cart: _Cart, buy: list[int]) -> list[int]:
    """The most sets the cart makes: Y cheapest qualifying units discounted per set, X other
    qualifying units bought for each. Found by bisection: more sets never need fewer units."""
    get = buy if rule.get_items is None else cart.matching(rule.get_items)
    x, y = rule.buy_quantity, rule.get_quantity
    most = sum(cart.available(p) for p in get) // y
    if rule.limit_per_order:
        most = min(most, rule.limit_per_order)

    def feasible(sets: int) -> dict[int, int] | None:
        picked = cart.cheapest(get, sets * y, {})
        if sum(picked.values()) < sets * y:
            return None
        left = sum(cart.available(p) - picked.get(p, 0) for p in buy)
        return picked if left >= sets * x else None

    low, high = 0, most
    while low < high:
        mid = (low + high + 1) // 2
        if feasible(mid) is None:
            high = mid - 1
        else:
            low = mid
    picked = feasible(low) or {}
    # The units bought for the sets are used up too (the dearest ones: cheapest went free).
    paid = _dearest(cart, buy, low * x, picked)
    for p, n in paid.items():
        cart.used[p] += n
    return _use(cart, picked, rule.percent_bps)


def _dearest(cart: _Cart, positions: list[int], units: int, held: dict[int, int]) -> dict[int, int]:
    picked: dict[int, int] = {}
    for p in sorted(positions, key=lambda p: (-cart.unit[p], p)):
        if units <= 0:
            break
        n = min(units, cart.available(p) - held.get(p, 0))
        if n > 0:
            picked[p] = n
            units -= n
    return picked


def _bundle(rule: Rule, cart: _Cart, positions: list[int]) -> list[int]:
    """Any N for a fixed price: the dearest units are grouped first (the most the customer can
    save); a group worth no more than the price is not formed."""
    n, price_of = rule.get_quantity, rule.amount
    runs = [
        [cart.unit[p], p, cart.available(p)]
        for p in sorted(positions, key=lambda p: (-cart.unit[p], p))
    ]
    runs = [r for r in runs if r[2] > 0]
    value: dict[int, int] = {}
    used: dict[int, int] = {}
    bundles = 0
    limit = rule.limit_per_order or -1
    i = 0
    while i < len(runs) and bundles != limit:
        unit, p, count = runs[i]
        if count >= n:  # whole groups inside one run, at once
            groups = count // n
            if limit > 0:
                groups = min(groups, limit - bundles)
            if unit * n <= price_of:
                break
            value[p] = value.get(p, 0) + unit * n * groups
            used[p] = used.get(p, 0) + n * groups
            runs[i][2] -= n * groups
            bundles += groups
            if runs[i][2] == 0:
                i += 1
            continue
        group: dict[int, int] = {}
        need, j = n, i
        while need and j < len(runs):
            k = min(need, runs[j][2])
            group[runs[j][1]] = k
            need -= k
            j += 1
        if need or sum(cart.unit[q] * k for q, k in group.items()) <= price_of:
            break
        for q, k in group.items():
            value[q] = value.get(q, 0) + cart.unit[q] * k
            used[q] = used.get(q, 0) + k
        for r in runs[i:j]:
            r[2] -= group.get(r[1], 0)
        while i < len(runs) and runs[i][2] == 0:
            i += 1
        bundles += 1
    if not bundles:
        return [0] * len(cart.lines)
    for p, k in used.items():
        cart.used[p] += k
    keys = sorted(value)
    shares = allocate(sum(value.values()) - bundles * price_of, [value[p] for p in keys])
    out = [0] * len(cart.lines)
    for p, share in zip(keys, shares, strict=True):
        out[p] = cart.take_set(p, used[p], share)
    return out


def _result(cart: _Cart, steps: list[_Step]) -> Priced:
    n = len(cart.lines)
    applied: list[Applied] = []
    per_line = [0] * n
    for source, level, cuts, reason, who in steps:
        amount = sum(cuts)
        if amount <= 0 and source != MANUAL:
            continue  # an offer that took nothing (nothing left, no set formed) is not shown
        sent = [0] * n
        for pos, original in enumerate(cart.order):
            sent[original] = cuts[pos]
            per_line[pos] += cuts[pos]
        said = reason if isinstance(reason, str) else describe(reason)
        applied.append(Applied(source, level, amount, said, tuple(sent), who))
    line_discounts = [0] * n
    for pos, original in enumerate(cart.order):
        line_discounts[original] = per_line[pos]
    subtotal = sum(ln.unit_price * ln.quantity for ln in cart.lines)
    return Priced(subtotal, tuple(applied), tuple(line_discounts), sum(per_line))


__all__ = ["Applied", "Context", "Line", "Manual", "ManualKind", "Priced", "allocate", "price"]
