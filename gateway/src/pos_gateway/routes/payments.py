"""Payments, refunds and card readers: /v1/payments, /v1/refunds, refunds of an order's
tenders, /v1/terminal-checkouts."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

import grpc
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import Field

from pos.common.v1 import money_pb2
from pos.order.v1 import order_pb2
from pos.payment.v1 import payment_pb2
from pos_gateway import examples as ex
from pos_gateway.actions import back_office_only, guarded, principal_of, settings_changed
from pos_gateway.clients import Services
from pos_gateway.confinement import elsewhere
from pos_gateway.convert import to_json, to_model, to_page
from pos_gateway.problems import Problem
from pos_gateway.returns_of import order_returns
from pos_gateway.routes.common import (
    CREATE,
    INT64,
    LOCATION_OF_YOURS,
    UNKNOWN_LOCATION,
    Body,
    CreatedBefore,
    CreatedSince,
    Cursor,
    IfMatch,
    Limit,
    MoneyIn,
    NotBlank,
    PathId,
    QueryId,
    Sku,
    UpdatedSince,
    conflict_shown,
    created_window,
    example,
    expected_version,
    op,
    request_id,
    services,
    timestamp,
    version_checked,
)
from pos_gateway.routes.settlement import in_its_currency, location_of, open_location_of
from pos_gateway.schemas.payments import (
    OrderPayments,
    Payment,
    PaymentList,
    PaymentSettings,
    Refund,
    RefundList,
    RefundsCreated,
    TerminalCheckout,
)
from pos_gateway.settings_lease import settings_leased

router = APIRouter(prefix="/v1", tags=["payments"])
Svc = Annotated[Services, Depends(services)]

_STATUSES = {
    "pending": payment_pb2.PAYMENT_STATUS_PENDING,
    "authorized": payment_pb2.PAYMENT_STATUS_AUTHORIZED,
    "captured": payment_pb2.PAYMENT_STATUS_CAPTURED,
    "voided": payment_pb2.PAYMENT_STATUS_VOIDED,
    "failed": payment_pb2.PAYMENT_STATUS_FAILED,
}
UNKNOWN_ORDER = (
    "Only this order's payments; an order of yours with no payment, or one you do not have, "
    "is a 404 `resource_missing` problem"
)


async def named_here(request: Request, svc: Services, **named: str | None) -> None:
    """A register's list filter naming another store's order or payment (`order_id=`,
    `payment_id=`) is the 404 of a made-up id, as that record reached by id is
    (confinement.py), named by `problems.filter_named`. Narrowed to the register's store, the
    list would answer it empty where a made-up id is a 404: a till would learn which ids are
    other stores' sales. A credential that is no register's reads every store's."""
    principal = principal_of(request)
    if principal.register_id is None or principal.location_id is None:
        return
    for name, record_id in named.items():
        if record_id:
            collection = "orders" if name == "order_id" else "payments"
            refused = await elsewhere(
                svc, f"/v1/{collection}/{record_id}", b"", principal.location_id
            )
            if refused is not None:
                raise refused


@router.get(
    "/payments",
    **op("payments:read", "List payments", (404,), example=ex.page(ex.PAYMENT)),
)
async def list_payments(
    request: Request,
    svc: Svc,
    limit: Limit = 50,
    cursor: Cursor = None,
    updated_since: UpdatedSince = None,
    order_id: Annotated[QueryId | None, Query(description=UNKNOWN_ORDER)] = None,
    location_id: Annotated[QueryId | None, Query(description=UNKNOWN_LOCATION)] = None,
    status: Annotated[
        Literal["pending", "authorized", "captured", "voided", "failed"] | None,
        Query(description="Only payments in this status"),
    ] = None,
    created_since: CreatedSince = None,
    created_before: CreatedBefore = None,
) -> PaymentList:
    """By id, or with `updated_since` the change feed (oldest change first), so a partner
    polling it sees every capture, void and refund. Each filter narrows the list
    (`created_since` and `created_before` together: a day's or a shift's payments, the second
    after the first, else a 400 naming `created_before`)."""
    if location_id:
        await location_of(svc, location_id)
    await named_here(request, svc, order_id=order_id)
    ask = payment_pb2.ListPaymentsRequest(
        page_size=limit,
        page_token=cursor or "",
        order_id=order_id or "",
        location_id=location_id or "",
        status=_STATUSES[status] if status else payment_pb2.PAYMENT_STATUS_UNSPECIFIED,
    )
    if updated_since is not None:
        ask.updated_since.CopyFrom(timestamp(updated_since))
    created_window(ask, created_since, created_before)
    answer = await svc.payment.ListPayments(ask)
    return to_page(PaymentList, answer.payments, answer.next_page_token)


