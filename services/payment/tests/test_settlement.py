"""The settlement report against real payments: for generated days of mixed tenders, captures
and refunds, it equals the sum of what happened in the location's own day, across the local
midnight (on a day that is 23 hours long) and whatever the time in UTC says."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import grpc
import psycopg
import pytest
import pytest_asyncio

from pos.common.v1 import money_pb2
from pos.payment.v1 import gift_cards_pb2 as G
from pos.payment.v1 import (
    gift_cards_pb2_grpc,
    payment_pb2,
    payment_pb2_grpc,
    settlement_pb2_grpc,
    shifts_pb2,
    shifts_pb2_grpc,
)
from pos.payment.v1 import settlement_pb2 as S
from pos_devstack.testing import Infra, serve_in_process
from pos_kit.grpc_client import read_error
from pos_kit.ids import new_id

pytestmark = pytest.mark.asyncio(loop_scope="session")

P = payment_pb2
ZONE = "America/New_York"
# 8 March 2026: clocks go forward at 02:00 in New York, so this local day lasts 23 hours.
DAY = "2026-03-08"
START = datetime(2026, 3, 8, tzinfo=ZoneInfo(ZONE))
END = datetime(2026, 3, 9, tzinfo=ZoneInfo(ZONE))
HERE = "loc_ny"
BRANDS = {"tok_visa": "visa", "tok_mastercard": "mastercard", "tok_amex": "amex"}


@dataclass
class Running:
    payments: payment_pb2_grpc.PaymentServiceStub
    cards: gift_cards_pb2_grpc.GiftCardServiceStub
    settlement: settlement_pb2_grpc.SettlementServiceStub
    database_url: str
    shifts: shifts_pb2_grpc.ShiftServiceStub

    def execute(self, query: str, *args: Any) -> None:
        with psycopg.connect(self.database_url) as conn:
            conn.execute(query, args)  # type: ignore[arg-type]


@pytest_asyncio.fixture(loop_scope="session")
async def running(infra: Infra) -> AsyncIterator[Running]:
    async with serve_in_process("payment", infra, sweep_interval_seconds=3600.0) as svc:
        yield Running(
            payment_pb2_grpc.PaymentServiceStub(svc.channel),
            gift_cards_pb2_grpc.GiftCardServiceStub(svc.channel),
            settlement_pb2_grpc.SettlementServiceStub(svc.channel),
            svc.database_url,
            shifts_pb2_grpc.ShiftServiceStub(svc.channel),
        )


def usd(amount: int) -> money_pb2.Money:
    return money_pb2.Money(amount=amount, currency="USD")


def rid() -> str:
    return new_id("req")


@dataclass
class Moved:
    tender: str
    brand: str
    refund: bool
    amount: int
    at: datetime


def near_midnight(rng: random.Random) -> datetime:
    """Somewhere from 6 hours before the local day to 6 hours after it: about a third of the
    movements fall outside the day, many within minutes of either midnight."""
    if rng.random() < 0.5:
        edge = rng.choice([START, END])
        return edge + timedelta(seconds=rng.randint(-900, 900))
    return START + timedelta(seconds=rng.randint(-6 * 3600, 29 * 3600))


class Day:
    """Generates a day of payments through the service, then moves each money movement to a
    chosen instant, and keeps what the report must say independently of the report's SQL."""

    def __init__(self, running: Running, merchant: str, seed: int) -> None:
        self.running = running
        self.merchant = merchant
        self.rng = random.Random(seed)
        self.moved: list[Moved] = []
        self.tips: list[tuple[int, datetime]] = []
        self.sold: list[tuple[int, datetime]] = []
        self.gift_code = ""

    @property
    def md(self) -> Any:
        return (("x-merchant-id", self.merchant),)

    async def prepare(self) -> None:
        # The card customers pay with was bought at another store: not sold here.
        issued = await self.running.cards.IssueGiftCard(
            G.IssueGiftCardRequest(request_id=rid(), amount=usd(150_000), location_id="loc_sf"),
            metadata=self.md,
            timeout=30,
        )
        self.gift_code = issued.code
        await self.running.cards.UpdateGiftCardSettings(
            G.UpdateGiftCardSettingsRequest(request_id=rid(), max_balance=10**9),
            metadata=self.md,
            timeout=30,
        )

    async def sell_gift_card(self, location: str) -> None:
        amount = self.rng.randint(1000, 5000)
        issued = await self.running.cards.IssueGiftCard(
            G.IssueGiftCardRequest(request_id=rid(), amount=usd(amount), location_id=location),
            metadata=self.md,
            timeout=30,
        )
        at = near_midnight(self.rng)
        self.running.execute(
            "UPDATE gift_card_activities SET created_at = %s WHERE merchant_id = %s AND id = %s",
            at,
            self.merchant,
            issued.activity.id,
        )
        if location == HERE:
            self.sold.append((amount, at))

    async def payment(self, location: str) -> None:
        rng = self.rng
        tender = rng.choice(["cash", "card", "card", "gift_card", "external"])
        amount = rng.randint(100, 20_000)
        tip = rng.choice([0, 0, rng.randint(1, 500)]) if tender in ("card", "cash") else 0
        capture_now = tender != "card" or rng.random() < 0.6
        token = rng.choice(list(BRANDS)) if tender == "card" else ""
        request = P.CreatePaymentRequest(
            request_id=rid(),
            order_id=new_id("ord"),
            tender_type=P.TenderType.Value(f"TENDER_TYPE_{tender.upper()}"),
            amount=usd(amount),
            location_id=location,
            capture=capture_now,
            card_token=token,
            gift_card_code=self.gift_code if tender == "gift_card" else "",
            external_reference="cheque-1" if tender == "external" else "",
        )
        if tip:
            request.tip.CopyFrom(usd(tip))
        if tender == "cash":
            request.cash_tendered.CopyFrom(usd(amount + tip))
        paid = (
            await self.running.payments.CreatePayment(request, metadata=self.md, timeout=30)
        ).payment
        brand = BRANDS.get(token, "")
        created = near_midnight(rng)
        self.running.execute(
            "UPDATE payments SET created_at = %s WHERE merchant_id = %s AND id = %s",
            created,
            self.merchant,
            paid.id,
        )
        here = location == HERE
        captured = 0
        if capture_now:
            captured = amount + tip
            if here:
                self.moved.append(Moved(tender, brand, False, captured, created))
        else:
            # Captured later, in one or two parts, each at its own time.
            parts = [rng.randint(1, amount + tip)]
            if rng.random() < 0.5 and parts[0] < amount + tip:
                parts.append(rng.randint(1, amount + tip - parts[0]))
            for part in parts:
                await self.running.payments.CapturePayment(
                    P.CapturePaymentRequest(request_id=rid(), payment_id=paid.id, amount=usd(part)),
                    metadata=self.md,
                    timeout=30,
                )
                at = near_midnight(rng)
                self.running.execute(
                    "UPDATE payment_operations SET created_at = %s WHERE merchant_id = %s "
                    "AND payment_id = %s AND kind = 'capture' AND amount = %s "
                    "AND created_at > now() - interval '1 hour'",
                    at,
                    self.merchant,
                    paid.id,
                    part,
                )
                captured += part
                if here:
                    self.moved.append(Moved(tender, brand, False, part, at))
        if here and tip and created >= START and created < END:
            self.tips.append((tip, created))
        if rng.random() < 0.35:
            back = rng.randint(1, captured)
            refunds = await self.running.payments.CreateRefund(
                P.CreateRefundRequest(request_id=rid(), payment_id=paid.id, amount=usd(back)),
                metadata=self.md,
                timeout=30,
            )
            at = near_midnight(rng)
            for refund in refunds.refunds:
                self.running.execute(
                    "UPDATE refunds SET created_at = %s WHERE merchant_id = %s AND id = %s",
                    at,
                    self.merchant,
                    refund.id,
                )
            if here:
                self.moved.append(Moved(tender, brand, True, back, at))

    def expected(self) -> dict[str, Any]:
        inside = [m for m in self.moved if START <= m.at < END]
        tenders: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        brands: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        for m in inside:
            for table, name in ((tenders, m.tender), (brands, m.brand)):
                if table is brands and m.tender != "card":
                    continue
                row = table[name]
                row[2 if m.refund else 0] += m.amount
                row[3 if m.refund else 1] += 1
        return {
            "tenders": {k: tuple(v) for k, v in tenders.items()},
            "brands": {k: tuple(v) for k, v in brands.items()},
            "tips": sum(t for t, at in self.tips if START <= at < END),
            "sold": (
                sum(a for a, at in self.sold if START <= at < END),
                sum(1 for _, at in self.sold if START <= at < END),
            ),
        }


