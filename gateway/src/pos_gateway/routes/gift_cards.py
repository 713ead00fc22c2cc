"""Gift cards: /v1/gift-cards and /v1/gift-card-settings.

A gift card code is a bearer secret: it travels only in request bodies (never a URL), the
answer that issues a card is the only one that shows it (`shown_once`, so the Idempotency-Key
store keeps it null), and every operation that takes a code spends from a bucket of code
look-ups per credential, far smaller than the general rate limit, against guessing.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Annotated, Any, Literal, TypeVar

import grpc
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import Field

from pos.customer.v1 import customer_pb2
from pos.order.v1 import order_pb2
from pos.payment.v1 import gift_cards_pb2 as G
from pos_gateway import examples as ex
from pos_gateway.actions import Done, guarded, principal_of, settings_changed
from pos_gateway.clients import Services
from pos_gateway.convert import to_json, to_model, to_page
from pos_gateway.problems import Problem, from_rpc_error
from pos_gateway.ratelimit import Limiter
from pos_gateway.routes.common import (
    CREATE,
    INT64,
    Body,
    Cursor,
    IfMatch,
    Limit,
    MoneyIn,
    PathId,
    QueryId,
    UpdatedSince,
    example,
    expected_version,
    op,
    request_id,
    services,
    timestamp,
    version_checked,
)
from pos_gateway.routes.settlement import in_its_currency, location_of, open_location_of
from pos_gateway.schemas.gift_cards import (
    SUPPLIED_CODE,
    GiftCard,
    GiftCardActivityList,
    GiftCardCode,
    GiftCardList,
    GiftCardMoved,
    GiftCardRedeemed,
    GiftCardSettings,
    NewGiftCard,
    SuppliedGiftCardCode,
)

router = APIRouter(prefix="/v1", tags=["gift cards"])
_T = TypeVar("_T")
Svc = Annotated[Services, Depends(services)]

# Code look-ups per credential: a burst of 20, then one a second. A till uses a few a sale; a
# guesser of 78-bit codes gets nowhere at that pace. The buckets live where the API's do
# (RATE_LIMIT_STORE): with `postgres`, one budget per credential across every replica.
CODE_LOOKUP_RATE = 1.0
CODE_LOOKUP_BURST = 20


async def spend_code_budget(request: Request) -> None:
    """One look-up of a gift card code by the request's credential: a 429
    `code_lookups_limited` once its budget is spent."""
    principal = getattr(request.state, "principal", None)
    limiter: Limiter = request.app.state.code_lookups
    # Its own bucket key: the API budget of the same credential is another row.
    decision = await limiter.decide("gift-card-codes:" + getattr(principal, "key_id", ""))
    if not decision.allowed:
        raise Problem(
            429,
            "code_lookups_limited",
            "too many gift card code look-ups for this credential; retry after the given time",
            headers={"Retry-After": str(decision.retry_after)},
        )


# Spent by every route that takes a code, before the code goes anywhere.
CodeBudget = Annotated[None, Depends(spend_code_budget)]


async def _known(
    svc: Services,
    location_id: str,
    customer_id: str = "",
    order_id: str = "",
    currency: str = "",
    *,
    sells: bool = False,
) -> str:
    """Ids a body names are the caller's own: another merchant's is a 404 exactly like a
    made-up one (the owning service answers for its own), and nothing is written. Value moved
    at a location is in its currency: the location's settlement report, in that currency,
    counts it (another currency would leave it out of every report). With `sells` (value sold
    or taken there: an issue, a load, a redemption), a location the merchant closed is a 409
    `location_inactive` on `location_id`. Answers the customer the card is for: a duplicate
    merged away stands for its survivor, whose cards its own were moved to."""
    if location_id:
        at = open_location_of if sells else location_of
        in_its_currency(await at(svc, location_id, "location_id"), currency)
    if customer_id:
        customer_id = await _named(_survivor(svc, customer_id), "customer_id", "customer")
    if order_id:
        await _named(svc.order.GetOrder(order_pb2.GetOrderRequest(id=order_id)), "order_id",
                     "order")  # fmt: skip
    return customer_id


async def _named(found: Awaitable[_T], field: str, resource: str) -> _T:
    """An id the body names, looked up: missing, its 404 names `field` (`no such <resource>`),
    as an order's or a cart's does, and reads the same for another merchant's."""
    try:
        return await found
    except grpc.aio.AioRpcError as exc:
        if exc.code() != grpc.StatusCode.NOT_FOUND:
            raise
        problem = from_rpc_error(exc)
        if problem.status != 404:  # an erased customer's 410 stays as it is
            raise problem from None
        named = [{"field": field, "reason": f"no such {resource}"}]
        raise Problem(404, problem.code, problem.detail, named, extra=problem.extra) from None


