"""The tender processor port: what the payment domain needs from whoever moves the money.

Adapters implement it: the deterministic sandbox card processor and sandbox gift cards today,
a real acquirer and the gift card service later. A decline is an answer, not an exception;
a refusal of the request itself (a source never issued, one in another currency, a gift card
that cannot pay) is one, and takes nothing.
Every call carries an idempotency key, stable across retries of the same request, so a call
whose answer was lost is asked again (or looked up) and never charges twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from pos_kit.money import Money


@dataclass(frozen=True)
class ProcessorAnswer:
    approved: bool
    # The processor's id of the authorisation (for authorize) or of the operation.
    reference: str = ""
    brand: str = ""
    last4: str = ""
    decline_code: str = ""


class UnknownSource(Exception):
    """The processor never issued this token or code. Carries no copy of it on purpose."""


class SourceCurrencyMismatch(Exception):
    """The source holds value in another currency than the payment's (a gift card in euros
    for a sale in dollars): the request's mistake, refused before anything is taken, never a
    decline. Carries the source's currency, never the source."""

    def __init__(self, currency: str) -> None:
        super().__init__(currency)
        self.currency = currency


# The codes of a gift card's refusals (docs/problems.md), the same as its redemption's.
GIFT_CARD_INACTIVE = "gift_card_inactive"
INSUFFICIENT_FUNDS = "insufficient_funds"


class SourceRefused(Exception):
    """The source's own ledger refuses the amount before anything is taken: a gift card that
    is deactivated (`code` `gift_card_inactive`) or holds less than the amount
    (`insufficient_funds`, `balance` what it holds). Refused as a redemption of the card is
    (409, naming the field at fault), not declined: no processor refused a card, and the
    same request may be sent again for what the card can pay. Carries no copy of the source."""

    def __init__(self, code: str, balance: int = 0) -> None:
        super().__init__(code)
        self.code = code
        self.balance = balance


class ProcessorUnavailable(Exception):
    """The processor was not reached: nothing happened there, the call may be made again."""


class ProcessorTimeout(Exception):
    """The processor did not answer in time: it may or may not have acted. Look it up."""


class TenderProcessor(Protocol):
    """`payment_id`: the payment the money moves for, the merchant's own reference (an
    acquirer's merchant reference): a processor that keeps a ledger its merchant reads (gift
    cards) names the movement by it, never by `key`, which is the payment service's."""

    async def authorize(
        self, source: str, amount: Money, capture: bool, key: str, *, payment_id: str = ""
    ) -> ProcessorAnswer: ...

    async def capture(self, reference: str, amount: Money, key: str) -> ProcessorAnswer: ...

    async def void(self, reference: str, key: str, *, payment_id: str = "") -> ProcessorAnswer: ...

    async def refund(
        self, reference: str, amount: Money, key: str, *, payment_id: str = ""
    ) -> ProcessorAnswer: ...

    async def lookup(self, key: str) -> ProcessorAnswer | None:
        """The answer the call made with `key` got, or None if no such call reached it."""
        ...


class TerminalReader(Protocol):
    """A card reader at a location (the card-present flow): it answers when the customer has
    presented a card, or declined, or cancelled at the reader; until then, None."""

    def knows(self, device_id: str) -> bool: ...

    async def answer(
        self, device_id: str, key: str, amount: Money, sent_at: datetime
    ) -> ProcessorAnswer | None:
        """The reader's answer for the checkout sent under `key`: approved or declined (with a
        decline code, `cancelled` when cancelled at the reader); None while it waits."""
        ...

    async def cancel(self, key: str) -> ProcessorAnswer:
        """Cancel the checkout at the reader. Answers the reader's final word: the
        cancellation, or the answer it gave first if the customer was quicker."""
        ...