def observed(report: S.SettlementReport) -> dict[str, Any]:
    def rows(totals: Any) -> dict[str, tuple[int, ...]]:
        return {
            t.name: (t.captured.amount, t.captured_count, t.refunded.amount, t.refunded_count)
            for t in totals
            if t.captured_count or t.refunded_count
        }

    return {
        "tenders": rows(report.tenders),
        "brands": rows(report.card_brands),
        "tips": report.tips.amount,
        "sold": (report.gift_cards_sold.amount, report.gift_cards_sold_count),
    }


async def report_of(running: Running, md: Any) -> S.SettlementReport:
    """The report of HERE on DAY."""
    answer = await running.settlement.GetSettlementReport(
        S.GetSettlementReportRequest(location_id=HERE, date=DAY, time_zone=ZONE, currency="USD"),
        metadata=md,
        timeout=30,
    )
    return answer.report


@pytest.mark.parametrize("seed", [1, 2])
async def test_the_report_is_the_sum_of_the_local_days_captures_and_refunds(
    running: Running, seed: int
) -> None:
    day = Day(running, new_id("mer"), seed)
    await day.prepare()
    for n in range(60):
        # A few payments at another location of the same merchant: never in this report.
        await day.payment(HERE if n % 6 else "loc_sf")
    for n in range(6):
        await day.sell_gift_card(HERE if n % 3 else "loc_sf")
    answer = await running.settlement.GetSettlementReport(
        S.GetSettlementReportRequest(location_id=HERE, date=DAY, time_zone=ZONE, currency="USD"),
        metadata=day.md,
        timeout=30,
    )
    report = answer.report
    expected = day.expected()
    assert observed(report) == expected
    assert any(m.at < START or m.at >= END for m in day.moved)  # the boundary was exercised
    net = {t.name: t.net.amount for t in report.tenders}
    assert report.net.amount == sum(net.values())
    assert report.gift_cards_redeemed.amount == net["gift_card"]
    assert [t.name for t in report.tenders] == ["cash", "card", "gift_card", "external"]
    assert (report.starts_at.ToDatetime(UTC), report.ends_at.ToDatetime(UTC)) == (
        datetime(2026, 3, 8, 5, tzinfo=UTC),
        datetime(2026, 3, 9, 4, tzinfo=UTC),  # 23 hours: the clocks went forward
    )
    assert abs(report.computed_at.ToDatetime(UTC) - datetime.now(UTC)) < timedelta(minutes=1)


