"""Offers, their lifecycle and coupons through gRPC, against real PostgreSQL and NATS JetStream."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
import nats
import psycopg
import pytest
import pytest_asyncio
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import event, func, select, text

from pos.common.v1 import money_pb2
from pos.customer.v1 import customer_pb2
from pos.customer.v1 import events_pb2 as customer_events
from pos.promotion.v1 import events_pb2, promotion_pb2_grpc
from pos.promotion.v1 import promotion_pb2 as pb
from pos_devstack.testing import Infra, polled, publish_as_relay, serve_in_process, until
from pos_kit.grpc_client import read_error
from pos_kit.ids import new_id
from pos_kit.streams import ensure_service_streams
from pos_promotion.adapters.repository import SqlActivePromotions
from pos_promotion.adapters.tables import (
    coupon_reservations,
    coupons,
    kit,
    promotions,
    retired_groups,
)
from pos_promotion.domain.model import Status
from pos_promotion.service import handlers

pytestmark = pytest.mark.asyncio(loop_scope="session")

USD = "USD"


@dataclass
class Running:
    stub: promotion_pb2_grpc.PromotionServiceStub
    runtime: Any

    async def count(self, table: Any, *where: Any) -> int:
        async with self.runtime.engine.connect() as conn:
            query = select(func.count()).select_from(table).where(*where)
            return int((await conn.execute(query)).scalar_one())


@pytest_asyncio.fixture(loop_scope="session")
async def running(infra: Infra) -> AsyncIterator[Running]:
    # 500 checkouts at once wait their turn for a connection: give them the time to.
    async with serve_in_process("promotion", infra, database_pool_timeout_seconds=60) as svc:
        await until(lambda: svc.runtime.ready.is_set())
        yield Running(promotion_pb2_grpc.PromotionServiceStub(svc.channel), svc.runtime)


def md(merchant: str = "mer_a") -> tuple[tuple[str, str], ...]:
    return (("x-merchant-id", merchant),)


def usd(amount: int) -> money_pb2.Money:
    return money_pb2.Money(amount=amount, currency=USD)


async def refused(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value


def line(sku: str, qty: int, cents: int, *categories: str) -> pb.CartLine:
    return pb.CartLine(sku=sku, quantity=qty, unit_price=usd(cents), categories=list(categories))


async def create(running: Running, rid: str, **fields: Any) -> pb.Promotion:
    merchant = fields.pop("merchant", "mer_a")
    request = pb.CreatePromotionRequest(request_id=rid, **fields)
    answer = await running.stub.CreatePromotion(request, metadata=md(merchant), timeout=10)
    return answer.promotion


async def calc(running: Running, *lines: pb.CartLine, **kw: Any) -> pb.CalculateDiscountsResponse:
    merchant = kw.pop("merchant", "mer_a")
    request = pb.CalculateDiscountsRequest(currency=USD, lines=list(lines), **kw)
    answer: pb.CalculateDiscountsResponse = await running.stub.CalculateDiscounts(
        request, metadata=md(merchant), timeout=10
    )
    return answer


BOGO = pb.Rule(
    kind=pb.OFFER_KIND_BUY_X_GET_Y,
    level=pb.OFFER_LEVEL_ITEM,
    items=pb.ItemSelector(categories=["shirts"]),
    percent_bps=10000,
    buy_quantity=1,
    get_quantity=1,
)


async def test_an_item_offer_prices_lines_and_says_why(running: Running) -> None:
    promo = await create(running, "c-1", name="Shirts BOGO", rule=BOGO)
    assert promo.rule == BOGO and promo.status == pb.PROMOTION_STATUS_ACTIVE
    assert promo.version == 1 and promo.stackable
    answer = await calc(running, line("A", 1, 2000, "shirts"), line("B", 1, 1500, "shirts"))
    assert answer.total_discount == usd(1500)
    assert [m.amount for m in answer.line_discounts] == [0, 1500]
    [applied] = answer.discounts
    assert applied.promotion_id == promo.id and applied.level == pb.OFFER_LEVEL_ITEM
    assert applied.reason == "Shirts BOGO: buy 1 get 1 free"
    assert [(x.line_index, x.amount.amount) for x in applied.lines] == [(1, 1500)]


async def test_conditions_come_from_the_request_and_the_locations_time_zone(
    running: Running,
) -> None:
    await create(
        running,
        "c-2",
        name="Happy hour",
        rule=pb.Rule(kind=pb.OFFER_KIND_PERCENT_OFF, percent_bps=5000),
        conditions=pb.Conditions(
            days_of_week=[5], hours_from="22:00", hours_until="02:00", channels=["register"]
        ),
    )
    friday_night = Timestamp()
    friday_night.FromDatetime(datetime(2026, 12, 5, 0, 30, tzinfo=UTC))  # Sat 01:30 in Berlin
    berlin = {"location_time_zone": "Europe/Berlin", "at": friday_night}
    hit = await calc(running, line("X", 1, 1000), channel="register", **berlin)
    assert hit.total_discount == usd(500)
    web = await calc(running, line("X", 1, 1000), channel="web", **berlin)
    assert web.total_discount == usd(0)
    la = await calc(
        running,
        line("X", 1, 1000),
        channel="register",
        location_time_zone="America/Los_Angeles",
        at=friday_night,
    )
    assert la.total_discount == usd(0)  # Friday 16:30 there


async def test_an_offers_own_time_zone_wins_over_the_locations(running: Running) -> None:
    """An offer that names its `time_zone` is read there wherever the cart is; one that names
    none reads the location's (and answers no zone of its own, not UTC)."""
    merchant = "mer_zones"
    berlin_nights = await create(
        running,
        "z-1",
        merchant=merchant,
        name="Berlin happy hour",
        rule=pb.Rule(kind=pb.OFFER_KIND_PERCENT_OFF, percent_bps=5000),
        conditions=pb.Conditions(
            days_of_week=[5], hours_from="22:00", hours_until="02:00", time_zone="Europe/Berlin"
        ),
    )
    assert berlin_nights.conditions.time_zone == "Europe/Berlin"
    friday_night = Timestamp()
    friday_night.FromDatetime(datetime(2026, 12, 5, 0, 30, tzinfo=UTC))  # Sat 01:30 in Berlin
    la = {"location_time_zone": "America/Los_Angeles", "at": friday_night}  # Fri 16:30 there
    hit = await calc(running, line("X", 1, 1000), merchant=merchant, **la)
    assert hit.total_discount == usd(500)

    anywhere = await create(
        running,
        "z-2",
        merchant="mer_zones2",
        name="Local happy hour",
        rule=pb.Rule(kind=pb.OFFER_KIND_PERCENT_OFF, percent_bps=5000),
        conditions=pb.Conditions(days_of_week=[5], hours_from="22:00", hours_until="02:00"),
    )
    assert anywhere.conditions.time_zone == ""
    missed = await calc(running, line("X", 1, 1000), merchant="mer_zones2", **la)
    assert missed.total_discount == usd(0)
    berlin = {"location_time_zone": "Europe/Berlin", "at": friday_night}
    local = await calc(running, line("X", 1, 1000), merchant="mer_zones2", **berlin)
    assert local.total_discount == usd(500)


