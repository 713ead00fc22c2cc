"""The answer models and the services' messages they are built from name the same fields, and
each enum word a service can send is one the model (and so the document) allows: a field a
service adds is not silently dropped from the answers, and a new enum value is not a 500."""

from __future__ import annotations

import types
import typing
from enum import Enum
from typing import Any

import pytest
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from pydantic import BaseModel

from pos.common.v1 import money_pb2
from pos.customer.v1 import customer_pb2
from pos.inventory.v1 import inventory_pb2, stock_pb2
from pos.order.v1 import order_pb2
from pos.payment.v1 import payment_pb2
from pos.promotion.v1 import promotion_pb2
from pos_gateway.convert import _enum_word, to_model
from pos_gateway.schemas import catalog, orders, payments, people, promotions, stock
from pos_gateway.schemas.base import Money, StockLine

PAIRS: list[tuple[type[BaseModel], type[Message]]] = [
    (Money, money_pb2.Money),
    (StockLine, stock_pb2.StockLine),
    (catalog.Product, inventory_pb2.Product),
    (catalog.ProductVariant, inventory_pb2.ProductVariant),
    (stock.Location, inventory_pb2.Location),
    (stock.Address, inventory_pb2.Address),
    (stock.GeoPoint, inventory_pb2.GeoPoint),
    (stock.StockLevel, inventory_pb2.StockLevel),
    (stock.LedgerEntry, inventory_pb2.LedgerEntry),
    (stock.Counted, stock_pb2.CountStockResponse),
    (stock.Transfer, stock_pb2.TransferStockResponse),
    (stock.Threshold, stock_pb2.SetLowStockThresholdResponse),
    (stock.Reservation, stock_pb2.Reservation),
    (stock.SkuAvailability, stock_pb2.SkuAvailability),
    (stock.NearbyLocation, stock_pb2.NearbyLocation),
    (stock.SourcingAllocation, stock_pb2.SourcingAllocation),
    (stock.SourcingProposal, stock_pb2.ProposeSourcingResponse),
    (people.Customer, customer_pb2.Customer),
    (promotions.Promotion, promotion_pb2.Promotion),
    (promotions.Rule, promotion_pb2.Rule),
    (promotions.Conditions, promotion_pb2.Conditions),
    (promotions.Selector, promotion_pb2.ItemSelector),
    (promotions.Tier, promotion_pb2.Tier),
    # promotions.Coupon leaves out `code` on purpose: codes travel once, in CouponBatch.codes.
    (orders.OrderLine, order_pb2.OrderLine),
    (orders.Order, order_pb2.Order),
    (orders.PricingWarning, order_pb2.PricingWarning),
    (orders.CartQuote, order_pb2.CalculateCartResponse),
    (payments.Payment, payment_pb2.Payment),
    (payments.Refund, payment_pb2.Refund),
    (payments.RefundLine, payment_pb2.RefundLine),
    (payments.TerminalCheckout, payment_pb2.TerminalCheckout),
    (payments.PaymentSettings, payment_pb2.PaymentSettings),
    (payments.OrderPayments, payment_pb2.GetOrderPaymentsResponse),
]


# Fields of a message its answer model says another way, on purpose.
FOLDED: dict[type[BaseModel], set[str]] = {
    # An unknown distance is `distance_km: null` in the answer, not a flag beside a false 0.
    stock.SourcingAllocation: {"distance_unknown"},
}


def _words(annotation: Any) -> set[str]:
    """The strings a Literal or enum field (or a nullable one) allows."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return set().union(*(_words(a) for a in typing.get_args(annotation)))
    if typing.get_origin(annotation) is typing.Literal:
        return set(typing.get_args(annotation))
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return {member.value for member in annotation}
    return set()


@pytest.mark.parametrize(("model", "message"), PAIRS, ids=lambda x: x.__name__)
def test_an_answer_model_names_every_field_of_its_message(
    model: type[BaseModel], message: type[Message]
) -> None:
    fields: Any = message.DESCRIPTOR.fields
    assert set(model.model_fields) == {f.name for f in fields} - FOLDED.get(model, set())
    for field in fields:
        if field.type != FieldDescriptor.TYPE_ENUM:
            continue
        sent = {_enum_word(field, v.number) for v in field.enum_type.values if v.number}
        annotation = model.model_fields[field.name].annotation
        if annotation is str:
            continue  # an open string: any word fits (its description lists them)
        allowed = _words(annotation)
        assert sent == allowed, f"{model.__name__}.{field.name}: {sent} != {allowed}"


def test_an_answer_is_built_from_a_message_with_its_nulls_and_integers() -> None:
    payment = payment_pb2.Payment(
        id="pay_1",
        order_id="ord_1",
        tender_type=payment_pb2.TENDER_TYPE_CASH,
        amount=money_pb2.Money(amount=2**40, currency="USD"),
        status=payment_pb2.PAYMENT_STATUS_CAPTURED,
        change_due=money_pb2.Money(amount=0, currency="USD"),
    )
    payment.created_at.FromSeconds(1_768_469_400)
    answer = to_model(payments.Payment, payment)
    assert answer.amount.amount == 2**40 and answer.change_due is not None
    assert answer.created_at == "2026-01-15T09:30:00.000Z"
    payment.ClearField("change_due")
    assert to_model(payments.Payment, payment).change_due is None


def test_a_time_before_year_1000_is_written_with_four_digits() -> None:
    """A time stored before the API refused such times (or sent straight to a service) still
    reads back as RFC 3339, never as `999-06-01…`, which the answer's own schema refuses."""
    from google.protobuf.timestamp_pb2 import Timestamp

    from pos.payment.v1 import shifts_pb2
    from pos_gateway.convert import to_json

    shift = shifts_pb2.Shift(id="sh_1")
    shift.opened_at.CopyFrom(Timestamp(seconds=-30_610_310_400))  # 0999-12-31T00:00:00Z
    assert to_json(shift)["opened_at"] == "0999-12-31T00:00:00.000Z"