async def test_the_same_sales_split_differently_give_the_same_totals(running: Running) -> None:
    async def day_of(amounts: list[int]) -> S.SettlementReport:
        m = new_id("mer")
        for amount in amounts:
            paid = await running.payments.CreatePayment(
                P.CreatePaymentRequest(
                    request_id=rid(),
                    order_id="ord_split",
                    tender_type=P.TENDER_TYPE_CARD,
                    amount=usd(amount),
                    card_token="tok_visa",
                    location_id=HERE,
                    capture=True,
                ),
                metadata=(("x-merchant-id", m),),
                timeout=30,
            )
            running.execute(
                "UPDATE payments SET created_at = %s WHERE id = %s",
                START + timedelta(hours=12),
                paid.payment.id,
            )
        answer = await running.settlement.GetSettlementReport(
            S.GetSettlementReportRequest(
                location_id=HERE, date=DAY, time_zone=ZONE, currency="USD"
            ),
            metadata=(("x-merchant-id", m),),
            timeout=30,
        )
        return answer.report

    whole, split = await day_of([10_000]), await day_of([2_500, 7_500])
    assert [(t.name, t.net.amount) for t in whole.tenders] == [
        (t.name, t.net.amount) for t in split.tenders
    ]
    assert whole.net.amount == split.net.amount == 10_000