async def test_bad_offers_are_refused_field_by_field_and_store_nothing(running: Running) -> None:
    err = await refused(
        create(
            running,
            "c-3",
            name="Broken",
            rule=pb.Rule(
                kind=pb.OFFER_KIND_TIERS,
                tiers=[
                    pb.Tier(min_quantity=2, percent_bps=1000),
                    pb.Tier(min_quantity=2, percent_bps=2000),
                ],
            ),
            conditions=pb.Conditions(
                starts_at="2026-12-10T00:00", ends_at="2026-12-01T00:00", hours_from="25:00"
            ),
        )
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert {v.field for v in read_error(err).violations} >= {
        "rule.tiers[1].min_quantity",
        "conditions.ends_at",
        "conditions.hours_from",
    }
    assert await running.count(promotions) == 0
    assert await running.count(kit.outbox) == 0


async def test_a_window_past_the_years_the_api_takes_is_refused_naming_it(
    running: Running,
) -> None:
    """A window is read at every location, from UTC+14 to UTC-12: one opening in year 1 or
    closing at the end of 9999 falls off the calendar there. The years 1970 to 9998, as every
    time the API takes: others are INVALID_ARGUMENT naming the field, on a create and an
    update, and nothing is stored."""
    merchant = "mer_" + new_id("x")[-10:]
    rule = pb.Rule(kind=pb.OFFER_KIND_PERCENT_OFF, percent_bps=1000)
    for starts, ends, zone, field in (
        ("0001-01-01T00:00", "", "", "conditions.starts_at"),
        ("", "9999-12-31T23:59", "", "conditions.ends_at"),
        ("1969-12-31T23:00", "", "Asia/Tokyo", "conditions.starts_at"),
        ("", "9999-12-31T23:59", "America/Los_Angeles", "conditions.ends_at"),
    ):
        conditions = pb.Conditions(starts_at=starts, ends_at=ends, time_zone=zone)
        err = await refused(
            create(running, new_id("r"), merchant=merchant, name="W", rule=rule,
                   conditions=conditions)
        )  # fmt: skip
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
        assert [v.field for v in read_error(err).violations] == [field]
    assert await running.count(promotions, promotions.c.merchant_id == merchant) == 0
    promo = await create(running, new_id("r"), merchant=merchant, name="W", rule=rule)
    err = await refused(
        running.stub.UpdatePromotion(
            pb.UpdatePromotionRequest(
                request_id=new_id("r"), id=promo.id, update_mask=["conditions"],
                conditions=pb.Conditions(ends_at="9999-12-31T23:59"),
            ),
            metadata=md(merchant),
            timeout=10,
        )
    )  # fmt: skip
    assert [v.field for v in read_error(err).violations] == ["conditions.ends_at"]
    window = pb.Conditions(starts_at="1970-01-02T00:00", ends_at="9998-12-31T00:00")
    kept = await create(running, new_id("r"), merchant=merchant, name="W", rule=rule,
                        conditions=window)  # fmt: skip
    assert kept.conditions.ends_at.startswith("9998-12-31")


async def test_an_update_that_changes_nothing_is_no_new_version_and_no_event(
    running: Running,
) -> None:
    """Sending an offer's fields as they are (a form saved untouched) changes nothing: no new
    version, no `promotion_updated`, so no other client's If-Match goes stale for it, as a
    customer, a group or the loyalty program saved unchanged. An ended promotion is still
    refused as ended."""
    merchant = "mer_" + new_id("x")[-10:]
    rule = pb.Rule(kind=pb.OFFER_KIND_PERCENT_OFF, level=pb.OFFER_LEVEL_ITEM, percent_bps=1500)
    promo = await create(running, new_id("r"), merchant=merchant, name="Same", rule=rule)
    mine = kit.outbox.c.merchant_id == merchant
    events = await running.count(kit.outbox, mine)

    async def update(**fields: Any) -> pb.Promotion:
        request = pb.UpdatePromotionRequest(request_id=new_id("r"), id=promo.id, **fields)
        answer = await running.stub.UpdatePromotion(request, metadata=md(merchant), timeout=10)
        return answer.promotion

    same = await update(update_mask=["name", "rule", "priority"], name=" Same ", rule=rule)
    assert same.version == promo.version == 1
    assert same.updated_at == promo.updated_at
    assert await running.count(kit.outbox, mine) == events
    changed = await update(update_mask=["priority"], priority=5, expected_version=1)
    assert changed.version == 2 and changed.priority == 5
    assert await running.count(kit.outbox, mine) == events + 1
    await running.stub.EndPromotion(
        pb.EndPromotionRequest(request_id=new_id("r"), id=promo.id),
        metadata=md(merchant),
        timeout=10,
    )
    ended = await refused(update(update_mask=["priority"], priority=5))
    assert read_error(ended).reason == "promotion_ended"


async def test_changes_without_a_version_at_once_all_apply(running: Running) -> None:
    """A change that names no `expected_version` takes the promotion as it is: several at
    once (renames, pauses and resumes, none with If-Match) queue on the promotion's row and
    each applies on top of the one before, none refused as stale; only a change naming a
    version it did not find is."""
    merchant = "mer_changes_at_once"
    promo = await create(running, new_id("r"), name="Busy", percent_off_bps=500, merchant=merchant)

    async def rename(n: int) -> Any:
        request = pb.UpdatePromotionRequest(
            request_id=new_id("r"), id=promo.id, update_mask=["name"], name=f"Busy {n}"
        )
        return await running.stub.UpdatePromotion(request, metadata=md(merchant), timeout=30)

    async def toggle(n: int) -> Any:
        if n % 2:
            return await running.stub.PausePromotion(
                pb.PausePromotionRequest(request_id=new_id("r"), id=promo.id),
                metadata=md(merchant),
                timeout=30,
            )
        return await running.stub.ResumePromotion(
            pb.ResumePromotionRequest(request_id=new_id("r"), id=promo.id),
            metadata=md(merchant),
            timeout=30,
        )

    answers = await asyncio.gather(
        *(rename(n) for n in range(8)), *(toggle(n) for n in range(8)), return_exceptions=True
    )
    failed = [read_error(a).reason for a in answers if isinstance(a, grpc.aio.AioRpcError)]
    assert failed == []
    assert not [a for a in answers if isinstance(a, BaseException)]
    now = await running.stub.GetPromotion(
        pb.GetPromotionRequest(id=promo.id), metadata=md(merchant), timeout=10
    )
    # Every rename made a version (each name differs); a pause or resume that found the
    # promotion there already made none.
    assert now.promotion.version >= 1 + 8
    stale = await refused(
        running.stub.PausePromotion(
            pb.PausePromotionRequest(request_id=new_id("r"), id=promo.id, expected_version=1),
            metadata=md(merchant),
            timeout=10,
        )
    )
    assert read_error(stale).reason == "version_mismatch"


async def test_of_the_same_change_at_once_one_answer_says_it_changed(running: Running) -> None:
    """Pauses, the same rename, or deactivations of one coupon sent at once: each is answered
    with the promotion (the coupon) as it now is, and exactly one says `changed` (the one that
    made the new version), so its caller's audit entry is written once, by the credential
    that made it."""
    merchant = "mer_changed_once"
    promo = await create(
        running, new_id("r"), name="Once", percent_off_bps=500, requires_coupon=True,
        merchant=merchant,
    )  # fmt: skip

    async def pause() -> Any:
        return await running.stub.PausePromotion(
            pb.PausePromotionRequest(request_id=new_id("r"), id=promo.id),
            metadata=md(merchant),
            timeout=30,
        )

    async def rename() -> Any:
        request = pb.UpdatePromotionRequest(
            request_id=new_id("r"), id=promo.id, update_mask=["name"], name="Renamed"
        )
        return await running.stub.UpdatePromotion(request, metadata=md(merchant), timeout=30)

    paused = await asyncio.gather(*(pause() for _ in range(6)))
    assert [a.changed for a in paused].count(True) == 1
    assert {a.promotion.status for a in paused} == {pb.PROMOTION_STATUS_PAUSED}
    renamed = await asyncio.gather(*(rename() for _ in range(6)))
    assert [a.changed for a in renamed].count(True) == 1
    assert {a.promotion.version for a in renamed} == {3}
    [coupon] = (
        await running.stub.CreateCoupons(
            pb.CreateCouponsRequest(request_id=new_id("r"), promotion_id=promo.id, generate=1),
            metadata=md(merchant),
            timeout=10,
        )
    ).coupons

    async def deactivate() -> Any:
        return await running.stub.DeactivateCoupon(
            pb.DeactivateCouponRequest(request_id=new_id("r"), promotion_id=promo.id, id=coupon.id),
            metadata=md(merchant),
            timeout=30,
        )

    deactivated = await asyncio.gather(*(deactivate() for _ in range(6)))
    assert [a.changed for a in deactivated].count(True) == 1
    assert {a.coupon.status for a in deactivated} == {pb.COUPON_STATUS_DEACTIVATED}
    # Asked again later: nothing to change.
    assert not (await pause()).changed and not (await deactivate()).changed


async def test_lifecycle_update_with_version_pause_resume_end_and_the_feed(
    running: Running,
) -> None:
    promo = await create(running, "c-4", name="Ten", percent_off_bps=1000)
    assert (await calc(running, line("X", 1, 1000))).total_discount == usd(100)
    updated = await running.stub.UpdatePromotion(
        pb.UpdatePromotionRequest(
            request_id="c-5",
            id=promo.id,
            expected_version=1,
            update_mask=["rule", "name"],
            name="Twenty",
            rule=pb.Rule(kind=pb.OFFER_KIND_PERCENT_OFF, percent_bps=2000),
        ),
        metadata=md(),
        timeout=10,
    )
    assert updated.promotion.version == 2 and updated.promotion.name == "Twenty"
    # This replica forgot its cached offers: the next calculation already sees the change.
    assert (await calc(running, line("X", 1, 1000))).total_discount == usd(200)
    stale = await refused(
        running.stub.PausePromotion(
            pb.PausePromotionRequest(request_id="c-6", id=promo.id, expected_version=1),
            metadata=md(),
            timeout=10,
        )
    )
    assert stale.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert read_error(stale).reason == "version_mismatch"
    paused = await running.stub.PausePromotion(
        pb.PausePromotionRequest(request_id="c-7", id=promo.id, expected_version=2),
        metadata=md(),
        timeout=10,
    )
    assert paused.promotion.status == pb.PROMOTION_STATUS_PAUSED
    assert (await calc(running, line("X", 1, 1000))).total_discount == usd(0)
    await running.stub.ResumePromotion(
        pb.ResumePromotionRequest(request_id="c-8", id=promo.id), metadata=md(), timeout=10
    )
    assert (await calc(running, line("X", 1, 1000))).total_discount == usd(200)
    ended = await running.stub.EndPromotion(
        pb.EndPromotionRequest(request_id="c-9", id=promo.id), metadata=md(), timeout=10
    )
    assert ended.promotion.status == pb.PROMOTION_STATUS_ENDED and ended.promotion.HasField(
        "ended_at"
    )
    assert (await calc(running, line("X", 1, 1000))).total_discount == usd(0)
    again = await refused(
        running.stub.ResumePromotion(
            pb.ResumePromotionRequest(request_id="c-10", id=promo.id), metadata=md(), timeout=10
        )
    )
    assert read_error(again).reason == "promotion_ended"
    # The change feed: everything changed since before the creation, oldest change first. It
    # stops at the start of the oldest transaction still open in the database (the outbox
    # relay's, say, begun before the end was written: pos_kit/changes.py), so a poll made the
    # moment after may not show the end yet; it shows it once that transaction is over.
    since = Timestamp()
    since.FromDatetime(datetime(2000, 1, 1, tzinfo=UTC))

    async def fed() -> list[tuple[str, int]]:
        feed = await running.stub.ListPromotions(
            pb.ListPromotionsRequest(updated_since=since), metadata=md(), timeout=10
        )
        return [(p.id, p.version) for p in feed.promotions]

    assert await polled(fed) == [(promo.id, ended.promotion.version)]
    # Another merchant's promotion is a NOT_FOUND for every change.
    theirs = await refused(
        running.stub.EndPromotion(
            pb.EndPromotionRequest(request_id="c-11", id=promo.id), metadata=md("mer_b"), timeout=10
        )
    )
    assert theirs.code() == grpc.StatusCode.NOT_FOUND


async def test_a_calculation_reads_nothing_while_the_cache_holds_and_events_invalidate_it(
    running: Running,
) -> None:
    offers = running.runtime.offers
    before_write = offers._generation.get("mer_a", 0)
    promo = await create(running, "c-12", name="Ten", percent_off_bps=1000)
    # The replica forgot the merchant when it wrote; it forgets again when the creation's own
    # event comes back from NATS. Wait for that, so it does not land in the middle below.
    await until(lambda: offers._generation.get("mer_a", 0) >= before_write + 2)
    assert (await calc(running, line("X", 1, 1000))).total_discount == usd(100)
    statements: list[str] = []

    def seen(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        if "outbox" not in sql:  # the relay polls on its own schedule
            statements.append(sql)

    engine = running.runtime.engine.sync_engine
    event.listen(engine, "before_cursor_execute", seen)
    try:
        for _ in range(5):
            assert (await calc(running, line("X", 1, 1000))).total_discount == usd(100)
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert statements == []
    # A change made elsewhere (another replica: here, straight through a unit of work, which
    # does not touch this replica's cache) reaches the cache through its event.
    uow = running.runtime.uow().bind("mer_a")
    async with uow:
        await handlers.change_status(uow, promo.id, 0, Status.PAUSED)
        await uow.commit()
    running.runtime.wake_relay()
    before = offers.loads
    await until(lambda: offers._entries.get("mer_a") is None)
    assert (await calc(running, line("X", 1, 1000))).total_discount == usd(0)
    assert offers.loads == before + 1


async def test_a_finished_promotion_is_not_read_for_pricing_and_prices_as_before(
    running: Running,
) -> None:
    """The offers read for a checkout (the cache's load, and the reservation's read in its
    unit of work) leave out active promotions whose window closed (`closes_at`, migration
    0006): pricing would drop them anyway. Those running, without a window or not opened
    yet are read. The answer is the one it was: the finished offer gives nothing, and its
    code is `coupon_not_applicable` in a preview, as at the checkout, not `coupon_inactive`."""
    merchant = f"mer_{new_id('fin')}"
    ten = pb.Rule(kind=pb.OFFER_KIND_PERCENT_OFF, percent_bps=1000)
    always = await create(running, "fin-1", merchant=merchant, name="Always", rule=ten)
    window = {"starts_at": "2026-01-01T00:00", "time_zone": "UTC"}
    finished = await create(
        running, "fin-2", merchant=merchant, name="January", rule=ten, requires_coupon=True,
        conditions=pb.Conditions(**window, ends_at="2026-02-01T00:00"),
    )  # fmt: skip
    zoneless = await create(
        running, "fin-3", merchant=merchant, name="February", rule=ten,
        conditions=pb.Conditions(starts_at="2026-02-01T00:00", ends_at="2026-03-01T00:00"),
    )  # fmt: skip
    until_later = await create(
        running, "fin-4", merchant=merchant, name="This year", rule=ten,
        conditions=pb.Conditions(**window, ends_at="2099-01-01T00:00"),
    )  # fmt: skip
    later = await create(
        running, "fin-5", merchant=merchant, name="Later", rule=ten,
        conditions=pb.Conditions(starts_at="2098-01-01T00:00", time_zone="UTC"),
    )  # fmt: skip
    assert finished.schedule_state == zoneless.schedule_state == pb.SCHEDULE_STATE_FINISHED
    await running.stub.CreateCoupons(
        pb.CreateCouponsRequest(request_id="fin-c", promotion_id=finished.id, codes=["JAN-26"]),
        metadata=md(merchant),
        timeout=10,
    )
    paused = await create(
        running, "fin-6", merchant=merchant, name="Paused", rule=ten, requires_coupon=True
    )
    await running.stub.CreateCoupons(
        pb.CreateCouponsRequest(request_id="fin-c2", promotion_id=paused.id, codes=["HELD-1"]),
        metadata=md(merchant),
        timeout=10,
    )
    await running.stub.PausePromotion(
        pb.PausePromotionRequest(request_id="fin-p", id=paused.id),
        metadata=md(merchant),
        timeout=10,
    )
    read = {always.id, until_later.id, later.id}
    offers = await SqlActivePromotions(running.runtime.engine).active(merchant)
    assert {p.id for p in offers} == read
    uow = running.runtime.uow().bind(merchant)
    async with uow:
        assert {p.id for p in await uow.promotions.active()} == read

    codes = ["jan-26", "held-1"]
    answer = await calc(running, line("X", 1, 1000), merchant=merchant, coupon_codes=codes)
    assert sorted(d.promotion_id for d in answer.discounts) == sorted([always.id, until_later.id])
    assert answer.total_discount == usd(190)  # 10 % then 10 % of the rest
    assert [(r.code, r.reason) for r in answer.rejected_coupons] == [
        ("held-1", "coupon_inactive"),
        ("jan-26", "coupon_not_applicable"),
    ]
    err = await refused(
        running.stub.ReserveCoupons(
            pb.ReserveCouponsRequest(
                request_id="fin-r", order_id="ord_fin", codes=["jan-26"],
                cart=pb.CalculateDiscountsRequest(currency=USD, lines=[line("X", 1, 1000)]),
            ),
            metadata=md(merchant),
            timeout=10,
        )
    )  # fmt: skip
    assert read_error(err).reason == "coupon_not_applicable"


THERE = promotions.c.status != "deleted"


async def test_delete_only_while_unused(running: Running) -> None:
    unused = await create(running, "c-13", name="Never used", percent_off_bps=1000)
    # A deletion naming another version than the promotion's is refused, as a change is.
    stale = await refused(
        running.stub.DeletePromotion(
            pb.DeletePromotionRequest(request_id="c-14-s", id=unused.id, expected_version=2),
            metadata=md(),
            timeout=10,
        )
    )
    assert stale.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert (read_error(stale).reason, read_error(stale).metadata["current_version"]) == (
        "version_mismatch", "1",
    )  # fmt: skip
    assert await running.count(promotions, THERE) == 1
    await running.stub.DeletePromotion(
        pb.DeletePromotionRequest(request_id="c-14", id=unused.id, expected_version=1),
        metadata=md(),
        timeout=10,
    )
    # Kept as a tombstone for the change feed only: a read is NOT_FOUND.
    assert await running.count(promotions, THERE) == 0
    gone = await refused(
        running.stub.GetPromotion(pb.GetPromotionRequest(id=unused.id), metadata=md(), timeout=10)
    )
    assert gone.code() == grpc.StatusCode.NOT_FOUND
    coupon_promo = await create(
        running, "c-15", name="Coupon", percent_off_bps=1000, requires_coupon=True
    )
    await running.stub.CreateCoupons(
        pb.CreateCouponsRequest(request_id="c-16", promotion_id=coupon_promo.id, codes=["USED1"]),
        metadata=md(),
        timeout=10,
    )
    # Coupons alone do not make it used: a promotion whose codes were never reserved goes,
    # codes and all.
    spare = await create(running, "c-19", name="Spare", percent_off_bps=500, requires_coupon=True)
    await running.stub.CreateCoupons(
        pb.CreateCouponsRequest(request_id="c-19-c", promotion_id=spare.id, generate=2),
        metadata=md(),
        timeout=10,
    )
    await running.stub.DeletePromotion(
        pb.DeletePromotionRequest(request_id="c-19-d", id=spare.id), metadata=md(), timeout=10
    )
    assert await running.count(coupons, coupons.c.promotion_id == spare.id) == 0
    await reserve(running, "c-17", "ord_1", ["used1"])
    # Its first use is a change GET shows: a new version (so a new ETag), not a silent flag.
    got = await running.stub.GetPromotion(
        pb.GetPromotionRequest(id=coupon_promo.id), metadata=md(), timeout=10
    )
    assert (got.promotion.used, got.promotion.version) == (True, coupon_promo.version + 1)
    assert got.promotion.updated_at.ToDatetime() > coupon_promo.updated_at.ToDatetime()
    err = await refused(
        running.stub.DeletePromotion(
            pb.DeletePromotionRequest(request_id="c-18", id=coupon_promo.id),
            metadata=md(),
            timeout=10,
        )
    )
    assert read_error(err).reason == "promotion_used"
    assert await running.count(promotions, THERE) == 1


async def reserve(
    running: Running, rid: str, order_id: str, codes: list[str], customer: str = "", **kw: Any
) -> pb.ReserveCouponsResponse:
    merchant = kw.pop("merchant", "mer_a")
    answer: pb.ReserveCouponsResponse = await running.stub.ReserveCoupons(
        pb.ReserveCouponsRequest(
            request_id=rid, order_id=order_id, codes=codes, customer_id=customer, **kw
        ),
        metadata=md(merchant),
        timeout=60,
    )
    return answer


async def coupon_offer(
    running: Running, rid: str, **coupon: Any
) -> tuple[pb.Promotion, list[pb.Coupon]]:
    promo = await create(
        running,
        rid,
        name="Five off",
        rule=pb.Rule(kind=pb.OFFER_KIND_AMOUNT_OFF, amount=usd(500)),
        conditions=pb.Conditions(min_amount=usd(2000)),
        requires_coupon=True,
    )
    made = await running.stub.CreateCoupons(
        pb.CreateCouponsRequest(request_id=rid + "-c", promotion_id=promo.id, **coupon),
        metadata=md(),
        timeout=10,
    )
    return promo, list(made.coupons)


async def test_codes_are_shown_once_stored_hashed_and_checked_case_insensitively(
    running: Running, infra: Infra
) -> None:
    promo, made = await coupon_offer(running, "c-20", generate=3, max_uses=1)
    codes = [c.code for c in made]
    assert len(set(codes)) == 3 and all(len(c) == 12 for c in codes)
    assert [c.code_hint for c in made] == [c[-4:] for c in codes]
    replay = await running.stub.CreateCoupons(
        pb.CreateCouponsRequest(request_id="c-20-c", promotion_id=promo.id, generate=3, max_uses=1),
        metadata=md(),
        timeout=10,
    )
    assert [c.id for c in replay.coupons] == [c.id for c in made]
    assert all(c.code == "" for c in replay.coupons)  # a replay never shows a code again
    async with running.runtime.engine.connect() as conn:
        dump = (await conn.execute(text("SELECT c::text FROM coupons c"))).scalars().all()
        stored = (
            (await conn.execute(text("SELECT response FROM processed_requests"))).scalars().all()
        )
    for code in codes:
        assert not any(code in row for row in dump)
        assert not any(code.encode() in (row or b"") for row in stored)
    # The preview: applied with a lower-case code, and every refusal is a reason, not an error.
    answer = await calc(running, line("X", 1, 2500), coupon_codes=[codes[0].lower(), "NOPE-123"])
    assert [d.promotion_id for d in answer.discounts] == [promo.id]
    assert answer.total_discount == usd(500)
    assert [(r.code, r.reason) for r in answer.rejected_coupons] == [("NOPE-123", "coupon_unknown")]
    small = await calc(running, line("X", 1, 1000), coupon_codes=[codes[0]])
    assert [r.reason for r in small.rejected_coupons] == ["coupon_not_applicable"]
    # Another merchant cannot use the code.
    theirs = await calc(running, line("X", 1, 2500), coupon_codes=[codes[0]], merchant="mer_b")
    assert [r.reason for r in theirs.rejected_coupons] == ["coupon_unknown"]


async def test_the_saga_reserves_redeems_and_releases_by_order_id(
    running: Running, infra: Infra
) -> None:
    promo, [coupon] = await coupon_offer(
        running, "c-30", codes=["Winter-26"], max_uses=2, max_uses_per_customer=1
    )
    cart = pb.CalculateDiscountsRequest(currency=USD, lines=[line("X", 1, 2500)])
    first = await reserve(running, "c-31", "ord_1", ["winter-26"], "cus_1", cart=cart)
    assert [(r.coupon_id, r.status) for r in first.reservations] == [(coupon.id, "reserved")]
    # The same order again (a retried checkout with a new request id): the same reservation.
    again = await reserve(running, "c-32", "ord_1", ["WINTER-26"], "cus_1", cart=cart)
    assert again.reservations == first.reservations
    # The same customer on another order: over the per-customer limit.
    err = await refused(reserve(running, "c-33", "ord_2", ["WINTER-26"], "cus_1"))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert read_error(err).reason == "coupon_customer_limit"
    # A quote for that customer says so (as the sale would refuse it); another's does not.
    used = await calc(running, line("X", 1, 2500), coupon_codes=["winter-26"], customer_id="cus_1")
    assert [r.reason for r in used.rejected_coupons] == ["coupon_customer_limit"]
    fresh = await calc(running, line("X", 1, 2500), coupon_codes=["winter-26"], customer_id="cus_9")
    assert fresh.rejected_coupons == [] and fresh.total_discount.amount > 0
    # A cart the coupon gives nothing to: refused with its reason, nothing reserved.
    small = pb.CalculateDiscountsRequest(currency=USD, lines=[line("X", 1, 1000)])
    err = await refused(reserve(running, "c-34", "ord_3", ["WINTER-26"], "cus_3", cart=small))
    assert read_error(err).reason == "coupon_not_applicable"
    unknown = await refused(reserve(running, "c-35", "ord_3", ["NOPE-1"], "cus_3"))
    assert read_error(unknown).reason == "coupon_unknown"
    # Cancelled before confirmation: the use comes back.
    await reserve(running, "c-36", "ord_4", ["WINTER-26"], "cus_4")
    exhausted = await refused(reserve(running, "c-37", "ord_5", ["WINTER-26"], "cus_5"))
    assert read_error(exhausted).reason == "coupon_exhausted"
    released = await running.stub.ReleaseCoupons(
        pb.ReleaseCouponsRequest(request_id="c-38", order_id="ord_4"), metadata=md(), timeout=10
    )
    assert [r.status for r in released.reservations] == ["released"]
    await reserve(running, "c-39", "ord_5", ["WINTER-26"], "cus_5")
    # Confirmed: redeemed, announced, and a second redeem changes nothing.
    redeemed = await running.stub.RedeemCoupons(
        pb.RedeemCouponsRequest(request_id="c-40", order_id="ord_1"), metadata=md(), timeout=10
    )
    assert [r.status for r in redeemed.reservations] == ["redeemed"]
    await running.stub.RedeemCoupons(
        pb.RedeemCouponsRequest(request_id="c-41", order_id="ord_1"), metadata=md(), timeout=10
    )
    listed = await running.stub.ListCoupons(
        pb.ListCouponsRequest(promotion_id=promo.id), metadata=md(), timeout=10
    )
    [state] = listed.coupons
    assert (state.redeemed_count, state.reserved_count) == (1, 1)
    nc = await nats.connect(infra.nats_url)
    try:
        js = nc.jetstream()
        await ensure_service_streams(js, "promotion")
        sub = await js.subscribe("pos.promotion.v1.coupon_redeemed", ordered_consumer=True)
        deadline = time.monotonic() + 20
        found = None
        while found is None:
            assert time.monotonic() < deadline, "CouponRedeemed was not published"
            try:
                msg = await sub.next_msg(timeout=1)
            except TimeoutError:  # nats' own, or asyncio's when the deadline ran out first
                continue
            message = events_pb2.CouponRedeemed.FromString(msg.data)
            if message.coupon.id == coupon.id:
                found = message
        assert found.order_id == "ord_1" and found.customer_id == "cus_1"
        assert found.coupon.code == "" and found.coupon.redeemed_count == 1
        await sub.unsubscribe()
    finally:
        await nc.close()


async def released_events(infra: Infra, coupon_id: str) -> list[events_pb2.CouponReleased]:
    """Every CouponReleased of the coupon in the stream so far (the outbox relay given time)."""
    nc = await nats.connect(infra.nats_url)
    try:
        js = nc.jetstream()
        await ensure_service_streams(js, "promotion")
        sub = await js.subscribe("pos.promotion.v1.coupon_released", ordered_consumer=True)
        found: list[events_pb2.CouponReleased] = []
        quiet_until = time.monotonic() + 3  # read until the stream has been quiet a while
        while time.monotonic() < quiet_until:
            try:
                msg = await sub.next_msg(timeout=0.5)
            except TimeoutError:  # nats' own, or asyncio's when the deadline ran out first
                continue
            message = events_pb2.CouponReleased.FromString(msg.data)
            if message.coupon.id == coupon_id:
                found.append(message)
                quiet_until = time.monotonic() + 3
        await sub.unsubscribe()
        return found
    finally:
        await nc.close()


async def test_a_redeemed_use_is_released_once_and_announced_once(
    running: Running, infra: Infra
) -> None:
    """An order cancelled after its confirmation gives its coupon back: the redeemed use comes
    off `redeemed_count`, the coupon takes another order, and `CouponReleased` is published once
    however often the release is asked (a retry with its request id, the resumer with another,
    a second cancel). A released order is never redeemed again."""
    promo, [coupon] = await coupon_offer(running, "c-60", codes=["ONCE-ONLY-60"], max_uses=1)
    await reserve(running, "c-61", "ord_60", ["once-only-60"], "cus_60")
    await running.stub.RedeemCoupons(
        pb.RedeemCouponsRequest(request_id="c-62", order_id="ord_60"), metadata=md(), timeout=10
    )
    spent = await refused(reserve(running, "c-63", "ord_61", ["ONCE-ONLY-60"], "cus_61"))
    assert read_error(spent).reason == "coupon_exhausted"

    async def release(rid: str) -> pb.ReleaseCouponsResponse:
        answer: pb.ReleaseCouponsResponse = await running.stub.ReleaseCoupons(
            pb.ReleaseCouponsRequest(request_id=rid, order_id="ord_60"), metadata=md(), timeout=10
        )
        return answer

    first = await release("ord_60/coupons/release")
    assert [(r.coupon_id, r.status) for r in first.reservations] == [(coupon.id, "released")]
    again = await release("ord_60/coupons/release")  # the same request retried
    other = await release("c-64")  # the same order asked under another id
    assert again.reservations == first.reservations == other.reservations

    async def counts() -> tuple[int, int]:
        listed = await running.stub.ListCoupons(
            pb.ListCouponsRequest(promotion_id=promo.id), metadata=md(), timeout=10
        )
        [state] = listed.coupons
        return state.redeemed_count, state.reserved_count

    assert await counts() == (0, 0)
    late = await refused(
        running.stub.RedeemCoupons(
            pb.RedeemCouponsRequest(request_id="c-65", order_id="ord_60"), metadata=md(), timeout=10
        )
    )
    assert read_error(late).reason == "coupons_already_released"
    assert await counts() == (0, 0)
    # The use is free again: another order gets it.
    taken = await reserve(running, "c-66", "ord_61", ["ONCE-ONLY-60"], "cus_61")
    assert [r.status for r in taken.reservations] == ["reserved"]
    assert await counts() == (0, 1)
    [event] = await released_events(infra, coupon.id)
    assert (event.order_id, event.customer_id) == ("ord_60", "cus_60")
    assert event.coupon.code == "" and event.coupon.redeemed_count == 0
    # A reservation released before its redemption was never announced: no event for it.
    await running.stub.ReleaseCoupons(
        pb.ReleaseCouponsRequest(request_id="c-67", order_id="ord_61"), metadata=md(), timeout=10
    )
    assert [e.order_id for e in await released_events(infra, coupon.id)] == ["ord_60"]


async def test_500_concurrent_checkouts_of_a_50_use_code_get_exactly_50(running: Running) -> None:
    _, [coupon] = await coupon_offer(running, "c-50", codes=["FIFTY"], max_uses=50)

    async def checkout(i: int) -> bool:
        try:
            await reserve(running, f"c-50-{i}", f"ord_{i}", ["fifty"], f"cus_{i}")
        except grpc.aio.AioRpcError as exc:
            assert read_error(exc).reason == "coupon_exhausted"
            return False
        return True

    results = await asyncio.gather(*(checkout(i) for i in range(500)))
    assert sum(results) == 50
    assert (
        await running.count(coupon_reservations, coupon_reservations.c.status == "reserved") == 50
    )
    async with running.runtime.engine.connect() as conn:
        reserved = (
            await conn.execute(select(coupons.c.reserved_count).where(coupons.c.id == coupon.id))
        ).scalar_one()
    assert reserved == 50


async def merge(
    running: Running, infra: Infra, duplicate: str, survivor: str, merchant: str
) -> None:
    """The customer service's `customer_merged`, as its relay publishes it; back once this
    service's consumer has applied it (its event id in the inbox)."""
    winner = customer_pb2.Customer(id=survivor, version=2, status="active")
    event_id = await publish_as_relay(
        infra.nats_url, customer_events.CustomerMerged(winner=winner, loser_id=duplicate), merchant
    )

    def applied() -> bool:
        with psycopg.connect(running.runtime.settings.database_url) as conn:
            row = conn.execute(
                "SELECT 1 FROM inbox WHERE consumer = %s AND event_id = %s",
                ("promotion-customer-merges", event_id),
            ).fetchone()
        return row is not None

    await until(applied, limit=30)


async def test_a_merged_duplicates_coupon_uses_are_the_survivors(
    running: Running, infra: Infra
) -> None:
    """A duplicate merged into a customer is the same person (`customer_merged`, consumer
    `promotion-customer-merges`): a coupon once per customer used under either id is used
    under both, in the quote and the checkout, whichever id the checkout names; merges chain
    and may be heard in any order; another merchant's merge of the same ids changes nothing."""
    await coupon_offer(running, "c-70", codes=["ONCE-EACH-70"], max_uses_per_customer=1)
    survivor, duplicate, top, early = (new_id("cus") for _ in range(4))
    cart = pb.CalculateDiscountsRequest(currency=USD, lines=[line("X", 1, 2500)])
    await reserve(running, "c-71", "ord_70", ["once-each-70"], duplicate, cart=cart)
    await running.stub.RedeemCoupons(
        pb.RedeemCouponsRequest(request_id="c-72", order_id="ord_70"), metadata=md(), timeout=10
    )

    async def reasons(customer: str) -> list[str]:
        quote = await calc(
            running, line("X", 1, 2500), coupon_codes=["ONCE-EACH-70"], customer_id=customer
        )
        return [r.reason for r in quote.rejected_coupons]

    await merge(running, infra, duplicate, survivor, "mer_b")
    assert await reasons(survivor) == []  # another merchant's customers: nothing here
    await merge(running, infra, duplicate, survivor, "mer_a")
    assert await reasons(survivor) == await reasons(duplicate) == ["coupon_customer_limit"]
    for i, named in enumerate((survivor, duplicate)):
        err = await refused(reserve(running, f"c-73-{i}", f"ord_71_{i}", ["ONCE-EACH-70"], named))
        assert read_error(err).reason == "coupon_customer_limit"
    # The duplicate's order cancelled: the person has the coupon again, under either id.
    await running.stub.ReleaseCoupons(
        pb.ReleaseCouponsRequest(request_id="c-74", order_id="ord_70"), metadata=md(), timeout=10
    )
    await reserve(running, "c-75", "ord_72", ["ONCE-EACH-70"], survivor)
    err = await refused(reserve(running, "c-76", "ord_73", ["ONCE-EACH-70"], duplicate))
    assert read_error(err).reason == "coupon_customer_limit"
    # The survivor merged on into another customer: that one has used it too. And a merge of
    # an earlier duplicate into the first one, heard only now, goes where the first one went.
    await merge(running, infra, survivor, top, "mer_a")
    await merge(running, infra, early, duplicate, "mer_a")
    for i, named in enumerate((top, survivor, duplicate, early)):
        err = await refused(reserve(running, f"c-77-{i}", f"ord_74_{i}", ["ONCE-EACH-70"], named))
        assert read_error(err).reason == "coupon_customer_limit"
    assert await reasons(early) == ["coupon_customer_limit"]
    assert await reasons(new_id("cus")) == []


async def test_concurrent_checkouts_under_both_ids_of_a_merged_customer_use_it_once(
    running: Running, infra: Infra
) -> None:
    """After the merge, checkouts naming the survivor and the duplicate at once: the coupon
    row's lock orders them and each counts the other's use, so exactly one gets it."""
    await coupon_offer(running, "c-80", codes=["ONCE-EACH-80"], max_uses_per_customer=1)
    survivor, duplicate = new_id("cus"), new_id("cus")
    await merge(running, infra, duplicate, survivor, "mer_a")

    async def checkout(i: int) -> bool:
        named = survivor if i % 2 else duplicate
        try:
            await reserve(running, f"c-80-{i}", f"ord_80_{i}", ["ONCE-EACH-80"], named)
        except grpc.aio.AioRpcError as exc:
            assert read_error(exc).reason == "coupon_customer_limit"
            return False
        return True

    results = await asyncio.gather(*(checkout(i) for i in range(20)))
    assert sum(results) == 1


async def test_a_percent_off_the_order_keeps_its_conditions(running: Running) -> None:
    # The first API version's shape (`percent_off_bps`, no rule) with conditions: they were
    # dropped without a word, so "10 % off on the web" was 10 % off everywhere, always.
    merchant = "mer_first_kind_conditions"
    promo = await create(
        running,
        "fk-1",
        merchant=merchant,
        name="Web only",
        percent_off_bps=1000,
        conditions=pb.Conditions(channels=["web"], min_amount=usd(500)),
    )
    assert list(promo.conditions.channels) == ["web"]
    assert promo.conditions.min_amount == usd(500)
    stored = await running.stub.GetPromotion(
        pb.GetPromotionRequest(id=promo.id), metadata=md(merchant), timeout=10
    )
    assert list(stored.promotion.conditions.channels) == ["web"]
    web = await calc(running, line("X", 1, 1000), channel="web", merchant=merchant)
    at_till = await calc(running, line("X", 1, 1000), channel="register", merchant=merchant)
    small = await calc(running, line("X", 1, 400), channel="web", merchant=merchant)
    assert web.total_discount == usd(100)
    assert at_till.total_discount.amount == 0 and small.total_discount.amount == 0
    # Conditions that cannot hold are refused, named, with the shape's own fields, at once.
    bad = await refused(
        create(
            running,
            "fk-2",
            merchant=merchant,
            name="Bad",
            percent_off_bps=0,
            minimum_subtotal=usd(100),
            conditions=pb.Conditions(
                starts_at="2027-01-02T00:00",
                ends_at="2027-01-01T00:00",
                time_zone="Mars/Base",
                hours_from="25:00",
                hours_until="26:00",
                min_amount=usd(100),
            ),
        )
    )
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert {v.field for v in read_error(bad).violations} == {
        "percent_off_bps",
        "minimum_subtotal",
        "conditions.ends_at",
        "conditions.time_zone",
        "conditions.hours_from",
        "conditions.hours_until",
    }


async def test_an_amount_off_each_unit_after_a_bundle_is_capped_unit_by_unit(
    running: Running,
) -> None:
    """Three 10.00 shirts, "any 2 for 15.00" then 9.00 off each: the two bundled shirts have
    7.50 left each and take 7.50, the third takes 9.00, so the three cost 1.00, not nothing."""
    merchant = "mer_amount_after_set"
    shirts = pb.ItemSelector(categories=["shirts"])
    await create(
        running,
        "as-1",
        merchant=merchant,
        name="Any 2",
        rule=pb.Rule(
            kind=pb.OFFER_KIND_BUNDLE,
            level=pb.OFFER_LEVEL_ITEM,
            items=shirts,
            amount=usd(1500),
            get_quantity=2,
        ),
    )
    nine = await create(
        running,
        "as-2",
        merchant=merchant,
        name="Nine off",
        rule=pb.Rule(
            kind=pb.OFFER_KIND_AMOUNT_OFF, level=pb.OFFER_LEVEL_ITEM, items=shirts, amount=usd(900)
        ),
    )
    answer = await calc(running, line("A", 3, 1000, "shirts"), merchant=merchant)
    assert answer.total_discount == usd(2900)
    assert {d.promotion_id: d.amount.amount for d in answer.discounts}[nine.id] == 750 * 2 + 900


async def test_a_coupon_an_automatic_offer_outranks_is_not_reserved(running: Running) -> None:
    """The reservation prices the cart as CalculateDiscounts does, automatic offers and all:
    a non-stackable automatic 8.00 off of higher priority wins the order level, so the
    coupon's 5.00 gives nothing, and reserving it would burn a use for nothing."""
    merchant = "mer_coupon_vs_automatic"
    await create(
        running,
        "ca-1",
        merchant=merchant,
        name="Eight off",
        rule=pb.Rule(kind=pb.OFFER_KIND_AMOUNT_OFF, amount=usd(800)),
        stackable=False,
        priority=5,
    )
    coupon_promo = await create(
        running,
        "ca-2",
        merchant=merchant,
        name="Five off",
        rule=pb.Rule(kind=pb.OFFER_KIND_AMOUNT_OFF, amount=usd(500)),
        requires_coupon=True,
        stackable=False,
    )
    await running.stub.CreateCoupons(
        pb.CreateCouponsRequest(
            request_id="ca-3", promotion_id=coupon_promo.id, codes=["LOSES-1"], max_uses=5
        ),
        metadata=md(merchant),
        timeout=10,
    )
    quote = await calc(running, line("X", 1, 3000), coupon_codes=["loses-1"], merchant=merchant)
    assert quote.total_discount == usd(800)
    assert [r.reason for r in quote.rejected_coupons] == ["coupon_not_applicable"]
    cart = pb.CalculateDiscountsRequest(
        currency=USD, lines=[line("X", 1, 3000)], coupon_codes=["loses-1"]
    )
    err = await refused(
        reserve(running, "ca-4", "ord_ca_1", ["loses-1"], cart=cart, merchant=merchant)
    )
    assert read_error(err).reason == "coupon_not_applicable"
    listed = await running.stub.ListCoupons(
        pb.ListCouponsRequest(promotion_id=coupon_promo.id), metadata=md(merchant), timeout=10
    )
    assert [(c.reserved_count, c.redeemed_count) for c in listed.coupons] == [(0, 0)]


async def test_one_order_reserving_twice_at_once_holds_one_use(running: Running) -> None:
    """The saga and its resumer (or a retried checkout) may ask for the same order's coupons
    at the same moment under different request ids: one use is held, and both are answered
    with it."""
    merchant = "mer_reserve_twice"
    promo = await create(
        running,
        "rt-1",
        merchant=merchant,
        name="Five off",
        rule=pb.Rule(kind=pb.OFFER_KIND_AMOUNT_OFF, amount=usd(500)),
        requires_coupon=True,
    )
    await running.stub.CreateCoupons(
        pb.CreateCouponsRequest(request_id="rt-2", promotion_id=promo.id, codes=["TWICE-1"]),
        metadata=md(merchant),
        timeout=10,
    )
    answers = await asyncio.gather(
        *(
            reserve(running, f"rt-3-{i}", "ord_rt_1", ["twice-1"], merchant=merchant)
            for i in range(6)
        ),
        return_exceptions=True,
    )
    failed = [(a.code(), a.details()) for a in answers if isinstance(a, grpc.aio.AioRpcError)]
    assert failed == []
    assert len({a.SerializeToString() for a in answers}) == 1  # type: ignore[union-attr]
    listed = await running.stub.ListCoupons(
        pb.ListCouponsRequest(promotion_id=promo.id), metadata=md(merchant), timeout=10
    )
    assert [c.reserved_count for c in listed.coupons] == [1]


async def test_one_orders_coupons_redeemed_twice_at_once_count_once(running: Running) -> None:
    """Redeem is keyed by the order: the saga and its resumer redeeming at the same moment
    under different request ids move the use once (one redemption, nothing reserved), and a
    cancellation racing them leaves the counts as one of them alone would."""
    merchant = "mer_redeem_twice"
    promo = await create(
        running,
        "rd-1",
        merchant=merchant,
        name="Five off",
        rule=pb.Rule(kind=pb.OFFER_KIND_AMOUNT_OFF, amount=usd(500)),
        requires_coupon=True,
    )
    await running.stub.CreateCoupons(
        pb.CreateCouponsRequest(request_id="rd-2", promotion_id=promo.id, codes=["RACE-1"]),
        metadata=md(merchant),
        timeout=10,
    )

    async def counts() -> tuple[int, int]:
        listed = await running.stub.ListCoupons(
            pb.ListCouponsRequest(promotion_id=promo.id), metadata=md(merchant), timeout=10
        )
        [c] = listed.coupons
        return c.reserved_count, c.redeemed_count

    def settle(kind: str, rid: str, order_id: str) -> Any:
        if kind == "redeem":
            return running.stub.RedeemCoupons(
                pb.RedeemCouponsRequest(request_id=rid, order_id=order_id),
                metadata=md(merchant),
                timeout=30,
            )
        return running.stub.ReleaseCoupons(
            pb.ReleaseCouponsRequest(request_id=rid, order_id=order_id),
            metadata=md(merchant),
            timeout=30,
        )

    await reserve(running, "rd-3", "ord_rd_1", ["race-1"], merchant=merchant)
    await asyncio.gather(*(settle("redeem", f"rd-4-{i}", "ord_rd_1") for i in range(6)))
    assert await counts() == (0, 1)
    # Redeem and release of another order at once: whichever comes second sees the first.
    await reserve(running, "rd-5", "ord_rd_2", ["race-1"], merchant=merchant)
    answers = await asyncio.gather(
        *(settle(k, f"rd-6-{k}-{i}", "ord_rd_2") for i in range(3) for k in ("redeem", "release")),
        return_exceptions=True,
    )
    refusals = {read_error(a).reason for a in answers if isinstance(a, grpc.aio.AioRpcError)}
    assert refusals <= {"coupons_already_released"}
    assert await counts() == (0, 1)  # ord_rd_2's use came back whichever order they ran in


async def test_one_code_is_deactivated_on_its_own_and_a_use_held_before_redeems(
    running: Running,
) -> None:
    """A leaked code: deactivated, it reserves no more (`coupon_deactivated`, a reason in a
    preview), its promotion and other code go on, and an order that reserved it before still
    redeems. Read and deactivated only through its own promotion and merchant; deactivating
    again (another request id) answers it unchanged; a replay answers the first answer."""
    promo, [leaked, kept] = await coupon_offer(
        running, "c-90", codes=["LEAK-90", "KEEP-90"], max_uses=10
    )
    other, _ = await coupon_offer(running, "c-91", codes=["OTHER-91"])
    assert leaked.status == pb.COUPON_STATUS_ACTIVE and not leaked.HasField("deactivated_at")
    await reserve(running, "c-92", "ord_90", ["leak-90"])

    def deactivate(rid: str, promotion_id: str, coupon_id: str, merchant: str = "mer_a") -> Any:
        return running.stub.DeactivateCoupon(
            pb.DeactivateCouponRequest(request_id=rid, promotion_id=promotion_id, id=coupon_id),
            metadata=md(merchant),
            timeout=10,
        )

    def get(promotion_id: str, coupon_id: str, merchant: str = "mer_a") -> Any:
        return running.stub.GetCoupon(
            pb.GetCouponRequest(promotion_id=promotion_id, id=coupon_id),
            metadata=md(merchant),
            timeout=10,
        )

    # Another promotion's path, another merchant, a made-up id: NOT_FOUND, nothing changed.
    for call in (
        deactivate("c-93", other.id, leaked.id),
        deactivate("c-94", promo.id, leaked.id, merchant="mer_b"),
        deactivate("c-95", promo.id, "cpn_missing"),
        get(other.id, leaked.id),
        get(promo.id, leaked.id, merchant="mer_b"),
    ):
        assert (await refused(call)).code() == grpc.StatusCode.NOT_FOUND
    assert (await get(promo.id, leaked.id)).coupon.status == pb.COUPON_STATUS_ACTIVE

    done = (await deactivate("c-96", promo.id, leaked.id)).coupon
    assert done.status == pb.COUPON_STATUS_DEACTIVATED and done.HasField("deactivated_at")
    again = (await deactivate("c-97", promo.id, leaked.id)).coupon
    assert again == done
    assert (await deactivate("c-96", promo.id, leaked.id)).coupon == done
    assert (await get(promo.id, leaked.id)).coupon == done

    err = await refused(reserve(running, "c-98", "ord_91", ["KEEP-90", "LEAK-90"]))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert (read_error(err).reason, read_error(err).metadata.get("code_index")) == (
        "coupon_deactivated",
        "1",
    )
    quote = await calc(running, line("X", 1, 2500), coupon_codes=["leak-90"])
    assert [r.reason for r in quote.rejected_coupons] == ["coupon_deactivated"]
    assert quote.total_discount.amount == 0
    # The promotion and its other code go on.
    await reserve(running, "c-99", "ord_92", ["keep-90"])
    # The use held before the deactivation redeems, as one held before an end does.
    redeemed = await running.stub.RedeemCoupons(
        pb.RedeemCouponsRequest(request_id="c-100", order_id="ord_90"), metadata=md(), timeout=10
    )
    assert [r.status for r in redeemed.reservations] == ["redeemed"]

    def listed(status: int) -> Any:
        return running.stub.ListCoupons(
            pb.ListCouponsRequest(promotion_id=promo.id, status=status), metadata=md(), timeout=10
        )

    everything = (await listed(pb.COUPON_STATUS_UNSPECIFIED)).coupons
    assert [(c.id, c.redeemed_count) for c in everything] == sorted([(leaked.id, 1), (kept.id, 0)])
    assert [c.id for c in (await listed(pb.COUPON_STATUS_ACTIVE)).coupons] == [kept.id]
    assert [c.id for c in (await listed(pb.COUPON_STATUS_DEACTIVATED)).coupons] == [leaked.id]
    bad = await refused(listed(7))
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_the_schedule_state_reads_the_window_and_the_list_filters_on_it(
    running: Running,
) -> None:
    """`status` stays the merchant's (active, paused, ended); `schedule_state` says whether the
    window has opened or closed, read from the clock: a promotion starting next year or one
    that ended last year no longer reads as simply `active`. The list filters on it, alone or
    with `status`, and an edit of the window moves it."""
    merchant = "mer_schedule"
    ten = pb.Rule(kind=pb.OFFER_KIND_PERCENT_OFF, percent_bps=1000)
    windows = {
        "soon": pb.Conditions(starts_at="2099-01-01T00:00", time_zone="Europe/Berlin"),
        "over": pb.Conditions(starts_at="2000-01-01T00:00", ends_at="2001-01-01T00:00"),
        "open": pb.Conditions(starts_at="2000-01-01T00:00", ends_at="2099-01-01T00:00"),
        "always": pb.Conditions(),
        "held": pb.Conditions(ends_at="2001-01-01T00:00", time_zone="Asia/Tokyo"),
    }
    made = {
        name: await create(
            running, f"c-s-{name}", name=name, rule=ten, conditions=c, merchant=merchant
        )
        for name, c in windows.items()
    }
    await running.stub.PausePromotion(
        pb.PausePromotionRequest(request_id="c-s-pause", id=made["held"].id, expected_version=1),
        metadata=md(merchant),
        timeout=10,
    )
    states = {name: p.schedule_state for name, p in made.items()}
    assert states == {
        "soon": pb.SCHEDULE_STATE_SCHEDULED,
        "over": pb.SCHEDULE_STATE_FINISHED,
        "open": pb.SCHEDULE_STATE_RUNNING,
        "always": pb.SCHEDULE_STATE_RUNNING,
        "held": pb.SCHEDULE_STATE_FINISHED,
    }
    # The status a merchant set is unchanged: every one of them reads active but the paused one.
    assert made["soon"].status == made["over"].status == pb.PROMOTION_STATUS_ACTIVE

    async def listed(**filters: Any) -> set[str]:
        answer = await running.stub.ListPromotions(
            pb.ListPromotionsRequest(page_size=50, **filters), metadata=md(merchant), timeout=10
        )
        names = set()
        for p in answer.promotions:
            if "schedule_state" in filters:
                assert p.schedule_state == filters["schedule_state"]
            names.add(p.name)
        return names

    assert await listed(schedule_state=pb.SCHEDULE_STATE_SCHEDULED) == {"soon"}
    assert await listed(schedule_state=pb.SCHEDULE_STATE_RUNNING) == {"open", "always"}
    assert await listed(schedule_state=pb.SCHEDULE_STATE_FINISHED) == {"over", "held"}
    finished_active = await listed(
        schedule_state=pb.SCHEDULE_STATE_FINISHED, status=pb.PROMOTION_STATUS_ACTIVE
    )
    assert finished_active == {"over"}
    assert len(await listed()) == 5
    err = await refused(listed(schedule_state=9))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in read_error(err).violations] == ["schedule_state"]
    # Not with the change feed: a promotion whose window opens enters `running` with no new
    # `updated_at`, so a poller reading `updated_since` its last read with this filter would
    # never see it (the feed narrows by `status`, which only a change moves).
    since = Timestamp()
    since.FromDatetime(datetime(2026, 1, 1, tzinfo=UTC))
    err = await refused(listed(schedule_state=pb.SCHEDULE_STATE_RUNNING, updated_since=since))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in read_error(err).violations] == ["schedule_state"]
    assert len(await listed(status=pb.PROMOTION_STATUS_ACTIVE, updated_since=since)) == 4
    # The window edited away: running from then on, in the answer and in the list.
    edited = await running.stub.UpdatePromotion(
        pb.UpdatePromotionRequest(
            request_id="c-s-edit",
            id=made["soon"].id,
            expected_version=1,
            update_mask=["conditions"],
            conditions=pb.Conditions(),
        ),
        metadata=md(merchant),
        timeout=10,
    )
    assert edited.promotion.schedule_state == pb.SCHEDULE_STATE_RUNNING
    assert await listed(schedule_state=pb.SCHEDULE_STATE_SCHEDULED) == set()
    got = await running.stub.GetPromotion(
        pb.GetPromotionRequest(id=made["over"].id), metadata=md(merchant), timeout=10
    )
    assert got.promotion.schedule_state == pb.SCHEDULE_STATE_FINISHED


