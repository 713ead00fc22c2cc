"""Customer groups (/v1/customer-groups) and the loyalty program (/v1/loyalty-program)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import Field, StrictBool

from pos.customer.v1 import customer_pb2, loyalty_pb2
from pos.promotion.v1 import promotion_pb2
from pos_gateway import examples as ex
from pos_gateway.actions import back_office_only, guarded, settings_changed
from pos_gateway.clients import Services
from pos_gateway.convert import to_model, to_page
from pos_gateway.problems import Problem
from pos_gateway.routes.common import (
    CREATE,
    INT32,
    INT64,
    Body,
    Cursor,
    IfMatch,
    Limit,
    Patch,
    PathId,
    Sku,
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
from pos_gateway.schemas.people import Group, GroupList, LoyaltyProgram
from pos_kit.ids import new_id

router = APIRouter(prefix="/v1", tags=["customers"])
Svc = Annotated[Services, Depends(services)]
CustomerId = Annotated[str, Field(min_length=1, max_length=64)]


class GroupIn(Body):
    model_config = example({"name": "VIP", "description": "Spent over 1,000 last year"})

    name: str = Field(min_length=1, max_length=100)
    description: str = Field("", max_length=500)


class GroupPatch(Patch):
    model_config = example({"name": "Gold", "description": "Spent over 2,000 last year"})

    name: str | None = Field(None, min_length=1, max_length=100)
    description: str | None = Field(None, max_length=500)


class MembersIn(Body):
    model_config = example({"customer_ids": [ex.CUSTOMER_ID]})

    customer_ids: list[CustomerId] = Field(min_length=1, max_length=1000)


class LoyaltyTierIn(Body):
    name: str = Field(min_length=1, max_length=50)
    threshold_points: int = Field(ge=0, le=10**12, json_schema_extra=INT64)
    multiplier_bps: int = Field(
        10_000, ge=10_000, le=100_000, json_schema_extra=INT32, description="15000 = x1.5"
    )


class ProgramIn(Body):
    model_config = example({k: v for k, v in ex.LOYALTY_PROGRAM.items() if k != "version"})

    enabled: StrictBool = True
    points_per_unit: int = Field(
        1, ge=0, le=1000, json_schema_extra=INT64, description="Per whole currency unit"
    )
    rounding: str = Field("down", pattern="^(down|nearest)$", max_length=10)
    earning_tenders: list[Literal["card", "cash", "gift_card", "external"]] = Field(
        [],
        max_length=4,
        description="card, cash, gift_card, external; empty: every tender earns",
    )
    excluded_skus: list[Sku] = Field([], max_length=1000)
    tiers: list[LoyaltyTierIn] = Field([], max_length=20)
    expiry_days: int = Field(
        0,
        ge=0,
        le=3650,
        json_schema_extra=INT32,
        description="Points earned or credited by hand expire this many days after they were "
        "credited, oldest first; 0: never",
    )
    tier_period_days: int = Field(
        0, ge=0, le=3650, json_schema_extra=INT32, description="0: all time"
    )
    point_value_minor: int = Field(
        1, ge=0, le=1_000_000, json_schema_extra=INT64, description="What a redeemed point is worth"
    )


@router.post(
    "/customer-groups",
    **op("customers:write", "Create a customer group", CREATE, example=ex.GROUP, status=201),
)
async def create_group(body: GroupIn, svc: Svc, request: Request, response: Response) -> Group:
    """Back office only: a group's members get its promotions' prices (see the members route).
    Made at `version` 1 (also the ETag). A name another group has, in any case and outer
    spaces aside (`VIP`, `vip `), is a 409 `group_name_taken` naming `name`."""
    back_office_only(request, "customer groups")
    answer = await svc.customer.CreateGroup(
        customer_pb2.CreateGroupRequest(
            request_id=request_id(), name=body.name, description=body.description
        )
    )
    return _etag(response, answer.group)


def _etag(response: Response, group: customer_pb2.Group) -> Group:
    """The answer, with its version as the ETag for the next change's If-Match."""
    response.headers["ETag"] = f'"{group.version}"'
    return to_model(Group, group)


@router.get(
    "/customer-groups", **op("customers:read", "List customer groups", example=ex.page(ex.GROUP))
)
async def list_groups(
    svc: Svc, limit: Limit = 50, cursor: Cursor = None, updated_since: UpdatedSince = None
) -> GroupList:
    """The groups there by id, or with `updated_since` the change feed (oldest change first:
    a group renamed or described anew, a new `version`, moves to its end), polled again from
    the last `updated_at` seen without missing one. The feed also holds the groups deleted
    since, so a poller learns they are gone: each at the time of its deletion, as a tombstone
    (`status: deleted`, a new `version`, `member_count` 0)."""
    ask = customer_pb2.ListGroupsRequest(page_size=limit, page_token=cursor or "")
    if updated_since is not None:
        ask.updated_since.CopyFrom(timestamp(updated_since))
    answer = await svc.customer.ListGroups(ask)
    return to_page(GroupList, answer.groups, answer.next_page_token)


