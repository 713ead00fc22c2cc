"""Itemized returns with the real services (PostgreSQL, NATS, inventory, payment and order in
this process): refunded to the original tenders, never more than was paid, restocked at the
returning store once; retries apply once; bad input writes nothing; 50 concurrent returns of
the same line refund at most what it paid."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import grpc
import psycopg
import pytest
import pytest_asyncio
from google.protobuf import field_mask_pb2
from google.protobuf.timestamp_pb2 import Timestamp
from order_shop import serve_order

from pos.common.v1 import money_pb2
from pos.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from pos.order.v1 import events_pb2 as order_events
from pos.order.v1 import order_pb2, order_pb2_grpc
from pos.payment.v1 import events_pb2 as payment_events
from pos.payment.v1 import gift_cards_pb2 as G
from pos.payment.v1 import gift_cards_pb2_grpc, payment_pb2, payment_pb2_grpc
from pos_devstack.testing import Infra, polled, serve_in_process, until
from pos_kit.db import make_engine
from pos_kit.errors import Conflict
from pos_kit.grpc_client import read_error
from pos_order.adapters.returns_repository import SqlReturns
from pos_order.service import returns

pytestmark = pytest.mark.asyncio(loop_scope="session")

MERCHANT = (("x-merchant-id", "mer_returns"),)
OTHER = (("x-merchant-id", "mer_returns_other"),)


def usd(amount: int) -> money_pb2.Money:
    return money_pb2.Money(amount=amount, currency="USD")


@dataclass
class Shop:
    orders: order_pb2_grpc.OrderServiceStub
    payments: payment_pb2_grpc.PaymentServiceStub
    cards: gift_cards_pb2_grpc.GiftCardServiceStub
    catalog: inventory_pb2_grpc.InventoryServiceStub
    order_db: str
    payment_db: str
    store: str  # sells, 8.25 % tax
    outlet: str  # takes returns back
    products: dict[str, str]  # sku -> id

    def sql(self, query: str, *args: Any, db: str = "") -> list[tuple[Any, ...]]:
        with psycopg.connect(db or self.order_db) as conn:
            return conn.execute(query, args).fetchall()  # type: ignore[arg-type]

    def refund_heard(self, refund_id: str) -> bool:
        """The order service has consumed the payment service's refund_succeeded of it."""
        for event_id, payload in self.sql(
            "SELECT event_id, payload FROM outbox"
            " WHERE subject = 'pos.payment.v1.refund_succeeded'",
            db=self.payment_db,
        ):
            if payment_events.RefundSucceeded.FromString(payload).refund.id == refund_id:
                return bool(
                    self.sql(
                        "SELECT 1 FROM inbox WHERE consumer = 'order-payments' AND event_id = %s",
                        event_id,
                    )
                )
        return False

    async def order(self, order_id: str) -> order_pb2.Order:
        got = await self.orders.GetOrder(
            order_pb2.GetOrderRequest(id=order_id), metadata=MERCHANT, timeout=5
        )
        return got.order

    async def pending(self, *lines: tuple[str, int], channel: str = "register") -> order_pb2.Order:
        """An order at the store, not paid yet."""
        created = await self.orders.CreateOrder(
            order_pb2.CreateOrderRequest(
                request_id=str(uuid.uuid4()),
                channel=channel,
                location_id=self.store,
                lines=[order_pb2.OrderLineRequest(sku=s, quantity=q) for s, q in lines if q],
            ),
            metadata=MERCHANT,
            timeout=10,
        )
        return created.order

    async def tender(self, order_id: str, **fields: Any) -> order_pb2.AddTenderResponse:
        return await self.orders.AddTender(  # type: ignore[no-any-return]
            order_pb2.AddTenderRequest(request_id=str(uuid.uuid4()), order_id=order_id, **fields),
            metadata=MERCHANT,
            timeout=10,
        )

    async def confirm(self, order_id: str) -> order_pb2.Order:
        confirmed = await self.orders.ConfirmOrder(
            order_pb2.ConfirmOrderRequest(request_id=str(uuid.uuid4()), order_id=order_id),
            metadata=MERCHANT,
            timeout=10,
        )
        return confirmed.order

    async def sale(self, tee: int, mug: int, split: int = 0) -> order_pb2.Order:
        """An in-store order, paid by two cards when `split` (the first card's amount)."""
        order = await self.pending(("TEE", tee), ("MUG", mug))
        card = payment_pb2.TENDER_TYPE_CARD
        if split:
            await self.tender(order.id, tender_type=card, amount=usd(split), card_token="tok_visa")
        await self.tender(order.id, tender_type=card, card_token="tok_mastercard")
        return await self.confirm(order.id)

    def ask(self, order_id: str, *lines: tuple[str, int], **extra: Any) -> Any:
        return order_pb2.CreateReturnRequest(
            request_id=extra.pop("request_id", str(uuid.uuid4())),
            order_id=order_id,
            lines=[
                order_pb2.ReturnLineRequest(
                    line_id=i, quantity=q, restock=True, location_id=extra.get("at", "")
                )
                for i, q in lines
            ],
            reason=extra.get("reason", "unwanted"),
            override_reason=extra.get("override", ""),
        )

    async def returns_of(self, order_id: str) -> list[order_pb2.Return]:
        found = await self.orders.ListReturns(
            order_pb2.ListReturnsRequest(order_id=order_id), metadata=MERCHANT, timeout=5
        )
        return list(found.returns)

    async def refunded(self, order_id: str) -> dict[str, tuple[int, int]]:
        """Each payment's (captured, refunded), as the payment service knows them."""
        found = await self.payments.GetOrderPayments(
            payment_pb2.GetOrderPaymentsRequest(order_id=order_id), metadata=MERCHANT, timeout=5
        )
        return {p.id: (p.captured.amount, p.refunded.amount) for p in found.payments}

    async def on_hand(self, location_id: str) -> int:
        found = await self.catalog.GetStockLevels(
            inventory_pb2.GetStockLevelsRequest(skus=["TEE"], location_id=location_id),
            metadata=MERCHANT,
            timeout=5,
        )
        return sum(level.on_hand for level in found.levels)


