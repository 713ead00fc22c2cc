"""An order's receipt: /v1/orders/{id}/receipt, as JSON, plain text or HTML."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, PlainTextResponse

from pos.order.v1 import order_pb2
from pos.payment.v1 import payment_pb2
from pos_gateway import examples as ex
from pos_gateway import media, receipts
from pos_gateway.clients import Services
from pos_gateway.convert import to_json
from pos_gateway.problems import Problem
from pos_gateway.returns_of import order_returns
from pos_gateway.routes.common import PathId, QueryId, op, services
from pos_gateway.routes.settlement import location_of
from pos_gateway.schemas.receipts import Receipt

router = APIRouter(prefix="/v1", tags=["orders and payments"])
Svc = Annotated[Services, Depends(services)]

_LOCATION = {"id": ex.LOCATION_ID, "name": "Downtown Store", "time_zone": "America/Chicago",
             "tax_rate_bps": 825}  # fmt: skip
EXAMPLE = receipts.build(ex.ORDER, [{**ex.PAYMENT, "refunded": ex.RETURN["amount"]}],
                         [ex.RETURN], _LOCATION, 30,
                         policy_text=str(ex.ORDER_SETTINGS["return_policy_text"]))  # fmt: skip
_op = op("orders:read", "Get an order's receipt", (404,), example=EXAMPLE)
# A receipt has at most 200 lines and 200 returns: its text stays well within this.
_TEXT_MAX = 200_000
_op["responses"][200]["content"]["text/plain"] = {
    "schema": {"type": "string", "maxLength": _TEXT_MAX},
    "example": receipts.text(EXAMPLE),
}
_op["responses"][200]["content"]["text/html"] = {
    "schema": {"type": "string", "maxLength": _TEXT_MAX},
    "example": receipts.html_page(EXAMPLE),
}


async def _location(svc: Services, location_id: str) -> dict[str, Any]:
    try:
        return to_json(await location_of(svc, location_id))
    except Problem:
        # The order's store is no longer listed: the receipt is still owed, in UTC.
        return {"id": location_id, "name": "", "time_zone": "UTC", "tax_rate_bps": 0}


async def _stores(svc: Services, order: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The other stores the order's fulfilments hand goods over at or ship from: their lines
    were taxed there (a compound tax compounds as that store's does). One no longer listed
    is left out: its lines read the selling store's taxes."""
    found: dict[str, dict[str, Any]] = {}
    for f in order.get("fulfillments") or []:
        store = f.get("location_id") or ""
        if not store or store == order["location_id"] or store in found:
            continue
        try:
            found[store] = to_json(await location_of(svc, store))
        except Problem:
            continue
    return found


# What a receipt is written in, JSON first when the client has no preference.
_KINDS = {"application/json": "json", "text/plain": "text", "text/html": "html"}


def _wanted(request: Request, format_: str | None) -> str:
    """`format`, else what the Accept header prefers (RFC 9110's negotiation, `media`); one
    that allows none of them never gets here: the edge answered it 406."""
    if format_ is not None:
        return format_
    chosen = media.negotiate(request.headers.get("accept"), tuple(_KINDS))
    return _KINDS.get(chosen or "", "json")


@router.get("/orders/{order_id}/receipt", response_model=Receipt, **_op)
async def get_receipt(
    order_id: PathId,
    request: Request,
    svc: Svc,
    format_: Annotated[
        Literal["json", "text", "html"] | None,
        Query(
            alias="format",
            description="Instead of the Accept header: `json` (the default), `text` "
            "(text/plain, a till's paper roll) or `html`",
        ),
    ] = None,
    return_id: Annotated[
        QueryId | None,
        Query(description="The receipt of this return of the order instead of the sale's"),
    ] = None,
) -> Any:
    """The sale's receipt: lines with their discounts by offer and their tax per rate, the
    order's discounts by offer and tax per rate, the tenders with card brand and last four,
    change due, the order's returns and exchanges (an exchange's new order names the order it
    came from and the returned goods' credit), and the return policy (the order settings'
    window, then the merchant's `return_policy_text`);
    times in the selling store's time zone, money as the currency code and the amount with the
    currency's minor units (`USD 25.00`, `JPY 2500`). With `return_id`, that return's receipt:
    the units back, the refund, the tenders refunded (a refund the payment processor refused
    is not among them) and how a person settled what they did not pay (`settlement`). JSON
    by default; `text/plain` or `text/html` by the Accept header (quality values counted;
    one that allows none of the three is a 406) or `format`. A return not of this order is a
    404."""
    order = to_json((await svc.order.GetOrder(order_pb2.GetOrderRequest(id=order_id))).order)
    returns = [to_json(r) for r in await order_returns(svc, order_id)]
    payments: list[dict[str, Any]] = []
    if order.get("payment_ids"):
        found = await svc.payment.GetOrderPayments(
            payment_pb2.GetOrderPaymentsRequest(order_id=order_id)
        )
        payments = [to_json(p) for p in found.payments]
    settings = await svc.order.GetOrderSettings(order_pb2.GetOrderSettingsRequest())
    location = await _location(svc, order["location_id"])
    receipt = receipts.build(
        order,
        payments,
        returns,
        location,
        int(settings.settings.return_window_days),
        return_id or "",
        settings.settings.return_policy_text,
        {} if return_id else await _stores(svc, order),
    )
    if not receipt:
        raise Problem(
            404,
            "resource_missing",
            f"return {return_id!r} was not found",
            extra={"resource": "return"},
        )
    kind = _wanted(request, format_)
    if kind == "text":
        return PlainTextResponse(receipts.text(receipt))
    if kind == "html":
        return HTMLResponse(receipts.html_page(receipt))
    return Receipt.model_validate(receipt)
