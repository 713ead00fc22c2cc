"""pos.promotion.v1.PromotionService: translates protobuf <-> handlers, nothing more."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import grpc

from pos.promotion.v1 import promotion_pb2 as pb
from pos.promotion.v1 import promotion_pb2_grpc
from pos_kit.context import current_merchant
from pos_kit.errors import raise_if, require
from pos_kit.idempotency import once
from pos_kit.ids import new_id
from pos_kit.paging import page_of, page_request
from pos_kit.servicer import Servicer, mutation, query
from pos_promotion.adapters import messages
from pos_promotion.adapters.cache import ActiveOffers
from pos_promotion.adapters.repository import PromotionUow
from pos_promotion.domain.coupons import MESSAGES, Coupon, CouponStatus, Reservation, normalize
from pos_promotion.domain.model import Cart, Status, first_kind_offer, new_cart
from pos_promotion.domain.rules import Offer
from pos_promotion.service import handlers
from pos_promotion.service.ports import CodeHasher, CouponLookup


def _cart(
    request: pb.CalculateDiscountsRequest, coupon_offers: frozenset[str] = frozenset()
) -> Cart:
    return new_cart(
        messages.cart_lines(request.lines),
        request.currency,
        messages.context(request, coupon_offers),
    )


def _reservations(found: list[tuple[Reservation, Coupon]]) -> list[pb.CouponReservation]:
    return [messages.reservation_to_proto(r, c) for r, c in found]


class PromotionApi(Servicer[PromotionUow], promotion_pb2_grpc.PromotionServiceServicer):
    def __init__(
        self,
        uow: Callable[[], PromotionUow],
        cache: ActiveOffers,
        lookup: CouponLookup,
        hasher: CodeHasher,
    ) -> None:
        super().__init__(uow)
        self.cache = cache
        self.lookup = lookup
        self.hasher = hasher

    def _changed(self) -> None:
        # This replica forgets at once; the others on the change's event (adapters/cache.py).
        self.cache.invalidate(current_merchant())

    @mutation(pb.CreatePromotionResponse)
    async def CreatePromotion(
        self, request: pb.CreatePromotionRequest, uow: PromotionUow
    ) -> pb.CreatePromotionResponse:
        promotion_id = new_id("promo")
        if request.HasField("rule"):
            offer, violations = messages.offer_from_create(promotion_id, request)
        else:  # the first API version's request: a percent off the order
            minimum = (
                messages.money_input(request.minimum_subtotal)
                if request.HasField("minimum_subtotal")
                else None
            )
            conditions, currency, parsed = messages.first_kind_conditions(request)
            offer = replace(
                first_kind_offer(
                    promotion_id,
                    request.name,
                    request.percent_off_bps,
                    minimum,
                    conditions,
                    currency,
                    parsed,
                ),
                priority=request.priority,
                exclusive=request.exclusive,
                stackable=request.stackable if request.HasField("stackable") else True,
                requires_coupon=request.requires_coupon,
            )
            violations = []
        promotion = await handlers.create_promotion(
            uow, offer, violations, list(request.conditions.customer_groups)
        )
        self._changed()
        return pb.CreatePromotionResponse(promotion=messages.promotion_to_proto(promotion))

    @query
    async def GetPromotion(
        self, request: pb.GetPromotionRequest, uow: PromotionUow
    ) -> pb.GetPromotionResponse:
        promotion = await handlers.get_promotion(uow, request.id)
        return pb.GetPromotionResponse(promotion=messages.promotion_to_proto(promotion))

    @query
    async def ListPromotions(
        self, request: pb.ListPromotionsRequest, uow: PromotionUow
    ) -> pb.ListPromotionsResponse:
        page = page_request(request)  # its tokens are bound to the status filter too
        status = messages.STATUSES.optional(request.status, "status")
        schedule = messages.SCHEDULES.optional(request.schedule_state, "schedule_state")
        # The clock moves a promotion into a schedule state with no new `updated_at`: the
        # change feed narrowed by one would miss a window that opened since the last read.
        raise_if(
            require(status is not Status.DELETED, "status", "active, paused or ended")
            + require(
                schedule is None or not request.HasField("updated_since"),
                "schedule_state",
                "not with updated_since: a window opens or closes with no change to the "
                "promotion, so the feed would miss it; read the feed and each one's "
                "schedule_state",
            )
        )
        # One instant for the filter and the answer: each promotion listed reads as filtered.
        at = datetime.now(UTC)
        found, token = page_of(
            await handlers.list_promotions(uow, page, status, schedule, at), page
        )
        return pb.ListPromotionsResponse(
            promotions=[messages.promotion_to_proto(p, at) for p in found], next_page_token=token
        )

    @mutation(pb.UpdatePromotionResponse)
    async def UpdatePromotion(
        self, request: pb.UpdatePromotionRequest, uow: PromotionUow
    ) -> pb.UpdatePromotionResponse:
        # Only the parts being replaced are read: their currency is checked against the kept.
        mask = set(request.update_mask)
        rule, conditions, currency, violations = messages.offer_parts(
            request.rule if "rule" in mask else pb.Rule(),
            request.conditions if "conditions" in mask else pb.Conditions(),
        )
        changes = Offer(
            request.id,
            request.name,
            rule,
            conditions,
            currency,
            request.priority,
            request.exclusive,
            request.stackable,
            request.requires_coupon,
        )
        seen = await _version_now(uow, request.id)
        promotion = await handlers.update_promotion(
            uow,
            request.id,
            request.expected_version,
            list(request.update_mask),
            changes,
            violations,
            list(request.conditions.customer_groups),
        )
        self._changed()
        return pb.UpdatePromotionResponse(
            promotion=messages.promotion_to_proto(promotion), changed=promotion.version != seen
        )

    @mutation(pb.PausePromotionResponse)
    async def PausePromotion(
        self, request: pb.PausePromotionRequest, uow: PromotionUow
    ) -> pb.PausePromotionResponse:
        seen = await _version_now(uow, request.id)
        p = await handlers.change_status(uow, request.id, request.expected_version, Status.PAUSED)
        self._changed()
        return pb.PausePromotionResponse(
            promotion=messages.promotion_to_proto(p), changed=p.version != seen
        )

    @mutation(pb.ResumePromotionResponse)
    async def ResumePromotion(
        self, request: pb.ResumePromotionRequest, uow: PromotionUow
    ) -> pb.ResumePromotionResponse:
        seen = await _version_now(uow, request.id)
        p = await handlers.change_status(uow, request.id, request.expected_version, Status.ACTIVE)
        self._changed()
        return pb.ResumePromotionResponse(
            promotion=messages.promotion_to_proto(p), changed=p.version != seen
        )

    @mutation(pb.EndPromotionResponse)
    async def EndPromotion(
        self, request: pb.EndPromotionRequest, uow: PromotionUow
    ) -> pb.EndPromotionResponse:
        seen = await _version_now(uow, request.id)
        p = await handlers.change_status(uow, request.id, request.expected_version, Status.ENDED)
        self._changed()
        return pb.EndPromotionResponse(
            promotion=messages.promotion_to_proto(p), changed=p.version != seen
        )

    @mutation(pb.DeletePromotionResponse)
    async def DeletePromotion(
        self, request: pb.DeletePromotionRequest, uow: PromotionUow
    ) -> pb.DeletePromotionResponse:
        await handlers.delete_promotion(uow, request.id, request.expected_version)
        self._changed()
        return pb.DeletePromotionResponse()

    @mutation(pb.RetireCustomerGroupResponse)
    async def RetireCustomerGroup(
        self, request: pb.RetireCustomerGroupRequest, uow: PromotionUow
    ) -> pb.RetireCustomerGroupResponse:
        naming = await handlers.retire_group(uow, request.group_id, request.request_id)
        return pb.RetireCustomerGroupResponse(promotion_ids=naming)

    @mutation(pb.ReinstateCustomerGroupResponse)
    async def ReinstateCustomerGroup(
        self, request: pb.ReinstateCustomerGroupRequest, uow: PromotionUow
    ) -> pb.ReinstateCustomerGroupResponse:
        await handlers.reinstate_group(uow, request.group_id, request.retirement_id)
        return pb.ReinstateCustomerGroupResponse()

    async def CalculateDiscounts(
        self, request: pb.CalculateDiscountsRequest, context: grpc.aio.ServicerContext
    ) -> pb.CalculateDiscountsResponse:
        # Not a @query: that opens a unit of work (BEGIN and COMMIT round trips) for what is
        # usually no database read at all: the offers come from the cache.
        cart = _cart(request)
        priced, refused = await handlers.calculate_discounts(
            self.cache,
            self.lookup,
            self.hasher,
            current_merchant(),
            cart,
            list(request.coupon_codes),
            request.customer_id,
        )
        rejected = [
            pb.RejectedCoupon(code=c, reason=r.value, message=MESSAGES[r]) for c, r in refused
        ]
        return messages.discounts_to_proto(priced, cart.currency, rejected)

    def _printed(self, request: Any) -> Any:
        """The request as its idempotency fingerprint is taken: each code replaced by its keyed
        hash, so the stored fingerprint cannot be searched for a code."""
        printed = type(request)()
        printed.CopyFrom(request)
        merchant = current_merchant()
        hashed = [self.hasher(merchant, normalize(c)).hex() for c in request.codes]
        del printed.codes[:]
        printed.codes.extend(hashed)
        if isinstance(printed, pb.ReserveCouponsRequest):
            cart_codes = [
                self.hasher(merchant, normalize(c)).hex() for c in request.cart.coupon_codes
            ]
            del printed.cart.coupon_codes[:]
            printed.cart.coupon_codes.extend(cart_codes)
        return printed

    async def CreateCoupons(
        self, request: pb.CreateCouponsRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateCouponsResponse:
        """Once per request_id like every mutation, but the stored answer has no codes: they are
        shown on the first answer only, and a replay returns the coupons without them."""
        shown: dict[str, str] = {}

        async def work() -> pb.CreateCouponsResponse:
            expires = (
                request.expires_at.ToDatetime(tzinfo=UTC)
                if request.HasField("expires_at")
                else None
            )
            made = await handlers.create_coupons(
                uow,
                self.hasher,
                request.promotion_id,
                list(request.codes),
                request.generate,
                request.max_uses,
                request.max_uses_per_customer,
                expires,
            )
            for c in made:
                shown[c.id], c.code = c.code, ""
            return pb.CreateCouponsResponse(coupons=[messages.coupon_to_proto(c) for c in made])

        async with self.bound_uow() as uow:
            answer = await once(
                uow, "CreateCoupons", self._printed(request), pb.CreateCouponsResponse, work
            )
        for coupon in answer.coupons:
            coupon.code = shown.get(coupon.id, "")
        return answer

    @query
    async def ListCoupons(
        self, request: pb.ListCouponsRequest, uow: PromotionUow
    ) -> pb.ListCouponsResponse:
        page = page_request(request)  # its tokens are bound to the status filter too
        status = messages.COUPON_STATUSES.optional(request.status, "status")
        found, token = page_of(
            await handlers.list_coupons(uow, request.promotion_id, page, status), page
        )
        return pb.ListCouponsResponse(
            coupons=[messages.coupon_to_proto(c) for c in found], next_page_token=token
        )

    @query
    async def GetCoupon(
        self, request: pb.GetCouponRequest, uow: PromotionUow
    ) -> pb.GetCouponResponse:
        coupon = await handlers.get_coupon(uow, request.promotion_id, request.id)
        return pb.GetCouponResponse(coupon=messages.coupon_to_proto(coupon))

    @mutation(pb.DeactivateCouponResponse)
    async def DeactivateCoupon(
        self, request: pb.DeactivateCouponRequest, uow: PromotionUow
    ) -> pb.DeactivateCouponResponse:
        # No cache to forget: the offers cached are the promotions; a coupon is read by its
        # hash on every calculation that names it.
        # Its row locked first: of deactivations at once, the one that made it says so.
        before = await uow.coupons.get(request.id, lock=True)
        coupon = await handlers.deactivate_coupon(uow, request.promotion_id, request.id)
        return pb.DeactivateCouponResponse(
            coupon=messages.coupon_to_proto(coupon),
            changed=before is not None and before.status is not CouponStatus.DEACTIVATED,
        )

    async def ReserveCoupons(
        self, request: pb.ReserveCouponsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReserveCouponsResponse:
        cart = _cart(request.cart) if request.HasField("cart") else None

        async def work() -> pb.ReserveCouponsResponse:
            found = await handlers.reserve_coupons(
                uow,
                self.hasher,
                request.order_id,
                list(request.codes),
                request.customer_id,
                cart,
                datetime.now(UTC),
            )
            return pb.ReserveCouponsResponse(reservations=_reservations(found))

        async with self.bound_uow() as uow:
            return await once(
                uow, "ReserveCoupons", self._printed(request), pb.ReserveCouponsResponse, work
            )

    @mutation(pb.RedeemCouponsResponse)
    async def RedeemCoupons(
        self, request: pb.RedeemCouponsRequest, uow: PromotionUow
    ) -> pb.RedeemCouponsResponse:
        found = await handlers.redeem_coupons(uow, request.order_id)
        return pb.RedeemCouponsResponse(reservations=_reservations(found))

    @mutation(pb.ReleaseCouponsResponse)
    async def ReleaseCoupons(
        self, request: pb.ReleaseCouponsRequest, uow: PromotionUow
    ) -> pb.ReleaseCouponsResponse:
        found = await handlers.release_coupons(uow, request.order_id)
        return pb.ReleaseCouponsResponse(reservations=_reservations(found))


def registrar(
    uow: Callable[[], PromotionUow], cache: ActiveOffers, lookup: CouponLookup, hasher: CodeHasher
) -> Callable[[grpc.aio.Server], None]:
    def register(server: grpc.aio.Server) -> None:
        promotion_pb2_grpc.add_PromotionServiceServicer_to_server(
            PromotionApi(uow, cache, lookup, hasher), server
        )

    return register


SERVICE_NAME = pb.DESCRIPTOR.services_by_name["PromotionService"].full_name


async def _version_now(uow: PromotionUow, promotion_id: str) -> int:
    """The promotion's version, its row locked for the rest of the request: a change compares
    the version it leaves with this to say whether it was the one that made it (`changed`),
    whatever other requests at the same moment did (they wait for this one). 0: none such."""
    found = await uow.promotions.get(promotion_id, lock=True)
    return found.version if found is not None else 0
