"""A slow promotion service is not a down one: real PostgreSQL, NATS JetStream, and the inventory,
payment, promotion and order services in this process, the promotion service behind a relay
that holds its pricing (`CalculateDiscounts`) as a loaded service does, never answers it as a
hung one does, or refuses it as one that is away.

A loaded promotion service answering after the short deadline, within the normal one, gives the
sale its discounts; a hung one costs one sale the normal deadline, and the sales after it the
short one only (the relay notes the deadline each pricing came with), until the cool-off is over
or the service answers again (adapters/remote.py `DiscountDeadline`)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
import pytest_asyncio
from order_shop import serve_all, serve_order, serve_relay, tee_shop

from pos.common.v1 import money_pb2
from pos.order.v1 import order_pb2, order_pb2_grpc
from pos.payment.v1 import payment_pb2
from pos.promotion.v1 import promotion_pb2, promotion_pb2_grpc
from pos_devstack.testing import Infra, InProcessService
from pos_kit.context import deadline_var, merchant_var
from pos_kit.errors import Unavailable
from pos_kit.grpc_client import channel, read_error
from pos_kit.money import Money
from pos_order.adapters.remote import PromotionDiscounts
from pos_order.bootstrap import Settings
from pos_order.domain.model import OrderLine
from pos_order.service.ports import CartContext

pytestmark = pytest.mark.asyncio(loop_scope="session")

MERCHANT = f"mer_slowpromo{uuid.uuid4().hex[:8]}"
MD = (("x-merchant-id", MERCHANT),)
# The order service's own deadlines for a pricing, as it runs by default.
NORMAL = Settings.model_fields["promotion_timeout_seconds"].default
SHORT = Settings.model_fields["promotion_short_timeout_seconds"].default


def waited_long(deadline: float) -> bool:
    """A pricing's deadline as it arrived was the normal one, not the short one (it arrives a
    moment less than it was set, or a hair more: read on another clock)."""
    return deadline > (SHORT + NORMAL) / 2


class PromotionRelay(grpc.GenericRpcHandler):
    """Every call to the promotion service passed through as bytes, but a pricing: held `delay`
    seconds first (a loaded service), never answered (`hung`), or refused as by a service that
    is away (`refused`). Each pricing's deadline as it arrived is noted in `deadlines`."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.channel = channel
        self.delay = 0.0
        self.hung = False
        self.refused = False
        self.deadlines: list[float] = []

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:  # type: ignore[override]
        method: str = details.method  # type: ignore[attr-defined]
        forward = self.channel.unary_unary(method)

        async def handle(request: bytes, context: grpc.aio.ServicerContext) -> Any:
            metadata = [
                (k, v) for k, v in context.invocation_metadata() or () if k.startswith("x-")
            ]
            if method.endswith("/CalculateDiscounts"):
                remaining = context.time_remaining()
                assert remaining is not None  # every call of the order service has a deadline
                self.deadlines.append(remaining)
                if self.refused:
                    await context.abort(grpc.StatusCode.UNAVAILABLE, "promotion is away")
                if self.hung:
                    await asyncio.Event().wait()  # until the caller's deadline cancels it
                await asyncio.sleep(self.delay)
            return await forward(request, metadata=metadata, timeout=10)

        return grpc.unary_unary_rpc_method_handler(handle)  # type: ignore[arg-type]

    def passing(self) -> None:
        self.delay, self.hung, self.refused = 0.0, False, False


