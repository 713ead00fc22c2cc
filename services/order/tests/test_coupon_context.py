"""Coupons reserved as the cart was priced, with the real services (PostgreSQL, NATS; inventory,
payment, promotion and order in this process): an offer for some customer groups, or with a
time window read in the store's time zone, applies at the register's checkout, a web order and
a draft's submit exactly as the cart preview prices it; a refused submit leaves the draft as it
was; submits of one draft at once all answer the submitted order."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import grpc
import pytest
import pytest_asyncio
from order_shop import serve_all, serve_order, serve_relay

from pos.common.v1 import money_pb2
from pos.customer.v1 import customer_pb2
from pos.customer.v1 import events_pb2 as customer_events
from pos.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from pos.order.v1 import order_pb2, order_pb2_grpc
from pos.payment.v1 import payment_pb2
from pos.promotion.v1 import promotion_pb2, promotion_pb2_grpc
from pos_devstack.testing import Infra
from pos_kit.db import make_engine
from pos_kit.grpc_client import read_error
from pos_order.adapters.repository import OrderUow
from pos_order.adapters.tables import kit
from pos_order.entrypoints import consumers

pytestmark = pytest.mark.asyncio(loop_scope="session")

MERCHANT = f"mer_cctx{uuid.uuid4().hex[:8]}"
MD = (("x-merchant-id", MERCHANT),)
# Fourteen hours ahead of UTC all year: a window of two hours around the store's wall-clock
# time now never holds in UTC.
ZONE = "Pacific/Kiritimati"
GROUP = "grp_vip"
VIP = "cus_vip"
PICKUP = order_pb2.FULFILLMENT_TYPE_PICKUP


def usd(amount: int) -> money_pb2.Money:
    return money_pb2.Money(amount=amount, currency="USD")


class PromotionGate(grpc.GenericRpcHandler):
    """Every call of the order service to the promotion service passed through as bytes; one
    pricing (`CalculateDiscounts`) held on the way when a test asks (`hold_next_pricing`)."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.channel = channel
        self.gate: tuple[asyncio.Event, asyncio.Event] | None = None

    def hold_next_pricing(self) -> tuple[asyncio.Event, asyncio.Event]:
        """(set once the next pricing is held, set to let it through)."""
        self.gate = (asyncio.Event(), asyncio.Event())
        return self.gate

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:  # type: ignore[override]
        method: str = details.method  # type: ignore[attr-defined]
        forward = self.channel.unary_unary(method)

        async def handle(request: bytes, context: grpc.aio.ServicerContext) -> Any:
            metadata = [
                (k, v) for k, v in context.invocation_metadata() or () if k.startswith("x-")
            ]
            if method.endswith("/CalculateDiscounts") and self.gate is not None:
                held, release = self.gate
                self.gate = None
                held.set()
                await release.wait()
            return await forward(request, metadata=metadata, timeout=10)

        return grpc.unary_unary_rpc_method_handler(handle)  # type: ignore[arg-type]