async def test_a_promotions_coupons_are_a_change_feed(running: Running) -> None:
    """`ListCoupons` with `updated_since`: the kit's change feed, as the order list's. A coupon
    deactivated, or reserved by a checkout, moves to its end, oldest change first; walked a
    page at a time with the feed's own token to its end; polled again from the last
    `updated_at` seen, only what changed since."""
    promo, made = await coupon_offer(
        running, "c-feed", codes=["FEED-A", "FEED-B", "FEED-C"], max_uses=5
    )
    assert all(c.HasField("updated_at") for c in made)
    first, second, third = made
    deactivated = (
        await running.stub.DeactivateCoupon(
            pb.DeactivateCouponRequest(request_id="c-feed-d", promotion_id=promo.id, id=second.id),
            metadata=md(),
            timeout=10,
        )
    ).coupon
    assert deactivated.updated_at.ToDatetime() > third.updated_at.ToDatetime()
    cart = pb.CalculateDiscountsRequest(currency=USD, lines=[line("X", 1, 2500)])
    await reserve(running, "c-feed-r", "ord_feed", ["feed-a"], "cus_feed", cart=cart)

    async def walk(since: Timestamp) -> list[pb.Coupon]:
        seen: list[pb.Coupon] = []
        token = ""
        for _ in range(20):
            page = await running.stub.ListCoupons(
                pb.ListCouponsRequest(
                    promotion_id=promo.id, updated_since=since, page_size=1, page_token=token
                ),
                metadata=md(),
                timeout=10,
            )
            seen += page.coupons
            token = page.next_page_token
            if not token:
                return seen
        raise AssertionError("the feed did not end")

    seen = await polled(lambda: walk(first.updated_at), lambda s: len(s) >= 3)
    assert [c.id for c in seen] == [third.id, second.id, first.id]
    assert seen[1].status == pb.COUPON_STATUS_DEACTIVATED and seen[2].reserved_count == 1
    again = await polled(lambda: walk(seen[-1].updated_at))
    assert [c.id for c in again] == [first.id]
    # The feed's token and the list's by id are not each other's.
    by_id = await running.stub.ListCoupons(
        pb.ListCouponsRequest(promotion_id=promo.id, page_size=1), metadata=md(), timeout=10
    )
    wrong = await refused(
        running.stub.ListCoupons(
            pb.ListCouponsRequest(
                promotion_id=promo.id,
                updated_since=first.updated_at,
                page_token=by_id.next_page_token,
            ),
            metadata=md(),
            timeout=10,
        )
    )
    assert wrong.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in read_error(wrong).violations] == ["page_token"]


