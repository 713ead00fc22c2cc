"""What erasure blanks is read from the contracts: the fields marked personal, at any depth,
on a message and on its public JSON form."""

from __future__ import annotations

from pos.common.v1 import money_pb2
from pos.inventory.v1 import inventory_pb2
from pos.order.v1 import events_pb2, order_pb2
from pos_kit import personal


def _event() -> events_pb2.OrderConfirmed:
    order = order_pb2.Order(id="ord_1", customer_id="cus_1", notes="ring twice")
    order.metadata["phone"] = "+14155550199"
    order.total.CopyFrom(money_pb2.Money(amount=2500, currency="USD"))
    order.fulfillments.add(id="ful_1", ship_to="1 Erased Road").destination.CopyFrom(
        inventory_pb2.GeoPoint(latitude=51.5, longitude=-0.1)
    )
    order.fulfillments.add(id="ful_2", location_id="loc_1")
    return events_pb2.OrderConfirmed(order=order)


def test_the_order_contract_marks_its_personal_fields() -> None:
    assert personal.personal_fields(order_pb2.Order.DESCRIPTOR) == [
        "notes", "metadata", "fulfillments.ship_to", "fulfillments.destination",
    ]  # fmt: skip
    assert personal.holds_personal_fields(events_pb2.OrderReturned.DESCRIPTOR)
    assert not personal.holds_personal_fields(order_pb2.Return.DESCRIPTOR)


def test_blank_clears_the_personal_fields_at_any_depth_and_keeps_the_sale() -> None:
    event = _event()
    assert personal.blank(event) is True
    order = event.order
    assert (order.notes, dict(order.metadata)) == ("", {})
    assert [(f.id, f.ship_to, f.HasField("destination")) for f in order.fulfillments] == [
        ("ful_1", "", False), ("ful_2", "", False),
    ]  # fmt: skip
    assert (order.id, order.customer_id, order.total.amount) == ("ord_1", "cus_1", 2500)
    # Blanked already: nothing more to change, so no copy is rewritten for nothing.
    assert personal.blank(event) is False


def test_blank_json_sets_what_a_field_reads_as_unset_and_leaves_absent_fields_out() -> None:
    data = {
        "id": "ord_1",
        "notes": "ring twice",
        "metadata": {"phone": "+14155550199"},
        "fulfillments": [
            {"id": "ful_1", "ship_to": "1 Erased Road", "destination": {"latitude": 51.5}},
            {"id": "ful_2", "ship_to": ""},
        ],
    }
    assert personal.blank_json(data, order_pb2.Order.DESCRIPTOR) is True
    assert data == {
        "id": "ord_1",
        "notes": "",
        "metadata": {},
        "fulfillments": [
            {"id": "ful_1", "ship_to": "", "destination": None},
            {"id": "ful_2", "ship_to": ""},
        ],
    }
    assert personal.blank_json(data, order_pb2.Order.DESCRIPTOR) is False
    # An older snapshot without metadata does not gain it.
    older = {"id": "ord_2", "notes": "x"}
    assert personal.blank_json(older, order_pb2.Order.DESCRIPTOR) is True
    assert older == {"id": "ord_2", "notes": ""}
