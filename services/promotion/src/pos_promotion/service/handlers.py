"""Use cases of the promotion service, one function each."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

from pos_kit.errors import AlreadyExists, Conflict, FieldViolation, NotFound, raise_if, require
from pos_kit.ids import new_id
from pos_kit.paging import PageRequest
from pos_promotion.domain import coupons as cp
from pos_promotion.domain.coupons import (
    Coupon,
    CouponRedeemed,
    CouponRefused,
    CouponReleased,
    CouponStatus,
    Refusal,
    Reservation,
    ReservationStatus,
)
from pos_promotion.domain.engine import Priced
from pos_promotion.domain.model import (
    Cart,
    Promotion,
    PromotionCreated,
    PromotionDeleted,
    PromotionEnded,
    PromotionUpdated,
    Schedule,
    Status,
    edited_currency,
    new_promotion,
    price_with_coupons,
    stale,
    validate_offer,
)
from pos_promotion.domain.rules import Offer
from pos_promotion.service.ports import (
    ActivePromotions,
    CodeHasher,
    CouponLookup,
    PromotionUnitOfWork,
)

UPDATABLE = frozenset(
    {"name", "rule", "conditions", "priority", "exclusive", "stackable", "requires_coupon"}
)


async def create_promotion(
    uow: PromotionUnitOfWork,
    offer: Offer,
    parse_violations: list[FieldViolation] | None = None,
    groups_sent: Sequence[str] = (),
) -> Promotion:
    """`groups_sent`: `conditions.customer_groups` as the request lists them, to name the
    one a retired group is at."""
    promotion = new_promotion(validate_offer(offer, parse_violations))
    await _none_retired(uow, groups_sent or sorted(offer.conditions.customer_groups))
    await uow.promotions.add(promotion)
    uow.publish(PromotionCreated(promotion))
    return promotion


async def get_promotion(
    uow: PromotionUnitOfWork, promotion_id: str, lock: bool = False
) -> Promotion:
    promotion = await uow.promotions.get(promotion_id, lock=lock)
    if promotion is None:
        raise NotFound("promotion", promotion_id)
    return promotion


async def list_promotions(
    uow: PromotionUnitOfWork,
    page: PageRequest,
    status: Status | None = None,
    schedule: Schedule | None = None,
    at: datetime | None = None,
) -> list[Promotion]:
    """A page of the merchant's promotions, only those in `status` and whose window is in
    `schedule` now (or at `at`) when given."""
    return await uow.promotions.list(page, status, schedule, at)


async def _save(uow: PromotionUnitOfWork, promotion: Promotion, seen: int) -> None:
    # The write re-checks the version, so two concurrent changes cannot both win.
    if not await uow.promotions.save(promotion, seen):
        current = await get_promotion(uow, promotion.id)
        raise stale(current.version)


async def update_promotion(
    uow: PromotionUnitOfWork,
    promotion_id: str,
    expected_version: int,
    mask: list[str],
    changes: Offer,
    parse_violations: list[FieldViolation],
    groups_sent: Sequence[str] = (),
) -> Promotion:
    """`changes` holds the new values; only the fields named in `mask` are taken from it.
    `groups_sent`: as in create_promotion."""
    unknown = sorted(set(mask) - UPDATABLE)
    raise_if(
        require(bool(mask), "update_mask", "name at least one field")
        + require(not unknown, "update_mask", f"cannot change {', '.join(unknown)}")
    )
    # Read locked: changes at once queue here, so one naming no version applies on top of the
    # one before it instead of finding its version moved at the write (a 412 for a request
    # that asked for no version check).
    promotion = await get_promotion(uow, promotion_id, lock=True)
    promotion.check_version(expected_version)
    o = promotion.offer
    fields = set(mask)
    # Only what is being changed can have failed to parse.
    relevant = [v for v in parse_violations if v.field.split(".")[0] in fields]
    currency = o.currency
    if fields & {"rule", "conditions"}:
        currency, mixed = edited_currency(o, fields, changes.currency)
        relevant += mixed
    new = replace(
        o,
        name=changes.name if "name" in fields else o.name,
        rule=changes.rule if "rule" in fields else o.rule,
        conditions=changes.conditions if "conditions" in fields else o.conditions,
        currency=currency,
        priority=changes.priority if "priority" in fields else o.priority,
        exclusive=changes.exclusive if "exclusive" in fields else o.exclusive,
        stackable=changes.stackable if "stackable" in fields else o.stackable,
        requires_coupon=changes.requires_coupon
        if "requires_coupon" in fields
        else o.requires_coupon,
    )
    new = validate_offer(new, relevant)
    if new == o and promotion.status is not Status.ENDED:
        # Sent as it is: nothing changes, so no new version and no event (an ended one is
        # still refused as ended, below).
        return promotion
    if "conditions" in fields:
        await _none_retired(uow, groups_sent or sorted(new.conditions.customer_groups))
    seen = promotion.version
    promotion.redefine(new)
    await _save(uow, promotion, seen)
    uow.publish(PromotionUpdated(promotion))
    return promotion


async def _none_retired(uow: PromotionUnitOfWork, groups: Sequence[str]) -> None:
    """A promotion written naming a customer group retired for its deletion would read as live
    and price nobody's cart once the group is gone: NOT_FOUND naming the first such
    `conditions.customer_groups[i]`, as the gateway answers a group that is not there. Decided
    under the groups' locks, which a retirement takes too, held until this write commits: of a
    retirement and this write at once, the one second sees the other."""
    if not groups:
        return
    await uow.retired_groups.lock(set(groups))
    retired = await uow.retired_groups.retired(set(groups))
    for index, group_id in enumerate(groups):
        if group_id in retired:
            raise NotFound("customer group", group_id, [f"conditions.customer_groups[{index}]"])


async def retire_group(uow: PromotionUnitOfWork, group_id: str, retirement_id: str) -> list[str]:
    """The customer group is retired for its deletion under `retirement_id`, unless a
    promotion not ended (active or paused) names it: then their ids, and nothing is written.
    Ended promotions keep naming it as they ran. The promotions are read under the group's
    lock, after any write naming it that took the lock first has committed."""
    raise_if(
        require(bool(group_id), "group_id", "required")
        + require(bool(retirement_id), "request_id", "required: it keys the retirement")
    )
    await uow.retired_groups.lock({group_id})
    naming = [p.id for p in await uow.promotions.live()
              if group_id in p.offer.conditions.customer_groups]  # fmt: skip
    if not naming:
        await uow.retired_groups.retire(group_id, retirement_id)
    return naming


async def reinstate_group(uow: PromotionUnitOfWork, group_id: str, retirement_id: str) -> None:
    """Undoes that one retirement: the group's deletion was refused after all. Another
    retirement of it still stands (a deletion of it that went on)."""
    await uow.retired_groups.lock({group_id})
    await uow.retired_groups.reinstate(group_id, retirement_id)


async def change_status(
    uow: PromotionUnitOfWork, promotion_id: str, expected_version: int, status: Status
) -> Promotion:
    promotion = await get_promotion(uow, promotion_id, lock=True)  # as update_promotion
    promotion.check_version(expected_version)
    seen = promotion.version
    if not promotion.move_to(status):
        return promotion  # already there: nothing changes, no event
    if status is Status.ENDED:
        promotion.ended_at = datetime.now(UTC)
    await _save(uow, promotion, seen)
    uow.publish(
        PromotionEnded(promotion) if status is Status.ENDED else PromotionUpdated(promotion)
    )
    return promotion


async def delete_promotion(
    uow: PromotionUnitOfWork, promotion_id: str, expected_version: int = 0
) -> None:
    """With `expected_version`, a promotion at another version is refused (`version_mismatch`)
    and stays, as a change would be: a deletion decided on what it was."""
    promotion = await uow.promotions.get(promotion_id, lock=True)
    if promotion is None:
        raise NotFound("promotion", promotion_id)
    promotion.check_version(expected_version)
    if promotion.used:
        raise Conflict("a promotion with used coupons cannot be deleted; end it", "promotion_used")
    await uow.promotions.remove(promotion_id)
    uow.publish(PromotionDeleted(promotion_id))


# ---------- calculation ----------


async def calculate_discounts(
    active: ActivePromotions,
    lookup: CouponLookup,
    hasher: CodeHasher,
    merchant_id: str,
    cart: Cart,
    codes: list[str],
    customer_id: str = "",
) -> tuple[Priced, list[tuple[str, Refusal]]]:
    """On the checkout's path: the cart is validated by the caller first, the offers come from
    the cache, and a coupon costs one read only when the cart names one (and one more for a
    coupon limited per customer, with the customer named: the quote refuses what the
    reservation would, so a preview and the sale agree)."""
    promotions = await active.active(merchant_id)
    refused: list[tuple[str, Refusal]] = []
    # The code that enables each offer: an offer applies once, so a second code of the same
    # promotion gives nothing and is refused (the reservation would not hold it).
    enabling: dict[str, str] = {}
    if codes:
        by_id = {p.id: p for p in promotions}
        hashes = [hasher(merchant_id, cp.normalize(c)) for c in codes[: cp.MAX_CODES_PER_CART]]
        found = await lookup.coupons(merchant_id, hashes)
        at = cart.context.at or datetime.now(UTC)
        for code, h in zip(codes, hashes, strict=False):
            coupon = found.get(h)
            if coupon is None:
                refused.append((code, Refusal.UNKNOWN))
            elif coupon.promotion_id not in by_id and not await lookup.is_active(
                merchant_id, coupon.promotion_id
            ):
                # Not among the offers read: paused, ended or gone. One whose window closed
                # is left out of them too, and goes on as an offer that gives nothing.
                refused.append((code, Refusal.INACTIVE))
            elif (
                why := coupon.refusal(
                    at, await _uses(lookup, merchant_id, coupon, customer_id), customer_id
                )
            ) is not None:
                refused.append((code, why))
            elif coupon.promotion_id in enabling:
                refused.append((code, Refusal.NOT_APPLICABLE))
            else:
                enabling[coupon.promotion_id] = code
    priced, gave_nothing = price_with_coupons(promotions, cart, frozenset(enabling))
    refused += [
        (code, Refusal.NOT_APPLICABLE)
        for promotion_id, code in enabling.items()
        if promotion_id in gave_nothing
    ]
    return priced, refused


async def _uses(
    lookup: CouponLookup, merchant_id: str, coupon: Coupon, customer_id: str
) -> int | None:
    """The customer's uses of a coupon limited per customer; None when that does not matter."""
    if not (customer_id and coupon.max_uses_per_customer):
        return None
    return await lookup.uses_by(merchant_id, coupon.id, customer_id)


