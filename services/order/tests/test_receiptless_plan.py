"""The plan of a return without a receipt: each unit credited at the lowest price its SKU
recently sold for, and a SKU that brought nothing in gives no store credit."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pos_kit.errors import InvalidArgument
from pos_order.domain.returns import ReceiptlessLine, ReceiptlessRequest, plan_receiptless

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
