"""The event feed (/v1/events) and webhook subscriptions (/v1/webhook-subscriptions), served by
the dispatcher over gRPC."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any, Literal

import grpc
from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import Field

from pos.dispatcher.v1 import dispatcher_pb2 as pb
from pos_gateway import examples as ex
from pos_gateway.actions import Done, guarded
from pos_gateway.auth import authenticate
from pos_gateway.clients import Services
from pos_gateway.convert import to_json, to_model, to_page
from pos_gateway.feed_watch import PAGE_SIZE, FeedWatch
from pos_gateway.problems import Problem, from_rpc_error
from pos_gateway.routes.common import (
    CREATE,
    TIME_SCHEMA,
    Body,
    BodyTime,
    Cursor,
    IfMatch,
    InRange,
    Limit,
    Patch,
    PathId,
    QueryId,
    Rfc3339,
    UpdatedSince,
    example,
    expected_version,
    op,
    patched,
    request_id,
    services,
    success,
    timestamp,
    version_checked,
)
from pos_gateway.schemas.events import (
    TYPE_FILTERS,
    Delivery,
    DeliveryList,
    Event,
    EventList,
    NewWebhookSubscription,
    Replayed,
    WebhookSubscription,
    WebhookSubscriptionList,
    origin,
)
from pos_kit.grpc_client import read_error

router = APIRouter(prefix="/v1", tags=["events"])
Svc = Annotated[Services, Depends(services)]

TypePattern = Annotated[str, Field(max_length=64, json_schema_extra={"enum": list(TYPE_FILTERS)})]
MAX_TYPES = 64
URL = r"^https?://[\x21-\x7e]+$"


def _event(message: pb.Event) -> Event:
    answer = to_json(message)
    answer["data"] = json.loads(answer.pop("data_json"))
    return Event.model_validate(answer)


@router.get(
    "/events",
    **op("events:read", "Read the event feed", (410,), example=ex.EVENT_PAGE),
)
async def list_events(
    svc: Svc,
    after: Annotated[
        int,
        Query(
            ge=0,
            le=2**63 - 1,
            description="The last sequence you have (0: from the start); answers come after it",
        ),
    ] = 0,
    types: Annotated[
        list[str] | None,
        Query(
            max_length=MAX_TYPES,
            description="Only these types (`order.confirmed`, `order.*`); all when absent",
            json_schema_extra={
                "items": {"type": "string", "enum": list(TYPE_FILTERS), "maxLength": 64}
            },
        ),
    ] = None,
    limit: Limit = 50,
) -> EventList:
    """Every event of your merchant in order: `sequence` has no gaps and a resource's events
    never change order. Poll with `after` = the `next_after` of your last page; a page that
    filtered everything out still moves `next_after` on. The feed keeps 30 days; a cursor
    older than that is a 410 `cursor_expired` (read from the start of what is kept), and one
    past the newest event (never given out) a 400 naming `after`."""
    request = pb.ListEventsRequest(after=after, types=types or [], page_size=limit)
    try:
        answer = await svc.dispatcher.ListEvents(request)
    except grpc.aio.AioRpcError as exc:
        if read_error(exc).reason == "cursor_expired":
            raise Problem(410, "cursor_expired", "this cursor is older than the feed keeps; "
                          "read again from after=0") from None  # fmt: skip
        raise
    return EventList(
        data=[_event(e) for e in answer.events],
        next_after=answer.next_after,
        has_more=answer.has_more,
    )


# The live stream: a few connections per credential (each holds a request slot of the
# replica), a comment line every HEARTBEAT_SECONDS so proxies keep it open, and an end after
# STREAM_SECONDS: the client reconnects with Last-Event-ID and misses nothing.
STREAMS_PER_CREDENTIAL = 5
HEARTBEAT_SECONDS = 15.0
WAKE_SECONDS = 1.0
# How often an idle stream checks that its credential still stands.
CHECK_SECONDS = 5.0
STREAM_SECONDS = 300.0
_streams: Counter[str] = Counter()
# One watcher of each merchant's feed per process, shared by its streams (feed_watch.py).
WATCH = FeedWatch()
SSE_EXAMPLE = (
    'id: 1042\nevent: order.confirmed\ndata: {"id":"evt_01j9x6t1a2b3c4d5e6f7g8h9jk",'
    '"type":"order.confirmed","sequence":1042,...}\n\n: heartbeat\n\n'
)
_stream_op = op(
    "events:read", "Follow the event feed live (server-sent events)", (410,), example={}
)
_stream_op["responses"][200] = success(SSE_EXAMPLE, "text/event-stream")


def _frame(event: pb.Event) -> str:
    body = _event(event).model_dump_json()
    return f"id: {event.sequence}\nevent: {event.type}\ndata: {body}\n\n"


@router.get("/events/stream", response_class=StreamingResponse, **_stream_op)
async def stream_events(
    request: Request,
    svc: Svc,
    after: Annotated[
        int | None,
        Query(ge=0, le=2**63 - 1, description="Start after this sequence (default: from now)"),
    ] = None,
    types: Annotated[
        list[str] | None,
        Query(
            max_length=MAX_TYPES,
            description="Only these types (`order.confirmed`, `order.*`); all when absent",
            json_schema_extra={
                "items": {"type": "string", "enum": list(TYPE_FILTERS), "maxLength": 64}
            },
        ),
    ] = None,
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            description="Sent by an EventSource that reconnects: resume after this sequence",
            json_schema_extra={"pattern": "^[0-9]{1,18}$", "maxLength": 18},
        ),
    ] = None,
) -> StreamingResponse:
    """The feed as server-sent events: each event's `id` is its sequence, `event` its type,
    `data` the event. A reconnecting client sends `Last-Event-ID` and gets what it missed;
    without it (or `after`) the stream starts at the head. A comment line comes every 15 s;
    the server ends a stream after 5 minutes (reconnect), and at once (a comment line
    `: credential revoked`) when its credential is revoked or its access token expires. At
    most 5 streams per credential."""
    start = after
    if last_event_id is not None:
        if not last_event_id.isascii() or not last_event_id.isdigit() or len(last_event_id) > 18:
            reason = {"field": "Last-Event-ID", "reason": "must be a sequence number"}
            raise Problem(400, "invalid_request", "Last-Event-ID must be a sequence", [reason])
        start = int(last_event_id)
    wanted = types or []
    try:
        if start is None:  # from now: the head of the feed, as the dispatcher tells it
            page = await svc.dispatcher.ListEvents(pb.ListEventsRequest(after=0, page_size=1))
            if page.HasField("head"):
                start = page.head
            else:  # a dispatcher from before `head`: walk the feed to its end
                start = 0
                while True:
                    page = await svc.dispatcher.ListEvents(
                        pb.ListEventsRequest(after=start, page_size=200)
                    )
                    start = page.next_after
                    if not page.has_more:
                        break
        first = await svc.dispatcher.ListEvents(
            pb.ListEventsRequest(after=start, types=wanted, page_size=200)
        )
    except grpc.aio.AioRpcError as exc:
        if read_error(exc).reason == "cursor_expired":
            raise Problem(410, "cursor_expired", "this cursor is older than the feed keeps; "
                          "read again from after=0") from None  # fmt: skip
        problem = from_rpc_error(exc)
        if last_event_id is not None:
            # The position came in the header: name it, not the feed's `after`.
            for error in problem.errors:
                if error.get("field") == "after":
                    error["field"] = "Last-Event-ID"
        raise problem from None
    credential = request.state.principal.key_id
    if _streams[credential] >= STREAMS_PER_CREDENTIAL:
        raise Problem(
            429,
            "too_many_streams",
            f"at most {STREAMS_PER_CREDENTIAL} event streams per credential at once",
            headers={"Retry-After": "5"},
        )
    _streams[credential] += 1

    merchant = request.state.principal.merchant_id

    async def still_valid() -> bool:
        """The stream's credential as it stands now: a key or OAuth client revoked since the
        stream opened (or its access token expired, or the register retired) ends it."""
        try:
            await authenticate(request)
        except Problem:
            return False
        return True

    async def frames() -> AsyncIterator[str]:
        page, cursor = first, start
        beat = checked = ends = time.monotonic()
        ends += STREAM_SECONDS
        try:
            yield ": connected\n\n"
            async with WATCH.following(svc, merchant, start) as head:
                while time.monotonic() < ends and not await request.is_disconnected():
                    # Checked before any event goes out, and now and then while idle: a
                    # revoked credential reads nothing more (the check is a cache hit on
                    # this replica, which forgets a credential it revokes at once).
                    if page.events or time.monotonic() - checked >= CHECK_SECONDS:
                        checked = time.monotonic()
                        if not await still_valid():
                            yield ": credential revoked\n\n"
                            return
                    for event in page.events:
                        yield _frame(event)
                    cursor = page.next_after
                    if not page.has_more:
                        if time.monotonic() - beat >= HEARTBEAT_SECONDS:
                            beat = time.monotonic()
                            yield ": heartbeat\n\n"
                        # Woken when the merchant's feed moves past this stream's cursor;
                        # otherwise it looks up once a second, to notice a client gone.
                        if not await head.wait_past(cursor, WAKE_SECONDS):
                            page = pb.ListEventsResponse(next_after=cursor)
                            continue
                    shared = None if wanted else head.page_after(cursor)
                    page = shared or await svc.dispatcher.ListEvents(
                        pb.ListEventsRequest(after=cursor, types=wanted, page_size=PAGE_SIZE)
                    )
        finally:
            _streams[credential] -= 1

    return StreamingResponse(
        frames(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.get(
    "/events/{event_id}",
    **op("events:read", "Get an event", (404,), example=ex.EVENT),
)
async def get_event(event_id: PathId, svc: Svc) -> Event:
    answer = await svc.dispatcher.GetEvent(pb.GetEventRequest(id=event_id))
    return _event(answer.event)


# --- subscriptions ----------------------------------------------------------------------------

SUBS = "/webhook-subscriptions"
ONE = SUBS + "/{subscription_id}"


class SubscriptionIn(Body):
    model_config = example(
        {"url": "https://hooks.example.com/omnitill", "event_types": ["order.*"],
         "description": "shipping sync"}
    )  # fmt: skip

    url: str = Field(
        max_length=2048,
        pattern=URL,
        description="https, to a public address (a local sandbox also takes http and "
        "private addresses)",
    )
    event_types: list[TypePattern] = Field(min_length=1, max_length=MAX_TYPES)
    description: str = Field("", max_length=500)


class SubscriptionPatch(Patch):
    model_config = example({"status": "disabled"})

    url: str | None = Field(None, max_length=2048, pattern=URL)
    event_types: list[TypePattern] | None = Field(None, min_length=1, max_length=MAX_TYPES)
    description: str | None = Field(None, max_length=500)
    status: Literal["enabled", "disabled"] | None = None


class RotationIn(Body):
    model_config = example({"overlap_seconds": 86400})

    overlap_seconds: int = Field(
        86400,
        ge=1,
        le=7 * 86400,
        description="How long the previous secret keeps signing beside the new one (a later "
        "rotation does not cut it short)",
    )


class ReplayWindow(Body):
    model_config = example({"created_after": ex.CREATED, "created_before": ex.UPDATED})

    created_after: BodyTime | None = Field(None, json_schema_extra=TIME_SCHEMA)
    created_before: BodyTime | None = Field(None, json_schema_extra=TIME_SCHEMA)


def _audited(done: Done, sub: pb.Subscription, **details: Any) -> None:
    """A subscription's audit entry: on its id, with the version the change made."""
    done.resource = ("webhook_subscription", sub.id)
    done.details = {**details, "version": sub.version}


