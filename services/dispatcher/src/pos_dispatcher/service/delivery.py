"""The delivery worker: sends due webhook deliveries, signed, and records how each went.

Invariants:
- A delivery is claimed by leasing it: its `next_attempt_at` moves a lease ahead, committed
  before the request goes out. Another replica skips it (SKIP LOCKED, then the lease); a worker
  that dies mid-attempt leaves it due again when the lease ends. So every delivery is tried
  until it succeeds or its schedule ends: at least once, surviving restarts of any process,
  since the schedule lives only in the database.
- Deliveries are independent: each has its own schedule, and none waits for another. At most
  `per_endpoint` requests go to one subscription at a time (per replica) and at most
  `concurrency` in all, so a slow or dead receiver holds only its own slots.
- A claim takes up to `prefetch` times an endpoint's slots: the extra wait, leased, in a local
  queue and go out as slots free, with no database round trip between one request and the
  next. The lease outlasts the queue (at worst `prefetch` timeouts), so nothing is sent twice
  at once; a worker that dies leaves them due again when the lease ends. The next claim for
  an endpoint starts while half of that is still held, with no pause to gather wake-ups, so
  its slots do not stand idle while it runs (at a busy time, each endpoint's slots stay full).
- The request goes to the address the network rules just checked (adapters/network.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine
from yarl import URL

from pos_dispatcher.adapters import statements
from pos_dispatcher.adapters.messages import subscription_snapshot
from pos_dispatcher.adapters.network import AddressRefused, NetworkRules
from pos_dispatcher.adapters.repository import DispatcherUow
from pos_dispatcher.adapters.secrets import SecretBox
from pos_dispatcher.adapters.snapshots import PublicEvent
from pos_dispatcher.adapters.statements import run_alone
from pos_dispatcher.adapters.tables import attempts, deliveries, subscriptions
from pos_dispatcher.domain import signing
from pos_dispatcher.domain.model import (
    DISABLED_EVENT_TYPE,
    FAILING_DISABLES_AFTER,
    DisabledReason,
    Status,
    Verdict,
    next_attempt,
    parse_retry_after,
    verdict,
)
from pos_dispatcher.service import handlers
from pos_kit.ids import new_id

log = logging.getLogger(__name__)

EXCERPT_BYTES = 1024
COALESCE_SECONDS = 0.01
# How old a read of a subscription may be when a delivery of it goes out: a subscription
# deleted, disabled or pointed elsewhere gets nothing more at its old address after this.
RECHECK_SECONDS = 1.0
RECORD_COALESCE_SECONDS = 0.05
USER_AGENT = "Omnitill-Webhooks/1"


def excerpt_text(raw: bytes) -> str:
    """An answer's first bytes as text a row can hold. An endpoint may answer any bytes, and
    PostgreSQL text refuses a NUL: kept, it failed the statement recording every answer of
    the batch, which left them leased to be sent again. It shows as U+FFFD, as bytes that
    are not UTF-8 do."""
    return raw.decode("utf-8", "replace").replace("\x00", "\ufffd")


@dataclass(frozen=True, slots=True)
class Job:
    merchant_id: str
    id: str
    subscription_id: str
    event_id: str
    body: str
    attempt_count: int
    url: str
    secrets: list[str]
    # The end of the claim's lease: the delivery is this worker's while it still reads so.
    lease_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class Answer:
    status_code: int  # 0: no answer
    latency_ms: int
    excerpt: str
    error: str
    retry_after: str | None = None


class DeliveryWorker:
    def __init__(
        self,
        engine: AsyncEngine,
        uow: Callable[[], DispatcherUow],
        box: SecretBox,
        network: NetworkRules,
        clock: Callable[[], datetime],
        *,
        timeout: float = 5.0,
        concurrency: int = 64,
        per_endpoint: int = 8,
        prefetch: int = 8,
        lease: timedelta = timedelta(seconds=60),
        poll_interval: float = 1.0,
    ) -> None:
        self._engine = engine
        self._uow = uow
        self._box = box
        self._network = network
        self._clock = clock
        self._timeout = timeout
        self._concurrency = concurrency
        self._per_endpoint = per_endpoint
        self._prefetch = prefetch
        # Claim more of an endpoint's work when it holds this many or fewer: half of what one
        # claim may take. Waiting until its queue was empty and a slot idle, then pausing to
        # gather wake-ups, then claiming, left every slot idle for most of each cycle: at 8
        # slots, a 3 ms endpoint and 4 x 8 a claim, the slots were busy 30 % of the time and
        # the deliverer sent 830-880 a second (tools/bench_dispatcher.py, `slots_busy`).
        self._refill_at = max(per_endpoint * prefetch // 2, per_endpoint - 1)
        # Set when an endpoint's queue runs low: its claim goes at once.
        self._low = False
        # Claimed (leased) and waiting for one of their endpoint's slots.
        self._queued: dict[str, deque[Job]] = {}
        # Longer than the local queue can take to drain (`prefetch` timeouts in a row), with
        # room to record the answers: a claimed delivery is never due again while held here.
        self._lease = max(lease, timedelta(seconds=prefetch * timeout + 30))
        self._poll = poll_interval
        self._wake = asyncio.Event()
        self._busy: Counter[str] = Counter()
        self._tasks: set[asyncio.Task[None]] = set()
        self._client: aiohttp.ClientSession | None = None
        # Answers waiting to be recorded: one transaction records many (`_recorder`).
        self._answers: list[tuple[Job, Answer]] = []
        self._answered = asyncio.Event()
        # subscription id -> (when read, the read of its URL and status): `_still_wanted`.
        self._checked: dict[str, tuple[float, asyncio.Future[Any]]] = {}
        self.sent = 0

    def wake(self) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        # aiohttp rather than httpx: its C parser and plain asyncio transport cost a third of
        # the CPU per request, and a delivery is mostly that request (tools/bench_dispatcher.py).
        # Connections are kept alive per address, each endpoint limited by `per_endpoint`.
        self._client = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._concurrency, use_dns_cache=False),
            trust_env=False,
            auto_decompress=False,
        )
        recorder = asyncio.create_task(self._recorder(stop))
        try:
            while not stop.is_set():
                started = 0
                try:
                    started = await self.dispatch_due()
                except Exception as exc:
                    log.warning("delivery worker: %s; retrying", exc.__class__.__name__)
                if started == 0 or self._held() >= self._concurrency * self._prefetch:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self._poll)
                    if not self._low:
                        # Let wake-ups gather for a moment: one claim for many new
                        # deliveries instead of one each, at a busy time.
                        await asyncio.sleep(COALESCE_SECONDS)
                    self._low = False
                    self._wake.clear()
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._answered.set()
            await recorder
            await self._client.close()

    def _held(self, subscription_id: str | None = None) -> int:
        """Deliveries in flight or waiting in the local queue (of one endpoint, or all)."""
        if subscription_id is None:
            return len(self._tasks) + sum(len(q) for q in self._queued.values())
        return self._busy[subscription_id] + len(self._queued.get(subscription_id, ()))

    async def dispatch_due(self) -> int:
        """Claim what is due and start sending it; returns how many were claimed."""
        free = self._concurrency * self._prefetch - self._held()
        if free <= 0:
            return 0
        jobs = await self._claim(free)
        for job in jobs:
            self._queued.setdefault(job.subscription_id, deque()).append(job)
        self._start_queued()
        return len(jobs)

    def _start_queued(self) -> None:
        for sub in list(self._queued):
            queue = self._queued[sub]
            while (
                queue
                and self._busy[sub] < self._per_endpoint
                and len(self._tasks) < self._concurrency
            ):
                job = queue.popleft()
                self._busy[sub] += 1
                task = asyncio.create_task(self._attempt(job))
                self._tasks.add(task)
                task.add_done_callback(self._finished(sub))
            if not queue:
                del self._queued[sub]

    def _finished(self, subscription_id: str) -> Callable[[asyncio.Task[None]], None]:
        def done(task: asyncio.Task[None]) -> None:
            self._tasks.discard(task)
            self._busy[subscription_id] -= 1
            if self._busy[subscription_id] <= 0:
                del self._busy[subscription_id]
            self._start_queued()
            if self._held(subscription_id) <= self._refill_at:
                # The endpoint's queue runs low: claim more of its work now.
                self._low = True
                self._wake.set()

        return done

    async def _claim(self, free: int) -> list[Job]:
        now = self._clock()
        most = self._per_endpoint * self._prefetch
        held = {s: self._held(s) for s in set(self._busy) | set(self._queued)}
        rows = await run_alone(
            self._engine,
            statements.CLAIM,
            {
                "now": now,
                "full": [s for s, n in held.items() if n >= most],
                # A window wider than what is taken: some of it may be an endpoint's excess.
                "scan": min(free, most) * 4,
                "held_subs": list(held),
                "held": list(held.values()),
                "most": most,
                "free": free,
                "lease_until": now + self._lease,
            },
        )
        lease_until = now + self._lease
        return [
            self._job(row, now, lease_until)
            for row in sorted(rows, key=lambda r: (r.due_at, r.sequence))
        ]

    def _job(self, row: Any, now: datetime, lease_until: datetime) -> Job:
        keys = [self._box.open(row.secret, row.merchant_id, row.subscription_id)]
        if row.previous_secret is not None and row.previous_secret_until > now:
            keys.append(self._box.open(row.previous_secret, row.merchant_id, row.subscription_id))
        # Those earlier rotations retired, each to the end of the overlap it was given.
        for sealed, until in zip(row.earlier_secrets, row.earlier_secrets_until, strict=True):
            if until > now:
                keys.append(self._box.open(sealed, row.merchant_id, row.subscription_id))
        return Job(
            row.merchant_id, row.id, row.subscription_id, row.event_id, row.body,
            row.attempt_count, row.url, keys, lease_until,
        )  # fmt: skip

    async def _attempt(self, job: Job) -> None:
        try:
            if not await self._still_wanted(job):
                return
            answer = await self._send(job)
        except Exception as exc:
            # Left leased: due again when the lease ends.
            log.warning("delivery %s: %s", job.id, exc.__class__.__name__)
            return
        self._answers.append((job, answer))
        self._answered.set()

    async def _recorder(self, stop: asyncio.Event) -> None:
        """Record answers as they come, many per transaction. An answer not recorded (a crash
        first) leaves its delivery leased, so it is sent again: at least once, never lost."""
        while True:
            await self._answered.wait()
            if not stop.is_set():
                # Let answers gather: one transaction records many of them, at a busy time.
                await asyncio.sleep(RECORD_COALESCE_SECONDS)
            self._answered.clear()
            taken, self._answers = self._answers, []
            ok = [(j, a) for j, a in taken if verdict(a.status_code) is Verdict.SUCCEEDED]
            if ok:
                try:
                    await self._record_successes(ok)
                except Exception as exc:
                    log.warning("recording deliveries: %s", exc.__class__.__name__)
            by_merchant: dict[str, list[tuple[Job, Answer]]] = {}
            for job, answer in taken:
                if verdict(answer.status_code) is not Verdict.SUCCEEDED:
                    by_merchant.setdefault(job.merchant_id, []).append((job, answer))
            for merchant, answers in by_merchant.items():
                try:
                    await self._record_failures(merchant, answers)
                except Exception as exc:
                    log.warning("recording deliveries: %s", exc.__class__.__name__)
            if stop.is_set() and not self._answers:
                return

    async def _still_wanted(self, job: Job) -> bool:
        """Whether the job's subscription is still enabled at the URL it was claimed with. A
        claimed delivery may wait in the local queue for a while (a slow endpoint): one whose
        subscription was since deleted, disabled or pointed elsewhere is not sent (the old
        address gets nothing more within RECHECK_SECONDS of the change); a changed one is due
        again at once, for its new address (a disabled one waits for it to be enabled). One
        read a subscription at most every RECHECK_SECONDS, shared by its jobs."""
        sub = job.subscription_id
        now = time.monotonic()
        checked = self._checked.get(sub)
        if checked is None or now - checked[0] > RECHECK_SECONDS:
            if len(self._checked) > 10_000:
                self._checked.clear()
            read = asyncio.ensure_future(self._subscription_now(job.merchant_id, sub))
            checked = (now, read)
            self._checked[sub] = checked
        try:
            found = await asyncio.shield(checked[1])
        except Exception:
            return True  # no answer from the database: send (at least once, as before)
        if found is not None and found == (job.url, True):
            return True
        if found is not None:
            await run_alone(
                self._engine,
                statements.RELEASE,
                {"now": self._clock(), "merchant": job.merchant_id, "id": job.id,
                 "lease_until": job.lease_until},
            )  # fmt: skip
        return False

    async def _subscription_now(self, merchant_id: str, subscription_id: str) -> Any:
        rows = await run_alone(
            self._engine,
            statements.SUBSCRIPTION_NOW,
            {"merchant": merchant_id, "id": subscription_id},
        )
        return (rows[0].url, rows[0].enabled) if rows else None

    async def _send(self, job: Job) -> Answer:
        assert self._client is not None
        parts = urlsplit(job.url)
        host = parts.hostname or ""
        started = time.monotonic()
        try:
            address = await self._network.resolve(job.url)
        except AddressRefused as exc:
            return Answer(0, 0, "", str(exc)[:200])
        literal = f"[{address}]" if ":" in address else address
        netloc = literal if parts.port is None else f"{literal}:{parts.port}"
        target = urlunsplit(parts._replace(netloc=netloc))
        # The signature's timestamp is the real time: the receiver checks it against its own
        # clock (Standard Webhooks allows five minutes), whatever clock schedules the retries.
        headers = signing.headers(job.secrets, job.event_id, int(time.time()), job.body)
        headers.update(
            {
                "content-type": "application/json",
                "user-agent": USER_AGENT,
                "host": parts.netloc.rpartition("@")[2],
            }
        )
        try:
            async with asyncio.timeout(self._timeout):
                async with self._client.post(
                    URL(target, encoded=True),
                    data=job.body.encode(),
                    headers=headers,
                    allow_redirects=False,
                    # TLS is checked against the URL's host, not the address connected to.
                    server_hostname=host if parts.scheme == "https" else None,
                ) as response:
                    excerpt = b""
                    while len(excerpt) < EXCERPT_BYTES:
                        chunk = await response.content.read(EXCERPT_BYTES - len(excerpt))
                        if not chunk:
                            break
                        excerpt += chunk
                    latency = int((time.monotonic() - started) * 1000)
                    if not 100 <= response.status <= 599:
                        # aiohttp reads any three digits; past HTTP's range it is no answer
                        # (retried), and the API's `status_code` stays within 0-599.
                        error = f"answered with status {response.status}, not HTTP's"
                        return Answer(0, latency, excerpt_text(excerpt), error)
                    return Answer(
                        response.status,
                        latency,
                        excerpt_text(excerpt),
                        "",
                        response.headers.get("retry-after"),
                    )
        except TimeoutError:
            error = f"no answer within {self._timeout:g} s"
        except aiohttp.ClientError as exc:
            error = f"could not connect ({exc.__class__.__name__})"
        return Answer(0, int((time.monotonic() - started) * 1000), "", error)

    async def _record_successes(self, answers: list[tuple[Job, Answer]]) -> None:
        """Every merchant's successes in one statement (the usual case, and the busy one)."""
        await run_alone(
            self._engine,
            statements.RECORD_SUCCESSES,
            {
                "now": self._clock(),
                "merchants": [j.merchant_id for j, _ in answers],
                "ids": [j.id for j, _ in answers],
                "numbers": [j.attempt_count + 1 for j, _ in answers],
                "codes": [a.status_code for _, a in answers],
                "latencies": [a.latency_ms for _, a in answers],
                "excerpts": [a.excerpt for _, a in answers],
            },
        )
        self.sent += len(answers)

    async def _record_failures(self, merchant: str, answers: list[tuple[Job, Answer]]) -> None:
        """Each failure's attempt and its next one (or the end of its schedule), in one
        transaction per merchant: the attempt row and the schedule move together."""
        now = self._clock()
        async with self._uow().bind(merchant) as uow:
            d = deliveries.c
            there = set(
                (
                    await uow.conn.execute(
                        select(d.id)
                        .where(d.merchant_id == merchant, d.id.in_([j.id for j, _ in answers]))
                        .with_for_update()
                    )
                ).scalars()
            )
            # One deleted meanwhile (its subscription deleted) has nothing left to record.
            answers = [(job, answer) for job, answer in answers if job.id in there]
            if not answers:
                return
            await uow.conn.execute(
                attempts.insert(),
                [
                    {
                        "merchant_id": merchant,
                        "delivery_id": job.id,
                        "number": job.attempt_count + 1,
                        "attempted_at": now,
                        "status_code": answer.status_code,
                        "latency_ms": answer.latency_ms,
                        "response_excerpt": answer.excerpt,
                        "error": answer.error,
                    }
                    for job, answer in answers
                ],
            )
            for job, answer in answers:
                await self._failed(uow, job, answer, now)
            await uow.commit()

    async def _failed(self, uow: DispatcherUow, job: Job, answer: Answer, now: datetime) -> None:
        """Schedule the next attempt, or give up; a 410, or days of failures, disable."""
        d, s = deliveries.c, subscriptions.c
        conn = uow.conn
        made = job.attempt_count + 1
        this = (d.merchant_id == job.merchant_id) & (d.id == job.id)
        sub_where = (s.merchant_id == job.merchant_id) & (s.id == job.subscription_id)
        await conn.execute(
            update(subscriptions)
            .where(sub_where, s.failing_since.is_(None))
            .values(failing_since=now)
        )
        outcome = verdict(answer.status_code)
        retry_after = parse_retry_after(answer.retry_after, now)
        due = None if outcome is Verdict.GONE else next_attempt(made, now, retry_after)
        if due is not None:
            await conn.execute(
                update(deliveries).where(this).values(attempt_count=made, next_attempt_at=due)
            )
            return
        await conn.execute(
            update(deliveries).where(this).values(status="failed", attempt_count=made)
        )
        if outcome is Verdict.GONE:
            await self._disable(uow, job.subscription_id, DisabledReason.ENDPOINT_GONE)
            return
        failing_since = (await conn.execute(select(s.failing_since).where(sub_where))).scalar()
        if failing_since is not None and now - failing_since >= FAILING_DISABLES_AFTER:
            await self._disable(uow, job.subscription_id, DisabledReason.FAILING)

    async def _disable(self, uow: DispatcherUow, subscription_id: str, why: DisabledReason) -> None:
        sub = await uow.subscriptions.get(subscription_id, lock=True)
        if sub is None or sub.status is Status.DISABLED:
            return
        sub = await uow.subscriptions.save(handlers.disabled(sub, why))
        log.warning("webhook subscription %s disabled (%s)", sub.id, why.value)
        event = PublicEvent(
            new_id("evt"), DISABLED_EVENT_TYPE, sub.id, uow.now(), subscription_snapshot(sub)
        )
        await handlers.append(uow, [event])