# ---------- coupons ----------


async def create_coupons(
    uow: PromotionUnitOfWork,
    hasher: CodeHasher,
    promotion_id: str,
    codes: list[str],
    generate: int,
    max_uses: int,
    per_customer: int,
    expires_at: datetime | None,
    at: datetime | None = None,
) -> list[Coupon]:
    normalized = cp.validate_batch(
        codes, generate, max_uses, per_customer, expires_at, at or datetime.now(UTC)
    )
    promotion = await get_promotion(uow, promotion_id)
    if promotion.status is Status.ENDED:
        raise Conflict("an ended promotion takes no new coupons", "promotion_ended")
    if not promotion.offer.requires_coupon:
        raise Conflict(
            "the promotion does not ask for a coupon; set requires_coupon",
            "promotion_needs_no_coupon",
        )
    made: list[Coupon] = []
    for i, code in enumerate(normalized or cp.generate(generate)):
        coupon = Coupon(
            new_id("cpn"),
            promotion_id,
            cp.hint(code),
            max_uses,
            per_customer,
            expires_at=expires_at,
        )
        coupon.code = code
        if not await uow.coupons.add(coupon, hasher(uow.merchant_id, code)):
            if not normalized:  # a generated code collided (about never): report it as a retry
                raise Conflict(
                    "a generated code was taken; retry with a new request id",
                    "coupon_code_collision",
                )
            raise AlreadyExists(
                f"codes[{i}] is already a coupon of this merchant",
                "coupon_code_taken",
                [FieldViolation(f"codes[{i}]", "is already a coupon of this merchant")],
            )
        made.append(coupon)
    return made


