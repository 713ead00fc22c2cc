"""Checkout's customer_id against real services: PostgreSQL, NATS JetStream, and the customer,
inventory and payment services running in this process.

Another merchant's customer is refused like a made-up one and leaves nothing behind; a customer
the order service learnt from events sells with the customer service stopped; a real customer
whose event has not arrived is looked up once and then known.
"""

from __future__ import annotations

import asyncio
import time
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
from psycopg import sql
from sqlalchemy import select

from pos.common.v1 import money_pb2
from pos.customer.v1 import customer_pb2, customer_pb2_grpc, loyalty_pb2
from pos.customer.v1 import events_pb2 as customer_events
from pos.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from pos.order.v1 import order_pb2, order_pb2_grpc
from pos.payment.v1 import payment_pb2
from pos_devstack.natsd import LocalNats
from pos_devstack.testing import Infra, serve_in_process
from pos_kit.db import make_engine
from pos_kit.grpc_client import read_error
from pos_order.adapters.repository import OrderUow
from pos_order.adapters.tables import kit, known_customers
from pos_order.entrypoints import consumers
from pos_order.service.handlers import customers

pytestmark = pytest.mark.asyncio(loop_scope="session")

A, B = "mer_a", "mer_b"


def md(merchant: str) -> tuple[tuple[str, str], ...]:
    return (("x-merchant-id", merchant),)


@dataclass
class Stack:
    nats: LocalNats
    order: order_pb2_grpc.OrderServiceStub
    customers: customer_pb2_grpc.CustomerServiceStub
    order_db: str
    payment_db: str
    location_id: str
    stop_customer_service: AsyncExitStack
    inventory: grpc.aio.Channel
    inventory_db: str = ""
    order_runtime: Any = None  # the order service's ServiceRuntime (its relay)

    async def customer(self, merchant: str) -> customer_pb2.Customer:
        answer = await self.customers.CreateCustomer(
            customer_pb2.CreateCustomerRequest(
                request_id=uuid.uuid4().hex, email=f"{uuid.uuid4().hex[:12]}@example.com"
            ),
            metadata=md(merchant),
            timeout=5,
        )
        return answer.customer

    async def checkout(
        self, customer_id: str, redeem_points: int = 0
    ) -> order_pb2.CheckoutResponse:
        request = order_pb2.CheckoutRequest(
            request_id=uuid.uuid4().hex,
            location_id=self.location_id,
            customer_id=customer_id,
            lines=[order_pb2.CheckoutLine(sku="TEE", quantity=1)],
            tender_type=payment_pb2.TENDER_TYPE_CASH,
            cash_tendered=money_pb2.Money(amount=10_000, currency="USD"),
            redeem_points=redeem_points,
        )
        answer: order_pb2.CheckoutResponse = await self.order.Checkout(
            request, metadata=md(A), timeout=10
        )
        return answer

    async def receive(self, units: int) -> None:
        """T-shirts received at the location."""
        await inventory_pb2_grpc.InventoryServiceStub(self.inventory).AdjustStock(
            inventory_pb2.AdjustStockRequest(
                request_id=uuid.uuid4().hex,
                sku="TEE",
                location_id=self.location_id,
                delta=units,
                reason=inventory_pb2.ADJUSTMENT_REASON_RECEIVED,
            ),
            metadata=md(A),
            timeout=5,
        )

    async def receiptless(self, customer_id: str) -> order_pb2.CreateReceiptlessReturnResponse:
        """A tee back without a receipt, credited to `customer_id` (a tee sold here first)."""
        request = order_pb2.CreateReceiptlessReturnRequest(
            request_id=uuid.uuid4().hex,
            location_id=self.location_id,
            customer_id=customer_id,
            lines=[order_pb2.ReceiptlessReturnLine(sku="TEE", quantity=1, restock=True)],
            reason="no_receipt",
        )
        answer: order_pb2.CreateReceiptlessReturnResponse = (
            await self.order.CreateReceiptlessReturn(request, metadata=md(A), timeout=20)
        )
        return answer

    def card_holder(self, gift_card_id: str) -> str:
        with psycopg.connect(self.payment_db) as conn:
            row = conn.execute(
                "SELECT customer_id FROM gift_cards WHERE merchant_id = %s AND id = %s",
                (A, gift_card_id),
            ).fetchone()
        assert row is not None
        return str(row[0])

    async def refused(self, customer_id: str) -> grpc.aio.AioRpcError:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await self.checkout(customer_id)
        return err.value

    def known(self, merchant: str, customer_id: str) -> bool:
        with psycopg.connect(self.order_db) as conn:
            row = conn.execute(
                "SELECT 1 FROM known_customers WHERE merchant_id = %s AND customer_id = %s"
                " AND NOT erased",
                (merchant, customer_id),
            ).fetchone()
        return row is not None

    async def wait_known(self, merchant: str, customer_id: str) -> None:
        deadline = time.monotonic() + 20
        while not self.known(merchant, customer_id):
            assert time.monotonic() < deadline, "the customer event never reached the read model"
            await asyncio.sleep(0.05)

    async def merge(self, winner_id: str, loser_id: str) -> None:
        await self.customers.MergeCustomers(
            customer_pb2.MergeCustomersRequest(
                request_id=uuid.uuid4().hex, winner_id=winner_id, loser_id=loser_id
            ),
            metadata=md(A),
            timeout=5,
        )

    def merged_into(self, merchant: str, customer_id: str) -> str | None:
        with psycopg.connect(self.order_db) as conn:
            row = conn.execute(
                "SELECT merged_into FROM known_customers WHERE merchant_id = %s"
                " AND customer_id = %s",
                (merchant, customer_id),
            ).fetchone()
        return row[0] if row else None

    async def wait_merged(self, merchant: str, loser_id: str, winner_id: str) -> None:
        deadline = time.monotonic() + 20
        while self.merged_into(merchant, loser_id) != winner_id:
            assert time.monotonic() < deadline, "the merge event never reached the read model"
            await asyncio.sleep(0.05)

    def written(self) -> dict[str, int]:
        """Every row a checkout could leave: the order, its event, its stored answer, a payment."""
        counts = {}
        with psycopg.connect(self.order_db) as conn:
            for table in ("orders", "outbox", "processed_requests"):
                query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
                counts[table] = conn.execute(query).fetchone()[0]  # type: ignore[index]
        with psycopg.connect(self.payment_db) as conn:
            counts["payments"] = conn.execute("SELECT count(*) FROM payments").fetchone()[0]  # type: ignore[index]
        return counts


