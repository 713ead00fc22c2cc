"""The merchant's limit on store credit from returns without a receipt, with the real services
(PostgreSQL, NATS, inventory, payment and order in this process): none by default; a return
that would take its customer past it is refused before anything is done (no card, no stock,
no return); earlier returns in the window count, a merged duplicate's too; a retry replays
and counts nothing twice; concurrent returns for one customer never pass it together."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import grpc
import psycopg
import pytest
import pytest_asyncio
from order_shop import serve_order, tee_shop

from pos.common.v1 import money_pb2
from pos.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from pos.order.v1 import order_pb2, order_pb2_grpc
from pos.payment.v1 import payment_pb2
from pos_devstack.testing import Infra, serve_in_process
from pos_kit.grpc_client import read_error

pytestmark = pytest.mark.asyncio(loop_scope="session")

MERCHANT = "mer_receiptless_limit"
MD = (("x-merchant-id", MERCHANT),)


@dataclass
class Shop:
    orders: order_pb2_grpc.OrderServiceStub
    catalog: inventory_pb2_grpc.InventoryServiceStub
    order_db: str
    payment_db: str
    location_id: str

    def sql(self, query: str, *args: Any, db: str = "") -> list[tuple[Any, ...]]:
        with psycopg.connect(db or self.order_db) as conn:
            return conn.execute(query, args).fetchall()  # type: ignore[arg-type]

    def customer(self, merged_into: str | None = None) -> str:
        """A customer the order service knows (as the customer service's events tell it)."""
        customer_id = f"cus_{uuid.uuid4().hex[:12]}"
        self.sql(
            "INSERT INTO known_customers (merchant_id, customer_id, version, merged_into)"
            " VALUES (%s, %s, 1, %s) RETURNING 1",
            MERCHANT,
            customer_id,
            merged_into,
        )
        return customer_id

    async def limit(self, amount: int | None, days: int = 30) -> order_pb2.OrderSettings:
        request = order_pb2.UpdateOrderSettingsRequest(request_id=str(uuid.uuid4()))
        if amount is None:
            request.clear_receiptless_limit = True
        else:
            request.receiptless_limit.CopyFrom(order_pb2.ReceiptlessLimit(amount=amount, days=days))
        answer = await self.orders.UpdateOrderSettings(request, metadata=MD, timeout=5)
        return answer.settings

    def ask(self, customer_id: str, tees: int) -> order_pb2.CreateReceiptlessReturnRequest:
        return order_pb2.CreateReceiptlessReturnRequest(
            request_id=str(uuid.uuid4()),
            location_id=self.location_id,
            customer_id=customer_id,
            lines=[order_pb2.ReceiptlessReturnLine(sku="TEE", quantity=tees, restock=True)],
            reason="no_receipt",
        )

    async def credit(
        self, request: order_pb2.CreateReceiptlessReturnRequest
    ) -> order_pb2.CreateReceiptlessReturnResponse:
        answer: order_pb2.CreateReceiptlessReturnResponse = (
            await self.orders.CreateReceiptlessReturn(request, metadata=MD, timeout=30)
        )
        return answer

    async def refused(self, request: order_pb2.CreateReceiptlessReturnRequest) -> Any:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await self.credit(request)
        return err.value

    async def on_hand(self) -> int:
        found = await self.catalog.GetStockLevels(
            inventory_pb2.GetStockLevelsRequest(skus=["TEE"], location_id=self.location_id),
            metadata=MD,
            timeout=5,
        )
        return sum(level.on_hand for level in found.levels)

    def applied(self, customer_id: str) -> tuple[int, int, int]:
        """What returns without a receipt left for the customer: returns, their credit, and
        store credit cards."""
        ((count, credit),) = self.sql(
            "SELECT count(*), coalesce(sum((body->>'amount')::bigint), 0) FROM order_returns"
            " WHERE merchant_id = %s AND order_id = '' AND body->>'customer_id' = %s",
            MERCHANT,
            customer_id,
        )
        ((cards,),) = self.sql(
            "SELECT count(*) FROM gift_cards WHERE merchant_id = %s AND customer_id = %s",
            MERCHANT,
            customer_id,
            db=self.payment_db,
        )
        return int(count), int(credit), int(cards)


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def shop(infra: Infra) -> AsyncIterator[Shop]:
    server = infra.new_nats()
    try:
        async with AsyncExitStack() as stack:
            inventory = await stack.enter_async_context(
                serve_in_process("inventory", infra, server.url)
            )
            payment = await stack.enter_async_context(
                serve_in_process("payment", infra, server.url)
            )
            order = await stack.enter_async_context(
                serve_order(infra, server.url, inventory.port, payment.port)
            )
            location = await tee_shop(inventory.channel, MERCHANT, stock=5)
            orders = order_pb2_grpc.OrderServiceStub(order.channel)
            # A tee sold at 25.00: the price each tee back without a receipt is credited at.
            await orders.Checkout(
                order_pb2.CheckoutRequest(
                    request_id=str(uuid.uuid4()),
                    location_id=location,
                    lines=[order_pb2.CheckoutLine(sku="TEE", quantity=1)],
                    tender_type=payment_pb2.TENDER_TYPE_CASH,
                    cash_tendered=money_pb2.Money(amount=2500, currency="USD"),
                ),
                metadata=MD,
                timeout=10,
            )
            yield Shop(
                orders,
                inventory_pb2_grpc.InventoryServiceStub(inventory.channel),
                order.database_url,
                payment.database_url,
                location,
            )
    finally:
        server.stop()


async def test_the_limit_is_a_setting_none_by_default_validated_and_versioned(shop: Shop) -> None:
    got = await shop.orders.GetOrderSettings(
        order_pb2.GetOrderSettingsRequest(), metadata=MD, timeout=5
    )
    assert not got.settings.HasField("receiptless_limit")  # no limit: as before

    bad = [
        (order_pb2.ReceiptlessLimit(amount=-1, days=30), ["receiptless_limit.amount"]),
        (order_pb2.ReceiptlessLimit(amount=5000, days=0), ["receiptless_limit.days"]),
        (order_pb2.ReceiptlessLimit(amount=5000, days=366), ["receiptless_limit.days"]),
    ]
    for limit, fields in bad:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await shop.orders.UpdateOrderSettings(
                order_pb2.UpdateOrderSettingsRequest(
                    request_id=str(uuid.uuid4()), receiptless_limit=limit
                ),
                metadata=MD,
                timeout=5,
            )
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert [f.field for f in read_error(err.value).violations] == fields
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await shop.orders.UpdateOrderSettings(
            order_pb2.UpdateOrderSettingsRequest(
                request_id=str(uuid.uuid4()),
                receiptless_limit=order_pb2.ReceiptlessLimit(amount=5000, days=30),
                clear_receiptless_limit=True,
            ),
            metadata=MD,
            timeout=5,
        )
    assert [f.field for f in read_error(err.value).violations] == ["receiptless_limit"]
    unchanged = await shop.orders.GetOrderSettings(
        order_pb2.GetOrderSettingsRequest(), metadata=MD, timeout=5
    )
    assert unchanged.settings == got.settings

    set_ = await shop.limit(5000, days=7)
    assert (set_.receiptless_limit.amount, set_.receiptless_limit.days) == (5000, 7)
    assert set_.version == got.settings.version + 1
    assert set_.return_window_days == got.settings.return_window_days  # the rest as it was
    cleared = await shop.limit(None)
    assert not cleared.HasField("receiptless_limit") and cleared.version == set_.version + 1
    again = await shop.limit(None)  # already none: no change, no new version
    assert again.version == cleared.version


async def test_a_return_past_the_limit_is_refused_before_anything_is_done(shop: Shop) -> None:
    await shop.limit(5000, days=30)  # two tees' worth
    try:
        customer, other = shop.customer(), shop.customer()
        first = shop.ask(customer, 1)
        assert (await shop.credit(first)).order_return.amount.amount == 2500
        stocked = await shop.on_hand()

        # Two more tees would be 75.00 in the window: refused whole, saying what is left.
        over = await shop.refused(shop.ask(customer, 2))
        assert over.code() == grpc.StatusCode.FAILED_PRECONDITION
        problem = read_error(over)
        assert problem.reason == "receiptless_limit_exceeded"
        assert (problem.metadata["remaining"], problem.metadata["limit"]) == ("2500", "5000")
        assert problem.metadata["window_days"] == "30"
        assert shop.applied(customer) == (1, 2500, 1)
        assert await shop.on_hand() == stocked

        # The same request again replays its answer and counts nothing twice.
        replay = await shop.credit(first)
        assert replay.order_return.amount.amount == 2500
        assert shop.applied(customer) == (1, 2500, 1)

        # What is left still passes, to the minor unit; then nothing is left.
        await shop.credit(shop.ask(customer, 1))
        assert shop.applied(customer) == (2, 5000, 2)
        spent = await shop.refused(shop.ask(customer, 1))
        assert read_error(spent).metadata["remaining"] == "0"
        assert shop.applied(customer) == (2, 5000, 2)

        # Another customer has a limit of their own.
        await shop.credit(shop.ask(other, 2))
        assert shop.applied(other) == (1, 5000, 1)

        # The window rolls: returns older than its days count no more.
        shop.sql(
            "UPDATE order_returns SET created_at = created_at - interval '31 days'"
            " WHERE merchant_id = %s AND order_id = '' AND body->>'customer_id' = %s"
            " RETURNING 1",
            MERCHANT,
            customer,
        )
        await shop.credit(shop.ask(customer, 2))
        assert shop.applied(customer) == (3, 10000, 3)

        # Lifted: no limit, as for a merchant that never set one.
        await shop.limit(None)
        await shop.credit(shop.ask(customer, 3))
        assert shop.applied(customer) == (4, 17500, 4)
    finally:
        await shop.limit(None)


async def test_a_merged_duplicates_earlier_returns_count_as_the_survivors(shop: Shop) -> None:
    await shop.limit(5000, days=30)
    try:
        survivor, duplicate = shop.customer(), shop.customer()
        await shop.credit(shop.ask(duplicate, 1))  # before the merge: the duplicate's
        shop.sql(
            "UPDATE known_customers SET merged_into = %s"
            " WHERE merchant_id = %s AND customer_id = %s RETURNING 1",
            survivor,
            MERCHANT,
            duplicate,
        )

        over = await shop.refused(shop.ask(survivor, 2))
        assert read_error(over).reason == "receiptless_limit_exceeded"
        assert read_error(over).metadata["remaining"] == "2500"
        # Named by the duplicate's id, it is the survivor's return, and counts the same.
        again = await shop.refused(shop.ask(duplicate, 2))
        assert read_error(again).metadata["remaining"] == "2500"
        assert shop.applied(survivor) == (0, 0, 0)
        await shop.credit(shop.ask(survivor, 1))
        assert shop.applied(survivor) == (1, 2500, 1)
    finally:
        await shop.limit(None)


async def test_concurrent_returns_for_one_customer_never_pass_the_limit_together(
    shop: Shop,
) -> None:
    await shop.limit(5000, days=30)  # two tees' worth
    try:
        customer = shop.customer()
        stocked = await shop.on_hand()

        async def one() -> Any:
            try:
                return await shop.credit(shop.ask(customer, 1))
            except grpc.aio.AioRpcError as exc:
                return exc

        outcomes = await asyncio.gather(*(one() for _ in range(12)))

        made = [o for o in outcomes if isinstance(o, order_pb2.CreateReceiptlessReturnResponse)]
        refused = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
        assert len(made) == 2
        assert {read_error(e).reason for e in refused} == {"receiptless_limit_exceeded"}
        assert shop.applied(customer) == (2, 5000, 2)
        assert await shop.on_hand() == stocked + 2
    finally:
        await shop.limit(None)
