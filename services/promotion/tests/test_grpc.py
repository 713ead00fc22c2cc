"""The promotion service running for real: gRPC in, PostgreSQL and NATS JetStream behind it."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import nats
import pytest
import pytest_asyncio
from sqlalchemy import event, func, select

from pos.common.v1 import money_pb2
from pos.promotion.v1 import events_pb2, promotion_pb2, promotion_pb2_grpc
from pos_devstack.testing import Infra, serve_in_process
from pos_kit.events import MERCHANT_HEADER
from pos_kit.grpc_client import read_error
from pos_kit.streams import ensure_service_streams
from pos_promotion.adapters.tables import kit, promotions

pytestmark = pytest.mark.asyncio(loop_scope="session")

USD = "USD"
CREATED_SUBJECT = "pos.promotion.v1.promotion_created"


@dataclass
class Running:
    stub: promotion_pb2_grpc.PromotionServiceStub
    runtime: Any

    async def count(self, table: Any) -> int:
        async with self.runtime.engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


@pytest_asyncio.fixture(loop_scope="session")
async def running(infra: Infra) -> AsyncIterator[Running]:
    async with serve_in_process("promotion", infra) as svc:
        yield Running(promotion_pb2_grpc.PromotionServiceStub(svc.channel), svc.runtime)


def md(merchant: str = "mer_a") -> tuple[tuple[str, str], ...]:
    return (("x-merchant-id", merchant),)


def usd(amount: int) -> money_pb2.Money:
    return money_pb2.Money(amount=amount, currency=USD)


async def create(
    stub: promotion_pb2_grpc.PromotionServiceStub,
    rid: str,
    name: str = "Ten over fifty",
    bps: int = 1000,
    minimum: money_pb2.Money | None = None,
    merchant: str = "mer_a",
) -> promotion_pb2.Promotion:
    request = promotion_pb2.CreatePromotionRequest(
        request_id=rid, name=name, percent_off_bps=bps, minimum_subtotal=minimum
    )
    answer: promotion_pb2.CreatePromotionResponse = await stub.CreatePromotion(
        request, metadata=md(merchant), timeout=5
    )
    return answer.promotion


def cart(
    *lines: tuple[int, int, str], currency: str = USD
) -> promotion_pb2.CalculateDiscountsRequest:
    return promotion_pb2.CalculateDiscountsRequest(
        currency=currency,
        lines=[
            promotion_pb2.CartLine(
                sku=f"SKU{i}",
                quantity=quantity,
                unit_price=money_pb2.Money(amount=amount, currency=line_currency),
            )
            for i, (quantity, amount, line_currency) in enumerate(lines)
        ],
    )


async def refused(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value


async def test_create_is_idempotent_by_request_id(running: Running) -> None:
    first = await create(running.stub, "r-1", minimum=usd(5000))
    again = await create(running.stub, "r-1", minimum=usd(5000))
    assert again == first
    assert first.id.startswith("promo_") and first.active
    assert first.minimum_subtotal == usd(5000)
    listed = await running.stub.ListPromotions(
        promotion_pb2.ListPromotionsRequest(), metadata=md(), timeout=5
    )
    assert list(listed.promotions) == [first]
    # Applied once: one row, one event.
    assert await running.count(promotions) == 1
    assert await running.count(kit.outbox) == 1


async def test_same_request_id_with_another_body_is_refused(running: Running) -> None:
    await create(running.stub, "r-2", name="First")
    err = await refused(create(running.stub, "r-2", name="Second"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert read_error(err).reason == "idempotency_key_reused"
    assert await running.count(promotions) == 1


async def test_bad_promotions_are_refused_field_by_field_and_store_nothing(
    running: Running,
) -> None:
    err = await refused(
        create(running.stub, "r-3", name="", bps=0, minimum=money_pb2.Money(amount=-1))
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert {v.field for v in read_error(err).violations} == {
        "name",
        "percent_off_bps",
        "minimum_subtotal.currency",
        "minimum_subtotal.amount",
    }
    err = await refused(create(running.stub, "r-4", name="x" * 201, bps=10001))
    assert {v.field for v in read_error(err).violations} == {"name", "percent_off_bps"}
    err = await refused(create(running.stub, "", name="No request id"))
    assert {v.field for v in read_error(err).violations} == {"request_id"}
    assert await running.count(promotions) == 0
    assert await running.count(kit.outbox) == 0
    # A refused attempt claimed nothing: the client may fix the body and retry with its id.
    fixed = await create(running.stub, "r-3", name="Fixed")
    assert fixed.name == "Fixed"


async def test_another_merchants_promotion_is_not_found(running: Running) -> None:
    mine = await create(running.stub, "r-5")
    got = await running.stub.GetPromotion(
        promotion_pb2.GetPromotionRequest(id=mine.id), metadata=md(), timeout=5
    )
    assert got.promotion == mine
    theirs = await refused(
        running.stub.GetPromotion(
            promotion_pb2.GetPromotionRequest(id=mine.id), metadata=md("mer_b"), timeout=5
        )
    )
    missing = await refused(
        running.stub.GetPromotion(
            promotion_pb2.GetPromotionRequest(id="promo_missing"), metadata=md(), timeout=5
        )
    )
    assert theirs.code() == missing.code() == grpc.StatusCode.NOT_FOUND
    assert read_error(theirs).reason == read_error(missing).reason == "resource_missing"
    listed = await running.stub.ListPromotions(
        promotion_pb2.ListPromotionsRequest(), metadata=md("mer_b"), timeout=5
    )
    assert list(listed.promotions) == []


async def test_list_pages_by_cursor(running: Running) -> None:
    created = [await create(running.stub, f"r-page-{i}", name=f"P{i}") for i in range(3)]
    first = await running.stub.ListPromotions(
        promotion_pb2.ListPromotionsRequest(page_size=2), metadata=md(), timeout=5
    )
    # By id: ids begin with their millisecond, and two made in one (a fast machine) are in
    # either order, so the order expected is the ids', not the creations'.
    by_id = sorted(p.id for p in created)
    assert [p.id for p in first.promotions] == by_id[:2]
    assert first.next_page_token
    second = await running.stub.ListPromotions(
        promotion_pb2.ListPromotionsRequest(page_size=2, page_token=first.next_page_token),
        metadata=md(),
        timeout=5,
    )
    assert [p.id for p in second.promotions] == by_id[2:]
    assert second.next_page_token == ""
    err = await refused(
        running.stub.ListPromotions(
            promotion_pb2.ListPromotionsRequest(page_size=500), metadata=md(), timeout=5
        )
    )
    assert [v.field for v in read_error(err).violations] == ["page_size"]


async def test_list_narrows_by_status_and_binds_its_cursor_to_it(running: Running) -> None:
    created = [await create(running.stub, f"r-state-{i}", name=f"S{i}") for i in range(3)]
    await running.stub.PausePromotion(
        promotion_pb2.PausePromotionRequest(request_id="r-state-pause", id=created[1].id),
        metadata=md(),
        timeout=5,
    )

    async def listed(**fields: Any) -> promotion_pb2.ListPromotionsResponse:
        answer: promotion_pb2.ListPromotionsResponse = await running.stub.ListPromotions(
            promotion_pb2.ListPromotionsRequest(**fields), metadata=md(), timeout=5
        )
        return answer

    active = promotion_pb2.PROMOTION_STATUS_ACTIVE
    on = sorted([created[0].id, created[2].id])  # by id: see test_list_pages_by_cursor
    first = await listed(status=active, page_size=1)
    assert [p.id for p in first.promotions] == on[:1] and first.next_page_token
    second = await listed(status=active, page_size=1, page_token=first.next_page_token)
    assert [p.id for p in second.promotions] == on[1:]
    paused = await listed(status=promotion_pb2.PROMOTION_STATUS_PAUSED)
    assert [p.id for p in paused.promotions] == [created[1].id]
    assert list((await listed(status=promotion_pb2.PROMOTION_STATUS_ENDED)).promotions) == []
    err = await refused(listed(page_token=first.next_page_token))  # the active list's only
    assert [v.field for v in read_error(err).violations] == ["page_token"]
    err = await refused(listed(status=9))  # type: ignore[arg-type]
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in read_error(err).violations] == ["status"]


async def test_discounts_stack_with_reasons_for_the_callers_merchant_only(
    running: Running,
) -> None:
    ten = await create(running.stub, "r-6", name="Big basket", bps=1000, minimum=usd(5000))
    five = await create(running.stub, "r-7", name="Members", bps=500)
    await create(running.stub, "r-8", name="Not yours", bps=9000, merchant="mer_b")
    answer = await running.stub.CalculateDiscounts(cart((3, 2000, USD)), metadata=md(), timeout=5)
    assert [(d.promotion_id, d.amount.amount) for d in answer.discounts] == [
        (ten.id, 600),  # 10 % of 60.00
        (five.id, 270),  # then 5 % of the 54.00 left
    ]
    assert [d.reason for d in answer.discounts] == [
        "Big basket: 10% off orders of 50.00 USD or more",
        "Members: 5% off",
    ]
    assert answer.total_discount == usd(870)
    below = await running.stub.CalculateDiscounts(cart((1, 4999, USD)), metadata=md(), timeout=5)
    assert [d.promotion_id for d in below.discounts] == [five.id]
    nobody = await running.stub.CalculateDiscounts(
        cart((1, 1000, USD)), metadata=md("mer_c"), timeout=5
    )
    assert list(nobody.discounts) == [] and nobody.total_discount == usd(0)


async def test_a_line_in_another_currency_is_refused_by_field(running: Running) -> None:
    err = await refused(
        running.stub.CalculateDiscounts(
            cart((1, 1000, USD), (1, 1000, "EUR")), metadata=md(), timeout=5
        )
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in read_error(err).violations] == ["lines[1].unit_price.currency"]
    err = await refused(
        running.stub.CalculateDiscounts(
            cart((0, 1000, "XXX"), currency="XXX"), metadata=md(), timeout=5
        )
    )
    assert {v.field for v in read_error(err).violations} == {"currency", "lines[0].quantity"}


async def test_calculating_discounts_is_one_query_outside_a_transaction(
    running: Running,
) -> None:
    await create(running.stub, "r-9", bps=1000)
    statements: list[tuple[str, bool]] = []

    def seen(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        # The outbox relay shares the engine and polls on its own schedule: not this call's.
        if "outbox" not in sql:
            statements.append((sql.split()[0], conn.connection.driver_connection.autocommit))

    engine = running.runtime.engine.sync_engine
    event.listen(engine, "before_cursor_execute", seen)
    try:
        answer = await running.stub.CalculateDiscounts(
            cart((1, 1000, USD)), metadata=md(), timeout=5
        )
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert answer.total_discount == usd(100)
    # One SELECT on an autocommit connection: no BEGIN/ROLLBACK round trips, nothing written.
    assert statements == [("SELECT", True)]


async def test_promotion_created_is_published_to_jetstream(infra: Infra, running: Running) -> None:
    promo = await create(running.stub, "r-10", name="Announced", minimum=usd(100))
    nc = await nats.connect(infra.nats_url)
    try:
        js = nc.jetstream()
        await ensure_service_streams(js, "promotion")
        # The stream is shared by every test of the session: find this promotion's event.
        sub = await js.subscribe(CREATED_SUBJECT, ordered_consumer=True)
        deadline = time.monotonic() + 20
        found = None
        while found is None:
            left = deadline - time.monotonic()
            assert left > 0, "PromotionCreated was not published"
            try:
                msg = await sub.next_msg(timeout=left)
            except TimeoutError:  # nats' own, or asyncio's when the deadline ran out first
                continue
            message = events_pb2.PromotionCreated.FromString(msg.data)
            if message.promotion.id == promo.id:
                found = (message, msg.headers or {})
        message, headers = found
        assert message.promotion == promo
        assert message.meta.merchant_id == "mer_a" and message.meta.event_id.startswith("evt_")
        assert headers[MERCHANT_HEADER] == "mer_a"
        await sub.unsubscribe()
    finally:
        await nc.close()
