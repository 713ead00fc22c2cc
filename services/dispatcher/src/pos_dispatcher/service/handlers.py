"""The dispatcher's use cases: record integration events in the feed, manage subscriptions and
their deliveries. Each is called inside a unit of work bound to one merchant."""

from __future__ import annotations

from datetime import datetime, timedelta
from urllib.parse import urlsplit

from google.protobuf.message import Message
from pydantic import ValidationError

from pos.customer.v1 import events_pb2 as customer_events
from pos_dispatcher.adapters.network import AddressRefused
from pos_dispatcher.adapters.repository import (
    CursorAhead,
    CursorExpired,
    DeliveryRow,
    DispatcherUow,
    StoredEvent,
)
from pos_dispatcher.adapters.snapshots import (
    CUSTOMER_SNAPSHOTS,
    POINTS_ENTRIES,
    PublicEvent,
    public_events,
)
from pos_dispatcher.domain import signing
from pos_dispatcher.domain.model import (
    TEST_EVENT_TYPE,
    DisabledReason,
    Status,
    Subscription,
    check_description,
    check_types,
    check_url,
    validate_subscription,
)
from pos_kit.consumer import PoisonMessage
from pos_kit.errors import (
    Conflict,
    FieldViolation,
    InvalidArgument,
    NotFound,
    raise_if,
    require,
)
from pos_kit.ids import new_id
from pos_kit.paging import PageRequest

DEFAULT_OVERLAP = timedelta(days=1)
MAX_OVERLAP = timedelta(days=7)
# A replay of every failed delivery in a window touches at most this many at once.
MAX_REPLAY = 1000


# --- the feed ---------------------------------------------------------------------------------


async def record(uow: DispatcherUow, messages: list[Message]) -> list[StoredEvent]:
    """Integration events (one merchant's, in stream order) become public events in the
    merchant's feed, and a pending delivery for each subscription that wants one, all in the
    consumer's transaction."""
    try:
        made = [e for message in messages for e in public_events(message)]
    except ValidationError as exc:
        # The service sent a resource its public representation refuses: no retry will fix
        # it, so it goes to the dead-letter stream at once (and can be sent again once fixed).
        raise PoisonMessage(f"the snapshot does not fit the public model: {exc.title}") from None
    erasures = [m for m in messages if isinstance(m, customer_events.CustomerErased)]
    # The rows go with the COMMIT, unless an erasure must find this batch's own rows.
    stored = await append(uow, made, defer=not erasures)
    # An erased customer's earlier snapshots go from the feed in the same transaction, and
    # the free-text reasons of their points entries.
    for message in erasures:
        await uow.feed.redact(message.customer_id, CUSTOMER_SNAPSHOTS)
        await uow.feed.blank_reasons(message.customer_id, POINTS_ENTRIES)
        await uow.feed.erase_from_orders(message.customer_id)
    return stored


async def append(
    uow: DispatcherUow, new: list[PublicEvent], *, defer: bool = False
) -> list[StoredEvent]:
    """New events in the feed, and their deliveries. `defer`: their rows are written with the
    COMMIT (the caller commits with `uow.commit()` and reads none of them back first)."""
    if not new:
        return []
    # Read before the merchant's sequence row is taken: it stays locked until the commit.
    subs = await uow.subscriptions.enabled(uow)
    stored = await uow.feed.append(new, uow, defer=defer)
    if await uow.deliveries.fan_out(stored, subs, uow.now(), uow, defer=defer):
        uow.deliveries_enqueued = True
    return [e for e, _ in stored]


async def list_events(
    uow: DispatcherUow, after: int, types: list[str], limit: int
) -> tuple[list[StoredEvent], int, bool, int]:
    """A page of the feed past `after`: (events, the next cursor, whether more follow, the
    newest sequence: where the feed ends as this page was read)."""
    raise_if(
        (check_types(types, "types") if types else [])
        + ([FieldViolation("after", "must not be negative")] if after < 0 else [])
    )
    try:
        start, scanned, head = await uow.feed.after(after, types, limit + 1)
    except CursorExpired:
        raise Conflict(
            "this cursor is older than the feed's retention; read from the start again",
            "cursor_expired",
        ) from None
    except CursorAhead as ahead:
        violation = FieldViolation(
            "after", f"is past the newest event: at most {ahead.last}, a sequence you were given"
        )
        raise InvalidArgument("this cursor was never given out", [violation]) from None
    more = len(scanned) > limit
    scanned = scanned[:limit]
    cursor = scanned[-1].sequence if scanned else start
    return uow.feed.filtered(scanned, types), cursor, more, head


