"""Register sales under random SIGKILLs of the platform: never charged without an order.

Starts the whole platform (separate processes, temporary data) on free ports and keeps
register checkouts (two lines, card) going through the gateway from C clients for S seconds.
Meanwhile, every few seconds (seeded, jittered), one of the order service, the payment
service, the inventory service or the gateway is killed with SIGKILL and started again two
seconds later. Each client behaves as a till should: a sale keeps its Idempotency-Key and is
retried after any 5xx, 409 or lost connection until it gets a final answer (201 sold, or a
4xx refusal). After the load, the platform is left to heal (the order service's resumer and
the payment service's reconciler run with short windows), then the three databases are read
and checked:

- every payment holding money (captured and not refunded, or authorised and not voided)
  belongs to a confirmed or completed order, and every such order is covered by its payments;
- no payment or saga is left pending, no stock hold is left active for an ended order;
- every sale a client was told was made (201) is a completed order, every sale a client was
  refused holds no money, and there is one order per sale (no sale charged twice).

Prints its counts (sales, answers by status, retries, kills per process, findings) and exits
1 when anything is wrong. Not part of `make test`: `make soak` runs it
(`.venv/bin/python tools/soak_checkout.py [--seconds S] [--clients C] [--seed N]`).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
from bench_checkout import UNLIMITED, stock_for_checkouts

from pos_devstack.natsd import free_port
from pos_devstack.platform import SERVICES, Platform, Ports

VICTIMS = ("order", "payment", "inventory", "gateway")
# Short windows, so the soak heals in seconds rather than minutes (as the crash tests do).
FAST = {
    "SAGA_ABANDON_SECONDS": "4",
    "PAYMENT_TIMEOUT_SECONDS": "3",
    "RECONCILE_AFTER_SECONDS": "2",
    "SWEEP_INTERVAL_SECONDS": "0.5",
}


@dataclass
class Tally:
    answers: Counter[str] = field(default_factory=Counter)
    kills: Counter[str] = field(default_factory=Counter)
    sold: dict[str, str] = field(default_factory=dict)  # Idempotency-Key -> order id
    refused: dict[str, str] = field(default_factory=dict)  # Idempotency-Key -> problem code
    unfinished: list[str] = field(default_factory=list)
    retries: int = 0


async def _sell(
    http: httpx.AsyncClient, body: dict[str, Any], tally: Tally, give_up_at: float
) -> None:
    key = f"soak-{uuid.uuid4()}"
    while True:
        try:
            answer = await http.post("/v1/checkouts", json=body, headers={"Idempotency-Key": key})
        except httpx.HTTPError as exc:
            tally.answers[f"connection: {type(exc).__name__}"] += 1
        else:
            code = ""
            if answer.headers.get("content-type", "").startswith("application/problem+json"):
                code = str(answer.json().get("code", ""))
            tally.answers[f"{answer.status_code} {code}".strip()] += 1
            if answer.status_code == 201:
                tally.sold[key] = str(answer.json()["order"]["id"])
                return
            # A 409 is "still running, retry" but for `sale_cancelled`: the sale was abandoned
            # (nothing kept or charged), a final answer; the till rings it up again.
            final_409 = answer.status_code == 409 and code == "sale_cancelled"
            if 400 <= answer.status_code < 500 and (answer.status_code != 409 or final_409):
                tally.refused[key] = code
                return
        if time.monotonic() > give_up_at:
            tally.unfinished.append(key)
            return
        tally.retries += 1
        await asyncio.sleep(0.5)


async def _clients(
    platform: Platform, key: str, seconds: float, clients: int, tally: Tally
) -> None:
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(
        base_url=platform.gateway_url,
        headers={"Authorization": f"Bearer {key}"},
        timeout=20.0,
        limits=limits,
    ) as http:
        body = await stock_for_checkouts(http)
        stop_at = time.monotonic() + seconds
        give_up_at = stop_at + 120.0

        async def client() -> None:
            while time.monotonic() < stop_at:
                await _sell(http, body, tally, give_up_at)

        await asyncio.gather(*(client() for _ in range(clients)))


async def _killer(platform: Platform, seconds: float, every: float, rng: random.Random,
                  tally: Tally) -> None:  # fmt: skip
    stop_at = time.monotonic() + seconds
    while True:
        await asyncio.sleep(every * rng.uniform(0.5, 1.5))
        if time.monotonic() >= stop_at:
            return
        victim = rng.choice(VICTIMS)
        for proc in [p for p in platform.procs if p.name == victim]:
            proc.popen.kill()  # SIGKILL: no shutdown, no drain
            proc.popen.wait()
            platform.procs.remove(proc)
        tally.kills[victim] += 1
        await asyncio.sleep(2.0)
        platform.spawn(victim)
        if victim == "gateway":
            await asyncio.to_thread(platform._wait_http, 60.0)
        else:
            await asyncio.to_thread(platform.wait_reachable, victim, 60.0)


def _rows(url: str, query: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        return list(conn.execute(query, args).fetchall())


def findings(platform: Platform, merchant: str, tally: Tally) -> list[str]:
    """What is wrong once the platform has healed; empty when nothing is."""
    order_db = platform.env_for("order")["DATABASE_URL"]
    payment_db = platform.env_for("payment")["DATABASE_URL"]
    inventory_db = platform.env_for("inventory")["DATABASE_URL"]
    wrong: list[str] = []
    orders = {
        oid: (status, total, saga_state)
        for oid, status, total, saga_state in _rows(
            order_db,
            "SELECT id, status, total, saga_state FROM orders WHERE merchant_id = %s",
            merchant,
        )
    }
    for oid, (status, _, saga_state) in orders.items():
        if saga_state != "done" or status == "pending_payment":
            wrong.append(f"order {oid} {status}: saga {saga_state}")
    held: Counter[str] = Counter()
    charges: Counter[str] = Counter()
    for pid, oid, status, authorized, captured, voided, refunded in _rows(
        payment_db,
        "SELECT id, order_id, status, authorized, captured, voided, refunded FROM payments "
        "WHERE merchant_id = %s",
        merchant,
    ):
        if status == "pending":
            wrong.append(f"payment {pid} still pending")
        live = captured - refunded + (authorized - captured - voided if status != "voided" else 0)
        order = orders.get(oid)
        if order is None:
            if live:
                wrong.append(f"payment {pid} holds {live} with no order (charged, no sale)")
            continue
        if order[0] in ("confirmed", "completed"):
            held[oid] += live
            charges[oid] += 1 if live else 0
        elif live:
            wrong.append(f"payment {pid} holds {live} for a {order[0]} order")
    for oid, (status, total, _) in orders.items():
        if status in ("confirmed", "completed") and held[oid] != total:
            wrong.append(f"order {oid} {status} holds {held[oid]} of its {total}")
        if charges[oid] > 1:
            wrong.append(f"order {oid} charged {charges[oid]} times")
    for rid, reference, status in _rows(
        inventory_db,
        "SELECT id, reference, status FROM reservations WHERE merchant_id = %s",
        merchant,
    ):
        order_status = orders.get(reference, ("none",))[0]
        if status == "active" and order_status != "pending_payment":
            wrong.append(f"hold {rid} active for a {order_status} order")
    for key, oid in tally.sold.items():
        if orders.get(oid, ("none",))[0] != "completed":
            wrong.append(f"sale {key} answered 201 but its order {oid} is not completed")
    if len(set(tally.sold.values())) != len(tally.sold):
        wrong.append("two sales answered with the same order")
    completed = [o for o, (s, _, _) in orders.items() if s == "completed"]
    if len(completed) != len(tally.sold):
        wrong.append(
            f"{len(completed)} completed orders for {len(tally.sold)} sales told they were made"
        )
    if tally.unfinished:
        wrong.append(f"{len(tally.unfinished)} sales never got a final answer")
    return wrong


async def _heal(platform: Platform, merchant: str, tally: Tally, limit: float) -> list[str]:
    """Findings once they stop changing for the better, or at the limit."""
    deadline = time.monotonic() + limit
    while True:
        found = await asyncio.to_thread(findings, platform, merchant, tally)
        if not found or time.monotonic() > deadline:
            return found
        await asyncio.sleep(1.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--every", type=float, default=8.0, help="seconds between kills")
    parser.add_argument("--seed", type=int, default=20261201)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    home = Path(tempfile.mkdtemp(prefix="omnitill-soak-"))
    ports = Ports(
        free_port(), free_port(), free_port(), {s: free_port() for s in SERVICES}, free_port()
    )
    platform = Platform(home, ports, say=lambda line: None, env_extra={**UNLIMITED, **FAST},
                        disposable=True)  # fmt: skip
    tally = Tally()
    try:
        platform.start_infrastructure()
        platform.start_services()
        key = platform.sandbox_key()
        merchant = _rows(
            platform.env_for("gateway")["DATABASE_URL"],
            "SELECT merchant_id FROM api_keys ORDER BY created_at LIMIT 1",
        )[0][0]
        print(
            f"soak: {args.clients} register clients for {args.seconds:g} s, one of "
            f"{', '.join(VICTIMS)} SIGKILLed every ~{args.every:g} s (seed {args.seed})",
            flush=True,
        )
        started = time.monotonic()

        async def run() -> list[str]:
            await asyncio.gather(
                _clients(platform, key, args.seconds, args.clients, tally),
                _killer(platform, args.seconds, args.every, rng, tally),
            )
            return await _heal(platform, merchant, tally, limit=90.0)

        wrong = asyncio.run(run())
        took = time.monotonic() - started
    finally:
        platform.stop()
        shutil.rmtree(home, ignore_errors=True)

    print(f"sales made (201): {len(tally.sold)} in {took:.0f} s; refused: {len(tally.refused)}"
          f" {dict(Counter(tally.refused.values()))}; retries: {tally.retries}")  # fmt: skip
    print(f"kills: {dict(tally.kills)}")
    print("answers: " + ", ".join(f"{k}: {n}" for k, n in tally.answers.most_common()))
    print(f"findings after healing: {len(wrong)}")
    for line in wrong[:50]:
        print(f"  {line}")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
