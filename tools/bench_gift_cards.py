"""Gift card redemptions and the settlement report: figures, not assertions.

Starts the whole platform (separate processes, temporary data) on free ports and prints
redemptions/s with p50/p99 straight to the payment service: on one hot card (every redemption
queues on that card's row lock, by design) and spread over many cards, by the gift card API
and as a payment tender. Then it writes a day of 100,000 payments at one location (mixed
tenders, a tenth captured later, a tenth refunded, spread over the day and its neighbours)
straight into the payment database, and times the settlement report of that day. Run on
demand: `.venv/bin/python tools/bench_gift_cards.py [--requests N] [--concurrency C]`.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
import uuid

import grpc
import psycopg
from bench_checkout import _merchant_of, on_platform
from bench_stock import measure

from pos.common.v1 import money_pb2
from pos.payment.v1 import gift_cards_pb2 as G
from pos.payment.v1 import gift_cards_pb2_grpc, payment_pb2, payment_pb2_grpc, settlement_pb2_grpc
from pos.payment.v1 import settlement_pb2 as S
from pos_devstack.platform import Platform

MANY = 64
DAY_PAYMENTS = 100_000


def _usd(amount: int) -> money_pb2.Money:
    return money_pb2.Money(amount=amount, currency="USD")


# One statement writes the day: payments over 30 hours around 2026-03-10 in New York, a tenth
# of the card payments authorised then captured by a capture operation, a tenth refunded.
_DAY = """
WITH made AS (
  INSERT INTO payments (merchant_id, id, order_id, tender_type, amount, currency, status,
                        location_id, tip, capture_at_once, authorized, captured, card_brand,
                        card_last4, created_at)
  SELECT %(m)s, 'pay_bench_' || n, 'ord_bench_' || n,
         (ARRAY['cash','card','card','gift_card','external'])[1 + n %% 5],
         1000 + n %% 5000, 'USD', 'captured', 'loc_bench', n %% 7 * 10, n %% 10 <> 1,
         1000 + n %% 5000 + n %% 7 * 10, 1000 + n %% 5000 + n %% 7 * 10,
         CASE WHEN n %% 5 IN (1, 2) THEN (ARRAY['visa','mastercard','amex'])[1 + n %% 3]
              ELSE '' END,
         '4242', timestamptz '2026-03-10 00:00 America/New_York' - interval '3 hours'
                 + n * interval '1 second' * (30 * 3600.0 / %(n)s)
  FROM generate_series(1, %(n)s) AS n
  RETURNING id, tender_type, captured, capture_at_once, created_at
), later AS (
  INSERT INTO payment_operations (merchant_id, id, payment_id, kind, amount, status,
                                  request_key, created_at)
  SELECT %(m)s, 'cap_' || id, id, 'capture', captured, 'succeeded', 'k/cap/' || id,
         created_at + interval '10 minutes'
  FROM made WHERE NOT capture_at_once
  RETURNING id
)
INSERT INTO refunds (merchant_id, id, payment_id, order_id, tender_type, amount, currency,
                     status, request_key, created_at)
SELECT %(m)s, 'rfd_' || id, id, 'ord', tender_type, captured / 2, 'USD', 'succeeded',
       'k/rfd/' || id, created_at + interval '2 hours'
FROM made WHERE right(id, 1) = '3'
"""


async def bench(platform: Platform, key: str, total: int, concurrency: int) -> None:
    merchant = await _merchant_of(platform, key)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{platform.ports.services['payment']}")
    cards = gift_cards_pb2_grpc.GiftCardServiceStub(channel)
    payments = payment_pb2_grpc.PaymentServiceStub(channel)
    settlement = settlement_pb2_grpc.SettlementServiceStub(channel)
    md = (("x-merchant-id", merchant),)

    await cards.UpdateGiftCardSettings(
        G.UpdateGiftCardSettingsRequest(request_id=str(uuid.uuid4()), max_balance=10**12),
        metadata=md,
        timeout=30,
    )

    async def issue() -> str:
        answer = await cards.IssueGiftCard(
            G.IssueGiftCardRequest(request_id=str(uuid.uuid4()), amount=_usd(10**9)),
            metadata=md,
            timeout=30,
        )
        return answer.code

    hot = await issue()
    spread = itertools.cycle([await issue() for _ in range(MANY)])

    def redeem(code_of: object) -> object:
        async def one() -> None:
            code = hot if code_of is None else next(spread)
            await cards.RedeemGiftCard(
                G.RedeemGiftCardRequest(request_id=str(uuid.uuid4()), code=code, amount=_usd(1)),
                metadata=md,
                timeout=60,
            )

        return one

    await measure("redemption, one hot card", total, concurrency, redeem(None))  # type: ignore[arg-type]
    await measure(f"redemption, {MANY} cards", total, concurrency, redeem(spread))  # type: ignore[arg-type]

    async def tender() -> None:
        answer = await payments.CreatePayment(
            payment_pb2.CreatePaymentRequest(
                request_id=str(uuid.uuid4()),
                order_id=f"ord_{uuid.uuid4().hex[:12]}",
                tender_type=payment_pb2.TENDER_TYPE_GIFT_CARD,
                amount=_usd(1),
                gift_card_code=hot,
                capture=True,
            ),
            metadata=md,
            timeout=60,
        )
        if answer.payment.status != payment_pb2.PAYMENT_STATUS_CAPTURED:
            raise RuntimeError(f"{answer.payment.status} {answer.payment.decline_code}")

    await measure("gift card payment tender, one hot card", total, concurrency, tender)

    started = time.perf_counter()
    with psycopg.connect(platform.database_urls["payment"]) as conn:
        conn.execute(_DAY, {"m": merchant, "n": DAY_PAYMENTS})  # type: ignore[arg-type]
        conn.execute("ANALYZE")
    print(f"wrote {DAY_PAYMENTS:,} payments in {time.perf_counter() - started:.1f} s")
    request = S.GetSettlementReportRequest(
        location_id="loc_bench", date="2026-03-10", time_zone="America/New_York", currency="USD"
    )
    timings = []
    report = None
    for _ in range(7):
        started = time.perf_counter()
        report = (await settlement.GetSettlementReport(request, metadata=md, timeout=120)).report
        timings.append(time.perf_counter() - started)
    assert report is not None
    counted = sum(t.captured_count for t in report.tenders)
    print(
        f"settlement report, a day of {DAY_PAYMENTS:,} payments ({counted:,} captures in the "
        f"local day): first {timings[0] * 1000:.0f} ms, median "
        f"{statistics.median(timings) * 1000:.0f} ms, best {min(timings) * 1000:.0f} ms"
    )
    await channel.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    on_platform(
        f"gift card benchmark: {args.requests} requests each",
        lambda platform, key: bench(platform, key, args.requests, args.concurrency),
    )


if __name__ == "__main__":
    main()