@router.get(
    "/customer-groups/{group_id}",
    **op("customers:read", "Get a customer group", (404,), example=ex.GROUP),
)
async def get_group(group_id: PathId, svc: Svc, response: Response) -> Group:
    """The ETag is the version, for `If-Match` on a change."""
    answer = await svc.customer.GetGroup(customer_pb2.GetGroupRequest(id=group_id))
    return _etag(response, answer.group)


@router.patch(
    "/customer-groups/{group_id}",
    **op("customers:write", "Change a customer group", (404, 409, 412),
         example={**ex.GROUP, "name": "Gold", "version": 2}),
)  # fmt: skip
async def update_group(
    group_id: PathId,
    body: GroupPatch,
    svc: Svc,
    request: Request,
    response: Response,
    if_match: IfMatch = None,
) -> Group:
    """Only the fields given change; a name another group has, in any case and outer spaces
    aside, is a 409 `group_name_taken` naming `name` (the group's own in another case is a
    rename).
    Each change bumps the group's `version` (what it already is changes nothing); send
    `If-Match: "<version>"` to change only the version you saw: a stale one is a 412
    `version_mismatch` with `current_version`, and nothing changes. Members keep their
    `version`: a customer's groups are ids, which do not change. Back office only, as
    creating a group is."""
    back_office_only(request, "customer groups")
    version = expected_version(if_match)
    answer = await version_checked(
        svc.customer.UpdateGroup(
            customer_pb2.UpdateGroupRequest(
                request_id=request_id(), id=group_id, expected_version=version, **patched(body)
            )
        )
    )
    return _etag(response, answer.group)


@router.delete(
    "/customer-groups/{group_id}",
    **op("customers:write", "Delete a customer group", (404, 409, 412), example=ex.GROUP),
)
async def delete_group(
    group_id: PathId, svc: Svc, request: Request, if_match: IfMatch = None
) -> Group:
    """Its members leave it as removing them would (each gets a new `version` and a
    `customer.updated` event). Refused while a promotion that is not ended names the group in
    its `conditions.customer_groups`: a 409 `group_in_use` with their `promotion_ids` (change
    their conditions or end them first), since deleted under it such a promotion would read
    as active and price nobody's cart. Ended promotions do not count, and keep naming the
    group as they ran. The group then shows in the list's `updated_since` feed as deleted
    (`status: deleted`), and nowhere else. A promotion created or changed to name the group
    while it is being deleted is refused as naming a group that is not there (404 naming
    `conditions.customer_groups[i]`): of the two at once, one is refused, never both
    applied. Answers the group as it was, with its `member_count` then. Send
    `If-Match: "<version>"` to delete only the version you saw: a stale one is a 412
    `version_mismatch` with `current_version`, and nothing is deleted. Back office only."""
    back_office_only(request, "customer groups")
    version = expected_version(if_match)
    # Another merchant's group, or none, is the 404 before anything of the promotions is read.
    await svc.customer.GetGroup(customer_pb2.GetGroupRequest(id=group_id))
    # The promotion service retires the group first, unless a live promotion names it: from
    # then on it refuses any promotion naming it, decided under one lock per group in its own
    # transaction, so a promotion written at the same moment is either seen here or refused
    # there. No connection is held across the calls (the gateway's or a service's).
    retirement = new_id("gret")
    retired = await svc.promotion.RetireCustomerGroup(
        promotion_pb2.RetireCustomerGroupRequest(request_id=retirement, group_id=group_id)
    )
    if retired.promotion_ids:
        naming = list(retired.promotion_ids)
        raise Problem(
            409,
            "group_in_use",
            f"{len(naming)} promotion(s) not ended name this group: change their "
            "conditions.customer_groups or end them first",
            extra={"promotion_ids": naming},
        )
    try:
        answer = await version_checked(
            svc.customer.DeleteGroup(
                customer_pb2.DeleteGroupRequest(
                    request_id=request_id(), id=group_id, expected_version=version
                )
            )
        )
    except Problem as refused:
        # A stale If-Match: the group stays, and promotions may name it again. Any other
        # failure leaves it retired (it may be gone: a retried DELETE ends the deletion), so
        # no promotion names a group that was deleted.
        if refused.status == 412:
            await svc.promotion.ReinstateCustomerGroup(
                promotion_pb2.ReinstateCustomerGroupRequest(
                    request_id=new_id("grein"), group_id=group_id, retirement_id=retirement
                )
            )
        raise
    return to_model(Group, answer.group)


