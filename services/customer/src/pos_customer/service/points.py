"""Use cases of loyalty: the program, earning, holds for redemption, reversal, adjustment,
expiry and history.

Every change of a balance locks the customer's row first (SELECT ... FOR UPDATE), then writes
the ledger entry and the new balance in the same transaction: concurrent redemptions queue on
the lock, so none sees a balance another is about to spend, and the balance is always the sum
of the ledger.

The balance, the points held and the tier are part of the customer (`GetCustomer` answers them
with its `version`, the gateway's ETag): each use case that changes them ends with `_announce`,
one new version of the customer however many rows it wrote, announced as `customer_updated`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime

from pos_customer.domain import loyalty
from pos_customer.domain.model import ERASED, MERGED, Customer, CustomerUpdated
from pos_customer.service.handlers import active_customer, get_customer
from pos_customer.service.ports import CustomerUnitOfWork
from pos_customer.service.tiers import moves_tiers, retier, tier_now
from pos_kit.errors import Conflict, FieldViolation, NotFound, raise_if, require
from pos_kit.ids import new_id
from pos_kit.paging import PageRequest

MAX_REASON = 500


async def get_program(uow: CustomerUnitOfWork) -> loyalty.Program:
    return await uow.loyalty.program()


async def set_program(
    uow: CustomerUnitOfWork, program: loyalty.Program, expected_version: int
) -> tuple[loyalty.Program, loyalty.Program]:
    """(the program before, the program now). The same program again changes nothing: no new
    version (as the other settings)."""
    loyalty.validate_program(program)
    # Twice at most: read locked, the program can still change under a first change (no row to
    # lock yet) or between the read and the write of the stored one; without If-Match the new
    # program then replaces the winner's, as any later change would.
    for attempt in (1, 2):
        current = await uow.loyalty.program(lock=True)
        if expected_version and expected_version != current.version:
            raise _program_changed(current.version)
        if replace(program, version=current.version) == current:
            return current, current
        saved = replace(program, version=current.version + 1)
        if await uow.loyalty.save_program(saved, current.version):
            if moves_tiers(current, saved):
                # The first batch at once (every customer of most merchants); the rest, if any,
                # by the background pass (`retier_next`), from the start under this program.
                await uow.loyalty.set_retier_after(await _retier_batch(uow, saved, ""))
            return current, saved
        if expected_version or attempt == 2:
            raise _program_changed((await uow.loyalty.program()).version)
    raise AssertionError("unreachable")


# How many customers a tier change re-tiers in one transaction: the change's own, then each
# of the background pass's, so no transaction of a merchant with a million customers locks
# them all (or runs for minutes).
RETIER_BATCH = 500


async def _retier_batch(
    uow: CustomerUnitOfWork, program: loyalty.Program, after: str
) -> str | None:
    """The program's tiers or period changed: the next `RETIER_BATCH` customers past `after`
    whose tier that can move are re-tiered, each whose tier moves a new version announced with
    `loyalty_tier_changed`, so a customer read (and the change feed) shows the new program's
    tier, not the one of their next earn or reversal. Rows are locked one by one in id order,
    as an earn or a merge locks them. The id to go on from; None when none is left."""
    everyone = any(t.threshold_points <= 0 for t in program.tiers)
    ids = await uow.customers.tier_candidates(everyone=everyone, after=after, limit=RETIER_BATCH)
    for customer_id in ids:
        customer = await uow.customers.get(customer_id, for_update=True)
        if customer is None or customer.status != "active":
            continue
        if await retier(uow, customer, program):
            await _announce(uow, customer.id)
    return ids[-1] if len(ids) == RETIER_BATCH else None


async def retier_next(uow: CustomerUnitOfWork) -> bool:
    """One more batch of the re-tiering a tier change left to the background, under the
    program's lock (a program change meanwhile starts it over; two passes at once take turns);
    True when some is still left."""
    program = await uow.loyalty.program(lock=True)
    after = await uow.loyalty.retier_after()
    if after is None:
        return False
    after = await _retier_batch(uow, program, after)
    await uow.loyalty.set_retier_after(after)
    return after is not None


def _program_changed(current_version: int) -> Conflict:
    return Conflict(
        "the program changed since the version you sent",
        "version_mismatch",
        {"current_version": str(current_version)},
    )


async def _append(
    uow: CustomerUnitOfWork,
    customer: Customer,
    kind: str,
    points: int,
    order_id: str = "",
    reason: str = "",
    tier_points: int | None = None,
    return_id: str = "",
) -> loyalty.Entry:
    customer.loyalty_points += points
    entry = await uow.loyalty.append(
        loyalty.Entry(
            new_id("pte"), customer.id, kind, points, customer.loyalty_points, order_id, reason,
            tier_points=tier_points, return_id=return_id,
        )
    )  # fmt: skip
    await uow.customers.save_points(customer)
    return entry


async def _announce(uow: CustomerUnitOfWork, customer_id: str) -> None:
    """The customer's points changed in this transaction (its row is locked): a new version
    of it, `updated_at` moved with it (the change feed's trigger), announced as every other
    change of a customer is. Without it a conditional request, or a partner's copy keyed on
    the version, would take a changed balance for the one it had."""
    customer = await uow.customers.new_version(customer_id)
    uow.publish(CustomerUpdated(customer))


async def _customer_now(uow: CustomerUnitOfWork, customer_id: str) -> Customer | None:
    """The active customer an id leads to, following merges; None if there is none.

    A duplicate merged away and erased since still leads to its survivor: its orders' points
    are the survivor's (the merge moved them), so the survivor earns, and gives back, for
    them. Erasing the survivor erases its duplicates too, so that chain ends at no one."""
    for _ in range(10):
        customer = await uow.customers.get(customer_id, for_update=True)
        if customer is None:
            return None
        if customer.status in (MERGED, ERASED) and customer.merged_into:
            customer_id = customer.merged_into
            continue
        return customer if customer.status == "active" else None
    return None


async def credit_sale(uow: CustomerUnitOfWork, sale: loyalty.Sale) -> int:
    """Loyalty and purchase history for a confirmed order, once per order: a second delivery
    (or a second event for the same order) finds the purchase recorded and does nothing.

    The order's cancellation or returns may have arrived first (the consumers are not ordered
    across event types; they recorded themselves in order_reversals): a cancelled order is
    recorded as a reversed purchase and earns nothing, and a returned one earns, then gives
    back at once what its returns take, so the balance is the same in any arrival order."""
    await uow.loyalty.lock_order(sale.order_id)
    customer = await _customer_now(uow, sale.customer_id)
    if customer is None:
        return 0  # an unknown or erased customer earns nothing
    sale = replace(sale, customer_id=customer.id)
    program = await uow.loyalty.program()
    # The sale earns under the program in force when it was made: its event can be heard after
    # the merchant changed the rate, the tiers or the excluded SKUs (a backlog, the consumer
    # down), and the sale was made under the old ones.
    made_under = program if sale.sold_at is None else await uow.loyalty.program_at(sale.sold_at)
    reversals = await uow.loyalty.reversals(sale.order_id)
    cancelled = any(not r.return_id for r in reversals)
    # The tier the customer holds as the sale is heard, from the ledger, by that program's
    # tiers: the stored one may be from an earn before the program's period or before the
    # program changed.
    tier = await tier_now(uow, customer, made_under)
    points = 0 if cancelled else loyalty.points_for(made_under, sale, tier)
    # What each line earned on, under that same program: what its returns take back, whatever
    # the program says by then.
    lines = loyalty.earning_lines(made_under, sale)
    if not await uow.purchases.record(sale, points, lines):
        return 0
    if cancelled:
        await uow.purchases.mark_reversed(sale.order_id)
        return 0
    if points <= 0:
        return 0
    entry = await _append(uow, customer, loyalty.EARNED, points, sale.order_id)
    uow.publish(loyalty.PointsEarned(entry))
    await retier(uow, customer, program)  # the tier they hold is today's program's
    # Each return heard before the earn takes what the returns up to it (in the order of the
    # growing figure they carry) take in all, less what those before it took.
    for n, reversal in enumerate(reversals):
        await _take_back(uow, sale.order_id, reversal, reversals[: n + 1])
    await _announce(uow, customer.id)  # one version, what the returns took back included
    return points


async def adjust(
    uow: CustomerUnitOfWork, customer_id: str, points: int, reason: str
) -> tuple[loyalty.Entry, int]:
    loyalty.validate_points(points, allow_negative=True)
    raise_if(require(0 < len(reason.strip()) <= MAX_REASON, "reason", "1 to 500 characters"))
    customer = await active_customer(uow, customer_id, for_update=True)
    if points < 0 and -points > customer.available_points:
        refused = _insufficient(customer)
        # The debit asked is at fault (a hold's caller names its own field: the order's
        # `redeem_points`, when this names none).
        most = max(customer.available_points, 0)
        refused.violations = [
            FieldViolation(
                "points", f"must take at most {most} points, what the customer has available"
            )
        ]
        raise refused
    entry = await _append(uow, customer, loyalty.ADJUSTED, points, reason=reason.strip())
    uow.publish(loyalty.PointsAdjusted(entry))
    await _announce(uow, customer.id)
    return entry, customer.loyalty_points


def _insufficient(customer: Customer) -> Conflict:
    return Conflict(
        "the customer does not have that many points available",
        "insufficient_points",
        {"available": str(customer.available_points)},
    )


async def hold(
    uow: CustomerUnitOfWork, order_id: str, customer_id: str, points: int, currency: str
) -> loyalty.Hold:
    """Set aside points for an open order (one hold per order; holding again changes it)."""
    raise_if(require(bool(order_id), "order_id", "is required"))
    loyalty.validate_points(points)
    customer = await _survivor(uow, customer_id)
    existing = await uow.loyalty.hold(order_id, for_update=True)
    already = 0
    if existing is not None:
        if existing.customer_id != customer.id:
            raise Conflict("the order holds another customer's points", "hold_customer_mismatch")
        if existing.status != loyalty.HELD:
            raise Conflict(f"the hold is {existing.status}", f"hold_{existing.status}")
        already = existing.points
    if points - already > customer.available_points:
        raise _insufficient(customer)
    program = await uow.loyalty.program()
    customer.points_held += points - already
    held = loyalty.Hold(order_id, customer.id, points, loyalty.HELD, currency,
                        program.point_value_minor)  # fmt: skip
    await uow.loyalty.save_hold(held)
    await uow.customers.save_points(customer)
    if points != already:  # holding the same points again changes nothing of the customer
        await _announce(uow, customer.id)
    return held


async def _survivor(uow: CustomerUnitOfWork, customer_id: str) -> Customer:
    """The active customer `customer_id` is now, locked: itself, or the survivor a duplicate
    was merged into. An order rung up for a duplicate just merged away (the order service
    learns of merges by event) redeems the survivor's points, as its earn and its
    finalisation are theirs; refusing it as unknown would refuse a sale of points the merge
    had just brought together. The merges are followed unlocked and only the survivor is
    locked, as a merge locks it: locking the duplicate too could deadlock with a merge naming
    the duplicate, which locks the pair in id order."""
    current, lock = customer_id, False
    for _ in range(20):
        found = await uow.customers.get(current, for_update=lock)
        if found is None:
            break
        if found.status == MERGED and found.merged_into:
            # Followed unlocked; merged away while we looked (locked): on to its survivor.
            current, lock = found.merged_into, False
            continue
        if found.status != "active":
            break
        if lock:
            return found
        lock = True  # the end of the chain: read it again, locked
    raise NotFound("customer", customer_id)


async def _held(uow: CustomerUnitOfWork, order_id: str) -> loyalty.Hold:
    found = await uow.loyalty.hold(order_id, for_update=True)
    if found is None:
        raise NotFound("points hold", order_id)
    return found


async def finalize(uow: CustomerUnitOfWork, order_id: str) -> loyalty.Hold:
    """The order is confirmed: the held points are redeemed. Twice is once."""
    found = await _held(uow, order_id)
    if found.status == loyalty.FINALIZED:
        return found
    if found.status != loyalty.HELD:
        raise Conflict(f"the hold is {found.status}", f"hold_{found.status}")
    customer = await _customer_now(uow, found.customer_id)
    if customer is None:
        raise NotFound("customer", found.customer_id)
    customer.points_held -= found.points
    entry = await _append(uow, customer, loyalty.REDEEMED, -found.points, order_id)
    found.status, found.customer_id = loyalty.FINALIZED, customer.id
    await uow.loyalty.save_hold(found)
    uow.publish(loyalty.PointsRedeemed(entry))
    await _announce(uow, customer.id)
    return found


async def release(uow: CustomerUnitOfWork, order_id: str) -> loyalty.Hold:
    """The order is cancelled before confirmation: the points are free again. Twice is once."""
    found = await _held(uow, order_id)
    if found.status == loyalty.RELEASED:
        return found
    if found.status != loyalty.HELD:
        raise Conflict(f"the hold is {found.status}", f"hold_{found.status}")
    customer = await _customer_now(uow, found.customer_id)
    if customer is not None:
        customer.points_held -= found.points
        await uow.customers.save_points(customer)
        await _announce(uow, customer.id)
    found.status = loyalty.RELEASED
    await uow.loyalty.save_hold(found)
    return found


async def reverse_order(uow: CustomerUnitOfWork, order_id: str, reason: str) -> list[loyalty.Entry]:
    """An order cancelled after confirmation (or returned): what it earned is taken back and
    what it redeemed is given back, in one `reversed` entry, once per order. Points the
    customer already spent or holds for an open order are taken all the same: the balance may
    go below what is held, or below zero, a debt that blocks redemptions until later earnings
    pay it (cutting it instead would let a fully refunded order keep its points)."""
    raise_if(require(bool(order_id), "order_id", "is required"))
    await uow.loyalty.lock_order(order_id)
    if await uow.loyalty.entry_for_order(loyalty.REVERSED, order_id) is not None:
        return []
    earned = await uow.loyalty.entry_for_order(loyalty.EARNED, order_id)
    redeemed = await uow.loyalty.entry_for_order(loyalty.REDEEMED, order_id)
    if earned is None and redeemed is None:
        raise NotFound("order points", order_id)
    # An earn arriving after this reversal earns nothing (credit_sale).
    await uow.loyalty.record_reversal(order_id)
    owner = (earned or redeemed).customer_id  # type: ignore[union-attr]
    customer = await _customer_now(uow, owner)
    if customer is None:
        return []
    # What returns already took back is not taken twice.
    kept = (earned.points if earned else 0) + await uow.loyalty.returned_points(order_id)
    net = -max(kept, 0) - (redeemed.points if redeemed else 0)
    note = reason.strip()[:MAX_REASON] or "order reversed"
    # Towards the tier the order then counts for nothing: what it earned and its returns did
    # not take back goes, and the redeemed points given back were never earned (with `net`
    # alone, cancelling an order that redeemed much would raise the customer's tier).
    entry = await _append(
        uow, customer, loyalty.REVERSED, net, order_id, note, tier_points=-max(kept, 0)
    )
    await uow.purchases.mark_reversed(order_id)
    uow.publish(loyalty.PointsAdjusted(entry))
    await retier(uow, customer, await uow.loyalty.program())
    await _announce(uow, customer.id)
    return [entry]


async def reverse_cancelled(uow: CustomerUnitOfWork, order_id: str) -> list[loyalty.Entry]:
    """The reversal of an order cancelled after it earned or redeemed points. One that did
    neither (cancelled before its confirmation, or its order_confirmed is still on its way)
    gets nothing back, but the cancellation is recorded, once: its earn, if it comes, earns
    nothing."""
    await uow.loyalty.lock_order(order_id)
    await uow.loyalty.record_reversal(order_id)
    earned = await uow.loyalty.entry_for_order(loyalty.EARNED, order_id)
    redeemed = await uow.loyalty.entry_for_order(loyalty.REDEEMED, order_id)
    if earned is None and redeemed is None:
        return []
    return await reverse_order(uow, order_id, "order cancelled")


async def reverse_returned(
    uow: CustomerUnitOfWork,
    order_id: str,
    return_id: str,
    total: int,
    refunded: int,
    units: Mapping[str, int] | None = None,
) -> list[loyalty.Entry]:
    """Units returned take back the points they earned: after each return, what all the
    order's returns took back is the points earned times the share of the value the sale
    earned on that their units come to (each line's units at what the line earned on, as
    recorded at the earn: nothing for an excluded SKU or a gift card), rounded down, so
    returning every unit takes back exactly what was earned and never more, and returning
    units that earned nothing takes nothing. Once per return. Points the order redeemed are not
    given back by a return (they paid for goods the customer had). A return arriving before the
    order's earn is recorded, and the earn takes its share back then (credit_sale).

    `units` are the return's units by line id; without them (an event that does not name its
    lines), or for an order whose earn was recorded before lines were kept (migration 0009), or
    with a return recorded before then, the share is of the goods' value instead: `refunded` of
    `total`, the growing figure of the order's goods its returns took back so far.

    A fulfilment cancelled or expired comes the same way, its id in place of a return's, its
    lines' units and `refunded` the same growing figure (returns and cancelled goods together),
    the entry's reason saying its goods were not handed over."""
    await uow.loyalty.lock_order(order_id)
    await uow.loyalty.record_reversal(order_id, return_id, total, refunded, units)
    this = loyalty.Reversal(return_id, total, refunded, units)
    recorded = [*await uow.loyalty.reversals(order_id)]
    entries, customer = await _take_back(uow, order_id, this, recorded)
    if customer is not None:
        await _announce(uow, customer.id)
    return entries