async def list_coupons(
    uow: PromotionUnitOfWork,
    promotion_id: str,
    page: PageRequest,
    status: CouponStatus | None = None,
) -> list[Coupon]:
    """A page of the promotion's coupons, only those in `status` when one is given."""
    await get_promotion(uow, promotion_id)
    return await uow.coupons.of_promotion(promotion_id, page, status)


async def get_coupon(
    uow: PromotionUnitOfWork, promotion_id: str, coupon_id: str, lock: bool = False
) -> Coupon:
    """The promotion's coupon: one of another promotion is NOT_FOUND like a missing one, so a
    path never reaches a coupon through a promotion it is not of."""
    await get_promotion(uow, promotion_id)
    coupon = await uow.coupons.get(coupon_id, lock=lock)
    if coupon is None or coupon.promotion_id != promotion_id:
        raise NotFound("coupon", coupon_id)
    return coupon


async def deactivate_coupon(
    uow: PromotionUnitOfWork, promotion_id: str, coupon_id: str, at: datetime | None = None
) -> Coupon:
    """The code stops reserving; its promotion and other codes go on. Under the coupon row's
    lock, the one a reservation takes: a checkout reserving at the same moment either
    reserved first (that use stands, and redeems) or sees the deactivation. A deactivated
    coupon answers as it is (the first deactivation's time stays)."""
    coupon = await get_coupon(uow, promotion_id, coupon_id, lock=True)
    if coupon.deactivate(at or datetime.now(UTC)):
        await uow.coupons.save_status(coupon)
    return coupon


