"""The event feed: every integration event of every stream becomes public events with a
gap-free sequence per merchant, the resource's snapshot exactly as `GET` answers it, and
nothing of another merchant."""

from __future__ import annotations

import json

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from pos.common.v1 import money_pb2
from pos.customer.v1 import customer_pb2, loyalty_pb2
from pos.customer.v1 import events_pb2 as customer_events
from pos.dispatcher.v1 import dispatcher_pb2 as pb
from pos.inventory.v1 import events_pb2 as inventory_events
from pos.inventory.v1 import inventory_pb2, stock_pb2
from pos.inventory.v1 import stock_events_pb2 as stock_events
from pos.order.v1 import events_pb2 as order_events
from pos.order.v1 import order_pb2
from pos_devstack.testing import until
from pos_gateway.convert import to_model
from pos_gateway.schemas.catalog import Product
from pos_gateway.schemas.people import Customer
from pos_kit.grpc_client import read_error

pytestmark = pytest.mark.asyncio(loop_scope="session")


def stamp() -> Timestamp:
    now = Timestamp()
    now.GetCurrentTime()
    return now


def product(n: int, version: int = 1) -> inventory_pb2.Product:
    return inventory_pb2.Product(
        id=f"prod_{n}",
        sku=f"SKU-{n}",
        name=f"Product {n}",
        price=money_pb2.Money(amount=100 * n, currency="USD"),
        version=version,
        created_at=stamp(),
        updated_at=stamp(),
        tax_category="standard",
        status=inventory_pb2.PRODUCT_STATUS_ACTIVE,
    )


def customer(n: int | str) -> customer_pb2.Customer:
    return customer_pb2.Customer(
        id=f"cus_{n}", email=f"c{n}@example.com", version=1, created_at=stamp(), updated_at=stamp()
    )


async def test_events_of_every_stream_get_gap_free_sequences_per_merchant(dispatcher) -> None:
    published = []
    made = {n: product(n) for n in range(1, 6)}
    for n in range(1, 6):
        published.append(("mer_a", await dispatcher.publish(
            inventory_events.ProductCreated(product=made[n]), "mer_a")))  # fmt: skip
        published.append(("mer_b", await dispatcher.publish(
            customer_events.CustomerCreated(customer=customer(n)), "mer_b")))  # fmt: skip
    for n in range(1, 6):
        await dispatcher.publish(
            inventory_events.ProductUpdated(product=product(n, version=2)), "mer_a"
        )
    feeds: dict[str, list[pb.Event]] = {}

    async def settled() -> bool:
        feeds["a"] = await dispatcher.feed("mer_a")
        feeds["b"] = await dispatcher.feed("mer_b")
        return len(feeds["a"]) == 10 and len(feeds["b"]) == 5

    await until_async(settled)
    a, b = feeds["a"], feeds["b"]
    assert [e.sequence for e in a] == list(range(1, 11))
    assert [e.sequence for e in b] == list(range(1, 6))
    assert {e.merchant_id for e in a} == {"mer_a"} and {e.merchant_id for e in b} == {"mer_b"}
    # The public event keeps the integration event's id; each product's events in order.
    assert {e.id for e in a} >= {i for m, i in published if m == "mer_a"}
    for n in range(1, 6):
        mine = [e for e in a if json.loads(e.data_json)["object"]["id"] == f"prod_{n}"]
        assert [e.type for e in mine] == ["product.created", "product.updated"]
        assert [json.loads(e.data_json)["object"]["version"] for e in mine] == [1, 2]
    # The snapshot is what GET answers: the gateway's own model of the same message.
    first = json.loads(a[0].data_json)["object"]
    assert first == to_model(Product, made[1]).model_dump(mode="json")
    first_customer = json.loads(b[0].data_json)["object"]
    assert first_customer["id"] == "cus_1"
    assert set(first_customer) == set(Customer.model_fields)