# Merges chain (a survivor merged away in turn); a longer chain than this is not followed.
MERGE_HOPS = 10


async def _survivor(svc: Services, customer_id: str) -> str:
    for _ in range(MERGE_HOPS):
        found = await svc.customer.GetCustomer(customer_pb2.GetCustomerRequest(id=customer_id))
        if found.customer.status != "merged" or not found.customer.merged_into:
            break
        customer_id = found.customer.merged_into
    return customer_id


class PositiveMoneyIn(MoneyIn):
    amount: int = Field(
        ge=1, le=10**12, json_schema_extra=INT64, description="Integer minor units: 2599 = 25.99"
    )


class SignedMoneyIn(MoneyIn):
    amount: int = Field(
        ge=-(10**12), le=10**12, json_schema_extra=INT64, description="Signed minor units"
    )


class GiftCardIn(Body):
    model_config = example(
        {"amount": ex.usd(5000), "location_id": ex.LOCATION_ID, "reason": "sale"}
    )

    amount: PositiveMoneyIn = Field(description="The opening balance")
    code: SuppliedGiftCardCode | None = Field(
        None, description=SUPPLIED_CODE + "; absent: one is generated"
    )
    customer_id: QueryId = Field("", description="Whose it is (store credit); yours, or a 404")
    order_id: QueryId = Field("", description="The order it goes with; yours, or a 404")
    order_line_id: QueryId = Field(
        "",
        description="Never set here (a 400 naming it): an order's gift card line is issued by "
        "the order when it is confirmed, naming its line",
    )
    reason: Literal["sale", "store_credit", "promotional"] = "sale"
    location_id: QueryId = Field(
        "", description="Where it was sold; yours, or a 404. Empty: at a register its own store"
    )
    paid_in_cash: bool = Field(
        False,
        description="The customer paid the opening balance in cash at this register: it "
        "counts in the open shift's expected cash. Only a card sold on its own (reason "
        "`sale`, no order), from a register with a shift open (409 `cash_needs_open_shift` "
        "otherwise)",
    )


def _audited(done: Done, answer: Any, **details: str) -> None:
    """The card and the signed amount the action moved, for its audit entry (never the code)."""
    done.resource = ("gift_card", answer.gift_card.id)
    done.details = {
        "amount": answer.activity.amount.amount,
        "currency": answer.activity.amount.currency,
        **details,
    }


def _moved(answer: Any) -> dict[str, Any]:
    """The card and the activity of any answer that carries both."""
    return {"gift_card": to_json(answer.gift_card), "activity": to_json(answer.activity)}


