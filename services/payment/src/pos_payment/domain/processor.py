"""The card processor port: what the payment domain needs from whoever moves card money.

Adapters implement it (the deterministic sandbox today, a real acquirer later). A decline is
an outcome, not an exception; only a token the processor does not know and an unreachable
processor are exceptions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from pos_kit.money import Money


@dataclass(frozen=True)
class CardOutcome:
    approved: bool
    brand: str = ""
    last4: str = ""
    decline_reason: str = ""


class UnknownCardToken(Exception):
    """The processor has never issued this token. Carries no copy of the token on purpose."""


class CardProcessor(Protocol):
    async def authorize_and_capture(
        self, token: str, amount: Money, idempotency_key: str
    ) -> CardOutcome:
        """Authorize and capture in one step.

        `idempotency_key` is stable across retries of the same request, so a processor that
        charged but whose answer we lost charges nothing the second time. Raises
        UnknownCardToken, or pos_kit.errors.Unavailable when the processor cannot be reached.
        """
        ...