async def test_a_bad_day_is_refused_field_by_field(running: Running) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await running.settlement.GetSettlementReport(
            S.GetSettlementReportRequest(
                location_id="", date="2026-13-01", time_zone="Mars/Olympus", currency="usd"
            ),
            metadata=(("x-merchant-id", "mer_x"),),
            timeout=30,
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    fields = {v.field for v in read_error(err.value).violations}
    assert fields == {"location_id", "date", "time_zone", "currency"}


@pytest.mark.parametrize(
    "zone", ["localtime", "posixrules", "Factory", "right/UTC", "posix/Europe/Paris"]
)
async def test_a_file_of_the_tz_database_that_is_no_zone_is_refused(
    running: Running, zone: str
) -> None:
    """The tz database's own files beside its zones (the host's `localtime`, the leap-second
    `right/` copies) open with ZoneInfo but are no IANA zone: a 400 on `time_zone`, as the
    gateway and the inventory service refuse them, never a report of some other day."""
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await running.settlement.GetSettlementReport(
            S.GetSettlementReportRequest(
                location_id="loc_1", date=DAY, time_zone=zone, currency="USD"
            ),
            metadata=(("x-merchant-id", "mer_x"),),
            timeout=30,
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in read_error(err.value).violations] == ["time_zone"]


@pytest.mark.parametrize("day", ["9999-12-31", "0001-01-01", "1969-12-31"])
async def test_a_day_whose_bounds_cannot_be_written_is_refused(running: Running, day: str) -> None:
    """Its next midnight overflows the calendar, or its midnight in UTC falls before year 1:
    a 400 on `date`, never an error of the server."""
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await running.settlement.GetSettlementReport(
            S.GetSettlementReportRequest(
                location_id="loc_1", date=day, time_zone="Pacific/Kiritimati", currency="USD"
            ),
            metadata=(("x-merchant-id", "mer_x"),),
            timeout=30,
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in read_error(err.value).violations] == ["date"]


async def test_the_first_and_last_days_are_reported(running: Running) -> None:
    for day in ("1970-01-01", "9998-12-31"):
        answer = await running.settlement.GetSettlementReport(
            S.GetSettlementReportRequest(
                location_id="loc_1", date=day, time_zone="Pacific/Kiritimati", currency="USD"
            ),
            metadata=(("x-merchant-id", "mer_x"),),
            timeout=30,
        )
        assert answer.report.net.amount == 0


async def test_a_sold_card_undone_by_its_order_is_not_counted_as_sold(running: Running) -> None:
    """A card sold with an order and deactivated because the order was cancelled (the saga's
    compensation) or the line returned was a sale undone: `gift_card_sales_undone`, on the day
    it was undone (a closed day stays closed). Before, nothing said so, and a sale undone after
    the payment inflated what a day sold. A card deactivated for another reason (lost) was
    sold all the same."""
    m = new_id("mer")
    md = (("x-merchant-id", m),)
    noon = START + timedelta(hours=12)

    async def sold_with_order(amount: int, order: str, undo: str = "") -> None:
        issued = await running.cards.IssueGiftCard(
            G.IssueGiftCardRequest(
                request_id=rid(),
                amount=usd(amount),
                order_id=order,
                order_line_id="L1",
                reason="sale",
                location_id=HERE,
            ),
            metadata=md,
            timeout=30,
        )
        moved = [issued.activity.id]
        if undo:
            ended = await running.cards.DeactivateGiftCard(
                G.DeactivateGiftCardRequest(request_id=rid(), id=issued.gift_card.id, reason=undo),
                metadata=md,
                timeout=30,
            )
            moved.append(ended.activity.id)
        for activity_id in moved:
            running.execute(
                "UPDATE gift_card_activities SET created_at = %s WHERE merchant_id = %s "
                "AND id = %s",
                noon,
                m,
                activity_id,
            )

    await sold_with_order(4_000, "ord_kept")
    await sold_with_order(2_500, "ord_compensated", undo="order_cancelled")
    await sold_with_order(1_500, "ord_returned", undo="line_returned")
    await sold_with_order(1_000, "ord_lost", undo="lost")
    report = await report_of(running, md)
    assert (report.gift_cards_sold.amount, report.gift_cards_sold_count) == (
        4_000 + 2_500 + 1_500 + 1_000,
        4,
    )
    undone = (report.gift_card_sales_undone.amount, report.gift_card_sales_undone_count)
    assert undone == (2_500 + 1_500, 2)


async def test_a_day_undoing_an_earlier_days_sale_is_no_negative_day_of_sales(
    running: Running,
) -> None:
    """A card sold the evening before and undone today (its order cancelled): today sold
    nothing and undid one sale; the day before keeps its sale. Before, today's
    `gift_cards_sold` was -2,500 over -1 cards, which the gateway's report refused (a 500)."""
    m = new_id("mer")
    md = (("x-merchant-id", m),)
    issued = await running.cards.IssueGiftCard(
        G.IssueGiftCardRequest(
            request_id=rid(), amount=usd(2_500), order_id="ord_evening", order_line_id="L1",
            reason="sale", location_id=HERE,
        ),
        metadata=md,
        timeout=30,
    )  # fmt: skip
    ended = await running.cards.DeactivateGiftCard(
        G.DeactivateGiftCardRequest(
            request_id=rid(), id=issued.gift_card.id, reason="order_cancelled"
        ),
        metadata=md,
        timeout=30,
    )
    for activity_id, at in (
        (issued.activity.id, START - timedelta(hours=3)),
        (ended.activity.id, START + timedelta(hours=9)),
    ):
        running.execute(
            "UPDATE gift_card_activities SET created_at = %s WHERE merchant_id = %s AND id = %s",
            at,
            m,
            activity_id,
        )
    today = await report_of(running, md)
    assert (today.gift_cards_sold.amount, today.gift_cards_sold_count) == (0, 0)
    undone = (today.gift_card_sales_undone.amount, today.gift_card_sales_undone_count)
    assert undone == (2_500, 1)
    before = await running.settlement.GetSettlementReport(
        S.GetSettlementReportRequest(
            location_id=HERE,
            date=(START - timedelta(days=1)).date().isoformat(),
            time_zone=ZONE,
            currency="USD",
        ),
        metadata=md,
        timeout=30,
    )
    sold = (before.report.gift_cards_sold.amount, before.report.gift_cards_sold_count)
    assert sold == (2_500, 1) and before.report.gift_card_sales_undone_count == 0


async def test_store_credit_is_reported_apart_from_the_gift_cards_sold(running: Running) -> None:
    """A card issued as store credit (a return without a receipt) is money given back, not a
    sale: it is `store_credit_issued`, never `gift_cards_sold`; a promotional card is value
    given away: `promotional_issued`. Before, their activations counted as cards sold. Value
    loaded on such a card later was sold, as on any card."""
    m = new_id("mer")
    md = (("x-merchant-id", m),)
    noon = START + timedelta(hours=12)

    async def issued(amount: int, reason: str, location: str = HERE) -> G.IssueGiftCardResponse:
        card = await running.cards.IssueGiftCard(
            G.IssueGiftCardRequest(
                request_id=rid(),
                amount=usd(amount),
                customer_id="cus_1" if reason == "store_credit" else "",
                reason=reason,
                location_id=location,
            ),
            metadata=md,
            timeout=30,
        )
        at_noon(card.activity.id)
        return card

    def at_noon(activity_id: str) -> None:
        running.execute(
            "UPDATE gift_card_activities SET created_at = %s WHERE merchant_id = %s AND id = %s",
            noon,
            m,
            activity_id,
        )

    await issued(4_000, "sale")
    await issued(1_500, "promotional")
    credit = await issued(1_200, "store_credit")
    await issued(800, "store_credit")
    await issued(5_000, "store_credit", location="loc_sf")  # another store's
    loaded = await running.cards.LoadGiftCard(
        G.LoadGiftCardRequest(
            request_id=rid(), id=credit.gift_card.id, amount=usd(300), location_id=HERE
        ),
        metadata=md,
        timeout=30,
    )
    at_noon(loaded.activity.id)
    report = await report_of(running, md)
    assert (report.gift_cards_sold.amount, report.gift_cards_sold_count) == (4_000 + 300, 2)
    assert (report.store_credit_issued.amount, report.store_credit_issued_count) == (2_000, 2)
    assert (report.promotional_issued.amount, report.promotional_issued_count) == (1_500, 1)
    assert report.store_credit_issued.currency == "USD"


async def test_cards_redeemed_count_the_gift_card_api_at_the_location_as_the_tender(
    running: Running,
) -> None:
    """Value taken off cards at the location is redeemed there whatever the route: as a
    payment's gift card tender, or directly through the gift card API naming the location
    (less what the API gave back to cards there), as cards sold there count whatever the
    route. Before, only the tender counted. The tender stays the payments' only; an API
    redemption at another store, or naming none, is not this store's."""
    m = new_id("mer")
    md = (("x-merchant-id", m),)
    noon = START + timedelta(hours=12)

    def at_noon(table: str, row_id: str) -> None:
        running.execute(
            f"UPDATE {table} SET created_at = %s WHERE merchant_id = %s AND id = %s",  # noqa: S608
            noon,
            m,
            row_id,
        )

    card = await running.cards.IssueGiftCard(
        G.IssueGiftCardRequest(request_id=rid(), amount=usd(10_000), location_id=HERE),
        metadata=md,
        timeout=30,
    )
    paid = await running.payments.CreatePayment(
        P.CreatePaymentRequest(
            request_id=rid(),
            order_id="ord_redeemed",
            tender_type=P.TENDER_TYPE_GIFT_CARD,
            amount=usd(1_000),
            gift_card_code=card.code,
            location_id=HERE,
            capture=True,
        ),
        metadata=md,
        timeout=30,
    )
    assert paid.payment.status == P.PAYMENT_STATUS_CAPTURED
    at_noon("payments", paid.payment.id)
    for amount, location in ((700, HERE), (400, "loc_sf"), (200, "")):
        taken = await running.cards.RedeemGiftCard(
            G.RedeemGiftCardRequest(
                request_id=rid(), code=card.code, amount=usd(amount), location_id=location
            ),
            metadata=md,
            timeout=30,
        )
        at_noon("gift_card_activities", taken.activity.id)
    back = await running.cards.RefundToGiftCard(
        G.RefundToGiftCardRequest(
            request_id=rid(), id=card.gift_card.id, amount=usd(100), location_id=HERE
        ),
        metadata=md,
        timeout=30,
    )
    at_noon("gift_card_activities", back.activity.id)
    report = await report_of(running, md)
    tender = next(t for t in report.tenders if t.name == "gift_card")
    assert (tender.captured.amount, tender.net.amount) == (1_000, 1_000)
    assert report.gift_cards_redeemed.amount == 1_000 + 700 - 100
    assert report.net.amount == 1_000  # no tender of ours took the API's redemptions


async def test_gift_cards_sold_for_cash_are_in_the_days_cash(running: Running) -> None:
    """A card sold on its own and a load, paid in cash at a register (`paid_in_cash`), put
    cash in the drawer with no payment: the report shows it (`gift_cards_sold_cash`, of
    `gift_cards_sold`), so the day's cash is the cash tender's net and it, as the shift's
    expected cash counts it. A card sold or loaded by card is not cash. Before, such cash was
    in `gift_cards_sold` only, in none of the report's cash figures."""
    m = new_id("mer")
    till = new_id("reg")
    noon = START + timedelta(hours=12)

    def at(register: str = "") -> tuple[tuple[str, str], ...]:
        found = [("x-merchant-id", m)]
        if register:
            found += [("x-register-id", register), ("x-staff-id", "stf_1")]
        return tuple(found)

    def at_noon(table: str, row_id: str) -> None:
        running.execute(
            f"UPDATE {table} SET created_at = %s WHERE merchant_id = %s AND id = %s",  # noqa: S608
            noon,
            m,
            row_id,
        )

    await running.shifts.OpenShift(
        shifts_pb2.OpenShiftRequest(request_id=rid(), location_id=HERE, opening_float=usd(1_000)),
        metadata=at(till),
        timeout=30,
    )
    sold = await running.cards.IssueGiftCard(
        G.IssueGiftCardRequest(
            request_id=rid(), amount=usd(5_000), location_id=HERE, paid_in_cash=True
        ),
        metadata=at(till),
        timeout=30,
    )
    at_noon("gift_card_activities", sold.activity.id)
    for amount, cash in ((1_000, True), (2_000, False)):
        loaded = await running.cards.LoadGiftCard(
            G.LoadGiftCardRequest(
                request_id=rid(),
                id=sold.gift_card.id,
                amount=usd(amount),
                location_id=HERE,
                paid_in_cash=cash,
            ),
            metadata=at(till),
            timeout=30,
        )
        at_noon("gift_card_activities", loaded.activity.id)
    sale = await running.payments.CreatePayment(
        P.CreatePaymentRequest(
            request_id=rid(),
            order_id="ord_cash",
            tender_type=P.TENDER_TYPE_CASH,
            amount=usd(700),
            cash_tendered=usd(700),
            location_id=HERE,
            capture=True,
        ),
        metadata=at(till),
        timeout=30,
    )
    at_noon("payments", sale.payment.id)
    report = await report_of(running, at())
    assert (report.gift_cards_sold.amount, report.gift_cards_sold_count) == (8_000, 3)
    assert report.gift_cards_sold_cash == usd(5_000 + 1_000)
    cash = next(t for t in report.tenders if t.name == "cash")
    assert (cash.captured.amount, cash.net.amount) == (700, 700)  # the payments' only
    assert report.net.amount == 700