@pytest_asyncio.fixture(loop_scope="session")
async def stack(infra: Infra) -> AsyncIterator[Stack]:
    server = infra.new_nats()
    try:
        async with AsyncExitStack() as stack:
            customer_stack = AsyncExitStack()
            stack.push_async_callback(customer_stack.aclose)
            customer = await customer_stack.enter_async_context(
                serve_in_process("customer", infra, server.url)
            )
            inventory = await stack.enter_async_context(
                serve_in_process("inventory", infra, server.url)
            )
            payment = await stack.enter_async_context(
                serve_in_process("payment", infra, server.url)
            )
            order = await stack.enter_async_context(
                serve_order(infra, server.url, inventory.port, payment.port, customer.port)
            )
            location_id = await tee_shop(inventory.channel, A)
            yield Stack(
                nats=server,
                order=order_pb2_grpc.OrderServiceStub(order.channel),
                customers=customer_pb2_grpc.CustomerServiceStub(customer.channel),
                order_db=order.database_url,
                payment_db=payment.database_url,
                location_id=location_id,
                stop_customer_service=customer_stack,
                inventory=inventory.channel,
                inventory_db=inventory.database_url,
                order_runtime=order.runtime,
            )
    finally:
        server.stop()


async def test_another_merchants_customer_is_refused_like_a_made_up_one_and_writes_nothing(
    stack: Stack,
) -> None:
    # B's customer, and the order service has even learnt it (as B's) from the events.
    foreign = (await stack.customer(B)).id
    await stack.wait_known(B, foreign)
    # B's customer the order service has not seen yet: refused after the look-up.
    stack.nats.stop()
    unseen_foreign = (await stack.customer(B)).id
    made_up = "cus_" + uuid.uuid4().hex
    before = stack.written()

    answers = {
        customer_id: await stack.refused(customer_id)
        for customer_id in (made_up, foreign, unseen_foreign)
    }

    for customer_id, err in answers.items():
        assert err.code() == grpc.StatusCode.NOT_FOUND
        error = read_error(err)
        assert error.reason == "resource_missing"
        assert error.message == f"customer {customer_id!r} was not found"
    assert stack.written() == before
    assert not stack.known(A, foreign) and not stack.known(A, unseen_foreign)


