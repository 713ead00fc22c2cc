"""Bearer codes in stored requests, with the real services (PostgreSQL, NATS; inventory,
payment, promotion and order in this process): a checkout or an order naming a coupon, a
pre-printed gift card sold, a gift card tendered. The stored answers keep no code, and their
fingerprints cannot be recomputed from a guessed code without the service's key (a plain hash
of the request could: every other field of it is in the stored answer)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import grpc
import psycopg
import pytest
import pytest_asyncio
from order_shop import serve_all, serve_order, tee_shop

from pos.common.v1 import money_pb2
from pos.order.v1 import order_pb2, order_pb2_grpc
from pos.payment.v1 import payment_pb2
from pos.promotion.v1 import promotion_pb2, promotion_pb2_grpc
from pos_devstack.testing import Infra
from pos_kit.grpc_client import read_error

pytestmark = pytest.mark.asyncio(loop_scope="session")

MERCHANT = f"mer_codes{uuid.uuid4().hex[:8]}"
MD = (("x-merchant-id", MERCHANT),)


def usd(amount: int) -> money_pb2.Money:
    return money_pb2.Money(amount=amount, currency="USD")


@dataclass
class Shop:
    orders: order_pb2_grpc.OrderServiceStub
    promotions: promotion_pb2_grpc.PromotionServiceStub
    order_db: str
    location_id: str

    def stored(self, request_id: str) -> tuple[str, bytes, str]:
        """The stored request: (operation, fingerprint, the whole row as text)."""
        with psycopg.connect(self.order_db) as conn:
            row = conn.execute(
                "SELECT t.operation, t.fingerprint, t::text FROM processed_requests t"
                " WHERE t.merchant_id = %s AND t.request_id = %s",
                (MERCHANT, request_id),
            ).fetchone()
        assert row is not None, request_id
        return row[0], bytes(row[1]), row[2]

    async def coupon(self) -> str:
        promo = await self.promotions.CreatePromotion(
            promotion_pb2.CreatePromotionRequest(
                request_id=str(uuid.uuid4()), name="Ten off", percent_off_bps=1000,
                requires_coupon=True,
            ),
            metadata=MD,
            timeout=10,
        )  # fmt: skip
        code = f"TEN-{uuid.uuid4().hex[:8].upper()}"
        await self.promotions.CreateCoupons(
            promotion_pb2.CreateCouponsRequest(
                request_id=str(uuid.uuid4()), promotion_id=promo.promotion.id, codes=[code]
            ),
            metadata=MD,
            timeout=10,
        )
        return code


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def shop(infra: Infra) -> AsyncIterator[Shop]:
    server = infra.new_nats()
    try:
        async with AsyncExitStack() as stack:
            inventory, payment, promotion = await serve_all(
                stack, infra, server.url, "inventory", "payment", "promotion"
            )
            order = await stack.enter_async_context(
                serve_order(
                    infra, server.url, inventory.port, payment.port,
                    promotion_port=promotion.port,
                    # Promotion answers a first call slowly on a busy machine; a sale naming
                    # a coupon needs its answer.
                    promotion_timeout_seconds=5.0,
                )
            )  # fmt: skip
            yield Shop(
                order_pb2_grpc.OrderServiceStub(order.channel),
                promotion_pb2_grpc.PromotionServiceStub(promotion.channel),
                order.database_url,
                await tee_shop(inventory.channel, MERCHANT),
            )
    finally:
        server.stop()


def unkeyed(operation: str, request: Any, coupon: Any, card: Any) -> bytes:
    """What anyone holding the table computes for a guessed request: its fingerprint with each
    coupon code and each gift card code as is (None) or replaced by its plain hash."""
    printed = type(request)()
    printed.CopyFrom(request)
    if coupon is not None and hasattr(printed, "coupon_codes"):
        printed.coupon_codes[:] = [coupon(c) for c in printed.coupon_codes]
    if card is not None:
        for ln in getattr(printed, "lines", ()):
            if ln.HasField("gift_card") and ln.gift_card.code:
                ln.gift_card.code = card(ln.gift_card.code)
        if getattr(printed, "gift_card_code", ""):
            printed.gift_card_code = card(printed.gift_card_code)
    body = printed.SerializeToString(deterministic=True)
    return hashlib.sha256(operation.encode() + b"\0" + body).digest()


def sha256_hex(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def assert_kept_keyed(shop: Shop, operation: str, request: Any, *codes: str) -> None:
    stored_op, fingerprint, row = shop.stored(request.request_id)
    assert stored_op == operation
    for code in codes:
        assert code not in row and code.lower() not in row
        assert sha256_hex(code) not in row
    ways = (None, sha256_hex)
    guesses = {unkeyed(operation, request, a, b) for a in ways for b in ways}
    assert fingerprint not in guesses


async def test_coupon_and_gift_card_codes_are_kept_only_as_keyed_hashes(shop: Shop) -> None:
    code = await shop.coupon()
    printed = "PRINTED-" + uuid.uuid4().hex[:12].upper()
    sale = order_pb2.CheckoutRequest(
        request_id=str(uuid.uuid4()),
        location_id=shop.location_id,
        lines=[
            order_pb2.CheckoutLine(sku="TEE", quantity=1),
            order_pb2.CheckoutLine(
                quantity=1,
                gift_card=order_pb2.GiftCardLineRequest(amount=usd(5000), code=printed),
            ),
        ],
        tender_type=payment_pb2.TENDER_TYPE_CARD,
        card_token="tok_visa",
        coupon_codes=[code],
    )
    sold = await shop.orders.Checkout(sale, metadata=MD, timeout=30)
    assert [c.status for c in sold.order.coupons] == ["redeemed"]
    assert sold.order.discount_total.amount > 0
    assert_kept_keyed(shop, "Checkout", sale, code, printed)
    # The keyed fingerprint still recognises a retry, and a changed code under the same
    # request id is still told apart.
    again = await shop.orders.Checkout(sale, metadata=MD, timeout=30)
    assert again.order == sold.order
    changed = order_pb2.CheckoutRequest()
    changed.CopyFrom(sale)
    changed.coupon_codes[:] = [code + "X"]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await shop.orders.Checkout(changed, metadata=MD, timeout=30)
    assert read_error(err.value).reason == "idempotency_key_reused", read_error(err.value)

    # A web order naming a coupon, paid with the gift card just sold.
    web_code = await shop.coupon()
    web = order_pb2.CreateOrderRequest(
        request_id=str(uuid.uuid4()),
        channel="web",
        location_id=shop.location_id,
        lines=[order_pb2.OrderLineRequest(sku="TEE", quantity=1)],
        coupon_codes=[web_code],
    )
    made = await shop.orders.CreateOrder(web, metadata=MD, timeout=30)
    assert [c.status for c in made.order.coupons] == ["reserved"]
    assert_kept_keyed(shop, "CreateOrder", web, web_code)
    tender = order_pb2.AddTenderRequest(
        request_id=str(uuid.uuid4()),
        order_id=made.order.id,
        tender_type=payment_pb2.TENDER_TYPE_GIFT_CARD,
        gift_card_code=printed,
    )
    await shop.orders.AddTender(tender, metadata=MD, timeout=30)
    assert_kept_keyed(shop, "AddTender", tender, printed)
