"""Promotions: the discount rules, and the running service."""

from __future__ import annotations

import grpc
import pytest

from pos.common.v1 import money_pb2
from pos.promotion.v1 import promotion_pb2, promotion_pb2_grpc
from pos_devstack.testing import Infra, serve_in_process
from pos_kit.errors import InvalidArgument
from pos_kit.grpc_client import read_error
from pos_kit.money import Money
from pos_promotion.domain.model import CartLine, Promotion, calculate

USD = "USD"


def _cart(*prices: int) -> list[CartLine]:
    return [CartLine(f"SKU{i}", 1, Money(p, USD)) for i, p in enumerate(prices)]


def test_a_threshold_promotion_applies_only_when_reached() -> None:
    promo = Promotion("promo_1", "Big basket", 1000, Money(5000, USD))
    assert calculate([promo], _cart(2500, 2499), USD) == []
    applied = calculate([promo], _cart(2500, 2500), USD)
    assert [(d.amount, d.promotion_id) for d in applied] == [(Money(500, USD), "promo_1")]
    assert "10% off orders of 50.00 USD or more" in applied[0].reason


def test_promotions_stack_on_what_is_left_and_never_exceed_the_cart() -> None:
    promos = [Promotion("promo_a", "A", 1000, None), Promotion("promo_b", "B", 500, None)]
    applied = calculate(promos, _cart(10000), USD)
    assert [d.amount.amount for d in applied] == [1000, 450]  # 14.5 %, not 15 %
    everything = [Promotion("promo_x", "X", 10000, None), Promotion("promo_y", "Y", 5000, None)]
    assert sum(d.amount.amount for d in calculate(everything, _cart(999), USD)) == 999


def test_inactive_and_other_currency_thresholds_do_not_apply() -> None:
    promos = [
        Promotion("promo_a", "A", 1000, None, active=False),
        Promotion("promo_b", "B", 1000, Money(100, "EUR")),
    ]
    assert calculate(promos, _cart(10000), USD) == []


def test_a_line_in_another_currency_is_a_field_error() -> None:
    lines = [CartLine("A", 1, Money(100, USD)), CartLine("B", 1, Money(100, "EUR"))]
    with pytest.raises(InvalidArgument) as err:
        calculate([], lines, USD)
    assert [v.field for v in err.value.violations] == ["lines[1].unit_price.currency"]


async def test_the_service_creates_once_and_calculates_per_merchant(infra: Infra) -> None:
    async with serve_in_process("promotion", infra) as svc:
        stub = promotion_pb2_grpc.PromotionServiceStub(svc.channel)
        md = (("x-merchant-id", "mer_a"),)
        create = promotion_pb2.CreatePromotionRequest(
            request_id="r-1",
            name="10% over 50",
            percent_off_bps=1000,
            minimum_subtotal=money_pb2.Money(amount=5000, currency=USD),
        )
        first = await stub.CreatePromotion(create, metadata=md, timeout=5)
        assert await stub.CreatePromotion(create, metadata=md, timeout=5) == first
        listed = await stub.ListPromotions(
            promotion_pb2.ListPromotionsRequest(), metadata=md, timeout=5
        )
        assert [p.id for p in listed.promotions] == [first.promotion.id]

        cart = promotion_pb2.CalculateDiscountsRequest(
            currency=USD,
            lines=[
                promotion_pb2.CartLine(
                    sku="TEE", quantity=3, unit_price=money_pb2.Money(amount=2000, currency=USD)
                )
            ],
        )
        mine = await stub.CalculateDiscounts(cart, metadata=md, timeout=5)
        assert mine.total_discount.amount == 600
        theirs = await stub.CalculateDiscounts(
            cart, metadata=(("x-merchant-id", "mer_b"),), timeout=5
        )
        assert theirs.total_discount.amount == 0 and list(theirs.discounts) == []

        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.CreatePromotion(
                promotion_pb2.CreatePromotionRequest(request_id="r-2", name="", percent_off_bps=0),
                metadata=md,
                timeout=5,
            )
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        fields = {v.field for v in read_error(err.value).violations}
        assert fields == {"name", "percent_off_bps"}