async def get_event(uow: DispatcherUow, event_id: str) -> StoredEvent:
    found = await uow.feed.get(event_id)
    if found is None:
        raise NotFound("event", event_id)
    return found


# --- subscriptions ----------------------------------------------------------------------------


async def _reachable(uow: DispatcherUow, url: str) -> None:
    if not uow.network.allow_private and urlsplit(url).scheme != "https":
        # Events carry customers' names and contacts: outside a developer's sandbox (where
        # private addresses are allowed, and a laptop has no certificate) they travel
        # encrypted only.
        violation = FieldViolation("url", "must be an https URL")
        raise InvalidArgument("the URL cannot receive webhooks", [violation])
    try:
        await uow.network.resolve(url)
    except AddressRefused as exc:
        violation = FieldViolation("url", str(exc))
        raise InvalidArgument("the URL cannot receive webhooks", [violation]) from None


# Subscriptions a merchant may have (enabled or disabled).
MAX_SUBSCRIPTIONS = 50


async def create_subscription(
    uow: DispatcherUow, url: str, event_types: list[str], description: str
) -> tuple[Subscription, str]:
    validate_subscription(url, event_types, description)
    await _reachable(uow, url)
    if await uow.subscriptions.count_for_adding() >= MAX_SUBSCRIPTIONS:
        # Each one multiplies the work every event costs: bounded, as every size is.
        raise Conflict(
            f"a merchant has at most {MAX_SUBSCRIPTIONS} webhook subscriptions; delete one",
            "too_many_subscriptions",
            {"limit": str(MAX_SUBSCRIPTIONS)},
        )
    secret = signing.new_secret()
    sub = Subscription(new_id("whsub"), url, list(dict.fromkeys(event_types)), description)
    return await uow.subscriptions.add(sub, secret), secret


async def get_subscription(
    uow: DispatcherUow, subscription_id: str, lock: bool = False
) -> Subscription:
    found = await uow.subscriptions.get(subscription_id, lock=lock)
    if found is None:
        raise NotFound("webhook subscription", subscription_id)
    return found


async def list_subscriptions(uow: DispatcherUow, page: PageRequest) -> list[Subscription]:
    return await uow.subscriptions.page(page)


def _stale(sub: Subscription, expected_version: int) -> None:
    """A subscription at another version than `expected_version` (0: any) is refused: the
    change was decided on what it was."""
    if expected_version and expected_version != sub.version:
        raise Conflict(
            "the subscription changed since you read it",
            "version_mismatch",
            {"current_version": str(sub.version)},
        )


async def update_subscription(
    uow: DispatcherUow,
    subscription_id: str,
    *,
    url: str | None,
    event_types: list[str] | None,
    description: str | None,
    status: Status | None,
    expected_version: int,
) -> tuple[Subscription, bool]:
    """The subscription as it now is, and whether this request changed it."""
    raise_if(
        (check_url(url) if url is not None else [])
        + (check_types(event_types) if event_types is not None else [])
        + (check_description(description) if description is not None else [])
    )
    sub = await get_subscription(uow, subscription_id, lock=True)
    _stale(sub, expected_version)
    before = (sub.url, tuple(sub.event_types), sub.description, sub.status)
    if url is not None:
        await _reachable(uow, url)
        sub.url = url
    # The types are a set (a pattern named twice is stored once): the same ones in another
    # order, or with one named twice, are what the subscription has and keep their order.
    if event_types is not None and set(event_types) != set(sub.event_types):
        sub.event_types = list(dict.fromkeys(event_types))
    if description is not None:
        sub.description = description
    if status is Status.ENABLED and sub.status is Status.DISABLED:
        sub.status, sub.disabled_reason, sub.failing_since = Status.ENABLED, "", None
    elif status is Status.DISABLED and sub.status is Status.ENABLED:
        sub.status, sub.disabled_reason = Status.DISABLED, DisabledReason.BY_REQUEST.value
    if (sub.url, tuple(sub.event_types), sub.description, sub.status) == before:
        # What it already is: no new version (no false change for a poller, no 412 for
        # another writer), as a product's or a location's.
        return sub, False
    return await uow.subscriptions.save(sub), True


