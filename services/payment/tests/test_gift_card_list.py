"""The gift card list (`ListGiftCards`) running for real, against PostgreSQL and NATS: pages
that walk it by id to its end, each filter, the change feed (`updated_since`) oldest change
first, tokens bound to their list, no code in any answer, and nothing of another merchant's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import grpc
import psycopg
import pytest
import pytest_asyncio
from google.protobuf.timestamp_pb2 import Timestamp

from pos.common.v1 import money_pb2
from pos.customer.v1 import customer_pb2
from pos.customer.v1 import events_pb2 as customer_events
from pos.payment.v1 import gift_cards_pb2 as G
from pos.payment.v1 import gift_cards_pb2_grpc
from pos_devstack.testing import (
    Infra,
    InProcessService,
    polled,
    publish_as_relay,
    serve_in_process,
)
from pos_kit.grpc_client import read_error
from pos_kit.ids import new_id

pytestmark = pytest.mark.asyncio(loop_scope="session")

Stub = gift_cards_pb2_grpc.GiftCardServiceStub


@pytest_asyncio.fixture(loop_scope="session")
async def served(infra: Infra) -> AsyncIterator[InProcessService]:
    async with serve_in_process("payment", infra, sweep_interval_seconds=3600.0) as svc:
        yield svc


@pytest_asyncio.fixture(loop_scope="session")
async def cards(served: InProcessService) -> Stub:
    return Stub(served.channel)


def md(merchant_id: str) -> tuple[tuple[str, str], ...]:
    return (("x-merchant-id", merchant_id),)


async def issue(cards: Stub, m: str, amount: int, **fields: Any) -> G.IssueGiftCardResponse:
    request = G.IssueGiftCardRequest(
        request_id=new_id("req"), amount=money_pb2.Money(amount=amount, currency="USD"), **fields
    )
    answer: G.IssueGiftCardResponse = await cards.IssueGiftCard(request, metadata=md(m), timeout=10)
    return answer


async def walk(cards: Stub, m: str, page_size: int, **filters: Any) -> list[G.GiftCard]:
    """Every card of the list, page by page, as a client follows next_page_token."""
    seen: list[G.GiftCard] = []
    token = ""
    for _ in range(100):
        page = await cards.ListGiftCards(
            G.ListGiftCardsRequest(page_size=page_size, page_token=token, **filters),
            metadata=md(m),
            timeout=10,
        )
        assert len(page.gift_cards) <= page_size
        seen += page.gift_cards
        token = page.next_page_token
        if not token:
            return seen
    raise AssertionError("the list never ended")


async def caught_up(
    cards: Stub, m: str, page_size: int, count: int, **filters: Any
) -> list[G.GiftCard]:
    """The change feed walked to its end, once it shows at least `count` cards: a feed stops at
    the oldest transaction still open in the database (a background task's, on a loaded
    machine), so a change just made joins it when that one ends. Fails after 20 seconds."""
    return await polled(
        lambda: walk(cards, m, page_size, **filters), lambda seen: len(seen) >= count
    )


def stamp(moment: datetime) -> Timestamp:
    found = Timestamp()
    found.FromDatetime(moment)
    return found


async def refused(call: Any) -> tuple[grpc.StatusCode, str, list[str]]:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    error = read_error(err.value)
    return err.value.code(), error.reason, [v.field for v in error.violations]


async def test_the_list_walks_by_id_filters_and_never_shows_a_code(cards: Stub) -> None:
    m = new_id("mer")
    customer, store, other_store = new_id("cus"), new_id("loc"), new_id("loc")
    issued = [
        await issue(cards, m, 1000, location_id=store),
        await issue(cards, m, 2000, location_id=store, customer_id=customer),
        await issue(cards, m, 3000, customer_id=customer, reason="store_credit"),
        await issue(cards, m, 4000, location_id=other_store),
        await issue(cards, m, 5000),
    ]
    ids = [a.gift_card.id for a in issued]
    ended = await cards.DeactivateGiftCard(
        G.DeactivateGiftCardRequest(request_id=new_id("req"), id=ids[1], reason="lost"),
        metadata=md(m),
        timeout=10,
    )

    # By id, in pages of two, each card once, as GetGiftCard answers it.
    listed = await walk(cards, m, 2)
    assert [c.id for c in listed] == sorted(ids)
    for card in listed:
        got = await cards.GetGiftCard(G.GetGiftCardRequest(id=card.id), metadata=md(m), timeout=10)
        assert card == got.gift_card
    assert next(c for c in listed if c.id == ids[1]) == ended.gift_card
    # No code in any answer: only the last four characters are kept.
    raw = b"".join(c.SerializeToString() for c in listed)
    for answer in issued:
        assert answer.code and answer.code.encode() not in raw
        assert answer.code.replace("-", "").encode() not in raw
    assert [c.code_last4 for c in listed] == [
        a.code.replace("-", "")[-4:] for a in sorted(issued, key=lambda a: a.gift_card.id)
    ]

    # Each filter, and filters together.
    async def ids_of(**filters: Any) -> list[str]:
        return [c.id for c in await walk(cards, m, 1, **filters)]

    assert await ids_of(customer_id=customer) == sorted([ids[1], ids[2]])
    assert await ids_of(location_id=store) == sorted([ids[0], ids[1]])
    assert await ids_of(location_id=other_store) == [ids[3]]
    assert await ids_of(status=G.GIFT_CARD_STATUS_DEACTIVATED) == [ids[1]]
    assert await ids_of(status=G.GIFT_CARD_STATUS_ACTIVE) == sorted(set(ids) - {ids[1]})
    assert await ids_of(customer_id=customer, status=G.GIFT_CARD_STATUS_ACTIVE) == [ids[2]]
    assert await ids_of(location_id=store, customer_id=customer) == [ids[1]]
    assert await ids_of(location_id=new_id("loc")) == []

    # A status the service does not know is refused, naming the field.
    code, _, fields = await refused(
        cards.ListGiftCards(
            G.ListGiftCardsRequest(status=99),  # type: ignore[arg-type]
            metadata=md(m),
            timeout=10,
        )
    )
    assert (code, fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["status"])

    # Another merchant sees none of them, whatever it filters by.
    stranger = new_id("mer")
    await issue(cards, stranger, 100)
    theirs = await walk(cards, stranger, 50)
    assert len(theirs) == 1 and not set(ids) & {c.id for c in theirs}
    for filters in (
        {"customer_id": customer},
        {"location_id": store},
        {"status": G.GIFT_CARD_STATUS_DEACTIVATED},
    ):
        assert await walk(cards, stranger, 50, **filters) == []
    since = stamp(datetime(2000, 1, 1, tzinfo=UTC))
    assert [c.id for c in await caught_up(cards, stranger, 50, 1, updated_since=since)] == [
        theirs[0].id
    ]


async def test_the_change_feed_is_oldest_change_first_and_resumes_from_its_token(
    cards: Stub,
) -> None:
    m = new_id("mer")
    store = new_id("loc")
    before = datetime.now(UTC)
    first = (await issue(cards, m, 1000, location_id=store)).gift_card
    second = (await issue(cards, m, 2000)).gift_card
    third = (await issue(cards, m, 3000, location_id=store)).gift_card
    # The first card changes last: it moves to the end of the feed, at its new version.
    loaded = await cards.LoadGiftCard(
        G.LoadGiftCardRequest(
            request_id=new_id("req"),
            id=first.id,
            amount=money_pb2.Money(amount=500, currency="USD"),
        ),
        metadata=md(m),
        timeout=10,
    )
    since = stamp(before)
    feed = await caught_up(cards, m, 1, 3, updated_since=since)
    assert [c.id for c in feed] == [second.id, third.id, first.id]
    assert feed[-1] == loaded.gift_card and feed[-1].balance.amount == 1500
    stamps = [c.updated_at.ToDatetime() for c in feed]
    assert stamps == sorted(stamps)
    # Filters hold in the feed too.
    at_store = await caught_up(cards, m, 1, 2, updated_since=since, location_id=store)
    assert [c.id for c in at_store] == [third.id, first.id]
    # Polling again from the last change seen returns that change and nothing older.
    again = await caught_up(cards, m, 10, 1, updated_since=feed[-1].updated_at)
    assert [c.id for c in again] == [first.id]
    # A time after every change: nothing yet; then the next change appears.
    await asyncio.sleep(0.01)
    later = stamp(datetime.now(UTC))
    assert await walk(cards, m, 10, updated_since=later) == []
    ended = await cards.DeactivateGiftCard(
        G.DeactivateGiftCardRequest(request_id=new_id("req"), id=second.id),
        metadata=md(m),
        timeout=10,
    )
    assert await caught_up(cards, m, 10, 1, updated_since=later) == [ended.gift_card]

    # A token is good only for the list that gave it: the feed's and the list by id differ.
    by_id = await cards.ListGiftCards(
        G.ListGiftCardsRequest(page_size=1), metadata=md(m), timeout=10
    )
    fed = await cards.ListGiftCards(
        G.ListGiftCardsRequest(page_size=1, updated_since=since), metadata=md(m), timeout=10
    )
    assert by_id.next_page_token and fed.next_page_token
    activities = await cards.ListGiftCardActivities(
        G.ListGiftCardActivitiesRequest(gift_card_id=first.id, page_size=1),
        metadata=md(m),
        timeout=10,
    )
    for request in (
        G.ListGiftCardsRequest(page_token=fed.next_page_token),
        G.ListGiftCardsRequest(page_token=by_id.next_page_token, updated_since=since),
        G.ListGiftCardsRequest(page_token=activities.next_page_token),
        G.ListGiftCardsRequest(page_token="garbage"),
    ):
        code, _, fields = await refused(cards.ListGiftCards(request, metadata=md(m), timeout=10))
        assert (code, fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["page_token"])


async def test_a_merged_duplicates_cards_are_the_survivors(cards: Stub, infra: Infra) -> None:
    """Store credit issued to a duplicate follows the merge (`customer_merged`, consumer
    `payment-customer-merges`): the survivor's list shows it at a new version, the duplicate's
    shows nothing, and another merchant's customer of the same id keeps its card."""
    m, other = new_id("mer"), new_id("mer")
    survivor, duplicate = new_id("cus"), new_id("cus")
    own = (await issue(cards, m, 1000, customer_id=survivor)).gift_card
    credit = (await issue(cards, m, 2500, customer_id=duplicate)).gift_card
    theirs = (await issue(cards, other, 700, customer_id=duplicate)).gift_card

    winner_now = customer_pb2.Customer(id=survivor, version=3, status="active")
    merged = customer_events.CustomerMerged(winner=winner_now, loser_id=duplicate)
    await publish_as_relay(infra.nats_url, merged, m)

    deadline = asyncio.get_running_loop().time() + 20
    while len(found := await walk(cards, m, 10, customer_id=survivor)) < 2:
        assert asyncio.get_running_loop().time() < deadline, "the merge never reached the cards"
        await asyncio.sleep(0.05)
    assert sorted(c.id for c in found) == sorted([own.id, credit.id])
    moved = next(c for c in found if c.id == credit.id)
    assert moved.customer_id == survivor and moved.balance.amount == 2500
    assert moved.version == credit.version + 1
    assert await walk(cards, m, 10, customer_id=duplicate) == []
    assert [c.id for c in await walk(cards, other, 10, customer_id=duplicate)] == [theirs.id]


