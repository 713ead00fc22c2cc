"""Webhooks delivered to a real HTTP receiver: signed (checked by the reference Standard
Webhooks library), retried on schedule, 410 and 429 obeyed, disabled after days of failure,
secrets never stored in clear, one merchant's subscriptions never see another's events."""

from __future__ import annotations

import asyncio
import itertools
import json
from datetime import UTC, timedelta

import grpc
import psycopg
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from pos_dispatcher.domain import model
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from pos.common.v1 import money_pb2
from pos.customer.v1 import customer_pb2
from pos.customer.v1 import events_pb2 as customer_events
from pos.dispatcher.v1 import dispatcher_pb2 as pb
from pos.inventory.v1 import events_pb2 as inventory_events
from pos.inventory.v1 import inventory_pb2
from pos_devstack.natsd import free_port
from pos_kit.grpc_client import read_error

from .conftest import Clock, Running

pytestmark = pytest.mark.asyncio(loop_scope="session")


def stamp() -> Timestamp:
    now = Timestamp()
    now.GetCurrentTime()
    return now


def product_created(n: int) -> inventory_events.ProductCreated:
    return inventory_events.ProductCreated(
        product=inventory_pb2.Product(
            id=f"prod_{n}",
            sku=f"SKU-{n}",
            name=f"Product {n}",
            price=money_pb2.Money(amount=100, currency="USD"),
            version=1,
            created_at=stamp(),
            updated_at=stamp(),
            tax_category="standard",
            status=inventory_pb2.PRODUCT_STATUS_ACTIVE,
        )
    )


def customer_created(n: int) -> customer_events.CustomerCreated:
    return customer_events.CustomerCreated(
        customer=customer_pb2.Customer(
            id=f"cus_{n}", email="a@example.com", version=1, created_at=stamp(), updated_at=stamp()
        )
    )


async def test_each_event_arrives_signed(dispatcher, receiver) -> None:
    # How soon is measured by tools/bench_dispatcher.py: on a loaded machine a second and a
    # half can pass with nothing wrong, so here the events only arrive (within the deadline).
    made = await dispatcher.subscribe(receiver.url, ["product.*"])
    assert made.secret.startswith("whsec_")
    for n in range(3):
        await dispatcher.publish(product_created(n))
    await dispatcher.publish(customer_created(1))  # not subscribed to
    await dispatcher.eventually(lambda: _have(receiver, 3))
    hook = Webhook(made.secret)
    bodies = [hook.verify(r.body, r.headers) for r in receiver.got]
    assert {b["type"] for b in bodies} == {"product.created"}
    assert {r.headers["webhook-id"] for r in receiver.got} == {b["id"] for b in bodies}
    # The body is the public event exactly as the feed has it, sequence and all.
    feed = {e.id: e for e in await dispatcher.feed()}
    for body in bodies:
        assert body["data"] == json.loads(feed[body["id"]].data_json)
        assert body["sequence"] == feed[body["id"]].sequence
    # A tampered body fails the reference library.
    first = receiver.got[0]
    with pytest.raises(WebhookVerificationError):
        hook.verify(first.body.replace("product.created", "product.archived"), first.headers)

    # Every delivery is logged with its attempt (answers are recorded a moment after they
    # come, many per transaction).
    async def all_recorded() -> bool:
        found = await dispatcher.deliveries(made.subscription.id)
        return [d.status for d in found] == [pb.DELIVERY_STATUS_SUCCEEDED] * 3

    await dispatcher.eventually(all_recorded)
    logged = await dispatcher.deliveries(made.subscription.id)
    assert all(d.attempts[0].status_code == 204 for d in logged)
    assert all(d.attempts[0].latency_ms >= 0 for d in logged)


async def _have(receiver, n: int) -> bool:  # type: ignore[no-untyped-def]
    return len(receiver.got) >= n


async def test_the_secret_is_shown_once_and_never_stored_in_clear(dispatcher, receiver) -> None:
    made = await dispatcher.subscribe(receiver.url, ["*"], request_id="sub-once")
    again = await dispatcher.subscribe(receiver.url, ["*"], request_id="sub-once")
    assert again.subscription == made.subscription
    assert again.secret == ""  # a replay of the same request does not show it again
    with psycopg.connect(dispatcher.database_url) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            ).fetchall()
        ]
        for table in tables:
            dump = conn.execute(f'SELECT t::text FROM "{table}" t').fetchall()  # noqa: S608
            key = made.secret.removeprefix("whsec_")
            assert not any(key in row[0] for row in dump), table
            assert not any(key.encode().hex() in row[0] for row in dump), table