@dataclass
class Stack:
    infra: Infra
    nats_url: str
    inventory: InProcessService
    payment: InProcessService
    promotion: InProcessService
    relay: PromotionRelay
    relay_port: int
    location_id: str


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def shop(infra: Infra) -> AsyncIterator[Stack]:
    server = infra.new_nats()
    try:
        async with AsyncExitStack() as stack:
            inventory, payment, promotion = await serve_all(
                stack, infra, server.url, "inventory", "payment", "promotion"
            )
            relay = PromotionRelay(promotion.channel)
            relay_port = await serve_relay(stack, relay)
            location_id = await tee_shop(inventory.channel, MERCHANT)
            promotions = promotion_pb2_grpc.PromotionServiceStub(promotion.channel)
            await promotions.CreatePromotion(
                promotion_pb2.CreatePromotionRequest(
                    request_id=str(uuid.uuid4()), name="Ten off", percent_off_bps=1000
                ),
                metadata=MD,
                timeout=10,
            )
            # A first pricing is slow on a busy machine: answered once here, so the tests' own
            # are as quick as the service is.
            warm = await promotions.CalculateDiscounts(
                promotion_pb2.CalculateDiscountsRequest(
                    currency="USD",
                    lines=[promotion_pb2.CartLine(sku="TEE", quantity=1, unit_price=usd(2500))],
                ),
                metadata=MD,
                timeout=10,
            )
            assert warm.total_discount.amount == 250
            yield Stack(
                infra, server.url, inventory, payment, promotion, relay, relay_port, location_id
            )
    finally:
        server.stop()


@pytest.fixture
def relay(shop: Stack) -> PromotionRelay:
    shop.relay.passing()
    shop.relay.deadlines.clear()
    return shop.relay


def usd(amount: int) -> money_pb2.Money:
    return money_pb2.Money(amount=amount, currency="USD")


async def _sale(orders: order_pb2_grpc.OrderServiceStub, shop: Stack) -> order_pb2.Order:
    sold = await orders.Checkout(
        order_pb2.CheckoutRequest(
            request_id=str(uuid.uuid4()),
            location_id=shop.location_id,
            lines=[order_pb2.CheckoutLine(sku="TEE", quantity=1)],
            tender_type=payment_pb2.TENDER_TYPE_CASH,
            cash_tendered=usd(10_000),
        ),
        metadata=MD,
        timeout=30,
    )
    return sold.order


async def test_a_promotion_slower_than_the_short_deadline_still_gives_its_discounts(
    shop: Stack, relay: PromotionRelay
) -> None:
    """A loaded promotion service answering after the short deadline, within the normal one:
    the sale has its discounts (until 2026-12-05 the order service gave up after 0.3 s and
    sold at list price while nothing was down)."""
    async with AsyncExitStack() as stack:
        order = await stack.enter_async_context(
            serve_order(
                shop.infra, shop.nats_url, shop.inventory.port, shop.payment.port,
                promotion_port=shop.relay_port,
            )
        )  # fmt: skip
        orders = order_pb2_grpc.OrderServiceStub(order.channel)
        relay.delay = SHORT + 0.3
        sold = await _sale(orders, shop)
    assert sold.discounts_applied and list(sold.warnings) == []
    assert sold.discount_total.amount == 250 and sold.total.amount == 2250
    # It was asked once, with the normal deadline.
    assert [waited_long(d) for d in relay.deadlines] == [True]


