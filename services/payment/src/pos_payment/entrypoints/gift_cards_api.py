"""pos.payment.v1.GiftCardService: translates protobuf <-> gift card handlers, nothing more.

Two things differ from the kit's plain `@mutation`, both because a code is a bearer secret:
- the request's fingerprint, which the kit stores to recognise a replay, is taken over the
  request with its code replaced by the code's keyed hash (a plain hash of a short code could
  be reversed by trying every code);
- the answer that shows a new code is stored without it: a replay says `code_redacted`.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from pos.payment.v1 import gift_cards_pb2 as G
from pos.payment.v1 import gift_cards_pb2_grpc
from pos_kit.context import current_merchant, register_var
from pos_kit.errors import DomainError
from pos_kit.idempotency import once
from pos_kit.paging import page_of, page_request
from pos_kit.servicer import Servicer, mutation, query
from pos_payment.adapters.gift_card_messages import (
    CARD_STATUSES,
    activity_to_proto,
    card_to_proto,
)
from pos_payment.adapters.gift_cards import CodeHasher, GiftCardUow
from pos_payment.adapters.messages import money
from pos_payment.domain.gift_cards import (
    CardFilters,
    GiftCardSettings,
    IssueReason,
    normalize_code,
)
from pos_payment.service import gift_cards as handlers

R = TypeVar("R", bound=Message)


def _amount(message: Any, name: str = "amount") -> tuple[int, str]:
    money = getattr(message, name)
    return money.amount, money.currency


def _settings(settings: GiftCardSettings) -> G.GiftCardSettings:
    return G.GiftCardSettings(max_balance=settings.max_balance, version=settings.version)


def _grouped(code: str) -> str:
    """A generated code as printed: groups of four."""
    return "-".join(code[i : i + 4] for i in range(0, len(code), 4))


@dataclass
class _Issued:
    code: str = ""
    shown: bool = False


class GiftCardApi(Servicer[GiftCardUow], gift_cards_pb2_grpc.GiftCardServiceServicer):
    def __init__(self, uow: Callable[[], GiftCardUow], hasher: CodeHasher) -> None:
        super().__init__(uow)
        self.hasher = hasher

    def _masked(self, request: Any) -> Any:
        """The request as its fingerprint is taken: the code replaced by its keyed hash."""
        masked = type(request)()
        masked.CopyFrom(request)
        if request.code:
            try:
                code = normalize_code(request.code)
            except DomainError:
                code = ""
            masked.code = self.hasher(current_merchant(), code).hex() if code else ""
        return masked

    async def _once(
        self,
        name: str,
        request: Any,
        response: type[R],
        work: Callable[[GiftCardUow], Awaitable[R]],
    ) -> R:
        async with self.bound_uow() as uow:
            return await once(
                uow, name, self._masked(request), response, functools.partial(work, uow)
            )

    async def IssueGiftCard(
        self, request: G.IssueGiftCardRequest, context: grpc.aio.ServicerContext
    ) -> G.IssueGiftCardResponse:
        ask = handlers.Issue(
            amount=_amount(request),
            code=request.code,
            customer_id=request.customer_id,
            order_id=request.order_id,
            order_line_id=request.order_line_id,
            reason=request.reason,
            location_id=request.location_id,
            paid_in_cash=request.paid_in_cash,
        )
        # Refused before anything is claimed: a bad request leaves no trace.
        code, reason = handlers.validate_issue(ask)
        issued = _Issued(request.code or _grouped(code))
        work = functools.partial(self._issue, ask, code, reason, issued)
        answer = await self._once("IssueGiftCard", request, G.IssueGiftCardResponse, work)
        if issued.shown:
            # Only the run that made the card shows its code; what was stored has none.
            answer.code, answer.code_redacted = issued.code, False
        return answer

    async def _issue(
        self,
        ask: handlers.Issue,
        code: str,
        reason: IssueReason,
        issued: _Issued,
        uow: GiftCardUow,
    ) -> G.IssueGiftCardResponse:
        done = await handlers.issue(uow, ask, code, reason, register_var.get() or "")
        moved = done.moved
        issued.shown = done.made
        return G.IssueGiftCardResponse(
            gift_card=card_to_proto(moved.card),
            activity=activity_to_proto(moved.activity),
            code_redacted=True,
        )

    async def ReserveGiftCardCode(
        self, request: G.ReserveGiftCardCodeRequest, context: grpc.aio.ServicerContext
    ) -> G.ReserveGiftCardCodeResponse:
        # Refused before anything is claimed: a bad request leaves no trace.
        code, seconds = handlers.validate_reservation(
            request.code, request.order_id, request.order_line_id, request.ttl_seconds
        )
        work = functools.partial(
            self._reserve, code, request.order_id, request.order_line_id, seconds
        )
        return await self._once("ReserveGiftCardCode", request, G.ReserveGiftCardCodeResponse, work)

    async def _reserve(
        self, code: str, order_id: str, line_id: str, seconds: int, uow: GiftCardUow
    ) -> G.ReserveGiftCardCodeResponse:
        held = await handlers.reserve_code(uow, code, order_id, line_id, seconds)
        answer = G.ReserveGiftCardCodeResponse(activated=held.activated)
        if held.expires_at is not None:
            answer.expires_at.FromDatetime(held.expires_at)
        return answer

    @mutation(G.ReleaseGiftCardCodesResponse)
    async def ReleaseGiftCardCodes(
        self, request: G.ReleaseGiftCardCodesRequest, uow: GiftCardUow
    ) -> G.ReleaseGiftCardCodesResponse:
        released = await handlers.release_codes(uow, request.order_id)
        return G.ReleaseGiftCardCodesResponse(released=released)

    async def RedeemGiftCard(
        self, request: G.RedeemGiftCardRequest, context: grpc.aio.ServicerContext
    ) -> G.RedeemGiftCardResponse:
        normalize_code(request.code)  # a malformed code is refused before the claim
        work = functools.partial(self._redeem, request)
        return await self._once("RedeemGiftCard", request, G.RedeemGiftCardResponse, work)

    async def _redeem(
        self, request: G.RedeemGiftCardRequest, uow: GiftCardUow
    ) -> G.RedeemGiftCardResponse:
        done = await handlers.redeem(
            uow,
            request.code,
            _amount(request),
            request.allow_partial,
            request.reference,
            request.location_id,
            register_var.get() or "",
        )
        currency = done.moved.card.currency
        return G.RedeemGiftCardResponse(
            gift_card=card_to_proto(done.moved.card),
            activity=activity_to_proto(done.moved.activity),
            redeemed=money(done.redeemed, currency),
            remaining_due=money(done.remaining_due, currency),
        )

    @mutation(G.LoadGiftCardResponse)
    async def LoadGiftCard(
        self, request: G.LoadGiftCardRequest, uow: GiftCardUow
    ) -> G.LoadGiftCardResponse:
        moved = await handlers.load(
            uow,
            request.id,
            _amount(request),
            request.reference,
            request.location_id,
            handlers.AtRegister(register_var.get() or "", request.paid_in_cash),
        )
        return G.LoadGiftCardResponse(
            gift_card=card_to_proto(moved.card), activity=activity_to_proto(moved.activity)
        )

    @mutation(G.RefundToGiftCardResponse)
    async def RefundToGiftCard(
        self, request: G.RefundToGiftCardRequest, uow: GiftCardUow
    ) -> G.RefundToGiftCardResponse:
        moved = await handlers.refund_to(
            uow,
            request.id,
            _amount(request),
            request.reference,
            request.location_id,
            register_var.get() or "",
        )
        return G.RefundToGiftCardResponse(
            gift_card=card_to_proto(moved.card), activity=activity_to_proto(moved.activity)
        )

    @mutation(G.AdjustGiftCardResponse)
    async def AdjustGiftCard(
        self, request: G.AdjustGiftCardRequest, uow: GiftCardUow
    ) -> G.AdjustGiftCardResponse:
        moved = await handlers.adjust(uow, request.id, _amount(request), request.reason)
        return G.AdjustGiftCardResponse(
            gift_card=card_to_proto(moved.card), activity=activity_to_proto(moved.activity)
        )

    @mutation(G.DeactivateGiftCardResponse)
    async def DeactivateGiftCard(
        self, request: G.DeactivateGiftCardRequest, uow: GiftCardUow
    ) -> G.DeactivateGiftCardResponse:
        moved = await handlers.deactivate(uow, request.id, request.reason, request.expected_balance)
        return G.DeactivateGiftCardResponse(
            gift_card=card_to_proto(moved.card), activity=activity_to_proto(moved.activity)
        )

    @query
    async def GetGiftCard(
        self, request: G.GetGiftCardRequest, uow: GiftCardUow
    ) -> G.GetGiftCardResponse:
        return G.GetGiftCardResponse(gift_card=card_to_proto(await handlers.get(uow, request.id)))

    @query
    async def LookupGiftCard(
        self, request: G.LookupGiftCardRequest, uow: GiftCardUow
    ) -> G.LookupGiftCardResponse:
        card = await handlers.lookup(uow, request.code)
        return G.LookupGiftCardResponse(gift_card=card_to_proto(card))

    @query
    async def ListGiftCardActivities(
        self, request: G.ListGiftCardActivitiesRequest, uow: GiftCardUow
    ) -> G.ListGiftCardActivitiesResponse:
        page = page_request(request)
        found = await handlers.activities(uow, request.gift_card_id, page)
        items, token = page_of(found, page)
        return G.ListGiftCardActivitiesResponse(
            activities=[activity_to_proto(a) for a in items], next_page_token=token
        )

    @query
    async def ListGiftCards(
        self, request: G.ListGiftCardsRequest, uow: GiftCardUow
    ) -> G.ListGiftCardsResponse:
        page = page_request(request)
        filters = CardFilters(
            customer_id=request.customer_id,
            location_id=request.location_id,
            status=CARD_STATUSES.optional(request.status, "status"),
            order_id=request.order_id,
        )
        found = await handlers.list_cards(uow, page, filters)
        items, token = page_of(found, page)
        return G.ListGiftCardsResponse(
            gift_cards=[card_to_proto(c) for c in items], next_page_token=token
        )

    @query
    async def GetGiftCardSettings(
        self, request: G.GetGiftCardSettingsRequest, uow: GiftCardUow
    ) -> G.GetGiftCardSettingsResponse:
        return G.GetGiftCardSettingsResponse(settings=_settings(await handlers.get_settings(uow)))

    @mutation(G.UpdateGiftCardSettingsResponse)
    async def UpdateGiftCardSettings(
        self, request: G.UpdateGiftCardSettingsRequest, uow: GiftCardUow
    ) -> G.UpdateGiftCardSettingsResponse:
        before, chosen = await handlers.update_settings(
            uow, request.max_balance, request.expected_version
        )
        return G.UpdateGiftCardSettingsResponse(
            settings=_settings(chosen), previous=_settings(before)
        )


def registrar(
    uow: Callable[[], GiftCardUow], hasher: CodeHasher
) -> Callable[[grpc.aio.Server], None]:
    def register(server: grpc.aio.Server) -> None:
        gift_cards_pb2_grpc.add_GiftCardServiceServicer_to_server(GiftCardApi(uow, hasher), server)

    return register


SERVICE_NAME = G.DESCRIPTOR.services_by_name["GiftCardService"].full_name