@router.post(
    "/gift-cards",
    **op("payments:write", "Issue a gift card", (404, *CREATE), example=ex.NEW_GIFT_CARD,
         status=201, shown_once=("code",)),
)  # fmt: skip
async def issue_gift_card(body: GiftCardIn, request: Request, svc: Svc) -> NewGiftCard:
    """Activates a card with its opening balance. The code is in this answer only: a replay
    of the same Idempotency-Key returns the card with `code: null` and `secret_redacted:
    true`. A pre-printed code the merchant already used, or one a sale in progress holds (from
    before its card is charged until it is paid or ends), is a 409 `gift_card_code_taken`
    naming `code`; more
    than the maximum balance a 409 `gift_card_balance_limit`; an amount in another currency than
    the location's a 400 `currency_mismatch`; at a location the merchant closed (`status:
    inactive`) a 409 `location_inactive` naming `location_id`. Store credit for a return
    without a receipt is a card with `reason: store_credit` and the customer.

    At a register it gives value no sale paid for (a card sold at the till is an order line):
    it takes the `refund` permission or a manager's override (403 `permission_required`), and
    is in the audit log (`gift_card.issued`, with the amount); one sold for cash there
    (`paid_in_cash`) needs no permission. A card sold on its own at a register counts in
    the shift open there (`gift_cards_sold`; for cash, in its expected cash too). A
    pre-printed code spends the credential's code look-ups as `/v1/gift-cards/lookup` does
    (429 `code_lookups_limited`): its 409 says whether a card holds that code.

    A card sold as an order's gift card line is issued by that order when it is confirmed
    (and ended with it if cancelled): a card issued here names no order line, and
    `order_line_id` is a 400 `invalid_request` naming it, with nothing issued."""
    if body.order_line_id:
        # The order finds its line's card by order and line (a lost answer, a cancel): a card
        # made here naming the line would be taken for it, and the line's own left live.
        raise Problem(
            400,
            "invalid_request",
            "a card issued here names no order line: an order's gift card line is issued by "
            "the order",
            [{"field": "order_line_id", "reason": "must be empty: the order issues its lines' "
              "cards"}],
        )  # fmt: skip
    if body.code:
        await spend_code_budget(request)
    where = _where(request, body.location_id)
    customer_id = await _known(
        svc, where, body.customer_id, body.order_id, body.amount.currency, sells=True
    )
    permission = None if body.paid_in_cash else "refund"
    async with guarded(request, "gift_card.issued", permission) as done:
        answer = await svc.gift_cards.IssueGiftCard(
            G.IssueGiftCardRequest(
                request_id=request_id(),
                amount=body.amount.pb(),
                code=body.code or "",
                customer_id=customer_id,
                order_id=body.order_id,
                order_line_id=body.order_line_id,
                reason=body.reason,
                location_id=where,
                paid_in_cash=body.paid_in_cash,
            )
        )
        _audited(done, answer)
    return NewGiftCard.model_validate(
        {
            **_moved(answer),
            "code": answer.code or None,
            "secret_redacted": answer.code_redacted,
        }
    )


_STATUSES = {
    "active": G.GIFT_CARD_STATUS_ACTIVE,
    "deactivated": G.GIFT_CARD_STATUS_DEACTIVATED,
}


@router.get(
    "/gift-cards",
    **op("payments:read", "List gift cards", (404,), example=ex.GIFT_CARD_LIST),
)
async def list_gift_cards(
    svc: Svc,
    limit: Limit = 50,
    cursor: Cursor = None,
    updated_since: UpdatedSince = None,
    status: Annotated[
        Literal["active", "deactivated"] | None, Query(description="Only cards in this status")
    ] = None,
    customer_id: Annotated[
        QueryId | None,
        Query(
            description="Only the cards issued to this customer; one you do not have is a 404 "
            "`resource_missing` problem"
        ),
    ] = None,
    location_id: Annotated[
        QueryId | None,
        Query(
            description="Only the cards sold at this location; one you do not have is a 404 "
            "`resource_missing` problem"
        ),
    ] = None,
) -> GiftCardList:
    """Your cards by id, or with `updated_since` the change feed (oldest change first), so a
    partner polling it sees every issue, load, redemption and deactivation as the card's new
    `balance`, `status` and `version`. Each filter narrows the list. A card is shown as `GET
    /v1/gift-cards/{gift_card_id}` shows it: never its code, only `code_last4`. A register's
    credential lists the cards sold at its own location."""
    if location_id:
        await location_of(svc, location_id)
    if customer_id:
        await svc.customer.GetCustomer(customer_pb2.GetCustomerRequest(id=customer_id))
    request = G.ListGiftCardsRequest(
        page_size=limit,
        page_token=cursor or "",
        status=_STATUSES[status] if status else G.GIFT_CARD_STATUS_UNSPECIFIED,
        customer_id=customer_id or "",
        location_id=location_id or "",
    )
    if updated_since is not None:
        request.updated_since.CopyFrom(timestamp(updated_since))
    answer = await svc.gift_cards.ListGiftCards(request)
    return to_page(GiftCardList, answer.gift_cards, answer.next_page_token)


@router.get(
    "/gift-cards/{gift_card_id}",
    **op("payments:read", "Get a gift card", (404,), example=ex.GIFT_CARD),
)
async def get_gift_card(gift_card_id: PathId, svc: Svc) -> GiftCard:
    answer = await svc.gift_cards.GetGiftCard(G.GetGiftCardRequest(id=gift_card_id))
    return to_model(GiftCard, answer.gift_card)


class CodeIn(Body):
    model_config = example({"code": "7KQ2-M9XD-TW4P-H3RZ"})

    code: GiftCardCode