async def test_a_card_a_merge_moved_is_announced_as_get_gift_card_answers_it(
    served: InProcessService, cards: Stub, infra: Infra
) -> None:
    """The move writes no activity (no value moved), so no `gift_card_activity_created`: each
    card it moved is announced by a `gift_card_updated` (public `gift_card.updated`) carrying
    the card as `GetGiftCard` answers it at its new version, committed with the move. Another
    merchant's card of a customer with the same id is neither moved nor announced. Until
    2026-12-05 no event said so: a copy kept from events kept the card as the duplicate's."""
    m, other = new_id("mer"), new_id("mer")
    survivor, duplicate = new_id("cus"), new_id("cus")
    credit = (await issue(cards, m, 2500, customer_id=duplicate)).gift_card
    await issue(cards, other, 700, customer_id=duplicate)

    winner_now = customer_pb2.Customer(id=survivor, version=3, status="active")
    merged = customer_events.CustomerMerged(winner=winner_now, loser_id=duplicate)
    await publish_as_relay(infra.nats_url, merged, m)

    deadline = asyncio.get_running_loop().time() + 20
    while not await walk(cards, m, 10, customer_id=survivor):
        assert asyncio.get_running_loop().time() < deadline, "the merge never reached the cards"
        await asyncio.sleep(0.05)
    request = G.GetGiftCardRequest(id=credit.id)
    now = (await cards.GetGiftCard(request, metadata=md(m), timeout=10)).gift_card
    assert (now.customer_id, now.version) == (survivor, credit.version + 1)
    with psycopg.connect(served.database_url) as conn:
        rows = conn.execute(
            "SELECT merchant_id, payload FROM outbox"
            " WHERE event_type = 'pos.payment.v1.GiftCardUpdated' ORDER BY seq"
        ).fetchall()
    assert [(merchant, G.GiftCardUpdated.FromString(p).gift_card) for merchant, p in rows] == [
        (m, now)
    ]
