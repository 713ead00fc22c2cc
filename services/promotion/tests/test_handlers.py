"""Promotion use cases on in-memory fakes of our own repositories (no sockets)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from pos_kit.errors import Conflict, InvalidArgument, NotFound
from pos_kit.paging import PageRequest
from pos_promotion.adapters.codes import CodeHasher
from pos_promotion.domain.coupons import (
    Coupon,
    CouponRedeemed,
    CouponRefused,
    CouponReleased,
    CouponStatus,
    Reservation,
)
from pos_promotion.domain.model import (
    CartLineInput,
    MoneyInput,
    Promotion,
    PromotionCreated,
    PromotionEnded,
    PromotionUpdated,
    Status,
    new_cart,
)
from pos_promotion.domain.rules import Conditions, Kind, Level, Offer, Rule
from pos_promotion.service import handlers

HASH = CodeHasher("test-key")
NOW = datetime(2026, 12, 1, tzinfo=UTC)


class FakePromotions:
    def __init__(self) -> None:
        self.rows: dict[str, Promotion] = {}

    async def add(self, promotion: Promotion) -> None:
        self.rows[promotion.id] = replace(promotion)

    async def get(self, promotion_id: str, lock: bool = False) -> Promotion | None:
        found = self.rows.get(promotion_id)
        return replace(found) if found else None

    async def save(self, promotion: Promotion, seen_version: int) -> bool:
        if self.rows[promotion.id].version != seen_version:
            return False
        self.rows[promotion.id] = replace(promotion)
        return True

    async def remove(self, promotion_id: str) -> None:
        del self.rows[promotion_id]

    async def mark_used(self, promotion_ids: set[str]) -> set[str]:
        marked = {pid for pid in promotion_ids if not self.rows[pid].used}
        for pid in marked:
            self.rows[pid].used = True
            self.rows[pid].version += 1
        return marked

    async def active(self) -> list[Promotion]:
        return [replace(p) for p in self.rows.values() if p.status is Status.ACTIVE]

    async def live(self) -> list[Promotion]:
        return [replace(p) for _, p in sorted(self.rows.items()) if p.status is not Status.ENDED]

    async def list(self, page: PageRequest, status: Status | None = None) -> list[Promotion]:
        kept = [p for p in self.rows.values() if status is None or p.status is status]
        return sorted(kept, key=lambda p: p.id)[: page.fetch]


class FakeCoupons:
    def __init__(self) -> None:
        self.rows: dict[bytes, Coupon] = {}
        self.held: list[Reservation] = []

    async def add(self, coupon: Coupon, code_hash: bytes) -> bool:
        if code_hash in self.rows:
            return False
        self.rows[code_hash] = replace(coupon, code="")
        return True

    async def by_hashes(self, hashes: list[bytes], lock: bool = False) -> dict[bytes, Coupon]:
        return {h: replace(self.rows[h]) for h in hashes if h in self.rows}

    async def by_ids(self, coupon_ids: list[str], lock: bool = False) -> dict[str, Coupon]:
        return {c.id: replace(c) for c in self.rows.values() if c.id in coupon_ids}

    async def get(self, coupon_id: str, lock: bool = False) -> Coupon | None:
        found = [replace(c) for c in self.rows.values() if c.id == coupon_id]
        return found[0] if found else None

    async def save_status(self, coupon: Coupon) -> None:
        await self.count(coupon)

    async def of_promotion(
        self, promotion_id: str, page: PageRequest, status: CouponStatus | None = None
    ) -> list[Coupon]:
        return [
            replace(c)
            for c in self.rows.values()
            if c.promotion_id == promotion_id and (status is None or c.status is status)
        ]

    async def count(self, coupon: Coupon) -> None:
        for h, c in self.rows.items():
            if c.id == coupon.id:
                self.rows[h] = replace(coupon, code="")

    async def lock_order(self, order_id: str) -> None:
        pass  # one task at a time here

    async def reservations(self, order_id: str) -> list[Reservation]:
        return [replace(r) for r in self.held if r.order_id == order_id]

    async def uses_by(self, coupon_id: str, customer_id: str) -> int:
        return sum(
            1
            for r in self.held
            if (r.coupon_id, r.customer_id) == (coupon_id, customer_id)
            and r.status in ("reserved", "redeemed")
        )

    async def save_reservation(self, r: Reservation) -> None:
        self.held.append(replace(r))

    async def set_status(self, r: Reservation) -> None:
        for held in self.held:
            if (held.order_id, held.coupon_id) == (r.order_id, r.coupon_id):
                held.status = r.status


class FakeRetiredGroups:
    def __init__(self) -> None:
        self.rows: set[tuple[str, str]] = set()

    async def lock(self, group_ids: set[str]) -> None:
        pass  # one task at a time here

    async def retired(self, group_ids: set[str]) -> set[str]:
        return {g for g, _ in self.rows if g in group_ids}

    async def retire(self, group_id: str, retirement_id: str) -> None:
        self.rows.add((group_id, retirement_id))

    async def reinstate(self, group_id: str, retirement_id: str) -> None:
        self.rows.discard((group_id, retirement_id))


class FakeUow:
    merchant_id = "mer_a"

    def __init__(self) -> None:
        self.promotions = FakePromotions()
        self.coupons = FakeCoupons()
        self.retired_groups = FakeRetiredGroups()
        self.published: list[object] = []

    def publish(self, event: object) -> None:
        self.published.append(event)


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


TEN = Offer("promo_1", "Ten", Rule(Kind.PERCENT_OFF, percent_bps=1000))
FIVE_OFF = Offer(
    "promo_2",
    "Five off",
    Rule(Kind.AMOUNT_OFF, Level.ORDER, amount=500),
    Conditions(min_amount=2000),
    currency="USD",
    requires_coupon=True,
)


def cart(cents: int) -> object:
    return new_cart([CartLineInput("X", 1, MoneyInput(cents, "USD"))], "USD")


def test_a_group_is_retired_only_while_no_live_promotion_names_it() -> None:
    """A retirement is refused with the ids of the promotions not ended that name the group
    (nothing written); ended ones do not count. Once retired, a promotion made or changed to
    name the group is a 404 naming its place in conditions.customer_groups."""
    uow = FakeUow()
    staff = Conditions(customer_groups=frozenset({"cgrp_staff"}))
    run(handlers.create_promotion(uow, replace(TEN, conditions=staff)))
    run(handlers.create_promotion(uow, replace(TEN, id="promo_ended", conditions=staff)))
    run(handlers.change_status(uow, "promo_ended", 0, Status.ENDED))
    assert run(handlers.retire_group(uow, "cgrp_staff", "ret_1")) == ["promo_1"]
    assert not uow.retired_groups.rows
    run(handlers.change_status(uow, "promo_1", 0, Status.PAUSED))  # paused is not ended
    assert run(handlers.retire_group(uow, "cgrp_staff", "ret_1")) == ["promo_1"]
    run(handlers.update_promotion(uow, "promo_1", 0, ["conditions"], TEN, []))
    assert run(handlers.retire_group(uow, "cgrp_staff", "ret_2")) == []

    both = Conditions(customer_groups=frozenset({"cgrp_vip", "cgrp_staff"}))
    with pytest.raises(NotFound) as made:
        run(handlers.create_promotion(uow, replace(TEN, id="promo_3", conditions=both),
                                      groups_sent=["cgrp_vip", "cgrp_staff"]))  # fmt: skip
    assert [v.field for v in made.value.violations] == ["conditions.customer_groups[1]"]
    with pytest.raises(NotFound):
        run(handlers.update_promotion(uow, "promo_1", 0, ["conditions"],
                                      replace(TEN, conditions=staff), []))  # fmt: skip
    assert "promo_3" not in uow.promotions.rows
    assert uow.promotions.rows["promo_1"].offer.conditions.customer_groups == frozenset()
    run(handlers.update_promotion(uow, "promo_1", 0, ["name"], replace(TEN, name="Eleven"), []))


def test_a_group_stays_retired_while_another_retirement_of_it_stands() -> None:
    """Two deletions at once each retire the group; the one refused after all (a stale
    If-Match) undoes only its own, so the group that the other deleted stays unnameable."""
    uow = FakeUow()
    run(handlers.retire_group(uow, "cgrp_staff", "ret_1"))
    run(handlers.retire_group(uow, "cgrp_staff", "ret_2"))
    run(handlers.reinstate_group(uow, "cgrp_staff", "ret_2"))
    staff = Conditions(customer_groups=frozenset({"cgrp_staff"}))
    with pytest.raises(NotFound):
        run(handlers.create_promotion(uow, replace(TEN, conditions=staff)))
    run(handlers.reinstate_group(uow, "cgrp_staff", "ret_1"))
    run(handlers.create_promotion(uow, replace(TEN, conditions=staff)))


def test_create_stores_and_announces_and_a_bad_offer_does_neither() -> None:
    uow = FakeUow()
    made = run(handlers.create_promotion(uow, TEN))
    assert isinstance(made, Promotion) and uow.promotions.rows["promo_1"].name == "Ten"
    assert [type(e) for e in uow.published] == [PromotionCreated]
    with pytest.raises(InvalidArgument):
        run(handlers.create_promotion(uow, replace(TEN, id="promo_x", name=" ")))
    assert list(uow.promotions.rows) == ["promo_1"] and len(uow.published) == 1


def test_a_stale_version_changes_nothing_and_a_repeated_pause_announces_once() -> None:
    uow = FakeUow()
    run(handlers.create_promotion(uow, TEN))
    with pytest.raises(Conflict) as err:
        run(handlers.change_status(uow, "promo_1", 7, Status.PAUSED))
    assert err.value.code == "version_mismatch"
    run(handlers.change_status(uow, "promo_1", 1, Status.PAUSED))
    run(handlers.change_status(uow, "promo_1", 0, Status.PAUSED))
    assert [type(e) for e in uow.published] == [PromotionCreated, PromotionUpdated]
    run(handlers.change_status(uow, "promo_1", 0, Status.ENDED))
    assert type(uow.published[-1]) is PromotionEnded
    assert uow.promotions.rows["promo_1"].ended_at is not None
    with pytest.raises(NotFound):
        run(handlers.change_status(uow, "promo_missing", 0, Status.ENDED))


def test_update_changes_only_the_masked_fields() -> None:
    uow = FakeUow()
    run(handlers.create_promotion(uow, TEN))
    changes = replace(TEN, name="Renamed", priority=9)
    updated = run(handlers.update_promotion(uow, "promo_1", 1, ["name"], changes, []))
    assert isinstance(updated, Promotion)
    assert (updated.name, updated.offer.priority, updated.version) == ("Renamed", 0, 2)
    with pytest.raises(InvalidArgument):
        run(handlers.update_promotion(uow, "promo_1", 2, ["status"], changes, []))


def test_reserving_is_all_or_nothing_and_a_used_promotion_cannot_be_deleted() -> None:
    uow = FakeUow()
    run(handlers.create_promotion(uow, FIVE_OFF))
    run(handlers.create_coupons(uow, HASH, "promo_2", ["SAVE5"], 0, 1, 0, None))
    with pytest.raises(CouponRefused) as err:
        run(handlers.reserve_coupons(uow, HASH, "ord_1", ["save5", "nope-1"], "cus_1", None, NOW))
    assert (err.value.code, err.value.metadata) == ("coupon_unknown", {"code_index": "1"})
    # The code at fault is a field error of the request, as any other refusal names its field.
    assert [(v.field, v.description) for v in err.value.violations] == [
        ("codes[1]", "no such coupon code")
    ]
    assert uow.coupons.held == [] and not uow.promotions.rows["promo_2"].used
    run(handlers.reserve_coupons(uow, HASH, "ord_1", ["save5"], "cus_1", None, NOW))
    with pytest.raises(CouponRefused) as err:
        run(handlers.reserve_coupons(uow, HASH, "ord_2", ["SAVE5"], "cus_2", None, NOW))
    assert err.value.code == "coupon_exhausted"
    with pytest.raises(Conflict) as used:
        run(handlers.delete_promotion(uow, "promo_2"))
    assert used.value.code == "promotion_used"
    run(handlers.redeem_coupons(uow, "ord_1"))
    assert [type(e) for e in uow.published][-1] is CouponRedeemed


def test_a_redeemed_use_released_comes_off_the_count_once() -> None:
    """Its order cancelled after confirmation: the use is given back (and the customer's too),
    announced once; asked again it changes nothing, and it is never redeemed again."""
    uow = FakeUow()
    run(handlers.create_promotion(uow, FIVE_OFF))
    run(handlers.create_coupons(uow, HASH, "promo_2", ["ONCE"], 0, 1, 1, None))
    run(handlers.reserve_coupons(uow, HASH, "ord_1", ["once"], "cus_1", None, NOW))
    run(handlers.redeem_coupons(uow, "ord_1"))
    for _ in range(2):
        [(r, c)] = run(handlers.release_coupons(uow, "ord_1"))  # type: ignore[misc]
        assert (r.status, c.redeemed_count, c.reserved_count) == ("released", 0, 0)
    assert [type(e) for e in uow.published][-2:] == [CouponRedeemed, CouponReleased]
    with pytest.raises(Conflict) as err:
        run(handlers.redeem_coupons(uow, "ord_1"))
    assert err.value.code == "coupons_already_released"
    run(handlers.reserve_coupons(uow, HASH, "ord_2", ["ONCE"], "cus_1", None, NOW))


def test_an_expired_coupon_is_refused_at_checkout_and_a_reason_in_a_preview() -> None:
    uow = FakeUow()
    run(handlers.create_promotion(uow, FIVE_OFF))
    yesterday = NOW - timedelta(days=1)
    made_before = NOW - timedelta(days=2)
    run(handlers.create_coupons(uow, HASH, "promo_2", ["OLD-1"], 0, 0, 0, yesterday, made_before))
    with pytest.raises(CouponRefused) as err:
        run(handlers.reserve_coupons(uow, HASH, "ord_1", ["old-1"], "", None, NOW))
    assert err.value.code == "coupon_expired"

    class Active:
        async def active(self, merchant_id: str) -> list[Promotion]:
            return list(uow.promotions.rows.values())

    class Lookup:
        reads = 0

        async def coupons(self, merchant_id: str, hashes: list[bytes]) -> dict[bytes, Coupon]:
            Lookup.reads += 1
            return await uow.coupons.by_hashes(hashes)

        async def uses_by(self, merchant_id: str, coupon_id: str, customer_id: str) -> int:
            return await uow.coupons.uses_by(coupon_id, customer_id)

    preview = new_cart(
        [CartLineInput("X", 1, MoneyInput(3000, "USD"))],
        "USD",
    )
    priced, refused = run(  # type: ignore[misc]
        handlers.calculate_discounts(Active(), Lookup(), HASH, "mer_a", preview, ["old-1", "zz-9"])
    )
    assert priced.total_discount == 0
    assert [(c, r.value) for c, r in refused] == [
        ("old-1", "coupon_expired"),
        ("zz-9", "coupon_unknown"),
    ]
    run(handlers.calculate_discounts(Active(), Lookup(), HASH, "mer_a", preview, []))
    assert Lookup.reads == 1  # no code, no coupon read


def test_a_preview_refuses_a_coupon_the_customer_has_used_up_as_the_sale_would() -> None:
    """One use per customer: after the customer's first order the quote names the reason
    (`coupon_customer_limit`) and gives no discount; another customer still gets it."""
    uow = FakeUow()
    run(handlers.create_promotion(uow, FIVE_OFF))
    run(handlers.create_coupons(uow, HASH, "promo_2", ["ONCE-1"], 0, 0, 1, None))

    class Active:
        async def active(self, merchant_id: str) -> list[Promotion]:
            return list(uow.promotions.rows.values())

    class Lookup:
        async def coupons(self, merchant_id: str, hashes: list[bytes]) -> dict[bytes, Coupon]:
            return await uow.coupons.by_hashes(hashes)

        async def uses_by(self, merchant_id: str, coupon_id: str, customer_id: str) -> int:
            return await uow.coupons.uses_by(coupon_id, customer_id)

    cart = new_cart([CartLineInput("X", 1, MoneyInput(3000, "USD"))], "USD")

    def quote(customer_id: str) -> tuple[int, list[str]]:
        priced, refused = run(  # type: ignore[misc]
            handlers.calculate_discounts(
                Active(), Lookup(), HASH, "mer_a", cart, ["once-1"], customer_id
            )
        )
        return priced.total_discount, [r.value for _, r in refused]

    assert quote("cus_1") == (500, [])
    run(handlers.reserve_coupons(uow, HASH, "ord_1", ["ONCE-1"], "cus_1", None, NOW))
    assert quote("cus_1") == (0, ["coupon_customer_limit"])
    with pytest.raises(CouponRefused) as err:
        run(handlers.reserve_coupons(uow, HASH, "ord_2", ["ONCE-1"], "cus_1", None, NOW))
    assert err.value.code == "coupon_customer_limit"
    assert quote("cus_2") == (500, [])


class Active:
    def __init__(self, uow: FakeUow) -> None:
        self.uow = uow

    async def active(self, merchant_id: str) -> list[Promotion]:
        return list(self.uow.promotions.rows.values())


class Lookup:
    def __init__(self, uow: FakeUow) -> None:
        self.uow = uow

    async def coupons(self, merchant_id: str, hashes: list[bytes]) -> dict[bytes, Coupon]:
        return await self.uow.coupons.by_hashes(hashes)

    async def uses_by(self, merchant_id: str, coupon_id: str, customer_id: str) -> int:
        return await self.uow.coupons.uses_by(coupon_id, customer_id)


def preview(uow: FakeUow, codes: list[str], customer_id: str = "") -> tuple[int, list[str]]:
    priced, refused = run(  # type: ignore[misc]
        handlers.calculate_discounts(
            Active(uow), Lookup(uow), HASH, "mer_a", cart(3000), codes, customer_id
        )
    )
    return priced.total_discount, [f"{c}:{r.value}" for c, r in refused]


def test_a_second_code_of_the_same_promotion_is_not_applicable_and_not_used_up() -> None:
    """The offer applies once: the second code would spend a use for nothing."""
    uow = FakeUow()
    run(handlers.create_promotion(uow, FIVE_OFF))
    run(handlers.create_coupons(uow, HASH, "promo_2", ["SU-111", "SU-222"], 0, 1, 0, None))
    assert preview(uow, ["su-111", "su-222"]) == (500, ["su-222:coupon_not_applicable"])
    with pytest.raises(CouponRefused) as err:
        run(
            handlers.reserve_coupons(
                uow,
                HASH,
                "ord_1",
                ["su-111", "su-222"],
                "",
                cart(3000),
                NOW,  # type: ignore[arg-type]
            )
        )
    assert (err.value.code, err.value.metadata) == ("coupon_not_applicable", {"code_index": "1"})
    assert uow.coupons.held == [] and not uow.promotions.rows["promo_2"].used
    run(handlers.reserve_coupons(uow, HASH, "ord_1", ["su-111"], "", cart(3000), NOW))  # type: ignore[arg-type]
    assert [c.reserved_count for c in uow.coupons.rows.values()] == [1, 0]


def test_an_edit_of_the_rule_or_the_conditions_alone_keeps_the_other_in_its_currency() -> None:
    """The part not sent keeps its amounts as they were; a sent amount in another currency is
    a 400 on the sent field, never a silent change of the kept one."""
    uow = FakeUow()
    amount = Offer("promo_a", "Two off", Rule(Kind.AMOUNT_OFF, amount=200), currency="USD")
    run(handlers.create_promotion(uow, amount))
    web = replace(amount, conditions=Conditions(channels=frozenset({"web"})), currency="")
    edited = run(handlers.update_promotion(uow, "promo_a", 0, ["conditions"], web, []))
    assert isinstance(edited, Promotion) and edited.offer.currency == "USD"
    eur = replace(amount, conditions=Conditions(min_amount=100), currency="EUR")
    with pytest.raises(InvalidArgument) as err:
        run(handlers.update_promotion(uow, "promo_a", 0, ["conditions"], eur, []))
    assert [v.field for v in err.value.violations] == ["conditions.min_amount.currency"]
    assert uow.promotions.rows["promo_a"].offer.currency == "USD"

    spend = Offer("promo_b", "Spend", TEN.rule, Conditions(min_amount=2000), currency="USD")
    run(handlers.create_promotion(uow, spend))
    deeper = replace(spend, rule=Rule(Kind.PERCENT_OFF, percent_bps=2000), currency="")
    edited = run(handlers.update_promotion(uow, "promo_b", 0, ["rule"], deeper, []))
    assert isinstance(edited, Promotion) and edited.offer.currency == "USD"
    gbp = replace(spend, rule=Rule(Kind.AMOUNT_OFF, amount=300), currency="GBP")
    with pytest.raises(InvalidArgument) as err:
        run(handlers.update_promotion(uow, "promo_b", 0, ["rule"], gbp, []))
    assert [v.field for v in err.value.violations] == ["rule.amount.currency"]


def test_a_code_limited_per_customer_needs_a_customer() -> None:
    """Anonymous sales cannot be counted per customer, so they would use it without end."""
    uow = FakeUow()
    run(handlers.create_promotion(uow, FIVE_OFF))
    run(handlers.create_coupons(uow, HASH, "promo_2", ["ONE-PER-CUST"], 0, 0, 1, None))
    assert preview(uow, ["one-per-cust"]) == (0, ["one-per-cust:coupon_customer_required"])
    with pytest.raises(CouponRefused) as err:
        run(handlers.reserve_coupons(uow, HASH, "ord_1", ["one-per-cust"], "", None, NOW))
    assert err.value.code == "coupon_customer_required" and "customer_id" in err.value.message
    assert uow.coupons.held == []
    assert preview(uow, ["one-per-cust"], "cus_1") == (500, [])


def test_the_first_use_of_a_promotion_is_a_new_version_announced_once() -> None:
    """`used` is part of the promotion as GET shows it: it changes with the version (and the
    ETag), and partners hear of it; later uses change nothing."""
    uow = FakeUow()
    run(handlers.create_promotion(uow, FIVE_OFF))
    run(handlers.create_coupons(uow, HASH, "promo_2", ["USE-A", "USE-B"], 0, 0, 0, None))
    run(handlers.reserve_coupons(uow, HASH, "ord_1", ["use-a"], "", None, NOW))
    assert (uow.promotions.rows["promo_2"].used, uow.promotions.rows["promo_2"].version) == (
        True,
        2,
    )
    announced = uow.published[-1]
    assert isinstance(announced, PromotionUpdated) and announced.promotion.used
    assert announced.promotion.version == 2
    count = len(uow.published)
    run(handlers.reserve_coupons(uow, HASH, "ord_2", ["use-b"], "", None, NOW))
    assert uow.promotions.rows["promo_2"].version == 2 and len(uow.published) == count


def test_contradictory_or_impossible_input_is_a_400_naming_the_field() -> None:
    """Nothing given is dropped without a word: a field the rule's kind does not use, a
    channel no sale can name, coupons expired before they exist."""
    uow = FakeUow()
    foreign = replace(TEN, rule=Rule(Kind.AMOUNT_OFF, amount=500, percent_bps=500), currency="USD")
    with pytest.raises(InvalidArgument) as err:
        run(handlers.create_promotion(uow, foreign))
    assert [v.field for v in err.value.violations] == ["rule.percent_bps"]
    odd = replace(TEN, conditions=Conditions(channels=frozenset({"web", "Web Shop"})))
    with pytest.raises(InvalidArgument) as err:
        run(handlers.create_promotion(uow, odd))
    assert [v.field for v in err.value.violations] == ["conditions.channels"]
    # Free-form names, as the order service takes them: an offer for a channel of your own.
    run(
        handlers.create_promotion(
            uow, replace(TEN, conditions=Conditions(channels=frozenset({"bogus"})))
        )
    )
    run(handlers.create_promotion(uow, replace(FIVE_OFF, id="promo_c")))
    with pytest.raises(InvalidArgument) as err:
        run(handlers.create_coupons(uow, HASH, "promo_c", ["LATE-1"], 0, 0, 0, NOW, NOW))
    assert [v.field for v in err.value.violations] == ["expires_at"]
    assert uow.coupons.rows == {}


def test_a_coupon_the_automatic_offers_leave_nothing_to_is_not_reserved() -> None:
    """The reservation prices the cart as the preview does: with the automatic offers. A
    non-stackable automatic offer of higher priority wins the order level, so the coupon's
    5.00 gives nothing: the preview says so and the reservation refuses it rather than spend a
    use on it. Priced with the coupon's offers alone it was reserved."""
    uow = FakeUow()
    run(handlers.create_promotion(uow, replace(FIVE_OFF, stackable=False)))
    automatic = Offer(
        "promo_3", "Eight off", Rule(Kind.AMOUNT_OFF, Level.ORDER, amount=800), currency="USD"
    )
    run(handlers.create_promotion(uow, replace(automatic, stackable=False, priority=5)))
    run(handlers.create_coupons(uow, HASH, "promo_2", ["SAVE5"], 0, 10, 0, None))
    assert preview(uow, ["save5"]) == (800, ["save5:coupon_not_applicable"])
    with pytest.raises(CouponRefused) as err:
        run(handlers.reserve_coupons(uow, HASH, "ord_1", ["save5"], "", cart(3000), NOW))  # type: ignore[arg-type]
    assert (err.value.code, err.value.metadata) == ("coupon_not_applicable", {"code_index": "0"})
    assert uow.coupons.held == [] and not uow.promotions.rows["promo_2"].used
    # An exclusive automatic offer that gives more than the coupon's stack: the same.
    uow.promotions.rows["promo_3"] = replace(
        uow.promotions.rows["promo_3"],
        offer=Offer("promo_3", "Half", Rule(Kind.PERCENT_OFF, percent_bps=5000), exclusive=True),
    )
    uow.promotions.rows["promo_2"].offer = replace(FIVE_OFF)
    assert preview(uow, ["save5"]) == (1500, ["save5:coupon_not_applicable"])
    with pytest.raises(CouponRefused):
        run(handlers.reserve_coupons(uow, HASH, "ord_1", ["save5"], "", cart(3000), NOW))  # type: ignore[arg-type]
    # Paused, the automatic offer is out of both: the coupon applies and is reserved.
    uow.promotions.rows["promo_3"].status = Status.PAUSED
    assert preview(uow, ["save5"]) == (500, [])
    run(handlers.reserve_coupons(uow, HASH, "ord_1", ["save5"], "", cart(3000), NOW))  # type: ignore[arg-type]
    assert [c.reserved_count for c in uow.coupons.rows.values()] == [1]


def test_a_code_of_an_offer_that_no_longer_needs_one_is_not_used_up() -> None:
    """An offer edited to apply without a coupon gives the cart its discount whoever names a
    code: the code adds nothing, so it is not applicable rather than a spent use (which, once
    the uses ran out, refused a sale the offer applied to anyway)."""
    uow = FakeUow()
    run(handlers.create_promotion(uow, FIVE_OFF))
    run(handlers.create_coupons(uow, HASH, "promo_2", ["WAS-CODE"], 0, 1, 0, None))
    changes = replace(FIVE_OFF, requires_coupon=False)
    run(handlers.update_promotion(uow, "promo_2", 1, ["requires_coupon"], changes, []))
    assert preview(uow, []) == (500, [])
    assert preview(uow, ["was-code"]) == (500, ["was-code:coupon_not_applicable"])
    with pytest.raises(CouponRefused) as err:
        run(handlers.reserve_coupons(uow, HASH, "ord_1", ["was-code"], "", cart(3000), NOW))  # type: ignore[arg-type]
    assert err.value.code == "coupon_not_applicable"
    assert uow.coupons.held == [] and not uow.promotions.rows["promo_2"].used


def test_a_deactivated_code_no_longer_reserves_but_a_use_reserved_before_redeems() -> None:
    """A code that leaked is deactivated on its own: new sales are refused
    (`coupon_deactivated`, naming its place; a reason in a preview), the promotion and its other
    codes go on, and an order that reserved it before still redeems its use, as after the
    promotion ends. Deactivating it again changes nothing."""
    uow = FakeUow()
    run(handlers.create_promotion(uow, FIVE_OFF))
    leaked, kept = run(  # type: ignore[misc]
        handlers.create_coupons(uow, HASH, "promo_2", ["LEAKED-1", "KEPT-1"], 0, 0, 0, None)
    )
    run(handlers.reserve_coupons(uow, HASH, "ord_1", ["leaked-1"], "", None, NOW))
    done = run(handlers.deactivate_coupon(uow, "promo_2", leaked.id, NOW))
    assert isinstance(done, Coupon)
    assert (done.status, done.deactivated_at) == (CouponStatus.DEACTIVATED, NOW)
    again = run(handlers.deactivate_coupon(uow, "promo_2", leaked.id, NOW + timedelta(hours=1)))
    assert isinstance(again, Coupon) and again.deactivated_at == NOW
    with pytest.raises(CouponRefused) as err:
        run(handlers.reserve_coupons(uow, HASH, "ord_2", ["kept-1", "leaked-1"], "", None, NOW))
    assert (err.value.code, err.value.metadata) == ("coupon_deactivated", {"code_index": "1"})
    assert err.value.message.startswith("codes[1]: ")
    assert preview(uow, ["leaked-1"]) == (0, ["leaked-1:coupon_deactivated"])
    assert preview(uow, ["kept-1"]) == (500, [])
    [(r, c)] = run(handlers.redeem_coupons(uow, "ord_1"))  # type: ignore[misc]
    assert (r.status, c.redeemed_count, c.status) == ("redeemed", 1, CouponStatus.DEACTIVATED)
    run(handlers.reserve_coupons(uow, HASH, "ord_3", ["kept-1"], "", None, NOW))
    listed = run(handlers.list_coupons(uow, "promo_2", PageRequest(50), CouponStatus.ACTIVE))
    assert [c.id for c in listed] == [kept.id]  # type: ignore[attr-defined]


def test_a_coupon_is_found_only_through_its_own_promotion() -> None:
    uow = FakeUow()
    run(handlers.create_promotion(uow, FIVE_OFF))
    run(handlers.create_promotion(uow, replace(FIVE_OFF, id="promo_3")))
    [coupon] = run(  # type: ignore[misc]
        handlers.create_coupons(uow, HASH, "promo_2", ["MINE-1"], 0, 0, 0, None)
    )
    found = run(handlers.get_coupon(uow, "promo_2", coupon.id))
    assert isinstance(found, Coupon) and found.status is CouponStatus.ACTIVE
    for promotion_id, coupon_id in (("promo_3", coupon.id), ("promo_2", "cpn_missing")):
        with pytest.raises(NotFound):
            run(handlers.get_coupon(uow, promotion_id, coupon_id))
        with pytest.raises(NotFound):
            run(handlers.deactivate_coupon(uow, promotion_id, coupon_id))
    assert uow.coupons.rows[HASH("mer_a", "MINE-1")].status is CouponStatus.ACTIVE
