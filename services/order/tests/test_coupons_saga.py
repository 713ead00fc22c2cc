"""Coupons in the checkout saga, on in-memory fakes: a coupon that cannot apply stops the sale
(nothing saved, nothing charged); one that applies is reserved under a request id derived from
the order before the card is charged, redeemed when the sale is confirmed, and given back when
it is declined, cancelled (before or after its confirmation) or abandoned (the resumer's
compensation included); a redemption the promotion service could not take is asked again by the
resumer."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from fakes import FakePayments, Store, uow_factory
from test_checkout import Answer, Shop, _cmd

from pos_kit.errors import Conflict, Unavailable
from pos_kit.idempotency import Claim
from pos_kit.money import Money
from pos_order.domain.coupons import CouponStep, CouponUse
from pos_order.domain.model import OrderLine, OrderStatus
from pos_order.service import saga
from pos_order.service.handlers import checkout
from pos_order.service.ports import (
    CartContext,
    CheckoutCommand,
    CheckoutPorts,
    DiscountQuote,
    RejectedCoupon,
)
from pos_order.service.saga import Policy


@dataclass
class CouponDiscount:
    """10.00 off with the code SAVE10; any other code is unknown."""

    asked: list[CartContext | None] = field(default_factory=list)

    async def quote(
        self, lines: list[OrderLine], currency: str, cart: CartContext | None = None
    ) -> DiscountQuote:
        self.asked.append(cart)
        codes = cart.coupon_codes if cart else ()
        rejected = tuple(
            RejectedCoupon(i, "coupon_unknown", "no such coupon")
            for i, c in enumerate(codes)
            if c.upper() != "SAVE10"
        )
        off = 1000 if "SAVE10" in [c.upper() for c in codes] else 0
        return DiscountQuote(Money(off, currency), True, rejected)


@dataclass
class FakeCoupons:
    """The promotion service's reservations: `uses` left in all; keyed by the order."""

    uses: int = 1
    down: bool = False
    reserved: dict[str, str] = field(default_factory=dict)  # order -> reserved|redeemed|released
    requests: list[str] = field(default_factory=list)

    async def reserve(
        self, request_id: str, order_id: str, lines: list[OrderLine], currency: str,
        cart: CartContext,
    ) -> list[CouponUse]:  # fmt: skip
        self.requests.append(request_id)
        if self.down:
            raise Unavailable("the promotion service is unavailable", "promotion_unavailable")
        if order_id not in self.reserved:
            live = sum(1 for s in self.reserved.values() if s != "released")
            if live >= self.uses:
                raise Conflict("codes[0]: no uses left", "coupon_exhausted", {"code_index": "0"})
            self.reserved[order_id] = "reserved"
        return [CouponUse("cpn_1", "prm_1", "VE10")]

    async def redeem(self, request_id: str, order_id: str) -> None:
        self.requests.append(request_id)
        if self.down:
            raise Unavailable("the promotion service is unavailable", "promotion_unavailable")
        self.reserved[order_id] = "redeemed"

    async def release(self, request_id: str, order_id: str) -> None:
        self.requests.append(request_id)
        if self.down:
            raise Unavailable("the promotion service is unavailable", "promotion_unavailable")
        # As the promotion service: a reserved use, or a redeemed one (the order cancelled
        # after its confirmation), comes back; once released it stays so.
        if self.reserved.get(order_id) in ("reserved", "redeemed"):
            self.reserved[order_id] = "released"


@dataclass
class CouponShop(Shop):
    coupons: FakeCoupons = field(default_factory=FakeCoupons)
    coupon_discount: CouponDiscount = field(default_factory=CouponDiscount)

    @property
    def ports(self) -> CheckoutPorts:
        return CheckoutPorts(self.catalog, self.coupon_discount, self.payments, self.customers,
                             coupons=self.coupons)  # fmt: skip


