"""Itemized returns of an order: /v1/orders/{id}/returns."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import grpc
from fastapi import APIRouter, Depends, Query, Request
from pydantic import Field

from pos.inventory.v1 import inventory_pb2
from pos.order.v1 import order_pb2
from pos.payment.v1 import payment_pb2
from pos_gateway import examples as ex
from pos_gateway.actions import guarded, permission_refused, principal_of
from pos_gateway.auth import not_for_a_register
from pos_gateway.clients import Services
from pos_gateway.convert import to_model, to_page
from pos_gateway.problems import Problem, from_rpc_error
from pos_gateway.routes.common import (
    CREATE,
    INT64,
    Body,
    CreatedBefore,
    CreatedSince,
    Cursor,
    Limit,
    MoneyIn,
    PathId,
    QueryId,
    Sku,
    UpdatedSince,
    conflict_shown,
    created_window,
    example,
    known_register,
    known_staff,
    op,
    request_id,
    services,
    timestamp,
)
from pos_gateway.routes.gift_cards import spend_code_budget
from pos_gateway.routes.orders import (
    ENTERED,
    TenderIn,
    below_cost_guards,
    entered_pb,
    tender_into,
)
from pos_gateway.routes.settlement import location_of
from pos_gateway.schemas.orders import Order
from pos_gateway.schemas.payments import Payment
from pos_gateway.schemas.returns import (
    Exchange,
    ReceiptlessReturn,
    Return,
    ReturnList,
    StoreCredit,
)

router = APIRouter(prefix="/v1", tags=["orders and payments"])
Svc = Annotated[Services, Depends(services)]


class ReturnLineIn(Body):
    line_id: str = Field(
        min_length=1, max_length=32, description="The order line (`L<n>`)", examples=["L1"]
    )
    quantity: int = Field(ge=1, le=10_000, json_schema_extra=INT64)
    restock: bool = Field(
        True, description="Back to stock at `location_id` (true), or not: damaged, say"
    )
    location_id: str = Field(
        "",
        max_length=64,
        description="The store taking the units back, which may not be the one that sold them; "
        "empty: the order's (in an exchange: the exchange's `location_id`). One you do not "
        "have is a 404",
    )


def _audited(ret: order_pb2.Return, override_reason: str) -> dict[str, Any]:
    """A return's audit details: the return, what went back to each tender, the override."""
    details: dict[str, Any] = {
        "return_id": ret.id,
        "amount": ret.amount.amount,
        "currency": ret.amount.currency,
        "refunds": [
            {"id": r.refund_id, "amount": r.amount.amount, "currency": r.amount.currency,
             "payment_id": r.payment_id}
            for r in ret.refunds
        ],
    }  # fmt: skip
    if override_reason:
        details["override_reason"] = override_reason
    return details


def _return_lines(lines: list[ReturnLineIn]) -> list[order_pb2.ReturnLineRequest]:
    return [
        order_pb2.ReturnLineRequest(
            line_id=ln.line_id, quantity=ln.quantity, restock=ln.restock, location_id=ln.location_id
        )
        for ln in lines
    ]


ReasonCode = Annotated[
    str,
    Field(
        min_length=1,
        max_length=50,
        pattern=r"^[a-z][a-z0-9_]{0,49}$",
        description="Why, as a lower-case code: damaged, wrong_size, unwanted, ...",
    ),
]
OverrideReason = Annotated[
    str,
    Field(
        max_length=500,
        description="Required past the return window (the order settings'); not blank, kept "
        "trimmed",
    ),
]


class TenderAmountIn(Body):
    payment_id: str = Field(min_length=1, max_length=64)
    amount: MoneyIn


class ReturnIn(Body):
    model_config = example(
        {
            "lines": [{"line_id": "L1", "quantity": 1, "restock": True}],
            "reason": "wrong_size",
        }
    )

    lines: list[ReturnLineIn] = Field(min_length=1, max_length=200)
    reason: ReasonCode
    override_reason: OverrideReason = ""
    tender_amounts: list[TenderAmountIn] = Field(
        default_factory=list,
        max_length=50,
        description="How much goes back to each of the order's payments, adding up to the "
        "refund; empty: from the last payment taken backwards",
    )


