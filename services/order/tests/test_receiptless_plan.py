"""The plan of a return without a receipt: each unit credited at the lowest price its SKU
recently sold for, and a SKU that brought nothing in gives no store credit; the merchant's
limit on such credit per customer is checked against what earlier returns took of it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pos_kit.errors import Conflict, InvalidArgument
from pos_order.domain.returns import (
    ReceiptlessLimit,
    ReceiptlessLine,
    ReceiptlessRequest,
    Return,
    plan_receiptless,
    receiptless_limit_violations,
    within_receiptless_limit,
)

AT = datetime(2026, 12, 4, tzinfo=UTC)


def _request(*lines: ReceiptlessLine) -> ReceiptlessRequest:
    return ReceiptlessRequest("req-1", "loc_1", "cus_1", list(lines), "no_receipt")


def test_each_unit_is_credited_at_its_skus_lowest_recent_price() -> None:
    planned = plan_receiptless(
        _request(ReceiptlessLine("TEE", 2), ReceiptlessLine("HAT", 1)),
        "ret_1",
        "USD",
        {"TEE": 2000, "HAT": 999},
        AT,
    )
    assert [(ln.sku, ln.quantity, ln.amount) for ln in planned.lines] == [
        ("TEE", 2, 4000),
        ("HAT", 1, 999),
    ]
    assert planned.amount == 4999


def test_a_sku_sold_for_nothing_is_refused_naming_its_line() -> None:
    """Its lowest recent price is 0 (given away, a 100 % discount): there is no credit to
    give. It was a 400 on `amount.amount`, a field of no request, from the store credit card
    asked for 0 once the return was claimed."""
    with pytest.raises(InvalidArgument) as err:
        plan_receiptless(
            _request(ReceiptlessLine("TEE", 1), ReceiptlessLine("FREEBIE", 2)),
            "ret_1",
            "USD",
            {"TEE": 2000, "FREEBIE": 0},
            AT,
        )
    (violation,) = err.value.violations
    assert violation.field == "lines[1].sku"
    assert "nothing" in violation.description


def _credit(tees: int) -> Return:
    """A return of `tees` T-shirts credited at 20.00 each."""
    return plan_receiptless(
        _request(ReceiptlessLine("TEE", tees)), "ret_1", "USD", {"TEE": 2000}, AT
    )


def test_a_return_within_what_the_limit_leaves_passes_to_the_minor_unit() -> None:
    limit = ReceiptlessLimit(amount=5000, days=30)
    within_receiptless_limit(limit, 1000, _credit(2))  # 40.00 of the 40.00 left


def test_a_return_past_the_limit_is_refused_saying_what_is_left() -> None:
    limit = ReceiptlessLimit(amount=5000, days=30)
    with pytest.raises(Conflict) as err:
        within_receiptless_limit(limit, 1001, _credit(2))
    assert err.value.code == "receiptless_limit_exceeded"
    assert err.value.metadata == {
        "remaining": "3999",
        "limit": "5000",
        "window_days": "30",
        "currency": "USD",
    }
    # Earlier returns past the limit (it was lowered since): nothing is left, never less.
    with pytest.raises(Conflict) as err:
        within_receiptless_limit(limit, 9000, _credit(1))
    assert err.value.metadata["remaining"] == "0"


def test_the_limit_is_bounded() -> None:
    assert receiptless_limit_violations(ReceiptlessLimit(0, 1), "receiptless_limit") == []
    assert receiptless_limit_violations(ReceiptlessLimit(10**15, 365), "l") == []
    assert [v.field for v in receiptless_limit_violations(ReceiptlessLimit(-1, 0), "l")] == [
        "l.amount",
        "l.days",
    ]
    assert [v.field for v in receiptless_limit_violations(ReceiptlessLimit(1, 366), "l")] == [
        "l.days"
    ]