@router.post(
    "/gift-cards/lookup",
    **op("payments:read", "Find a gift card by its code", (404, 410, 429), example=ex.GIFT_CARD),
)
async def look_up_gift_card(body: CodeIn, svc: Svc, _: CodeBudget) -> GiftCard:
    """The balance check at a till. The code goes in the body, never in a URL. A code no card
    of yours has is a 404 `resource_missing` naming `code` and nothing more. Code look-ups
    (this and redemptions) are limited per credential: 20 at once, then one a second (429
    `code_lookups_limited` with `Retry-After`). A card naming a customer: once that customer
    is erased, a retry with the same Idempotency-Key answers 410 `customer_erased`."""
    answer = await svc.gift_cards.LookupGiftCard(G.LookupGiftCardRequest(code=body.code))
    return to_model(GiftCard, answer.gift_card)


class RedeemIn(Body):
    model_config = example(
        {"code": "7KQ2-M9XD-TW4P-H3RZ", "amount": ex.usd(2500), "allow_partial": True}
    )

    code: GiftCardCode
    amount: PositiveMoneyIn
    allow_partial: bool = Field(
        False, description="Take what the balance covers, the rest due on another tender"
    )
    reference: str = Field("", max_length=128)
    location_id: QueryId = Field(
        "",
        description="Where the value was taken; yours, or a 404. Counted in that location's "
        "settlement report (`gift_cards_redeemed`); empty: at a register its own store, else "
        "in no location's",
    )


@router.post(
    "/gift-cards/redeem",
    **op("payments:write", "Redeem value from a gift card", (404, 429, *CREATE),
         example=ex.GIFT_CARD_REDEEMED, sells=True),
)  # fmt: skip
async def redeem_gift_card(
    body: RedeemIn, request: Request, svc: Svc, _: CodeBudget
) -> GiftCardRedeemed:
    """Never below zero, also when redemptions race. Without `allow_partial`, more than the
    balance is a 409 `insufficient_funds`; a deactivated card a 409 `gift_card_inactive`; an
    amount in another currency a 400 `currency_mismatch`; at a location the merchant closed
    (`status: inactive`) a 409 `location_inactive` naming `location_id`. To take a card as a
    payment tender, pay with `tender_type: gift_card` and its code instead (a card in another
    currency than the order's is the same 400 `currency_mismatch` there, naming
    `gift_card_code`, and a deactivated card, a balance short of the tender and a code no card
    has the same 409s and 404 as here). At a register it counts in the shift open there
    (`gift_cards_redeemed`)."""
    where = _where(request, body.location_id)
    await _known(svc, where, currency=body.amount.currency, sells=True)
    answer = await svc.gift_cards.RedeemGiftCard(
        G.RedeemGiftCardRequest(
            request_id=request_id(),
            code=body.code,
            amount=body.amount.pb(),
            allow_partial=body.allow_partial,
            reference=body.reference,
            location_id=where,
        )
    )
    return GiftCardRedeemed.model_validate(
        {
            **_moved(answer),
            "redeemed": to_json(answer.redeemed),
            "remaining_due": to_json(answer.remaining_due),
        }
    )


class ValueIn(Body):
    model_config = example({"amount": ex.usd(2000), "location_id": ex.LOCATION_ID})

    amount: PositiveMoneyIn
    reference: str = Field("", max_length=128)
    location_id: QueryId = Field(
        "",
        description="Where; yours, or a 404. In that location's settlement report a load "
        "counts in `gift_cards_sold`, a refund to the card comes off `gift_cards_redeemed`. "
        "Empty: at a register its own store",
    )


class LoadIn(ValueIn):
    paid_in_cash: bool = Field(
        False,
        description="The customer paid the load in cash at this register: it counts in the "
        "open shift's expected cash (409 `cash_needs_open_shift` with no shift open there), "
        "and in `gift_cards_sold_cash` of the settlement report of `location_id`",
    )


