"""A service's refusal figures reach a client as JSON numbers and arrays, not the strings a
gRPC error's metadata carries them in."""

from __future__ import annotations

from pos_gateway.problems import typed_members


def test_counts_are_integers_and_names_are_arrays() -> None:
    members = typed_members(
        "version_mismatch",
        {"current_version": "7", "skus": "A-1,B-2", "on_hand": "-3", "resource": "product"},
    )
    assert members == {
        "current_version": 7, "skus": ["A-1", "B-2"], "on_hand": -3, "resource": "product",
    }  # fmt: skip


def test_every_figure_a_service_sends_is_a_number() -> None:
    # A subscription cap, what a hand-over still needs, what a gift card holds.
    assert typed_members("too_many_subscriptions", {"limit": "50"}) == {"limit": 50}
    assert typed_members("payment_refunded", {"amount_due": "500", "fulfillment_id": "ful_1"}) == {
        "amount_due": 500, "fulfillment_id": "ful_1",
    }  # fmt: skip
    assert typed_members("insufficient_balance", {"balance": "120"}) == {"balance": 120}


def test_stock_that_ran_out_is_available_per_sku_and_a_shortfall_per_line() -> None:
    held = typed_members("insufficient_stock", {"skus": "MUG", "available": "0"})
    assert held == {"skus": ["MUG"], "available": [0]}
    two = typed_members("insufficient_stock", {"skus": "MUG,CAP", "available": "3,0"})
    assert two == {"skus": ["MUG", "CAP"], "available": [3, 0]}
    shipped = typed_members("insufficient_stock", {"short": "TEE:L:2,CAP:1"})
    assert shipped == {"short": [{"sku": "TEE:L", "quantity": 2}, {"sku": "CAP", "quantity": 1}]}
    # Points are one figure.
    assert typed_members("insufficient_points", {"available": "120"}) == {"available": 120}


def test_the_common_members_are_never_overwritten_and_odd_figures_stay_as_sent() -> None:
    members = typed_members("x", {"status": "200", "code": "y", "refundable": "n/a"})
    assert members == {"refundable": "n/a"}


def test_the_ids_of_payments_and_refunds_are_arrays_even_for_one() -> None:
    members = typed_members(
        "refund_partly_failed", {"payment_ids": "pay_1,pay_2", "return_id": "ret_1"}
    )
    assert members == {"payment_ids": ["pay_1", "pay_2"], "return_id": "ret_1"}
    assert typed_members("refund_pending", {"refund_ids": "rfd_1"}) == {"refund_ids": ["rfd_1"]}


def test_a_field_is_named_one_way_whichever_layer_refused_it() -> None:
    from pos_gateway.problems import field_path

    assert field_path(["lines", 0, "quantity"]) == "lines[0].quantity"
    assert field_path(["location_id", 0]) == "location_id[0]"
    assert field_path(["metadata", "colour"]) == "metadata.colour"
    assert field_path([]) == "body"


def test_a_bad_key_of_a_map_is_named_as_the_services_name_it() -> None:
    """pydantic puts a `[key]` marker after a map key it refuses; the field is the key
    (`tax_rates_bps.FOOD`, as the inventory service names it), not `tax_rates_bps.FOOD.[key]`,
    nor `tax_rates_bps..[key]` for an empty one."""
    from typing import Annotated

    from pydantic import BaseModel, StringConstraints, ValidationError

    from pos_gateway.problems import field_path

    class Rates(BaseModel):
        tax_rates_bps: dict[Annotated[str, StringConstraints(pattern="^[a-z]+$")], int]

    for key, named in (("FOOD", "tax_rates_bps.FOOD"), ("", "tax_rates_bps.")):
        try:
            Rates.model_validate({"tax_rates_bps": {key: 5}})
        except ValidationError as exc:
            assert [field_path(e["loc"]) for e in exc.errors()] == [named]
        else:
            raise AssertionError("the key was taken")
