"""Request bodies take JSON's types as sent: a number for an integer, true or false for a
boolean; never a string or a number read as one."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from pos_gateway.routes.common import MoneyIn
from pos_gateway.routes.inventory import (
    AdjustmentIn,
    GeoIn,
    LocationIn,
    LocationPatch,
    LocationTaxIn,
)
from pos_gateway.routes.returns import ReturnLineIn


def _refusal(model: Any, body: dict[str, Any]) -> list[tuple[tuple[Any, ...], str]]:
    with pytest.raises(ValidationError) as refused:
        model.model_validate(body)
    return [(e["loc"], e["msg"]) for e in refused.value.errors()]


def test_an_integer_sent_as_a_string_or_a_boolean_is_refused_naming_its_field() -> None:
    assert ReturnLineIn.model_validate({"line_id": "L1", "quantity": 2}).quantity == 2
    assert _refusal(ReturnLineIn, {"line_id": "L1", "quantity": "2"}) == [
        (("quantity",), "Value error, must be a JSON number, not a string")
    ]
    assert _refusal(MoneyIn, {"amount": True, "currency": "USD"}) == [
        (("amount",), "Value error, must be an integer, not a boolean")
    ]


def test_a_number_is_a_json_number_never_a_boolean_or_a_string() -> None:
    """A point's longitude of `false` was read as 0 (a store moved to the meridian)."""
    assert GeoIn.model_validate({"latitude": 39.78, "longitude": -89}).longitude == -89.0
    for wrong, reason in ((False, "not a boolean"), ("-89.65", "not a string")):
        refused = _refusal(GeoIn, {"latitude": 39.78, "longitude": wrong})
        assert [loc for loc, _ in refused] == [("longitude",)] and reason in refused[0][1]


def test_a_boolean_is_true_or_false_only() -> None:
    line = {"line_id": "L1", "quantity": 1}
    assert ReturnLineIn.model_validate({**line, "restock": False}).restock is False
    for sent in ("false", 0, 1, "yes"):
        assert _refusal(ReturnLineIn, {**line, "restock": sent}) == [
            (("restock",), "Value error, must be true or false")
        ]


def test_a_time_is_an_rfc_3339_string_never_a_number() -> None:
    """A number (or a string of digits) would be read as seconds since 1970: an adjustment
    stamped in 2023 and silently superseded."""
    base = {"sku": "TEE", "location_id": "loc_1", "delta": 1, "reason": "received"}
    sent = AdjustmentIn.model_validate({**base, "occurred_at": "2026-01-31T09:00:00Z"})
    assert sent.occurred_at is not None and sent.occurred_at.year == 2026
    for wrong in (1700000000, "1700000000", 1.5):
        assert [loc for loc, _ in _refusal(AdjustmentIn, {**base, "occurred_at": wrong})] == [
            ("occurred_at",)
        ]


def test_an_integer_in_a_map_is_a_json_number_too() -> None:
    """A location's tax rates per category: `false` or `"200"` is not a rate (it was read as
    0 or 200, and a sale taxed at it)."""
    tax = {"name": "state", "rate_bps": 625}
    assert LocationTaxIn.model_validate({**tax, "rates_bps": {"food": 200}}).rates_bps == {
        "food": 200
    }
    for wrong in (False, True, "200"):
        assert [
            loc for loc, _ in _refusal(LocationTaxIn, {**tax, "rates_bps": {"food": wrong}})
        ] == [("rates_bps", "food")]
        for model, base in ((LocationIn, {"name": "Main", "currency": "USD"}), (LocationPatch, {})):
            refused = _refusal(model, {**base, "tax_rates_bps": {"food": wrong}})
            assert [loc for loc, _ in refused] == [("tax_rates_bps", "food")]