async def _take_back(
    uow: CustomerUnitOfWork,
    order_id: str,
    this: loyalty.Reversal,
    recorded: list[loyalty.Reversal],
) -> tuple[list[loyalty.Entry], Customer | None]:
    """The entry of one return (or cancelled fulfilment), `this`: what the returns `recorded`
    so far (this one among them) take back in all, less what earlier ones took; and the
    customer, if it changed one (not announced here: an earn that takes back its returns'
    share at once announces both as one version). The order's lock is held."""
    if not this.return_id:
        return [], None  # the cancellation: reverse_order's
    earned = await uow.loyalty.entry_for_order(loyalty.EARNED, order_id)
    if (
        earned is None
        or await uow.loyalty.entry_for_order(loyalty.REVERSED, order_id) is not None
        or await uow.loyalty.entry_for_order(loyalty.REVERSED, order_id, this.return_id) is not None
    ):
        return [], None
    target = await _returns_take(uow, order_id, earned.points, this, recorded)
    due = target + await uow.loyalty.returned_points(order_id)
    if due <= 0:
        return [], None
    customer = await _customer_now(uow, earned.customer_id)
    if customer is None:
        return [], None
    why = "not handed over" if loyalty.names_fulfillment(order_id, this.return_id) else "returned"
    # Taken whole even if spent or held, as reverse_order does.
    note = f"units of order {order_id} {why}"
    entry = await _append(
        uow, customer, loyalty.REVERSED, -due, order_id, note, return_id=this.return_id
    )
    uow.publish(loyalty.PointsAdjusted(entry))
    await retier(uow, customer, await uow.loyalty.program())
    return [entry], customer