@router.post(
    "/customer-groups/{group_id}/members",
    **op("customers:write", "Add customers to a group", (404, 409, 410), example=ex.GROUP),
)
async def add_members(group_id: PathId, body: MembersIn, svc: Svc, request: Request) -> Group:
    """Customers already in the group stay once; an unknown customer is a 404 naming its
    `customer_ids[i]`, and one merged into another a 409 `customer_merged` with `merged_into`
    (add that one); either adds none. That 409 names both customers: once either is erased,
    a retry with the same Idempotency-Key answers 410 `customer_erased`.
    Each customer who joins gets a new `version` and a `customer.updated` event (promotions
    for the group apply to their next sale). Back office only: a register's credential is
    refused (403 `insufficient_scope`), whoever is signed in at it, since joining a group
    gives its prices at every store (a till could otherwise give its own customer a staff or
    VIP discount no manager approved)."""
    back_office_only(request, "customer groups")
    answer = await svc.customer.AddGroupMembers(
        customer_pb2.AddGroupMembersRequest(
            request_id=request_id(), group_id=group_id, customer_ids=body.customer_ids
        )
    )
    return to_model(Group, answer.group)


@router.post(
    "/customer-groups/{group_id}/members/remove",
    **op("customers:write", "Remove customers from a group", (404,), example=ex.GROUP),
)
async def remove_members(group_id: PathId, body: MembersIn, svc: Svc, request: Request) -> Group:
    """Each customer who leaves gets a new `version` and a `customer.updated` event; an
    unknown or erased customer is a 404 naming its `customer_ids[i]`, and none leaves. Back
    office only, as adding members is."""
    back_office_only(request, "customer groups")
    answer = await svc.customer.RemoveGroupMembers(
        customer_pb2.RemoveGroupMembersRequest(
            request_id=request_id(), group_id=group_id, customer_ids=body.customer_ids
        )
    )
    return to_model(Group, answer.group)


@router.get(
    "/loyalty-program",
    **op("customers:read", "The loyalty program", example=ex.LOYALTY_PROGRAM),
)
async def get_program(svc: Svc, response: Response) -> LoyaltyProgram:
    """Version 1 is the program every merchant starts with: one point per whole unit spent."""
    answer = await svc.customer.GetLoyaltyProgram(loyalty_pb2.GetLoyaltyProgramRequest())
    response.headers["ETag"] = f'"{answer.program.version}"'
    return to_model(LoyaltyProgram, answer.program)


@router.put(
    "/loyalty-program",
    **op("customers:write", "Set the loyalty program", (409, 412), example=ex.LOYALTY_PROGRAM),
)
async def set_program(
    body: ProgramIn, request: Request, svc: Svc, response: Response, if_match: IfMatch = None
) -> LoyaltyProgram:
    """The whole program. Send `If-Match` with the version you read to replace only that
    version (a stale one is a 412 with `current_version`); without it the program is replaced
    whatever its version. Each change bumps `version` and is in the audit log
    (`settings.loyalty_changed`, each field from and to); the same program again changes
    nothing. A change of the tiers or `tier_period_days` re-tiers the customers: each one whose
    tier moves is a new version (`customer.updated`, `loyalty.tier_changed`), and a customer
    read shows the new program's tier, not the one of their last earn. The first 500 customers
    are re-tiered with the change itself (every customer of most merchants); past that, the rest
    within seconds in the background, reading their previous tier until then. A register's
    credential is refused (403 `insufficient_scope`), whoever is signed in at it: the program
    is every store's, and what a point is worth is money."""
    program = loyalty_pb2.LoyaltyProgram(
        **body.model_dump(exclude={"tiers"}),
        tiers=[loyalty_pb2.Tier(**t.model_dump()) for t in body.tiers],
    )
    async with guarded(request, "settings.loyalty_changed", settings="the loyalty program") as done:
        answer = await version_checked(
            svc.customer.SetLoyaltyProgram(
                loyalty_pb2.SetLoyaltyProgramRequest(
                    request_id=request_id(),
                    program=program,
                    expected_version=expected_version(if_match),
                )
            )
        )
        settings_changed(
            done, _fields(answer.previous), _fields(answer.program), answer.program.version
        )
    response.headers["ETag"] = f'"{answer.program.version}"'
    return to_model(LoyaltyProgram, answer.program)


def _fields(program: loyalty_pb2.LoyaltyProgram) -> dict[str, object]:
    """The program as its audit entry shows it: every field but the version."""
    return to_model(LoyaltyProgram, program).model_dump(mode="json", exclude={"version"})