@router.get(
    "/payments/{payment_id}", **op("payments:read", "Get a payment", (404,), example=ex.PAYMENT)
)
async def get_payment(payment_id: PathId, svc: Svc) -> Payment:
    answer = await svc.payment.GetPayment(payment_pb2.GetPaymentRequest(id=payment_id))
    return to_model(Payment, answer.payment)


class AmountIn(MoneyIn):
    """An amount to move: at least one minor unit, in the payment's currency."""

    amount: int = Field(
        ge=1, le=10**12, json_schema_extra=INT64, description="Integer minor units: 2599 = 25.99"
    )


class CaptureIn(Body):
    model_config = example({"amount": {"amount": 2500, "currency": "USD"}})

    amount: AmountIn | None = Field(
        None, description="What to capture now; absent: all that is left of the authorisation"
    )


# No body (or `{}`) captures all that is left.
_CAPTURE_ALL = CaptureIn(amount=None)


@router.post(
    "/payments/{payment_id}/capture",
    **op("payments:write", "Capture an authorised payment", (404, *CREATE), example=ex.PAYMENT),
)
async def capture_payment(
    payment_id: PathId, request: Request, svc: Svc, body: CaptureIn = _CAPTURE_ALL
) -> Payment:
    """Captures part or all of what is left of the authorisation; several captures may
    follow one another (each fulfilment capturing its share) up to the authorised total. More
    than is left is a 409 `amount_exceeds_authorization` (with `capturable`, its `errors[]`
    naming `amount`), an authorisation
    past its window a 409 `authorization_expired`, a voided or failed payment a 409, and one
    captured in full (nothing left to capture, whatever the amount) a 409 `payment_captured`:
    refund it instead. An `amount` in another currency than the payment's (a gift card's: the
    card's) is a 400 `currency_mismatch` naming `amount.currency`. A payment
    of an order is captured by the order itself (its confirmation, or a fulfilment's `shipped`
    or `picked_up` step, each its share): here it is a 409 `payment_managed_by_order`, so the
    order never captures it a second time nor waits on money already taken."""
    paid = await svc.payment.GetPayment(payment_pb2.GetPaymentRequest(id=payment_id))
    if paid.payment.order_id:
        raise Problem(
            409,
            "payment_managed_by_order",
            f"this payment is order {paid.payment.order_id}'s: the order captures it, each "
            "fulfilment its share",
            extra={"order_id": paid.payment.order_id},
        )
    capture = payment_pb2.CapturePaymentRequest(request_id=request_id(), payment_id=payment_id)
    if body.amount is not None:
        capture.amount.CopyFrom(body.amount.pb())
    async with guarded(request, "payment.captured", always=False) as done:
        answer = await svc.payment.CapturePayment(capture)
        done.resource = ("payment", payment_id)
    return to_model(Payment, answer.payment)


@router.post(
    "/payments/{payment_id}/void",
    **op("payments:write", "Void what is left of an authorisation", (404, *CREATE),
         example={**ex.PAYMENT, "status": "voided", "captured": ex.usd(0),
                  "voided": ex.usd(6040)}),
)  # fmt: skip
async def void_payment(payment_id: PathId, request: Request, svc: Svc) -> Payment:
    """Releases an authorisation nothing was captured of (the payment is then `voided`).
    A payment captured in full or in part (`captured`) is a 409 `payment_captured`: refund it
    instead; what an order never captures of it is voided by the order when the order ends.
    An order's tender only authorised may be voided, before or after the order's
    confirmation: the order then asks for another tender before its goods leave (409
    `payment_required` at the fulfilment's step). Before the order's confirmation the void
    holds the order as a refund does: its confirmation meanwhile is a 409
    `refund_in_progress`, the void during the confirmation a 409 `confirmation_in_progress`;
    after it, while a pickup or shipment is being handed over or shipped, a 409
    `fulfillment_in_progress`.
    At a register it takes the `void` permission or a manager's override, and is in the
    audit log."""
    async with guarded(request, "payment.voided", "void") as done:
        # The payment service refuses a captured payment's void itself (409 payment_captured),
        # under the payment's lock in the transaction that would void it, so a capture landing
        # meanwhile is seen. Only the order (its end) and the expiry sweep release the rest of
        # a payment captured in part (release_uncaptured_rest); the API never does. An order
        # waiting for payment is held meanwhile: its confirmation counts the void or refuses.
        async with _order_held(svc, await _order_of(svc, payment_id), before_confirmation=True):
            answer = await svc.payment.VoidPayment(
                payment_pb2.VoidPaymentRequest(request_id=request_id(), payment_id=payment_id)
            )
        done.resource = ("payment", payment_id)
    return to_model(Payment, answer.payment)