def _new(answer: Any) -> NewWebhookSubscription:
    return NewWebhookSubscription(
        subscription=to_model(WebhookSubscription, answer.subscription),
        secret=answer.secret or None,
        secret_redacted=not answer.secret,
    )


@router.post(
    SUBS,
    **op(
        "webhooks:manage",
        "Create a webhook subscription",
        CREATE,
        example=ex.NEW_SUBSCRIPTION,
        status=201,
        shown_once=("secret",),
    ),
)
async def create_webhook_subscription(
    body: SubscriptionIn, svc: Svc, request: Request
) -> NewWebhookSubscription:
    """Deliveries are signed per Standard Webhooks (`webhook-id`, `webhook-timestamp`,
    `webhook-signature`) with the `whsec_` secret in this answer; verify them with any library
    of the specification. A 2xx within 5 seconds is success; anything else is retried with
    backoff for a little over three days; a 410 disables the subscription at once. A merchant
    has at most 50 subscriptions: the 51st is a 409 `too_many_subscriptions`. The URL must be
    `https` and reach a public address (a local sandbox also takes `http` and private ones).
    In the audit log as `webhook_subscription.created` (the URL's origin, the types, never
    the secret), with the credential that made it."""
    async with guarded(request, "webhook_subscription.created") as done:
        answer = await svc.dispatcher.CreateSubscription(
            pb.CreateSubscriptionRequest(
                request_id=request_id(),
                url=body.url,
                event_types=body.event_types,
                description=body.description,
            )
        )
        sub = answer.subscription
        _audited(done, sub, origin=origin(sub.url), event_types=list(sub.event_types))
    return _new(answer)