async def _order_store_takes_back(svc: Services, order_id: str, lines: list[ReturnLineIn]) -> None:
    """Units restocked with no `location_id` of their own go back to the order's store: one
    the merchant closed (`status: inactive`) receives none, as a store named on the line does
    not. A 409 `location_inactive` naming each such line's `location_id` (the field that would
    send its units to an open store), before anything is claimed. Lines that are not the
    order's, or are its gift cards (never restocked), are left to the order service's own
    rules."""
    if not any(ln.restock and not ln.location_id for ln in lines):
        return
    order = (await svc.order.GetOrder(order_pb2.GetOrderRequest(id=order_id))).order
    stocked = {ln.id for ln in order.lines if not ln.HasField("gift_card")}
    fields = [f"lines[{i}].location_id" for i, ln in enumerate(lines)
              if ln.restock and not ln.location_id and ln.line_id in stocked]  # fmt: skip
    if not fields or not order.location_id:
        return
    store = await location_of(svc, order.location_id)
    if store.status == inventory_pb2.LOCATION_STATUS_INACTIVE:
        raise Problem(
            409,
            "location_inactive",
            f"location {store.id!r}, the order's, is inactive: it no longer receives stock; "
            "name an open store on the line (`location_id`), or do not restock it",
            [{"field": f, "reason": "the order's location is inactive"} for f in fields],
            extra={"location_id": store.id},
        )


# The conflict a till meets first when it refunds cash: said on the route, with its example.
_create_return_op = conflict_shown(
    op("orders:write", "Return units of an order", (404, *CREATE), example=ex.RETURN, status=201),
    "Conflict with the current state, or the same Idempotency-Key still running; among them "
    "`cash_refund_needs_open_shift`: the refund goes to a cash payment, and the return is made "
    "from the back office or at a register with no shift open (nothing is done)",
    ex.CASH_REFUND_NEEDS_OPEN_SHIFT,
)


@router.post("/orders/{order_id}/returns", **_create_return_op)
async def create_return(order_id: PathId, body: ReturnIn, request: Request, svc: Svc) -> Return:
    """Takes back units of the order's lines and refunds them to the tenders they were paid with:
    each unit's share of what its line paid after every discount, with its tax, so all the returns
    of a line together refund exactly what it paid, never more. Restocked units go back to stock at
    `location_id`, once (a store the merchant closed, `status: inactive`, receives none: a 409
    `location_inactive` naming `lines[i].location_id`, also for a line restocked at the order's
    own store, by naming none, when that one is closed). The order's status does not change;
    `order.returned` follows (the return and the order). Rules (each a 400 naming the field): a line
    of this order, handed over, at most the units not returned yet (earlier returns count); a gift
    card line only while none of its balance was spent (its card is deactivated and its value
    refunded; a card spent or loaded as the return is made is a 409 `gift_card_balance_changed` and
    nothing is done); `tender_amounts` add up to the refund, each a payment of the order and at most
    what it has left, in the order's currency. Past the return window an `override_reason` is needed
    (409 `return_window_closed` naming it; one of spaces only is a 400 naming it; kept trimmed).
    Units a refund named (its `lines`: a price adjustment) are refunded less what it gave back for
    them. After refunds made outside the returns, a return worth more than the payments still hold
    is a 409 `amount_exceeds_refundable` (with `refundable`, naming `lines`), except the one that
    brings the order's last units back: it refunds what is left (units of a return still being
    made, an exchange whose payment is pending, are not back until it is done). Concurrent
    returns of the same lines are taken one at a time; one made while a refund with `lines` of
    the order is under way is a 409 `refund_in_progress` (retry it), and one asking for units
    another return is still taking back (it may yet fail and leave them) a 409
    `return_in_progress` naming `lines[i].quantity` (retry it once that one is done). At a
    register it takes the `refund` permission or a manager's override (403
    `permission_required`), and is in the audit log (`return`) with both people, its refunds and
    any `override_reason`.

    Cash given back leaves a register's drawer: a return whose refund goes to a cash payment
    is taken at a register with a shift open (that drawer's count then expects the cash
    gone). From the back office (a key that is no register's), or at a register with no shift
    open, it is a 409 `cash_refund_needs_open_shift` naming `tender_amounts` (the refund spread
    over the tenders reaches the cash payment) or `tender_amounts[i].payment_id` (the entry
    naming it), and nothing is done: no return, no restock, no refund. Take it at the
    register, or send the refund to the order's other payments with `tender_amounts`. Refunds
    to cards, gift cards and other tenders need no register. The return keeps the register,
    member and shift it was taken at (`register_id`, `staff_id`, `shift_id`): a refund
    finished later (a retry, or the service itself after a crash) is still that register's,
    and its cash counts in the shift open there when it is paid: the return's own, or, closed
    meanwhile, the register's next one (a closed shift's count is never reopened)."""
    ask = order_pb2.CreateReturnRequest(
        request_id=request_id(),
        order_id=order_id,
        lines=_return_lines(body.lines),
        reason=body.reason,
        override_reason=body.override_reason,
        tender_amounts=[
            payment_pb2.TenderAmount(payment_id=t.payment_id, amount=t.amount.pb())
            for t in body.tender_amounts
        ],
    )
    async with guarded(request, "return", "refund") as done:
        await _order_store_takes_back(svc, order_id, body.lines)
        answer = await svc.order.CreateReturn(ask)
        done.resource = ("order", order_id)
        done.details = _audited(answer.order_return, answer.order_return.override_reason)
    return to_model(Return, answer.order_return)


