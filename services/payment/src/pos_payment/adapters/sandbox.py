"""The deterministic sandbox card processor: the token decides the outcome."""

from __future__ import annotations

from pos_kit.money import Money
from pos_payment.domain.model import CardResult

_APPROVE = {
    "tok_visa": ("visa", "4242"),
    "tok_mastercard": ("mastercard", "4444"),
    "tok_amex": ("amex", "8431"),
}
_DECLINE = {
    "tok_declined": ("visa", "0002", "card_declined"),
    "tok_insufficient_funds": ("visa", "9995", "insufficient_funds"),
}


class SandboxProcessor:
    async def authorize_and_capture(self, token: str, amount: Money) -> CardResult:
        if token in _APPROVE:
            brand, last4 = _APPROVE[token]
            return CardResult(True, brand, last4)
        if token in _DECLINE:
            brand, last4, reason = _DECLINE[token]
            return CardResult(False, brand, last4, reason)
        return CardResult(False, decline_reason="invalid_token")
