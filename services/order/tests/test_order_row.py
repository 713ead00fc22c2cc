"""The order's row as the repository writes it: the statements built once name every column
`_values` fills, and no other."""

from __future__ import annotations

from pos_kit.money import Money
from pos_order.adapters import repository
from pos_order.adapters.tables import orders
from pos_order.domain.model import Order, OrderLine, compute_totals


def test_the_prepared_statements_write_every_value_of_an_order() -> None:
    lines = [OrderLine("TEE", "Tee", 2, Money(2500, "USD"), "F1")]
    order = Order(
        id="ord_1",
        location_id="loc_1",
        customer_id="",
        lines=lines,
        totals=compute_totals(lines, Money(0, "USD"), 825),
        discounts_applied=True,
    )
    written = repository._values(order)
    assert tuple(written) == repository.VALUE_COLUMNS
    assert set(repository.VALUE_COLUMNS) <= {c.name for c in orders.c}
