"""Customers: /v1/customers (profiles, search, import, merge, erasure, export, loyalty points
and purchase history of one customer)."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import grpc
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BeforeValidator, Field, StrictBool

from pos.customer.v1 import customer_pb2, loyalty_pb2
from pos.order.v1 import order_pb2
from pos.payment.v1 import gift_cards_pb2
from pos_gateway import examples as ex
from pos_gateway.actions import guarded, principal_of
from pos_gateway.auth import Principal, not_for_a_register
from pos_gateway.clients import Services
from pos_gateway.convert import to_json, to_model, to_page
from pos_gateway.idempotency import ERASED_ANSWER
from pos_gateway.problems import (
    ERASED_IDS,
    Problem,
    from_rpc_error,
)
from pos_gateway.routes.common import (
    COUNTRY_DESCRIPTION,
    INT64,
    PROFILE_CREATE,
    TIME_SCHEMA,
    AssignedCountry,
    Body,
    BodyTime,
    Cursor,
    IfMatch,
    Limit,
    NotBlank,
    Patch,
    PathId,
    QueryId,
    Rfc3339,
    UpdatedSince,
    any_version,
    example,
    expected_version,
    op,
    patched,
    request_id,
    services,
    timestamp,
    version_checked,
)
from pos_gateway.schemas.people import (
    Customer,
    CustomerExport,
    CustomerImport,
    CustomerList,
    ErasedCustomer,
    MergedCustomers,
    PointsAdjustment,
    PointsHistory,
    PurchaseHistory,
    UpsertedCustomer,
)
from pos_kit.grpc_client import read_error

router = APIRouter(prefix="/v1", tags=["customers"])
Svc = Annotated[Services, Depends(services)]


# The customer service's rule (no space, one @, a dot after it), stated in the document so a
# client can check it first. Control characters are named outright: regex engines disagree on
# which of them `\s` covers (Python's includes \x1c-\x1f, JSON Schema's does not).
_PART = r"[^@\s\x00-\x1f\x7f-\x9f]+"
EMAIL = rf"^{_PART}@{_PART}\.{_PART}$"
Name = Annotated[str, Field(max_length=100)]
Text200 = Annotated[str, Field(max_length=200)]


class CustomerAddressIn(Body):
    label: Text200 = ""
    line1: str = Field(min_length=1, max_length=200)
    line2: Text200 = ""
    city: Text200 = ""
    region: Text200 = ""
    postal_code: Text200 = ""
    country: Annotated[
        str,
        Field(pattern=r"^[A-Z]{2}$", min_length=2, max_length=2, description=COUNTRY_DESCRIPTION),
        AssignedCountry,
    ]


def _time_text(value: object) -> object:
    # pydantic would take a number as seconds since 1970; the API promises RFC 3339 text.
    if value is not None and not isinstance(value, str):
        raise ValueError("must be an RFC 3339 time with an offset, e.g. 2026-01-31T09:00:00Z")
    return value


class ConsentIn(Body):
    granted: StrictBool
    given_at: Annotated[BodyTime | None, BeforeValidator(_time_text), Rfc3339] = Field(
        None, description="Required when granted", json_schema_extra=TIME_SCHEMA
    )
    channel: str = Field(
        "", max_length=20, description="web, in_store, email, sms, phone, app or import"
    )


_PROFILE_EXAMPLE = {
    "email": "ada@example.com",
    "phone": "+44 20 7946 0958",
    "given_name": "Ada",
    "family_name": "Lovelace",
    "external_id": "crm-1042",
    "birthday": "1985-12-10",
    "marketing_consent": {
        "granted": True,
        "given_at": "2026-01-15T09:30:00Z",
        "channel": "in_store",
    },
    "addresses": [{"label": "home", "line1": "12 St James's Square", "city": "London",
                   "postal_code": "SW1Y 4LB", "country": "GB"}],
    "tags": ["vip"],
}  # fmt: skip


class ProfileIn(Body):
    """Profile fields; on a change, only those sent change (an empty string clears one)."""

    email: str | None = Field(None, max_length=254, pattern=rf"({EMAIL})|^$")
    phone: str | None = Field(
        None, max_length=30, description="With its country code; stored as E.164"
    )
    given_name: Name | None = None
    family_name: Name | None = None
    external_id: str | None = Field(None, max_length=100, description="Your own id, unique")
    birthday: str | None = Field(
        None, pattern=r"^(\d{4}-\d{2}-\d{2})?$", max_length=10, description="YYYY-MM-DD"
    )
    notes: str | None = Field(None, max_length=2000)
    marketing_consent: ConsentIn | None = None
    addresses: list[CustomerAddressIn] | None = Field(None, max_length=10)
    tags: list[Annotated[str, Field(min_length=1, max_length=50)]] | None = Field(
        None, max_length=50
    )

    def pb(self) -> customer_pb2.ProfileFields:
        fields = self.model_dump(exclude_unset=True)
        out = customer_pb2.ProfileFields()
        for name in (
            "email", "phone", "given_name", "family_name", "external_id", "birthday", "notes",
        ):  # fmt: skip
            if fields.get(name) is not None:
                setattr(out, name, fields[name])
        consent = self.marketing_consent
        if consent is not None:
            out.marketing_consent.granted = consent.granted
            out.marketing_consent.channel = consent.channel
            if consent.given_at is not None:
                out.marketing_consent.given_at.CopyFrom(timestamp(consent.given_at, "given_at"))
        if self.addresses is not None:
            out.addresses.SetInParent()
            for a in self.addresses:
                out.addresses.addresses.add(**a.model_dump())
        if self.tags is not None:
            out.tags.SetInParent()
            out.tags.tags.extend(self.tags)
        return out


class CustomerPatch(Patch, ProfileIn):
    model_config = example({"given_name": "Augusta Ada", "tags": ["vip", "newsletter"]})


class CustomerIn(ProfileIn):
    model_config = example(_PROFILE_EXAMPLE)

    # Not nullable, as they were before the other fields came: "" or absent is none.
    email: str = Field("", max_length=254, pattern=rf"({EMAIL})|^$")
    given_name: Name = ""
    family_name: Name = ""


class CustomerUpsert(ProfileIn):
    model_config = example({"external_id": "crm-1042", "email": "ada@example.com"})

    external_id: str = Field(min_length=1, max_length=100, description="Your own id, unique")


class CustomerBatch(Body):
    model_config = example({"customers": [{"external_id": "crm-1042", "given_name": "Ada"}]})

    customers: list[CustomerUpsert] = Field(min_length=1, max_length=1000)


class MergeIn(Body):
    model_config = example({"duplicate_id": "cus_01j9x6q7r8s9t0v1w2x3y4z5zz"})

    duplicate_id: Annotated[
        str,
        Field(
            min_length=1,
            max_length=64,
            description="The customer merged away: its points, purchases and groups move here",
        ),
        NotBlank,
    ]


class PointsAdjustmentIn(Body):
    model_config = example({"points": -50, "reason": "Goodwill correction"})

    points: int = Field(
        ge=-(10**12), le=10**12, json_schema_extra=INT64, description="Not zero; + or -"
    )
    reason: str = Field(min_length=1, max_length=500)


def _principal(request: Request) -> Principal:
    principal: Principal = request.state.principal
    return principal


@router.post(
    "/customers",
    **op("customers:write", "Create a customer", PROFILE_CREATE, example=ex.CUSTOMER,
         status=201),
)  # fmt: skip
async def create_customer(body: CustomerIn, svc: Svc, response: Response) -> Customer:
    """A customer needs an email, a phone, a name or an external_id; email and external_id
    are unique per merchant (409 `email_taken`, `external_id_taken`). The ETag is the
    version, for the first PATCH's If-Match. Once the customer is erased, a retry with the
    same Idempotency-Key answers 410 `customer_erased` and creates nothing."""
    answer = await svc.customer.CreateCustomer(
        customer_pb2.CreateCustomerRequest(request_id=request_id(), profile=body.pb())
    )
    response.headers["ETag"] = f'"{answer.customer.version}"'
    return to_model(Customer, answer.customer)


@router.get(
    "/customers", **op("customers:read", "List customers", (404,), example=ex.page(ex.CUSTOMER))
)
async def list_customers(
    svc: Svc,
    limit: Limit = 50,
    cursor: Cursor = None,
    updated_since: UpdatedSince = None,
    group_id: Annotated[
        QueryId | None,
        Query(
            description="Only the members of this customer group; one you do not have is a "
            "404 `resource_missing` problem"
        ),
    ] = None,
) -> CustomerList:
    """Your active customers by id, or with `updated_since` the change feed (oldest change
    first), which also holds the customers merged away or erased since then, so a poller
    learns of them as an event reader does: a duplicate merged into another as it reads
    (`status: merged`, `merged_into` naming the survivor, no personal data), an erased
    customer as a tombstone (`status: erased`: `id`, `version`, `created_at` and `updated_at`,
    every other field empty). Each is there at the time of the merge or the erasure.
    `group_id` narrows either to the group's members (a customer merged or erased has left
    its groups, so it is not among them); a cursor pages on only with the filters it was given
    with."""
    request = customer_pb2.ListCustomersRequest(
        page_size=limit, page_token=cursor or "", group_id=group_id or ""
    )
    if updated_since is not None:
        request.updated_since.CopyFrom(timestamp(updated_since))
    answer = await svc.customer.ListCustomers(request)
    return to_page(CustomerList, answer.customers, answer.next_page_token)


@router.get(
    "/customers/search",
    **op(
        "customers:read", "Search customers", example=ex.page(ex.CUSTOMER) | {"next_cursor": None}
    ),
)
async def search_customers(
    svc: Svc,
    email: Annotated[str, Query(max_length=254, description="Exact, any case")] = "",
    phone: Annotated[str, Query(max_length=30, description="Exact, any formatting")] = "",
    external_id: Annotated[str, Query(max_length=100)] = "",
    q: Annotated[
        str,
        Query(
            max_length=200,
            description="Words that start a word of the name, the email or the phone; case "
            "and accents ignored. A word with an @ starts the whole email (`ada@exa`)",
        ),
    ] = "",
    limit: Annotated[int, Query(ge=1, le=100, description="At most 100 (default 20)")] = 20,
    cursor: Cursor = None,
) -> CustomerList:
    """The filters that are given must all match; one of them is required. Pages follow
    `next_cursor`, good for the same filters only: by id for the exact ones, in the order of
    the word that matched for `q`. A filter of spaces only is a 400 naming it."""
    for name, given in (("email", email), ("phone", phone), ("external_id", external_id),
                        ("q", q)):  # fmt: skip
        # Sent but blank finds nothing by any rule: a mistake, named (it answered an empty
        # page as if searched until 2026-12-05).
        if given and not given.strip():
            why = {"field": name, "reason": "must not be blank"}
            raise Problem(400, "invalid_request", f"{name} must not be blank", [why])
    try:
        answer = await svc.customer.SearchCustomers(
            customer_pb2.SearchCustomersRequest(
                email=email,
                phone=phone,
                external_id=external_id,
                query=q,
                page_size=limit,
                page_token=cursor or "",
            )
        )
    except grpc.aio.AioRpcError as exc:
        # The service's `query` is this operation's `q` parameter: a refusal names what was
        # sent (more than five words, or none a search can use).
        refused = from_rpc_error(exc)
        for error in refused.errors:
            if error["field"] == "query":
                error["field"] = "q"
                error["reason"] = error["reason"].replace("query", "q")
        raise refused from None
    return to_page(CustomerList, answer.customers, answer.next_page_token)


@router.post(
    "/customers/upsert",
    **op("customers:write", "Create or update a customer by external_id", (*PROFILE_CREATE, 412),
         example={"customer": ex.CUSTOMER, "created": False}),
)  # fmt: skip
async def upsert_customer(
    body: CustomerUpsert, svc: Svc, response: Response, if_match: IfMatch = None
) -> UpsertedCustomer:
    """Send `If-Match: "<version>"` to update only the version you saw: a stale one is a 412
    `version_mismatch` with `current_version`. With If-Match only an existing customer is
    updated: when none has the external_id the answer is a 412 `version_mismatch` with
    `current_version` 0 (RFC 9110: If-Match is false when there is nothing current), and
    nothing is created; `If-Match: *` updates the customer whatever its version, and likewise
    creates none.

    Once the customer is erased, a retry with the same Idempotency-Key answers 410
    `customer_erased` and neither creates nor updates anything."""
    answer = await version_checked(
        svc.customer.UpsertCustomer(
            customer_pb2.UpsertCustomerRequest(
                request_id=request_id(),
                profile=body.pb(),
                expected_version=expected_version(if_match),
                require_existing=any_version(if_match),
            )
        )
    )
    response.headers["ETag"] = f'"{answer.customer.version}"'
    return UpsertedCustomer.model_validate(
        {"customer": to_model(Customer, answer.customer).model_dump(), "created": answer.created}
    )


@router.post(
    "/customers/batch",
    **op("customers:write", "Import up to 1,000 customers by external_id", PROFILE_CREATE,
         example={"data": [ex.CUSTOMER], "created": 1, "updated": 0}),
)  # fmt: skip
async def import_customers(body: CustomerBatch, svc: Svc) -> CustomerImport:
    """All of them or none: one bad item is a 400 naming it (`customers[3].email`). Once any
    customer of the answer is erased, the whole answer is gone: a retry with the same
    Idempotency-Key answers 410 `customer_erased` and imports nothing."""
    answer = await svc.customer.BatchUpsertCustomers(
        customer_pb2.BatchUpsertCustomersRequest(
            request_id=request_id(), customers=[c.pb() for c in body.customers]
        )
    )
    return CustomerImport.model_validate(
        {
            "data": [to_model(Customer, c).model_dump() for c in answer.customers],
            "created": answer.created,
            "updated": answer.updated,
        }
    )


@router.get(
    "/customers/{customer_id}",
    **op("customers:read", "Get a customer with its loyalty balance", (404,), example=ex.CUSTOMER),
)
async def get_customer(customer_id: PathId, svc: Svc, response: Response) -> Customer:
    """A customer merged into another answers with `status: merged` and `merged_into`. The
    ETag is the `version`, which changes with anything answered here: a change of the loyalty
    balance, the points held or the tier too (announced as `customer.updated`)."""
    answer = await svc.customer.GetCustomer(customer_pb2.GetCustomerRequest(id=customer_id))
    response.headers["ETag"] = f'"{answer.customer.version}"'
    return to_model(Customer, answer.customer)


@router.patch(
    "/customers/{customer_id}",
    **op("customers:write", "Update a customer", (404, 409, 412), example=ex.CUSTOMER),
)
async def update_customer(
    customer_id: PathId,
    body: CustomerPatch,
    svc: Svc,
    response: Response,
    if_match: IfMatch = None,
) -> Customer:
    """Only the fields sent change (an empty string clears one; null is a 400 naming the
    field, and a body with no field a 400, nothing changed). Send `If-Match: "<version>"` to
    update only the version you saw; a stale one is a 412. A customer merged into another
    still reads, but changes no more: a 409 `customer_merged` with `merged_into` (change that
    one; the same for its merges, points adjustments, group memberships, export and purchase
    history)."""
    patched(body)
    request = customer_pb2.UpdateCustomerRequest(
        request_id=request_id(),
        id=customer_id,
        expected_version=expected_version(if_match),
        profile=body.pb(),
    )
    answer = await version_checked(svc.customer.UpdateCustomer(request))
    response.headers["ETag"] = f'"{answer.customer.version}"'
    return to_model(Customer, answer.customer)


@router.delete(
    "/customers/{customer_id}",
    **op("customers:write", "Erase a customer's personal data", (404, 409),
         example={"id": ex.CUSTOMER_ID, "erased_at": ex.UPDATED}),
)  # fmt: skip
async def erase_customer(customer_id: PathId, svc: Svc, request: Request) -> ErasedCustomer:
    """The right to be forgotten: name, email, phone, addresses, birthday, notes, consent and
    tags are erased, the customer leaves its groups and answers 404 from then on, and a
    `customer.erased` event (the id only) tells every other service. Points history and
    purchases stay, with no personal data in them. The erasure is recorded (when, by which
    credential). Every answer stored under an Idempotency-Key that held the customer is
    replaced by a 410 `customer_erased` problem: a retry of such a request (a create, an
    upsert, an import holding the customer) never runs again and never brings it back. A
    merge's answer naming the customer as the duplicate merged away is kept, with the
    duplicate's personal fields emptied: a retry of that merge replays it.

    While an open order holds the customer's points (a sale redeeming them, not yet confirmed
    or cancelled) the erasure is refused, 409 `points_held` with that order's `order_id`: the
    order's confirmation redeems them from this customer. Erase once it is settled.

    At a register it cannot be undone by anyone, so someone must be signed in (403
    `staff_sign_in_required`), and it is in the audit log with the member (`customer.erased`,
    the id only)."""
    principal = _principal(request)
    # No permission of its own: a new value of the public `Permission` enum (which overrides
    # answer too) would break clients of this API version; accountable by name meanwhile.
    try:
        async with guarded(request, "customer.erased", always=False) as done:
            answer = await svc.customer.EraseCustomer(
                customer_pb2.EraseCustomerRequest(
                    request_id=request_id(), id=customer_id, requested_by=principal.key_id
                )
            )
            done.resource = ("customer", customer_id)
    except grpc.aio.AioRpcError as exc:
        # Erased already: still a 404, but an earlier erasure may have committed and failed
        # here before withdrawing (its answer lost, this gateway stopped): the retry does it.
        erased = read_error(exc).metadata.get(ERASED_IDS, "")
        await _withdraw(request, principal.merchant_id, [i for i in erased.split(",") if i])
        raise
    # The duplicates merged into it went with it: the answers that created them held the
    # same person's email, phone and name.
    await _withdraw(request, principal.merchant_id, [customer_id, *answer.merged_customer_ids])
    return to_model(ErasedCustomer, answer)


async def _withdraw(request: Request, merchant_id: str, erased: list[str]) -> None:
    """The answers stored under Idempotency-Keys that hold these erased customers become a 410
    `customer_erased`: their keys stay spent, so a retry cannot create a customer again. A
    merge's answer naming one as the duplicate merged away is kept (its retry replays it),
    the duplicate's personal fields emptied: it holds the survivor's profile, not theirs.
    Recorded first: an answer stored after this withdrawal that names one of them is kept as
    the 410 too (`IdempotencyStore.complete`)."""
    await request.app.state.idempotency.record_erasures(merchant_id, erased)
    for customer_id in erased:
        await request.app.state.idempotency.withdraw_answers_naming(
            merchant_id,
            customer_id,
            ERASED_ANSWER,
            keep=lambda status, body, gone=customer_id: _merge_kept(status, body, gone),
        )


# What a merged duplicate keeps in a merge's answer once erased: no personal data.
_KEPT_OF_DUPLICATE = frozenset(
    {"id", "loyalty_points", "version", "created_at", "updated_at", "status", "merged_into",
     "points_held", "tier"}
)  # fmt: skip


def _merge_kept(status: int, body: bytes, erased_id: str) -> bytes | None:
    """A merge's stored answer as the erasure of its duplicate leaves it (its personal fields
    emptied); None for any other answer, or when the erased customer is the survivor."""
    if status != 200:
        return None
    try:
        answer = json.loads(body)
    except ValueError:
        return None
    if not isinstance(answer, dict) or set(answer) != {"winner", "loser"}:
        return None
    loser, winner = answer["loser"], answer["winner"]
    if not isinstance(loser, dict) or not isinstance(winner, dict):
        return None
    if loser.get("id") != erased_id or winner.get("id") == erased_id:
        return None
    for field, value in loser.items():
        if field in _KEPT_OF_DUPLICATE:
            continue
        if isinstance(value, str):
            loser[field] = ""
        elif isinstance(value, list):
            loser[field] = []
        elif field == "marketing_consent" and value is not None:
            loser[field] = {"granted": False, "given_at": None, "channel": ""}
        else:
            loser[field] = None
    return json.dumps(answer, separators=(",", ":")).encode()


@router.post(
    "/customers/{customer_id}/merge",
    **op("customers:write", "Merge a duplicate into this customer", (404, 409, 410),
         example={"winner": ex.CUSTOMER, "loser": ex.CUSTOMER | {"status": "merged"}}),
)  # fmt: skip
async def merge_customers(
    customer_id: PathId, body: MergeIn, svc: Svc, request: Request
) -> MergedCustomers:
    """The duplicate's points, purchase history, held points and groups move to this customer;
    the duplicate keeps no personal data and answers `status: merged` with `merged_into`.
    A sale, an order or a cart preview naming the duplicate afterwards is this customer's (the
    order names this id; the order service learns the merge from its event, within moments).
    The gift cards issued to the duplicate (store credit, cards bought for them) become this
    customer's the same way: `GET /v1/gift-cards?customer_id=` lists them here, each at a new
    version. A customer is not merged into itself (a 400 naming `duplicate_id`); one merged
    away already, on either side, is a 409 `customer_merged` with `merged_into` (naming
    `duplicate_id` when it is the duplicate), and an unknown duplicate a 404 naming it.

    At a register, as an erasure, it cannot be undone by anyone, so someone must be signed in
    (403 `staff_sign_in_required`), and it is in the audit log with the member
    (`customer.merged`, the duplicate's id). A duplicate with points (or points held) moves
    them as a points adjustment would: at a register that takes the `refund` permission or a
    manager's override (403 `permission_required`), and nothing is merged without it."""
    if body.duplicate_id == customer_id:
        why = {"field": "duplicate_id", "reason": "cannot merge a customer into itself"}
        raise Problem(400, "invalid_request", "the request is not valid", [why])
    try:
        async with guarded(
            request, "customer.merged", "refund", always=False, required=False
        ) as done:
            answer = await svc.customer.MergeCustomers(
                customer_pb2.MergeCustomersRequest(
                    request_id=request_id(), winner_id=customer_id, loser_id=body.duplicate_id,
                    points_not_permitted=not done.permitted,
                )
            )  # fmt: skip
            done.resource = ("customer", customer_id)
            done.details = {"duplicate_id": body.duplicate_id}
    except grpc.aio.AioRpcError as exc:
        # The service names the duplicate `loser_id`; the caller wrote `duplicate_id`.
        problem = from_rpc_error(exc)
        for error in problem.errors:
            if error["field"] == "loser_id":
                error["field"] = "duplicate_id"
        raise problem from None
    return MergedCustomers.model_validate(
        {
            "winner": to_model(Customer, answer.winner).model_dump(),
            "loser": to_model(Customer, answer.loser).model_dump(),
        }
    )


@router.get(
    "/customers/{customer_id}/export",
    **op("customers:read", "Export everything held about a customer", (404, 409),
         example={"customer": ex.CUSTOMER, "groups": [ex.GROUP],
                  "points_history": [ex.POINTS_ENTRY], "orders": [ex.PURCHASE],
                  "sales": [ex.ORDER], "gift_cards": [ex.GIFT_CARD],
                  "merged_customer_ids": []},
         also=("orders:read", "payments:read")),
)  # fmt: skip
async def export_customer(customer_id: PathId, request: Request, svc: Svc) -> CustomerExport:
    """What every service holds about the customer, as JSON: the profile, groups, points and
    purchase history (customer service), the orders with their addresses and notes (order
    service) and the gift cards issued to them (payment service): so it takes the scopes that
    read orders and gift cards too. The duplicates merged into the customer are the same
    person: their points history, orders and gift cards are in it (`merged_customer_ids`).
    An erased customer is a 404: nothing of them is left to export. One merged into another is a
    409 `customer_merged` with `merged_into`: what it held moved there, and that customer's
    export has it. Back office only (a data subject's request): a register's credential is
    refused (403 `insufficient_scope`), as every store's sales are in it."""
    if principal_of(request).register_id is not None:
        raise not_for_a_register(request, "a register's credential cannot export a customer")
    answer = await svc.customer.ExportCustomer(customer_pb2.ExportCustomerRequest(id=customer_id))
    # The duplicates merged into it are the same person: their orders and cards are theirs.
    ids = [customer_id, *answer.merged_customer_ids]
    sales = await asyncio.gather(*(_sales_of(svc, i) for i in ids))
    cards = await asyncio.gather(*(_cards_of(svc, i) for i in ids))
    exported = to_json(answer)
    exported["sales"] = [to_json(o) for of_one in sales for o in of_one]
    exported["gift_cards"] = [to_json(c) for of_one in cards for c in of_one]
    exported["merged_customer_ids"] = list(answer.merged_customer_ids)
    return CustomerExport.model_validate(exported)


async def _sales_of(svc: Services, customer_id: str) -> list[order_pb2.Order]:
    found: list[order_pb2.Order] = []
    token = ""
    while True:
        page = await svc.order.ListOrders(
            order_pb2.ListOrdersRequest(customer_id=customer_id, page_size=200, page_token=token)
        )
        found.extend(page.orders)
        token = page.next_page_token
        if not token:
            return found


async def _cards_of(svc: Services, customer_id: str) -> list[gift_cards_pb2.GiftCard]:
    found: list[gift_cards_pb2.GiftCard] = []
    token = ""
    while True:
        page = await svc.gift_cards.ListGiftCards(
            gift_cards_pb2.ListGiftCardsRequest(
                customer_id=customer_id, page_size=200, page_token=token
            )
        )
        found.extend(page.gift_cards)
        token = page.next_page_token
        if not token:
            return found


@router.get(
    "/customers/{customer_id}/orders",
    **op("customers:read", "A customer's purchase history", (404, 409),
         example=ex.PURCHASE_HISTORY),
)  # fmt: skip
async def customer_orders(
    customer_id: PathId,
    request: Request,
    svc: Svc,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> PurchaseHistory:
    """Newest first, with lifetime spend, visits, last visit and favourite location. A
    customer merged into another is a 409 `customer_merged` with `merged_into`: its purchases
    moved there. For a register's credential, as every list of sales is, it is narrowed to the
    register's location: the purchases made there, and a summary of those only (the spend,
    visits and last visit at that store; its favourite location that store, or empty when
    they bought nothing there)."""
    own = principal_of(request).location_id if principal_of(request).register_id else None
    answer = await svc.customer.ListCustomerOrders(
        customer_pb2.ListCustomerOrdersRequest(
            customer_id=customer_id, page_size=limit, page_token=cursor or "",
            location_id=own or "",
        )
    )  # fmt: skip
    return PurchaseHistory.model_validate(
        {
            "data": [to_json(o) for o in answer.orders],
            "next_cursor": answer.next_page_token or None,
            "summary": to_json(answer.summary),
        }
    )


@router.get(
    "/customers/{customer_id}/points",
    **op("customers:read", "A customer's points history", (404,),
         example=ex.page(ex.POINTS_ENTRY)),
)  # fmt: skip
async def points_history(
    customer_id: PathId, svc: Svc, limit: Limit = 50, cursor: Cursor = None
) -> PointsHistory:
    """Newest first; each entry carries the balance after it. A customer merged into another
    keeps its history (its newest entry moves the balance there); an erased one is a 404.
    It is not narrowed for a register's credential: the points are one balance redeemed at
    any store, as a gift card is spent anywhere, and an entry names its order by id only (one
    of another store is a 404 to that register, as a made-up id is)."""
    answer = await svc.customer.ListPointsHistory(
        loyalty_pb2.ListPointsHistoryRequest(
            customer_id=customer_id, page_size=limit, page_token=cursor or ""
        )
    )
    return to_page(PointsHistory, answer.entries, answer.next_page_token)


@router.post(
    "/customers/{customer_id}/points/adjustments",
    **op("customers:write", "Adjust a customer's points by hand", (404, 409, 410),
         example={"entry": ex.POINTS_ENTRY | {"kind": "adjusted", "points": -50,
                                              "balance_after": 10, "order_id": "",
                                              "reason": "Goodwill correction"},
                  "balance": 10}, status=201),
)  # fmt: skip
async def adjust_points(
    customer_id: PathId, body: PointsAdjustmentIn, request: Request, svc: Svc
) -> PointsAdjustment:
    """A debit past the points available (the balance less what open orders hold) is a 409
    `insufficient_points`. A credit expires as earned points do, under the program's
    `expiry_days`, counted from the credit's date; a debit spends the oldest points first,
    as a redemption does. At a register (points are money off a later sale) it takes the
    `refund` permission or a manager's override (403 `permission_required`) and is in the
    audit log (`points.adjusted`, with the points and the reason). Once the customer is
    erased, a retry with the same Idempotency-Key answers 410 `customer_erased` and adjusts
    nothing."""
    async with guarded(request, "points.adjusted", "refund") as done:
        answer = await svc.customer.AdjustPoints(
            loyalty_pb2.AdjustPointsRequest(
                request_id=request_id(), customer_id=customer_id, points=body.points,
                reason=body.reason,
            )
        )  # fmt: skip
        done.resource = ("customer", customer_id)
        done.details = {"points": body.points, "reason": body.reason}
    return to_model(PointsAdjustment, answer)