async def _returns_take(
    uow: CustomerUnitOfWork,
    order_id: str,
    earned: int,
    this: loyalty.Reversal,
    recorded: list[loyalty.Reversal],
) -> int:
    """What the order's returns `recorded` take back of `earned` in all: the points their units
    earned, when the earn recorded its lines and every return its units; else the share of the
    goods' value `this` one's growing figure says (the rule before lines were kept)."""
    given_back = [r.lines for r in recorded if r.return_id]
    lines = await uow.purchases.earning_lines(order_id)
    if lines is not None and all(g is not None for g in given_back):
        target = loyalty.taken_back(earned, lines, [g for g in given_back if g is not None])
        if target is not None:
            return target
    if this.total <= 0:
        return 0
    return earned * min(max(this.refunded, 0), this.total) // this.total


async def expire(uow: CustomerUnitOfWork, now: datetime) -> tuple[int, int]:
    """Points earned more than expiry_days before `now` and not spent yet expire, oldest
    first. Running it again expires nothing more."""
    program = await uow.loyalty.program()
    cutoff = loyalty.expiry_cutoff(program, now)
    if cutoff is None:
        return 0, 0
    customers = points = 0
    done: set[str] = set()
    for credited in await uow.loyalty.customers_with_credits_before(cutoff):
        # A merged customer's old credits are the winner's now (expiry_figures counts them).
        # The chain is read unlocked and only the winner locked, as a merge locks it.
        customer = await uow.customers.get(credited)
        for _ in range(10):
            # Merged away and erased since: still the winner's (`_customer_now`).
            if customer is None or customer.status not in (MERGED, ERASED):
                break
            if not customer.merged_into:
                break
            customer = await uow.customers.get(customer.merged_into)
        if customer is None or customer.id in done:
            continue
        customer = await uow.customers.get(customer.id, for_update=True)
        if customer is None or customer.status != "active":
            continue
        done.add(customer.id)
        old, spent = await uow.loyalty.expiry_figures(customer.id, cutoff)
        amount = loyalty.expirable(old, spent, customer.available_points)
        if amount <= 0:
            continue
        entry = await _append(uow, customer, loyalty.EXPIRED, -amount, reason="expired")
        uow.publish(loyalty.PointsExpired(entry))
        await _announce(uow, customer.id)
        customers, points = customers + 1, points + amount
    return customers, points


async def history(
    uow: CustomerUnitOfWork, customer_id: str, page: PageRequest
) -> tuple[list[loyalty.Entry], str]:
    # A merged customer's history stays readable, as the customer does (its last entry is
    # the move of its balance into the one it was merged into); an erased one is gone.
    await get_customer(uow, customer_id)
    found = await uow.loyalty.history(customer_id, page)
    if len(found) <= page.limit:
        return found, ""
    items = found[: page.limit]
    return items, str(await uow.loyalty.seq_of(items[-1].id))