class ExchangeLineIn(Body):
    sku: Sku
    quantity: int = Field(ge=1, le=10_000, json_schema_extra=INT64)
    location_id: str = Field(
        "",
        max_length=64,
        description="The store the units leave from (sold in store there); empty: the "
        "exchange's `location_id`. One you do not have is a 404",
    )
    unit_price: MoneyIn | None = Field(None, description=ENTERED)


class ExchangeIn(Body):
    model_config = example(
        {
            "lines": [{"line_id": "L1", "quantity": 1, "restock": True}],
            "new_lines": [{"sku": "TEE-BLK-L", "quantity": 1}],
            "reason": "wrong_size",
            "tenders": [{"tender_type": "card", "card_token": "tok_visa"}],
        }
    )

    lines: list[ReturnLineIn] = Field(
        min_length=1, max_length=200, description="The units returned, exactly as a return's"
    )
    new_lines: list[ExchangeLineIn] = Field(
        min_length=1,
        max_length=200,
        description="What is sold instead, priced as a checkout (promotions, tax at the store)",
    )
    reason: ReasonCode
    override_reason: OverrideReason = ""
    tenders: list[TenderIn] = Field(
        default_factory=list,
        max_length=5,
        description="How the difference is paid when the new lines cost more than the returned "
        "units (required then: a 400 naming `tenders` otherwise), captured at once; an "
        "`amount` absent on the last only (what is left of the difference); ignored when "
        "nothing is due",
    )
    location_id: str = Field(
        "",
        max_length=64,
        description="The store making the exchange: the new lines are sold there, and the "
        "returned units go back to stock there unless a line names its own `location_id`; "
        "empty: the order's. One you do not have is a 404",
    )


_create_exchange_op = conflict_shown(
    op(
        "orders:write",
        "Exchange units of an order for new lines",
        (402, 404, *CREATE),
        example=ex.EXCHANGE,
        status=201,
    ),
    "Conflict with the current state, or the same Idempotency-Key still running; among them "
    "`cash_refund_needs_open_shift`: the difference goes back to a cash payment, and the "
    "exchange is made from the back office or at a register with no shift open (nothing is "
    "done)",
    ex.EXCHANGE_CASH_NEEDS_OPEN_SHIFT,
)