async def test_a_customer_known_from_events_sells_with_the_customer_service_stopped(
    stack: Stack,
) -> None:
    known = (await stack.customer(A)).id
    await stack.wait_known(A, known)
    await stack.stop_customer_service.aclose()

    sold = await stack.checkout(known)

    assert sold.order.customer_id == known
    assert sold.order.status == order_pb2.ORDER_STATUS_COMPLETED


async def test_an_unseen_customer_while_the_customer_service_is_down_is_503_and_writes_nothing(
    stack: Stack,
) -> None:
    stack.nats.stop()  # its event stays in the customer service's outbox
    unseen = (await stack.customer(A)).id
    await stack.stop_customer_service.aclose()
    before = stack.written()

    err = await stack.refused(unseen)

    assert err.code() == grpc.StatusCode.UNAVAILABLE
    assert read_error(err).reason == "customer_unavailable"
    assert stack.written() == before


async def test_a_real_customer_not_seen_yet_is_looked_up_once_then_known(stack: Stack) -> None:
    stack.nats.stop()  # its event stays in the customer service's outbox
    customer = await stack.customer(A)
    assert not stack.known(A, customer.id)

    first = await stack.checkout(customer.id)
    assert stack.known(A, customer.id)
    # The look-up's answer is kept: with the customer service gone, the next sale needs none.
    await stack.stop_customer_service.aclose()
    second = await stack.checkout(customer.id)

    assert first.order.customer_id == second.order.customer_id == customer.id
    assert second.order.status == order_pb2.ORDER_STATUS_COMPLETED
    # The order names the tender of each payment (a program may earn on some tenders only).
    assert list(second.order.tender_types) == ["cash"]
    assert list(second.order.tender_amounts) == [second.order.total.amount]
    assert len(second.order.payment_ids) == 1


async def test_the_read_model_keeps_the_newest_version_per_merchant(infra: Infra) -> None:
    """Events arrive out of order and race a checkout's look-up: an older version never wins,
    and a merchant sees only its own customers."""
    engine = make_engine(infra.service_database("order"))
    try:
        for version in (3, 2, 1):
            async with OrderUow(engine, kit).bind(A) as uow:
                await customers.remember_customer(uow, "cus_1", version)
                await uow.commit()
        async with OrderUow(engine, kit).bind(A) as uow:
            assert await uow.customers.contains("cus_1")
            row = await uow.conn.execute(
                select(known_customers.c.version).where(known_customers.c.customer_id == "cus_1")
            )
            assert row.scalar_one() == 3
        async with OrderUow(engine, kit).bind(B) as uow:
            assert not await uow.customers.contains("cus_1")
    finally:
        await engine.dispose()


async def test_an_erased_snapshot_after_the_tombstone_never_makes_the_customer_known(
    infra: Infra,
) -> None:
    """The customer service sends an event its erasure rewrote (a creation with the erased
    snapshot) and may send it after `customer_erased` (another consumer, or a stream copy for
    a reader that was behind): the id stays no customer here."""
    engine = make_engine(infra.service_database("order"))
    snapshot = customer_pb2.Customer(id="cus_gone", version=1, status="erased")
    try:
        async with OrderUow(engine, kit).bind(A) as uow:
            await customers.remember_customer(uow, "cus_gone", 1)
            await customers.erase_customer(uow, "cus_gone")  # the tombstone first
            await consumers.on_customer_changed(
                uow, customer_events.CustomerCreated(customer=snapshot)
            )
            await uow.commit()
        async with OrderUow(engine, kit).bind(A) as uow:
            assert not await uow.customers.contains("cus_gone")
    finally:
        await engine.dispose()


async def test_a_sale_naming_a_merged_duplicate_is_the_survivors(stack: Stack) -> None:
    """The read model learns merges from `customer_merged`: a sale naming the duplicate is
    recorded under the survivor (and so earns and enters history there), with no call."""
    survivor, duplicate = (await stack.customer(A)).id, (await stack.customer(A)).id
    await stack.wait_known(A, duplicate)
    await stack.merge(survivor, duplicate)
    await stack.wait_merged(A, duplicate, survivor)
    await stack.stop_customer_service.aclose()  # the read model alone answers

    sold = await stack.checkout(duplicate)

    assert sold.order.customer_id == survivor
    assert sold.order.status == order_pb2.ORDER_STATUS_COMPLETED
    read = await stack.order.GetOrder(
        order_pb2.GetOrderRequest(id=sold.order.id), metadata=md(A), timeout=5
    )
    assert read.order.customer_id == survivor


