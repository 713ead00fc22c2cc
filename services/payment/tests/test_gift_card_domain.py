"""The gift card's rules on their own, no server: whatever sequence of operations arrives, the
balance never goes below zero or above the maximum after a load, a refused operation changes
nothing, and the activities sum to the balance (a hypothesis state machine)."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from pos_kit.errors import DomainError
from pos_payment.domain.gift_cards import (
    Activity,
    GiftCard,
    GiftCardStatus,
    generate_code,
    normalize_code,
    validate_supplied_code,
)

MAX = 10_000
amounts = st.integers(min_value=1, max_value=6_000)
currencies = st.sampled_from(["USD", "USD", "USD", "EUR"])


class CardMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.card = GiftCard("gc_1", "ABCD", "USD")
        self.ledger: list[Activity] = [self.card.activate("a0", 2_000, MAX)]
        self.n = 0
        # What payments' refunds gave back to the card since its deactivation.
        self.refunded_since_deactivated = 0

    def _try(self, change: object) -> None:
        before = (self.card.balance, self.card.status)
        self.n += 1
        try:
            activity = change(f"a{self.n}")  # type: ignore[operator]
        except DomainError:
            assert (self.card.balance, self.card.status) == before  # refused: nothing moved
            return
        self.ledger.append(activity)

    @rule(amount=amounts, currency=currencies)
    def load(self, amount: int, currency: str) -> None:
        self._try(lambda i: self.card.load(i, amount, currency, MAX, "", ""))

    @rule(amount=amounts, currency=currencies, partial=st.booleans())
    def redeem(self, amount: int, currency: str, partial: bool) -> None:
        self._try(lambda i: self.card.redeem(i, amount, currency, partial, "", ""))

    @rule(amount=amounts)
    def refund(self, amount: int) -> None:
        self._try(lambda i: self.card.refund(i, amount, "USD", "", ""))

    @rule(amount=amounts)
    def refund_of_a_payment(self, amount: int) -> None:
        ended = self.card.status is GiftCardStatus.DEACTIVATED
        self._try(lambda i: self.card.refund(i, amount, "USD", "", "", of_a_payment=True))
        assert self.ledger[-1].amount == amount  # taken, deactivated or not
        assert (self.card.status is GiftCardStatus.DEACTIVATED) == ended
        if ended:
            self.refunded_since_deactivated += amount

    @rule(amount=st.integers(min_value=-6_000, max_value=6_000).filter(bool))
    def adjust(self, amount: int) -> None:
        self._try(lambda i: self.card.adjust(i, amount, "USD", MAX, "count"))

    @rule()
    def deactivate(self) -> None:
        self._try(lambda i: self.card.deactivate(i, "lost"))

    @invariant()
    def the_ledger_is_the_balance(self) -> None:
        assert self.card.balance >= 0
        assert sum(a.amount for a in self.ledger) == self.card.balance
        assert self.ledger[-1].balance_after == self.card.balance
        if self.card.status is GiftCardStatus.DEACTIVATED:
            # Nothing moved it since but payments' refunds, which it keeps on its ledger.
            assert self.card.balance == self.refunded_since_deactivated


TestCardMachine = CardMachine.TestCase
TestCardMachine.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)


def test_a_generated_code_is_long_printable_and_normalises_to_itself() -> None:
    code = generate_code()
    assert len(code) == 19 and code.count("-") == 3
    assert normalize_code(code.lower().replace("-", " ")) == code.replace("-", "")
    assert len({generate_code() for _ in range(1000)}) == 1000


@pytest.mark.parametrize(
    "bad",
    [
        "short",
        "x" * 65,
        "has space!",
        "4242424242424242",
        "ÄÖÜ-1234",
        # Dashes and underscores make no code harder to guess: fewer than 8 letters or digits.
        "-------Z",
        "--------",
        "________",
        "AB-CD-EF-G",
        "a_b_c_d_e_f_g",
    ],
)
def test_a_pre_printed_code_that_is_weak_or_malformed_is_refused_without_being_repeated(
    bad: str,
) -> None:
    with pytest.raises(DomainError) as refused:
        validate_supplied_code(bad)
    assert bad not in str(refused.value)
    assert all(bad not in v.description for v in refused.value.violations)
    assert [v.field for v in refused.value.violations][:1] == ["code"]


@pytest.mark.parametrize(
    ("good", "kept"),
    [("ABCD-EFGH", "ABCDEFGH"), ("pre_printed-42", "PRE_PRINTED42"), ("x" * 64, "X" * 64)],
)
def test_a_pre_printed_code_with_8_letters_or_digits_is_accepted_normalised(
    good: str, kept: str
) -> None:
    assert validate_supplied_code(good) == kept
