"""Which lines of a confirmed order inventory sells off the shelf: in-store lines that no hold
already took (a held line left stock when its hold was committed)."""

from __future__ import annotations

from pos.order.v1 import order_pb2
from pos_inventory.entrypoints.consumers import sold_off_the_shelf


def test_held_lines_are_not_sold_again_in_store_or_not() -> None:
    order = order_pb2.Order(
        id="ord_1",
        location_id="loc_main",
        fulfillments=[
            order_pb2.Fulfillment(id="f1", type=order_pb2.FULFILLMENT_TYPE_IN_STORE),
            # An exchange's new lines: held in store, the hold committed at confirmation.
            order_pb2.Fulfillment(
                id="f2",
                type=order_pb2.FULFILLMENT_TYPE_IN_STORE,
                location_id="loc_outlet",
                reservation_id="res_1",
            ),
            order_pb2.Fulfillment(
                id="f3",
                type=order_pb2.FULFILLMENT_TYPE_PICKUP,
                location_id="loc_main",
                reservation_id="res_2",
            ),
        ],
        lines=[
            order_pb2.OrderLine(sku="TEE", quantity=2, fulfillment_id="f1"),
            order_pb2.OrderLine(sku="CAP", quantity=1, fulfillment_id="f2"),
            order_pb2.OrderLine(sku="MUG", quantity=1, fulfillment_id="f3"),
        ],
    )
    assert sold_off_the_shelf(order) == {"loc_main": [("TEE", 2)]}
