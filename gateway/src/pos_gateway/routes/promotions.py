"""Promotions and their coupons: /v1/promotions."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

import grpc
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import Field, StrictBool, StrictInt

from pos.customer.v1 import customer_pb2
from pos.inventory.v1 import inventory_pb2
from pos.promotion.v1 import promotion_pb2 as pb
from pos_gateway import examples as ex
from pos_gateway.actions import Done, guarded
from pos_gateway.clients import Services
from pos_gateway.convert import to_model, to_page
from pos_gateway.problems import Problem
from pos_gateway.routes.common import (
    CREATE,
    INT32,
    INT64,
    TIME_SCHEMA,
    Body,
    BodyTime,
    Cursor,
    IfMatch,
    Limit,
    MoneyIn,
    Patch,
    PathId,
    UpdatedSince,
    example,
    expected_version,
    op,
    patched,
    request_id,
    services,
    timestamp,
    version_checked,
)
from pos_gateway.routes.settlement import locations_of
from pos_gateway.schemas.promotions import (
    Coupon,
    CouponBatch,
    CouponList,
    Kind,
    Level,
    Promotion,
    PromotionList,
)

router = APIRouter(prefix="/v1", tags=["promotions"])
Svc = Annotated[Services, Depends(services)]

Word = Annotated[str, Field(min_length=1, max_length=64)]
Units = Annotated[StrictInt, Field(ge=0, le=1_000_000, json_schema_extra=INT32)]
Bps = Annotated[
    StrictInt, Field(ge=0, le=10_000, json_schema_extra=INT32, description="1000 = 10 %")
]
LOCAL = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?$"
CLOCK = r"^\d{2}:\d{2}$"

KINDS = {
    "percent_off": pb.OFFER_KIND_PERCENT_OFF,
    "amount_off": pb.OFFER_KIND_AMOUNT_OFF,
    "buy_x_get_y": pb.OFFER_KIND_BUY_X_GET_Y,
    "bundle": pb.OFFER_KIND_BUNDLE,
    "tiers": pb.OFFER_KIND_TIERS,
    "sale_price": pb.OFFER_KIND_SALE_PRICE,
    "free_item": pb.OFFER_KIND_FREE_ITEM,
}
LEVELS = {"item": pb.OFFER_LEVEL_ITEM, "order": pb.OFFER_LEVEL_ORDER}


class SelectorIn(Body):
    skus: list[Word] = Field(default=[], max_length=1000)
    product_ids: list[Word] = Field(default=[], max_length=1000)
    categories: list[Word] = Field(default=[], max_length=1000)

    def pb(self) -> pb.ItemSelector:
        return pb.ItemSelector(
            skus=self.skus, product_ids=self.product_ids, categories=self.categories
        )


class TierIn(Body):
    min_quantity: StrictInt = Field(ge=1, le=1_000_000, json_schema_extra=INT64)
    percent_bps: Bps


class RuleIn(Body):
    kind: Kind
    level: Level | None = Field(
        None, description="Omitted: an order offer for percent/amount off naming no items"
    )
    items: SelectorIn | None = None
    percent_bps: Bps = 0
    amount: MoneyIn | None = Field(
        None, description="Off each unit or the order; a bundle's or sale price"
    )
    buy_quantity: Units = 0
    get_quantity: Units = 0
    get_items: SelectorIn | None = None
    tiers: list[TierIn] = Field(default=[], max_length=20)
    limit_per_order: Units = 0

    def pb(self) -> pb.Rule:
        rule = pb.Rule(
            kind=KINDS[self.kind],
            level=LEVELS[self.level] if self.level else pb.OFFER_LEVEL_UNSPECIFIED,
            percent_bps=self.percent_bps,
            buy_quantity=self.buy_quantity,
            get_quantity=self.get_quantity,
            tiers=[
                pb.Tier(min_quantity=t.min_quantity, percent_bps=t.percent_bps) for t in self.tiers
            ],
            limit_per_order=self.limit_per_order,
        )
        if self.items is not None:
            rule.items.CopyFrom(self.items.pb())
        if self.amount is not None:
            rule.amount.CopyFrom(self.amount.pb())
        if self.get_items is not None:
            rule.get_items.CopyFrom(self.get_items.pb())
        return rule


class ConditionsIn(Body):
    starts_at: str | None = Field(
        None, pattern=LOCAL, max_length=19, description="Local wall-clock time"
    )
    ends_at: str | None = Field(
        None, pattern=LOCAL, max_length=19, description="Local wall-clock time, exclusive"
    )
    time_zone: str | None = Field(
        None,
        max_length=64,
        description="IANA zone the window and hours are read in, wherever the sale happens;"
        " none: the location's zone, else UTC",
    )
    days_of_week: list[Annotated[StrictInt, Field(ge=1, le=7, json_schema_extra=INT32)]] = Field(
        default=[], max_length=7, description="1 = Monday .. 7 = Sunday"
    )
    hours_from: str | None = Field(None, pattern=CLOCK, max_length=5)
    hours_until: str | None = Field(
        None, pattern=CLOCK, max_length=5, description="Earlier than hours_from: across midnight"
    )
    channels: list[Word] = Field(default=[], max_length=20)
    location_ids: list[Word] = Field(default=[], max_length=1000)
    customer_groups: list[Word] = Field(default=[], max_length=100)
    min_quantity: StrictInt = Field(0, ge=0, le=1_000_000, json_schema_extra=INT64)
    min_amount: MoneyIn | None = None

    def pb(self) -> pb.Conditions:
        c = pb.Conditions(
            starts_at=self.starts_at or "",
            ends_at=self.ends_at or "",
            time_zone=self.time_zone or "",
            days_of_week=self.days_of_week,
            hours_from=self.hours_from or "",
            hours_until=self.hours_until or "",
            channels=self.channels,
            location_ids=self.location_ids,
            customer_groups=self.customer_groups,
            min_quantity=self.min_quantity,
        )
        if self.min_amount is not None:
            c.min_amount.CopyFrom(self.min_amount.pb())
        return c


Priority = Annotated[
    StrictInt,
    Field(ge=-1_000_000, le=1_000_000, json_schema_extra=INT32, description="Higher first"),
]


class PromotionIn(Body):
    model_config = example(
        {
            "name": "Shirts: buy one, get one free",
            "rule": {
                "kind": "buy_x_get_y",
                "items": {"categories": ["shirts"]},
                "percent_bps": 10000,
                "buy_quantity": 1,
                "get_quantity": 1,
            },
            "conditions": {"channels": ["register", "web"], "time_zone": "America/New_York"},
        }
    )

    name: str = Field(min_length=1, max_length=200)
    percent_off_bps: StrictInt | None = Field(
        None,
        ge=1,
        le=10_000,
        json_schema_extra=INT32,
        description="Without a rule: this percent off the order (1000 = 10 %)",
    )
    minimum_subtotal: MoneyIn | None = Field(None, description="Without a rule: from this subtotal")
    rule: RuleIn | None = None
    conditions: ConditionsIn | None = None
    priority: Priority = 0
    exclusive: StrictBool = Field(
        False, description="Alone or not at all: the best for the customer wins"
    )
    stackable: StrictBool = Field(
        True, description="false: one non-stackable offer per level applies"
    )
    requires_coupon: StrictBool = False


class PromotionPatch(Patch):
    model_config = example({"name": "Shirts: buy one, get one half price", "priority": 10})

    name: str | None = Field(None, min_length=1, max_length=200)
    rule: RuleIn | None = None
    conditions: ConditionsIn | None = None
    priority: Priority | None = None
    # Strict: JSON's 0 and 1 are numbers, not the booleans the document promises.
    exclusive: StrictBool | None = None
    stackable: StrictBool | None = None
    requires_coupon: StrictBool | None = None


class CouponsIn(Body):
    model_config = example({"codes": ["WINTER-26"], "max_uses": 500, "max_uses_per_customer": 1})

    codes: list[Annotated[str, Field(min_length=3, max_length=40)]] = Field(
        default=[], max_length=1000, description="Your codes (case-insensitive), or use generate"
    )
    generate: StrictInt = Field(
        0, ge=0, le=1000, json_schema_extra=INT32, description="How many codes to make"
    )
    max_uses: StrictInt = Field(
        0, ge=0, le=2**31 - 1, json_schema_extra=INT32, description="0: no limit"
    )
    max_uses_per_customer: StrictInt = Field(
        0,
        ge=0,
        le=2**31 - 1,
        json_schema_extra=INT32,
        description="0: no limit; with a limit a sale must name its customer_id "
        "(409 coupon_customer_required)",
    )
    expires_at: BodyTime | None = Field(None, json_schema_extra=TIME_SCHEMA)


# Look-ups at once while checking a list of ids: a bound on what one request fans out to.
LOOKUPS_AT_ONCE = 20


async def _known(
    ids: list[str], field: str, resource: str, fetch: Callable[[str], Awaitable[Any]]
) -> None:
    """Each id is one of the merchant's, or a 404 naming `field[i]`: another merchant's id
    answers word for word as a made-up one (the service's NOT_FOUND says the same for both)."""
    for start in range(0, len(ids), LOOKUPS_AT_ONCE):
        chunk = ids[start : start + LOOKUPS_AT_ONCE]
        answers = await asyncio.gather(*(fetch(i) for i in chunk), return_exceptions=True)
        for offset, answer in enumerate(answers):
            if not isinstance(answer, BaseException):
                continue
            if not (
                isinstance(answer, grpc.aio.AioRpcError)
                and answer.code() == grpc.StatusCode.NOT_FOUND
            ):
                raise answer
            index = start + offset
            raise Problem(
                404,
                "resource_missing",
                f"{resource} {ids[index]!r} was not found",
                [{"field": f"{field}[{index}]", "reason": f"no such {resource}"}],
                extra={"resource": resource},
            )


async def _check_ids(svc: Services, rule: RuleIn | None, conditions: ConditionsIn | None) -> None:
    """The ids an offer targets are the merchant's own. Checked here, on the writes only: the
    promotion service prices carts on the checkout's path and calls no other service."""

    async def product(product_id: str) -> Any:
        return await svc.inventory.GetProduct(inventory_pb2.GetProductRequest(id=product_id))

    async def group(group_id: str) -> Any:
        return await svc.customer.GetGroup(customer_pb2.GetGroupRequest(id=group_id))

    if rule is not None:
        for name, selector in (("items", rule.items), ("get_items", rule.get_items)):
            if selector is not None:
                await _known(selector.product_ids, f"rule.{name}.product_ids", "product", product)
    if conditions is not None:
        stores = await locations_of(svc, conditions.location_ids, "conditions.location_ids")
        _all_open(stores)
        await _known(
            conditions.customer_groups, "conditions.customer_groups", "customer group", group
        )


def _all_open(stores: list[inventory_pb2.Location]) -> None:
    """An offer limited to a store the merchant closed (`status: inactive`) would never apply
    there: a 409 `location_inactive` naming each `conditions.location_ids[i]` that is one."""
    closed = [(i, s.id) for i, s in enumerate(stores)
              if s.status == inventory_pb2.LOCATION_STATUS_INACTIVE]  # fmt: skip
    if closed:
        raise Problem(
            409,
            "location_inactive",
            f"location {closed[0][1]!r} is inactive: nothing new is offered there",
            [{"field": f"conditions.location_ids[{i}]", "reason": "the location is inactive"}
             for i, _ in closed],
            extra={"location_id": closed[0][1]},
        )  # fmt: skip


def _etag(response: Response, promotion: pb.Promotion) -> Promotion:
    response.headers["ETag"] = f'"{promotion.version}"'
    return to_model(Promotion, promotion)


@router.post(
    "/promotions",
    **op(
        "promotions:write",
        "Create a promotion",
        (404, *CREATE),
        example=ex.PROMOTION,
        status=201,
    ),
)
async def create_promotion(
    body: PromotionIn, svc: Svc, request: Request, response: Response
) -> Promotion:
    """An offer: a `rule` (percent or amount off items or the order, buy X get Y, bundles,
    quantity tiers, a sale price, free items) and its `conditions` (a window and hours in the
    offer's own `time_zone`, or, when it names none, in the location's time zone; days,
    channels, locations, customer groups, a minimum quantity or amount). Without a rule,
    `percent_off_bps` off the order from `minimum_subtotal` (or `conditions.min_amount`, not
    both), under the same `conditions`. A product, location or customer group id the offer
    names that is not yours is a 404 naming the field; a location the merchant closed
    (`status: inactive`) a 409 `location_inactive` naming `conditions.location_ids[i]`. In the
    audit log as `promotion.created` (its name and version), with the credential that made
    it."""
    await _check_ids(svc, body.rule, body.conditions)
    made = pb.CreatePromotionRequest(
        request_id=request_id(),
        name=body.name,
        percent_off_bps=body.percent_off_bps or 0,
        priority=body.priority,
        exclusive=body.exclusive,
        stackable=body.stackable,
        requires_coupon=body.requires_coupon,
    )
    if body.minimum_subtotal is not None:
        made.minimum_subtotal.CopyFrom(body.minimum_subtotal.pb())
    if body.rule is not None:
        made.rule.CopyFrom(body.rule.pb())
    if body.conditions is not None:
        made.conditions.CopyFrom(body.conditions.pb())
    async with guarded(request, "promotion.created") as done:
        answer = await svc.promotion.CreatePromotion(made)
        _audited(done, answer.promotion)
    return _etag(response, answer.promotion)


_LIST_STATUSES = {
    "": pb.PROMOTION_STATUS_UNSPECIFIED,
    "active": pb.PROMOTION_STATUS_ACTIVE,
    "paused": pb.PROMOTION_STATUS_PAUSED,
    "ended": pb.PROMOTION_STATUS_ENDED,
}


_SCHEDULES = {
    "": pb.SCHEDULE_STATE_UNSPECIFIED,
    "scheduled": pb.SCHEDULE_STATE_SCHEDULED,
    "running": pb.SCHEDULE_STATE_RUNNING,
    "finished": pb.SCHEDULE_STATE_FINISHED,
}


@router.get(
    "/promotions", **op("promotions:read", "List promotions", example=ex.page(ex.PROMOTION))
)
async def list_promotions(
    svc: Svc,
    status: Annotated[
        Literal["active", "paused", "ended"] | None,
        Query(description="Only promotions in this status (as each one's `status` reads)"),
    ] = None,
    schedule_state: Annotated[
        Literal["scheduled", "running", "finished"] | None,
        Query(description="Only promotions whose window is in this state now"),
    ] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
    updated_since: UpdatedSince = None,
) -> PromotionList:
    """The promotions there by id, or with `updated_since` the change feed (oldest change
    first), which also holds the promotions deleted since, so a poller learns they are gone:
    each at the time of its deletion, as it was but for `status: deleted` and a new `version`.
    `status` narrows either to the promotions in that status (a deleted one is in none),
    `schedule_state` to those whose window has not opened (`scheduled`), is open or absent
    (`running`) or has closed (`finished`) now; both together: both hold
    (`status=active&schedule_state=running`: what may apply now). `schedule_state` does not go
    with `updated_since` (a 400 naming `schedule_state`): a window opens or closes with no
    change to the promotion, so a feed narrowed by it would miss one that began running since
    the last read. A cursor is good only with the filters it was given for (another is a 400
    naming `cursor`)."""
    request = pb.ListPromotionsRequest(
        page_size=limit,
        page_token=cursor or "",
        status=_LIST_STATUSES[status or ""],
        schedule_state=_SCHEDULES[schedule_state or ""],
    )
    if updated_since is not None:
        request.updated_since.CopyFrom(timestamp(updated_since))
    answer = await svc.promotion.ListPromotions(request)
    return to_page(PromotionList, answer.promotions, answer.next_page_token)


@router.get(
    "/promotions/{promotion_id}",
    **op("promotions:read", "Get a promotion", (404,), example=ex.PROMOTION),
)
async def get_promotion(promotion_id: PathId, svc: Svc, response: Response) -> Promotion:
    answer = await svc.promotion.GetPromotion(pb.GetPromotionRequest(id=promotion_id))
    return _etag(response, answer.promotion)


@router.patch(
    "/promotions/{promotion_id}",
    **op("promotions:write", "Update a promotion", (404, 409, 412), example=ex.PROMOTION),
)
async def update_promotion(
    promotion_id: PathId,
    body: PromotionPatch,
    svc: Svc,
    request: Request,
    response: Response,
    if_match: IfMatch = None,
) -> Promotion:
    """The fields you send replace the current ones (a rule or conditions whole); one sent as
    null is a 400 naming it, nothing changed. Send
    `If-Match: "<version>"` to change only the version you saw; a stale one is a 412. A
    product, location or customer group id the offer names that is not yours is a 404 naming
    the field; `conditions` naming a location the merchant closed (`status: inactive`) a 409
    `location_inactive` naming `conditions.location_ids[i]` (an offer that named it before it
    closed still changes in its other fields). A body with no field is a 400, nothing
    changed. Fields sent as they are change nothing: no new version, no event. In the audit
    log as `promotion.updated` (the fields sent, its name and new version), when it
    changed."""
    sent = patched(body)
    await _check_ids(svc, body.rule, body.conditions)
    change = pb.UpdatePromotionRequest(
        request_id=request_id(), id=promotion_id, expected_version=expected_version(if_match)
    )
    for name in sent:  # never null: a PromotionPatch refuses it
        change.update_mask.append(name)
        if name == "rule" and body.rule is not None:
            change.rule.CopyFrom(body.rule.pb())
        elif name == "conditions" and body.conditions is not None:
            change.conditions.CopyFrom(body.conditions.pb())
        else:
            setattr(change, name, sent[name])
    async with guarded(request, "promotion.updated") as done:
        answer = await version_checked(svc.promotion.UpdatePromotion(change))
        _audited(done, answer.promotion, changed=sorted(sent))
        # The service says whether this request made the new version: of the same change
        # sent at once, one did (a version read here before it could be another's).
        done.changed = answer.changed
    return _etag(response, answer.promotion)


Change = Literal["pause", "resume", "end"]
_CHANGED = {"pause": "promotion.paused", "resume": "promotion.resumed", "end": "promotion.ended"}


def _audited(done: Done, promotion: pb.Promotion, **details: Any) -> None:
    """A promotion's audit entry: its name and the version the change made."""
    done.resource = ("promotion", promotion.id)
    done.details = {**details, "name": promotion.name, "version": promotion.version}


def _status(promotion: pb.Promotion) -> str:
    return to_model(Promotion, promotion).status


async def _audited_change(
    request: Request, svc: Services, change: Change, promotion_id: str, if_match: str | None
) -> pb.Promotion:
    """The change, audited as `promotion.paused|resumed|ended` with the status it moved
    `from` and `to`; one that found the promotion there already changed nothing (no new
    version) and adds no entry: the service says which request made the change, so of the
    same change sent at once one entry is written."""
    before = (await svc.promotion.GetPromotion(pb.GetPromotionRequest(id=promotion_id))).promotion
    async with guarded(request, _CHANGED[change]) as done:
        after, changed = await _change(svc, change, promotion_id, if_match)
        done.resource = ("promotion", promotion_id)
        done.details = {"from": _status(before), "to": _status(after), "version": after.version}
        done.changed = changed
    return after


async def _change(
    svc: Services, change: Change, promotion_id: str, if_match: str | None
) -> tuple[pb.Promotion, bool]:
    """The promotion after the change, and whether this request made it."""
    version = expected_version(if_match)
    if change == "pause":
        paused = await version_checked(
            svc.promotion.PausePromotion(
                pb.PausePromotionRequest(
                    request_id=request_id(), id=promotion_id, expected_version=version
                )
            )
        )
        promotion: pb.Promotion = paused.promotion
        return promotion, paused.changed
    if change == "resume":
        resumed = await version_checked(
            svc.promotion.ResumePromotion(
                pb.ResumePromotionRequest(
                    request_id=request_id(), id=promotion_id, expected_version=version
                )
            )
        )
        promotion = resumed.promotion
        return promotion, resumed.changed
    ended = await version_checked(
        svc.promotion.EndPromotion(
            pb.EndPromotionRequest(
                request_id=request_id(), id=promotion_id, expected_version=version
            )
        )
    )
    promotion = ended.promotion
    return promotion, ended.changed


@router.post(
    "/promotions/{promotion_id}/pause",
    **op("promotions:write", "Pause a promotion", (404, 409, 412, 422), example=ex.PROMOTION),
)
async def pause_promotion(
    promotion_id: PathId, svc: Svc, request: Request, response: Response, if_match: IfMatch = None
) -> Promotion:
    """It stops applying until resumed; pausing a paused one changes nothing. In the audit
    log as `promotion.paused` (status `from` and `to`, the new version)."""
    return _etag(response, await _audited_change(request, svc, "pause", promotion_id, if_match))


@router.post(
    "/promotions/{promotion_id}/resume",
    **op("promotions:write", "Resume a promotion", (404, 409, 412, 422), example=ex.PROMOTION),
)
async def resume_promotion(
    promotion_id: PathId, svc: Svc, request: Request, response: Response, if_match: IfMatch = None
) -> Promotion:
    """A paused promotion applies again; an ended one cannot (409 `promotion_ended`). In the
    audit log as `promotion.resumed`."""
    return _etag(response, await _audited_change(request, svc, "resume", promotion_id, if_match))


@router.post(
    "/promotions/{promotion_id}/end",
    **op("promotions:write", "End a promotion", (404, 409, 412, 422), example=ex.PROMOTION),
)
async def end_promotion(
    promotion_id: PathId, svc: Svc, request: Request, response: Response, if_match: IfMatch = None
) -> Promotion:
    """Final: it never applies again, and its coupons no longer reserve. In the audit log as
    `promotion.ended`."""
    return _etag(response, await _audited_change(request, svc, "end", promotion_id, if_match))


@router.delete(
    "/promotions/{promotion_id}",
    **op("promotions:write", "Delete a promotion never used", (404, 409, 412),
         example=ex.PROMOTION),
)  # fmt: skip
async def delete_promotion(
    promotion_id: PathId, svc: Svc, request: Request, if_match: IfMatch = None
) -> Promotion:
    """Only while no coupon of it was ever reserved (409 `promotion_used`): end it instead.
    Answers the promotion as it was. Its coupons go; the promotion shows in the list's
    `updated_since` feed as deleted (`status: deleted`), and nowhere else. Send
    `If-Match: "<version>"` to delete only the version you saw: a stale one is a 412
    `version_mismatch` with `current_version`, and the promotion stays. In the audit log as
    `promotion.deleted` (its name and last version)."""
    version = expected_version(if_match)
    found = await svc.promotion.GetPromotion(pb.GetPromotionRequest(id=promotion_id))
    async with guarded(request, "promotion.deleted") as done:
        await version_checked(
            svc.promotion.DeletePromotion(
                pb.DeletePromotionRequest(
                    request_id=request_id(), id=promotion_id, expected_version=version
                )
            )
        )
        _audited(done, found.promotion)
    return to_model(Promotion, found.promotion)


@router.post(
    "/promotions/{promotion_id}/coupons",
    **op(
        "promotions:write",
        "Create coupon codes for a promotion",
        (404, *CREATE),
        example=ex.COUPON_BATCH,
        status=201,
        shown_once=("codes",),
    ),
)
async def create_coupons(
    promotion_id: PathId, body: CouponsIn, svc: Svc, request: Request
) -> CouponBatch:
    """Your `codes`, or `generate` that many (12 characters, no look-alike letters). The
    promotion must have `requires_coupon`. Codes are stored as keyed hashes only. Codes ignore
    case: one the batch repeats is a 400 naming the later `codes[i]`, and one another coupon
    of yours has (of any promotion) a 409 `coupon_code_taken` naming its `codes[i]`; a batch
    refused so makes no coupon. In the audit log as `coupon.created` on the promotion (the
    coupons' ids and `code_hint`s, never the codes)."""
    batch = pb.CreateCouponsRequest(
        request_id=request_id(),
        promotion_id=promotion_id,
        codes=body.codes,
        generate=body.generate,
        max_uses=body.max_uses,
        max_uses_per_customer=body.max_uses_per_customer,
    )
    if body.expires_at is not None:
        batch.expires_at.CopyFrom(timestamp(body.expires_at, "expires_at"))
    async with guarded(request, "coupon.created") as done:
        answer = await svc.promotion.CreateCoupons(batch)
        done.resource = ("promotion", promotion_id)
        done.details = {
            "coupon_ids": [c.id for c in answer.coupons],
            "code_hints": [c.code_hint for c in answer.coupons],
        }
    codes = [c.code for c in answer.coupons]
    shown = all(codes)
    return CouponBatch.model_validate(
        {
            "coupons": [to_model(Coupon, c).model_dump() for c in answer.coupons],
            "codes": codes if shown else None,
            "secret_redacted": not shown,
        }
    )


@router.get(
    "/promotions/{promotion_id}/coupons",
    **op("promotions:read", "List a promotion's coupons", (404,), example=ex.page(ex.COUPON)),
)
async def list_coupons(
    promotion_id: PathId,
    svc: Svc,
    status: Annotated[
        Literal["active", "deactivated"] | None,
        Query(description="Only coupons in this status (as each one's `status` reads)"),
    ] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
    updated_since: UpdatedSince = None,
) -> CouponList:
    """Never the codes: each shows its last characters (a third of it, four at most). By id,
    or with `updated_since` the change feed (oldest change first: a coupon reserved, redeemed,
    released or deactivated moves to its end), polled again from the last `updated_at` seen
    without missing one. A cursor is good only with the `status` it was given for (another is
    a 400 naming `cursor`)."""
    ask = pb.ListCouponsRequest(
        promotion_id=promotion_id,
        page_size=limit,
        page_token=cursor or "",
        status=_COUPON_STATUSES[status or ""],
    )
    if updated_since is not None:
        ask.updated_since.CopyFrom(timestamp(updated_since))
    answer = await svc.promotion.ListCoupons(ask)
    return to_page(CouponList, answer.coupons, answer.next_page_token)


_COUPON_STATUSES = {
    "": pb.COUPON_STATUS_UNSPECIFIED,
    "active": pb.COUPON_STATUS_ACTIVE,
    "deactivated": pb.COUPON_STATUS_DEACTIVATED,
}


@router.get(
    "/promotions/{promotion_id}/coupons/{coupon_id}",
    **op("promotions:read", "Get a coupon", (404,), example=ex.COUPON),
)
async def get_coupon(promotion_id: PathId, coupon_id: PathId, svc: Svc) -> Coupon:
    """Never its code. A coupon of another promotion is a 404, as a missing one."""
    answer = await svc.promotion.GetCoupon(
        pb.GetCouponRequest(promotion_id=promotion_id, id=coupon_id)
    )
    return to_model(Coupon, answer.coupon)


@router.post(
    "/promotions/{promotion_id}/coupons/{coupon_id}/deactivate",
    **op("promotions:write", "Deactivate a coupon", (404, 409, 422), example=ex.COUPON_DEACTIVATED),
)
async def deactivate_coupon(
    promotion_id: PathId, coupon_id: PathId, svc: Svc, request: Request
) -> Coupon:
    """This one code stops applying (a code that leaked, say): a cart naming it gets it back
    as a rejected coupon and a checkout or order naming it is a 409 `coupon_deactivated`
    naming its place in `coupon_codes`. Its promotion and its other codes go on. A use
    reserved before (an order awaiting payment) still redeems on confirmation, as after the
    promotion ends. Final; deactivating a deactivated coupon answers it unchanged. In the audit
    log as `coupon.deactivated` (its promotion and `code_hint`), once."""
    async with guarded(request, "coupon.deactivated") as done:
        answer = await svc.promotion.DeactivateCoupon(
            pb.DeactivateCouponRequest(
                request_id=request_id(), promotion_id=promotion_id, id=coupon_id
            )
        )
        done.resource = ("coupon", coupon_id)
        done.details = {"promotion_id": promotion_id, "code_hint": answer.coupon.code_hint}
        # Of deactivations at once, the one the service says made it.
        done.changed = answer.changed
    return to_model(Coupon, answer.coupon)