async def _checkout(shop: CouponShop, cmd: CheckoutCommand) -> Answer:
    new_uow = uow_factory(shop.store, "mer_a")
    steps = checkout.Checkout(cmd, shop.ports, new_uow, Policy(), Answer)
    async with new_uow() as uow:
        started = await steps.read(uow)
        await uow.commit()
    sale = await steps.call(Claim("mer_a", cmd.request_id, datetime.now(UTC)), started)
    async with new_uow() as uow:
        answer = await steps.record(uow, sale)
        await uow.commit()  # as the kit does after storing the answer
        return answer


async def test_a_coupon_is_reserved_before_the_charge_and_redeemed_on_confirmation() -> None:
    shop = CouponShop()
    answer = await _checkout(shop, _cmd(coupon_codes=("save10",)))
    order = answer.order
    assert order.status is OrderStatus.COMPLETED
    assert order.totals.discount == Money(1000, "USD")
    assert shop.coupon_discount.asked[0] == CartContext("loc_1", "register", "cus_1", ("save10",))
    assert shop.coupons.requests == [f"{order.id}/coupons/reserve", f"{order.id}/coupons/redeem"]
    assert shop.coupons.reserved == {order.id: "redeemed"}
    assert order.saga.coupons.step is CouponStep.REDEEMED
    assert order.saga.coupons.uses == [CouponUse("cpn_1", "prm_1", "VE10")]
    # The code itself is kept nowhere in the order.
    assert "SAVE10" not in repr(order).upper()


async def test_a_coupon_that_does_not_apply_is_a_conflict_and_nothing_is_sold() -> None:
    shop = CouponShop()
    with pytest.raises(Conflict) as err:
        await _checkout(shop, _cmd(coupon_codes=("SAVE10", "NOPE-1")))
    assert err.value.code == "coupon_unknown"
    assert err.value.metadata == {"code_index": "1"}
    assert [(v.field, v.description) for v in err.value.violations] == [
        ("coupon_codes[1]", "no such coupon")
    ]
    assert shop.saved == {} and shop.payments.charges == [] and shop.coupons.requests == []


async def test_an_exhausted_coupon_drops_the_order_before_any_charge() -> None:
    shop = CouponShop(coupons=FakeCoupons(uses=1))
    first = await _checkout(shop, _cmd(request_id="req-1", coupon_codes=("SAVE10",)))
    with pytest.raises(Conflict) as err:
        await _checkout(shop, _cmd(request_id="req-2", coupon_codes=("SAVE10",)))
    assert err.value.code == "coupon_exhausted"
    assert list(shop.saved.values()) == [first.order]  # the refused sale left nothing
    assert len(shop.payments.charges) == 1


async def test_a_declined_card_gives_the_coupon_back() -> None:
    shop = CouponShop(payments=FakePayments(approve=False))
    order = (await _checkout(shop, _cmd(coupon_codes=("SAVE10",)))).order
    assert order.status is OrderStatus.CANCELLED
    assert shop.coupons.reserved == {order.id: "released"}
    assert order.saga.coupons.step is CouponStep.RELEASED


async def test_promotion_down_at_reservation_is_a_503_and_the_resumer_gives_it_back() -> None:
    shop = CouponShop(coupons=FakeCoupons(down=True))
    with pytest.raises(Unavailable):
        await _checkout(shop, _cmd(coupon_codes=("SAVE10",)))
    (order,) = shop.saved.values()
    assert order.saga.coupons.step is CouponStep.SENT
    assert shop.payments.charges == []  # nothing charged while the coupon is not reserved
    # Abandoned: the resumer compensates; while promotion is down it cannot finish.
    new_uow = uow_factory(shop.store)
    with pytest.raises(Unavailable):
        await saga.resume(new_uow, shop.ports, order.id, Policy())
    shop.coupons.down = False
    done = await saga.resume(new_uow, shop.ports, order.id, Policy())
    assert done.status is OrderStatus.CANCELLED
    assert done.saga.coupons.step is CouponStep.RELEASED
    assert shop.coupons.requests[-1] == f"{order.id}/coupons/release"