async def until_async(check, limit: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    done = {"ok": False}

    async def poll() -> None:
        import asyncio

        while not done["ok"]:
            done["ok"] = await check()
            if not done["ok"]:
                await asyncio.sleep(0.05)

    import asyncio

    await asyncio.wait_for(poll(), limit)


async def test_a_reservation_is_announced_with_the_stock_levels_it_moved(dispatcher) -> None:
    held = stock_events.ReservationCreated(
        reservation=stock_pb2.Reservation(id="res_1", location_id="loc_1", status=1,
                                          lines=[stock_pb2.StockLine(sku="MUG", quantity=2)],
                                          expires_at=stamp(), created_at=stamp(),
                                          updated_at=stamp()),
        levels=[inventory_pb2.StockLevel(sku="MUG", location_id="loc_1", on_hand=5, reserved=2,
                                         available=3)],
    )  # fmt: skip
    await dispatcher.publish(held, "mer_r")
    found: list[pb.Event] = []

    async def arrived() -> bool:
        found[:] = await dispatcher.feed("mer_r")
        return len(found) == 2

    await until_async(arrived)
    assert [e.type for e in found] == ["reservation.created", "inventory.changed"]
    level = json.loads(found[1].data_json)["object"]
    assert (level["sku"], level["reserved"], level["available"]) == ("MUG", 2, 3)


async def test_another_merchants_event_is_not_found(dispatcher) -> None:
    event_id = await dispatcher.publish(
        inventory_events.ProductCreated(product=product(9)), "mer_owner"
    )
    got: dict[str, pb.Event] = {}

    async def arrived() -> bool:
        try:
            got["e"] = (await dispatcher.call("GetEvent", pb.GetEventRequest(id=event_id),
                                              "mer_owner")).event  # fmt: skip
            return True
        except grpc.aio.AioRpcError:
            return False

    await until_async(arrived)
    assert got["e"].type == "product.created"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await dispatcher.call("GetEvent", pb.GetEventRequest(id=event_id), "mer_other")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert await dispatcher.feed("mer_other") == []


async def test_the_feed_filters_by_type_and_refuses_unknown_types(dispatcher) -> None:
    await dispatcher.publish(inventory_events.ProductCreated(product=product(20)), "mer_f")
    await dispatcher.publish(
        customer_events.CustomerCreated(customer=customer("f")),
        "mer_f",
    )
    await until_async(lambda: _count(dispatcher, "mer_f", 2))
    page = await dispatcher.call("ListEvents", pb.ListEventsRequest(types=["customer.*"]), "mer_f")
    assert [e.type for e in page.events] == ["customer.created"]
    assert page.next_after == 2  # the scan covered both, so a poll resumes past both
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await dispatcher.call("ListEvents", pb.ListEventsRequest(types=["custmer.*"]), "mer_f")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert read_error(err.value).violations[0].field == "types[0]"


async def test_a_cursor_past_the_newest_event_is_refused(dispatcher) -> None:
    """A cursor never given out (past the newest event) is a 400 naming `after`: answered back
    as `next_after`, it would have the client wait there while new events went by below it."""
    empty = await dispatcher.call("ListEvents", pb.ListEventsRequest(after=0), "mer_ahead")
    assert (list(empty.events), empty.next_after) == ([], 0)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await dispatcher.call("ListEvents", pb.ListEventsRequest(after=1), "mer_ahead")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    await dispatcher.publish(inventory_events.ProductCreated(product=product(40)), "mer_ahead")
    await until_async(lambda: _count(dispatcher, "mer_ahead", 1))
    page = await dispatcher.call("ListEvents", pb.ListEventsRequest(after=1), "mer_ahead")
    assert (list(page.events), page.next_after) == ([], 1)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await dispatcher.call("ListEvents", pb.ListEventsRequest(after=10**15), "mer_ahead")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in read_error(err.value).violations] == ["after"]


async def test_a_page_says_where_the_feed_ends(dispatcher) -> None:
    """Every page carries `head`, the merchant's newest sequence, whatever it scanned or its
    filter kept: a live stream opened "from now" starts there in one call. It walked the
    whole feed page by page before (30 days of a busy merchant: minutes of calls before its
    first byte)."""
    empty = await dispatcher.call("ListEvents", pb.ListEventsRequest(after=0), "mer_head")
    assert empty.HasField("head") and empty.head == 0
    for n in range(50, 53):
        await dispatcher.publish(inventory_events.ProductCreated(product=product(n)), "mer_head")
    await until_async(lambda: _count(dispatcher, "mer_head", 3))
    first = await dispatcher.call(
        "ListEvents", pb.ListEventsRequest(after=0, page_size=1), "mer_head"
    )
    assert ([e.sequence for e in first.events], first.has_more, first.head) == ([1], True, 3)
    filtered = await dispatcher.call(
        "ListEvents", pb.ListEventsRequest(after=0, types=["customer.*"]), "mer_head"
    )
    assert (list(filtered.events), filtered.next_after, filtered.head) == ([], 3, 3)


async def _count(dispatcher, merchant: str, n: int) -> bool:  # type: ignore[no-untyped-def]
    return len(await dispatcher.feed(merchant)) == n