@router.post("/orders/{order_id}/exchanges", **_create_exchange_op)
async def create_exchange(
    order_id: PathId, body: ExchangeIn, request: Request, svc: Svc
) -> Exchange:
    """Returns units of the order and sells `new_lines` in one operation, moving only the
    difference. The returned units are valued as a return values them (`order_return.amount`:
    what was paid for them after every discount, with their tax); the new lines are priced as a
    checkout prices them, into a new order (`order.exchange_of` names this one). The returned
    value pays for the new order first (`order_return.credited`, `order.exchange_credit`);
    the difference (the new total less the returned value) above zero is taken with `tenders`
    (captured at once, on the new order: `charged`), below zero it is refunded to this order's
    tenders from the last one taken backwards (`refunded`, `order_return.refunds`); an even
    exchange moves no money.

    The new lines' stock is held before anything is refunded: short stock is a 409
    `insufficient_stock` and the new order is withdrawn (neither kept nor announced, as a
    refused `POST /v1/orders`), a declined tender a 402 `payment_declined` whose problem carries the
    new `order` (`cancelled`) and the declined `payment`, and then nothing is charged,
    refunded or restocked; so with a gift card that cannot pay (a 409 `gift_card_inactive`
    naming `tenders[i].gift_card_code`, `insufficient_funds` naming `tenders[i].amount.amount`)
    or a code no card has (a 404 `resource_missing` naming `tenders[i].gift_card_code`).
    Once the new order is sold the refund and the restock follow; a failure after that is
    finished by a retry with the same `Idempotency-Key`, or by the service itself. The
    return rules are a return's (400 naming the field; past the window a 409
    `return_window_closed` without `override_reason`);
    an unknown SKU in `new_lines` is a 400 naming it, and a new line's `unit_price` is taken
    as a checkout's line takes it (required for an open-price product, a 400 naming it for
    any other). `order.returned` follows for the return;
    the new order sends its usual events (`order.created` once its stock is held,
    `order.confirmed`, `order.completed`).

    At a register, an exchange that gives money back (`refunded` above zero) or carries an
    `override_reason` takes the `refund` permission or a manager's override (403
    `permission_required`, nothing changed); an even exchange or one the customer pays up
    does not, and leaves a manager's waiting override for the action it was given for. Every
    exchange is in the audit log (`exchange`) with who made it, its refunds and any
    `override_reason`. A new line whose entered `unit_price` leaves it below its product's
    unit cost takes the `sell_below_cost` permission or a manager's override, as a checkout's
    line does: a 403 `permission_required` naming `sell_below_cost` and the line
    (`new_lines[i]`), nothing done; allowed, the audit log has it (`sell_below_cost`, naming
    the new order).

    A difference given back to a cash payment leaves a register's drawer, as a return's cash
    refund does: such an exchange is made at a register with a shift open (that drawer's
    count then expects the cash gone). From the back office, or at a register with no shift
    open, it is a 409 `cash_refund_needs_open_shift` naming `new_lines` (they cost less than
    the returned units), and nothing is done: no return, no new order, nothing held,
    refunded or restocked. An even exchange, one the customer pays up, and one whose
    difference goes back to cards, gift cards or other tenders need no register. The return
    keeps the register, member and shift it was made at (`order_return.register_id`,
    `staff_id`, `shift_id`): a refund finished later (a retry, or the service itself after a
    crash) counts its cash in the shift open at that register when it is paid. A difference
    due taken in cash goes in the register's drawer, as a cash checkout's: at a register with
    no shift open it is a 409 `cash_needs_open_shift` naming the cash tender's
    `tenders[i].tender_type`, and nothing is done (from the back office cash is taken as
    before)."""
    ask = order_pb2.CreateExchangeRequest(
        request_id=request_id(),
        order_id=order_id,
        lines=_return_lines(body.lines),
        new_lines=[
            order_pb2.ExchangeLine(
                sku=ln.sku,
                quantity=ln.quantity,
                location_id=ln.location_id,
                unit_price=entered_pb(ln.unit_price),
            )
            for ln in body.new_lines
        ],
        reason=body.reason,
        override_reason=body.override_reason,
        location_id=body.location_id,
    )
    for t in body.tenders:
        if t.gift_card_code:
            await spend_code_budget(request)  # as the tender route does
        tender_into(ask.tenders.add(), t)
    # Only an entered price is given by hand on a new line: the order service judges whether
    # it sells below cost, as a checkout's.
    entered = any(ln.unit_price is not None for ln in body.new_lines)
    async with (
        below_cost_guards(request, entered) as approvals,
        guarded(request, "exchange", "refund", required=False) as done,
    ):
        if not done.permitted and body.override_reason.strip():
            raise permission_refused("refund")
        # The order service refuses the exchange if it would give money back.
        ask.refund_not_permitted = not done.permitted
        approvals.ask(ask)
        try:
            answer = await svc.order.CreateExchange(ask)
        except grpc.aio.AioRpcError as exc:
            problem = from_rpc_error(exc)
            if problem.code != "payment_declined":
                raise
            raise await _declined(svc, problem) from None
        done.needed = answer.refunded.amount > 0 or bool(answer.order_return.override_reason)
        done.resource = ("order", order_id)
        done.details = {
            **_audited(answer.order_return, answer.order_return.override_reason),
            "order_id": answer.order.id,
            "charged": answer.charged.amount,
            "refunded": answer.refunded.amount,
        }
        approvals.answered(answer.order.id, answer.sold_below_cost)
    return to_model(Exchange, answer)