async def reserve_coupons(
    uow: PromotionUnitOfWork,
    hasher: CodeHasher,
    order_id: str,
    codes: list[str],
    customer_id: str,
    cart: Cart | None,
    at: datetime,
) -> list[tuple[Reservation, Coupon]]:
    """All the codes for the order, or none: each is checked under a lock on its coupon row, so
    concurrent checkouts of a code with N uses left get exactly N reservations."""
    raise_if(
        require(bool(order_id), "order_id", "is required")
        + require(bool(codes), "codes", "name at least one code")
        + require(len(codes) <= cp.MAX_CODES_PER_CART, "codes", f"at most {cp.MAX_CODES_PER_CART}")
    )
    # One order's coupon steps one at a time: the saga, its resumer or a retried checkout
    # asking at once under other request ids would each read "nothing reserved yet" and
    # reserve again.
    await uow.coupons.lock_order(order_id)
    existing = await uow.coupons.reservations(order_id)
    if existing:  # this order already reserved (a retry with another request id): same answer
        held = await uow.coupons.by_ids([r.coupon_id for r in existing])
        return [(r, held[r.coupon_id]) for r in existing]
    hashes = [hasher(uow.merchant_id, cp.normalize(c)) for c in codes]
    found = await uow.coupons.by_hashes(hashes, lock=True)
    promotions: dict[str, Promotion] = {}
    out: list[tuple[Reservation, Coupon]] = []
    seen: set[str] = set()
    for i, h in enumerate(hashes):
        coupon = found.get(h)
        if coupon is None:
            raise CouponRefused(i, Refusal.UNKNOWN)
        if coupon.id in seen:
            raise_if([FieldViolation(f"codes[{i}]", "the same coupon twice")])
        seen.add(coupon.id)
        promotion = promotions.get(coupon.promotion_id) or await uow.promotions.get(
            coupon.promotion_id
        )
        if promotion is None or promotion.status is not Status.ACTIVE:
            raise CouponRefused(i, Refusal.INACTIVE)
        uses = await uow.coupons.uses_by(coupon.id, customer_id) if customer_id else None
        why = coupon.refusal(at, uses, customer_id)
        if why is not None:
            raise CouponRefused(i, why)
        # An offer applies once however many of its codes are named: a second one would use
        # up a redemption for nothing.
        if promotion.id in promotions:
            raise CouponRefused(i, Refusal.NOT_APPLICABLE)
        promotions[promotion.id] = promotion
        coupon.reserved_count += 1
        out.append((Reservation(order_id, coupon.id, customer_id), coupon))
    if cart is not None:
        # Priced as the preview prices it, with the automatic offers running now: an offer
        # that cannot combine with one that wins (or two coupons' that cannot combine) gives
        # nothing, and its code would spend a use for nothing.
        running = await uow.promotions.active()
        _, gave_nothing = price_with_coupons(running, cart, frozenset(promotions))
        for i, (_, coupon) in enumerate(out):
            if coupon.promotion_id in gave_nothing:
                raise CouponRefused(i, Refusal.NOT_APPLICABLE)
    for reservation, coupon in out:
        await uow.coupons.count(coupon)
        await uow.coupons.save_reservation(reservation)
    # `used` is shown by GET and decides whether it can be deleted: its first use is a new
    # version, announced like any other change.
    for promotion_id in sorted(await uow.promotions.mark_used(set(promotions))):
        now_used = await uow.promotions.get(promotion_id)
        if now_used is not None:
            uow.publish(PromotionUpdated(now_used))
    return out


