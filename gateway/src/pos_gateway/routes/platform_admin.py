"""Platform administration over HTTP: merchants and dead letters, guarded by the platform
credential.

Disabled (404, like any unknown route) unless PLATFORM_ADMIN_TOKEN is configured. The same
operation is `python -m pos_gateway create-merchant NAME` on the command line.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from nats.js.errors import NotFoundError
from pydantic import Field

from pos_gateway import admin, audit, keys
from pos_gateway import examples as ex
from pos_gateway.edge import platform_admin, platform_refused
from pos_gateway.idempotency import REDACTED, SHOWN_ONCE
from pos_gateway.problems import Problem
from pos_gateway.routes.common import (
    INT64,
    INT64_MAX,
    Body,
    Cursor,
    Limit,
    Name,
    NotBlank,
    PathId,
    Trimmed,
    cursor_after,
    example,
    problems,
    request_id,
    success,
)
from pos_gateway.routes.credentials import key_json
from pos_gateway.schemas.credentials import Merchant, NewApiKey
from pos_gateway.schemas.platform import DeadLetter, DeadLetterList, Redriven
from pos_kit import dead_letters
from pos_kit.paging import encode_token


def _check(request: Request) -> None:
    """The platform credential, compared as bytes (whatever a header holds, never a 500)."""
    if not platform_admin(request.scope, request.headers):
        raise platform_refused(request.scope)


# The edge refuses a request without the platform credential before it reaches a route; the
# router checks it again, before the route's parameters and body are validated.
router = APIRouter(
    prefix="/v1/admin", tags=["platform administration"], dependencies=[Depends(_check)]
)
# The scope of this module's list cursors (pos_kit.paging): another list's are refused.
LIST_SCOPE = "gateway.admin/dead-letters"


class MerchantIn(Body):
    model_config = example({"name": "Corner Coffee"})

    name: Annotated[str, Field(min_length=1, max_length=200), NotBlank, Trimmed]


@router.post(
    "/merchants",
    status_code=201,
    summary="Create a merchant with its first (test) API key",
    description="Requires the platform credential. The key (`api_key`, every scope) is shown "
    "in this answer only, with `secret_redacted: false`. With an `Idempotency-Key` a retry "
    "creates nothing: it answers the same merchant with `api_key` null and `secret_redacted: "
    "true` (the key is never stored with the answer). The key is in the merchant's audit log "
    "as `api_key.created` with `issued_by: platform` (no credential of the merchant's), once. "
    "Answers 404 like an unknown route when the deployment has no platform credential.",
    responses={201: success(ex.MERCHANT), **problems(400, 401, 404, 409, 413, 422, 429)},
    openapi_extra={SHOWN_ONCE: ["api_key"]},
)
async def create_merchant(body: MerchantIn, request: Request) -> Merchant:
    state = request.app.state
    try:
        merchant_id, key = await admin.create_merchant_once(
            state.engine, state.secret, body.name, request_id()
        )
    except admin.RequestReused:
        raise Problem(
            422, "idempotency_key_reused", "this Idempotency-Key was used with a different request"
        ) from None
    return Merchant.model_validate(
        {"id": merchant_id, "name": body.name, "api_key": key, REDACTED: key is None}
    )


class MerchantKeyIn(Body):
    model_config = example({"name": "live", "mode": "live"})

    name: Name
    mode: Literal["test", "live"] = Field(
        "live",
        description="`live` to take the merchant live: a merchant's own credentials are test "
        "ones until then, and a test credential makes no live key (a live key, once issued, "
        "may make more)",
    )


@router.post(
    "/merchants/{merchant_id}/api-keys",
    status_code=201,
    summary="Issue a merchant an API key with every scope (a live key takes it live)",
    description="Requires the platform credential. A merchant's own credentials make keys of "
    "their own mode or test keys, and its first key is a test key: a live key comes from here, "
    "when the platform takes the merchant live. The key (every scope) is shown in this answer "
    "only, with `secret_redacted: false`; with an `Idempotency-Key` a retry makes no second key "
    "and answers it with `key` null and `secret_redacted: true`. It is in the merchant's audit "
    "log as `api_key.created` with `issued_by: platform` (no credential of the merchant's). "
    "An unknown merchant is a 404. "
    "Answers 404 like an unknown route when the deployment has no platform credential.",
    responses={201: success(ex.NEW_LIVE_API_KEY), **problems(400, 401, 404, 413, 422, 429)},
    openapi_extra={SHOWN_ONCE: ["key"]},
)
async def issue_merchant_key(
    merchant_id: PathId, body: MerchantKeyIn, request: Request
) -> NewApiKey:
    state = request.app.state
    if not await admin.merchant_exists(state.engine, merchant_id):
        raise Problem(
            404, "resource_missing", f"merchant {merchant_id!r} was not found",
            extra={"resource": "merchant"},
        )  # fmt: skip
    # The platform's request id, apart from the merchant's own (admin.platform_request_id).
    made_by = admin.platform_request_id(request_id())
    try:
        key_id, key = await admin.issue_key_once(
            state.engine, state.secret, merchant_id, body.name, keys.ALL_SCOPES, body.mode,
            made_by,
        )  # fmt: skip
    except admin.RequestReused:
        raise Problem(
            422, "idempotency_key_reused", "this Idempotency-Key was used with a different request"
        ) from None
    # In the merchant's audit log as a key its own credentials make is, by none of them: the
    # merchant sees who gave it a key that can do anything. Once per request (a retry that
    # found the key made writes the entry an interrupted first attempt may not have).
    details = {"name": body.name, "scopes": list(keys.ALL_SCOPES), "mode": body.mode,
               "issued_by": "platform"}  # fmt: skip
    async with state.engine.begin() as conn:
        await audit.record(
            conn, merchant_id, "api_key.created", audit.Actor(), ("api_key", key_id), details,
            made_by,
        )  # fmt: skip
    info = await admin.get_key(state.engine, merchant_id, key_id)
    assert info is not None  # this request made it, or an earlier attempt of it
    return NewApiKey.model_validate({**key_json(info), "key": key, REDACTED: key is None})


# --- dead letters -------------------------------------------------------------------------

# A consumer's durable name: what the services declare (`customer-loyalty`).
ConsumerName = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=200,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="Only the dead letters of this consumer",
    ),
]
Sequence = Annotated[
    int,
    Path(ge=1, le=INT64_MAX, json_schema_extra=INT64, description="The dead letter's sequence"),
]


def _stamp(at: datetime | None) -> str | None:
    if at is None:
        return None
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _unknown_consumer(consumer: str | None) -> Problem:
    """The 404 naming `consumer` for one there is not (`dead_letters.consumer_known`)."""
    return Problem(
        404,
        "resource_missing",
        f"consumer {consumer!r} was not found",
        [{"field": "consumer", "reason": "no such consumer"}],
        extra={"resource": "consumer"},
    )


def _letter(letter: dead_letters.DeadLetter) -> DeadLetter:
    fields = asdict(letter)
    fields["dead_lettered_at"] = _stamp(letter.dead_lettered_at)
    fields["error"] = letter.error[:200]
    return DeadLetter.model_validate(fields)


def _after(cursor: str | None) -> int:
    """The stream sequence the page resumes after (0: the first page); only this list's
    cursors pass, and it gives sequences."""
    return int(cursor_after(cursor, LIST_SCOPE) or 0)


@router.get(
    "/dead-letters",
    summary="List dead letters",
    description="Requires the platform credential. Messages a consumer gave up on, oldest "
    "first, with the error and the deliveries it took; the payload is not shown. A `consumer` "
    "there is not (neither a consumer of the platform's streams nor one with dead letters) is "
    "a 404 `resource_missing` whose `errors[]` names `consumer`; one there is with none is an "
    "empty list.",
    responses={200: success(ex.DEAD_LETTERS), **problems(400, 401, 404, 429, 503)},
)
async def list_dead_letters(
    request: Request, consumer: ConsumerName = None, limit: Limit = 50, cursor: Cursor = None
) -> DeadLetterList:
    js = await request.app.state.jetstream.jetstream()
    if consumer is not None and not await dead_letters.consumer_known(js, consumer):
        # A typo is not an empty queue (it answered 200 with an empty list).
        raise _unknown_consumer(consumer)
    found = await dead_letters.list_dead_letters(js, consumer, _after(cursor), limit + 1)
    page = found[:limit]
    more = len(found) > limit
    return DeadLetterList(
        data=[_letter(x) for x in page],
        next_cursor=encode_token(str(page[-1].sequence), LIST_SCOPE) if more else None,
    )


@router.post(
    "/dead-letters/{sequence}/redrive",
    summary="Send one dead letter again",
    description="Requires the platform credential. Publishes the message again on its "
    "subject for the consumer that failed it alone (the others skip it); its inbox still "
    "applies it once. Run again after an interruption, it is sent once. One that does not say "
    "its consumer and subject (put on the stream by hand) is a 409 `dead_letter_unroutable` "
    "and stays.",
    responses={200: success(ex.REDRIVEN), **problems(400, 401, 404, 409, 422, 429, 503)},
)
async def redrive_dead_letter(sequence: Sequence, request: Request) -> Redriven:
    js = await request.app.state.jetstream.jetstream()
    try:
        letter = await dead_letters.redrive(js, sequence)
    except NotFoundError:
        raise Problem(
            404, "resource_missing", f"dead letter {sequence} was not found",
            extra={"resource": "dead letter"},
        ) from None  # fmt: skip
    except dead_letters.Unroutable:
        # Not one a consumer set aside (put on the stream by hand): it stays (was a 500).
        raise Problem(
            409,
            "dead_letter_unroutable",
            f"dead letter {sequence} does not say its consumer and subject; it stays",
        ) from None
    return Redriven(redriven=[_letter(letter)])


@router.post(
    "/dead-letters/redrive",
    summary="Send every dead letter again",
    description="Requires the platform credential. Every dead letter (or a consumer's) is sent "
    "again to the consumer that failed it, oldest first; one that does not say its consumer "
    "and subject (put on the stream by hand) stays. A `consumer` there is not (neither a "
    "consumer of the platform's streams nor one with dead letters) is a 404 "
    "`resource_missing` whose `errors[]` names `consumer`; nothing is sent.",
    responses={200: success(ex.REDRIVEN), **problems(400, 401, 404, 409, 422, 429, 503)},
)
async def redrive_dead_letters(request: Request, consumer: ConsumerName = None) -> Redriven:
    js = await request.app.state.jetstream.jetstream()
    try:
        sent = await dead_letters.redrive_all(js, consumer)
    except dead_letters.UnknownConsumer:
        # A typo is not an empty queue (it answered 200 with nothing redriven).
        raise _unknown_consumer(consumer) from None
    return Redriven(redriven=[_letter(x) for x in sent])