async def test_during_a_rotation_both_secrets_sign(dispatcher, receiver) -> None:
    made = await dispatcher.subscribe(receiver.url, ["product.*"])
    rotated = await dispatcher.call(
        "RotateSubscriptionSecret",
        pb.RotateSubscriptionSecretRequest(request_id="rot-1", id=made.subscription.id),
    )
    assert rotated.secret.startswith("whsec_") and rotated.secret != made.secret
    await dispatcher.publish(product_created(7))
    # Recorded before the clock moves on, so no lease ends and sends it again then (signed
    # by the new secret alone): each delivery is read by its event, not its place.
    await dispatcher.eventually(lambda: _succeeded(dispatcher, made, 1))
    heard = next(r for r in receiver.got if '"prod_7"' in r.body)
    assert len(heard.headers["webhook-signature"].split(" ")) == 2
    Webhook(made.secret).verify(heard.body, heard.headers)
    Webhook(rotated.secret).verify(heard.body, heard.headers)
    # Past the overlap only the new secret signs.
    dispatcher.clock.travel(timedelta(days=2))
    try:
        await dispatcher.publish(product_created(8))
        await dispatcher.eventually(lambda: _succeeded(dispatcher, made, 2))
    finally:
        dispatcher.clock.travel(-timedelta(days=2))
    later = next(r for r in receiver.got if '"prod_8"' in r.body)
    Webhook(rotated.secret).verify(later.body, later.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(made.secret).verify(later.body, later.headers)


async def test_a_second_rotation_keeps_every_earlier_secret_to_the_end_of_its_overlap(
    dispatcher, receiver
) -> None:
    """Rotated again within the overlap, the secret in use (B) keeps signing beside the new one
    (C) for the second rotation's overlap, and the one the first rotation retired (A) still
    to the end of the overlap that rotation promised: a receiver not yet switched to B (the
    first rotation's answer lost, say) is not cut off by the second. Until 2026-12-05 the
    second rotation dropped A at once."""
    made = await dispatcher.subscribe(receiver.url, ["product.*"])
    first = await dispatcher.call(
        "RotateSubscriptionSecret",
        pb.RotateSubscriptionSecretRequest(
            request_id="rot-again-1", id=made.subscription.id, overlap_seconds=2 * 86400
        ),
    )
    dispatcher.clock.travel(timedelta(days=1))
    travelled = timedelta(days=1)
    try:
        second = await dispatcher.call(
            "RotateSubscriptionSecret",
            pb.RotateSubscriptionSecretRequest(
                request_id="rot-again-2", id=made.subscription.id, overlap_seconds=3 * 86400
            ),
        )
        secrets = {"A": made.secret, "B": first.secret, "C": second.secret}
        assert len(set(secrets.values())) == 3
        # Day 1: A (to day 2), B (to day 4) and C all sign; day 3: B and C; day 5: C alone.
        expected = [(0, {"A", "B", "C"}), (2, {"B", "C"}), (2, {"C"})]
        for n, (days, signing) in enumerate(expected):
            dispatcher.clock.travel(timedelta(days=days))
            travelled += timedelta(days=days)
            await dispatcher.publish(product_created(20 + n))
            # Recorded before the clock moves on, so no lease ends and sends it again then.
            await dispatcher.eventually(lambda n=n: _succeeded(dispatcher, made, n + 1))
            heard = next(r for r in receiver.got if f'"prod_{20 + n}"' in r.body)
            assert len(heard.headers["webhook-signature"].split(" ")) == len(signing)
            for name, secret in secrets.items():
                if name in signing:
                    Webhook(secret).verify(heard.body, heard.headers)
                else:
                    with pytest.raises(WebhookVerificationError):
                        Webhook(secret).verify(heard.body, heard.headers)
    finally:
        dispatcher.clock.travel(-travelled)


async def test_at_most_five_secrets_sign_however_often_it_is_rotated(dispatcher, receiver) -> None:
    """Rotated many times within the overlap, the newest five secrets sign (the current, the
    one it replaced and three earlier): the header stays small, and the oldest stop early."""
    made = await dispatcher.subscribe(receiver.url, ["product.*"])
    secrets = [made.secret]
    for n in range(6):
        rotated = await dispatcher.call(
            "RotateSubscriptionSecret",
            pb.RotateSubscriptionSecretRequest(request_id=f"rot-many-{n}", id=made.subscription.id),
        )
        secrets.append(rotated.secret)
    await dispatcher.publish(product_created(30))
    await dispatcher.eventually(lambda: _have(receiver, 1))
    heard = receiver.got[0]
    assert len(heard.headers["webhook-signature"].split(" ")) == 5
    for secret in secrets[-5:]:
        Webhook(secret).verify(heard.body, heard.headers)
    for secret in secrets[:-5]:
        with pytest.raises(WebhookVerificationError):
            Webhook(secret).verify(heard.body, heard.headers)


async def test_failed_attempts_are_retried_until_the_receiver_answers(dispatcher, receiver) -> None:
    receiver.answer = lambda r: (500, {}, 0.0) if len(receiver.got) <= 2 else (200, {}, 0.0)
    made = await dispatcher.subscribe(receiver.url, ["product.*"])
    await dispatcher.publish(product_created(1))
    for n in (1, 2):
        await dispatcher.eventually(lambda n=n: _have(receiver, n))
        await dispatcher.eventually(lambda n=n: _attempts(dispatcher, made, n))
        # Move time to the next retry; the worker picks it up on its next look.
        dispatcher.clock.travel(timedelta(minutes=2))
    await dispatcher.eventually(lambda: _have(receiver, 3))
    await dispatcher.eventually(lambda: _attempts(dispatcher, made, 3))
    (delivery,) = await dispatcher.deliveries(made.subscription.id)
    assert [a.status_code for a in delivery.attempts] == [500, 500, 200]
    assert delivery.status == pb.DELIVERY_STATUS_SUCCEEDED
    assert len({r.headers["webhook-id"] for r in receiver.got}) == 1  # one message, retried


async def _succeeded(dispatcher, made, n: int) -> bool:  # type: ignore[no-untyped-def]
    found = await dispatcher.deliveries(made.subscription.id)
    return [d.status for d in found] == [pb.DELIVERY_STATUS_SUCCEEDED] * n


async def _attempts(dispatcher, made, n: int) -> bool:  # type: ignore[no-untyped-def]
    found = await dispatcher.deliveries(made.subscription.id)
    return bool(found) and found[0].attempt_count >= n


async def test_a_429_is_retried_no_sooner_than_its_retry_after(dispatcher, receiver) -> None:
    receiver.answer = lambda r: (
        (429, {"retry-after": "600"}, 0.0) if len(receiver.got) == 1 else (200, {}, 0.0)
    )
    made = await dispatcher.subscribe(receiver.url, ["product.*"])
    await dispatcher.publish(product_created(1))
    await dispatcher.eventually(lambda: _attempts(dispatcher, made, 1))
    (delivery,) = await dispatcher.deliveries(made.subscription.id)
    wait = delivery.next_attempt_at.ToDatetime(UTC) - delivery.attempts[0].attempted_at.ToDatetime(
        UTC
    )
    assert wait >= timedelta(seconds=600)
    # Past the schedule's first wait but before Retry-After: nothing is sent.
    dispatcher.clock.travel(timedelta(seconds=300))
    await asyncio.sleep(1.5)  # two looks of the worker
    assert len(receiver.got) == 1
    dispatcher.clock.travel(timedelta(seconds=310))
    await dispatcher.eventually(lambda: _have(receiver, 2))


async def test_a_410_disables_the_subscription_at_once_and_says_so(dispatcher, receiver) -> None:
    receiver.answer = lambda r: (410, {}, 0.0) if r.path == "/gone" else (204, {}, 0.0)
    gone = await dispatcher.subscribe(receiver.at("/gone"), ["product.*"])
    watcher = await dispatcher.subscribe(receiver.at("/watch"), ["webhook_subscription.*"])
    await dispatcher.publish(product_created(1))
    await dispatcher.eventually(
        lambda: _status(dispatcher, gone.subscription.id, pb.SUBSCRIPTION_STATUS_DISABLED)
    )
    sub = await dispatcher.subscription(gone.subscription.id)
    assert sub.disabled_reason == "endpoint_gone"
    (delivery,) = await dispatcher.deliveries(gone.subscription.id)
    assert delivery.status == pb.DELIVERY_STATUS_FAILED and delivery.attempt_count == 1
    feed = await dispatcher.feed()
    assert [e.type for e in feed] == ["product.created", "webhook_subscription.disabled"]
    assert json.loads(feed[1].data_json)["object"]["id"] == gone.subscription.id
    await dispatcher.eventually(lambda: _heard_at(receiver, "/watch", 1))
    told = next(r for r in receiver.got if r.path == "/watch")
    assert Webhook(watcher.secret).verify(told.body, told.headers)["type"] == (
        "webhook_subscription.disabled"
    )
    # Enabled again, it receives again.
    receiver.answer = lambda r: (204, {}, 0.0)
    await dispatcher.call(
        "UpdateSubscription",
        pb.UpdateSubscriptionRequest(
            request_id="re-enable", id=sub.id, status=pb.SUBSCRIPTION_STATUS_ENABLED
        ),
    )
    await dispatcher.publish(product_created(2))
    await dispatcher.eventually(lambda: _heard_at(receiver, "/gone", 2))


async def test_the_disabled_event_names_the_url_s_origin_never_its_token(
    dispatcher, receiver
) -> None:
    # A receiver's URL may hold its own token (in its path or query): only
    # `webhooks:manage` reads a subscription, while the event reaches every `events:read` key
    # and every subscription that wants it, so it carries the origin the audit log names.
    receiver.answer = lambda r: (410, {}, 0.0) if r.path == "/partner-a" else (204, {}, 0.0)
    port = receiver.port
    gone_url = f"http://127.0.0.1:{port}/partner-a?token=SECRET-OF-A"
    gone = await dispatcher.subscribe(gone_url, ["product.*"])
    watcher = await dispatcher.subscribe(receiver.at("/watch"), ["webhook_subscription.*"])
    await dispatcher.publish(product_created(1))
    await dispatcher.eventually(lambda: _heard_at(receiver, "/watch", 1))
    (event,) = [e for e in await dispatcher.feed() if e.type == "webhook_subscription.disabled"]
    told = next(r for r in receiver.got if r.path == "/watch")
    pushed = Webhook(watcher.secret).verify(told.body, told.headers)
    for text in (event.data_json, told.body):
        assert "SECRET-OF-A" not in text and "partner-a" not in text
    sub = await dispatcher.subscription(gone.subscription.id)
    expected = {
        "id": sub.id,
        "origin": f"http://127.0.0.1:{port}",
        "event_types": ["product.*"],
        "description": "",
        "status": "disabled",
        "disabled_reason": "endpoint_gone",
        "version": sub.version,
    }
    for data in (json.loads(event.data_json), pushed["data"]):
        shown = data["object"]
        assert {k: v for k, v in shown.items() if k in expected} == expected
        assert set(shown) == {*expected, "created_at", "updated_at"}


async def _status(dispatcher, sub_id: str, status: int) -> bool:  # type: ignore[no-untyped-def]
    return (await dispatcher.subscription(sub_id)).status == status


async def _heard_at(receiver, path: str, n: int) -> bool:  # type: ignore[no-untyped-def]
    return len([r for r in receiver.got if r.path == path]) >= n


async def test_a_receiver_down_for_days_is_retried_on_schedule_then_disabled(dispatcher) -> None:
    dead = f"http://127.0.0.1:{free_port()}/hooks"  # nothing listens there
    made = await dispatcher.subscribe(dead, ["product.*"])
    dispatcher.clock.freeze()
    start = dispatcher.clock()
    await dispatcher.publish(product_created(1))
    for n in range(1, model.MAX_ATTEMPTS + 1):
        await dispatcher.eventually(lambda n=n: _attempts(dispatcher, made, n))
        (delivery,) = await dispatcher.deliveries(made.subscription.id)
        if delivery.status == pb.DELIVERY_STATUS_PENDING:
            dispatcher.clock.fixed = delivery.next_attempt_at.ToDatetime(UTC)
            dispatcher.worker.wake()
    (delivery,) = await dispatcher.deliveries(made.subscription.id)
    assert delivery.status == pb.DELIVERY_STATUS_FAILED
    assert delivery.attempt_count == model.MAX_ATTEMPTS
    times = [a.attempted_at.ToDatetime(UTC) for a in delivery.attempts]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert all(gap >= want for gap, want in zip(gaps, model.RETRY_DELAYS, strict=True))
    assert times[-1] - start >= timedelta(days=3)
    assert all(a.status_code == 0 and "connect" in a.error for a in delivery.attempts)
    sub = await dispatcher.subscription(made.subscription.id)
    assert (sub.status, sub.disabled_reason) == (pb.SUBSCRIPTION_STATUS_DISABLED, "failing")
    assert [e.type for e in await dispatcher.feed()][-1] == "webhook_subscription.disabled"


async def test_a_slow_receiver_does_not_hold_up_another(dispatcher, receiver) -> None:
    # The slow endpoint answers nothing until the fast one has had every event: held up
    # behind it, the fast one would wait for ever (a failure at the deadline), whatever the
    # machine's load; a time limit instead failed a loaded run that was merely slow.
    slow_answers = asyncio.Event()
    receiver.answer = lambda r: (200, {}, slow_answers) if r.path == "/slow" else (204, {}, 0.0)
    await dispatcher.subscribe(receiver.at("/slow"), ["product.*"])
    await dispatcher.subscribe(receiver.at("/fast"), ["product.*"])
    for n in range(20):
        await dispatcher.publish(product_created(n))
    try:
        await dispatcher.eventually(lambda: _heard_at(receiver, "/fast", 20))
        # The slow endpoint gets no more than its share of requests at once (8 by default).
        await asyncio.sleep(0.5)
        assert len([r for r in receiver.got if r.path == "/slow"]) <= 8
    finally:
        slow_answers.set()


async def test_subscriptions_and_events_stay_with_their_merchant(dispatcher, receiver) -> None:
    mine = await dispatcher.subscribe(receiver.url, ["*"], merchant="mer_a")
    for method, request in [
        ("GetSubscription", pb.GetSubscriptionRequest(id=mine.subscription.id)),
        ("ListDeliveries", pb.ListDeliveriesRequest(subscription_id=mine.subscription.id)),
        ("SendTestEvent", pb.SendTestEventRequest(request_id="t-1", id=mine.subscription.id)),
        (
            "DeleteSubscription",
            pb.DeleteSubscriptionRequest(request_id="d-1", id=mine.subscription.id),
        ),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await dispatcher.call(method, request, "mer_b")
        assert err.value.code() == grpc.StatusCode.NOT_FOUND, method
    listed = await dispatcher.call("ListSubscriptions", pb.ListSubscriptionsRequest(), "mer_b")
    assert list(listed.subscriptions) == []
    await dispatcher.publish(product_created(1), "mer_b")
    await dispatcher.publish(product_created(2), "mer_a")
    await dispatcher.eventually(lambda: _have(receiver, 1))
    await asyncio.sleep(1.0)  # time enough for a wrong delivery to arrive too
    assert [r.json()["merchant_id"] for r in receiver.got] == ["mer_a"]


async def test_a_deletion_naming_a_stale_version_leaves_the_subscription(
    dispatcher, receiver
) -> None:
    """As a change does: a deletion decided on the version read is refused once the
    subscription changed since (FAILED_PRECONDITION `version_mismatch`, `current_version`),
    and it stays; on the current version, or naming none, it goes."""
    made = await dispatcher.subscribe(receiver.url, ["order.*"])
    sub_id = made.subscription.id
    changed = await dispatcher.call(
        "UpdateSubscription",
        pb.UpdateSubscriptionRequest(request_id="v-1", id=sub_id, description="moved"),
    )
    assert changed.subscription.version == made.subscription.version + 1
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await dispatcher.call(
            "DeleteSubscription",
            pb.DeleteSubscriptionRequest(
                request_id="v-2", id=sub_id, expected_version=made.subscription.version
            ),
        )
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    refusal = read_error(err.value)
    assert refusal.reason == "version_mismatch"
    assert refusal.metadata["current_version"] == str(changed.subscription.version)
    assert (await dispatcher.subscription(sub_id)).description == "moved"
    await dispatcher.call(
        "DeleteSubscription",
        pb.DeleteSubscriptionRequest(
            request_id="v-3", id=sub_id, expected_version=changed.subscription.version
        ),
    )
    with pytest.raises(grpc.aio.AioRpcError) as gone:
        await dispatcher.subscription(sub_id)
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_test_event_reaches_only_that_subscription(dispatcher, receiver) -> None:
    made = await dispatcher.subscribe(receiver.url, ["order.*"])
    sent = await dispatcher.call(
        "SendTestEvent", pb.SendTestEventRequest(request_id="test-1", id=made.subscription.id)
    )
    assert sent.delivery.event_type == "webhook_subscription.tested"
    await dispatcher.eventually(lambda: _have(receiver, 1))
    assert Webhook(made.secret).verify(receiver.got[0].body, receiver.got[0].headers)["type"] == (
        "webhook_subscription.tested"
    )
    assert await dispatcher.feed() == []  # never in the feed


async def test_a_failed_delivery_can_be_replayed(dispatcher, receiver) -> None:
    receiver.answer = lambda r: (410, {}, 0.0) if len(receiver.got) == 1 else (204, {}, 0.0)
    made = await dispatcher.subscribe(receiver.url, ["product.*"])
    await dispatcher.publish(product_created(1))
    await dispatcher.eventually(lambda: _attempts(dispatcher, made, 1))
    await dispatcher.call(
        "UpdateSubscription",
        pb.UpdateSubscriptionRequest(
            request_id="on", id=made.subscription.id, status=pb.SUBSCRIPTION_STATUS_ENABLED
        ),
    )
    replayed = await dispatcher.call(
        "ReplayFailedDeliveries",
        pb.ReplayFailedDeliveriesRequest(request_id="again", subscription_id=made.subscription.id),
    )
    assert replayed.replayed == 1
    await dispatcher.eventually(lambda: _have(receiver, 2))
    assert receiver.got[0].body == receiver.got[1].body


async def test_replaying_failed_deliveries_sends_each_event_not_yet_delivered_once(
    dispatcher, receiver
) -> None:
    """A replay of the failed deliveries of a window sends each of their events once, and only
    those not delivered since nor on their way again: run twice (a retry, a runbook's second
    run) it sends nothing more, and an event delivered by a replay of its own is not sent
    again. Every failed copy was copied anew: each run sent the whole window again, a failed
    copy added a copy of its own, and past the cap the same first deliveries came each time."""
    receiver.answer = lambda r: (410, {}, 0.0) if len(receiver.got) <= 2 else (204, {}, 0.0)
    made = await dispatcher.subscribe(receiver.url, ["product.*"])
    sub_id = made.subscription.id
    await dispatcher.publish(product_created(1))
    await dispatcher.eventually(lambda: _attempts(dispatcher, made, 1))
    await dispatcher.call(
        "UpdateSubscription",
        pb.UpdateSubscriptionRequest(
            request_id="on", id=sub_id, status=pb.SUBSCRIPTION_STATUS_ENABLED
        ),
    )
    await dispatcher.publish(product_created(2))
    await dispatcher.eventually(lambda: _heard(receiver, 2))
    await dispatcher.eventually(lambda: _failed(dispatcher, sub_id, 2))
    await dispatcher.call(
        "UpdateSubscription",
        pb.UpdateSubscriptionRequest(
            request_id="on2", id=sub_id, status=pb.SUBSCRIPTION_STATUS_ENABLED
        ),
    )
    first, second = sorted(await dispatcher.deliveries(sub_id), key=lambda d: d.sequence)
    # The first event is delivered by a replay of its own delivery.
    await dispatcher.call(
        "ReplayDelivery",
        pb.ReplayDeliveryRequest(request_id="one", subscription_id=sub_id, delivery_id=first.id),
    )
    await dispatcher.eventually(lambda: _heard(receiver, 3))
    replayed = await dispatcher.call(
        "ReplayFailedDeliveries",
        pb.ReplayFailedDeliveriesRequest(request_id="all-1", subscription_id=sub_id),
    )
    assert replayed.replayed == 1  # the second event only
    again = await dispatcher.call(
        "ReplayFailedDeliveries",
        pb.ReplayFailedDeliveriesRequest(request_id="all-2", subscription_id=sub_id),
    )
    assert again.replayed == 0  # on its way already
    await dispatcher.eventually(lambda: _heard(receiver, 4))
    await asyncio.sleep(1.5)  # two looks of the worker: nothing more goes out
    assert len(receiver.got) == 4
    assert receiver.got[3].headers["webhook-id"] == second.event_id
    after = await dispatcher.call(
        "ReplayFailedDeliveries",
        pb.ReplayFailedDeliveriesRequest(request_id="all-3", subscription_id=sub_id),
    )
    assert after.replayed == 0  # both delivered


async def _heard(receiver, n: int) -> bool:  # type: ignore[no-untyped-def]
    return len(receiver.got) >= n


async def _failed(dispatcher, sub_id: str, n: int) -> bool:  # type: ignore[no-untyped-def]
    found = await dispatcher.deliveries(sub_id)
    return len([d for d in found if d.status == pb.DELIVERY_STATUS_FAILED]) >= n


async def test_a_url_pointing_inside_is_refused_at_creation(strict_dispatcher) -> None:
    for url in ("http://127.0.0.1:9/hook", "http://169.254.169.254/latest", "http://10.0.0.1/x"):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await strict_dispatcher.subscribe(url, ["*"])
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert read_error(err.value).violations[0].field == "url"


async def test_outside_the_sandbox_only_https_urls_are_taken(strict_dispatcher) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await strict_dispatcher.subscribe("http://93.184.215.14/hook", ["*"])
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    (violation,) = read_error(err.value).violations
    assert (violation.field, violation.description) == ("url", "must be an https URL")
    made = await strict_dispatcher.subscribe("https://93.184.215.14/hook", ["*"])
    assert made.subscription.url == "https://93.184.215.14/hook"


async def test_an_address_is_checked_again_at_every_connection(dispatcher, receiver) -> None:
    made = await dispatcher.subscribe(receiver.url, ["product.*"])
    # The deployment stops allowing private addresses (as if the name now resolved inside).
    await dispatcher.stop()
    dispatcher.settings["webhook_allow_private_networks"] = False
    await dispatcher.start()
    await dispatcher.publish(product_created(1))
    await dispatcher.eventually(lambda: _attempts(dispatcher, made, 1))
    (delivery,) = await dispatcher.deliveries(made.subscription.id)
    assert delivery.attempts[0].status_code == 0
    assert "may not reach" in delivery.attempts[0].error
    assert receiver.got == []


async def test_ingest_and_delivery_run_in_processes_of_their_own(infra, receiver) -> None:
    """DISPATCHER_ROLE: one process ingests (and does not deliver), another delivers (and does
    not ingest), as the devstack runs them. The deliverer's poll is a minute away: what it
    sends at once, it sends because the ingesting process's commit woke it over NATS."""
    server = infra.new_nats()
    database = infra.service_database("dispatcher")
    ingest = Running(infra, server, database, Clock(), {"dispatcher_role": "ingest"})
    deliver = Running(
        infra,
        server,
        database,
        Clock(),
        {"dispatcher_role": "deliver", "webhook_poll_seconds": 60},
    )
    await ingest.start()
    await deliver.start()
    try:
        made = await ingest.subscribe(receiver.url, ["product.*"], merchant="mer_roles")
        for n in range(3):
            await ingest.publish(product_created(900 + n), merchant="mer_roles")

        async def arrived() -> bool:
            got = {r.headers["webhook-id"] for r in receiver.got}
            return {e.id for e in await ingest.feed("mer_roles")} <= got

        await ingest.eventually(lambda: _have_feed(ingest, 3))
        await deliver.eventually(arrived)
        # The ingesting process sent none of them; the delivering one read no stream.
        assert ingest.worker.sent == 0
        assert not deliver.parts.ingest.consumers  # type: ignore[union-attr]

        async def recorded() -> bool:
            found = await deliver.deliveries(made.subscription.id, merchant="mer_roles")
            return [d.status for d in found] == [pb.DELIVERY_STATUS_SUCCEEDED] * 3

        await deliver.eventually(recorded)
    finally:
        await deliver.stop()
        await ingest.stop()


async def _have_feed(running, n: int) -> bool:  # type: ignore[no-untyped-def]
    return len(await running.feed("mer_roles")) >= n


async def test_a_subscription_deleted_mid_delivery_spoils_no_other_record(
    dispatcher, receiver
) -> None:
    """A's deliveries are out when A is deleted; B's answers come back beside A's and are
    recorded in the same batch: B's are recorded once each (A's, gone, are skipped), never
    left leased to go out again."""
    receiver.answer = lambda r: (200, {}, 1.0)
    gone = await dispatcher.subscribe(receiver.at("/gone"), ["product.*"])
    kept = await dispatcher.subscribe(receiver.at("/kept"), ["product.*"])
    for n in range(4):
        await dispatcher.publish(product_created(9100 + n))
    await dispatcher.eventually(lambda: _heard_at(receiver, "/gone", 4))
    await dispatcher.call(
        "DeleteSubscription",
        pb.DeleteSubscriptionRequest(request_id="del-mid", id=gone.subscription.id),
    )

    async def kept_recorded() -> bool:
        found = await dispatcher.deliveries(kept.subscription.id)
        return len(found) == 4 and all(d.status == pb.DELIVERY_STATUS_SUCCEEDED for d in found)

    await dispatcher.eventually(kept_recorded, limit=10)
    assert all(len(d.attempts) == 1 for d in await dispatcher.deliveries(kept.subscription.id))


async def test_a_subscription_changed_gets_nothing_more_from_the_local_queue(
    patient_dispatcher, receiver
) -> None:
    """Many deliveries of a slow endpoint wait in the worker's queue; once the subscription is
    disabled, they stay pending instead of going out (once RECHECK_SECONDS have passed), and
    go out once each when it is enabled again."""
    from pos_dispatcher.service.delivery import RECHECK_SECONDS

    # The endpoint answers nothing until let go: the deliveries out when it is disabled (one
    # per slot, 8) stay the only ones out, however loaded the machine (the dispatcher waits
    # 30 s for an answer: with 5 s, held ones timed out under load and the next 8 went out).
    # With answers of half a second instead, how many went out before the disable depended on
    # how soon it came.
    answers = asyncio.Event()
    receiver.answer = lambda r: (200, {}, answers) if r.path == "/queued" else (204, {}, 0.0)
    made = await patient_dispatcher.subscribe(receiver.at("/queued"), ["product.*"])
    events = 40
    for n in range(events):
        await patient_dispatcher.publish(product_created(9200 + n))

    # Every event has its delivery (a disabled subscription is given none) and some are out.
    async def all_made() -> bool:
        return len(await patient_dispatcher.deliveries(made.subscription.id)) == events

    try:
        await patient_dispatcher.eventually(all_made)
        await patient_dispatcher.eventually(lambda: _heard_at(receiver, "/queued", 1))
        changed = pb.UpdateSubscriptionRequest(
            request_id="off-q", id=made.subscription.id, status=pb.SUBSCRIPTION_STATUS_DISABLED
        )
        first = await patient_dispatcher.call("UpdateSubscription", changed)
        # Disabled again, or sent what it already is: no new version.
        for again in (
            pb.UpdateSubscriptionRequest(
                request_id="off-q2", id=made.subscription.id,
                status=pb.SUBSCRIPTION_STATUS_DISABLED,
            ),
            pb.UpdateSubscriptionRequest(
                request_id="same-q", id=made.subscription.id, url=receiver.at("/queued"),
                event_types=["product.*", "product.*"], replace_event_types=True,
            ),
        ):  # fmt: skip
            kept = await patient_dispatcher.call("UpdateSubscription", again)
            assert kept.subscription.version == first.subscription.version
        # The worker's read of the subscription (made before the first went out) is now older
        # than it may be: the next delivery to go out reads it again. At least this long, so a
        # loaded machine only waits longer.
        await asyncio.sleep(RECHECK_SECONDS + 0.1)
    finally:
        answers.set()

    # The slots free up; what waited in the queue finds the subscription disabled.
    async def answers_recorded() -> bool:
        found = await patient_dispatcher.deliveries(made.subscription.id)
        tried = [d for d in found if d.attempt_count >= 1]
        return len(tried) >= len([r for r in receiver.got if r.path == "/queued"])

    await patient_dispatcher.eventually(answers_recorded)
    await asyncio.sleep(1.0)  # time enough for a wrong delivery to arrive too
    sent = [r for r in receiver.got if r.path == "/queued"]
    assert 1 <= len(sent) <= 8, len(sent)  # those out when it was disabled, one per slot

    receiver.answer = lambda r: (204, {}, 0.0)
    enabled = pb.UpdateSubscriptionRequest(
        request_id="on-q", id=made.subscription.id, status=pb.SUBSCRIPTION_STATUS_ENABLED
    )
    await patient_dispatcher.call("UpdateSubscription", enabled)
    await patient_dispatcher.eventually(lambda: _heard_at(receiver, "/queued", events), limit=15)
    ids = [r.headers["webhook-id"] for r in receiver.got if r.path == "/queued"]
    assert len(set(ids)) == events


async def test_a_merchant_has_a_bounded_number_of_subscriptions(dispatcher, receiver) -> None:
    """Each subscription multiplies what every event costs: the 51st is refused (409
    `too_many_subscriptions`, nothing made), and deleting one makes room again."""
    from pos_dispatcher.service.handlers import MAX_SUBSCRIPTIONS

    merchant = "mer_many"
    made = [
        await dispatcher.subscribe(receiver.at(f"/many/{n}"), ["order.*"], merchant=merchant)
        for n in range(MAX_SUBSCRIPTIONS)
    ]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await dispatcher.subscribe(receiver.at("/many/more"), ["order.*"], merchant=merchant)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert read_error(err.value).reason == "too_many_subscriptions"
    listed = await dispatcher.call(
        "ListSubscriptions", pb.ListSubscriptionsRequest(page_size=200), merchant
    )
    assert len(listed.subscriptions) == MAX_SUBSCRIPTIONS
    await dispatcher.call(
        "DeleteSubscription",
        pb.DeleteSubscriptionRequest(request_id="many-del", id=made[0].subscription.id),
        merchant,
    )
    await dispatcher.subscribe(receiver.at("/many/again"), ["order.*"], merchant=merchant)
    # Another merchant's count is its own.
    await dispatcher.subscribe(receiver.at("/many/other"), ["order.*"], merchant="mer_few")


async def test_an_answer_holding_nul_bytes_is_recorded(dispatcher, receiver) -> None:
    """An endpoint may answer any bytes; a NUL, which PostgreSQL text cannot hold, once failed
    the statement recording the answer (every merchant's successes in it stayed leased, to be
    sent again, and a failure was never recorded). The excerpt keeps a visible stand-in."""
    receiver.reply = b"ok\x00\xff\x00"
    receiver.answer = lambda r: (200, {}, 0.0) if r.path == "/ok" else (500, {}, 0.0)
    good = await dispatcher.subscribe(receiver.at("/ok"), ["product.*"])
    bad = await dispatcher.subscribe(receiver.at("/bad"), ["product.*"])
    await dispatcher.publish(product_created(9300))

    async def both_recorded() -> bool:
        ok = await dispatcher.deliveries(good.subscription.id)
        failed = await dispatcher.deliveries(bad.subscription.id)
        return (
            [d.status for d in ok] == [pb.DELIVERY_STATUS_SUCCEEDED]
            and bool(failed)
            and len(failed[0].attempts) == 1
        )

    await dispatcher.eventually(both_recorded, limit=10)
    (ok,) = await dispatcher.deliveries(good.subscription.id)
    (failed,) = await dispatcher.deliveries(bad.subscription.id)
    assert ok.attempts[0].response_excerpt == "ok\ufffd\ufffd\ufffd"
    assert (failed.attempts[0].status_code, failed.status) == (500, pb.DELIVERY_STATUS_PENDING)
    assert len(receiver.ids()) == 1 and len(receiver.got) == 2  # nothing sent twice


async def test_a_status_outside_http_s_range_is_no_answer(dispatcher) -> None:
    """HTTP status codes are 100 to 599 and the API documents `status_code` so; a receiver
    answering 999 (aiohttp reads any three digits) was recorded as 999, and the gateway
    then failed every listing of the subscription's deliveries."""
    heard: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heard.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 999 Odd\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        made = await dispatcher.subscribe(f"http://127.0.0.1:{port}/hooks", ["product.*"])
        await dispatcher.publish(product_created(9400))
        await dispatcher.eventually(lambda: _attempts(dispatcher, made, 1))
    finally:
        server.close()
    (delivery,) = await dispatcher.deliveries(made.subscription.id)
    (attempt,) = delivery.attempts
    assert (attempt.status_code, attempt.error) == (0, "answered with status 999, not HTTP's")
    assert delivery.status == pb.DELIVERY_STATUS_PENDING  # retried as any failure is


async def test_event_types_sent_in_another_order_or_twice_change_nothing(
    dispatcher, receiver
) -> None:
    """A subscription's `event_types` are a set: the same types in another order, or with one
    named twice, are what it already has: no new version and `changed` false (the gateway
    writes no `webhook_subscription.updated` entry on it), and the types are kept as they
    were. Until 2026-12-05 they were compared as a list, so either was a change."""
    made = await dispatcher.subscribe(receiver.at("/types"), ["product.*", "customer.*"])
    version = made.subscription.version
    for n, types in enumerate(
        (["customer.*", "product.*"], ["customer.*", "product.*", "customer.*"],
         ["product.*", "product.*", "customer.*"])
    ):  # fmt: skip
        same = pb.UpdateSubscriptionRequest(
            request_id=f"types-{n}", id=made.subscription.id, event_types=types,
            replace_event_types=True,
        )  # fmt: skip
        kept = await dispatcher.call("UpdateSubscription", same)
        assert not kept.changed, types
        assert kept.subscription.version == version, types
        assert list(kept.subscription.event_types) == ["product.*", "customer.*"]
    fewer = pb.UpdateSubscriptionRequest(
        request_id="types-fewer", id=made.subscription.id, event_types=["customer.*"] * 2,
        replace_event_types=True,
    )  # fmt: skip
    changed = await dispatcher.call("UpdateSubscription", fewer)
    assert changed.changed and changed.subscription.version == version + 1
    assert list(changed.subscription.event_types) == ["customer.*"]