async def _declined(svc: Services, problem: Problem) -> Problem:
    """A decline is a 402 on every route that takes a tender (the checkout's, a tender's),
    carrying the order (here the exchange's new one, cancelled) and the declined payment."""
    ids = problem.extra or {}
    order_id, payment_id = ids.get("order_id"), ids.get("payment_id")
    if not order_id or not payment_id:
        return Problem(402, problem.code, problem.detail)
    order = await svc.order.GetOrder(order_pb2.GetOrderRequest(id=order_id))
    payment = await svc.payment.GetPayment(payment_pb2.GetPaymentRequest(id=payment_id))
    declined = {
        "order": to_model(Order, order.order).model_dump(mode="json"),
        "payment": to_model(Payment, payment.payment).model_dump(mode="json"),
    }
    return Problem(402, problem.code, problem.detail, extra=declined)


@router.get(
    "/orders/{order_id}/returns",
    **op("orders:read", "List an order's returns", (404,), example=ex.page(ex.RETURN)),
)
async def list_returns(
    order_id: PathId,
    svc: Svc,
    limit: Limit = 50,
    cursor: Cursor = None,
    updated_since: UpdatedSince = None,
) -> ReturnList:
    """The order's returns (its exchanges' included) by id, oldest first, a page at a time
    (`next_cursor` null on the last); or with `updated_since` the order's change feed, as
    `GET /v1/returns` has it (oldest change first: a return completed or settled moves to its
    end), polled again from the last `updated_at` seen without missing one. A cursor is good
    for this order's list, read the same way, only: another's is a 400 naming `cursor`."""
    ask = order_pb2.ListReturnsRequest(order_id=order_id, page_size=limit, page_token=cursor or "")
    if updated_since is not None:
        ask.updated_since.CopyFrom(timestamp(updated_since))
    answer = await svc.order.ListReturns(ask)
    return to_page(ReturnList, answer.returns, answer.next_page_token)


@router.get(
    "/returns",
    **op("orders:read", "List returns", (404,), example=ex.page(ex.RETURN)),
)
async def list_all_returns(
    svc: Svc,
    request: Request,
    limit: Limit = 50,
    cursor: Cursor = None,
    status: Annotated[
        Literal["pending", "completed"] | None, Query(description="Only returns in this status")
    ] = None,
    register_id: Annotated[
        QueryId | None, Query(description="Only the returns taken at this register")
    ] = None,
    staff_id: Annotated[
        QueryId | None, Query(description="Only the returns taken by this staff member")
    ] = None,
    created_since: CreatedSince = None,
    created_before: CreatedBefore = None,
    updated_since: UpdatedSince = None,
) -> ReturnList:
    """Every return of the merchant by id, oldest first: those of orders, exchanges' and those
    without a receipt (`order_id` empty); or with `updated_since` the change feed (oldest
    change first: a return completed or settled moves to its end), polled again from the last
    `updated_at` seen without missing one. Each filter narrows the list (`created_since` and
    `created_before` together: a day's or a shift's returns, the second after the first, else
    a 400); a cursor pages on only with the filters it was given with. A register or staff
    member you do not have (another merchant's included) is a 404 `resource_missing` problem.
    `pending` returns are still refunding or restocking, or wait for a person to settle a
    refund refused for good (`refusal_code`). Back office only: a register's credential is
    refused (403 `insufficient_scope`), as every store's returns are in it; a till reads an
    order's returns through the order."""
    if principal_of(request).register_id is not None:
        raise not_for_a_register(
            request, "a register's credential cannot list every store's returns"
        )
    if register_id:
        await known_register(request, register_id)
    if staff_id:
        await known_staff(request, staff_id)
    ask = order_pb2.ListReturnsRequest(
        page_size=limit,
        page_token=cursor or "",
        status=status or "",
        register_id=register_id or "",
        staff_id=staff_id or "",
    )
    if updated_since is not None:
        ask.updated_since.CopyFrom(timestamp(updated_since))
    created_window(ask, created_since, created_before)
    answer = await svc.order.ListReturns(ask)
    return to_page(ReturnList, answer.returns, answer.next_page_token)