async def test_a_group_retired_while_a_promotion_is_made_naming_it_is_never_both(
    running: Running,
) -> None:
    """RetireCustomerGroup and a CreatePromotion naming the group, sent at once, 20 times:
    each time one sees the other (the retirement answers the promotion's id and writes
    nothing, or the promotion is NOT_FOUND naming conditions.customer_groups[0] and is not
    stored), never neither. Both decide under the group's lock in their own transaction."""
    merchant = f"mer_{new_id('x')[-8:]}"

    async def at_once(n: int) -> tuple[Any, Any]:
        group = f"cgrp_race_{n}"
        made = running.stub.CreatePromotion(
            pb.CreatePromotionRequest(
                request_id=f"race-create-{merchant}-{n}",
                name=f"For {n}",
                percent_off_bps=500,
                conditions=pb.Conditions(customer_groups=[group]),
            ),
            metadata=md(merchant),
            timeout=10,
        )
        retired = running.stub.RetireCustomerGroup(
            pb.RetireCustomerGroupRequest(request_id=f"race-retire-{merchant}-{n}", group_id=group),
            metadata=md(merchant),
            timeout=10,
        )
        answers = await asyncio.gather(made, retired, return_exceptions=True)
        return answers[0], answers[1]

    for n in range(20):
        made, retired = await at_once(n)
        assert not isinstance(retired, BaseException), retired
        if isinstance(made, grpc.aio.AioRpcError):
            assert made.code() == grpc.StatusCode.NOT_FOUND, made
            assert read_error(made).violations[0].field == "conditions.customer_groups[0]"
            assert list(retired.promotion_ids) == [], n
        else:
            assert not isinstance(made, BaseException), made
            assert list(retired.promotion_ids) == [made.promotion.id], n
    live = await running.stub.ListPromotions(
        pb.ListPromotionsRequest(page_size=100), metadata=md(merchant), timeout=10
    )
    retired_now = await running.count(retired_groups, retired_groups.c.merchant_id == merchant)
    assert len(live.promotions) + retired_now == 20
