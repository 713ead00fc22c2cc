"""The deterministic sandbox card processor: the token alone decides the outcome.

Tests and demos need every path (approve, each decline) on demand and the same answer every
time, so there is no randomness, no clock and no network here.
"""

from __future__ import annotations

import asyncio

from pos_kit.money import Money
from pos_payment.domain.processor import CardOutcome, UnknownCardToken

# The brands and last four digits match the test cards the tokens stand for.
OUTCOMES: dict[str, CardOutcome] = {
    "tok_visa": CardOutcome(True, "visa", "4242"),
    "tok_mastercard": CardOutcome(True, "mastercard", "4444"),
    "tok_amex": CardOutcome(True, "amex", "8431"),
    "tok_declined": CardOutcome(False, "visa", "0002", "card_declined"),
    "tok_insufficient_funds": CardOutcome(False, "visa", "9995", "insufficient_funds"),
}


class SandboxProcessor:
    def __init__(self, delay_seconds: float = 0.0) -> None:
        # Tests only: a processor as slow as a real acquirer on a bad day (0: answers at once).
        self._delay = delay_seconds

    async def authorize_and_capture(
        self, token: str, amount: Money, idempotency_key: str
    ) -> CardOutcome:
        if self._delay:
            await asyncio.sleep(self._delay)
        outcome = OUTCOMES.get(token)
        if outcome is None:
            raise UnknownCardToken()
        return outcome