@router.get(
    SUBS, **op("webhooks:manage", "List webhook subscriptions", example=ex.page(ex.SUBSCRIPTION))
)
async def list_webhook_subscriptions(
    svc: Svc, limit: Limit = 50, cursor: Cursor = None, updated_since: UpdatedSince = None
) -> WebhookSubscriptionList:
    """By id, or with `updated_since` the change feed (oldest change first)."""
    request = pb.ListSubscriptionsRequest(page_size=limit, page_token=cursor or "")
    if updated_since is not None:
        request.updated_since.CopyFrom(timestamp(updated_since))
    answer = await svc.dispatcher.ListSubscriptions(request)
    return to_page(WebhookSubscriptionList, answer.subscriptions, answer.next_page_token)


@router.get(
    ONE, **op("webhooks:manage", "Get a webhook subscription", (404,), example=ex.SUBSCRIPTION)
)
async def get_webhook_subscription(
    subscription_id: PathId, svc: Svc, response: Response
) -> WebhookSubscription:
    answer = await svc.dispatcher.GetSubscription(pb.GetSubscriptionRequest(id=subscription_id))
    response.headers["ETag"] = f'"{answer.subscription.version}"'
    return to_model(WebhookSubscription, answer.subscription)


@router.patch(
    ONE,
    **op("webhooks:manage", "Update, disable or enable a webhook subscription", (404, 409, 412),
         example=ex.SUBSCRIPTION),
)  # fmt: skip
async def update_webhook_subscription(
    subscription_id: PathId,
    body: SubscriptionPatch,
    svc: Svc,
    request: Request,
    response: Response,
    if_match: IfMatch = None,
) -> WebhookSubscription:
    """Only the fields sent change; one sent as null is a 400 naming it, nothing changed.
    Enabling a subscription that was disabled (by you, by a 410 or by days of failures)
    resumes its deliveries, pending ones included. A body with no field is a 400, nothing
    changed. In the audit log as `webhook_subscription.updated` (the fields sent as
    `changed`, the URL's origin, the new version); one that changes nothing adds none."""
    sent = patched(body)
    change = pb.UpdateSubscriptionRequest(
        request_id=request_id(), id=subscription_id, expected_version=expected_version(if_match)
    )
    if body.url is not None:
        change.url = body.url
    if body.description is not None:
        change.description = body.description
    if body.event_types is not None:
        change.event_types.extend(body.event_types)
        change.replace_event_types = True
    if body.status is not None:
        change.status = (
            pb.SUBSCRIPTION_STATUS_ENABLED if body.status == "enabled"
            else pb.SUBSCRIPTION_STATUS_DISABLED
        )  # fmt: skip
    async with guarded(request, "webhook_subscription.updated") as done:
        answer = await version_checked(svc.dispatcher.UpdateSubscription(change))
        sub = answer.subscription
        _audited(done, sub, changed=sorted(sent), origin=origin(sub.url))
        done.changed = answer.changed
    response.headers["ETag"] = f'"{answer.subscription.version}"'
    return to_model(WebhookSubscription, answer.subscription)