@dataclass
class Shop:
    orders: order_pb2_grpc.OrderServiceStub
    promotions: promotion_pb2_grpc.PromotionServiceStub
    catalog: inventory_pb2_grpc.InventoryServiceStub
    location_id: str
    gate: PromotionGate

    async def coupon(self, conditions: promotion_pb2.Conditions | None = None,
                     max_uses: int = 0) -> str:  # fmt: skip
        """A code of a new offer of 10 % off the cart that needs its coupon."""
        promo = await self.promotions.CreatePromotion(
            promotion_pb2.CreatePromotionRequest(
                request_id=str(uuid.uuid4()), name="Ten off", percent_off_bps=1000,
                requires_coupon=True, conditions=conditions,
            ),
            metadata=MD,
            timeout=10,
        )  # fmt: skip
        code = f"TEN-{uuid.uuid4().hex[:8].upper()}"
        await self.promotions.CreateCoupons(
            promotion_pb2.CreateCouponsRequest(
                request_id=str(uuid.uuid4()),
                promotion_id=promo.promotion.id,
                codes=[code],
                max_uses=max_uses,
            ),
            metadata=MD,
            timeout=10,
        )
        return code

    async def preview(
        self, code: str, customer_id: str, channel: str
    ) -> order_pb2.CalculateCartResponse:
        answer: order_pb2.CalculateCartResponse = await self.orders.CalculateCart(
            order_pb2.CalculateCartRequest(
                location_id=self.location_id,
                channel=channel,
                customer_id=customer_id,
                lines=[order_pb2.OrderLineRequest(sku="TEE", quantity=1)],
                coupon_codes=[code],
            ),
            metadata=MD,
            timeout=30,
        )
        return answer

    async def checkout(self, code: str, customer_id: str) -> order_pb2.Order:
        sold = await self.orders.Checkout(
            order_pb2.CheckoutRequest(
                request_id=str(uuid.uuid4()),
                location_id=self.location_id,
                customer_id=customer_id,
                lines=[order_pb2.CheckoutLine(sku="TEE", quantity=1)],
                tender_type=payment_pb2.TENDER_TYPE_CASH,
                cash_tendered=usd(10_000),
                coupon_codes=[code],
            ),
            metadata=MD,
            timeout=30,
        )
        return sold.order

    async def web_order(
        self, customer_id: str, codes: tuple[str, ...] = (), draft: bool = False, sku: str = "TEE"
    ) -> order_pb2.Order:
        made = await self.orders.CreateOrder(
            order_pb2.CreateOrderRequest(
                request_id=str(uuid.uuid4()),
                channel="web",
                location_id=self.location_id,
                customer_id=customer_id,
                lines=[order_pb2.OrderLineRequest(sku=sku, quantity=1)],
                fulfillments=[
                    order_pb2.FulfillmentRequest(type=PICKUP, location_id=self.location_id)
                ],
                coupon_codes=list(codes),
                draft=draft,
            ),
            metadata=MD,
            timeout=30,
        )
        return made.order

    async def submit(self, order_id: str, codes: tuple[str, ...] = ()) -> order_pb2.Order:
        submitted = await self.orders.SubmitOrder(
            order_pb2.SubmitOrderRequest(
                request_id=str(uuid.uuid4()), order_id=order_id, coupon_codes=list(codes)
            ),
            metadata=MD,
            timeout=30,
        )
        return submitted.order

    async def receive(self, sku: str, units: int) -> None:
        await self.catalog.AdjustStock(
            inventory_pb2.AdjustStockRequest(
                request_id=str(uuid.uuid4()),
                sku=sku,
                location_id=self.location_id,
                delta=units,
                reason=inventory_pb2.ADJUSTMENT_REASON_RECEIVED,
            ),
            metadata=MD,
            timeout=5,
        )

    async def get(self, order_id: str) -> order_pb2.Order:
        found = await self.orders.GetOrder(
            order_pb2.GetOrderRequest(id=order_id), metadata=MD, timeout=10
        )
        return found.order


async def _product(catalog: inventory_pb2_grpc.InventoryServiceStub, sku: str) -> None:
    await catalog.CreateProduct(
        inventory_pb2.CreateProductRequest(
            request_id=f"{MERCHANT}-{sku}", sku=sku, name=sku.title(), price=usd(2500)
        ),
        metadata=MD,
        timeout=5,
    )


async def _store(inventory: grpc.aio.Channel) -> str:
    """A store in ZONE that hands over pickups, selling a T-shirt (plenty in stock) and a mug
    (none), each at 25.00, no tax."""
    catalog = inventory_pb2_grpc.InventoryServiceStub(inventory)
    location = await catalog.CreateLocation(
        inventory_pb2.CreateLocationRequest(
            request_id=f"{MERCHANT}-loc", name="Far Away", currency="USD", tax_rate_bps=0,
            time_zone=ZONE, pickup_enabled=True,
        ),
        metadata=MD,
        timeout=5,
    )  # fmt: skip
    await _product(catalog, "TEE")
    await _product(catalog, "MUG")
    await catalog.AdjustStock(
        inventory_pb2.AdjustStockRequest(
            request_id=f"{MERCHANT}-received",
            sku="TEE",
            location_id=location.location.id,
            delta=1000,
            reason=inventory_pb2.ADJUSTMENT_REASON_RECEIVED,
        ),
        metadata=MD,
        timeout=5,
    )
    return location.location.id