LINES_NEED_AN_AMOUNT = (
    "is required with lines: what to give back for those units (to give back what they were "
    "paid, return them: POST /v1/orders/{id}/returns, restock false for goods kept)"
)


class RefundLineIn(Body):
    sku: Sku
    quantity: int = Field(ge=1, le=10_000, json_schema_extra=INT64)


class RefundIn(Body):
    model_config = example(
        {
            "amount": {"amount": 2500, "currency": "USD"},
            "reason": "returned: wrong size",
            "lines": [{"sku": "TEE-BLK-M", "quantity": 1}],
        }
    )

    amount: AmountIn | None = Field(
        None,
        description="How much to give back; absent: all that is left to refund, which only a "
        "refund naming no `lines` may ask (with `lines` it is required: a 400 naming `amount`)",
    )
    reason: str = Field("", max_length=500)
    lines: list[RefundLineIn] = Field(
        default_factory=list,
        max_length=200,
        description="The order's units it is for (a price adjustment, a gesture on an item): "
        "SKUs of the payment's order, each at most what was sold less what its returns took "
        "back and earlier refunds listed (a 400 naming the line otherwise). Takes an `amount`: "
        "what is given back for them, at most what those units were paid after their "
        "discounts, with their tax, less what their returns and earlier refunds naming them "
        "gave back (a 400 naming `amount` otherwise; a SKU on several lines counts its "
        "dearest units kept). To give back what units were paid, return them "
        "(`POST /v1/orders/{id}/returns`, `restock: false` for goods the customer keeps)",
    )

    def amount_with_lines(self) -> None:
        """A refund naming units says how much it gives back for them: absent, the amount
        was all that is left, and a price adjustment of one unit gave the whole sale back.
        Refused before anything is read or held (the payment service refuses it too)."""
        if self.lines and self.amount is None:
            errors = [{"field": "amount", "reason": LINES_NEED_AN_AMOUNT}]
            raise Problem(400, "invalid_request", "the request is not valid", errors)

    def pb(self, payment_id: str = "", order_id: str = "") -> payment_pb2.CreateRefundRequest:
        request = payment_pb2.CreateRefundRequest(
            request_id=request_id(),
            payment_id=payment_id,
            order_id=order_id,
            reason=self.reason,
            lines=[payment_pb2.RefundLine(sku=x.sku, quantity=x.quantity) for x in self.lines],
            # Cash given back here leaves the asking register's drawer: only with a shift open.
            cash_needs_open_shift=True,
        )
        if self.amount is not None:
            request.amount.CopyFrom(self.amount.pb())
        return request


@asynccontextmanager
async def _order_held(
    svc: Services, order_id: str, before_confirmation: bool = False
) -> AsyncIterator[None]:
    """A refund naming units holds its order (order service) from the check of its lines to
    its end: a return or exchange of the order meanwhile, or another such refund, is a 409
    `refund_in_progress`, so no unit is paid back twice (once by each). No order: nothing.
    `before_confirmation`: any refund or void of one of its payments holds an order not yet
    confirmed, so its confirmation never counts money given back meanwhile (the order service
    holds nothing once it is confirmed; during its confirmation, a 409
    `confirmation_in_progress`)."""
    if not order_id:
        yield
        return
    held = order_pb2.HoldOrderForRefundRequest(
        request_id=request_id(), order_id=order_id, before_confirmation=before_confirmation
    )
    answer = await svc.order.HoldOrderForRefund(held)
    try:
        yield
    finally:
        if answer.held:
            await svc.order.ReleaseOrderForRefund(
                order_pb2.ReleaseOrderForRefundRequest(
                    request_id=held.request_id, order_id=order_id
                )
            )


async def _order_of(svc: Services, payment_id: str) -> str:
    paid = await svc.payment.GetPayment(payment_pb2.GetPaymentRequest(id=payment_id))
    return str(paid.payment.order_id)