@router.post(
    "/gift-cards/{gift_card_id}/loads",
    **op("payments:write", "Load value onto a gift card", (404, *CREATE),
         example=ex.GIFT_CARD_MOVED, status=201),
)  # fmt: skip
async def load_gift_card(
    gift_card_id: PathId, body: LoadIn, request: Request, svc: Svc
) -> GiftCardMoved:
    """Up to your maximum balance (a 409 `gift_card_balance_limit` beyond it); a deactivated
    card is a 409 `gift_card_inactive`, another currency a 400 `currency_mismatch`, a location
    the merchant closed (`status: inactive`) a 409 `location_inactive` naming `location_id`.
    At a register (value no sale paid for) it takes the `refund` permission or a manager's override
    and is in the audit log (`gift_card.loaded`); one paid for in cash there (`paid_in_cash`)
    needs no permission. At a register it counts in the shift open there (`gift_cards_sold`;
    for cash, in its expected cash too)."""
    return await _value_in(
        request, svc, "gift_card.loaded", svc.gift_cards.LoadGiftCard,
        G.LoadGiftCardRequest, gift_card_id, body,
    )  # fmt: skip


@router.post(
    "/gift-cards/{gift_card_id}/refunds",
    **op("payments:write", "Give value back to a gift card", (404, *CREATE),
         example=ex.GIFT_CARD_MOVED, status=201),
)  # fmt: skip
async def refund_to_gift_card(
    gift_card_id: PathId, body: ValueIn, request: Request, svc: Svc
) -> GiftCardMoved:
    """A return to the card it was paid with (a refund of a gift card payment does this by
    itself): never more than the card has spent and not been given back (a 409
    `gift_card_refund_exceeds_spent` with `refundable`), and up to your maximum balance, as a
    load (a 409 `gift_card_balance_limit` beyond it); another currency than the card's is a 400
    `currency_mismatch`. At a register it takes the `refund`
    permission or a manager's override and is in the audit log (`gift_card.refunded`)."""
    return await _value_in(
        request, svc, "gift_card.refunded", svc.gift_cards.RefundToGiftCard,
        G.RefundToGiftCardRequest, gift_card_id, body,
    )  # fmt: skip


def _where(request: Request, given: str) -> str:
    """Where value moves: the location named, else at a register its own store, so a till's
    card sold, loaded or redeemed without one counts in that store's settlement report as it
    counts in the register's shift; from the back office, empty (in no location's)."""
    if given:
        return given
    principal = principal_of(request)
    return (principal.location_id or "") if principal.register_id else ""


async def _value_in(
    request: Request,
    svc: Svc,
    action: str,
    call: Any,
    message: Any,
    gift_card_id: str,
    body: ValueIn,
) -> GiftCardMoved:
    """Value onto a card (a load, a refund to it): at a register value no sale paid for, so
    it takes the `refund` permission or an override (a load paid in cash: none), and is
    audited as `action`."""
    where = _where(request, body.location_id)
    # A load sells value there; a refund to the card gives back what was paid with it.
    await _known(svc, where, currency=body.amount.currency, sells=isinstance(body, LoadIn))
    cash = isinstance(body, LoadIn) and body.paid_in_cash
    async with guarded(request, action, None if cash else "refund") as done:
        ask = message(
            request_id=request_id(),
            id=gift_card_id,
            amount=body.amount.pb(),
            reference=body.reference,
            location_id=where,
        )
        if cash:
            ask.paid_in_cash = True
        answer = await call(ask)
        _audited(done, answer)
    return GiftCardMoved.model_validate(_moved(answer))


class AdjustIn(Body):
    model_config = example({"amount": ex.usd(-500), "reason": "miscounted at activation"})

    amount: SignedMoneyIn = Field(description="Signed; never taking the balance below zero")
    reason: str = Field(min_length=1, max_length=200)


@router.post(
    "/gift-cards/{gift_card_id}/adjustments",
    **op("payments:write", "Correct a gift card's balance", (404, *CREATE),
         example=ex.GIFT_CARD_MOVED, status=201),
)  # fmt: skip
async def adjust_gift_card(
    gift_card_id: PathId, body: AdjustIn, request: Request, svc: Svc
) -> GiftCardMoved:
    """At a register it takes the `refund` permission or a manager's override (403
    `permission_required`) and is in the audit log (`gift_card.adjusted`, with the reason)."""
    async with guarded(request, "gift_card.adjusted", "refund") as done:
        answer = await svc.gift_cards.AdjustGiftCard(
            G.AdjustGiftCardRequest(
                request_id=request_id(),
                id=gift_card_id,
                amount=body.amount.pb(),
                reason=body.reason,
            )
        )
        _audited(done, answer, reason=body.reason)
    return GiftCardMoved.model_validate(_moved(answer))


class DeactivateIn(Body):
    model_config = example({"reason": "order_cancelled"})

    reason: str = Field("", max_length=200)