@router.get(
    "/returns/{return_id}",
    **op("orders:read", "Get a return", (404,), example=ex.RETURN),
)
async def get_return(return_id: PathId, svc: Svc) -> Return:
    """Any return of the merchant by its id: an order's (as its list has it), an exchange's,
    or one without a receipt (`POST /v1/returns`: `order_id` empty, `customer_id` and
    `store_credit_gift_card_id` set; its card's code is never shown again). Another
    merchant's return is a 404, the same as one that does not exist; so is, for a register's
    credential, a return of another store (of an order neither sold nor fulfilled at the
    register's location, with no units restocked there)."""
    answer = await svc.order.GetReturn(order_pb2.GetReturnRequest(id=return_id))
    return to_model(Return, answer.order_return)


_OUTCOMES = {
    "paid_out_of_band": order_pb2.SETTLEMENT_OUTCOME_PAID_OUT_OF_BAND,
    "refused": order_pb2.SETTLEMENT_OUTCOME_REFUSED,
}
_OUT_OF_BAND = {
    "cash": payment_pb2.TENDER_TYPE_CASH,
    "external": payment_pb2.TENDER_TYPE_EXTERNAL,
    "unspecified": payment_pb2.TENDER_TYPE_UNSPECIFIED,
}


class SettleIn(Body):
    model_config = example(
        {
            "outcome": "paid_out_of_band",
            "tender_type": "cash",
            "reference": "till 2, receipt 4471",
            "reason": "the card was closed: refunded in cash",
        }
    )

    outcome: Literal["paid_out_of_band", "refused"] = Field(
        description="`paid_out_of_band`: what the processor did not refund was paid another "
        "way (`tender_type`); `refused`: it is not paid, and the return is closed without it"
    )
    tender_type: Literal["cash", "external"] | None = Field(
        None,
        description="Paid out of band: cash (from the till; settled at a register with an open "
        "shift, that drawer's pay-out) or external (a transfer, a cheque); required then, and "
        "only then (a 400 naming it otherwise)",
    )
    reference: str = Field(
        "", max_length=128, description="Paid out of band: the till's receipt, a transfer's id"
    )
    reason: str = Field(min_length=1, max_length=500, description="Why it is settled this way")


@router.post(
    "/orders/{order_id}/returns/{return_id}/settle",
    **op(
        "orders:write",
        "Settle a return whose refund was refused",
        (404, *CREATE),
        example=ex.RETURN_SETTLED,
    ),
)
async def settle_return(
    order_id: PathId, return_id: PathId, body: SettleIn, request: Request, svc: Svc
) -> Return:
    """A return whose refund the payment processor (or the payment service) refused for good
    waits `pending` with a `refusal_code`, and nothing retries it: a person settles it here.
    `paid_out_of_band`: the part of the refund not paid (`settlement.amount`: the return's
    refund less the refunds that went through) was paid another way, `tender_type` `cash`
    (from a drawer) or `external` (a transfer, a cheque), with its `reference`; `refused`: it
    is not paid. Either way the return is `completed` with its `settlement` (how, how much,
    `reason`, and who: the member signed in at the register or the key), its units are
    restocked as the return asked, and `order.returned` follows; nothing is asked of the
    payment processor.

    Paid out of band, the money is recorded on the order's payments it was to go back to
    (their `paid_out_of_band`): no later refund of the order or of those payments gives it
    back a second time (a 409 `amount_exceeds_refundable`). When those payments no longer hold
    it (a refund made outside the return, through the refunds routes, gave it back meanwhile),
    it is a 409 `amount_exceeds_refundable` with `refundable` (what they still hold) and
    nothing is recorded: paying it out too would pay the customer twice; settle it `refused`.
    Cash settled at a register with an open shift is a pay-out
    of that shift's drawer (its reason names the return), so the drawer's expected cash
    counts it; cash settled anywhere else (the back office, a register with no shift open)
    moves no drawer: record the pay-out on the shift it came from
    (`POST /v1/shifts/{shift_id}/drawer-movements`). Retried, nothing is recorded twice.

    A refund of the return still pending at the processor is a 409 `refund_pending` (with
    `return_id` and `refund_ids`), and nothing is settled: what is unpaid is not known until
    the processor answers (the payment service's reconciler asks it); settle it then. A
    return still under way is a 409 `return_not_refused` (it completes on its own), a
    completed one a 409 `return_completed`. At a register it takes the `refund` permission or
    a manager's override (403 `permission_required`); every settlement is in the audit log
    (`return.settled`) with who and why. Another merchant's order or return is a 404."""
    principal = principal_of(request)
    settle = order_pb2.SettleReturnRequest(
        request_id=request_id(),
        order_id=order_id,
        return_id=return_id,
        outcome=_OUTCOMES[body.outcome],
        tender_type=_OUT_OF_BAND[body.tender_type or "unspecified"],
        reference=body.reference,
        reason=body.reason,
        settled_by=principal.staff_id or f"key:{principal.key_id}",
    )
    async with guarded(request, "return.settled", "refund") as done:
        answer = await svc.order.SettleReturn(settle)
        settled = answer.order_return.settlement
        done.resource = ("return", return_id)
        done.details = {
            "order_id": order_id,
            "outcome": body.outcome,
            "amount": settled.amount.amount,
            "currency": settled.amount.currency,
            "tender_type": body.tender_type or "",
            "reference": body.reference,
            "reason": body.reason,
        }
    return to_model(Return, answer.order_return)