async def _check_lines(
    svc: Services, lines: list[RefundLineIn], order_id: str, amount: AmountIn | None
) -> None:
    """A refund's `lines` name SKUs of the order, each at most what was sold less what its
    returns took back and its earlier refunds listed (a refund over several tenders lists
    its lines on each: counted once; a return's own refunds are counted as the return).
    The order, its returns and its refunds are read at once; a 400 names each line. Then its
    `amount` is at most what those units were paid, after their discounts, with their tax,
    less what their returns and earlier refunds naming them gave back (the order service
    says, `CheckRefundUnits`): more is a 400 naming `amount`."""
    if not order_id:
        errors = [{"field": "lines", "reason": "the payment belongs to no order"}]
        raise Problem(400, "invalid_request", "the request is not valid", errors)
    order, returns, refunds = await asyncio.gather(
        svc.order.GetOrder(order_pb2.GetOrderRequest(id=order_id)),
        order_returns(svc, order_id),
        _order_refunds(svc, order_id),
    )
    sold = Counter[str]()
    for ln in order.order.lines:
        if ln.sku:
            sold[ln.sku] += ln.quantity
    used = Counter[str]()
    of_returns = set()
    for r in returns:
        of_returns |= {x.refund_id for x in r.refunds}
        for rl in r.lines:
            used[rl.sku] += rl.quantity
    requests = set()
    for f in refunds:
        if f.id in of_returns or f.status == payment_pb2.REFUND_STATUS_FAILED:
            continue
        listed = tuple((x.sku, x.quantity) for x in f.lines)
        # The refunds of one request (one per tender) share its time, reason and lines.
        request = (f.created_at.ToNanoseconds(), f.reason, listed)
        if listed and request not in requests:
            requests.add(request)
            for sku, quantity in listed:
                used[sku] += quantity
    errors = []
    asked = Counter[str]()
    for i, ln in enumerate(lines):
        if sold[ln.sku] == 0:
            errors.append({"field": f"lines[{i}].sku", "reason": "is not a SKU of the order"})
            continue
        left = sold[ln.sku] - used[ln.sku] - asked[ln.sku]
        asked[ln.sku] += ln.quantity
        if ln.quantity > left:
            errors.append({
                "field": f"lines[{i}].quantity",
                "reason": f"must be at most {max(0, left)}: {sold[ln.sku]} sold, "
                f"{used[ln.sku]} already refunded or returned",
            })  # fmt: skip
    if errors:
        raise Problem(400, "invalid_request", "the request is not valid", errors)
    if amount is not None:
        await svc.order.CheckRefundUnits(
            order_pb2.CheckRefundUnitsRequest(
                order_id=order_id,
                lines=[payment_pb2.RefundLine(sku=x.sku, quantity=x.quantity) for x in lines],
                amount=amount.pb(),
            )
        )


async def _order_refunds(svc: Services, order_id: str) -> list[Any]:
    found: list[Any] = []
    token = ""
    while True:
        page = await svc.payment.ListRefunds(
            payment_pb2.ListRefundsRequest(order_id=order_id, page_size=200, page_token=token)
        )
        found += page.refunds
        token = page.next_page_token
        if not token:
            return found


def _refunded(refunds: Any) -> dict[str, Any]:
    return {
        "refunds": [
            {"id": r.id, "amount": r.amount.amount, "currency": r.amount.currency,
             "payment_id": r.payment_id}
            for r in refunds
        ]
    }  # fmt: skip


# The conflict a till meets first when it gives cash back: said on the route, with its example.
_CASH_CONFLICT = (
    "Conflict with the current state, or the same Idempotency-Key still running; among them "
    "`cash_refund_needs_open_shift`: the refund goes to a cash payment, and it is asked from "
    "the back office or at a register with no shift open (nothing is refunded)"
)