@router.delete(
    ONE,
    **op("webhooks:manage", "Delete a webhook subscription", (404, 412),
         example=ex.SUBSCRIPTION),
)  # fmt: skip
async def delete_webhook_subscription(
    subscription_id: PathId, svc: Svc, request: Request, if_match: IfMatch = None
) -> WebhookSubscription:
    """Answers the subscription as it was; its pending deliveries are dropped with it. Send
    `If-Match: "<version>"` to delete only the version you saw: a stale one is a 412
    `version_mismatch` with `current_version`, and the subscription stays. In the audit log
    as `webhook_subscription.deleted` (the URL's origin, the version it had)."""
    version = expected_version(if_match)
    found = await svc.dispatcher.GetSubscription(pb.GetSubscriptionRequest(id=subscription_id))
    async with guarded(request, "webhook_subscription.deleted") as done:
        await version_checked(
            svc.dispatcher.DeleteSubscription(
                pb.DeleteSubscriptionRequest(
                    request_id=request_id(), id=subscription_id, expected_version=version
                )
            )
        )
        _audited(done, found.subscription, origin=origin(found.subscription.url))
    return to_model(WebhookSubscription, found.subscription)


@router.post(
    ONE + "/rotate-secret",
    **op(
        "webhooks:manage",
        "Rotate a webhook subscription's secret",
        (404, *CREATE),
        example=ex.NEW_SUBSCRIPTION,
        status=201,
        shown_once=("secret",),
    ),
)
async def rotate_webhook_secret(
    subscription_id: PathId, body: RotationIn, svc: Svc, request: Request
) -> NewWebhookSubscription:
    """A new secret, in this answer only. Until `overlap_seconds` pass, every delivery is
    signed with both (two signatures in `webhook-signature`), so you can switch receivers
    over without missing one. Rotating again within that overlap does not cut it short: the
    secret the first rotation retired keeps signing to the end of its overlap, beside the
    current one and the one just replaced (at most five secrets sign at once, the newest;
    past that the oldest stops early). In the audit log as
    `webhook_subscription.secret_rotated` (`overlap_seconds`, the new version; never a
    secret)."""
    async with guarded(request, "webhook_subscription.secret_rotated") as done:
        answer = await svc.dispatcher.RotateSubscriptionSecret(
            pb.RotateSubscriptionSecretRequest(
                request_id=request_id(), id=subscription_id, overlap_seconds=body.overlap_seconds
            )
        )
        _audited(done, answer.subscription, overlap_seconds=body.overlap_seconds)
    return _new(answer)