# No body (or `{}`): deactivated with no reason given.
_NO_REASON = DeactivateIn(reason="")


@router.post(
    "/gift-cards/{gift_card_id}/deactivate",
    **op("payments:write", "Deactivate a gift card", (404, *CREATE), example=ex.GIFT_CARD_MOVED),
)
async def deactivate_gift_card(
    gift_card_id: PathId, request: Request, svc: Svc, body: DeactivateIn = _NO_REASON
) -> GiftCardMoved:
    """Its balance goes to zero (a `deactivate` activity) and it takes nothing more but the
    refunds of payments it made (a return paid with it: a `refund` activity, the card still
    deactivated, its balance what it was given back, for you to reissue): the order saga
    does this when an order with a gift-card line is cancelled or the line returned.
    A card already deactivated is a 409 `gift_card_inactive`. It takes the value away: at a
    register it takes the `refund` permission or a manager's override (403
    `permission_required`), and it is in the audit log (`gift_card.deactivated`, with the
    amount and the reason)."""
    async with guarded(request, "gift_card.deactivated", "refund") as done:
        answer = await svc.gift_cards.DeactivateGiftCard(
            G.DeactivateGiftCardRequest(
                request_id=request_id(), id=gift_card_id, reason=body.reason
            )
        )
        _audited(done, answer, reason=body.reason)
    return GiftCardMoved.model_validate(_moved(answer))


@router.get(
    "/gift-cards/{gift_card_id}/activities",
    **op("payments:read", "List a gift card's activities", (404,),
         example=ex.page(ex.GIFT_CARD_ACTIVITY)),
)  # fmt: skip
async def list_gift_card_activities(
    gift_card_id: PathId, svc: Svc, limit: Limit = 50, cursor: Cursor = None
) -> GiftCardActivityList:
    """Oldest first. The amounts sum to the card's balance."""
    answer = await svc.gift_cards.ListGiftCardActivities(
        G.ListGiftCardActivitiesRequest(
            gift_card_id=gift_card_id, page_size=limit, page_token=cursor or ""
        )
    )
    return to_page(GiftCardActivityList, answer.activities, answer.next_page_token)


class GiftCardSettingsIn(Body):
    model_config = example({"max_balance": 100000})

    max_balance: int = Field(ge=1, le=10**12, json_schema_extra=INT64)


@router.get(
    "/gift-card-settings",
    **op("payments:read", "Get your gift card settings",
         example={"max_balance": 200000, "version": 1}),
)  # fmt: skip
async def get_gift_card_settings(svc: Svc, response: Response) -> GiftCardSettings:
    """The default maximum balance is 200000 minor units (2,000.00), at version 1. The ETag
    is the version, for `If-Match` on a change."""
    answer = await svc.gift_cards.GetGiftCardSettings(G.GetGiftCardSettingsRequest())
    response.headers["ETag"] = f'"{answer.settings.version}"'
    return to_model(GiftCardSettings, answer.settings)


def _max(settings: G.GiftCardSettings) -> dict[str, int]:
    return {"max_balance": settings.max_balance}


@router.put(
    "/gift-card-settings",
    **op("payments:write", "Change your gift card settings", (412,),
         example={"max_balance": 100000, "version": 2}),
)  # fmt: skip
async def put_gift_card_settings(
    body: GiftCardSettingsIn,
    request: Request,
    response: Response,
    svc: Svc,
    if_match: IfMatch = None,
) -> GiftCardSettings:
    """A change bumps `version` and is in the audit log (`settings.gift_cards_changed`); the
    same maximum again changes nothing. Send `If-Match: "<version>"` to change only the version
    you saw: a stale one is a 412 `version_mismatch` with `current_version`. A register's
    credential is refused (403 `insufficient_scope`): settings are the back office's."""
    version = expected_version(if_match)
    async with guarded(
        request, "settings.gift_cards_changed", settings="the gift card settings"
    ) as done:
        answer = await version_checked(
            svc.gift_cards.UpdateGiftCardSettings(
                G.UpdateGiftCardSettingsRequest(
                    request_id=request_id(), max_balance=body.max_balance, expected_version=version
                )
            )
        )
        settings_changed(
            done, _max(answer.previous), _max(answer.settings), answer.settings.version
        )
    response.headers["ETag"] = f'"{answer.settings.version}"'
    return to_model(GiftCardSettings, answer.settings)
