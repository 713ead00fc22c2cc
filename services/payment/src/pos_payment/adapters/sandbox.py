"""The deterministic sandbox processors: the token (or gift card code) alone decides the outcome.

Integrators need every path on demand and the same answer every time: approvals of several
brands, declines, a processor that cannot be reached, and one that acts but whose answer is
lost (a timeout), which only a lookup settles. Like a real acquirer the sandbox remembers what
it answered each idempotency key (in its own table, `sandbox_processor_calls`, so every replica
sees the same truth): a repeated call replays the first answer and charges nothing more.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from pos_kit.db import reads
from pos_kit.direct import Prepared, bound
from pos_kit.money import Money
from pos_payment.adapters.tables import sandbox_calls
from pos_payment.domain.processor import (
    INSUFFICIENT_FUNDS,
    ProcessorAnswer,
    ProcessorTimeout,
    ProcessorUnavailable,
    SourceRefused,
    UnknownSource,
)


@dataclass(frozen=True)
class Script:
    """What the sandbox does with one token."""

    approved: bool
    brand: str
    last4: str
    decline_code: str = ""
    unreachable: bool = False  # the call never reaches the processor
    answer_lost: bool = False  # the processor acts, the answer never arrives
    # Refused as the source's own ledger refuses it (`decline_code`): a gift card that cannot
    # pay, answered as a real card that cannot is (`SourceRefused`), not declined.
    refused: bool = False


# The brands and last four digits match the test cards the tokens stand for.
CARD_TOKENS: dict[str, Script] = {
    "tok_visa": Script(True, "visa", "4242"),
    "tok_mastercard": Script(True, "mastercard", "4444"),
    "tok_amex": Script(True, "amex", "8431"),
    "tok_discover": Script(True, "discover", "1117"),
    "tok_declined": Script(False, "visa", "0002", "card_declined"),
    "tok_insufficient_funds": Script(False, "visa", "9995", "insufficient_funds"),
    "tok_expired_card": Script(False, "visa", "0069", "expired_card"),
    "tok_processing_error": Script(False, "visa", "0119", unreachable=True),
    "tok_timeout": Script(True, "visa", "3220", answer_lost=True),
}


def card_script(token: str) -> Script | None:
    return CARD_TOKENS.get(token)


def gift_card_script(code: str) -> Script | None:
    """Sandbox gift cards: any code starting `gc_` has funds, `gc_empty` has none."""
    if code == "gc_empty":
        return Script(False, "gift_card", code[-4:], INSUFFICIENT_FUNDS, refused=True)
    if code.startswith("gc_"):
        return Script(True, "gift_card", code[-4:])
    return None


class SandboxProcessor:
    def __init__(
        self,
        engine: AsyncEngine,
        script: Callable[[str], Script | None] = card_script,
        delay_seconds: float = 0.0,
    ) -> None:
        self._engine = engine
        # One statement each (an upsert, a read): atomic on their own, so no BEGIN and COMMIT
        # round trips around them.
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._script = script
        # Tests only: a processor as slow as a real acquirer on a bad day (0: answers at once).
        self._delay = delay_seconds

    async def authorize(
        self, source: str, amount: Money, capture: bool, key: str, *, payment_id: str = ""
    ) -> ProcessorAnswer:
        await self._wait()
        script = self._script(source)
        if script is None:
            raise UnknownSource()
        if script.unreachable:
            raise ProcessorUnavailable()
        if script.refused:
            raise SourceRefused(script.decline_code)  # holds nothing: a balance of 0
        answer = ProcessorAnswer(
            script.approved, _reference(key), script.brand, script.last4, script.decline_code
        )
        answer = await self.remember(key, "charge" if capture else "authorize", amount, answer)
        if script.answer_lost:
            raise ProcessorTimeout()
        return answer

    async def capture(self, reference: str, amount: Money, key: str) -> ProcessorAnswer:
        await self._wait()
        return await self.remember(key, "capture", amount, ProcessorAnswer(True, _reference(key)))

    async def void(self, reference: str, key: str, *, payment_id: str = "") -> ProcessorAnswer:
        await self._wait()
        return await self.remember(key, "void", None, ProcessorAnswer(True, _reference(key)))

    async def refund(
        self, reference: str, amount: Money, key: str, *, payment_id: str = ""
    ) -> ProcessorAnswer:
        await self._wait()
        return await self.remember(key, "refund", amount, ProcessorAnswer(True, _reference(key)))

    async def lookup(self, key: str) -> ProcessorAnswer | None:
        async with reads(self._engine) as conn:
            row = (
                await conn.execute(select(sandbox_calls).where(sandbox_calls.c.key == key))
            ).first()
        return None if row is None else _answer(row)

    async def _wait(self) -> None:
        if self._delay:
            await asyncio.sleep(self._delay)

    async def remember(
        self, key: str, kind: str, amount: Money | None, answer: ProcessorAnswer
    ) -> ProcessorAnswer:
        """The first answer given to `key`; later calls with it replay that answer."""
        values = {
            "key": key,
            "kind": kind,
            "amount": 0 if amount is None else amount.amount,
            "approved": answer.approved,
            "reference": answer.reference,
            "brand": answer.brand,
            "last4": answer.last4,
            "decline_code": answer.decline_code,
        }
        async with self._autocommit.connect() as conn:
            row = (await REMEMBER.execute(conn, values)).one()
        return _answer(row)


def _remember() -> Any:
    names = ("key", "kind", "amount", "approved", "reference", "brand", "last4", "decline_code")
    insert = pg_insert(sandbox_calls).values(bound(sandbox_calls, names))
    return insert.on_conflict_do_update(
        index_elements=[sandbox_calls.c.key],
        set_={"calls": sandbox_calls.c.calls + 1},
    ).returning(sandbox_calls)


REMEMBER = Prepared(_remember)


def _reference(key: str) -> str:
    return "sbx_" + hashlib.sha256(key.encode()).hexdigest()[:24]


def _answer(row: object) -> ProcessorAnswer:
    m = row._mapping  # type: ignore[attr-defined]
    return ProcessorAnswer(m["approved"], m["reference"], m["brand"], m["last4"], m["decline_code"])


CANCELLED = "cancelled"

# Sandbox card readers, by device id: what the customer "does" at each.
READERS: dict[str, Script | None] = {
    "sandbox_reader_approve": Script(True, "visa", "4242"),
    "sandbox_reader_decline": Script(False, "visa", "0002", "card_declined"),
    "sandbox_reader_cancel": Script(False, "", "", CANCELLED),
    "sandbox_reader_timeout": None,  # nobody comes: the checkout times out
}


class SandboxReader:
    """Sandbox card readers answer `delay_seconds` after a checkout is sent to them. The first
    word on a checkout (the customer's or a cancellation) is remembered like a processor's
    answer, so a cancellation racing the customer has exactly one outcome."""

    def __init__(self, engine: AsyncEngine, delay_seconds: float = 2.0) -> None:
        self._calls = SandboxProcessor(engine)
        self._delay = timedelta(seconds=delay_seconds)

    def knows(self, device_id: str) -> bool:
        return device_id in READERS

    async def answer(
        self, device_id: str, key: str, amount: Money, sent_at: datetime
    ) -> ProcessorAnswer | None:
        known = await self._calls.lookup(key)
        if known is not None:
            return known
        script = READERS.get(device_id)
        if script is None or datetime.now(UTC) < sent_at + self._delay:
            return None
        answer = ProcessorAnswer(
            script.approved, _reference(key), script.brand, script.last4, script.decline_code
        )
        return await self._calls.remember(key, "reader", amount, answer)

    async def cancel(self, key: str) -> ProcessorAnswer:
        cancelled = ProcessorAnswer(False, _reference(key), decline_code=CANCELLED)
        return await self._calls.remember(key, "reader", None, cancelled)


class RecordedTender:
    """Cash and external tenders: taken outside any processor, so every call simply succeeds.
    The same port keeps one flow for every tender type."""

    async def authorize(
        self, source: str, amount: Money, capture: bool, key: str, *, payment_id: str = ""
    ) -> ProcessorAnswer:
        return ProcessorAnswer(True)

    async def capture(self, reference: str, amount: Money, key: str) -> ProcessorAnswer:
        return ProcessorAnswer(True)

    async def void(self, reference: str, key: str, *, payment_id: str = "") -> ProcessorAnswer:
        return ProcessorAnswer(True)

    async def refund(
        self, reference: str, amount: Money, key: str, *, payment_id: str = ""
    ) -> ProcessorAnswer:
        return ProcessorAnswer(True)

    async def lookup(self, key: str) -> ProcessorAnswer | None:
        # Nothing was sent anywhere: a recorded tender's answer is always "done".
        return ProcessorAnswer(True)