async def test_after_a_hung_promotion_the_next_sales_wait_the_short_deadline(
    shop: Stack, relay: PromotionRelay
) -> None:
    """The promotion service hung: the first sale waits the normal deadline and goes on at list
    price; the next waits the short one only, and goes on at list price too. A sale naming a
    coupon cannot go on without the promotion service's answer: it is given the normal
    deadline, then a 503 (never a sale at full price)."""
    async with AsyncExitStack() as stack:
        order = await stack.enter_async_context(
            serve_order(
                shop.infra, shop.nats_url, shop.inventory.port, shop.payment.port,
                promotion_port=shop.relay_port,
            )
        )  # fmt: skip
        orders = order_pb2_grpc.OrderServiceStub(order.channel)
        relay.hung = True
        first = await _sale(orders, shop)
        second = await _sale(orders, shop)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await orders.Checkout(
                order_pb2.CheckoutRequest(
                    request_id=str(uuid.uuid4()),
                    location_id=shop.location_id,
                    lines=[order_pb2.CheckoutLine(sku="TEE", quantity=1)],
                    tender_type=payment_pb2.TENDER_TYPE_CASH,
                    cash_tendered=usd(10_000),
                    coupon_codes=["SAVE10"],
                ),
                metadata=MD,
                timeout=30,
            )
    for sold in (first, second):
        assert not sold.discounts_applied and sold.total.amount == 2500
        assert [w.code for w in sold.warnings] == ["discounts_unavailable"]
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert read_error(refused.value).reason == "promotion_unavailable"
    # The first sale waited the normal deadline, the second the short one; the coupon's, the
    # normal one.
    assert [waited_long(d) for d in relay.deadlines] == [True, False, True]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_the_normal_deadline_comes_back_after_the_cool_off_or_an_answer(
    shop: Stack, relay: PromotionRelay
) -> None:
    """The adapter on its own, the promotion service refusing (as when nothing listens; no
    call waits here): after a refusal the short deadline for the cool-off, then one call with
    the normal deadline (refused again: the short one again); an answer within the short
    deadline brings the normal one back at once. A cart with a coupon is always given the
    normal deadline."""
    normal, short, cool_off = 10.0, 2.0, 10.0
    clock = Clock()
    lines = [OrderLine("TEE", "T-shirt", 1, Money(2500, "USD"))]
    plain = CartContext(shop.location_id, "register")
    coupon = CartContext(shop.location_id, "register", "", ("SAVE10",))
    # The merchant the order service's calls carry from the call they serve.
    merchant = merchant_var.set(MERCHANT)
    try:
        async with channel(f"127.0.0.1:{shop.relay_port}") as promotion:
            discounts = PromotionDiscounts(promotion, normal, short, cool_off, clock=clock)

            async def applied(cart: CartContext = plain) -> bool:
                return (await discounts.quote(lines, "USD", cart)).applied

            relay.refused = True
            assert not await applied()  # normal deadline: refused, the cool-off begins
            assert not await applied()  # short
            with pytest.raises(Unavailable):
                await applied(coupon)  # normal: the coupon needs the answer
            clock.now += cool_off - 0.1
            assert not await applied()  # short: a refusal in the cool-off does not prolong it
            clock.now += 0.1
            assert not await applied()  # normal: the cool-off is over; refused, it begins again
            assert not await applied()  # short
            relay.passing()
            assert await applied()  # short, and answered: so
            assert await applied()  # normal
    finally:
        merchant_var.reset(merchant)
    assert [d > (short + normal) / 2 for d in relay.deadlines] == [
        True, False, True, False, True, False, False, True
    ]  # fmt: skip


async def test_a_pricing_cut_short_by_its_callers_deadline_starts_no_cool_off(
    shop: Stack, relay: PromotionRelay
) -> None:
    """The adapter on its own, serving a call whose own deadline is nearly spent: the pricing
    is given what is left of it (less the answer's margin), not the normal deadline, and the
    promotion service, hung, does not answer within it. That is the caller's deadline running
    out, not the promotion service failing: the next sale is given the normal deadline (until
    2026-12-05 it began a cool-off, and the sales of the next seconds waited the short one
    only). A refusal by the promotion service itself still begins one."""
    normal, short, cool_off = 10.0, 2.0, 10.0
    lines = [OrderLine("TEE", "T-shirt", 1, Money(2500, "USD"))]
    plain = CartContext(shop.location_id, "register")
    merchant = merchant_var.set(MERCHANT)
    try:
        async with channel(f"127.0.0.1:{shop.relay_port}") as promotion:
            discounts = PromotionDiscounts(promotion, normal, short, cool_off, clock=Clock())

            async def applied(caller_left: float | None = None) -> bool:
                served = deadline_var.set(
                    None if caller_left is None else time.monotonic() + caller_left
                )
                try:
                    return (await discounts.quote(lines, "USD", plain)).applied
                finally:
                    deadline_var.reset(served)

            relay.hung = True
            assert not await applied(caller_left=0.5)  # cut to ~0.45 s: list price
            relay.passing()
            assert await applied()  # the normal deadline: no cool-off began
            relay.refused = True
            assert not await applied(caller_left=3.0)  # refused: the cool-off begins
            relay.passing()
            assert await applied()  # short
    finally:
        merchant_var.reset(merchant)
    assert len(relay.deadlines) == 4
    assert relay.deadlines[0] < short and relay.deadlines[2] < 3.0
    assert [d > (short + normal) / 2 for d in (relay.deadlines[1], relay.deadlines[3])] == [
        True,
        False,
    ]
