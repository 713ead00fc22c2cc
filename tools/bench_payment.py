"""Payment throughput and latency: in-store card sales and refunds, through gRPC and through
the gateway.

Starts the whole platform (separate processes, temporary data) on free ports and prints
payments/s with p50/p99 for: card sales straight to the payment service (CreatePayment with
capture), refunds straight to it, and, through the gateway, register checkouts (whose one
payment hop is the same sale) and refunds of their payments. Run on demand:
`.venv/bin/python tools/bench_payment.py [--requests N] [--concurrency C]`. Figures, not
assertions: the machine decides them.
"""

from __future__ import annotations

import argparse
import itertools
import uuid
from collections.abc import Awaitable, Callable

import grpc
import httpx
from bench_checkout import _merchant_of, on_platform, register_checkout
from bench_stock import measure

from pos.common.v1 import money_pb2
from pos.payment.v1 import payment_pb2, payment_pb2_grpc
from pos_devstack.platform import Platform

USD = "USD"


def _usd(amount: int) -> money_pb2.Money:
    return money_pb2.Money(amount=amount, currency=USD)


async def bench(platform: Platform, key: str, total: int, concurrency: int) -> None:
    merchant = await _merchant_of(platform, key)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{platform.ports.services['payment']}")
    stub = payment_pb2_grpc.PaymentServiceStub(channel)
    md = (("x-merchant-id", merchant),)

    async def sale() -> str:
        answer = await stub.CreatePayment(
            payment_pb2.CreatePaymentRequest(
                request_id=str(uuid.uuid4()),
                order_id=f"ord_bench_{uuid.uuid4().hex[:12]}",
                tender_type=payment_pb2.TENDER_TYPE_CARD,
                amount=_usd(10_000),
                card_token="tok_visa",  # noqa: S106 - a sandbox token, not a secret
                capture=True,
            ),
            metadata=md,
            timeout=30,
        )
        return answer.payment.id

    async def grpc_sale() -> None:
        await sale()

    await measure("card sale, payment gRPC", total, concurrency, grpc_sale)

    # Each refund takes 1.00 of one of a few sales: refunds of one payment queue on its row
    # lock by design, so spreading them shows the service, not one row.
    paid = [await sale() for _ in range(concurrency)]
    targets = itertools.cycle(paid)

    async def grpc_refund() -> None:
        await stub.CreateRefund(
            payment_pb2.CreateRefundRequest(
                request_id=str(uuid.uuid4()), payment_id=next(targets), amount=_usd(1)
            ),
            metadata=md,
            timeout=30,
        )

    await measure("refund, payment gRPC", total, concurrency, grpc_refund)
    await channel.close()

    headers = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=platform.gateway_url, headers=headers, limits=limits, timeout=60
    ) as http:
        via_gateway, _ = await register_checkout(http)
        await measure("register card sale, gateway", total, concurrency, via_gateway)

        sold = []
        for _ in range(concurrency):
            body = {"location_id": (await http.get("/v1/locations")).json()["data"][0]["id"],
                    "lines": [{"sku": "MUG-LOGO", "quantity": 1}], "tender_type": "card",
                    "card_token": "tok_visa"}  # fmt: skip
            answer = await http.post(
                "/v1/checkouts", json=body, headers={"Idempotency-Key": str(uuid.uuid4())}
            )
            sold.append(answer.json()["payment"]["id"])
        cycle = itertools.cycle(sold)

        async def gateway_refund() -> None:
            answer = await http.post(
                f"/v1/payments/{next(cycle)}/refunds",
                json={"amount": {"amount": 1, "currency": USD}},
                headers={"Idempotency-Key": str(uuid.uuid4())},
            )
            if answer.status_code != 201:
                raise RuntimeError(answer.text)

        refund: Callable[[], Awaitable[None]] = gateway_refund
        await measure("refund, gateway", min(total, 500), concurrency, refund)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    on_platform(
        f"payment benchmark: {args.requests} requests each",
        lambda platform, key: bench(platform, key, args.requests, args.concurrency),
    )


if __name__ == "__main__":
    main()