@router.post(
    "/payments/{payment_id}/refunds",
    **conflict_shown(
        op("payments:write", "Refund a payment", (404, *CREATE),
           example={"data": [ex.REFUND]}, status=201),
        _CASH_CONFLICT,
        ex.REFUND_CASH_NEEDS_OPEN_SHIFT,
    ),
)  # fmt: skip
async def refund_payment(
    payment_id: PathId, body: RefundIn, request: Request, svc: Svc
) -> RefundsCreated:
    """Gives money back to the tender it was taken on: a card back to the card, a gift card
    back to the gift card, cash out of the drawer. Never more than was captured net of earlier
    refunds, also when refunds race: beyond it is a 409 `amount_exceeds_refundable` (with
    `refundable`); nothing captured (voided, failed, only authorised) is a 409 `not_captured`.
    An `amount` in another currency than the payment's is a 400 `currency_mismatch` naming
    `amount.currency`.
    A refund the processor refuses is answered with `status: failed` and a `failure_code`.
    One with `lines` holds its order while it is made: a return or exchange of the order, or
    another refund with `lines`, at that moment is a 409 `refund_in_progress` (retry it).
    A refund of a payment of an order not yet confirmed holds the order while it is made:
    the order's confirmation at that moment is a 409 `refund_in_progress`, and the refund
    while the confirmation is under way a 409 `confirmation_in_progress` (retry either), so a
    confirmation never counts money given back meanwhile. So, once it is confirmed, does one
    of an order with a pickup or shipment not yet handed over or shipped: a hand-over
    (`picked_up`, `shipped`) meanwhile is a 409 `refund_in_progress`, and the refund while a
    hand-over is under way a 409 `fulfillment_in_progress` (retry either), so no goods leave
    with their money given back.
    At a register it takes the `refund` permission or a manager's override (403
    `permission_required`), and is in the audit log with both people.

    Cash given back leaves a register's drawer: a refund reaching a cash payment is made at
    a register with a shift open, and counts in that shift (its drawer then expects the cash
    gone). From the back office (a key that is no register's), or at a register with no
    shift open, it is a 409 `cash_refund_needs_open_shift` naming `amount`, and nothing is
    refunded; at a register whose open shift counts another currency than the payment's, a
    409 `shift_currency_mismatch` naming `amount.currency` (a drawer holds its shift's
    currency only). Refunds to cards, gift cards and other tenders need no register.

    `lines` take an `amount` (a 400 naming `amount` without one): see the order's refunds."""
    body.amount_with_lines()
    async with guarded(request, "refund", "refund") as done:
        order_id = await _order_of(svc, payment_id)
        async with _order_held(svc, order_id, before_confirmation=not body.lines):
            if body.lines:
                await _check_lines(svc, body.lines, order_id, body.amount)
            answer = await svc.payment.CreateRefund(body.pb(payment_id=payment_id))
        done.resource = ("payment", payment_id)
        done.details = _refunded(answer.refunds)
    return RefundsCreated.model_validate({"data": [to_json(r) for r in answer.refunds]})


@router.post(
    "/orders/{order_id}/refunds",
    **conflict_shown(
        op("payments:write", "Refund an order's tenders", (404, *CREATE),
           example={"data": [ex.REFUND]}, status=201),
        _CASH_CONFLICT,
        ex.REFUND_CASH_NEEDS_OPEN_SHIFT,
    ),
)  # fmt: skip
async def refund_order(
    order_id: PathId, body: RefundIn, request: Request, svc: Svc
) -> RefundsCreated:
    """Spreads the amount over the order's captured tenders from the last one taken
    backwards, each up to what it has left: one refund per tender, each to that tender. To
    name the amount of each tender, refund each payment instead. With no `amount`, all that
    is left is given back; a refund naming `lines` (a price adjustment, a gesture on an item)
    says how much it gives back for them, else it is a 400 naming `amount` and nothing is
    refunded (until 2026-12-05 it gave back all that was left, the whole sale for one unit).
    That amount is at most what the named units were paid (per line, after its discounts, with
    its tax), less what their returns and earlier refunds naming them gave back: more is a 400
    naming `amount` (with what it may be at most) and nothing is refunded (until 2026-12-05 it
    was made). To give back what units were paid, return them (`POST /v1/orders/{id}/returns`,
    `restock: false` for goods the customer keeps). Never more than the tenders
    captured net of earlier refunds, also when refunds race: beyond it is a 409
    `amount_exceeds_refundable` (with `refundable`); nothing captured (also an order with no
    payment yet) is a 409 `not_captured`. An `amount` in another currency than the order's
    payments' is a 400 `currency_mismatch` naming `amount.currency`.
    A refund the processor refuses is answered with `status: failed` and a `failure_code`.
    One with `lines` holds its order while it is made: a return or exchange of the order, or
    another refund with `lines`, at that moment is a 409 `refund_in_progress` (retry it).
    A refund of a payment of an order not yet confirmed holds the order while it is made:
    the order's confirmation at that moment is a 409 `refund_in_progress`, and the refund
    while the confirmation is under way a 409 `confirmation_in_progress` (retry either), so a
    confirmation never counts money given back meanwhile. So, once it is confirmed, does one
    of an order with a pickup or shipment not yet handed over or shipped: a hand-over
    (`picked_up`, `shipped`) meanwhile is a 409 `refund_in_progress`, and the refund while a
    hand-over is under way a 409 `fulfillment_in_progress` (retry either), so no goods leave
    with their money given back.
    At a register it takes the `refund` permission or a manager's override (403
    `permission_required`), and is in the audit log with both people.

    Cash given back leaves a register's drawer: a refund reaching a cash payment is made at
    a register with a shift open, and counts in that shift (its drawer then expects the cash
    gone). From the back office (a key that is no register's), or at a register with no
    shift open, it is a 409 `cash_refund_needs_open_shift` naming `amount`, and nothing is
    refunded; at a register whose open shift counts another currency than the payment's, a
    409 `shift_currency_mismatch` naming `amount.currency` (a drawer holds its shift's
    currency only). Refunds to cards, gift cards and other tenders need no register."""
    body.amount_with_lines()
    async with guarded(request, "refund", "refund") as done:
        try:
            async with _order_held(svc, order_id, before_confirmation=not body.lines):
                if body.lines:
                    await _check_lines(svc, body.lines, order_id, body.amount)
                answer = await svc.payment.CreateRefund(body.pb(order_id=order_id))
        except grpc.aio.AioRpcError as exc:
            if exc.code() is not grpc.StatusCode.NOT_FOUND:
                raise
            # The payment service knows no payment of it: a 404 only if there is no order
            # either (another merchant's too); one with no tender yet has nothing to give back.
            await svc.order.GetOrder(order_pb2.GetOrderRequest(id=order_id))
            raise Problem(
                409,
                "not_captured",
                f"nothing was captured for order {order_id}: no payment to refund",
            ) from None
        done.resource = ("order", order_id)
        done.details = _refunded(answer.refunds)
    return RefundsCreated.model_validate({"data": [to_json(r) for r in answer.refunds]})