async def test_a_cursor_older_than_retention_is_refused(dispatcher) -> None:
    """A cursor the purge went past is a 410 `cursor_expired`, whose way back is `after=0`:
    that reads from the start of what the feed keeps, never refused (a feed that lost its
    oldest events to retention still opens from the start, and a stream from the head)."""
    from datetime import timedelta

    await dispatcher.publish(inventory_events.ProductCreated(product=product(30)), "mer_old")
    await dispatcher.publish(inventory_events.ProductCreated(product=product(31)), "mer_old")
    await until_async(lambda: _count(dispatcher, "mer_old", 2))
    dispatcher.clock.travel(timedelta(days=31))
    try:
        await dispatcher.parts.purge()
    finally:
        dispatcher.clock.travel(-timedelta(days=31))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await dispatcher.call("ListEvents", pb.ListEventsRequest(after=1), "mer_old")
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert read_error(err.value).reason == "cursor_expired"
    # From the start of what is kept: nothing yet, and the cursor moves past what is gone.
    start = await dispatcher.call("ListEvents", pb.ListEventsRequest(after=0), "mer_old")
    assert (list(start.events), start.next_after, start.has_more) == ([], 2, False)
    await dispatcher.publish(inventory_events.ProductCreated(product=product(32)), "mer_old")
    await until_async(lambda: _count(dispatcher, "mer_old", 1))
    start = await dispatcher.call("ListEvents", pb.ListEventsRequest(after=0), "mer_old")
    assert [e.sequence for e in start.events] == [3]
    # Reading on from where the feed is now works.
    page = await dispatcher.call("ListEvents", pb.ListEventsRequest(after=2), "mer_old")
    assert [e.sequence for e in page.events] == [3]


__all__ = ["until"]


async def test_an_erasure_redacts_the_customers_earlier_snapshots(dispatcher) -> None:
    """customer.erased is a tombstone (the id only), and the customer's earlier created,
    updated and merged events keep only the id: the feed no longer holds their email."""
    mine = customer_pb2.Customer(
        id="cus_gone", email="gone@example.com", given_name="Gone", version=1,
        created_at=stamp(), updated_at=stamp(),
    )  # fmt: skip
    await dispatcher.publish(customer_events.CustomerCreated(customer=mine), "mer_e")
    await dispatcher.publish(customer_events.CustomerUpdated(customer=mine), "mer_e")
    await dispatcher.publish(customer_events.CustomerCreated(customer=customer("kept")), "mer_e")
    await dispatcher.publish(customer_events.CustomerErased(customer_id="cus_gone"), "mer_e")
    await until_async(lambda: _count(dispatcher, "mer_e", 4))
    feed = await dispatcher.feed("mer_e")
    assert [e.type for e in feed] == [
        "customer.created", "customer.updated", "customer.created", "customer.erased",
    ]  # fmt: skip
    objects = [json.loads(e.data_json)["object"] for e in feed]
    assert objects[0] == objects[1] == {"id": "cus_gone", "redacted": True}
    assert objects[2]["email"] == "ckept@example.com"
    assert objects[3] == {"id": "cus_gone"}
    assert "gone@example.com" not in json.dumps(objects)


def _adjusted(
    entry_id: str, customer_id: str, reason: str
) -> customer_events.LoyaltyPointsAdjusted:
    return customer_events.LoyaltyPointsAdjusted(
        entry=loyalty_pb2.PointsEntry(
            id=entry_id, customer_id=customer_id, kind="adjusted", points=40, balance_after=40,
            reason=reason, created_at=stamp(),
        )
    )  # fmt: skip


async def test_an_erasure_blanks_the_reasons_of_the_customers_points_events(dispatcher) -> None:
    """A points adjustment's `reason` is free text a person typed ("goodwill for <name>,
    <email>"): the erased customer's loyalty.points_* events keep their entry (id, points,
    balance) but lose the reason; another customer's keep theirs. Before, only the
    customer.* snapshots were redacted and the reason stayed in the feed."""
    said = "goodwill for Reasonia Smith, rsn@example.com"
    await dispatcher.publish(_adjusted("pte_gone", "cus_gone5", said), "mer_r")
    await dispatcher.publish(_adjusted("pte_kept", "cus_kept5", "kept reason"), "mer_r")
    await until_async(lambda: _count(dispatcher, "mer_r", 2))
    await dispatcher.publish(customer_events.CustomerErased(customer_id="cus_gone5"), "mer_r")
    await until_async(lambda: _count(dispatcher, "mer_r", 3))
    feed = await dispatcher.feed("mer_r")
    assert [e.type for e in feed] == [
        "loyalty.points_adjusted", "loyalty.points_adjusted", "customer.erased",
    ]  # fmt: skip
    gone, kept = (json.loads(e.data_json)["object"] for e in feed[:2])
    assert (gone["id"], gone["customer_id"], gone["points"], gone["reason"]) == (
        "pte_gone", "cus_gone5", 40, "")  # fmt: skip
    assert (kept["id"], kept["reason"]) == ("pte_kept", "kept reason")
    assert "Reasonia" not in json.dumps([e.data_json for e in feed])