async def test_a_merged_duplicate_not_seen_yet_is_looked_up_to_its_survivor(stack: Stack) -> None:
    stack.nats.stop()  # neither customer's events, nor the merge's, reach the order service
    survivor, duplicate = (await stack.customer(A)).id, (await stack.customer(A)).id
    await stack.merge(survivor, duplicate)

    sold = await stack.checkout(duplicate)

    assert sold.order.customer_id == survivor
    assert stack.known(A, survivor)  # the survivor's look-up is kept, as for any unseen id


async def test_points_of_a_duplicate_merged_before_the_order_service_heard_are_the_survivors(
    stack: Stack,
) -> None:
    """The order service knows both customers, then the merge's event is late (a cashier merges
    two profiles to put their points together and rings the sale at once): the sale naming the
    duplicate redeems the points the merge moved to the survivor, and its preview prices them,
    rather than finding the duplicate without points (409) or without a customer (404)."""
    survivor, duplicate = (await stack.customer(A)).id, (await stack.customer(A)).id
    await stack.customers.AdjustPoints(
        loyalty_pb2.AdjustPointsRequest(
            request_id=uuid.uuid4().hex, customer_id=duplicate, points=100, reason="gift"
        ),
        metadata=md(A),
        timeout=5,
    )
    await stack.wait_known(A, survivor)
    await stack.wait_known(A, duplicate)
    stack.nats.stop()  # the merge's event does not reach the order service
    await stack.merge(survivor, duplicate)

    quote = await stack.order.CalculateCart(
        order_pb2.CalculateCartRequest(
            location_id=stack.location_id,
            customer_id=duplicate,
            lines=[order_pb2.OrderLineRequest(sku="TEE", quantity=1)],
            redeem_points=80,
        ),
        metadata=md(A),
        timeout=10,
    )
    sold = await stack.checkout(duplicate, redeem_points=80)

    assert quote.discount_total.amount == 80
    assert sold.order.points_redeemed == 80
    assert sold.order.status == order_pb2.ORDER_STATUS_COMPLETED
    got = await stack.customers.GetCustomer(
        customer_pb2.GetCustomerRequest(id=survivor), metadata=md(A), timeout=5
    )
    assert (got.customer.loyalty_points, got.customer.points_held) == (20, 0)


async def test_a_return_and_an_exchange_naming_a_merged_duplicate_are_the_survivors(
    stack: Stack,
) -> None:
    """As a sale: store credit for a return without a receipt naming a duplicate merged away
    is the survivor's (the return and its card name them), and so is the new order of an
    exchange of the duplicate's order. Before, the return kept the duplicate's id."""
    survivor, duplicate = (await stack.customer(A)).id, (await stack.customer(A)).id
    await stack.wait_known(A, duplicate)
    sold = await stack.checkout(duplicate)  # before the merge: the duplicate's order
    await stack.merge(survivor, duplicate)
    await stack.wait_merged(A, duplicate, survivor)
    await stack.stop_customer_service.aclose()  # the read model alone answers
    await stack.receive(5)  # the exchange's new tee is held from them

    credited = await stack.receiptless(duplicate)
    exchanged = await stack.order.CreateExchange(
        order_pb2.CreateExchangeRequest(
            request_id=uuid.uuid4().hex,
            order_id=sold.order.id,
            lines=[order_pb2.ReturnLineRequest(line_id="L1", quantity=1, restock=True)],
            new_lines=[order_pb2.ExchangeLine(sku="TEE", quantity=1)],
            reason="wrong_size",
        ),
        metadata=md(A),
        timeout=20,
    )

    ret = credited.order_return
    assert ret.customer_id == survivor and ret.status == "completed"
    assert stack.card_holder(ret.store_credit_gift_card_id) == survivor
    read = await stack.order.GetReturn(
        order_pb2.GetReturnRequest(id=ret.id), metadata=md(A), timeout=5
    )
    assert read.order_return.customer_id == survivor
    assert exchanged.order.customer_id == survivor


async def test_a_return_naming_a_merged_duplicate_not_seen_yet_is_looked_up_to_its_survivor(
    stack: Stack,
) -> None:
    stack.nats.stop()  # neither customer's events, nor the merge's, reach the order service
    survivor, duplicate = (await stack.customer(A)).id, (await stack.customer(A)).id
    await stack.merge(survivor, duplicate)
    await stack.checkout("")  # a tee sold: the price the return is credited at

    credited = await stack.receiptless(duplicate)

    assert credited.order_return.customer_id == survivor
    assert stack.card_holder(credited.store_credit.gift_card_id) == survivor