async def delete_subscription(
    uow: DispatcherUow, subscription_id: str, expected_version: int = 0
) -> None:
    """With `expected_version`, one at another version is refused (`version_mismatch`) and
    stays, as a change would be: a deletion decided on what it was (its URL, its types)."""
    if expected_version:
        _stale(await get_subscription(uow, subscription_id, lock=True), expected_version)
    if not await uow.subscriptions.remove(subscription_id):
        raise NotFound("webhook subscription", subscription_id)


async def rotate_secret(
    uow: DispatcherUow, subscription_id: str, overlap_seconds: int
) -> tuple[Subscription, str]:
    overlap = timedelta(seconds=overlap_seconds) if overlap_seconds else DEFAULT_OVERLAP
    raise_if(
        []
        if timedelta(0) < overlap <= MAX_OVERLAP
        else [FieldViolation("overlap_seconds", "must be between 1 second and 7 days")]
    )
    await get_subscription(uow, subscription_id, lock=True)
    secret = signing.new_secret()
    now = uow.now()
    await uow.subscriptions.rotate(subscription_id, secret, now, now + overlap)
    return await get_subscription(uow, subscription_id), secret


async def send_test(uow: DispatcherUow, subscription_id: str) -> DeliveryRow:
    sub = await get_subscription(uow, subscription_id)
    now = uow.now()
    event = StoredEvent(
        new_id("evt"),
        TEST_EVENT_TYPE,
        0,  # not in the feed: no sequence of its own
        uow.merchant_id,
        now,
        {"object": {"subscription_id": sub.id, "message": "a test event from Omnitill"}},
    )
    (delivery_id,) = await uow.deliveries.enqueue([(sub.id, event)], now)
    uow.deliveries_enqueued = True
    return await _delivery(uow, sub.id, delivery_id)


async def _delivery(uow: DispatcherUow, subscription_id: str, delivery_id: str) -> DeliveryRow:
    found = await uow.deliveries.get(subscription_id, delivery_id)
    if found is None:
        raise NotFound("delivery", delivery_id)
    return found


async def list_deliveries(
    uow: DispatcherUow,
    subscription_id: str,
    *,
    status: str | None,
    event_id: str | None,
    created_after: datetime | None,
    created_before: datetime | None,
    page: PageRequest,
) -> list[DeliveryRow]:
    _check_window(created_after, created_before)
    await get_subscription(uow, subscription_id)
    return await uow.deliveries.list(
        subscription_id,
        status=status,
        event_id=event_id,
        created_after=created_after,
        created_before=created_before,
        after_id=page.after,
        limit=page.fetch,
    )


async def replay_delivery(
    uow: DispatcherUow, subscription_id: str, delivery_id: str
) -> DeliveryRow:
    """A new delivery of the same signed body (same webhook-id: receivers may dedupe it)."""
    await get_subscription(uow, subscription_id)
    await _delivery(uow, subscription_id, delivery_id)
    (new,) = await uow.deliveries.copy([delivery_id], uow.now())
    uow.deliveries_enqueued = True
    return await _delivery(uow, subscription_id, new)


async def replay_failed(
    uow: DispatcherUow, subscription_id: str, after: datetime | None, before: datetime | None
) -> int:
    """Each event of the window's failed deliveries sent again once, unless it was delivered
    since or is on its way again: a second run (a retry, a runbook run twice) sends nothing
    more, and past MAX_REPLAY the next run takes the next ones."""
    _check_window(after, before)
    await get_subscription(uow, subscription_id, lock=True)
    failed = await uow.deliveries.to_replay(subscription_id, after, before, MAX_REPLAY)
    copies = await uow.deliveries.copy(failed, uow.now())
    uow.deliveries_enqueued = bool(copies)
    return len(copies)


def _check_window(after: datetime | None, before: datetime | None) -> None:
    if after is not None and before is not None:
        # An empty window is a mistake (the two swapped), never a silent empty answer.
        raise_if(require(before > after, "created_before", "must be after created_after"))


def disabled(sub: Subscription, reason: DisabledReason) -> Subscription:
    sub.status, sub.disabled_reason = Status.DISABLED, reason.value
    return sub