async def _location(catalog: Any, name: str, tax: int) -> str:
    made = await catalog.CreateLocation(
        inventory_pb2.CreateLocationRequest(
            request_id=f"returns-{name}",
            name=name,
            currency="USD",
            tax_rate_bps=tax,
            pickup_enabled=True,
            ship_enabled=True,
        ),
        metadata=MERCHANT,
        timeout=5,
    )
    return str(made.location.id)


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
            catalog = inventory_pb2_grpc.InventoryServiceStub(inventory.channel)
            store = await _location(catalog, "Main St", 825)
            outlet = await _location(catalog, "Outlet", 0)
            products = {}
            for sku, price in (("TEE", 2500), ("MUG", 1200)):
                made = await catalog.CreateProduct(
                    inventory_pb2.CreateProductRequest(
                        request_id=f"returns-{sku}", sku=sku, name=sku.title(), price=usd(price)
                    ),
                    metadata=MERCHANT,
                    timeout=5,
                )
                products[sku] = made.product.id
            yield Shop(
                order_pb2_grpc.OrderServiceStub(order.channel),
                payment_pb2_grpc.PaymentServiceStub(payment.channel),
                gift_cards_pb2_grpc.GiftCardServiceStub(payment.channel),
                catalog,
                order.database_url,
                payment.database_url,
                store,
                outlet,
                products,
            )
    finally:
        server.stop()


async def test_an_itemized_return_refunds_the_tenders_and_restocks_once(shop: Shop) -> None:
    # 3 x 25.00 + 12.00 = 87.00, tax 8.25 % = 7.18: 94.18, paid 30.00 then 64.18.
    order = await shop.sale(3, 1, split=3000)
    assert order.total.amount == 9418
    first, second = order.payment_ids
    request = shop.ask(order.id, ("L1", 2), at=shop.outlet)

    answer = await shop.orders.CreateReturn(request, metadata=MERCHANT, timeout=20)

    ret = answer.order_return
    # Two of three tees: two thirds of the line's 75.00 and its tax share (6.19), floored.
    line_paid = 7500 + 619
    assert ret.amount.amount == line_paid * 2 // 3 == 5412
    assert ret.status == "completed" and ret.lines[0].location_id == shop.outlet
    # From the last tender taken backwards: all of it from the second card.
    assert [(r.payment_id, r.amount.amount) for r in ret.refunds] == [(second, 5412)]
    assert await shop.refunded(order.id) == {first: (3000, 0), second: (6418, 5412)}
    assert await shop.on_hand(shop.outlet) == 2
    # The order's status does not change; what its tenders hold does.
    assert answer.order.status == order_pb2.ORDER_STATUS_COMPLETED
    assert answer.order.paid.amount == 9418 - 5412
    events = shop.sql(
        "SELECT count(*) FROM outbox WHERE subject = %s", "pos.order.v1.order_returned"
    )
    assert events == [(1,)]

    # The same request again: the same return, nothing refunded or restocked twice.
    again = await shop.orders.CreateReturn(request, metadata=MERCHANT, timeout=20)
    assert again.order_return == ret
    assert await shop.refunded(order.id) == {first: (3000, 0), second: (6418, 5412)}
    assert await shop.on_hand(shop.outlet) == 2

    # The last tee and the mug: everything is back, exactly what was paid, over both cards.
    rest = await shop.orders.CreateReturn(
        shop.ask(order.id, ("L1", 1), ("L2", 1)), metadata=MERCHANT, timeout=20
    )
    assert rest.order_return.amount.amount == 9418 - 5412
    assert await shop.refunded(order.id) == {first: (3000, 3000), second: (6418, 6418)}
    assert len(await shop.returns_of(order.id)) == 2
    # Each return's event says what all the order's returns took back of its goods so far.
    told = [
        order_events.OrderReturned.FromString(payload)
        for (payload,) in shop.sql(
            "SELECT payload FROM outbox WHERE subject = 'pos.order.v1.order_returned'"
            " AND position(%s::bytea in payload) > 0 ORDER BY seq",
            order.id.encode(),
        )
    ]
    assert [(e.goods_total.amount, e.goods_returned.amount) for e in told] == [
        (9418, 5412),
        (9418, 9418),
    ]


async def test_bad_returns_are_refused_and_write_nothing(shop: Shop) -> None:
    order = await shop.sale(2, 0)
    await shop.orders.CreateReturn(shop.ask(order.id, ("L1", 1)), metadata=MERCHANT, timeout=20)
    before = (await shop.returns_of(order.id), await shop.refunded(order.id))
    other = await shop.sale(1, 1)

    async def refused(request: Any, metadata: Any = MERCHANT) -> Any:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await shop.orders.CreateReturn(request, metadata=metadata, timeout=20)
        return err.value

    more = await refused(shop.ask(order.id, ("L1", 2)))  # one left
    assert more.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [f.field for f in read_error(more).violations] == ["lines[0].quantity"]
    foreign_line = await refused(shop.ask(order.id, ("L2", 1)))  # `other` has an L2, not this
    assert [f.field for f in read_error(foreign_line).violations] == ["lines[0].line_id"]
    foreign = await refused(shop.ask(order.id, ("L1", 1)), OTHER)
    assert foreign.code() == grpc.StatusCode.NOT_FOUND
    elsewhere = await refused(shop.ask(order.id, ("L1", 1), at="loc_of_nobody"))
    assert elsewhere.code() == grpc.StatusCode.NOT_FOUND
    no_reason = await refused(shop.ask(order.id, ("L1", 1), reason=""))
    assert [f.field for f in read_error(no_reason).violations] == ["reason"]
    # One payment named twice (the amounts adding up): refused before anything is planned,
    # so the unit is still there to return.
    (payment,) = order.payment_ids
    twice = shop.ask(order.id, ("L1", 1))
    unit = order.total.amount - before[0][0].amount.amount  # the other tee's share
    for amount in (unit - 1, 1):
        twice.tender_amounts.add(payment_id=payment, amount=usd(amount))
    named_twice = await refused(twice)
    assert [f.field for f in read_error(named_twice).violations] == ["tender_amounts[1].payment_id"]
    assert (await shop.returns_of(order.id), await shop.refunded(order.id)) == before

    # Past the window (0 days): refused without an override, taken with one.
    await shop.orders.UpdateOrderSettings(
        order_pb2.UpdateOrderSettingsRequest(request_id=str(uuid.uuid4()), return_window_days=0),
        metadata=MERCHANT,
        timeout=5,
    )
    try:
        late = await refused(shop.ask(order.id, ("L1", 1)))
        assert late.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert read_error(late).reason == "return_window_closed"
        assert [f.field for f in read_error(late).violations] == ["override_reason"]
        spaces = await refused(shop.ask(order.id, ("L1", 1), override="   "))
        assert spaces.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert [f.field for f in read_error(spaces).violations] == ["override_reason"]
        assert (await shop.returns_of(order.id), await shop.refunded(order.id)) == before
        assert await shop.returns_of(other.id) == []
        taken = await shop.orders.CreateReturn(
            shop.ask(order.id, ("L1", 1), override=" receipt shows a gift  "),
            metadata=MERCHANT,
            timeout=20,
        )
        assert taken.order_return.override_reason == "receipt shows a gift"
    finally:
        await shop.orders.UpdateOrderSettings(
            order_pb2.UpdateOrderSettingsRequest(
                request_id=str(uuid.uuid4()), return_window_days=30
            ),
            metadata=MERCHANT,
            timeout=5,
        )