# An order whose tenders may still change: what they hold now is what is paid.
BEFORE_CONFIRMATION = (order_pb2.ORDER_STATUS_DRAFT, order_pb2.ORDER_STATUS_PENDING_PAYMENT)


@router.get(
    "/orders/{order_id}/payments",
    **op("payments:read", "An order's tenders and its balance due", (404,),
         example=ex.ORDER_PAYMENTS),
)  # fmt: skip
async def order_payments(order_id: PathId, svc: Svc) -> OrderPayments:
    """Every tender taken for the order, with what they authorised, captured and refunded,
    and what is still due of the order's total (an exchange's new order: of its total less the
    returned goods' credit; less `cancelled_total`, the share of fulfilments cancelled or
    expired, which is not sold). Before the order is confirmed, money refunded is due again; after,
    a refund (a return, goodwill) owes nothing."""
    order = await svc.order.GetOrder(order_pb2.GetOrderRequest(id=order_id))
    due = order_pb2.Order().total
    due.CopyFrom(order.order.total)
    # An exchange's new order: the returned goods pay their credit, no tender does.
    due.amount -= order.order.exchange_credit.amount
    # Fulfilments cancelled on their own are not sold: their share is owed by no one.
    due.amount -= order.order.cancelled_total.amount
    try:
        answer = await svc.payment.GetOrderPayments(
            payment_pb2.GetOrderPaymentsRequest(order_id=order_id, order_total=due)
        )
    except grpc.aio.AioRpcError as exc:
        if exc.code() is not grpc.StatusCode.NOT_FOUND:
            raise
        # The order exists (it was just read): no tender was taken for it yet.
        zero = money_pb2.Money(amount=0, currency=due.currency)
        answer = payment_pb2.GetOrderPaymentsResponse(
            order_id=order_id, authorized=zero, captured=zero, refunded=zero, balance_due=due
        )
    status = order.order.status
    if status == order_pb2.ORDER_STATUS_CANCELLED:
        # Nothing is owed for an order that will not be fulfilled (its `balance_due` too).
        answer.balance_due.amount = 0
    elif status in BEFORE_CONFIRMATION:
        # Money given back before the order is confirmed is due again (cash handed back, a
        # refund through the payments API): what the tenders hold is what they authorised
        # (net of voids) less what they refunded, by the payment service's own count in this
        # answer. After the confirmation a refund is a return's or goodwill, and owes nothing.
        held = answer.authorized.amount - answer.refunded.amount
        answer.balance_due.amount = max(0, due.amount - held)
    return to_model(OrderPayments, answer)