class ReceiptlessLineIn(Body):
    sku: Sku
    quantity: int = Field(ge=1, le=10_000, json_schema_extra=INT64)
    restock: bool = Field(True, description="Back to stock at `location_id`, or not")


class ReceiptlessReturnIn(Body):
    model_config = example(
        {
            "location_id": ex.LOCATION_ID,
            "customer_id": ex.CUSTOMER_ID,
            "lines": [{"sku": "TEE-BLK-M", "quantity": 1, "restock": True}],
            "reason": "no_receipt",
        }
    )

    location_id: str = Field(
        min_length=1, max_length=64, description="The store taking the units back"
    )
    customer_id: str = Field(
        min_length=1, max_length=64, description="Who is credited: store credit is theirs"
    )
    lines: list[ReceiptlessLineIn] = Field(min_length=1, max_length=200)
    reason: str = Field(
        min_length=1,
        max_length=50,
        pattern=r"^[a-z][a-z0-9_]{0,49}$",
        description="Why, as a lower-case code",
    )


@router.post(
    "/returns",
    **op(
        "orders:write",
        "Return units without a receipt (store credit)",
        (404, *CREATE),
        example=ex.RECEIPTLESS_RETURN,
        status=201,
        shown_once=("store_credit",),
    ),
)
async def create_receiptless_return(
    body: ReceiptlessReturnIn, request: Request, svc: Svc
) -> ReceiptlessReturn:
    """Units back with no order: the customer is credited on a new gift card (store credit, never a
    card refund) at the lowest price each SKU sold for in the last 30 days, after its order's
    discount, in the store's currency; restocked units go back to stock at `location_id`. The card
    and its code are in `store_credit` of this answer only. A SKU not sold in that time, or sold
    only for nothing (given away: no credit to give), is a 400 naming the line; a store or customer
    you do not have is a 404, a store the merchant closed (`status: inactive`) a 409
    `location_inactive` naming `location_id`. Where the order settings set a `receiptless_limit`, a
    return that would take the customer past it (their returns without a receipt within its `days`,
    and those of duplicates merged into them, counted) is a 409 `receiptless_limit_exceeded` with
    `remaining`, the store credit they may still receive, and nothing is done (no card, no stock
    moved, no return); concurrent returns for one customer never pass it together, and a retry with
    the same Idempotency-Key replays the first answer without counting twice. The return is read
    back with `GET /v1/returns/{return_id}`, and `order.returned` follows (the return as `object`,
    its `order` null). Store credit is money given back: at a register it takes the `refund`
    permission or a manager's override (403 `permission_required`, nothing changed), and every such
    return is in the audit log (`return`) with who made it, the credit's card and amount (never its
    code)."""
    ask = order_pb2.CreateReceiptlessReturnRequest(
        request_id=request_id(),
        location_id=body.location_id,
        customer_id=body.customer_id,
        lines=[
            order_pb2.ReceiptlessReturnLine(sku=ln.sku, quantity=ln.quantity, restock=ln.restock)
            for ln in body.lines
        ],
        reason=body.reason,
    )
    async with guarded(request, "return", "refund") as done:
        answer = await svc.order.CreateReceiptlessReturn(ask)
        credit = answer.store_credit
        done.resource = ("return", answer.order_return.id)
        done.details = {
            **_audited(answer.order_return, ""),
            "receiptless": True,
            "customer_id": body.customer_id,
            "location_id": body.location_id,
            "gift_card_id": credit.gift_card_id,
        }
    return ReceiptlessReturn(
        order_return=to_model(Return, answer.order_return),
        store_credit=StoreCredit(gift_card_id=credit.gift_card_id, code=credit.code or None),
        secret_redacted=False,
    )