def _order(order_id: str, customer_id: str, address: str) -> order_pb2.Order:
    usd = money_pb2.Money(amount=2500, currency="USD")
    return order_pb2.Order(
        id=order_id, location_id="loc_1", customer_id=customer_id,
        lines=[order_pb2.OrderLine(sku="TEE", name="T-shirt", quantity=1, unit_price=usd,
                                   line_total=usd, fulfillment_id=f"{order_id}-1")],
        subtotal=usd, discount_total=money_pb2.Money(amount=0, currency="USD"),
        tax_total=money_pb2.Money(amount=0, currency="USD"), total=usd,
        status=order_pb2.ORDER_STATUS_CONFIRMED, channel="web", version=2, notes="ring twice",
        metadata={"buyer_phone": "+14155550199", "gift": "1"},
        fulfillments=[order_pb2.Fulfillment(
            id=f"{order_id}-1", type=order_pb2.FULFILLMENT_TYPE_SHIPMENT,
            status=order_pb2.FULFILLMENT_STATUS_RESERVED, location_id="loc_1",
            amount=usd, captured=money_pb2.Money(amount=0, currency="USD"), ship_to=address,
        )],
        created_at=stamp(), updated_at=stamp(),
    )  # fmt: skip


async def test_an_erasure_blanks_the_addresses_notes_and_metadata_of_the_customers_order_events(
    dispatcher,
) -> None:
    """The order events keep the order (id, lines, money, the customer's id as a tombstone)
    but lose its shipment address, notes and metadata, as the order service erases them;
    another customer's order keeps its own."""
    await dispatcher.publish(
        order_events.OrderConfirmed(order=_order("ord_gone", "cus_gone2", "1 Erased Road")),
        "mer_f",
    )
    await dispatcher.publish(
        order_events.OrderConfirmed(order=_order("ord_kept", "cus_kept2", "2 Kept Road")),
        "mer_f",
    )
    await until_async(lambda: _count(dispatcher, "mer_f", 2))
    await dispatcher.publish(customer_events.CustomerErased(customer_id="cus_gone2"), "mer_f")
    await until_async(lambda: _count(dispatcher, "mer_f", 3))
    objects = {
        (o := json.loads(e.data_json)["object"])["id"]: o for e in await dispatcher.feed("mer_f")
    }
    gone, kept = objects["ord_gone"], objects["ord_kept"]
    assert (gone["customer_id"], gone["total"]["amount"], gone["notes"]) == ("cus_gone2", 2500, "")
    assert [f["ship_to"] for f in gone["fulfillments"]] == [""]
    assert gone["metadata"] == {}
    assert [f["ship_to"] for f in kept["fulfillments"]] == ["2 Kept Road"]
    assert kept["notes"] == "ring twice"
    assert kept["metadata"] == {"buyer_phone": "+14155550199", "gift": "1"}


def _return(return_id: str, order_id: str, customer_id: str = "") -> order_pb2.Return:
    return order_pb2.Return(
        id=return_id, order_id=order_id, reason="too small", status="completed",
        amount=money_pb2.Money(amount=2500, currency="USD"), customer_id=customer_id,
        lines=[order_pb2.ReturnLine(line_id="L1", sku="TEE", quantity=1, restock=True,
                                    location_id="loc_1",
                                    amount=money_pb2.Money(amount=2500, currency="USD"))],
        created_at=stamp(), completed_at=stamp(),
    )  # fmt: skip


async def test_an_erasure_blanks_the_order_beside_a_return_and_leaves_the_return_as_it_is(
    dispatcher,
) -> None:
    """order.returned carries the return as its object and the order beside it: the order of
    an erased customer loses its address, notes and metadata there too. A return without a
    receipt names the customer on the return itself; it holds nothing personal and keeps its
    shape (no order fields added to it)."""
    order = _order("ord_ret", "cus_gone3", "3 Erased Road")
    await dispatcher.publish(
        order_events.OrderReturned(order=order, order_return=_return("ret_1", "ord_ret")),
        "mer_g",
    )
    await dispatcher.publish(
        order_events.OrderReturned(order_return=_return("ret_2", "", "cus_gone3")), "mer_g"
    )
    await until_async(lambda: _count(dispatcher, "mer_g", 2))
    before = {json.loads(e.data_json)["object"]["id"]: e for e in await dispatcher.feed("mer_g")}
    await dispatcher.publish(customer_events.CustomerErased(customer_id="cus_gone3"), "mer_g")
    await until_async(lambda: _count(dispatcher, "mer_g", 3))
    after = {
        (d := json.loads(e.data_json))["object"].get("id"): d
        for e in await dispatcher.feed("mer_g")
    }
    beside = after["ret_1"]["order"]
    assert (beside["id"], beside["notes"], beside["metadata"]) == ("ord_ret", "", {})
    assert [f["ship_to"] for f in beside["fulfillments"]] == [""]
    assert after["ret_1"]["object"]["reason"] == "too small"
    assert after["ret_2"] == json.loads(before["ret_2"].data_json)