@router.get("/refunds", **op("payments:read", "List refunds", (404,), example=ex.page(ex.REFUND)))
async def list_refunds(
    request: Request,
    svc: Svc,
    limit: Limit = 50,
    cursor: Cursor = None,
    updated_since: UpdatedSince = None,
    payment_id: Annotated[
        QueryId | None,
        Query(description="Only this payment's; one you do not have is a 404 problem"),
    ] = None,
    order_id: Annotated[QueryId | None, Query(description=UNKNOWN_ORDER)] = None,
    location_id: Annotated[
        QueryId | None,
        Query(description="Only refunds of payments taken there. " + UNKNOWN_LOCATION),
    ] = None,
    created_since: CreatedSince = None,
    created_before: CreatedBefore = None,
) -> RefundList:
    """By id, or with `updated_since` the change feed (oldest change first). Each filter
    narrows the list (`created_since` and `created_before` together: a day's or a shift's
    refunds, the second after the first, else a 400 naming `created_before`)."""
    if location_id:
        await location_of(svc, location_id)
    await named_here(request, svc, payment_id=payment_id, order_id=order_id)
    ask = payment_pb2.ListRefundsRequest(
        page_size=limit,
        page_token=cursor or "",
        payment_id=payment_id or "",
        order_id=order_id or "",
        location_id=location_id or "",
    )
    if updated_since is not None:
        ask.updated_since.CopyFrom(timestamp(updated_since))
    created_window(ask, created_since, created_before)
    answer = await svc.payment.ListRefunds(ask)
    return to_page(RefundList, answer.refunds, answer.next_page_token)


@router.get(
    "/refunds/{refund_id}", **op("payments:read", "Get a refund", (404,), example=ex.REFUND)
)
async def get_refund(refund_id: PathId, svc: Svc) -> Refund:
    answer = await svc.payment.GetRefund(payment_pb2.GetRefundRequest(id=refund_id))
    return to_model(Refund, answer.refund)


class TerminalCheckoutIn(Body):
    model_config = example(
        {
            "location_id": ex.LOCATION_ID,
            "device_id": "sandbox_reader_approve",
            "amount": {"amount": 6040, "currency": "USD"},
            "tip": {"amount": 500, "currency": "USD"},
            "reference": "register 2 sale 1187",
        }
    )

    location_id: str = Field(min_length=1, max_length=64, description=LOCATION_OF_YOURS)
    device_id: str = Field(
        min_length=1,
        max_length=64,
        description="The reader: in the sandbox `sandbox_reader_approve`, "
        "`sandbox_reader_decline`, `sandbox_reader_cancel` (cancelled at the reader) or "
        "`sandbox_reader_timeout` (never answers)",
    )
    amount: AmountIn
    tip: MoneyIn | None = Field(None, description="In the amount's currency")
    reference: Annotated[str, Field(min_length=1, max_length=128), NotBlank]


@router.post(
    "/terminal-checkouts",
    **op("payments:write", "Send a payment to a card reader", (404, *CREATE),
         example=ex.TERMINAL_CHECKOUT, status=201, sells=True),
)  # fmt: skip
async def create_terminal_checkout(body: TerminalCheckoutIn, svc: Svc) -> TerminalCheckout:
    """The card-present flow: the checkout is `pending` until the reader answers, which takes
    as long as the customer takes. Poll it, or listen for its outcome: the
    `terminal_checkout.updated` event, and the payment's own `payment.captured` or
    `payment.failed`. A reader that has not answered by `deadline` is cancelled (`timed_out`).
    The amount is in the location's currency (else a 400 `currency_mismatch`: the location's
    settlement report, in its currency, would leave the payment out). The amount and the tip
    together, what the reader charges, are at most 10^12 minor units like any amount (else a
    400 naming `tip.amount`), and a `reference` of spaces only is a 400 naming it. A location
    the merchant closed (`status: inactive`) is a 409 `location_inactive`. Sent from a
    register, the payment the reader takes is that register's, whoever records its answer:
    it counts in the shift open there when the card is charged."""
    location = await open_location_of(svc, body.location_id, "location_id")
    in_its_currency(location, body.amount.currency)
    request = payment_pb2.CreateTerminalCheckoutRequest(
        request_id=request_id(),
        reference=body.reference,
        location_id=body.location_id,
        device_id=body.device_id,
        amount=body.amount.pb(),
    )
    if body.tip is not None:
        request.tip.CopyFrom(body.tip.pb())
    answer = await svc.payment.CreateTerminalCheckout(request)
    return to_model(TerminalCheckout, answer.checkout)


@router.get(
    "/terminal-checkouts/{checkout_id}",
    **op("payments:read", "Get a terminal checkout", (404,), example=ex.TERMINAL_CHECKOUT),
)
async def get_terminal_checkout(checkout_id: PathId, svc: Svc) -> TerminalCheckout:
    answer = await svc.payment.GetTerminalCheckout(
        payment_pb2.GetTerminalCheckoutRequest(id=checkout_id)
    )
    return to_model(TerminalCheckout, answer.checkout)