async def test_a_redemption_promotion_could_not_take_is_asked_again_by_the_resumer() -> None:
    shop = CouponShop()

    class DownAtRedeem(FakeCoupons):
        async def redeem(self, request_id: str, order_id: str) -> None:
            self.requests.append(request_id)
            raise Unavailable("the promotion service is unavailable", "promotion_unavailable")

    shop.coupons = DownAtRedeem()
    order = (await _checkout(shop, _cmd(coupon_codes=("SAVE10",)))).order
    assert order.status is OrderStatus.COMPLETED  # the sale stands
    assert order.saga.coupons.step is CouponStep.RESERVED and order.coupons_due
    back = FakeCoupons(reserved=dict(shop.coupons.reserved))
    shop.coupons = back
    resumed = await saga.resume(uow_factory(shop.store), shop.ports, order.id, Policy())
    assert resumed.saga.coupons.step is CouponStep.REDEEMED and not resumed.coupons_due
    assert back.reserved == {order.id: "redeemed"}


async def test_a_cancelled_order_whose_coupon_was_redeemed_gives_it_back_once() -> None:
    """A confirmed order cancelled: its redeemed coupon is due to be released (the order's
    cancellation asks it; failing that the resumer does), under the order's release id, and
    once released nothing more is asked."""
    shop = CouponShop()
    order = (await _checkout(shop, _cmd(coupon_codes=("SAVE10",)))).order
    assert order.saga.coupons.step is CouponStep.REDEEMED and not order.coupons_due
    stored = shop.saved[("mer_a", order.id)]
    stored.status = OrderStatus.CANCELLED  # as a cancel after confirmation leaves it
    assert stored.saga.coupons.to_release and stored.coupons_due
    new_uow = uow_factory(shop.store)
    for _ in range(2):  # the resumer's pass, then another: released once
        resumed = await saga.resume(new_uow, shop.ports, order.id, Policy())
        assert resumed.saga.coupons.step is CouponStep.RELEASED and not resumed.coupons_due
    assert shop.coupons.reserved == {order.id: "released"}
    assert shop.coupons.requests.count(f"{order.id}/coupons/release") == 1


def test_coupon_codes_are_checked_before_anything_is_claimed() -> None:
    from pos_kit.errors import InvalidArgument

    with pytest.raises(InvalidArgument) as err:
        checkout.Checkout(_cmd(coupon_codes=("ab", "SAVE10", "save10")), CouponShop().ports,
                          uow_factory(Store()), Policy(), Answer)  # fmt: skip
    assert {v.field for v in err.value.violations} == {"coupon_codes[0]", "coupon_codes[2]"}


async def test_promotion_down_with_a_coupon_named_is_a_503_without_one_list_price() -> None:
    """Nothing listens at the promotion address: without a coupon the sale goes on at list
    price; with one it waits (503), never a silent sale at full price."""
    import grpc

    from pos_devstack.natsd import free_port
    from pos_order.adapters.remote import PromotionDiscounts

    lines = [OrderLine("TEE", "T-shirt", 1, Money(2500, "USD"))]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{free_port()}") as channel:
        discounts = PromotionDiscounts(channel, timeout=2.0)
        plain = await discounts.quote(lines, "USD", CartContext("loc_1", "register"))
        assert plain.applied is False and plain.total == Money(0, "USD")
        with pytest.raises(Unavailable) as err:
            await discounts.quote(lines, "USD", CartContext("loc_1", "register", "", ("SAVE10",)))
        assert err.value.code == "promotion_unavailable"


def test_a_code_named_twice_is_named_at_its_repeat() -> None:
    """Codes ignore case and outer spaces: the later of two equal codes is the one to fix, so
    its place is named (`coupon_codes[2]`), as a coupon batch names its repeated `codes[i]`;
    three of one code name both repeats."""
    from pos_order.domain.coupons import validate_codes

    fields = [v.field for v in validate_codes(["SAVE10", "OTHER", " save10 "])]
    assert fields == ["coupon_codes[2]"]
    fields = [v.field for v in validate_codes(["A-1", "a-1", "A-1"], "codes")]
    assert fields == ["codes[1]", "codes[2]"]
    assert validate_codes(["SAVE10", "OTHER"]) == []
