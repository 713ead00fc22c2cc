"""Request bodies take JSON's types as sent: a number for an integer, true or false for a
boolean; never a string or a number read as one."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from pos_gateway.routes.common import MoneyIn
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


def test_a_boolean_is_true_or_false_only() -> None:
    line = {"line_id": "L1", "quantity": 1}
    assert ReturnLineIn.model_validate({**line, "restock": False}).restock is False
    for sent in ("false", 0, 1, "yes"):
        assert _refusal(ReturnLineIn, {**line, "restock": sent}) == [
            (("restock",), "Value error, must be true or false")
        ]
