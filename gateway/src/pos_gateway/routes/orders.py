"""Checkout, orders and payments: /v1/checkouts, /v1/orders, /v1/payments."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import Field

from pos.order.v1 import order_pb2
from pos.payment.v1 import payment_pb2
from pos_gateway import examples as ex
from pos_gateway.actions import guarded
from pos_gateway.clients import Services
from pos_gateway.convert import to_json, to_model, to_page
from pos_gateway.problems import Problem
from pos_gateway.routes.common import (
    CREATE,
    INT64,
    Body,
    Cursor,
    Limit,
    MoneyIn,
    PathId,
    Sku,
    example,
    op,
    request_id,
    services,
)
from pos_gateway.schemas.orders import Checkout, Order, OrderList

router = APIRouter(prefix="/v1", tags=["orders and payments"])
Svc = Annotated[Services, Depends(services)]


class CheckoutLineIn(Body):
    sku: Sku
    quantity: int = Field(ge=1, le=10_000, json_schema_extra=INT64)


class CheckoutIn(Body):
    model_config = example(
        {
            "location_id": ex.LOCATION_ID,
            "customer_id": ex.CUSTOMER_ID,
            "lines": [{"sku": "TEE-BLK-M", "quantity": 2}, {"sku": "MUG-LOGO", "quantity": 1}],
            "tender_type": "card",
            "card_token": "tok_visa",
        }
    )

    location_id: str = Field(min_length=1, max_length=64)
    customer_id: str = Field(
        "",
        max_length=64,
        description="One of your customers, or empty; an id you do not have (another merchant's "
        "included) is a 404 `resource_missing` problem and nothing is sold",
    )
    lines: list[CheckoutLineIn] = Field(min_length=1, max_length=200)
    tender_type: Literal["cash", "card"]
    cash_tendered: MoneyIn | None = None
    card_token: str = Field("", max_length=64, description="A sandbox token such as tok_visa")


@router.post(
    "/checkouts",
    **op(
        "orders:write",
        "One-call register checkout",
        (402, 404, *CREATE),
        example=ex.CHECKOUT,
        status=201,
    ),
)
async def checkout(body: CheckoutIn, request: Request, svc: Svc) -> Checkout:
    """Prices the lines as the catalog stands, applies promotions, charges, and records the
    sale. Rules across fields (each a 400 naming the field): each SKU appears once, priced in
    the location's currency; `card` needs a sandbox `card_token` (`tok_...`) and no
    `cash_tendered`; `cash` needs `cash_tendered`, in the order's currency and covering its
    total, and no `card_token`. A card number is refused in `card_token` whatever the tender.
    A declined card is a 402 whose problem carries the recorded `order` and `payment`."""
    sale_request = order_pb2.CheckoutRequest(
        request_id=request_id(),
        location_id=body.location_id,
        customer_id=body.customer_id,
        lines=[order_pb2.CheckoutLine(sku=ln.sku, quantity=ln.quantity) for ln in body.lines],
        tender_type=(
            payment_pb2.TENDER_TYPE_CASH
            if body.tender_type == "cash"
            else payment_pb2.TENDER_TYPE_CARD
        ),
        card_token=body.card_token,
    )
    if body.cash_tendered is not None:
        sale_request.cash_tendered.CopyFrom(body.cash_tendered.pb())
    # At a register: a signed-in member is needed, and the sale is in the audit log with
    # them and the register.
    async with guarded(request, "sale", always=False) as done:
        answer = await svc.order.Checkout(sale_request)
        done.resource = ("order", answer.order.id)
        done.details = {"payment_id": answer.payment.id, "total": answer.order.total.amount,
                        "currency": answer.order.total.currency}  # fmt: skip
    result = {"order": to_json(answer.order), "payment": to_json(answer.payment)}
    sale = Checkout.model_validate(result)
    if answer.payment.status == payment_pb2.PAYMENT_STATUS_FAILED:
        raise Problem(
            402,
            "payment_declined",
            f"the payment was declined: {answer.payment.decline_reason}",
            extra=sale.model_dump(mode="json"),
        )
    return sale


@router.get("/orders", **op("orders:read", "List orders", example=ex.page(ex.ORDER)))
async def list_orders(svc: Svc, limit: Limit = 50, cursor: Cursor = None) -> OrderList:
    answer = await svc.order.ListOrders(
        order_pb2.ListOrdersRequest(page_size=limit, page_token=cursor or "")
    )
    return to_page(OrderList, answer.orders, answer.next_page_token)


@router.get("/orders/{order_id}", **op("orders:read", "Get an order", (404,), example=ex.ORDER))
async def get_order(order_id: PathId, svc: Svc) -> Order:
    answer = await svc.order.GetOrder(order_pb2.GetOrderRequest(id=order_id))
    return to_model(Order, answer.order)