async def _settle(
    uow: PromotionUnitOfWork, order_id: str, to: ReservationStatus
) -> list[tuple[Reservation, Coupon]]:
    """Redeem (reserved -> redeemed) or release (reserved or redeemed -> released) the order's
    uses, under a lock on each coupon row. Keyed by the order, not the request: a use already
    where it is asked to go is left as it is, so a retry, the resumer or a second request id
    never moves a count twice."""
    raise_if(require(bool(order_id), "order_id", "is required"))
    # Read under the order's lock: two settlements at once (the saga and its resumer, a
    # cancellation racing the confirmation) would each move the use from where it was before
    # the other moved it, counting it twice.
    await uow.coupons.lock_order(order_id)
    reservations = await uow.coupons.reservations(order_id)
    if not reservations:
        raise NotFound("coupon reservation", order_id)
    held = await uow.coupons.by_ids([r.coupon_id for r in reservations], lock=True)
    out = []
    for r in reservations:
        coupon = held[r.coupon_id]
        if r.status == to.value:
            out.append((r, coupon))  # already done: a retry changes nothing
            continue
        # A redeemed use may still be released: its order was cancelled after confirmation
        # and the customer gets the coupon back. Nothing released is redeemed again.
        movable = r.status == ReservationStatus.RESERVED.value or (
            to is ReservationStatus.RELEASED and r.status == ReservationStatus.REDEEMED.value
        )
        if not movable:
            raise Conflict(
                f"the coupons of this order were already {r.status}", f"coupons_already_{r.status}"
            )
        was_redeemed = r.status == ReservationStatus.REDEEMED.value
        if was_redeemed:
            coupon.redeemed_count -= 1
        else:
            coupon.reserved_count -= 1
        if to is ReservationStatus.REDEEMED:
            coupon.redeemed_count += 1
        r.status = to.value
        await uow.coupons.count(coupon)
        await uow.coupons.set_status(r)
        if to is ReservationStatus.REDEEMED:
            uow.publish(CouponRedeemed(coupon, order_id, r.customer_id))
        elif was_redeemed:
            uow.publish(CouponReleased(coupon, order_id, r.customer_id))
        out.append((r, coupon))
    return out


async def redeem_coupons(
    uow: PromotionUnitOfWork, order_id: str
) -> list[tuple[Reservation, Coupon]]:
    return await _settle(uow, order_id, ReservationStatus.REDEEMED)


async def release_coupons(
    uow: PromotionUnitOfWork, order_id: str
) -> list[tuple[Reservation, Coupon]]:
    return await _settle(uow, order_id, ReservationStatus.RELEASED)


# ---------- customers ----------


async def customer_merged(uow: PromotionUnitOfWork, duplicate_id: str, survivor_id: str) -> None:
    """The customer service merged a duplicate into a customer: the same person, so a coupon
    limited per customer counts their uses under either id together (`uses_by`), and a
    duplicate named later is the survivor. Recorded flat: if the survivor was itself merged
    away (its merge heard first), the duplicate goes where it went, and the duplicates merged
    into this one before follow it."""
    await uow.merges.lock()
    survivor = await uow.merges.survivor_of(survivor_id)
    if survivor == duplicate_id:
        return  # a merge back into its own duplicate: never made, and it would be a cycle
    await uow.merges.record(duplicate_id, survivor)
