"""Checkout, orders and payments: /v1/checkouts, /v1/orders, /v1/payments."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import grpc
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi import Body as BodyParam
from pydantic import Field, StrictBool

from pos.common.v1 import money_pb2
from pos.customer.v1 import customer_pb2
from pos.order.v1 import order_pb2
from pos.payment.v1 import payment_pb2
from pos_gateway import examples as ex
from pos_gateway import staff
from pos_gateway.actions import Done, guarded, principal_of, settings_changed
from pos_gateway.clients import Services
from pos_gateway.convert import to_json, to_model, to_page
from pos_gateway.problems import Problem
from pos_gateway.routes.common import (
    CREATE,
    INT32,
    INT64,
    Body,
    CreatedBefore,
    CreatedSince,
    Cursor,
    IfMatch,
    Limit,
    MoneyIn,
    Patch,
    PathId,
    QueryId,
    UpdatedSince,
    conflict_shown,
    created_window,
    example,
    expected_version,
    known_register,
    known_staff,
    op,
    patched,
    request_id,
    services,
    timestamp,
    version_checked,
)
from pos_gateway.routes.gift_cards import spend_code_budget
from pos_gateway.routes.inventory import GeoIn
from pos_gateway.routes.payments import change_payment_settings
from pos_gateway.routes.settlement import location_of
from pos_gateway.schemas.orders import (
    RECEIPTLESS_LIMIT_WORDS,
    CartQuote,
    Checkout,
    ConfirmedOrder,
    MetadataKey,
    MetadataValue,
    Order,
    OrderList,
    OrderSettings,
)
from pos_gateway.settings_lease import settings_leased
from pos_kit.grpc_client import read_error

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["orders and payments"])
MAX_REDEEM_POINTS = 1_000_000_000  # pos_order.domain.model.MAX_REDEEM_POINTS
REDEEM = (
    "Loyalty points of the order's customer to redeem (needs `customer_id`), priced as a "
    "discount at the program's point value: held before anything is charged, redeemed when "
    "the order is confirmed, given back if it is cancelled. More than the customer has is a "
    "409 `insufficient_points` and charges nothing"
)
# A sales channel's name: lower-case words (`register`, `web`, `partner`, `marketplace_x`).
CHANNEL = "^[a-z][a-z0-9_]{0,31}$"
Svc = Annotated[Services, Depends(services)]


CouponCode = Annotated[str, Field(min_length=3, max_length=40)]
COUPONS = (
    "Coupon codes (case-insensitive). Each must apply: one that cannot (unknown, expired, "
    "deactivated, exhausted, not for this cart) is a 409 problem whose `code` says why and "
    "`code_index` which, and nothing is sold; while promotions cannot be reached, a 503. A use "
    "is reserved for the order before any payment, redeemed when it is confirmed, given back if "
    "cancelled"
)


ENTERED = (
    "The price entered at the sale, for an open-price product (required for one, a 400 for "
    "any other)"
)


def entered_pb(price: MoneyIn | None) -> money_pb2.Money | None:
    """A line's entered price (`unit_price`) as the order service reads it: the same on every
    line that sells (a checkout's, an order's or a draft's, an exchange's new one)."""
    return price.pb() if price is not None else None


MANUAL_VALUE = (
    "percent: basis points (1000 = 10 %, at most 10000); amount: minor units (off each unit of "
    "a line, or once off the order); price: the new unit price in minor units (at most the list "
    "price)"
)


class ManualIn(Body):
    """A discount or a new unit price given by hand, with its reason. Who asked is recorded
    with it (the signed-in member at a register, else the credential)."""

    kind: Literal["percent", "amount", "price"]
    value: int = Field(ge=1, le=10_000_000_000, json_schema_extra=INT64, description=MANUAL_VALUE)
    reason: str = Field(min_length=1, max_length=200)

    def pb(self, who: str) -> order_pb2.ManualAdjustment:
        return order_pb2.ManualAdjustment(
            kind=self.kind, value=self.value, reason=self.reason, requested_by=who
        )


class OrderManualIn(ManualIn):
    kind: Literal["percent", "amount"]


# A line's product; empty (or absent) on a gift card line.
LineSkuIn = Annotated[
    str,
    Field(
        pattern=r"^([A-Za-z0-9][A-Za-z0-9._/-]{0,63})?$",
        max_length=64,
        description="The product sold: 1 to 64 letters, digits, '.', '_', '-' or '/', the first "
        "a letter or digit; empty on a gift card line",
        examples=["TEE-BLK-M"],
    ),
]


class GiftCardLineIn(Body):
    amount: MoneyIn = Field(description="The value the card is activated with")
    code: str = Field(
        "",
        max_length=64,
        description="A pre-printed card's code (8 to 64 letters, digits, '-' or '_', at least "
        "8 of them letters or digits: a 400 otherwise); empty: one is generated. One-call "
        "checkout only; shown once, never stored",
    )


class CheckoutLineIn(Body):
    sku: LineSkuIn = ""
    quantity: int = Field(ge=1, le=10_000, json_schema_extra=INT64)
    manual: ManualIn | None = Field(
        None,
        description="A manual discount or price override on this line. A price override, "
        "and a discount above the signed-in member's limit (an amount off always counts as "
        "above it), need the permission or a manager's override",
    )
    unit_price: MoneyIn | None = Field(None, description=ENTERED)
    gift_card: GiftCardLineIn | None = Field(
        None,
        description="A gift card sold as this line instead of a product (no `sku`, quantity "
        "1): activated when the sale is confirmed; its code is in `gift_cards` of that answer "
        "only. Not discounted, not taxed",
    )


def _gift_card_line(line: CheckoutLineIn | OrderLineIn) -> order_pb2.GiftCardLineRequest | None:
    if line.gift_card is None:
        return None
    return order_pb2.GiftCardLineRequest(
        amount=line.gift_card.amount.pb(), code=line.gift_card.code
    )


def _issued(gift_cards: object) -> list[dict[str, str]]:
    return [
        {"line_id": c.line_id, "gift_card_id": c.gift_card_id, "code": c.code}
        for c in gift_cards  # type: ignore[attr-defined]
    ]


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
        "included) is a 404 `resource_missing` problem and nothing is sold. A duplicate merged "
        "into another customer is that customer: the order names the survivor's id",
    )
    lines: list[CheckoutLineIn] = Field(min_length=1, max_length=200)
    tender_type: Literal["cash", "card"]
    cash_tendered: MoneyIn | None = None
    card_token: str = Field("", max_length=64, description="A sandbox token such as tok_visa")
    redeem_points: int = Field(0, ge=0, le=MAX_REDEEM_POINTS, json_schema_extra=INT64,
                               description=REDEEM)  # fmt: skip
    coupon_codes: list[CouponCode] = Field(default_factory=list, max_length=10,
                                           description=COUPONS)  # fmt: skip
    order_manual: OrderManualIn | None = Field(
        None,
        description="A manual discount on the whole order (percent or amount), with its "
        "reason; above the signed-in member's limit it needs the permission or an override",
    )


def _who(request: Request) -> str:
    """Who asks for a manual discount: the member signed in at the register, else the key."""
    principal = principal_of(request)
    return principal.staff_id or f"key:{principal.key_id}"


def _percent_off(lines: Sequence[CheckoutLineIn | OrderLineIn], order: OrderManualIn | None) -> int:
    """The most any line is sold below its price by the manual percentages, in basis points:
    the line's and the order's compounded (each applies to what the other left)."""
    whole = 10_000
    on_order = order.value if order is not None and order.kind == "percent" else 0
    on_lines = [
        ln.manual.value if ln.manual is not None and ln.manual.kind == "percent" else 0
        for ln in lines
    ]
    return max(
        (whole - (whole - line) * (whole - on_order) // whole for line in on_lines),
        default=on_order,
    )


def _above(
    lines: Sequence[CheckoutLineIn | OrderLineIn], order: OrderManualIn | None, limit: int
) -> bool:
    """Whether these manual discounts are above a limit (basis points): an amount off cannot
    be judged before pricing, so it counts as above."""
    asked = [ln.manual for ln in lines if ln.manual is not None]
    if order is not None:
        asked.append(order)
    return any(m.kind == "amount" for m in asked) or _percent_off(lines, order) > limit


async def _limit_over_draft(request: Request, body: OrderPatch) -> int | None:
    """The signed-in member's discount limit, for the order service to judge an edit of a
    draft on the manual discounts the draft carries after it (those it keeps and those given
    now), as one request giving them all is judged; None when there is nothing to judge
    there: no discount given by this edit, no member signed in (a key has no limit), or what
    it gives is above the limit alone (then refused or approved before it is sent)."""
    principal = principal_of(request)
    lines = body.lines or []
    gives = any(ln.manual is not None for ln in lines) or body.order_manual is not None
    if not gives or principal.staff_id is None:
        return None
    limit = await staff.discount_limit(
        request.app.state.engine, principal.merchant_id, principal.staff_id
    )
    return None if _above(lines, body.order_manual, limit) else limit


@dataclass
class _Guards:
    """The sensitive parts of a sale's pricing given by hand: their audit entries, and the
    below-cost one, which only the order service can judge (it knows the costs)."""

    entries: list[Done] = field(default_factory=list)
    cost: Done | None = None

    def ask(self, message: Any) -> None:
        """Tell the order service whether the caller may sell below cost."""
        message.below_cost_not_permitted = self.cost is not None and not self.cost.permitted

    def answered(self, order_id: str, sold_below_cost: bool) -> None:
        """Name the order on every entry; the below-cost one is written (and a manager's
        override spent on it) only when a line was sold below cost."""
        if self.cost is not None:
            self.cost.needed = self.cost.changed = sold_below_cost
        for entry in (*self.entries, *([self.cost] if self.cost else [])):
            entry.resource = ("order", order_id)


@asynccontextmanager
async def _manual_guards(
    request: Request,
    lines: Sequence[CheckoutLineIn | OrderLineIn],
    order: OrderManualIn | None,
    priced_by_hand: bool = False,
) -> AsyncIterator[_Guards]:
    """A price override needs `price_override`; a discount above the member's limit needs
    `discount_above_limit` (or a manager's override for that one sale). The limit is a
    percentage: an amount off cannot be judged before pricing, so it counts as above. A line's
    discount and the order's together are what its units are sold below their price: 10 % on
    the line and 10 % on the order is 19 % off that line. A line a manual discount or an
    entered price leaves below its product's unit cost needs `sell_below_cost`: the order
    service judges it, told whether the member may. `priced_by_hand`: prices given by hand
    that the request does not carry may be priced again (a draft's, at its edit), so the
    below-cost one is asked for whatever the request gives."""
    asked = [ln.manual for ln in lines if ln.manual is not None]
    if order is not None:
        asked.append(order)
    guards = _Guards()
    entered = any(ln.unit_price is not None for ln in lines)
    if not asked and not entered and not priced_by_hand:
        yield guards
        return
    principal = principal_of(request)
    limit = 10_000
    if principal.staff_id is not None and asked:
        limit = await staff.discount_limit(
            request.app.state.engine, principal.merchant_id, principal.staff_id
        )
    above = bool(asked) and _above(lines, order, limit)
    async with AsyncExitStack() as stack:
        if any(m.kind == "price" for m in asked):
            guards.entries.append(
                await stack.enter_async_context(
                    guarded(request, "price_override", "price_override", always=False)
                )
            )
        if above:
            guards.entries.append(
                await stack.enter_async_context(
                    guarded(request, "discount", "discount_above_limit", always=False)
                )
            )
        guards.cost = await stack.enter_async_context(_below_cost_guarded(request))
        # The route names the order on the entries once it has one.
        yield guards


def _below_cost_guarded(request: Request) -> AbstractAsyncContextManager[Done]:
    """`sell_below_cost`, never refused here: the order service judges it (it knows the
    costs), told whether the member may (or a manager's override allows it)."""
    return guarded(request, "sell_below_cost", "sell_below_cost", always=False, required=False)


@asynccontextmanager
async def below_cost_guards(request: Request, priced_by_hand: bool) -> AsyncIterator[_Guards]:
    """The guards of a sale whose prices given by hand are not in the request (a draft's
    submit) or are entered prices alone (an exchange's new lines): only `sell_below_cost`,
    and only when some price may have been given by hand."""
    guards = _Guards()
    if not priced_by_hand:
        yield guards
        return
    async with _below_cost_guarded(request) as guards.cost:
        yield guards


def _refuse_declined(payment: payment_pb2.Payment, answer: Checkout) -> None:
    """A declined card is a 402 carrying the recorded order and payment."""
    if payment.status == payment_pb2.PAYMENT_STATUS_FAILED:
        raise Problem(
            402,
            "payment_declined",
            f"the payment was declined: {payment.decline_reason}",
            extra=answer.model_dump(mode="json"),
        )


@router.post(
    "/checkouts",
    **op(
        "orders:write",
        "One-call register checkout",
        (402, 404, *CREATE),
        example=ex.CHECKOUT,
        status=201,
        shown_once=("gift_cards",),
    ),
)
async def checkout(body: CheckoutIn, request: Request, svc: Svc) -> Checkout:
    """Prices the lines as the catalog stands, applies promotions, charges, and records the
    sale. Rules across fields (each a 400 naming the field): each SKU appears once, priced in
    the location's currency; `card` needs a sandbox `card_token` (`tok_...`) and no
    `cash_tendered`; `cash` needs `cash_tendered`, in the order's currency and covering its
    total, and no `card_token`. A card number is refused in `card_token` whatever the tender.
    Cash goes in the register's drawer: at a register with no shift open a `cash` sale is a
    409 `cash_needs_open_shift` naming `tender_type`, before anything is saved or charged
    (from the back office cash is taken as before; a card needs no shift).
    A line is a product (`sku`) or a gift card (`gift_card`, quantity 1): gift cards are
    activated once the sale is paid, and their codes are in `gift_cards` of this answer only
    (a replay has `gift_cards: null` and `secret_redacted: true`). A gift card line that could
    not be activated is refused before anything is saved or charged: a value over the
    merchant's maximum balance is a 409 `gift_card_balance_limit` on
    `lines[i].gift_card.amount`, a pre-printed code another card has, another sale in progress
    holds (or another line names) a 409 `gift_card_code_taken` on `lines[i].gift_card.code`: a
    sale holds its pre-printed codes from before its card is charged until it is paid (or
    ends), so of several tills selling one card at once, one sells it and the others are
    refused, uncharged. Each pre-printed code spends the credential's code look-ups as
    `/v1/gift-cards/lookup` does (429 `code_lookups_limited`).
    While promotions cannot be reached the sale goes on at list price: the order says
    `discounts_applied: false` with a `warnings` entry `discounts_unavailable` (a sale naming a
    coupon is a 503 then).
    While the payment service cannot be reached a cash sale goes on (the money is in the
    drawer): it is answered as any cash sale, with `payment: null` and the cash in the order's
    `tenders_to_record` (amount, cash tendered, change due); the order service records the
    payment once that service is back, and the sale's returns wait for it (409
    `payment_not_recorded`; `payment_record_refused` when it refuses the record for good, the
    tender's `refusal` saying why: the cash is then held for a person, who records it with
    `POST /v1/orders/{id}/tenders-to-record/settle`). A card sale is a 503
    then.
    A declined card is a 402 whose problem carries the recorded `order` (cancelled, reason
    `payment_declined`) and `payment`. The order is saved before the card is charged: a 503
    (`payment_pending` when the card's answer was lost, or a service unavailable) is retried
    with the same Idempotency-Key, which finishes or cancels that same sale; left alone, it is
    finished (paid) or cancelled (not paid) by the order service a few seconds after the
    payment service has settled the card, which asks the processor about a lost answer after a
    minute: within about a minute and a half. A sale with gift card lines is not finished
    alone: their codes are shown to the retry that activates them, so, paid, it waits for the
    retry until its expiry (the order service's own hold, 15 minutes unless its deployment sets
    another: a register sale holds no stock, so the merchant's `hold_seconds` does not apply),
    then is cancelled and refunded. A retry that finds the sale cancelled by then
    (abandoned: the card never answered, or the till's retries waited out the order service's
    window) is a 409 `sale_cancelled` with `cancel_reason`: nothing was kept or charged; ring
    it up again under a new key. That key with another body is a 422
    `idempotency_key_reused` after such a failure too (nothing is charged, and the first body's
    retry still finishes its sale)."""
    sale_request = order_pb2.CheckoutRequest(
        request_id=request_id(),
        location_id=body.location_id,
        customer_id=body.customer_id,
        lines=[
            order_pb2.CheckoutLine(
                sku=ln.sku,
                quantity=ln.quantity,
                manual=ln.manual.pb(_who(request)) if ln.manual is not None else None,
                unit_price=entered_pb(ln.unit_price),
                gift_card=_gift_card_line(ln),
            )
            for ln in body.lines
        ],
        tender_type=(
            payment_pb2.TENDER_TYPE_CASH
            if body.tender_type == "cash"
            else payment_pb2.TENDER_TYPE_CARD
        ),
        card_token=body.card_token,
        coupon_codes=body.coupon_codes,
        redeem_points=body.redeem_points,
    )
    if body.order_manual is not None:
        sale_request.order_manual.CopyFrom(body.order_manual.pb(_who(request)))
    if body.cash_tendered is not None:
        sale_request.cash_tendered.CopyFrom(body.cash_tendered.pb())
    # A pre-printed code is reserved before the sale (taken by another card or sale?): its
    # answer tells as a look-up's does.
    for ln in body.lines:
        if ln.gift_card is not None and ln.gift_card.code:
            await spend_code_budget(request)
    # At a register: a signed-in member is needed, and the sale is in the audit log with
    # them and the register.
    async with (
        _manual_guards(request, body.lines, body.order_manual) as approvals,
        guarded(request, "sale", always=False) as done,
    ):
        approvals.ask(sale_request)
        answer = await svc.order.Checkout(sale_request)
        payment = to_json(answer.payment) if answer.HasField("payment") else None
        result: dict[str, object] = {"order": to_json(answer.order), "payment": payment}
        if answer.gift_cards:
            result["gift_cards"] = _issued(answer.gift_cards)
        sale = Checkout.model_validate(result)
        # Inside the guards: a declined card sold nothing, so it is no sale in the audit log,
        # and a manager's override taken for its discount is given back for the next attempt.
        _refuse_declined(answer.payment, sale)
        done.resource = ("order", answer.order.id)
        approvals.answered(answer.order.id, answer.sold_below_cost)
        done.details = {"payment_id": answer.payment.id, "total": answer.order.total.amount,
                        "currency": answer.order.total.currency}  # fmt: skip
    return sale


_ORDER_STATUSES = {
    "draft": order_pb2.ORDER_STATUS_DRAFT,
    "pending_payment": order_pb2.ORDER_STATUS_PENDING_PAYMENT,
    "confirmed": order_pb2.ORDER_STATUS_CONFIRMED,
    "completed": order_pb2.ORDER_STATUS_COMPLETED,
    "cancelled": order_pb2.ORDER_STATUS_CANCELLED,
}
_FULFILLMENT_TYPES = {
    "in_store": order_pb2.FULFILLMENT_TYPE_IN_STORE,
    "pickup": order_pb2.FULFILLMENT_TYPE_PICKUP,
    "shipment": order_pb2.FULFILLMENT_TYPE_SHIPMENT,
}
_FULFILLMENT_STATUSES = {
    "fulfilled": order_pb2.FULFILLMENT_STATUS_FULFILLED,
    "reserved": order_pb2.FULFILLMENT_STATUS_RESERVED,
    "ready_for_pickup": order_pb2.FULFILLMENT_STATUS_READY_FOR_PICKUP,
    "picked_up": order_pb2.FULFILLMENT_STATUS_PICKED_UP,
    "picked": order_pb2.FULFILLMENT_STATUS_PICKED,
    "shipped": order_pb2.FULFILLMENT_STATUS_SHIPPED,
    "delivered": order_pb2.FULFILLMENT_STATUS_DELIVERED,
    "cancelled": order_pb2.FULFILLMENT_STATUS_CANCELLED,
    "expired": order_pb2.FULFILLMENT_STATUS_EXPIRED,
}
_TENDERS = {
    "cash": payment_pb2.TENDER_TYPE_CASH,
    "card": payment_pb2.TENDER_TYPE_CARD,
    "gift_card": payment_pb2.TENDER_TYPE_GIFT_CARD,
    "external": payment_pb2.TENDER_TYPE_EXTERNAL,
}


@router.get("/orders", **op("orders:read", "List orders", (404,), example=ex.page(ex.ORDER)))
async def list_orders(
    svc: Svc,
    request: Request,
    limit: Limit = 50,
    cursor: Cursor = None,
    status: Annotated[
        Literal["draft", "pending_payment", "confirmed", "completed", "cancelled"] | None,
        Query(description="Only orders in this status"),
    ] = None,
    channel: Annotated[
        str | None, Query(max_length=32, pattern=CHANNEL, description="Only this channel's")
    ] = None,
    location_id: Annotated[
        QueryId | None,
        Query(description="Only orders sold there or with a fulfilment from there"),
    ] = None,
    customer_id: Annotated[QueryId | None, Query(description="Only this customer's")] = None,
    fulfillment_status: Annotated[
        Literal[
            "fulfilled",
            "reserved",
            "ready_for_pickup",
            "picked_up",
            "picked",
            "shipped",
            "delivered",
            "cancelled",
            "expired",
        ]
        | None,
        Query(description="Only orders with a fulfilment in this status"),
    ] = None,
    updated_since: UpdatedSince = None,
    register_id: Annotated[
        QueryId | None, Query(description="Only the sales rung up on this register")
    ] = None,
    staff_id: Annotated[
        QueryId | None, Query(description="Only the sales made by this staff member")
    ] = None,
    created_since: CreatedSince = None,
    created_before: CreatedBefore = None,
) -> OrderList:
    """By id; each filter narrows the list (`created_since` and `created_before` together: a
    day's or a shift's orders, the second after the first, else a 400). A location, customer,
    register or staff member you do not have (another merchant's included) is a 404
    `resource_missing` problem."""
    if location_id:
        await location_of(svc, location_id)
    if customer_id:
        await svc.customer.GetCustomer(customer_pb2.GetCustomerRequest(id=customer_id))
    if register_id:
        await known_register(request, register_id)
    if staff_id:
        await known_staff(request, staff_id)
    ask = order_pb2.ListOrdersRequest(
        page_size=limit,
        page_token=cursor or "",
        status=_ORDER_STATUSES[status] if status else order_pb2.ORDER_STATUS_UNSPECIFIED,
        channel=channel or "",
        location_id=location_id or "",
        customer_id=customer_id or "",
        fulfillment_status=(
            _FULFILLMENT_STATUSES[fulfillment_status]
            if fulfillment_status
            else order_pb2.FULFILLMENT_STATUS_UNSPECIFIED
        ),
        register_id=register_id or "",
        staff_id=staff_id or "",
    )
    if updated_since is not None:
        ask.updated_since.CopyFrom(timestamp(updated_since))
    created_window(ask, created_since, created_before)
    answer = await svc.order.ListOrders(ask)
    return to_page(OrderList, answer.orders, answer.next_page_token)


@router.get("/orders/{order_id}", **op("orders:read", "Get an order", (404,), example=ex.ORDER))
async def get_order(order_id: PathId, svc: Svc, response: Response) -> Order:
    """The order with its fulfilments and its timeline (every transition, oldest first). The
    ETag is the version, for `If-Match` on a change."""
    answer = await svc.order.GetOrder(order_pb2.GetOrderRequest(id=order_id))
    response.headers["ETag"] = f'"{answer.order.version}"'
    return to_model(Order, answer.order)


class OrderLineIn(Body):
    sku: LineSkuIn = ""
    quantity: int = Field(ge=1, le=10_000, json_schema_extra=INT64)
    fulfillment: int = Field(
        0, ge=0, le=19, json_schema_extra=INT32, description="Index into `fulfillments`"
    )
    manual: ManualIn | None = Field(
        None, description="A manual discount or price override on this line (as for checkouts)"
    )
    unit_price: MoneyIn | None = Field(None, description=ENTERED)
    gift_card: GiftCardLineIn | None = Field(
        None,
        description="A gift card sold as this line (no `sku`, quantity 1, an in-store "
        "fulfilment, no pre-printed `code`): activated at confirmation, its code shown in "
        "that answer only",
    )


class FulfillmentIn(Body):
    type: Literal["in_store", "pickup", "shipment"]
    location_id: str = Field(
        "",
        max_length=64,
        description="The store it is handed over, collected or shipped from; a shipment may "
        "leave it empty and give a `destination`: sourcing then picks the nearest store with "
        "every line, or splits the lines over several stores (a fulfilment each). A pickup's "
        "store must have `pickup_enabled`, a named shipping store `ship_enabled` (400 on this "
        "field otherwise)",
    )
    ship_to: str = Field("", max_length=500, description="Shipment: the address")
    destination: GeoIn | None = Field(None, description="Shipment: where to, for sourcing")


class OrderIn(Body):
    model_config = example(
        {
            "channel": "web",
            "location_id": ex.LOCATION_ID,
            "customer_id": ex.CUSTOMER_ID,
            "lines": [{"sku": "TEE-BLK-M", "quantity": 2, "fulfillment": 0}],
            "fulfillments": [{"type": "pickup", "location_id": ex.LOCATION_ID}],
            "notes": "Gift wrap, please",
            "metadata": {"cart_id": "c_123"},
        }
    )

    channel: str = Field("web", min_length=1, max_length=32, pattern=CHANNEL)
    location_id: str = Field(
        min_length=1, max_length=64, description="Where it is sold: prices, currency and tax"
    )
    customer_id: str = Field(
        "",
        max_length=64,
        description="One of your customers, or empty. A duplicate merged into another customer "
        "is that customer: the order names the survivor's id",
    )
    lines: list[OrderLineIn] = Field(min_length=1, max_length=200)
    fulfillments: list[FulfillmentIn] = Field(
        default_factory=list,
        max_length=20,
        description="Empty: one in-store fulfilment at location_id",
    )
    notes: str = Field("", max_length=2000)
    metadata: dict[MetadataKey, MetadataValue] = Field(default_factory=dict, max_length=50)
    coupon_codes: list[CouponCode] = Field(
        default_factory=list,
        max_length=10,
        description=COUPONS + ". Not on a draft (400): a code is never stored, so a draft's "
        "are given with its submit",
    )
    order_manual: OrderManualIn | None = Field(
        None,
        description="A manual discount on the whole order (percent or amount), with its "
        "reason; above the signed-in member's limit it needs the permission or an override",
    )
    redeem_points: int = Field(0, ge=0, le=MAX_REDEEM_POINTS, json_schema_extra=INT64,
                               description=REDEEM)  # fmt: skip
    status: Literal["pending_payment", "draft"] = Field(
        "pending_payment",
        description="`draft`: saved priced (discounts, tax, totals) with nothing held, reserved "
        "or charged, and no tender taken, until `POST /v1/orders/{id}/submit`; edited with "
        "`PATCH /v1/orders/{id}` meanwhile (a web cart). `pending_payment` (the default): its "
        "stock held now",
    )


def _line_pb(ln: OrderLineIn, request: Request) -> order_pb2.OrderLineRequest:
    return order_pb2.OrderLineRequest(
        sku=ln.sku,
        quantity=ln.quantity,
        fulfillment=ln.fulfillment,
        manual=ln.manual.pb(_who(request)) if ln.manual is not None else None,
        unit_price=entered_pb(ln.unit_price),
        gift_card=_gift_card_line(ln),
    )


def _fulfillment_pb(f: FulfillmentIn) -> order_pb2.FulfillmentRequest:
    return order_pb2.FulfillmentRequest(
        type=_FULFILLMENT_TYPES[f.type],
        location_id=f.location_id,
        ship_to=f.ship_to,
        destination=f.destination.pb() if f.destination is not None else None,
    )


@router.post(
    "/orders",
    **op(
        "orders:write", "Create an order", (404, *CREATE), example=ex.ORDER, status=201, sells=True
    ),
)
async def create_order(body: OrderIn, request: Request, svc: Svc) -> Order:
    """Prices the lines (the price snapshot, promotions, tax), saves the order
    `pending_payment`, then holds the stock of every pickup and shipment fulfilment, all or
    none (for `hold_seconds` of the order settings; a shipment with a `destination` and no
    store is sourced then), and announces it (`order.created`) once held, its stores named.
    Short stock is a 409 `insufficient_stock` naming what is short: nothing stays held, and
    no order is kept or announced. In-store lines are never refused for stock. While
    promotions cannot be reached, list prices: `discounts_applied: false` with a `warnings`
    entry `discounts_unavailable`.
    Then add tenders and confirm it; unconfirmed, it is cancelled when its holds run out.

    With `"status": "draft"` the order is priced the same way and saved `draft`, announced
    (`order.created`, status `draft`), with nothing held, no coupon reserved, no points held:
    a tender or a confirmation is a 409 `order_not_pending` until it is submitted. Edit it
    with `PATCH /v1/orders/{id}` (each edit is an `order.updated`), submit it with
    `POST /v1/orders/{id}/submit` (an `order.updated`, status `pending_payment`, once held:
    an order is created once), or cancel it. A draft does not expire."""
    order_request = order_pb2.CreateOrderRequest(
        request_id=request_id(),
        channel=body.channel,
        location_id=body.location_id,
        customer_id=body.customer_id,
        lines=[_line_pb(ln, request) for ln in body.lines],
        fulfillments=[_fulfillment_pb(f) for f in body.fulfillments],
        notes=body.notes,
        metadata=body.metadata,
        coupon_codes=body.coupon_codes,
        order_manual=body.order_manual.pb(_who(request)) if body.order_manual else None,
        redeem_points=body.redeem_points,
        draft=body.status == "draft",
    )
    async with _manual_guards(request, body.lines, body.order_manual) as approvals:
        approvals.ask(order_request)
        answer = await svc.order.CreateOrder(order_request)
        approvals.answered(answer.order.id, answer.sold_below_cost)
    return to_model(Order, answer.order)


# What a PATCH changes without pricing the order again, in any status (the order service's
# rule: `drafts.ANNOTATIONS`).
_ANNOTATIONS = frozenset({"notes", "metadata"})


class OrderPatch(Patch):
    model_config = example(
        {"lines": [{"sku": "TEE-BLK-M", "quantity": 3}], "notes": "Gift wrap, please"}
    )
    # What an edit of a draft removes when sent as null (JSON merge-patch).
    CLEARABLE = frozenset({"order_manual"})

    customer_id: str | None = Field(
        None, max_length=64, description="One of your customers, or empty for none"
    )
    lines: list[OrderLineIn] | None = Field(None, min_length=1, max_length=200)
    fulfillments: list[FulfillmentIn] | None = Field(
        None, max_length=20, description="Empty: one in-store fulfilment at location_id"
    )
    coupon_codes: list[CouponCode] | None = Field(
        None,
        max_length=10,
        description="Only an empty list: a draft keeps no coupon code (a code is never "
        "stored); give them with `POST /v1/orders/{id}/submit`",
    )
    order_manual: OrderManualIn | None = Field(
        None,
        description="A manual discount on the whole order, as at creation; null removes the "
        "draft's (left out, it is kept). The only field that takes null",
    )
    redeem_points: int | None = Field(None, ge=0, le=MAX_REDEEM_POINTS, json_schema_extra=INT64,
                                      description=REDEEM)  # fmt: skip
    notes: str | None = Field(None, max_length=2000)
    metadata: dict[MetadataKey, MetadataValue] | None = Field(None, max_length=50)


@router.patch(
    "/orders/{order_id}",
    **op(
        "orders:write",
        "Edit an order's notes and metadata, or a draft",
        (404, 409, 412),
        example=ex.ORDER,
        sells=True,
    ),
)
async def update_draft_order(
    order_id: PathId,
    body: OrderPatch,
    request: Request,
    svc: Svc,
    response: Response,
    if_match: IfMatch = None,
) -> Order:
    """A draft only (`"status": "draft"` at creation): each field sent replaces the draft's
    (`lines` and `fulfillments` whole, as at creation; `lines[].fulfillment` indexes the
    fulfilments the draft has after this change), the others stay; `"order_manual": null`
    removes the draft's manual discount on the whole order (JSON merge-patch: null removes,
    absent keeps; any other field sent as null is a 400). The draft is then priced again (the
    catalog's prices, promotions, tax and the loyalty point value as they are now) and
    answered as a new `version`; nothing is held. Send `If-Match: "<version>"` to change
    only the version you saw: a stale one is a 412 `version_mismatch` with `current_version`,
    as is a change that came in while this one was priced. Without `If-Match`, such a change
    is kept: the draft as it left it is priced again with this edit (two edits at once both
    apply). An order that is no longer a draft
    is a 409 `order_not_draft`; bad input a 400 naming each field, nothing changed. Each edit
    is announced as `order.updated` (the draft as GET answers it at its new version); what is
    refused announces nothing. A manual discount given by an edit is judged against the
    signed-in member's limit on the manual discounts the draft carries after it (those it keeps
    and those given, a line's and the order's together), as one request giving them all is: 10 %
    kept on a line and 10 % given on the order is 19 % off it, a 403 `permission_required`
    (`discount_above_limit`) without the permission or a manager's override, nothing changed.
    A line that the draft's manual discounts or entered prices leave below its product's unit
    cost, as priced by the edit (whatever fields it sends, as at its submit), is judged for the
    signed-in member: without `sell_below_cost` or a manager's override a 403
    `permission_required` naming it and the line, nothing changed.

    `notes` and `metadata` alone change on any order, whatever its status (a packing note,
    your own ids kept on a placed, paid or completed order): nothing is priced again, held or
    paid; a new `version`, `If-Match` as above, announced as `order.updated`. Any other field
    on an order that is not a draft is the 409 `order_not_draft`, nothing changed."""
    # Named in the mask and left unset, order_manual is removed (the service's FieldMask reading).
    sent = patched(body)
    ask = order_pb2.UpdateDraftOrderRequest(
        request_id=request_id(),
        order_id=order_id,
        expected_version=expected_version(if_match),
        customer_id=body.customer_id or "",
        lines=[_line_pb(ln, request) for ln in body.lines or []],
        fulfillments=[_fulfillment_pb(f) for f in body.fulfillments or []],
        coupon_codes=body.coupon_codes or [],
        order_manual=body.order_manual.pb(_who(request)) if body.order_manual else None,
        redeem_points=body.redeem_points or 0,
        notes=body.notes or "",
        metadata=body.metadata or {},
    )
    ask.update_mask.paths.extend(sorted(sent))
    # Any other field prices the draft again, with the prices given by hand it keeps (its
    # lines' and its order's, not in this request): judged below cost as its submit judges
    # them, else it would show a price the submit then refuses.
    reprices = not sent.keys() <= _ANNOTATIONS
    async with _manual_guards(request, body.lines or [], body.order_manual, reprices) as approvals:
        approvals.ask(ask)
        limit = await _limit_over_draft(request, body)
        if limit is not None:
            ask.manual_limit_bps = limit
        try:
            answer = await version_checked(svc.order.UpdateDraftOrder(ask))
        except grpc.aio.AioRpcError as exc:
            if limit is None or read_error(exc).reason != "discount_above_limit":
                raise
            # Within the limit alone, above it with what the draft keeps: as for one request
            # giving them all, the permission or a manager's override for this edit.
            ask.ClearField("manual_limit_bps")
            async with guarded(
                request, "discount", "discount_above_limit", always=False
            ) as approved:
                answer = await version_checked(svc.order.UpdateDraftOrder(ask))
                approved.resource = ("order", answer.order.id)
        approvals.answered(answer.order.id, answer.sold_below_cost)
    response.headers["ETag"] = f'"{answer.order.version}"'
    return to_model(Order, answer.order)


SUBMIT_EXAMPLE = {"coupon_codes": ["SPRING-7Q2X"]}


class SubmitIn(Body):
    model_config = example(SUBMIT_EXAMPLE)

    coupon_codes: list[CouponCode] = Field(
        default_factory=list,
        max_length=10,
        description=COUPONS + ". A draft keeps none (a code is never stored): they are given "
        "here, priced with the draft and reserved at once",
    )


@router.post(
    "/orders/{order_id}/submit",
    **op("orders:write", "Submit a draft order", (404, *CREATE), example=ex.ORDER, sells=True),
)
async def submit_order(
    order_id: PathId,
    request: Request,
    svc: Svc,
    body: Annotated[
        SubmitIn | None, BodyParam(openapi_examples={"coupons": {"value": SUBMIT_EXAMPLE}})
    ] = None,
) -> Order:
    """Prices the draft again (a draft may be days old: the catalog's prices, promotions, tax
    and the loyalty point value as they are now, which may differ from what the draft showed),
    saves it `pending_payment`, then holds its pickup and shipment lines exactly as
    `POST /v1/orders` does (all or none, for `hold_seconds`), reserves its coupons and holds
    its points, and announces the change (`order.updated`, status `pending_payment`; the
    order was created once, as a draft, with its `order.created`). Short stock is the 409
    `insufficient_stock` naming what is short, as at creation: nothing stays held and the
    order is still a draft, priced as it was before the submit (not with the coupons it was
    given), its timeline saying why (`order.updated`); so is a coupon refused at its
    reservation (409 with the coupon's reason). Points
    refused once its coupons are reserved cancel it. Then add tenders and confirm it as any
    order. Submitting an order submitted already answers it as it is; any other order that is
    not a draft is a 409 `order_not_draft`. An edit that comes in while the submit prices the
    draft is submitted with it (the draft is priced again as edited).
    A line that the draft's manual discounts or entered prices leave below its product's unit
    cost, as priced now, is judged for the signed-in member as at creation: without
    `sell_below_cost` or a manager's override a 403 `permission_required` naming it, and the
    order is still a draft, unchanged."""
    ask = order_pb2.SubmitOrderRequest(
        request_id=request_id(),
        order_id=order_id,
        coupon_codes=body.coupon_codes if body is not None else [],
    )
    # The prices given by hand are the draft's, unknown here: the order service judges them.
    async with below_cost_guards(request, True) as approvals:
        approvals.ask(ask)
        answer = await svc.order.SubmitOrder(ask)
        approvals.answered(answer.order.id, answer.sold_below_cost)
    return to_model(Order, answer.order)


class TenderIn(Body):
    model_config = example({"tender_type": "card", "card_token": "tok_visa"})

    tender_type: Literal["cash", "card", "gift_card", "external"]
    amount: MoneyIn | None = Field(None, description="Absent: the balance still due")
    card_token: str = Field("", max_length=64, description="Card: a sandbox token")
    cash_tendered: MoneyIn | None = None
    gift_card_code: str = Field("", max_length=64, description="Gift card: its code")
    external_reference: str = Field("", max_length=128)


def tender_into(
    message: order_pb2.AddTenderRequest | order_pb2.ExchangeTender, body: TenderIn
) -> None:
    """A tender's fields onto its request message (a tender of an order, or of an exchange's
    difference: the same fields)."""
    message.tender_type = _TENDERS[body.tender_type]
    message.card_token = body.card_token
    message.gift_card_code = body.gift_card_code
    message.external_reference = body.external_reference
    if body.amount is not None:
        message.amount.CopyFrom(body.amount.pb())
    if body.cash_tendered is not None:
        message.cash_tendered.CopyFrom(body.cash_tendered.pb())


@router.post(
    "/orders/{order_id}/tenders",
    **op(
        "orders:write",
        "Add a payment tender to an order",
        (402, 404, *CREATE),
        example=ex.CHECKOUT,
        status=201,
        sells=True,
    ),
)
async def add_tender(order_id: PathId, body: TenderIn, svc: Svc, request: Request) -> Checkout:
    """Takes one tender (split tender: several, until the total is covered), authorised only:
    each fulfilment captures its share later. A decline is a 402 whose problem carries the order
    and the payment: the order stays `pending_payment` with its holds, and another tender may
    follow. More than the balance due is a 400 (a tender whose answer is awaited counts as
    paying its amount until it is declined); an order not waiting for payment a 409, and so are
    a tender while the awaited ones would cover the balance (`payment_pending`) and one when the
    tenders already cover it (`balance_covered`). A tender the payment service refuses (a 400: a
    missing or unknown card token, say, or a gift card in another currency than the order's,
    `currency_mismatch` naming `gift_card_code`; a gift card code no card has, a 404
    `resource_missing` naming `gift_card_code`; a deactivated gift card, a 409
    `gift_card_inactive` naming `gift_card_code`; a gift card holding less than the tender, a
    409 `insufficient_funds` naming `amount.amount` with what it holds: tender at most that,
    and another tender for the rest) takes nothing and holds up no other tender; so
    does one the card processor could not be reached for (a 503 `processor_unavailable`: no
    payment is made, and a retry under the same key is taken as a new tender, asking the
    processor again). A `cash` tender at a register with no shift open is a 409
    `cash_needs_open_shift` naming `tender_type`, and nothing is taken (the cash would count in
    no shift). One whose order is cancelled while it is taken is a 409 `order_not_pending`, its
    payment voided or refunded. A gift card's code spends the credential's code look-ups as
    `/v1/gift-cards/lookup` does (429 `code_lookups_limited`). To replace a tender before the
    order is confirmed (the shopper changes card), void its payment (`POST
    /v1/payments/{id}/void`) and add the new one: it is taken at once, the order asking the
    payment service when its tenders seem to cover the balance.

    A confirmed order takes a tender only when its authorisations and captures no longer hold
    what its pickups not yet picked up and shipments not yet shipped still need (an
    authorisation voided, or past its window: their step is a 409 `payment_required` with
    `amount_due`; `balance_due` of `GET /v1/orders/{id}/payments` says the same), for at most
    that amount (absent: all of it; more is a 400 on `amount`); nothing due is a 409
    `payment_not_required`. Its step then captures from the new tender; a decline (402)
    leaves the order confirmed and as much due; a cancel gives it back with the rest."""
    if body.gift_card_code:
        await spend_code_budget(request)
    ask = order_pb2.AddTenderRequest(request_id=request_id(), order_id=order_id)
    tender_into(ask, body)
    answer = await svc.order.AddTender(ask)
    payment = to_json(answer.payment) if answer.HasField("payment") else None
    result = Checkout.model_validate({"order": to_json(answer.order), "payment": payment})
    _refuse_declined(answer.payment, result)
    return result


@router.post(
    "/orders/{order_id}/confirm",
    **op(
        "orders:write",
        "Confirm an order",
        (404, *CREATE),
        example=ex.ORDER,
        shown_once=("gift_cards",),
        sells=True,
    ),
)
async def confirm_order(order_id: PathId, svc: Svc) -> ConfirmedOrder:
    """Commits the holds and captures what is captured now (in-store lines; pickups when the
    settings say so, or when the pickup could outlive its authorisation); shipments capture at
    `shipped`. The tenders must cover the total: otherwise a 409 `balance_due`. A zero total
    needs no tender. Gift card lines are activated, their codes in `gift_cards` of this answer
    only (a replay has `gift_cards: null` and `secret_redacted: true`). `order.confirmed`
    follows."""
    answer = await svc.order.ConfirmOrder(
        order_pb2.ConfirmOrderRequest(request_id=request_id(), order_id=order_id)
    )
    result = to_json(answer.order)
    if answer.gift_cards:
        result["gift_cards"] = _issued(answer.gift_cards)
    return ConfirmedOrder.model_validate(result)


# The conflict a till meets first when a cancel gives cash back: said on both cancel routes.
_CASH_CANCEL_CONFLICT = (
    "Conflict with the current state, or the same Idempotency-Key still running; among them "
    "`cash_refund_needs_open_shift`: the cancel gives cash back, and it is asked from the "
    "back office or at a register with no shift open (nothing is done)"
)


@router.post(
    "/orders/{order_id}/cancel",
    **conflict_shown(
        op("orders:write", "Cancel an order", (404, *CREATE), example=ex.ORDER),
        _CASH_CANCEL_CONFLICT,
        ex.CANCEL_CASH_NEEDS_OPEN_SHIFT,
    ),
)
async def cancel_order(order_id: PathId, request: Request, svc: Svc) -> Order:
    """Before any of it left the store: releases the holds, voids the authorisations, refunds
    the captures. Goods already handed over or shipped are a 409 `order_fulfilled` (return
    them instead); an order whose confirmation is under way a 409 `order_confirming` (cancel
    it once it is confirmed), and one whose pickup is being handed over or shipment shipped
    (its share being captured), or one of whose fulfilments is being cancelled, a 409
    `fulfillment_in_progress`; one with a card tender answered `pending` (its answer not
    known yet, settled by the payment service within about a minute) a 409
    `payment_pending`, nothing changed: cancel it once the answer is known. A tender still
    being taken loses to the cancel: the order is cancelled, and that tender's payment given
    back (the tender is a 409 `order_not_pending`). One fulfilment alone:
    `.../fulfillments/{id}/cancel`.

    At a register, a cancel that gives captured money back (cash taken, a capture at
    confirmation), or one beside a tender still being taken, takes the `refund`
    permission or a manager's override (403 `permission_required`, nothing changed); one that
    only voids authorisations and releases holds does not, and leaves a manager's waiting
    override for the action it was given for. Every cancel is in the audit log
    (`order.cancelled`) with who made it and what went back to each payment.

    Cash given back leaves a register's drawer, as a return's cash refund does: a cancel of
    an order holding cash is made at a register with a shift open, and the cash counts in
    that shift (its drawer then expects it gone). From the back office (a key that is no
    register's), or at a register with no shift open, it is a 409
    `cash_refund_needs_open_shift` naming `order_id`, and nothing is done. A cancel giving
    back only cards, gift cards or other tenders needs no register. A cancel the service
    makes itself (an unpaid order's holds running out, a pickup not collected, a sale nobody
    finished) is never refused: its cash goes back at the register the sale was made at, and
    counts in the shift open there then (in none for a back-office sale)."""
    async with guarded(request, "order.cancelled", "refund", required=False) as done:
        answer = await svc.order.CancelOrder(
            order_pb2.CancelOrderRequest(
                request_id=request_id(),
                order_id=order_id,
                # The order service refuses, under the order's lock, a cancel that would
                # give money back: captured between a check here and the cancel, it would not.
                refund_not_permitted=not done.permitted,
            )
        )
        done.needed = any(r.amount.amount > 0 for r in answer.refunds)
        done.resource = ("order", order_id)
        done.details = _cancel_audited(answer.refunds)
    return to_model(Order, answer.order)


@router.post(
    "/orders/{order_id}/tenders-to-record/settle",
    **op("orders:write", "Record a sale's held cash", (404, *CREATE), example=ex.ORDER),
)
async def settle_tenders_to_record(order_id: PathId, request: Request, svc: Svc) -> Order:
    """A register sale's cash that the payment service refused for good to record late
    (`tenders_to_record[].refusal`, e.g. `shift_currency_mismatch`: the register's open shift
    counts another currency by then) is held for a person: returns and exchanges of the sale
    are a 409 `payment_record_refused`, and nothing asks again. This records it now as taken
    from the back office: in no register's shift (the shift it was taken in counted it as
    over when it closed), in the day's settlement report. The order then has its payment
    (`payment_ids`, `tenders_to_record` empty), and returns go through it. An order with
    nothing held answers as it is; retried, nothing is recorded twice (the sale's own payment
    request is answered again). The payment service away is a 503; another refusal passes
    through, nothing written. In the audit log (`order.tenders_recorded`) with who did it.
    Another merchant's order is a 404."""
    async with guarded(request, "order.tenders_recorded") as done:
        answer = await svc.order.RecordHeldTenders(
            order_pb2.RecordHeldTendersRequest(request_id=request_id(), order_id=order_id)
        )
        done.resource = ("order", order_id)
    return to_model(Order, answer.order)


def _cancel_audited(refunds: Sequence[payment_pb2.TenderAmount]) -> dict[str, object]:
    """A cancel's audit details: what went back to each payment."""
    return {
        "refunds": [
            {"payment_id": r.payment_id, "amount": r.amount.amount, "currency": r.amount.currency}
            for r in refunds
        ],
        "refunded": sum(r.amount.amount for r in refunds),
    }


class FulfillmentStepIn(Body):
    model_config = example({"status": "shipped", "carrier": "UPS", "tracking_number": "1Z999"})

    status: Literal["ready_for_pickup", "picked_up", "picked", "shipped", "delivered"]
    carrier: str = Field("", max_length=100, description="Required at `shipped`")
    tracking_number: str = Field("", max_length=100, description="Required at `shipped`")


@router.post(
    "/orders/{order_id}/fulfillments/{fulfillment_id}/steps",
    **op(
        "orders:write",
        "Move a fulfilment to its next step",
        (404, *CREATE),
        example=ex.ORDER,
        sells=True,
    ),
)
async def step_fulfillment(
    order_id: PathId, fulfillment_id: PathId, body: FulfillmentStepIn, svc: Svc
) -> Order:
    """Pickup: `ready_for_pickup` (the web shop tells the buyer), `picked_up`. Shipment:
    `picked`, `shipped` (carrier and tracking number, given at this step only: a 400 at
    another), `delivered`. One step at a time, none skipped: a pickup is `ready_for_pickup`
    before `picked_up`, a shipment `picked` before `shipped`. `picked_up` and `shipped`
    capture the fulfilment's share first; goods never leave unpaid: a share no authorisation
    holds any more (voided, or past its window) is a 409 `payment_required` with `amount_due`,
    an order whose payments were refunded (in full or in part, through
    `POST /v1/payments/{id}/refunds` or `/v1/orders/{id}/refunds`) by more than its returns,
    cancelled fulfilments and price adjustments (refunds naming `lines`) account for is a 409
    `payment_refunded` with `amount_due` (what it no longer holds), and a capture the payment
    service refuses is its 409; either way the step did nothing and the order can still be
    cancelled (after `payment_required`, a tender for `amount_due` lets the step go ahead:
    `POST /v1/orders/{id}/tenders`). A refund or void of the order's payments being made
    while `picked_up` or `shipped` reads them (or made since) is a 409 `refund_in_progress`:
    retried, the step counts it. A step out of order or skipping one is a 409
    `invalid_transition` naming the next step, and changes nothing;
    the step a fulfilment is at already answers the order unchanged, except `shipped` with
    another carrier or tracking number: a 409 `fulfillment_already_shipped`. An order being
    cancelled, or cancelled, is a 409 `order_not_confirmed`; a fulfilment cancelled or being
    cancelled (`.../cancel`) a 409 `fulfillment_cancelled`.
    `order.fulfillment_updated` follows; the last fulfilment done completes the order."""
    answer = await svc.order.UpdateFulfillment(
        order_pb2.UpdateFulfillmentRequest(
            request_id=request_id(),
            order_id=order_id,
            fulfillment_id=fulfillment_id,
            status=_FULFILLMENT_STATUSES[body.status],
            carrier=body.carrier,
            tracking_number=body.tracking_number,
        )
    )
    return to_model(Order, answer.order)


@router.post(
    "/orders/{order_id}/fulfillments/{fulfillment_id}/cancel",
    **conflict_shown(
        op("orders:write", "Cancel one fulfilment", (404, *CREATE), example=ex.ORDER),
        _CASH_CANCEL_CONFLICT,
        ex.FULFILLMENT_CANCEL_CASH_NEEDS_OPEN_SHIFT,
    ),
)
async def cancel_fulfillment(
    order_id: PathId, fulfillment_id: PathId, request: Request, svc: Svc
) -> Order:
    """One pickup or shipment of a confirmed order, before it left the store (a pickup
    `reserved` or `ready_for_pickup`, a shipment `reserved` or `picked`): its units go back to
    stock, what was captured for it is refunded to the payments it was captured from, and its
    share is never captured; the rest of the order stays as it is. The fulfilment becomes
    `cancelled` (`order.fulfillment_updated` follows) and `cancelled_total` counts its share;
    what is left of the authorisation is voided once no other fulfilment will capture more.
    Its last live fulfilment cancelled, an order of which nothing was handed over is cancelled
    whole (`order.cancelled`, reason `requested`: coupons and points given back as for
    `POST /v1/orders/{id}/cancel`); one with goods handed over completes once the rest is done.
    A cancelled fulfilment answers the order unchanged. A 409 `fulfillment_left_store` once it
    was picked up, shipped or delivered (return its goods instead), `fulfillment_in_store` for
    an in-store fulfilment (handed over at the sale: a return), `fulfillment_expired` for an
    expired pickup, `order_not_confirmed` while the order is not confirmed (cancel it whole) or
    being cancelled, and `fulfillment_in_progress` while it is being picked up or shipped (its
    share being captured): whichever of the step and the cancel reached the order first wins,
    the other is a 409 (a step after the cancel: `fulfillment_cancelled`). Retried with the same
    Idempotency-Key, nothing is given back twice.

    At a register, a cancel that gives captured money back (the fulfilment's share captured at
    confirmation, cash taken, less what price adjustments of its units gave back already; for
    the order's last live fulfilment, whatever the order holds) takes the `refund` permission
    or a manager's override (403 `permission_required`, nothing changed); one whose share was
    never captured, or was given back in full by price adjustments, does not, and leaves a
    manager's waiting override for the action it was given for. Every cancel is in the audit log
    (`fulfillment.cancelled`) with who made it, the fulfilment and what went back to each
    payment.

    Cash given back leaves a register's drawer: a cancel whose refund reaches a cash payment
    (the fulfilment's share captured in cash; for the last live one, whatever cash the order
    holds) is made at a register with a shift open, and the cash counts in that shift. From
    the back office, or at a register with no shift open, it is a 409
    `cash_refund_needs_open_shift` naming `fulfillment_id`, and nothing is done. A pickup's
    expiry (the service's own) is never refused: its cash goes back at the register the sale
    was made at, counted in the shift open there then."""
    async with guarded(request, "fulfillment.cancelled", "refund", required=False) as done:
        answer = await svc.order.CancelFulfillment(
            order_pb2.CancelFulfillmentRequest(
                request_id=request_id(),
                order_id=order_id,
                fulfillment_id=fulfillment_id,
                # As the whole order's: the order service decides under the order's lock.
                refund_not_permitted=not done.permitted,
            )
        )
        done.needed = any(r.amount.amount > 0 for r in answer.refunds)
        done.resource = ("order", order_id)
        done.details = {"fulfillment_id": fulfillment_id, **_cancel_audited(answer.refunds)}
    return to_model(Order, answer.order)


@router.get(
    "/order-settings",
    **op("orders:read", "Get the order settings", example=ex.ORDER_SETTINGS),
)
async def get_order_settings(svc: Svc, response: Response) -> OrderSettings:
    """The service's defaults where you set none (version 1). The authorisation window is
    the payment service's, shown here so that the settings an order follows are in one place.
    The version covers every field shown, the window included (a change of it from `PUT
    /v1/payment-settings` moves this version on too). The ETag is the version, for
    `If-Match` on a change."""
    settings = _shown(*await _settings_now(svc))
    response.headers["ETag"] = f'"{settings.version}"'
    return settings


# The order settings as this resource shows them are two services' settings: the order
# service's fields and the payment service's authorisation window, each with a version that
# starts at 1 and grows by one with each of its changes. The resource's version is their sum
# less one: 1 while both are the defaults, and moved on by any change of either, so an
# If-Match of it matches only while neither has changed since it was read.
def _version(order: order_pb2.OrderSettings, payment: payment_pb2.PaymentSettings) -> int:
    return order.version + payment.version - 1


def _shown(order: order_pb2.OrderSettings, payment: payment_pb2.PaymentSettings) -> OrderSettings:
    shown = order_pb2.OrderSettings()
    shown.CopyFrom(order)
    shown.authorization_window_seconds = payment.authorization_window_seconds
    shown.version = _version(order, payment)
    return to_model(OrderSettings, shown)


async def _settings_now(
    svc: Services,
) -> tuple[order_pb2.OrderSettings, payment_pb2.PaymentSettings]:
    order, payment = await asyncio.gather(
        svc.order.GetOrderSettings(order_pb2.GetOrderSettingsRequest()),
        svc.payment.GetPaymentSettings(payment_pb2.GetPaymentSettingsRequest()),
    )
    return order.settings, payment.settings


async def _stale(svc: Services) -> Problem:
    """The 412 of a change whose If-Match is not the version now (read again: either side may
    have been the one that moved)."""
    return _stale_at(_version(*await _settings_now(svc)))


def _stale_at(current: int) -> Problem:
    return Problem(
        412,
        "version_mismatch",
        "the settings changed since the version you sent",
        extra={"current_version": current},
    )


class ReceiptlessLimitIn(Body):
    amount: int = Field(
        ge=0,
        le=1_000_000_000_000_000,
        json_schema_extra=INT64,
        description="At most this much store credit in the window, in minor units of the "
        "returning store's currency (0: no return without a receipt at all)",
    )
    days: int = Field(ge=1, le=365, json_schema_extra=INT64, description="The rolling window")


class OrderSettingsIn(Patch):
    model_config = example({"capture_pickup_at_order": True, "pickup_expiry_seconds": 259200})
    CLEARABLE = frozenset({"receiptless_limit"})

    # Strict: JSON's 0 and 1 are numbers, not a yes or a no.
    capture_pickup_at_order: StrictBool | None = Field(
        None,
        description="Capture pickups at confirmation (true) or at hand-over (false: only those "
        "whose wait ends within the authorisation window; the others at confirmation)",
    )
    pickup_expiry_seconds: int | None = Field(None, ge=3600, le=7_776_000, json_schema_extra=INT64)
    hold_seconds: int | None = Field(None, ge=60, le=604_800, json_schema_extra=INT64)
    authorization_window_seconds: int | None = Field(
        None,
        ge=60,
        le=2_678_400,
        json_schema_extra=INT64,
        description="The payment settings' window (PUT /v1/payment-settings), set from here too",
    )
    return_window_days: int | None = Field(None, ge=0, le=365, json_schema_extra=INT64)
    return_policy_text: str | None = Field(
        None,
        max_length=1_000,
        description="Your return policy in your words, printed on receipts after the window's "
        "sentence (empty: that sentence alone)",
    )
    receiptless_limit: ReceiptlessLimitIn | None = Field(
        None,
        description=RECEIPTLESS_LIMIT_WORDS + "; replaced whole, and `null` lifts it",
    )


@router.patch(
    "/order-settings",
    **op("orders:write", "Change the order settings", (*CREATE, 412), example=ex.ORDER_SETTINGS),
)
async def update_order_settings(
    body: OrderSettingsIn,
    http: Request,
    response: Response,
    svc: Svc,
    if_match: IfMatch = None,
) -> OrderSettings:
    """Only the fields sent change, as one change: a field out of bounds or set to null is a
    400 naming it (and a body with no field a 400) and nothing changes, the window included;
    but `receiptless_limit`, which `null` lifts (no limit on returns without a receipt).
    A change moves `version` on and is in the audit log (`settings.orders_changed`, each field
    from and to). Send `If-Match: "<version>"` to
    change only the version you saw (the version covers the window too): a stale one is a 412
    `version_mismatch` with `current_version`, and nothing changes, not even for a moment:
    changes of the settings (and of the window) are made one at a time, so of two sent with
    the same version one is made and the other is that 412. The authorisation window
    is the payment settings' (`PUT /v1/payment-settings`): set from here, it is their change
    (`settings.payments_changed`, their version), made first; should the order fields then
    fail to change (the order service failing), it is set back and the error answered, so a
    failed change is never half made. A pickup that would outlive the window captures at
    confirmation. A register's credential is refused (403 `insufficient_scope`): settings are
    the back office's."""
    # A field set to null (but the limit, which null lifts), or none sent, is a 400: never a
    # silent no-op.
    sent = patched(body)
    version = expected_version(if_match)
    request = _order_change(body, sent)
    window = body.authorization_window_seconds
    async with (
        guarded(http, "settings.orders_changed", settings="the order settings") as done,
        settings_leased(svc) as lease,
    ):
        # Under the lease no other change of either part comes in: the version checked here
        # is the one the writes below replace, and a refusal has written nothing.
        payment = (
            await svc.payment.GetPaymentSettings(payment_pb2.GetPaymentSettingsRequest())
        ).settings
        if version and _version(lease.order, payment) != version:
            raise _stale_at(_version(lease.order, payment))
        # The payment side first: refused there (the service down), nothing has changed yet;
        # once it is set, the order side cannot be refused for a change in between (the lease).
        written: payment_pb2.UpdatePaymentSettingsResponse | None = None
        if window is not None:
            try:
                written = await change_payment_settings(
                    http, svc, window, payment.version, f"{request_id()}/payment"
                )
            except Problem as problem:
                if problem.status == 412:
                    raise await _stale(svc) from None
                raise
        request.expected_version = lease.order.version
        request.lease = lease.holder
        try:
            answer = await _write_order_fields(svc, request, again=written is not None)
        except grpc.aio.AioRpcError as exc:
            # Only a lease lost (its holder stalled past it) or a failure of the service.
            if written is not None:
                await _set_window_back(http, svc, written)
            if read_error(exc).reason == "version_mismatch":
                raise await _stale(svc) from None
            raise
        if written is not None:
            payment = written.settings
        settings = _shown(answer.settings, payment)
        settings_changed(
            done, _order_fields(answer.previous), _order_fields(answer.settings), settings.version
        )
    response.headers["ETag"] = f'"{settings.version}"'
    return settings


def _order_change(
    body: OrderSettingsIn, sent: dict[str, object]
) -> order_pb2.UpdateOrderSettingsRequest:
    request = order_pb2.UpdateOrderSettingsRequest(request_id=request_id())
    if body.receiptless_limit is not None:
        request.receiptless_limit.amount = body.receiptless_limit.amount
        request.receiptless_limit.days = body.receiptless_limit.days
    elif "receiptless_limit" in sent:
        request.clear_receiptless_limit = True
    if body.capture_pickup_at_order is not None:
        request.capture_pickup_at_order = body.capture_pickup_at_order
    if body.pickup_expiry_seconds is not None:
        request.pickup_expiry_seconds = body.pickup_expiry_seconds
    if body.hold_seconds is not None:
        request.hold_seconds = body.hold_seconds
    if body.return_window_days is not None:
        request.return_window_days = body.return_window_days
    if body.return_policy_text is not None:
        request.return_policy_text = body.return_policy_text
    return request


# The order service answered: it refused the change, which therefore did not happen. Any other
# failure (no answer in time, the connection lost, the same request still running) leaves it
# unknown.
_REFUSALS = frozenset(
    {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION,
     grpc.StatusCode.NOT_FOUND, grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.OUT_OF_RANGE,
     grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED,
     grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNIMPLEMENTED}
)  # fmt: skip


async def _write_order_fields(
    svc: Services, request: order_pb2.UpdateOrderSettingsRequest, *, again: bool
) -> order_pb2.UpdateOrderSettingsResponse:
    """The order side of a change. With `again` (a window already set, to be set back if
    this fails), a failure that leaves the outcome unknown is asked once more under the same
    request_id: the service answers a change it made from what it stored, so the window is
    set back only for a change that did not happen."""
    try:
        answer: order_pb2.UpdateOrderSettingsResponse = await svc.order.UpdateOrderSettings(request)
    except grpc.aio.AioRpcError as exc:
        if not again or exc.code() in _REFUSALS:
            raise
        answer = await svc.order.UpdateOrderSettings(request)
    return answer


async def _set_window_back(
    http: Request, svc: Services, written: payment_pb2.UpdatePaymentSettingsResponse
) -> None:
    """Undo the window a failed change set, unless it set none or the window has changed
    again since (that later change stands)."""
    if written.settings.version == written.previous.version:
        return
    try:
        await change_payment_settings(
            http, svc, written.previous.authorization_window_seconds, written.settings.version,
            f"{request_id()}/payment-undo", second=True,
        )  # fmt: skip
    except Exception as exc:
        log.error(
            "an order settings change failed after setting the authorisation window, "
            "which could not be set back: %s", type(exc).__name__,
        )  # fmt: skip


def _order_fields(settings: order_pb2.OrderSettings) -> dict[str, object]:
    names = ("capture_pickup_at_order", "pickup_expiry_seconds", "hold_seconds",
             "return_window_days", "return_policy_text")  # fmt: skip
    fields: dict[str, object] = {name: getattr(settings, name) for name in names}
    fields["receiptless_limit"] = (
        to_json(settings.receiptless_limit) if settings.HasField("receiptless_limit") else None
    )
    return fields


class CartIn(Body):
    model_config = example(
        {
            "location_id": ex.LOCATION_ID,
            "channel": "register",
            "customer_id": ex.CUSTOMER_ID,
            "lines": [{"sku": "TEE-BLK-M", "quantity": 2}, {"sku": "MUG-LOGO", "quantity": 1}],
            "coupon_codes": ["WINTER-26"],
        }
    )

    location_id: str = Field(
        min_length=1, max_length=64, description="Where it is sold: prices, currency and tax"
    )
    channel: str = Field(
        "register",
        min_length=1,
        max_length=32,
        pattern=CHANNEL,
        description="The channel the sale will be made on (offers may be for some only): "
        "`register` for POST /v1/checkouts, the order's channel for POST /v1/orders",
    )
    customer_id: str = Field(
        "",
        max_length=64,
        description="One of your customers, or empty. A duplicate merged into another customer "
        "is priced as that customer (their groups, coupons and points)",
    )
    lines: list[OrderLineIn] = Field(min_length=1, max_length=200)
    fulfillments: list[FulfillmentIn] = Field(
        default_factory=list,
        max_length=20,
        description="As for an order; empty: one in-store fulfilment at location_id",
    )
    redeem_points: int = Field(0, ge=0, le=MAX_REDEEM_POINTS, json_schema_extra=INT64,
                               description=REDEEM)  # fmt: skip
    coupon_codes: list[CouponCode] = Field(
        default_factory=list,
        max_length=10,
        description="Coupon codes (case-insensitive); one that cannot apply is listed in "
        "`rejected_coupons` with the reason (not an error here)",
    )
    order_manual: OrderManualIn | None = Field(
        None,
        description="A manual discount on the whole order (percent or amount), with its "
        "reason; above the signed-in member's limit it needs the permission or an override",
    )


@router.post(
    "/carts/calculate",
    **op("orders:read", "Price a cart (preview)", (404, 409), example=ex.CART),
)
async def calculate_cart(body: CartIn, request: Request, svc: Svc) -> CartQuote:
    """The pricing step a checkout and an order run, writing nothing: each line's price as the
    catalog stands, the discounts per line and per order with the offer and its reason, each
    line's tax (on the line less its discounts, rounded per line, then summed) and the totals.
    The same cart sold at once (POST /v1/checkouts, or POST /v1/orders with the same channel,
    lines, fulfilments, customer and coupons) has the same totals. A location, product or
    customer you do not have is a 404; while promotions cannot be reached, list prices with
    `discounts_applied: false` and a `warnings` entry `discounts_unavailable`, or a 503 when a
    coupon is named. More `redeem_points` than the
    customer has available is the sale's 409 `insufficient_points` (with `available`). A
    shipment naming no store (a `destination`) is taxed at the store(s) sourcing would ship it
    from now (nothing is held), as its sale is taxed where sourcing holds it: a line sourcing
    would split over stores is answered in its parts (`L1`, `L1.2`), as the order will have
    them. The sale asks sourcing again, so stock moving in between can move its tax; no store
    can ship it is the sale's 409 `insufficient_stock` (with `short`)."""
    answer = await svc.order.CalculateCart(
        order_pb2.CalculateCartRequest(
            location_id=body.location_id,
            channel=body.channel,
            customer_id=body.customer_id,
            lines=[_line_pb(ln, request) for ln in body.lines],
            fulfillments=[
                order_pb2.FulfillmentRequest(
                    type=_FULFILLMENT_TYPES[f.type],
                    location_id=f.location_id,
                    ship_to=f.ship_to,
                    destination=f.destination.pb() if f.destination is not None else None,
                )
                for f in body.fulfillments
            ],
            coupon_codes=body.coupon_codes,
            order_manual=body.order_manual.pb(_who(request)) if body.order_manual else None,
            redeem_points=body.redeem_points,
        )
    )
    return to_model(CartQuote, answer)