@router.post(
    ONE + "/test",
    **op("webhooks:manage", "Send a test event", (404, *CREATE), example=ex.DELIVERY, status=201),
)
async def send_test_webhook(subscription_id: PathId, svc: Svc) -> Delivery:
    """A `webhook_subscription.tested` event, to this subscription only (never in the feed),
    signed and shaped as every event (the `Event` schema): its `sequence` is 0, since it has no
    place among the feed's, and `data.object` names the subscription."""
    answer = await svc.dispatcher.SendTestEvent(
        pb.SendTestEventRequest(request_id=request_id(), id=subscription_id)
    )
    return to_model(Delivery, answer.delivery)


DeliveryStatus = Literal["pending", "succeeded", "failed"]
_STATUS = {
    "pending": pb.DELIVERY_STATUS_PENDING,
    "succeeded": pb.DELIVERY_STATUS_SUCCEEDED,
    "failed": pb.DELIVERY_STATUS_FAILED,
}


@router.get(
    ONE + "/deliveries",
    **op("webhooks:manage", "List a subscription's deliveries and their attempts", (404,),
         example=ex.page(ex.DELIVERY)),
)  # fmt: skip
async def list_webhook_deliveries(
    subscription_id: PathId,
    svc: Svc,
    status: Annotated[DeliveryStatus | None, Query()] = None,
    event_id: Annotated[
        QueryId | None, Query(description="Only the deliveries of this event")
    ] = None,
    created_after: Annotated[
        datetime | None, Rfc3339, InRange, Query(json_schema_extra=TIME_SCHEMA)
    ] = None,
    created_before: Annotated[
        datetime | None, Rfc3339, InRange, Query(json_schema_extra=TIME_SCHEMA)
    ] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> DeliveryList:
    """Oldest first; each filter narrows the list (`created_after` and `created_before`
    together: the second after the first, else a 400 naming `created_before`)."""
    request = pb.ListDeliveriesRequest(
        subscription_id=subscription_id,
        status=_STATUS[status] if status else pb.DELIVERY_STATUS_UNSPECIFIED,
        event_id=event_id or "",
        page_size=limit,
        page_token=cursor or "",
    )
    if created_after is not None:
        request.created_after.CopyFrom(timestamp(created_after, "created_after"))
    if created_before is not None:
        request.created_before.CopyFrom(timestamp(created_before, "created_before"))
    answer = await svc.dispatcher.ListDeliveries(request)
    return to_page(DeliveryList, answer.deliveries, answer.next_page_token)


@router.post(
    ONE + "/deliveries/{delivery_id}/replay",
    **op("webhooks:manage", "Deliver a delivery's event again", (404, *CREATE),
         example=ex.DELIVERY, status=201),
)  # fmt: skip
async def replay_webhook_delivery(
    subscription_id: PathId, delivery_id: PathId, svc: Svc
) -> Delivery:
    """A new delivery of the same body, with the same `webhook-id` (dedupe on it if you
    already have the event)."""
    answer = await svc.dispatcher.ReplayDelivery(
        pb.ReplayDeliveryRequest(
            request_id=request_id(), subscription_id=subscription_id, delivery_id=delivery_id
        )
    )
    return to_model(Delivery, answer.delivery)


@router.post(
    ONE + "/replay-failed",
    **op("webhooks:manage", "Deliver again every failed delivery of a time window",
         (404, *CREATE), example={"replayed": 3}),
)  # fmt: skip
async def replay_failed_webhooks(subscription_id: PathId, body: ReplayWindow, svc: Svc) -> Replayed:
    """Up to 1,000 failed deliveries created in the window (open ends: no bound; both ends:
    `created_before` after `created_after`, else a 400 naming `created_before`), oldest
    first: each event once, and none delivered since or on its way again (a pending
    delivery of it, such as a replay's), so running it twice sends nothing twice and a
    window of more than 1,000 is sent by running it again. `replayed`: how many went."""
    request = pb.ReplayFailedDeliveriesRequest(
        request_id=request_id(), subscription_id=subscription_id
    )
    if body.created_after is not None:
        request.created_after.CopyFrom(timestamp(body.created_after, "created_after"))
    if body.created_before is not None:
        request.created_before.CopyFrom(timestamp(body.created_before, "created_before"))
    answer = await svc.dispatcher.ReplayFailedDeliveries(request)
    return Replayed(replayed=answer.replayed)