async def _learn_vip(order_db: str) -> None:
    """The order service's read model knows VIP in GROUP, as the customer service's event
    tells it (what pricing reads a customer's groups from)."""
    engine = make_engine(order_db)
    customer = customer_pb2.Customer(id=VIP, version=1, status="active", group_ids=[GROUP])
    try:
        async with OrderUow(engine, kit).bind(MERCHANT) as uow:
            await consumers.on_customer_changed(
                uow, customer_events.CustomerCreated(customer=customer)
            )
            await uow.commit()
    finally:
        await engine.dispose()


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def shop(infra: Infra) -> AsyncIterator[Shop]:
    server = infra.new_nats()
    try:
        async with AsyncExitStack() as stack:
            inventory, payment, promotion = await serve_all(
                stack, infra, server.url, "inventory", "payment", "promotion"
            )
            gate = PromotionGate(promotion.channel)
            order = await stack.enter_async_context(
                serve_order(
                    infra, server.url, inventory.port, payment.port,
                    promotion_port=await serve_relay(stack, gate),
                    # Promotion answers a first call slowly on a busy machine; a sale naming
                    # a coupon needs its answer.
                    promotion_timeout_seconds=5.0,
                )
            )  # fmt: skip
            await _learn_vip(order.database_url)
            yield Shop(
                order_pb2_grpc.OrderServiceStub(order.channel),
                promotion_pb2_grpc.PromotionServiceStub(promotion.channel),
                inventory_pb2_grpc.InventoryServiceStub(inventory.channel),
                await _store(inventory.channel),
                gate,
            )
    finally:
        server.stop()


def _conditions(kind: str) -> tuple[promotion_pb2.Conditions, str]:
    """The offer's conditions, and the customer a cart must be for to meet them."""
    if kind == "group":
        return promotion_pb2.Conditions(customer_groups=[GROUP]), VIP
    # No zone named: read in the store's. Two hours around its wall-clock time now, which in
    # UTC is ten hours later (or fourteen earlier): outside the window read in UTC.
    here = datetime.now(UTC).astimezone(ZoneInfo(ZONE)).replace(tzinfo=None)
    early, late = here - timedelta(hours=1), here + timedelta(hours=1)
    if kind == "dates":
        window = promotion_pb2.Conditions(
            starts_at=early.strftime("%Y-%m-%dT%H:%M"), ends_at=late.strftime("%Y-%m-%dT%H:%M")
        )
    else:
        window = promotion_pb2.Conditions(
            hours_from=early.strftime("%H:%M"), hours_until=late.strftime("%H:%M")
        )
    return window, ""


@pytest.mark.parametrize("kind", ["group", "dates", "hours"])
@pytest.mark.parametrize("way", ["checkout", "web_order", "draft_submit"])
async def test_a_coupon_the_preview_applies_is_reserved_for_the_sale(
    shop: Shop, kind: str, way: str
) -> None:
    """The promotion service judges the reservation's cart as it priced the preview and the
    sale: the customer's groups, and the store's time zone for a window naming none."""
    conditions, customer_id = _conditions(kind)
    code = await shop.coupon(conditions)
    channel = "register" if way == "checkout" else "web"
    preview = await shop.preview(code, customer_id, channel)
    assert list(preview.rejected_coupons) == [] and preview.discount_total.amount == 250

    if way == "checkout":
        order = await shop.checkout(code, customer_id)
        assert [c.status for c in order.coupons] == ["redeemed"]
        assert order.status == order_pb2.ORDER_STATUS_COMPLETED  # handed over at the till
    elif way == "web_order":
        order = await shop.web_order(customer_id, (code,))
        assert [c.status for c in order.coupons] == ["reserved"]
    else:
        draft = await shop.web_order(customer_id, draft=True)
        assert draft.discount_total.amount == 0
        order = await shop.submit(draft.id, (code,))
        assert [c.status for c in order.coupons] == ["reserved"]
        assert order.status == order_pb2.ORDER_STATUS_PENDING_PAYMENT
    assert order.discount_total.amount == 250 and order.total.amount == 2250