@router.post(
    "/terminal-checkouts/{checkout_id}/cancel",
    **op("payments:write", "Cancel a pending terminal checkout", (404, *CREATE),
         example={**ex.TERMINAL_CHECKOUT, "status": "cancelled", "payment_id": ""}, sells=True),
)  # fmt: skip
async def cancel_terminal_checkout(checkout_id: PathId, svc: Svc) -> TerminalCheckout:
    """From the register, while the checkout is `pending`. The reader has the last word: a
    customer who paid a moment before is `completed`, and that is the answer. One cancelled
    already (by another cancel, at once or earlier, or at the reader) answers the same way
    every time: 200, `cancelled`. One that ended otherwise (`completed`, `declined`,
    `timed_out`) is a 409 `terminal_checkout_final`."""
    answer = await svc.payment.CancelTerminalCheckout(
        payment_pb2.CancelTerminalCheckoutRequest(request_id=request_id(), id=checkout_id)
    )
    return to_model(TerminalCheckout, answer.checkout)


class PaymentSettingsIn(Body):
    model_config = example({"authorization_window_seconds": 259200})

    authorization_window_seconds: int = Field(
        ge=60,
        le=31 * 24 * 3600,
        json_schema_extra=INT64,
        description="60 seconds to 31 days; applies to authorisations taken from now on",
    )


@router.get(
    "/payment-settings",
    **op("payments:read", "Get your payment settings", example=ex.PAYMENT_SETTINGS),
)
async def get_payment_settings(svc: Svc, response: Response) -> PaymentSettings:
    """Your settings, or the defaults (7 days; 1 hour in the sandbox) where you set none
    (version 1). The ETag is the version, for `If-Match` on a change."""
    answer = await svc.payment.GetPaymentSettings(payment_pb2.GetPaymentSettingsRequest())
    response.headers["ETag"] = f'"{answer.settings.version}"'
    return to_model(PaymentSettings, answer.settings)


def _window(settings: payment_pb2.PaymentSettings) -> dict[str, int]:
    return {"authorization_window_seconds": settings.authorization_window_seconds}


async def change_payment_settings(
    request: Request,
    svc: Services,
    window_seconds: int,
    version: int,
    key: str,
    *,
    second: bool = False,
) -> payment_pb2.UpdatePaymentSettingsResponse:
    """Set the authorisation window (from here or from the order settings), with its audit
    entry `settings.payments_changed` when it changed: the settings it left, and those it
    replaced. `second`: the request's second change of the window (the order settings
    setting back the one their failed change set), with an entry of its own."""
    entry_key = key if second else None
    async with guarded(
        request, "settings.payments_changed", entry_key=entry_key, settings="the payment settings"
    ) as done:
        answer: payment_pb2.UpdatePaymentSettingsResponse = await version_checked(
            svc.payment.UpdatePaymentSettings(
                payment_pb2.UpdatePaymentSettingsRequest(
                    request_id=key,
                    authorization_window_seconds=window_seconds,
                    expected_version=version,
                )
            )
        )
        settings_changed(
            done, _window(answer.previous), _window(answer.settings), answer.settings.version
        )
    return answer


@router.put(
    "/payment-settings",
    **op("payments:write", "Change your payment settings", (412,),
         example={**ex.PAYMENT_SETTINGS, "version": 3}),
)  # fmt: skip
async def put_payment_settings(
    body: PaymentSettingsIn,
    request: Request,
    response: Response,
    svc: Svc,
    if_match: IfMatch = None,
) -> PaymentSettings:
    """A change bumps `version` and is in the audit log (`settings.payments_changed`); the
    same window again changes nothing. Send `If-Match: "<version>"` to change only the version
    you saw: a stale one is a 412 `version_mismatch` with `current_version`. The order
    settings show the window too: a change of it moves their version on as well. A register's
    credential is refused (403 `insufficient_scope`): settings are the back office's."""
    # Refused before the lease is asked for: a register's request waits on no service.
    back_office_only(request, "the payment settings")
    # Under the order settings' lease: a change of those (which show the window) checks its
    # version and writes both parts with no change of the window in between.
    async with settings_leased(svc):
        answer = await change_payment_settings(
            request,
            svc,
            body.authorization_window_seconds,
            expected_version(if_match),
            request_id(),
        )
    settings = answer.settings
    response.headers["ETag"] = f'"{settings.version}"'
    return to_model(PaymentSettings, settings)