async def test_a_return_naming_an_erased_customer_is_refused(stack: Stack) -> None:
    erased = (await stack.customer(A)).id
    await stack.wait_known(A, erased)
    await stack.checkout("")
    await stack.customers.EraseCustomer(
        customer_pb2.EraseCustomerRequest(request_id=uuid.uuid4().hex, id=erased),
        metadata=md(A),
        timeout=5,
    )
    deadline = time.monotonic() + 20
    while stack.known(A, erased):
        assert time.monotonic() < deadline, "the erasure never reached the read model"
        await asyncio.sleep(0.05)

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.receiptless(erased)

    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert read_error(err.value).message == f"customer {erased!r} was not found"


async def test_merges_hold_whatever_order_the_events_arrive_in(infra: Infra) -> None:
    """The merge and the duplicate's own events come through different consumers: a creation
    or an update of the duplicate after its merge leaves it merged, and merges chain (a
    survivor merged away in turn leads on to its own survivor)."""
    engine = make_engine(infra.service_database("order"))

    def merged(winner: str, loser: str, version: int = 2) -> customer_events.CustomerMerged:
        customer = customer_pb2.Customer(id=winner, version=version, status="active")
        customer.group_ids.append("grp_vip")
        return customer_events.CustomerMerged(winner=customer, loser_id=loser)

    late = customer_pb2.Customer(id="cus_dup", version=1, status="active")
    try:
        async with OrderUow(engine, kit).bind(A) as uow:
            await consumers.on_customer_merged(uow, merged("cus_mid", "cus_dup"))
            await consumers.on_customer_changed(uow, customer_events.CustomerCreated(customer=late))
            await uow.commit()
        async with OrderUow(engine, kit).bind(A) as uow:
            found = await uow.customers.resolve("cus_dup")
            assert found is not None and found.id == "cus_mid"
            assert found.buyer.groups == ("grp_vip",)
            await consumers.on_customer_merged(uow, merged("cus_top", "cus_mid", 5))
            await uow.commit()
        async with OrderUow(engine, kit).bind(A) as uow:
            found = await uow.customers.resolve("cus_dup")
            assert found is not None and found.id == "cus_top"
        async with OrderUow(engine, kit).bind(B) as uow:
            assert await uow.customers.resolve("cus_dup") is None
    finally:
        await engine.dispose()


async def test_the_duplicates_merged_version_before_its_merge_keeps_what_it_priced_as(
    infra: Infra,
) -> None:
    """A merge announces the duplicate's new version (`customer_updated`: status merged, no
    groups or tags) beside `customer_merged`, through another consumer: heard first, it moves
    the duplicate's version and leaves what a sale naming it prices as until the merge is
    heard; then the sale is the survivor's."""
    engine = make_engine(infra.service_database("order"))
    dup = customer_pb2.Customer(id="cus_was", version=1, status="active")
    dup.group_ids.append("grp_staff")
    gone = customer_pb2.Customer(id="cus_was", version=2, status="merged", merged_into="cus_now")
    survivor = customer_pb2.Customer(id="cus_now", version=3, status="active")
    try:
        async with OrderUow(engine, kit).bind(A) as uow:
            await consumers.on_customer_changed(uow, customer_events.CustomerCreated(customer=dup))
            await consumers.on_customer_changed(uow, customer_events.CustomerUpdated(customer=gone))
            await uow.commit()
        async with OrderUow(engine, kit).bind(A) as uow:
            found = await uow.customers.resolve("cus_was")
            assert found is not None and found.id == "cus_was"
            assert found.buyer.groups == ("grp_staff",)
            version = await uow.conn.execute(
                select(known_customers.c.version).where(
                    known_customers.c.merchant_id == A, known_customers.c.customer_id == "cus_was"
                )
            )
            assert version.scalar_one() == 2
            merge = customer_events.CustomerMerged(winner=survivor, loser_id="cus_was")
            await consumers.on_customer_merged(uow, merge)
            await uow.commit()
        async with OrderUow(engine, kit).bind(A) as uow:
            found = await uow.customers.resolve("cus_was")
            assert found is not None and found.id == "cus_now"
    finally:
        await engine.dispose()