async def test_a_list_of_returns_checks_its_filters(shop: Shop) -> None:
    """A direct caller's filters are checked as the gateway's are: an unknown status and a
    reversed window are INVALID_ARGUMENT naming the field; an order not the merchant's is
    NOT_FOUND; with no order the merchant's returns across orders are listed."""
    order = await shop.sale(2, 0)
    made = await shop.orders.CreateReturn(
        shop.ask(order.id, ("L1", 1)), metadata=MERCHANT, timeout=20
    )

    async def listed(**fields: Any) -> list[str]:
        found = await shop.orders.ListReturns(
            order_pb2.ListReturnsRequest(**fields), metadata=MERCHANT, timeout=5
        )
        return [r.id for r in found.returns]

    assert made.order_return.id in await listed(status="completed")
    assert made.order_return.id not in await listed(status="pending")
    assert await listed(order_id=order.id, register_id="reg_elsewhere") == []
    later, earlier = Timestamp(seconds=2_000_000_000), Timestamp(seconds=1_000_000_000)
    for fields, field in (
        ({"status": "refunded"}, "status"),
        ({"created_since": later, "created_before": earlier}, "created_before"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await listed(**fields)
        assert [f.field for f in read_error(err.value).violations] == [field]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await shop.orders.ListReturns(
            order_pb2.ListReturnsRequest(order_id=order.id), metadata=OTHER, timeout=5
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_units_restocked_at_the_orders_closed_store_are_refused_by_the_service(
    shop: Shop,
) -> None:
    """Asked of the order service itself (no gateway in front): units restocked naming no
    store of their own go back to the order's store, and one the merchant closed receives
    none, as a store named on the line does not. A `location_inactive` conflict naming each
    such line's `location_id` (with the store's id), before anything is returned, refunded or
    restocked; units not restocked, or restocked at an open store, go back."""
    closing = await _location(shop.catalog, "Closing St", 0)
    made = await shop.orders.CreateOrder(
        order_pb2.CreateOrderRequest(
            request_id=str(uuid.uuid4()),
            channel="register",
            location_id=closing,
            lines=[order_pb2.OrderLineRequest(sku="TEE", quantity=3)],
        ),
        metadata=MERCHANT,
        timeout=10,
    )
    card = payment_pb2.TENDER_TYPE_CARD
    await shop.tender(made.order.id, tender_type=card, card_token="tok_visa")
    order = await shop.confirm(made.order.id)
    await shop.catalog.UpdateLocation(
        inventory_pb2.UpdateLocationRequest(
            request_id=str(uuid.uuid4()),
            id=closing,
            status=inventory_pb2.LOCATION_STATUS_INACTIVE,
            update_mask=field_mask_pb2.FieldMask(paths=["status"]),
        ),
        metadata=MERCHANT,
        timeout=5,
    )
    # The sale's units leave the store's stock when inventory hears of it.
    on_hand = await polled(lambda: shop.on_hand(closing), lambda n: n == -3)

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await shop.orders.CreateReturn(shop.ask(order.id, ("L1", 1)), metadata=MERCHANT, timeout=20)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    problem = read_error(err.value)
    assert problem.reason == "location_inactive"
    assert [f.field for f in problem.violations] == ["lines[0].location_id"]
    assert problem.metadata["location_id"] == closing
    assert await shop.returns_of(order.id) == []
    assert [r for _, r in (await shop.refunded(order.id)).values()] == [0]
    assert await shop.on_hand(closing) == on_hand

    kept = shop.ask(order.id, ("L1", 1))
    kept.lines[0].restock = False
    await shop.orders.CreateReturn(kept, metadata=MERCHANT, timeout=20)
    await shop.orders.CreateReturn(
        shop.ask(order.id, ("L1", 1), at=shop.outlet), metadata=MERCHANT, timeout=20
    )
    assert len(await shop.returns_of(order.id)) == 2
    assert await shop.on_hand(closing) == on_hand


async def test_fifty_concurrent_returns_of_one_line_refund_at_most_what_it_paid(
    shop: Shop,
) -> None:
    order = await shop.sale(10, 0)  # 250.00 + 20.63 tax = 270.63
    assert order.total.amount == 27063

    async def one() -> Any:
        # Units a return still being made holds are a 409 (FAILED_PRECONDITION): the caller
        # is told to retry, and does, as a client would, until it has its return or none is
        # left (a 400). Without the retries, a return that failed after holding its unit would
        # leave that unit unreturned and the count below short.
        for _ in range(200):
            try:
                answer = await shop.orders.CreateReturn(
                    shop.ask(order.id, ("L1", 1)), metadata=MERCHANT, timeout=60
                )
            except grpc.aio.AioRpcError as exc:
                if exc.code() is grpc.StatusCode.FAILED_PRECONDITION:
                    await asyncio.sleep(0.05)
                    continue
                return exc
            return answer.order_return
        raise AssertionError("a return was told to retry 200 times")

    outcomes = await asyncio.gather(*(one() for _ in range(50)))
    made = [o for o in outcomes if isinstance(o, order_pb2.Return)]
    refused = [o for o in outcomes if not isinstance(o, order_pb2.Return)]
    assert len(made) == 10
    # Once every unit is returned, the rest are told none is left.
    assert {e.code() for e in refused} == {grpc.StatusCode.INVALID_ARGUMENT}
    assert sum(r.amount.amount for r in made) == 27063
    ((captured, refunded),) = (await shop.refunded(order.id)).values()
    assert captured == refunded == 27063


async def test_a_return_without_a_receipt_is_store_credit_at_the_lowest_recent_price(
    shop: Shop,
) -> None:
    customer = f"cus_{uuid.uuid4().hex[:12]}"
    # The customer as the order service learns them from the customer service's events.
    with psycopg.connect(shop.order_db) as conn:
        conn.execute(
            "INSERT INTO known_customers (merchant_id, customer_id, version) VALUES (%s, %s, 1)",
            (MERCHANT[0][1], customer),
        )
    # A T-shirt sold at 25.00, then at 20.00 after a price change: the credit is 20.00 each.
    await shop.sale(1, 0)
    await shop.catalog.UpdateProduct(
        inventory_pb2.UpdateProductRequest(
            request_id=str(uuid.uuid4()),
            id=shop.products["TEE"],
            product=inventory_pb2.ProductInput(sku="TEE", name="Tee", price=usd(2000)),
            update_mask=field_mask_pb2.FieldMask(paths=["price"]),
        ),
        metadata=MERCHANT,
        timeout=5,
    )
    await shop.sale(1, 0)
    stocked = await shop.on_hand(shop.outlet)
    request = order_pb2.CreateReceiptlessReturnRequest(
        request_id=str(uuid.uuid4()),
        location_id=shop.outlet,
        customer_id=customer,
        lines=[order_pb2.ReceiptlessReturnLine(sku="TEE", quantity=2, restock=True)],
        reason="no_receipt",
    )

    answer = await shop.orders.CreateReceiptlessReturn(request, metadata=MERCHANT, timeout=20)

    ret, credit = answer.order_return, answer.store_credit
    assert ret.amount.amount == 4000 and ret.status == "completed" and not ret.refunds
    assert ret.customer_id == customer and ret.store_credit_gift_card_id == credit.gift_card_id
    card = await shop.cards.LookupGiftCard(
        G.LookupGiftCardRequest(code=credit.code), metadata=MERCHANT, timeout=5
    )
    assert card.gift_card.balance.amount == 4000
    assert (card.gift_card.customer_id, card.gift_card.reason) == (customer, "store_credit")
    assert await shop.on_hand(shop.outlet) == stocked + 2
    replay = await shop.orders.CreateReceiptlessReturn(request, metadata=MERCHANT, timeout=20)
    assert replay.order_return == ret and replay.store_credit.code == ""
    assert await shop.on_hand(shop.outlet) == stocked + 2
    # Told as any return is (once, with no order), and read back by its id, by its merchant.
    told = [
        order_events.OrderReturned.FromString(payload)
        for (payload,) in shop.sql(
            "SELECT payload FROM outbox WHERE subject = 'pos.order.v1.order_returned'"
            " AND position(%s::bytea in payload) > 0",
            ret.id.encode(),
        )
    ]
    assert [e.order_return for e in told] == [ret] and not told[0].HasField("order")
    got = await shop.orders.GetReturn(
        order_pb2.GetReturnRequest(id=ret.id), metadata=MERCHANT, timeout=5
    )
    assert got.order_return == ret
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await shop.orders.GetReturn(
            order_pb2.GetReturnRequest(id=ret.id), metadata=OTHER, timeout=5
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND

    never_sold = order_pb2.CreateReceiptlessReturnRequest(
        request_id=str(uuid.uuid4()),
        location_id=shop.outlet,
        customer_id=customer,
        lines=[order_pb2.ReceiptlessReturnLine(sku="HAT", quantity=1, restock=True)],
        reason="no_receipt",
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await shop.orders.CreateReceiptlessReturn(never_sold, metadata=MERCHANT, timeout=20)
    assert [f.field for f in read_error(err.value).violations] == ["lines[0].sku"]
    nobody = order_pb2.CreateReceiptlessReturnRequest()
    nobody.CopyFrom(request)
    nobody.request_id, nobody.customer_id = str(uuid.uuid4()), ""
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await shop.orders.CreateReceiptlessReturn(nobody, metadata=MERCHANT, timeout=20)
    assert [f.field for f in read_error(err.value).violations] == ["customer_id"]

    # A credit the gift cards refuse for good (more than a card may hold) is a refusal: no
    # return is left behind for the resumer to complete later, once the limit is raised.
    async def limit(max_balance: int) -> None:
        await shop.cards.UpdateGiftCardSettings(
            G.UpdateGiftCardSettingsRequest(request_id=str(uuid.uuid4()), max_balance=max_balance),
            metadata=MERCHANT,
            timeout=5,
        )

    def pending() -> int:
        ((count,),) = shop.sql("SELECT count(*) FROM order_returns WHERE status = 'pending'")
        return int(count)

    before, stocked = pending(), await shop.on_hand(shop.outlet)
    was = await shop.cards.GetGiftCardSettings(
        G.GetGiftCardSettingsRequest(), metadata=MERCHANT, timeout=5
    )
    await limit(1000)
    try:
        too_much = order_pb2.CreateReceiptlessReturnRequest()
        too_much.CopyFrom(request)
        too_much.request_id = str(uuid.uuid4())
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await shop.orders.CreateReceiptlessReturn(too_much, metadata=MERCHANT, timeout=20)
        refusal = read_error(err.value)
        assert refusal.reason == "gift_card_balance_limit"
        # Named by this request's field (the lines the credit is for), never by the payment
        # service's own request's (`amount.amount`), which the caller did not send.
        assert [v.field for v in refusal.violations] == ["lines"], refusal.violations
        assert pending() == before
    finally:
        await limit(was.settings.max_balance)
    assert await shop.on_hand(shop.outlet) == stocked


async def test_after_a_goodwill_refund_only_the_last_units_back_take_what_is_left(
    shop: Shop,
) -> None:
    """Two tees; most of the money given back by goodwill (through the payments API, read by
    the return whether or not its event reached the order). A return of one tee, worth more
    than the payments hold, is refused (409 naming the lines, nothing written); the return
    that brings the last units back refunds what is left: together with the goodwill, exactly
    what the card took."""
    order = await shop.sale(2, 0)
    (payment,) = order.payment_ids
    goodwill = order.total.amount - 1000
    await shop.payments.CreateRefund(
        payment_pb2.CreateRefundRequest(
            request_id=str(uuid.uuid4()), payment_id=payment, amount=usd(goodwill),
            reason="goodwill",
        ),
        metadata=MERCHANT,
        timeout=10,
    )  # fmt: skip
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await shop.orders.CreateReturn(shop.ask(order.id, ("L1", 1)), metadata=MERCHANT, timeout=20)
    problem = read_error(err.value)
    assert problem.reason == "amount_exceeds_refundable"
    assert problem.metadata["refundable"] == "1000"
    assert [v.field for v in problem.violations] == ["lines"]
    assert await shop.returns_of(order.id) == []
    assert shop.sql("SELECT count(*) FROM order_returns WHERE order_id = %s", order.id) == [(0,)]

    last = await shop.orders.CreateReturn(
        shop.ask(order.id, ("L1", 2)), metadata=MERCHANT, timeout=20
    )
    assert last.order_return.amount.amount == 1000
    assert sum(ln.amount.amount for ln in last.order_return.lines) == 1000
    assert await shop.refunded(order.id) == {payment: (order.total.amount, order.total.amount)}


async def test_a_refund_made_outside_a_return_counts_once_on_the_order(shop: Shop) -> None:
    """A refund through the payments API reaches the order by its event: `paid` counts it; a
    return afterwards counts its own refund once, whether the order hears of it from the
    payment service's answer or from its event, in either order."""
    order = await shop.sale(2, 0)
    (payment,) = order.payment_ids
    total = order.total.amount
    goodwill = await shop.payments.CreateRefund(
        payment_pb2.CreateRefundRequest(
            request_id=str(uuid.uuid4()), payment_id=payment, amount=usd(500), reason="goodwill"
        ),
        metadata=MERCHANT,
        timeout=10,
    )
    await until(lambda: shop.refund_heard(goodwill.refunds[0].id))
    known = await shop.order(order.id)
    assert known.paid.amount == total - 500 and known.version > order.version

    answer = await shop.orders.CreateReturn(
        shop.ask(order.id, ("L1", 1)), metadata=MERCHANT, timeout=20
    )
    returned = answer.order_return.amount.amount
    assert 0 < returned <= total - 500
    assert answer.order.paid.amount == total - 500 - returned
    await until(lambda: shop.refund_heard(answer.order_return.refunds[0].refund_id))
    assert (await shop.order(order.id)).paid.amount == total - 500 - returned
    assert await shop.refunded(order.id) == {payment: (total, 500 + returned)}


async def test_a_return_whose_refund_the_processor_refuses_is_not_done(shop: Shop) -> None:
    """Paid by a gift card whose spend its own refund gave back since (`RefundToGiftCard`):
    the payment's refund to it fails at the processor (`gift_card_refund_exceeds_spent`). The
    return is refused (409 `refund_failed`) and dropped: nothing restocked, the order still
    paid, no return left to hold the unit."""
    issued = await shop.cards.IssueGiftCard(
        G.IssueGiftCardRequest(request_id=str(uuid.uuid4()), amount=usd(10_000)),
        metadata=MERCHANT,
        timeout=10,
    )
    order = await shop.pending(("TEE", 1))
    await shop.tender(
        order.id, tender_type=payment_pb2.TENDER_TYPE_GIFT_CARD, gift_card_code=issued.code
    )
    sold = await shop.confirm(order.id)
    await shop.cards.RefundToGiftCard(
        G.RefundToGiftCardRequest(
            request_id=str(uuid.uuid4()), id=issued.gift_card.id, amount=usd(sold.total.amount)
        ),
        metadata=MERCHANT,
        timeout=10,
    )
    # Restocked (were it done) at the outlet, which no sale touches: the store's own count
    # still moves when inventory applies this sale's event, at a moment of its own.
    stocked = await shop.on_hand(shop.outlet)

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await shop.orders.CreateReturn(
            shop.ask(order.id, ("L1", 1), at=shop.outlet), metadata=MERCHANT, timeout=20
        )

    assert read_error(err.value).reason == "refund_failed"
    assert await shop.returns_of(order.id) == []
    assert await shop.on_hand(shop.outlet) == stocked
    assert (await shop.order(order.id)).paid.amount == sold.total.amount


async def test_a_tender_voided_through_the_payments_api_pays_for_nothing(shop: Shop) -> None:
    """A card tender of a pending order voided at the payment service: the order hears of it
    (its event), owes the whole total again, and a tender for the balance takes all of it."""
    order = await shop.pending(("MUG", 1), channel="web")
    card = payment_pb2.TENDER_TYPE_CARD
    part = await shop.tender(order.id, tender_type=card, amount=usd(500), card_token="tok_visa")
    assert part.order.paid.amount == 500
    await shop.payments.VoidPayment(
        payment_pb2.VoidPaymentRequest(request_id=str(uuid.uuid4()), payment_id=part.payment.id),
        metadata=MERCHANT,
        timeout=10,
    )
    deadline = asyncio.get_running_loop().time() + 20
    while (await shop.order(order.id)).paid.amount != 0:
        assert asyncio.get_running_loop().time() < deadline, "the void never reached the order"
        await asyncio.sleep(0.05)

    rest = await shop.tender(order.id, tender_type=card, card_token="tok_visa")
    assert rest.payment.amount.amount == order.total.amount
    confirmed = await shop.confirm(order.id)
    assert confirmed.status in (
        order_pb2.ORDER_STATUS_CONFIRMED,
        order_pb2.ORDER_STATUS_COMPLETED,
    )
    assert confirmed.paid.amount == order.total.amount


async def test_a_return_refunded_in_part_waits_for_a_person_who_settles_it(shop: Shop) -> None:
    """Paid 10.00 by a gift card whose spend its own refund gave back since, and the rest by
    card: the card's refund goes
    through, the gift card's is refused at the processor. The return is not dropped (money went
    back) nor retried: it waits, pending with its refusal, until a person settles it (here: the
    10.00 paid in cash from the till). Then it is completed with who, why, how much and how,
    restocked once, and the order counts only the refund that went through."""
    issued = await shop.cards.IssueGiftCard(
        G.IssueGiftCardRequest(request_id=str(uuid.uuid4()), amount=usd(10_000)),
        metadata=MERCHANT,
        timeout=10,
    )
    order = await shop.pending(("TEE", 2))
    await shop.tender(
        order.id,
        tender_type=payment_pb2.TENDER_TYPE_GIFT_CARD,
        gift_card_code=issued.code,
        amount=usd(1000),
    )
    await shop.tender(order.id, tender_type=payment_pb2.TENDER_TYPE_CARD, card_token="tok_visa")
    sold = await shop.confirm(order.id)
    gift, card = sold.payment_ids
    await shop.cards.RefundToGiftCard(
        G.RefundToGiftCardRequest(
            request_id=str(uuid.uuid4()), id=issued.gift_card.id, amount=usd(1000)
        ),
        metadata=MERCHANT,
        timeout=10,
    )
    stocked = await shop.on_hand(shop.outlet)  # the units come back there
    asked = shop.ask(order.id, ("L1", 2), at=shop.outlet)

    for _ in range(2):  # a retry answers the same, asking the payment service nothing more
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await shop.orders.CreateReturn(asked, metadata=MERCHANT, timeout=20)
        problem = read_error(err.value)
        assert problem.reason == "refund_partly_failed"
    (ret,) = await shop.returns_of(order.id)
    assert problem.metadata["return_id"] == ret.id
    assert (ret.status, ret.refusal_code) == ("pending", "refund_partly_failed")
    assert sorted((r.payment_id, r.status) for r in ret.refunds) == sorted(
        [(card, "succeeded"), (gift, "failed")]
    )
    assert await shop.refunded(order.id) == {
        gift: (1000, 0),
        card: (sold.total.amount - 1000, sold.total.amount - 1000),
    }
    assert await shop.on_hand(shop.outlet) == stocked
    refunds = shop.sql(
        "SELECT count(*) FROM refunds WHERE order_id = %s", order.id, db=shop.payment_db
    )
    assert refunds == [(2,)]

    def settle(**fields: Any) -> order_pb2.SettleReturnRequest:
        given = {"order_id": order.id, "return_id": ret.id, "settled_by": "stf_till_2", **fields}
        return order_pb2.SettleReturnRequest(request_id=str(uuid.uuid4()), **given)

    paid = settle(
        outcome=order_pb2.SETTLEMENT_OUTCOME_PAID_OUT_OF_BAND,
        tender_type=payment_pb2.TENDER_TYPE_CASH,
        reference="till 2, receipt 4471",
        reason="the gift card was lost: refunded in cash",
    )
    bad = [
        (settle(outcome=order_pb2.SETTLEMENT_OUTCOME_PAID_OUT_OF_BAND, reason="x"), "tender_type"),
        (
            settle(
                outcome=order_pb2.SETTLEMENT_OUTCOME_REFUSED,
                tender_type=payment_pb2.TENDER_TYPE_CASH,
                reason="x",
            ),
            "tender_type",
        ),
        (settle(outcome=order_pb2.SETTLEMENT_OUTCOME_REFUSED), "reason"),
        (settle(reason="x"), "outcome"),
    ]
    for request, field in bad:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await shop.orders.SettleReturn(request, metadata=MERCHANT, timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert [v.field for v in read_error(err.value).violations] == [field]
    refused = {"outcome": order_pb2.SETTLEMENT_OUTCOME_REFUSED, "reason": "x"}
    for other in (
        settle(return_id="ret_nope", **refused),
        settle(order_id=(await shop.sale(1, 0)).id, **refused),  # not a return of that order
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await shop.orders.SettleReturn(other, metadata=MERCHANT, timeout=10)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await shop.orders.SettleReturn(paid, metadata=OTHER, timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert (await shop.returns_of(order.id))[0].status == "pending"

    answer = await shop.orders.SettleReturn(paid, metadata=MERCHANT, timeout=20)

    done = answer.order_return
    assert (done.id, done.status, done.refusal_code) == (
        ret.id,
        "completed",
        "refund_partly_failed",
    )
    s = done.settlement
    assert s.outcome == order_pb2.SETTLEMENT_OUTCOME_PAID_OUT_OF_BAND
    assert (s.amount.amount, s.tender_type) == (1000, payment_pb2.TENDER_TYPE_CASH)
    assert (s.reference, s.reason, s.settled_by) == (
        "till 2, receipt 4471",
        "the gift card was lost: refunded in cash",
        "stf_till_2",
    )
    assert s.HasField("settled_at") and done.HasField("completed_at")
    # The order counts the card's refund, not the cash: the gift card's payment still holds it.
    assert answer.order.paid.amount == 1000
    assert await shop.on_hand(shop.outlet) == stocked + 2
    assert await shop.returns_of(order.id) == [done]
    again = await shop.orders.SettleReturn(paid, metadata=MERCHANT, timeout=20)
    assert again.order_return == done and await shop.on_hand(shop.outlet) == stocked + 2
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await shop.orders.SettleReturn(
            settle(outcome=order_pb2.SETTLEMENT_OUTCOME_REFUSED, reason="twice"),
            metadata=MERCHANT,
            timeout=10,
        )
    assert read_error(err.value).reason == "return_completed"
    # Nothing more was asked of the payment service, and order.returned went out once.
    assert shop.sql(
        "SELECT count(*) FROM refunds WHERE order_id = %s", order.id, db=shop.payment_db
    ) == [(2,)]
    returned = [
        order_events.OrderReturned.FromString(payload)
        for (payload,) in shop.sql(
            "SELECT payload FROM outbox WHERE subject = 'pos.order.v1.order_returned'"
        )
    ]
    assert [
        e.order_return.settlement.amount.amount for e in returned if e.order_return.id == ret.id
    ] == [1000]

    # A return that completed on its own is no one's to settle.
    plain = await shop.orders.CreateReturn(
        shop.ask((await shop.sale(1, 0)).id, ("L1", 1)), metadata=MERCHANT, timeout=20
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await shop.orders.SettleReturn(
            order_pb2.SettleReturnRequest(
                request_id=str(uuid.uuid4()),
                order_id=plain.order_return.order_id,
                return_id=plain.order_return.id,
                outcome=order_pb2.SETTLEMENT_OUTCOME_REFUSED,
                reason="x",
            ),
            metadata=MERCHANT,
            timeout=10,
        )
    assert read_error(err.value).reason == "return_completed"


async def test_a_refund_paid_out_of_band_is_not_refunded_again_nor_settled_while_pending(
    shop: Shop,
) -> None:
    """Three tees paid by card, then 10.00 by a gift card whose spend its own refund gave back
    since (the processor then declines the payment's refund). A return of one
    tee refunds the gift card first (refused) and the card (through): it waits for a person.
    While the gift card's refund is pending at the processor the return is not settled (409
    `refund_pending`, nothing written): what is unpaid is not known. Once it failed, the 10.00
    paid in cash is recorded against the gift card's payment, which has nothing left to
    refund: no refund of it pays the customer twice, and the next return is refunded from the
    card alone."""
    issued = await shop.cards.IssueGiftCard(
        G.IssueGiftCardRequest(request_id=str(uuid.uuid4()), amount=usd(10_000)),
        metadata=MERCHANT,
        timeout=10,
    )
    order = await shop.pending(("TEE", 3))
    card_type, gift_type = payment_pb2.TENDER_TYPE_CARD, payment_pb2.TENDER_TYPE_GIFT_CARD
    await shop.tender(
        order.id,
        tender_type=card_type,
        card_token="tok_visa",
        amount=usd(order.total.amount - 1000),
    )
    await shop.tender(order.id, tender_type=gift_type, gift_card_code=issued.code)
    sold = await shop.confirm(order.id)
    card, gift = sold.payment_ids
    await shop.cards.RefundToGiftCard(
        G.RefundToGiftCardRequest(
            request_id=str(uuid.uuid4()), id=issued.gift_card.id, amount=usd(1000)
        ),
        metadata=MERCHANT,
        timeout=10,
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await shop.orders.CreateReturn(shop.ask(order.id, ("L1", 1)), metadata=MERCHANT, timeout=20)
    assert read_error(err.value).reason == "refund_partly_failed"
    (ret,) = await shop.returns_of(order.id)
    (failed,) = [r.refund_id for r in ret.refunds if r.payment_id == gift]
    card_part = ret.amount.amount - 1000

    # As if the processor's answer to the gift card's refund had not come when it was refused.
    shop.sql(
        "UPDATE order_returns SET body = jsonb_set(body, '{refunds}', (SELECT jsonb_agg("
        "CASE WHEN x->>'refund_id' = %s THEN jsonb_set(x, '{status}', '\"pending\"') ELSE x END)"
        " FROM jsonb_array_elements(body->'refunds') x)) WHERE id = %s RETURNING id",
        failed,
        ret.id,
    )

    def answered(status: str) -> None:
        shop.sql(
            "UPDATE refunds SET status = %s, updated_at = now() WHERE id = %s RETURNING id",
            status,
            failed,
            db=shop.payment_db,
        )

    def paid() -> order_pb2.SettleReturnRequest:
        return order_pb2.SettleReturnRequest(
            request_id=str(uuid.uuid4()),
            order_id=order.id,
            return_id=ret.id,
            outcome=order_pb2.SETTLEMENT_OUTCOME_PAID_OUT_OF_BAND,
            tender_type=payment_pb2.TENDER_TYPE_CASH,
            reason="the gift card was lost: refunded in cash",
            settled_by="stf_till_2",
        )

    async def gift_payment() -> payment_pb2.Payment:
        got = await shop.payments.GetPayment(
            payment_pb2.GetPaymentRequest(id=gift), metadata=MERCHANT, timeout=5
        )
        return got.payment

    answered("pending")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await shop.orders.SettleReturn(paid(), metadata=MERCHANT, timeout=20)
    problem = read_error(err.value)
    assert (problem.reason, problem.metadata["refund_ids"]) == ("refund_pending", failed)
    assert (await shop.returns_of(order.id))[0].status == "pending"
    assert (await gift_payment()).paid_out_of_band.amount == 0

    answered("failed")  # the processor answered: refused
    settled = await shop.orders.SettleReturn(paid(), metadata=MERCHANT, timeout=20)
    done = settled.order_return
    assert (done.status, done.settlement.amount.amount) == ("completed", 1000)
    assert sorted((r.payment_id, r.status) for r in done.refunds) == sorted(
        [(card, "succeeded"), (gift, "failed")]
    )
    assert (await gift_payment()).paid_out_of_band.amount == 1000
    twice = shop.payments.CreateRefund(
        payment_pb2.CreateRefundRequest(request_id=str(uuid.uuid4()), payment_id=gift),
        metadata=MERCHANT,
        timeout=10,
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await twice
    assert read_error(err.value).reason == "amount_exceeds_refundable"

    # The next tee: nothing of it goes to the gift card, whose money the customer has.
    nxt = await shop.orders.CreateReturn(
        shop.ask(order.id, ("L1", 1)), metadata=MERCHANT, timeout=20
    )
    assert [(r.payment_id, r.status) for r in nxt.order_return.refunds] == [(card, "succeeded")]
    assert await shop.refunded(order.id) == {
        gift: (1000, 0),
        card: (sold.total.amount - 1000, card_part + nxt.order_return.amount.amount),
    }


async def test_units_a_refund_named_are_returned_for_what_they_were_not_given_back(
    shop: Shop,
) -> None:
    """Two tees and a mug on one card; 1.00 given back for one tee (a refund naming it, through
    the payments API). Returning that tee refunds what it was paid less the 1.00; the other tee
    and the mug then get back all they were paid: together with the 1.00, exactly what the card
    took, and no unit got back more than it was paid."""
    order = await shop.sale(2, 1)
    (payment,) = order.payment_ids
    await shop.payments.CreateRefund(
        payment_pb2.CreateRefundRequest(
            request_id=str(uuid.uuid4()),
            payment_id=payment,
            amount=usd(100),
            reason="price_adjust",
            lines=[payment_pb2.RefundLine(sku="TEE", quantity=1)],
        ),
        metadata=MERCHANT,
        timeout=10,
    )
    tees = next(ln for ln in order.lines if ln.sku == "TEE")
    mug = next(ln for ln in order.lines if ln.sku == "MUG")

    first = await shop.orders.CreateReturn(
        shop.ask(order.id, (tees.id, 1)), metadata=MERCHANT, timeout=20
    )
    second = await shop.orders.CreateReturn(
        shop.ask(order.id, (tees.id, 1), (mug.id, 1)), metadata=MERCHANT, timeout=20
    )

    by_line = {ln.line_id: ln.amount.amount for ln in second.order_return.lines}
    tee_paid = first.order_return.amount.amount + 100 + by_line[tees.id]
    assert first.order_return.amount.amount + 100 <= by_line[tees.id] + 1  # a tee's worth
    assert await shop.refunded(order.id) == {payment: (order.total.amount, order.total.amount)}
    assert tee_paid + by_line[mug.id] == order.total.amount


async def test_a_refund_naming_units_holds_the_order_against_returns_and_other_such_refunds(
    shop: Shop,
) -> None:
    """The gateway holds the order while a refund naming units checks them and is made: a
    return (or another such refund) meanwhile would count the same units again. It is a 409
    `refund_in_progress` until the hold ends; the holder may hold again (its retry)."""
    order = await shop.sale(2, 0)

    async def hold(request_id: str) -> None:
        await shop.orders.HoldOrderForRefund(
            order_pb2.HoldOrderForRefundRequest(request_id=request_id, order_id=order.id),
            metadata=MERCHANT,
            timeout=5,
        )

    async def refused(call: Any) -> str:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        return read_error(err.value).reason

    await hold("adjust-1")
    await hold("adjust-1")  # its own retry
    assert await refused(hold("adjust-2")) == "refund_in_progress"
    ask = shop.ask(order.id, ("L1", 1))
    assert await refused(shop.orders.CreateReturn(ask, metadata=MERCHANT, timeout=20)) == (
        "refund_in_progress"
    )
    assert await shop.returns_of(order.id) == []
    await shop.orders.ReleaseOrderForRefund(
        order_pb2.ReleaseOrderForRefundRequest(request_id="adjust-1", order_id=order.id),
        metadata=MERCHANT,
        timeout=5,
    )
    answer = await shop.orders.CreateReturn(ask, metadata=MERCHANT, timeout=20)
    assert answer.order_return.status == "completed"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await shop.orders.HoldOrderForRefund(
            order_pb2.HoldOrderForRefundRequest(request_id="x", order_id=order.id),
            metadata=OTHER,
            timeout=5,
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_return_that_read_the_refunds_before_a_hold_is_refused_at_its_claim(
    shop: Shop,
) -> None:
    """The race the hold's count closes: a return reads the order's refunds, a refund naming
    units holds the order, is made and lets go, then the return claims. Its read missed that
    refund, so the claim (under the order's lock) is refused and the return is asked again."""
    order = await shop.sale(1, 0)
    engine = make_engine(shop.order_db)
    try:
        async with engine.connect() as conn:
            uow: Any = SimpleNamespace(returns=SqlReturns(conn, MERCHANT[0][1]))
            seen = await returns.refunds_settled(uow, order.id)
            await returns.no_refund_since(uow, order.id, seen)  # nothing since: goes on
            await shop.orders.HoldOrderForRefund(
                order_pb2.HoldOrderForRefundRequest(request_id="adjust", order_id=order.id),
                metadata=MERCHANT,
                timeout=5,
            )
            await shop.orders.ReleaseOrderForRefund(
                order_pb2.ReleaseOrderForRefundRequest(request_id="adjust", order_id=order.id),
                metadata=MERCHANT,
                timeout=5,
            )
            with pytest.raises(Conflict) as err:
                await returns.no_refund_since(uow, order.id, seen)
            assert err.value.code == "refund_in_progress"
            assert await returns.refunds_settled(uow, order.id) == seen + 1
    finally:
        await engine.dispose()


async def test_a_refund_naming_units_gives_back_at_most_what_they_were_paid(shop: Shop) -> None:
    """Three tees and a mug, each line paid its total after its discounts, with its tax (a
    tee its share: the line's paid total times units over three, floored on the running
    count). A refund naming units (a price adjustment) gives back at most what they were
    paid: more is INVALID_ARGUMENT naming `amount`, with what it may be at most (the
    gateway's 400), asked while the order is held for the refund; less what earlier refunds
    naming the SKU and its returns gave back. Before, a refund naming one tee took any amount
    the payments had left."""
    order = await shop.sale(3, 1)
    (payment,) = order.payment_ids
    tees = next(ln for ln in order.lines if ln.sku == "TEE")
    mug = next(ln for ln in order.lines if ln.sku == "MUG")

    def paid(ln: order_pb2.OrderLine) -> int:
        return ln.line_total.amount - ln.discount_total.amount + ln.tax_total.amount

    line = paid(tees)
    dearest = line - line * 2 // 3  # the third tee's share, the largest

    async def check(amount: int, *lines: tuple[str, int]) -> int | str:
        try:
            answer = await shop.orders.CheckRefundUnits(
                order_pb2.CheckRefundUnitsRequest(
                    order_id=order.id,
                    lines=[payment_pb2.RefundLine(sku=s, quantity=q) for s, q in lines],
                    amount=usd(amount),
                ),
                metadata=MERCHANT,
                timeout=10,
            )
        except grpc.aio.AioRpcError as err:
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err
            (violation,) = read_error(err).violations
            assert violation.field == "amount"
            return violation.description.split(":")[0]
        return answer.at_most.amount

    assert await check(dearest, ("TEE", 1)) == dearest
    assert await check(dearest + 1, ("TEE", 1)) == f"must be at most {dearest}"
    both = dearest + paid(mug)
    assert await check(both + 1, ("TEE", 1), ("MUG", 1)) == f"must be at most {both}"
    assert await check(line + 1, ("TEE", 3)) == f"must be at most {line}"

    # 10.00 given back for one tee: the three tees together were paid that much less.
    await shop.payments.CreateRefund(
        payment_pb2.CreateRefundRequest(
            request_id=str(uuid.uuid4()),
            payment_id=payment,
            amount=usd(1000),
            reason="price_adjust",
            lines=[payment_pb2.RefundLine(sku="TEE", quantity=1)],
        ),
        metadata=MERCHANT,
        timeout=10,
    )
    assert await check(line - 999, ("TEE", 3)) == f"must be at most {line - 1000}"
    assert await check(dearest, ("TEE", 1)) == dearest
    # Two tees returned (their refund less the 10.00): the tee kept was paid its share.
    back = await shop.orders.CreateReturn(
        shop.ask(order.id, (tees.id, 2)), metadata=MERCHANT, timeout=20
    )
    returned = line * 2 // 3 - 1000
    assert back.order_return.amount.amount == returned
    assert await check(dearest + 1, ("TEE", 1)) == f"must be at most {dearest}"
    assert await check(dearest, ("TEE", 1)) == dearest
    # Nothing was refunded by any of the checks.
    assert await shop.refunded(order.id) == {payment: (order.total.amount, 1000 + returned)}