async def test_a_submit_refused_for_stock_leaves_the_draft_as_it_was(shop: Shop) -> None:
    """Nothing of the refused submit's pricing stays: not the coupon it was given (the draft
    keeps none), nor its discount."""
    code = await shop.coupon()
    draft = await shop.web_order("", draft=True, sku="MUG")  # none in stock
    assert draft.discount_total.amount == 0 and draft.total.amount == 2500

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await shop.submit(draft.id, (code,))
    assert read_error(refused.value).reason == "insufficient_stock", read_error(refused.value)

    after = await shop.get(draft.id)
    assert after.status == order_pb2.ORDER_STATUS_DRAFT and list(after.coupons) == []
    assert (after.subtotal, after.discount_total, after.tax_total, after.total) == (
        draft.subtotal, draft.discount_total, draft.tax_total, draft.total,
    )  # fmt: skip
    assert list(after.lines) == list(draft.lines)
    assert list(after.fulfillments) == list(draft.fulfillments)
    assert [(c.status, c.reason) for c in after.timeline][-1] == ("draft", "insufficient_stock")
    # The coupon was not spent: submitted again once the mugs are in, the draft is priced
    # with it then.
    await shop.receive("MUG", 1)
    submitted = await shop.submit(draft.id, (code,))
    assert submitted.status == order_pb2.ORDER_STATUS_PENDING_PAYMENT
    assert [c.status for c in submitted.coupons] == ["reserved"]
    assert submitted.discount_total.amount == 250 and submitted.total.amount == 2250


@pytest.mark.parametrize("single_use_coupon", [False, True])
async def test_submits_of_one_draft_at_once_all_answer_the_submitted_order(
    shop: Shop, single_use_coupon: bool
) -> None:
    """One of them submits the draft; the others find it submitted (no longer a draft, its
    coupon's one use taken by it) and answer it as it is, as a later submit does."""
    codes = (await shop.coupon(max_uses=1),) if single_use_coupon else ()
    draft = await shop.web_order("", draft=True)

    answers = await asyncio.gather(*(shop.submit(draft.id, codes) for _ in range(4)))

    assert {a.id for a in answers} == {draft.id}
    assert {a.status for a in answers} == {order_pb2.ORDER_STATUS_PENDING_PAYMENT}
    after = await shop.get(draft.id)
    assert after.status == order_pb2.ORDER_STATUS_PENDING_PAYMENT
    assert [c.status for c in after.coupons] == (["reserved"] if codes else [])
    assert after.discount_total.amount == (250 if codes else 0)


async def test_a_submit_priced_after_another_took_the_coupons_last_use_answers_that_order(
    shop: Shop,
) -> None:
    """A submit that read the draft before another submitted it, and priced it once that one
    had reserved the coupon's only use, finds the coupon exhausted: the draft moved on, and
    the order as the other submit left it is its answer."""
    code = await shop.coupon(max_uses=1)
    draft = await shop.web_order("", draft=True)
    held, release = shop.gate.hold_next_pricing()
    late = asyncio.create_task(shop.submit(draft.id, (code,)))
    await asyncio.wait_for(held.wait(), timeout=20)  # it read the draft and asks its price

    first = await shop.submit(draft.id, (code,))
    assert [c.status for c in first.coupons] == ["reserved"]
    release.set()
    answer = await late

    assert answer.id == draft.id and answer.status == order_pb2.ORDER_STATUS_PENDING_PAYMENT
    assert answer.version == first.version and list(answer.coupons) == list(first.coupons)
