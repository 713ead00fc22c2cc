"""Profiles, search, batch import, groups, merge and erasure through the real service."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime

import grpc
import psycopg
import pytest

from pos.customer.v1 import customer_pb2, customer_pb2_grpc, events_pb2, loyalty_pb2
from pos_customer.adapters.repository import SqlCustomerRepository
from pos_devstack.testing import Infra, polled, serve_in_process, until
from pos_kit.grpc_client import read_error

from .conftest import Caller, Service

pytestmark = pytest.mark.asyncio(loop_scope="session")
P = customer_pb2.ProfileFields


async def _refused(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call  # type: ignore[misc]
    return err.value


def _fields(err: grpc.aio.AioRpcError) -> list[str]:
    return sorted(v.field for v in read_error(err).violations)


async def test_a_full_profile_is_stored_normalised(merchant: Caller) -> None:
    consent = customer_pb2.MarketingConsent(granted=True, channel="in_store")
    consent.given_at.FromDatetime(datetime(2026, 3, 1, tzinfo=UTC))
    created = await merchant.create(
        email=" Ada@Example.COM ",
        phone="+44 (20) 7946-0958",
        given_name="Ada",
        family_name="Lovelace",
        birthday="1985-12-10",
        notes="prefers email",
        marketing_consent=consent,
        addresses=customer_pb2.AddressList(
            addresses=[customer_pb2.Address(line1="12 St James's Sq", city="London", country="GB")]
        ),
        tags=customer_pb2.TagList(tags=["vip"]),
        external_id="crm-1",
    )
    got = await merchant("GetCustomer", customer_pb2.GetCustomerRequest(id=created.id))
    c = got.customer
    assert (c.email, c.phone, c.birthday, c.external_id, list(c.tags)) == (
        "ada@example.com",
        "+442079460958",
        "1985-12-10",
        "crm-1",
        ["vip"],
    )
    assert c.marketing_consent.channel == "in_store" and c.marketing_consent.granted
    assert c.addresses[0].city == "London" and c.status == "active"


async def test_bad_fields_are_refused_together_and_nothing_is_written(
    merchant: Caller, service: Service
) -> None:
    err = await _refused(merchant.create(email="nope", phone="555", birthday="2026-13-01"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _fields(err) == ["birthday", "email", "phone"]
    rows = await service.sql(
        "SELECT count(*) FROM customers WHERE merchant_id = :m", m=merchant.merchant
    )
    assert rows[0][0] == 0


async def test_email_and_external_id_are_unique_per_merchant(
    merchant: Caller, other: Caller
) -> None:
    await merchant.create(email="dup@example.com", external_id="x-1")
    err = await _refused(merchant.create(email="DUP@example.com"))
    assert (err.code(), read_error(err).reason) == (grpc.StatusCode.ALREADY_EXISTS, "email_taken")
    assert _fields(err) == ["email"]
    err = await _refused(merchant.create(email="b@example.com", external_id="x-1"))
    assert read_error(err).reason == "external_id_taken"
    assert _fields(err) == ["external_id"]
    # Another merchant may have the same ones.
    await other.create(email="dup@example.com", external_id="x-1")


async def test_creates_and_upserts_racing_on_one_email_or_external_id_never_fail(
    merchant: Caller,
) -> None:
    """Twenty requests at once with the same key: each looks before any writes, so the unique
    index decides; the losers get the same answer as one that came later."""
    creates = [merchant.create(email="race@example.com", given_name=f"N{n}") for n in range(20)]
    done = await asyncio.gather(*creates, return_exceptions=True)
    won = [c for c in done if isinstance(c, customer_pb2.Customer)]
    lost = [read_error(e) for e in done if isinstance(e, grpc.aio.AioRpcError)]
    assert (len(won), len(lost)) == (1, 19), done
    assert {(e.reason, tuple(v.field for v in e.violations)) for e in lost} == {
        ("email_taken", ("email",))
    }

    # With the external_id's email: the loser's insert may meet the email's index first.
    upserts = [
        merchant(
            "UpsertCustomer",
            customer_pb2.UpsertCustomerRequest(
                profile=P(external_id="race-1", email="race-1@example.com", notes=f"n{n}")
            ),
        )
        for n in range(20)
    ]
    answers = await asyncio.gather(*upserts)
    assert [a.created for a in answers].count(True) == 1
    assert len({a.customer.id for a in answers}) == 1
    assert sorted(a.customer.version for a in answers) == list(range(1, 21))  # none lost

    def batch() -> customer_pb2.BatchUpsertCustomersRequest:
        profiles = [
            P(external_id=f"race-b{i}", email=f"race-b{i}@example.com", given_name="B")
            for i in range(5)
        ]
        return customer_pb2.BatchUpsertCustomersRequest(customers=profiles)

    batches = await asyncio.gather(*(merchant("BatchUpsertCustomers", batch()) for _ in range(10)))
    assert sum(b.created for b in batches) == 5
    assert len({c.id for b in batches for c in b.customers}) == 5


def _slips_in(
    monkeypatch: pytest.MonkeyPatch,
    method: str,
    when: str,
    winner: Callable[[], Awaitable[object]],
) -> None:
    """Another request runs to its commit inside the next one, at one point of it: just
    after that one's first `method` read, or just before its `method` write. So the race of
    two requests at once happens every time, in the same place (the winner's own calls pass
    through)."""
    original = getattr(SqlCustomerRepository, method)
    pending = [winner]

    async def hooked(self: SqlCustomerRepository, *args: object, **kwargs: object) -> object:
        if when == "before" and pending:
            await pending.pop()()
        result = await original(self, *args, **kwargs)
        if when == "after" and pending:
            await pending.pop()()
        return result

    monkeypatch.setattr(SqlCustomerRepository, method, hooked)


# Where the winner's insert lands in the loser's upsert: after its read by external_id
# (its next read, of the email, finds the winner) or just before its insert (the unique index
# on the email, checked before the one on external_id, refuses it).
# A batch reads both (the external ids, the emails) before it inserts.
RACES = pytest.mark.parametrize(
    ("route", "method", "when"),
    [
        ("upsert", "get_by_external_ids", "after"),
        ("upsert", "add", "before"),
        ("batch", "get_by_external_ids", "after"),
        ("batch", "taken_emails", "after"),
        ("batch", "add_many", "before"),
    ],
)


def _upsert(external_id: str, email: str, notes: str) -> customer_pb2.UpsertCustomerRequest:
    return customer_pb2.UpsertCustomerRequest(
        profile=P(external_id=external_id, email=email, given_name="Same", notes=notes)
    )


@RACES
async def test_an_upsert_that_loses_the_race_on_the_email_updates_the_winners_customer(
    merchant: Caller,
    service: Service,
    monkeypatch: pytest.MonkeyPatch,
    route: str,
    method: str,
    when: str,
) -> None:
    """Two upserts of one external_id with its email at once: the winner creates the customer,
    the loser (an upsert or a batch item) reads again and updates it, whichever unique index
    or read told it the customer was there. Its email is that customer's own, not "another
    customer's" (until 2026-12-05 the loser was refused email_taken and its change lost)."""
    email = "ext-x@example.com"
    won: list[customer_pb2.UpsertCustomerResponse] = []

    async def winner() -> None:
        won.append(await merchant("UpsertCustomer", _upsert("ext-X", email, "winner")))

    _slips_in(monkeypatch, method, when, winner)
    if route == "upsert":
        lost = await merchant("UpsertCustomer", _upsert("ext-X", email, "loser"))
        assert not lost.created
        customer = lost.customer
    else:
        batch = customer_pb2.BatchUpsertCustomersRequest(
            customers=[P(external_id="ext-X", email=email, given_name="Same", notes="loser")]
        )
        answer = await merchant("BatchUpsertCustomers", batch)
        assert (answer.created, answer.updated) == (0, 1)
        customer = answer.customers[0]
    assert won and won[0].created  # the race did happen, and the winner created
    assert customer.id == won[0].customer.id
    assert (customer.notes, customer.version) == ("loser", 2)
    rows = await service.sql(
        "SELECT id, notes FROM customers WHERE merchant_id = :m", m=merchant.merchant
    )
    assert rows == [(customer.id, "loser")]


@RACES
async def test_an_email_another_customer_took_at_the_same_time_is_still_taken(
    merchant: Caller,
    service: Service,
    monkeypatch: pytest.MonkeyPatch,
    route: str,
    method: str,
    when: str,
) -> None:
    """The same race, but the winner is another customer (another external_id): the email is
    theirs, so the upsert is refused email_taken (a batch names the item's email), and
    nothing of it is written."""
    email = "taken@example.com"
    won: list[customer_pb2.UpsertCustomerResponse] = []

    async def winner() -> None:
        won.append(await merchant("UpsertCustomer", _upsert("ext-other", email, "winner")))

    _slips_in(monkeypatch, method, when, winner)
    if route == "upsert":
        err = await _refused(merchant("UpsertCustomer", _upsert("ext-X", email, "loser")))
        assert (err.code(), read_error(err).reason) == (
            grpc.StatusCode.ALREADY_EXISTS,
            "email_taken",
        )
        assert _fields(err) == ["email"]
    else:
        batch = customer_pb2.BatchUpsertCustomersRequest(
            customers=[P(external_id="ext-X", email=email, given_name="Same", notes="loser")]
        )
        err = await _refused(merchant("BatchUpsertCustomers", batch))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert _fields(err) == ["customers[0].email"]
    assert won and won[0].created
    rows = await service.sql(
        "SELECT external_id, notes FROM customers WHERE merchant_id = :m", m=merchant.merchant
    )
    assert rows == [("ext-other", "winner")]


async def test_a_stale_version_is_refused_with_the_current_one(merchant: Caller) -> None:
    c = await merchant.create(given_name="Ada")
    ok = await merchant(
        "UpdateCustomer",
        customer_pb2.UpdateCustomerRequest(
            id=c.id, expected_version=1, profile=P(phone="+14155550100")
        ),
    )
    assert (ok.customer.version, ok.customer.phone) == (2, "+14155550100")
    err = await _refused(
        merchant(
            "UpdateCustomer",
            customer_pb2.UpdateCustomerRequest(id=c.id, expected_version=1, given_name="X"),
        )
    )
    assert read_error(err).reason == "version_mismatch"
    assert read_error(err).metadata["current_version"] == "2"


async def test_changes_without_a_version_all_land_when_they_race(merchant: Caller) -> None:
    """Sixteen changes at once and none names a version: each applies on top of the one before
    (none is told of a version it never sent), and the version counts every one."""
    c = await merchant.create(given_name="Ada")
    changes = [
        merchant(
            "UpdateCustomer",
            customer_pb2.UpdateCustomerRequest(id=c.id, profile=P(notes=f"note {n}")),
        )
        for n in range(16)
    ]
    answers = await asyncio.gather(*changes)
    assert sorted(a.customer.version for a in answers) == list(range(2, 18))
    got = await merchant("GetCustomer", customer_pb2.GetCustomerRequest(id=c.id))
    assert got.customer.version == 17


async def test_upsert_by_external_id_creates_then_updates(merchant: Caller) -> None:
    first = await merchant(
        "UpsertCustomer",
        customer_pb2.UpsertCustomerRequest(profile=P(external_id="pos-7", given_name="Grace")),
    )
    again = await merchant(
        "UpsertCustomer",
        customer_pb2.UpsertCustomerRequest(profile=P(external_id="pos-7", family_name="Hopper")),
    )
    assert first.created and not again.created
    assert again.customer.id == first.customer.id
    assert (again.customer.given_name, again.customer.family_name) == ("Grace", "Hopper")
    err = await _refused(
        merchant("UpsertCustomer", customer_pb2.UpsertCustomerRequest(profile=P(given_name="x")))
    )
    assert _fields(err) == ["external_id"]


async def test_an_upsert_with_a_version_never_creates(merchant: Caller, service: Service) -> None:
    """If-Match is false when nothing is current (RFC 9110, 13.1.1): an upsert naming a
    version only changes the customer it saw, and one that does not exist is not made."""
    versioned = customer_pb2.UpsertCustomerRequest(
        profile=P(external_id="crm-unseen", given_name="Ada"), expected_version=1
    )
    err = await _refused(merchant("UpsertCustomer", versioned))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert read_error(err).reason == "version_mismatch"
    assert read_error(err).metadata["current_version"] == "0"  # nothing is current
    rows = await service.sql(
        "SELECT id FROM customers WHERE merchant_id = :m AND external_id = 'crm-unseen'",
        m=merchant.merchant,
    )
    assert rows == []
    # Once it exists, the version it has is the one that matches.
    made = await merchant("UpsertCustomer", customer_pb2.UpsertCustomerRequest(
        profile=P(external_id="crm-unseen", given_name="Ada")))  # fmt: skip
    assert made.created
    changed = await merchant("UpsertCustomer", customer_pb2.UpsertCustomerRequest(
        profile=P(external_id="crm-unseen", family_name="King"), expected_version=1))  # fmt: skip
    assert (changed.created, changed.customer.version) == (False, 2)
    err = await _refused(merchant("UpsertCustomer", versioned))
    assert read_error(err).metadata["current_version"] == "2"


async def test_an_upsert_of_any_existing_version_never_creates(
    merchant: Caller, service: Service
) -> None:
    """If-Match: * is false when nothing is current, true of whatever version is (RFC 9110,
    13.1.1): require_existing changes an existing customer at any version, and makes none."""
    existing = customer_pb2.UpsertCustomerRequest(
        profile=P(external_id="crm-any", given_name="Ada"), require_existing=True
    )
    err = await _refused(merchant("UpsertCustomer", existing))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert read_error(err).reason == "version_mismatch"
    assert read_error(err).metadata["current_version"] == "0"
    rows = await service.sql(
        "SELECT id FROM customers WHERE merchant_id = :m AND external_id = 'crm-any'",
        m=merchant.merchant,
    )
    assert rows == []
    await merchant("UpsertCustomer", customer_pb2.UpsertCustomerRequest(
        profile=P(external_id="crm-any", given_name="Ada")))  # fmt: skip
    await merchant("UpsertCustomer", customer_pb2.UpsertCustomerRequest(
        profile=P(external_id="crm-any", family_name="King")))  # fmt: skip
    changed = await merchant("UpsertCustomer", customer_pb2.UpsertCustomerRequest(
        profile=P(external_id="crm-any", given_name="Augusta"), require_existing=True))  # fmt: skip
    assert (changed.created, changed.customer.version) == (False, 3)
    assert changed.customer.given_name == "Augusta"


async def test_a_batch_upsert_is_all_or_nothing(merchant: Caller, service: Service) -> None:
    batch = [P(external_id=f"imp-{i}", given_name=f"Name{i}") for i in range(1000)]
    answer = await merchant(
        "BatchUpsertCustomers", customer_pb2.BatchUpsertCustomersRequest(customers=batch)
    )
    assert (answer.created, answer.updated) == (1000, 0)
    # One bad item: nothing of the batch is written, and the item is named.
    batch = [P(external_id="imp-0", given_name="Changed"), P(external_id="imp-new", email="bad")]
    err = await _refused(
        merchant("BatchUpsertCustomers", customer_pb2.BatchUpsertCustomersRequest(customers=batch))
    )
    assert _fields(err) == ["customers[1].email"]
    rows = await service.sql(
        "SELECT given_name FROM customers WHERE merchant_id = :m AND external_id = 'imp-0'",
        m=merchant.merchant,
    )
    assert rows == [("Name0",)]
    repeated = [P(external_id="imp-1"), P(external_id="imp-1")]
    err = await _refused(
        merchant(
            "BatchUpsertCustomers", customer_pb2.BatchUpsertCustomersRequest(customers=repeated)
        )
    )
    assert _fields(err) == ["customers[1].external_id"]
    too_many = [P(external_id=f"m-{i}") for i in range(1001)]
    err = await _refused(
        merchant(
            "BatchUpsertCustomers", customer_pb2.BatchUpsertCustomersRequest(customers=too_many)
        )
    )
    assert _fields(err) == ["customers"]
    updated = await merchant(
        "BatchUpsertCustomers",
        customer_pb2.BatchUpsertCustomersRequest(
            customers=[P(external_id="imp-2", family_name="Two"), P(external_id="imp-3")]
        ),
    )
    # imp-3 sent nothing new: unchanged, not counted.
    assert (updated.created, updated.updated) == (0, 1)


async def test_a_phone_number_stored_as_a_card_number_is_refused_on_every_call(
    merchant: Caller, service: Service
) -> None:
    """Written with separators a phone passes the rule for free text; stored as E.164 it is
    `+378282246310005`, a card number. Refused as one, naming the phone, on every call."""
    card_phone = "+37 8282 2463 10005"
    c = await merchant.create(given_name="P")
    calls = {
        "CreateCustomer": customer_pb2.CreateCustomerRequest(
            profile=P(given_name="P", phone=card_phone)
        ),
        "UpdateCustomer": customer_pb2.UpdateCustomerRequest(
            id=c.id, profile=P(phone="+378.282.246.310.005")
        ),
        "UpsertCustomer": customer_pb2.UpsertCustomerRequest(
            profile=P(external_id="card-phone", phone="+378 (282) 246-310005")
        ),
        "BatchUpsertCustomers": customer_pb2.BatchUpsertCustomersRequest(
            customers=[P(external_id="ok-phone"), P(external_id="bad", phone="+42 2222 2222 222")]
        ),
        "SearchCustomers": customer_pb2.SearchCustomersRequest(phone="+30 5693 0902 5904"),
    }
    named = {"BatchUpsertCustomers": "customers[1].phone", "SearchCustomers": "phone"}
    for method, request in calls.items():
        err = await _refused(merchant(method, request))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, method
        assert read_error(err).reason == "card_number_not_allowed", method
        assert _fields(err) == [named.get(method, "profile.phone")], method
    rows = await service.sql(
        "SELECT count(*) FROM customers WHERE merchant_id = :m AND phone IS NOT NULL",
        m=merchant.merchant,
    )
    assert rows[0][0] == 0
    # An ordinary number is stored as ever.
    ok = await merchant.create(phone="+44 20 7946 0958")
    assert ok.phone == "+442079460958"


async def _search(caller: Caller, **query: str) -> list[str]:
    answer = await caller(
        "SearchCustomers", customer_pb2.SearchCustomersRequest(page_size=50, **query)
    )
    return [c.id for c in answer.customers]


async def test_search_finds_by_every_key_and_never_another_merchants(
    merchant: Caller, other: Caller
) -> None:
    zoe = await merchant.create(
        email="zoe.dupont@example.com",
        phone="+33 6 12 34 56 78",
        given_name="Zoë",
        family_name="Dupont-Léger",
        external_id="ext-zoe",
    )
    await merchant.create(email="zed@example.com", given_name="Zed", family_name="Dupond")
    twin = await other.create(
        email="zoe.dupont@example.com", given_name="Zoë", phone="+33612345678"
    )
    assert await _search(merchant, email="ZOE.DUPONT@example.com") == [zoe.id]
    assert await _search(merchant, phone="0033 6 12 34 56 78") == [zoe.id]
    assert await _search(merchant, external_id="ext-zoe") == [zoe.id]
    assert await _search(merchant, query="ZOE") == [zoe.id]
    assert await _search(merchant, query="léger") == [zoe.id]
    assert await _search(merchant, query="zo dupon") == [zoe.id]
    assert len(await _search(merchant, query="dupon")) == 2
    assert await _search(merchant, query="33612") == [zoe.id]
    assert await _search(merchant, query="nobody") == []
    assert await _search(other, query="zoe") == [twin.id]
    # A whole email, or its start, in the words.
    assert await _search(merchant, query="zoe.dupont@example.com") == [zoe.id]
    assert await _search(merchant, query="Zoë.Dupont@EXA") == [zoe.id]
    assert await _search(merchant, query="zed@example.com zed") != [zoe.id]
    # Punctuation is no word (LIKE's wildcards never reach the query).
    err = await _refused(_search(merchant, query=" %_ "))
    assert _fields(err) == ["query"]


async def test_a_search_pages_on_with_its_cursor_each_customer_once(merchant: Caller) -> None:
    ids = set()
    for n in range(25):
        # Two terms for the word each ("ann" starts both): still one row each.
        c = await merchant.create(given_name=f"Ann{n:02d}", family_name="Annick",
                                  email=f"ann{n}@example.com")  # fmt: skip
        ids.add(c.id)
    for query in ({"query": "ann"}, {"query": "annick ann"}, {"query": "ann2"}):
        pages, token = [], ""
        while True:
            answer = await merchant(
                "SearchCustomers",
                customer_pb2.SearchCustomersRequest(page_size=7, page_token=token, **query),
            )
            pages.append([c.id for c in answer.customers])
            token = answer.next_page_token
            if not token:
                break
        found = [i for page in pages for i in page]
        assert len(found) == len(set(found)), query
        if query["query"] == "ann2":
            assert len(found) == 6  # ann2, ann20 .. ann24
        else:
            assert set(found) == ids and [len(p) for p in pages] == [7, 7, 7, 4]
    assert len(await _search(merchant, query="ann2@")) == 1
    by_email = customer_pb2.SearchCustomersRequest(email="ann3@example.com", page_size=1)
    answer = await merchant("SearchCustomers", by_email)
    assert len(answer.customers) == 1 and answer.next_page_token == ""
    # A cursor is good for its own search only.
    first = await merchant(
        "SearchCustomers", customer_pb2.SearchCustomersRequest(query="ann", page_size=7)
    )
    err = await _refused(
        merchant(
            "SearchCustomers",
            customer_pb2.SearchCustomersRequest(
                query="annick", page_size=7, page_token=first.next_page_token
            ),
        )
    )
    assert _fields(err) == ["page_token"]


async def test_list_by_change_time(merchant: Caller) -> None:
    a = await merchant.create(given_name="A")
    since = a.updated_at
    b = await merchant.create(given_name="B")
    request = customer_pb2.ListCustomersRequest(updated_since=since)
    # The feed stops at the oldest transaction open in the database (the outbox relay's, say,
    # begun before B was written: pos_kit/changes.py); it shows B once that one is over.

    async def listed() -> list[str]:
        return [c.id for c in (await merchant("ListCustomers", request)).customers]

    assert await polled(listed, lambda ids: len(ids) >= 2) == [a.id, b.id]


async def test_the_change_feed_shows_merged_and_erased_customers_as_tombstones(
    merchant: Caller,
) -> None:
    """A poller of `updated_since` learns that a customer was merged away (status `merged`,
    `merged_into`) or erased (status `erased`, no personal data), each at the change's time;
    the list by id shows active customers only."""
    keep = await merchant.create(given_name="Keep", email="keep@example.com")
    dup = await merchant.create(given_name="Dup", email="dup@example.com", external_id="x-dup")
    gone = await merchant.create(
        given_name="Gone", family_name="Away", email="gone@example.com", phone="+14155550100"
    )
    since = keep.updated_at
    await merchant(
        "MergeCustomers", customer_pb2.MergeCustomersRequest(winner_id=keep.id, loser_id=dup.id)
    )
    await merchant("EraseCustomer", customer_pb2.EraseCustomerRequest(id=gone.id))
    feed = customer_pb2.ListCustomersRequest(updated_since=since)

    async def listed() -> list[customer_pb2.Customer]:
        return list((await merchant("ListCustomers", feed)).customers)

    seen = await polled(listed, lambda cs: len(cs) >= 3)
    by_id = {c.id: c for c in seen}
    assert sorted(by_id) == sorted([keep.id, dup.id, gone.id])
    merged, erased = by_id[dup.id], by_id[gone.id]
    assert (merged.status, merged.merged_into) == ("merged", keep.id)
    assert merged.updated_at.ToDatetime() > dup.updated_at.ToDatetime()
    assert merged.version > dup.version
    assert (merged.email, merged.given_name, merged.external_id) == ("", "", "")
    assert erased.status == "erased" and erased.merged_into == ""
    assert erased.updated_at.ToDatetime() > gone.updated_at.ToDatetime()
    blank = customer_pb2.Customer(
        id=gone.id,
        status="erased",
        version=erased.version,
        created_at=erased.created_at,
        updated_at=erased.updated_at,
        marketing_consent=customer_pb2.MarketingConsent(),
    )
    assert erased == blank
    # Oldest change first: the merge (the duplicate, then the survivor's new version), then the
    # erasure.
    assert [c.id for c in seen] == [dup.id, keep.id, gone.id]
    # Without updated_since the list holds the active customers only, as before.
    plain = (await merchant("ListCustomers", customer_pb2.ListCustomersRequest())).customers
    assert [c.id for c in plain] == [keep.id]


async def test_groups_list_by_change_time(merchant: Caller) -> None:
    """`ListGroups` with `updated_since`: the kit's change feed, as the customers'. A group
    renamed (a new version) moves to its end; members joining change no version and do not
    move it; walked a page at a time with the feed's own token, which the list by id refuses."""
    made = [
        (await merchant("CreateGroup", customer_pb2.CreateGroupRequest(name=f"G{n}"))).group
        for n in range(3)
    ]
    assert all(g.HasField("updated_at") for g in made)
    renamed = (
        await merchant("UpdateGroup", customer_pb2.UpdateGroupRequest(id=made[0].id, name="G0b"))
    ).group
    assert renamed.updated_at.ToDatetime() > made[2].updated_at.ToDatetime()
    member = await merchant.create(given_name="M")
    await merchant(
        "AddGroupMembers",
        customer_pb2.AddGroupMembersRequest(group_id=made[1].id, customer_ids=[member.id]),
    )

    async def walk(since: object) -> list[customer_pb2.Group]:
        seen: list[customer_pb2.Group] = []
        token = ""
        for _ in range(20):
            page = await merchant(
                "ListGroups",
                customer_pb2.ListGroupsRequest(updated_since=since, page_size=1, page_token=token),
            )
            seen += page.groups
            token = page.next_page_token
            if not token:
                return seen
        raise AssertionError("the feed did not end")

    seen = await polled(lambda: walk(made[0].updated_at), lambda s: len(s) >= 3)
    assert [(g.id, g.name) for g in seen] == [
        (made[1].id, "G1"),
        (made[2].id, "G2"),
        (made[0].id, "G0b"),
    ]
    assert seen[0].member_count == 1
    assert [g.id for g in await polled(lambda: walk(renamed.updated_at))] == [made[0].id]
    by_change = await merchant(
        "ListGroups", customer_pb2.ListGroupsRequest(updated_since=made[0].updated_at, page_size=1)
    )
    err = await _refused(
        merchant("ListGroups", customer_pb2.ListGroupsRequest(page_token=by_change.next_page_token))
    )
    assert _fields(err) == ["page_token"]


async def test_groups_and_the_customers_answer(merchant: Caller, other: Caller) -> None:
    vip = (await merchant("CreateGroup", customer_pb2.CreateGroupRequest(name="VIP"))).group
    a = await merchant.create(given_name="A")
    b = await merchant.create(given_name="B")
    foreign = await other.create(given_name="F")
    added = await merchant(
        "AddGroupMembers",
        customer_pb2.AddGroupMembersRequest(group_id=vip.id, customer_ids=[a.id, b.id]),
    )
    assert added.group.member_count == 2
    got = await merchant("GetCustomer", customer_pb2.GetCustomerRequest(id=a.id))
    assert list(got.customer.group_ids) == [vip.id]
    err = await _refused(
        merchant(
            "AddGroupMembers",
            customer_pb2.AddGroupMembersRequest(group_id=vip.id, customer_ids=[foreign.id]),
        )
    )
    assert err.code() == grpc.StatusCode.NOT_FOUND
    err = await _refused(other("GetGroup", customer_pb2.GetGroupRequest(id=vip.id)))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    removed = await merchant(
        "RemoveGroupMembers",
        customer_pb2.RemoveGroupMembersRequest(group_id=vip.id, customer_ids=[a.id]),
    )
    assert removed.group.member_count == 1
    listed = await merchant("ListGroups", customer_pb2.ListGroupsRequest())
    assert [g.name for g in listed.groups] == ["VIP"]
    err = await _refused(merchant("CreateGroup", customer_pb2.CreateGroupRequest(name="VIP")))
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS


async def test_removing_an_unknown_customer_from_a_group_names_it(
    merchant: Caller, other: Caller
) -> None:
    """Leaving a group names the customer at fault as joining does: another merchant's
    customer, a made-up id or an erased one is NOT_FOUND naming `customer_ids[i]`, and no
    member leaves."""
    vip = (await merchant("CreateGroup", customer_pb2.CreateGroupRequest(name="VIP"))).group
    a = await merchant.create(given_name="A")
    gone = await merchant.create(given_name="Gone")
    foreign = await other.create(given_name="F")
    await merchant(
        "AddGroupMembers", customer_pb2.AddGroupMembersRequest(group_id=vip.id, customer_ids=[a.id])
    )
    await merchant("EraseCustomer", customer_pb2.EraseCustomerRequest(id=gone.id))
    for unknown in (foreign.id, "cus_nope", gone.id):
        err = await _refused(
            merchant(
                "RemoveGroupMembers",
                customer_pb2.RemoveGroupMembersRequest(
                    group_id=vip.id, customer_ids=[a.id, unknown]
                ),
            )
        )
        assert err.code() == grpc.StatusCode.NOT_FOUND
        assert _fields(err) == ["customer_ids[1]"]
    got = await merchant("GetGroup", customer_pb2.GetGroupRequest(id=vip.id))
    assert got.group.member_count == 1


async def test_a_membership_change_is_a_change_of_the_customer(
    merchant: Caller, service: Service
) -> None:
    """Promotions for a group are priced from customer events: joining or leaving a group is
    a new version of the customer, announced; adding a member again changes nothing."""
    vip = (await merchant("CreateGroup", customer_pb2.CreateGroupRequest(name="VIP"))).group
    a = await merchant.create(given_name="A")

    async def updates() -> list[list[str]]:
        rows = await service.sql(
            "SELECT payload FROM outbox WHERE merchant_id = :m"
            " AND event_type = 'pos.customer.v1.CustomerUpdated' ORDER BY seq",
            m=merchant.merchant,
        )
        found = [events_pb2.CustomerUpdated.FromString(bytes(r.payload)) for r in rows]
        return [list(e.customer.group_ids) for e in found if e.customer.id == a.id]

    async def version() -> int:
        got = await merchant("GetCustomer", customer_pb2.GetCustomerRequest(id=a.id))
        return int(got.customer.version)

    for _ in range(2):  # the second time it is a member already: no change
        await merchant(
            "AddGroupMembers",
            customer_pb2.AddGroupMembersRequest(group_id=vip.id, customer_ids=[a.id]),
        )
        assert await version() == a.version + 1
        assert await updates() == [[vip.id]]
    await merchant(
        "RemoveGroupMembers",
        customer_pb2.RemoveGroupMembersRequest(group_id=vip.id, customer_ids=[a.id]),
    )
    assert await version() == a.version + 2
    assert await updates() == [[vip.id], []]


async def test_a_group_name_is_taken_in_any_case(merchant: Caller, other: Caller) -> None:
    """`VIP` beside `vip` would read as one group on every screen, as role and tier names
    would: a name another group of the merchant has, in any case and outer spaces aside, is
    ALREADY_EXISTS `group_name_taken` naming `name`, on a create or a rename, and nothing is
    made or renamed. A group renamed to its own name in another case is renamed; another
    merchant's names are its own. Creates at once: one is made, the others refused alike."""
    vip = (await merchant("CreateGroup", customer_pb2.CreateGroupRequest(name="VIP"))).group
    staff = (await merchant("CreateGroup", customer_pb2.CreateGroupRequest(name="Staff"))).group
    for method, request in (
        ("CreateGroup", customer_pb2.CreateGroupRequest(name="vip")),
        ("UpdateGroup", customer_pb2.UpdateGroupRequest(id=staff.id, name=" Vip ")),
    ):
        err = await _refused(merchant(method, request))
        assert (err.code(), read_error(err).reason) == (
            grpc.StatusCode.ALREADY_EXISTS,
            "group_name_taken",
        )
        assert _fields(err) == ["name"]
    listed = await merchant("ListGroups", customer_pb2.ListGroupsRequest())
    assert sorted(g.name for g in listed.groups) == ["Staff", "VIP"]
    recased = await merchant("UpdateGroup", customer_pb2.UpdateGroupRequest(id=vip.id, name="Vip"))
    assert (recased.group.name, recased.group.version) == ("Vip", vip.version + 1)
    await other("CreateGroup", customer_pb2.CreateGroupRequest(name="vip"))

    names = ["Ops", "ops", "OPS", " oPs "]
    answers = await asyncio.gather(
        *(merchant("CreateGroup", customer_pb2.CreateGroupRequest(name=n)) for n in names),
        return_exceptions=True,
    )
    made = [a for a in answers if not isinstance(a, BaseException)]
    assert len(made) == 1, answers
    for err in answers:
        if isinstance(err, grpc.aio.AioRpcError):
            assert (err.code(), read_error(err).reason) == (
                grpc.StatusCode.ALREADY_EXISTS,
                "group_name_taken",
            )
            assert _fields(err) == ["name"]


async def test_a_group_is_renamed_listed_by_members_and_deleted(
    merchant: Caller, other: Caller, service: Service
) -> None:
    """A group's name and description change alone (its members keep their versions); the
    customers list filters by group; deleting it makes every member leave it as removing them
    would (a new version and CustomerUpdated each), and it is gone. Another merchant's group
    is NOT_FOUND for each of these, and changes nothing."""
    vip = (await merchant("CreateGroup", customer_pb2.CreateGroupRequest(name="Gold"))).group
    await merchant("CreateGroup", customer_pb2.CreateGroupRequest(name="Silver"))
    a = await merchant.create(given_name="A")
    b = await merchant.create(given_name="B")
    outside = await merchant.create(given_name="C")
    await merchant(
        "AddGroupMembers",
        customer_pb2.AddGroupMembersRequest(group_id=vip.id, customer_ids=[a.id, b.id]),
    )

    async def versions() -> list[int]:
        got = [
            await merchant("GetCustomer", customer_pb2.GetCustomerRequest(id=c.id))
            for c in (a, b, outside)
        ]
        return [int(g.customer.version) for g in got]

    joined = await versions()
    renamed = await merchant(
        "UpdateGroup", customer_pb2.UpdateGroupRequest(id=vip.id, name="  Platinum ")
    )
    assert (renamed.group.name, renamed.group.description) == ("Platinum", "")
    described = await merchant(
        "UpdateGroup", customer_pb2.UpdateGroupRequest(id=vip.id, description="Top spenders")
    )
    assert (described.group.name, described.group.description) == ("Platinum", "Top spenders")
    assert described.group.member_count == 2
    assert await versions() == joined
    taken = await _refused(
        merchant("UpdateGroup", customer_pb2.UpdateGroupRequest(id=vip.id, name="Silver"))
    )
    assert taken.code() == grpc.StatusCode.ALREADY_EXISTS
    empty = await _refused(
        merchant("UpdateGroup", customer_pb2.UpdateGroupRequest(id=vip.id, name=" "))
    )
    assert _fields(empty) == ["name"]

    members = await merchant(
        "ListCustomers", customer_pb2.ListCustomersRequest(group_id=vip.id, page_size=1)
    )
    after = await merchant(
        "ListCustomers",
        customer_pb2.ListCustomersRequest(
            group_id=vip.id, page_size=1, page_token=members.next_page_token
        ),
    )
    assert sorted(c.id for c in [*members.customers, *after.customers]) == sorted([a.id, b.id])
    assert after.next_page_token == ""
    for refused in (
        other("UpdateGroup", customer_pb2.UpdateGroupRequest(id=vip.id, name="Mine")),
        other("DeleteGroup", customer_pb2.DeleteGroupRequest(id=vip.id)),
        other("ListCustomers", customer_pb2.ListCustomersRequest(group_id=vip.id)),
    ):
        assert (await _refused(refused)).code() == grpc.StatusCode.NOT_FOUND

    deleted = await merchant("DeleteGroup", customer_pb2.DeleteGroupRequest(id=vip.id))
    assert (deleted.group.name, deleted.group.member_count) == ("Platinum", 2)
    assert await versions() == [joined[0] + 1, joined[1] + 1, joined[2]]
    got = await merchant("GetCustomer", customer_pb2.GetCustomerRequest(id=a.id))
    assert list(got.customer.group_ids) == []
    rows = await service.sql(
        "SELECT payload FROM outbox WHERE merchant_id = :m"
        " AND event_type = 'pos.customer.v1.CustomerUpdated' ORDER BY seq DESC LIMIT 2",
        m=merchant.merchant,
    )
    announced = [events_pb2.CustomerUpdated.FromString(bytes(r.payload)).customer for r in rows]
    assert sorted((c.id, list(c.group_ids)) for c in announced) == sorted([(a.id, []), (b.id, [])])
    for gone in (
        merchant("GetGroup", customer_pb2.GetGroupRequest(id=vip.id)),
        merchant("DeleteGroup", customer_pb2.DeleteGroupRequest(id=vip.id)),
        merchant("ListCustomers", customer_pb2.ListCustomersRequest(group_id=vip.id)),
    ):
        assert (await _refused(gone)).code() == grpc.StatusCode.NOT_FOUND
    listed = await merchant("ListGroups", customer_pb2.ListGroupsRequest())
    assert [g.name for g in listed.groups] == ["Silver"]


async def test_a_group_carries_a_version_and_a_stale_one_changes_nothing(
    merchant: Caller,
) -> None:
    """A group is made at version 1; a change of its name or description bumps it (what it
    already is, or members joining and leaving, do not); a change or deletion naming another
    version is FAILED_PRECONDITION `version_mismatch` with `current_version`, and nothing
    changes."""
    made = (await merchant("CreateGroup", customer_pb2.CreateGroupRequest(name="Versioned"))).group
    assert made.version == 1
    renamed = await merchant(
        "UpdateGroup",
        customer_pb2.UpdateGroupRequest(id=made.id, name="Versioned 2", expected_version=1),
    )
    assert (renamed.group.name, renamed.group.version) == ("Versioned 2", 2)
    same = await merchant(
        "UpdateGroup", customer_pb2.UpdateGroupRequest(id=made.id, name="Versioned 2")
    )
    assert same.group.version == 2
    a = await merchant.create(given_name="Member")
    joined = await merchant(
        "AddGroupMembers",
        customer_pb2.AddGroupMembersRequest(group_id=made.id, customer_ids=[a.id]),
    )
    assert (joined.group.member_count, joined.group.version) == (1, 2)

    for refused in (
        merchant("UpdateGroup", customer_pb2.UpdateGroupRequest(
            id=made.id, description="lost", expected_version=1)),
        merchant("DeleteGroup", customer_pb2.DeleteGroupRequest(id=made.id, expected_version=3)),
    ):  # fmt: skip
        err = await _refused(refused)
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert read_error(err).reason == "version_mismatch"
        assert read_error(err).metadata["current_version"] == "2"
    got = (await merchant("GetGroup", customer_pb2.GetGroupRequest(id=made.id))).group
    assert (got.description, got.version, got.member_count) == ("", 2, 1)
    listed = await merchant("ListGroups", customer_pb2.ListGroupsRequest())
    assert [g.version for g in listed.groups if g.id == made.id] == [2]

    deleted = await merchant(
        "DeleteGroup", customer_pb2.DeleteGroupRequest(id=made.id, expected_version=2)
    )
    assert deleted.group.version == 2
    gone = await _refused(merchant("GetGroup", customer_pb2.GetGroupRequest(id=made.id)))
    assert gone.code() == grpc.StatusCode.NOT_FOUND


async def test_a_merge_moves_points_and_groups_and_the_loser_says_where(
    merchant: Caller,
) -> None:
    from pos.customer.v1 import loyalty_pb2

    group = (await merchant("CreateGroup", customer_pb2.CreateGroupRequest(name="G"))).group
    winner = await merchant.create(email="w@example.com")
    loser = await merchant.create(email="l@example.com", external_id="dup-1")
    await merchant(
        "AddGroupMembers",
        customer_pb2.AddGroupMembersRequest(group_id=group.id, customer_ids=[loser.id]),
    )
    for who, pts in ((winner, 30), (loser, 70)):
        await merchant(
            "AdjustPoints",
            loyalty_pb2.AdjustPointsRequest(customer_id=who.id, points=pts, reason="welcome"),
        )
    err = await _refused(
        merchant(
            "MergeCustomers",
            customer_pb2.MergeCustomersRequest(winner_id=winner.id, loser_id=winner.id),
        )
    )
    assert _fields(err) == ["loser_id"]
    before = await merchant("GetCustomer", customer_pb2.GetCustomerRequest(id=winner.id))
    merged = await merchant(
        "MergeCustomers", customer_pb2.MergeCustomersRequest(winner_id=winner.id, loser_id=loser.id)
    )
    assert merged.winner.loyalty_points == 100
    assert list(merged.winner.group_ids) == [group.id]
    # Its groups and points changed: a new version, as its event says.
    assert merged.winner.version == before.customer.version + 1
    got = await merchant("GetCustomer", customer_pb2.GetCustomerRequest(id=loser.id))
    assert (got.customer.status, got.customer.merged_into, got.customer.email) == (
        "merged",
        winner.id,
        "",
    )
    export = await merchant("ExportCustomer", customer_pb2.ExportCustomerRequest(id=winner.id))
    assert [g.id for g in export.groups] == [group.id]
    # The duplicate is the same person: its own points history (kept under its id, as its
    # read shows it) is exported with the survivor's, newest first, as its sales are.
    assert [(e.customer_id, e.kind, e.points) for e in export.points_history] == [
        (winner.id, "merged_in", 70),
        (loser.id, "merged_out", -70),
        (loser.id, "adjusted", 70),
        (winner.id, "adjusted", 30),
    ]
    assert list(export.merged_customer_ids) == [loser.id]
    # The loser's email and external_id are free again.
    await merchant.create(email="l@example.com", external_id="dup-1")
    assert await _search(merchant, email="w@example.com") == [winner.id]


async def test_an_erasure_waits_for_the_open_order_holding_the_customers_points(
    merchant: Caller,
) -> None:
    """Erased, the customer could not give the held points to the order's confirmation: the
    order would fail after its card was charged."""
    from pos.customer.v1 import loyalty_pb2

    c = await merchant.create(given_name="Holder")
    await merchant(
        "AdjustPoints", loyalty_pb2.AdjustPointsRequest(customer_id=c.id, points=90, reason="x")
    )
    hold = loyalty_pb2.HoldPointsRequest(order_id="ord_er1", customer_id=c.id, points=90)
    await merchant("HoldPoints", hold)
    err = await _refused(merchant("EraseCustomer", customer_pb2.EraseCustomerRequest(id=c.id)))
    assert (err.code(), read_error(err).reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "points_held",
    )
    assert read_error(err).metadata["order_id"] == "ord_er1"
    got = await merchant("GetCustomer", customer_pb2.GetCustomerRequest(id=c.id))
    assert got.customer.given_name == "Holder"
    await merchant("FinalizePoints", loyalty_pb2.FinalizePointsRequest(order_id="ord_er1"))
    await merchant("EraseCustomer", customer_pb2.EraseCustomerRequest(id=c.id))


async def test_erasure_leaves_no_personal_data_and_answers_404(
    merchant: Caller, service: Service
) -> None:
    c = await merchant.create(
        email="erase.me@example.com", phone="+14155550199", given_name="Eraseme", notes="secret"
    )
    await merchant(
        "UpdateCustomer", customer_pb2.UpdateCustomerRequest(id=c.id, family_name="Gone")
    )
    before = await service.sql(
        "SELECT count(*) FROM processed_requests WHERE merchant_id = :m"
        " AND position(convert_to('erase.me@example.com', 'UTF8') IN response) > 0",
        m=merchant.merchant,
    )
    assert before == [(2,)]  # the witness sees them before
    erased = await merchant(
        "EraseCustomer", customer_pb2.EraseCustomerRequest(id=c.id, requested_by="key_1")
    )
    assert erased.id == c.id and erased.HasField("erased_at")
    err = await _refused(merchant("GetCustomer", customer_pb2.GetCustomerRequest(id=c.id)))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert await _search(merchant, query="eraseme") == []
    rows = await service.sql(
        "SELECT c::text FROM customers c WHERE merchant_id = :m AND id = :i",
        m=merchant.merchant,
        i=c.id,
    )
    assert "erase.me" not in rows[0][0] and "Eraseme" not in rows[0][0]
    assert "secret" not in rows[0][0] and "4155550199" not in rows[0][0]
    # No stored answer and no outbox row of this merchant holds the email any more.
    for table, column in (("processed_requests", "response"), ("outbox", "payload")):
        left = await service.sql(
            f"SELECT count(*) FROM {table} WHERE merchant_id = :m"  # noqa: S608 - ours
            f" AND position(convert_to('erase.me@example.com', 'UTF8') IN {column}) > 0",
            m=merchant.merchant,
        )
        assert left == [(0,)], table
    record = await service.sql(
        "SELECT requested_by FROM erasures WHERE merchant_id = :m AND customer_id = :i",
        m=merchant.merchant,
        i=c.id,
    )
    assert record == [("key_1",)]
    err = await _refused(merchant("EraseCustomer", customer_pb2.EraseCustomerRequest(id=c.id)))
    assert err.code() == grpc.StatusCode.NOT_FOUND


async def test_erasure_blanks_the_free_text_of_the_customers_points_history(
    merchant: Caller, service: Service
) -> None:
    """A points adjustment's `reason` is free text (a clerk types "goodwill for <name>, <email>"):
    the erasure blanks it in the customer's points ledger, in the loyalty events of the outbox
    (still sent, or sent already) and withdraws the adjustment's stored answer, the duplicates
    merged into the customer included; the entries themselves, their points and balances
    stay. Before, the reason outlived the erasure everywhere."""
    winner = await merchant.create(email="rsn@example.com", given_name="Reasonia")
    loser = await merchant.create(email="rsn.dupe@example.com", given_name="Reasonia")
    said = {winner.id: "goodwill for Reasonia Smith, rsn@example.com",
            loser.id: "sorry Mr Dupont, rsn.dupe@example.com"}  # fmt: skip
    adjustments = {}
    for who, reason in said.items():
        adjustments[who] = loyalty_pb2.AdjustPointsRequest(
            request_id=f"k-adjust-{who}", customer_id=who, points=40, reason=reason
        )
        await merchant("AdjustPoints", adjustments[who])
    await merchant(
        "MergeCustomers", customer_pb2.MergeCustomersRequest(winner_id=winner.id, loser_id=loser.id)
    )
    survivor = await merchant.create(given_name="Stays")
    kept = loyalty_pb2.AdjustPointsRequest(customer_id=survivor.id, points=5, reason="Stays here")
    await merchant("AdjustPoints", kept)

    async def ledger() -> list[tuple[str, str, int, int, str]]:
        rows = await service.sql(
            "SELECT customer_id, kind, points, balance_after, reason FROM points_ledger"
            " WHERE merchant_id = :m ORDER BY seq",
            m=merchant.merchant,
        )
        return [tuple(r) for r in rows]

    before = await ledger()
    assert {r[4] for r in before} >= {*said.values(), "Stays here"}
    await merchant("EraseCustomer", customer_pb2.EraseCustomerRequest(id=winner.id))

    after = await ledger()
    erased = {winner.id, loser.id}
    assert [r[:4] for r in after] == [r[:4] for r in before]  # the history stays
    assert [r[4] for r in after if r[0] in erased] == ["" for r in after if r[0] in erased]
    assert [r for r in after if r[0] == survivor.id] == [r for r in before if r[0] == survivor.id]
    for text in ("Reasonia", "rsn@example", "Dupont", "rsn.dupe@"):
        for table, column in (("processed_requests", "response"), ("outbox", "payload")):
            left = await service.sql(
                f"SELECT count(*) FROM {table} WHERE merchant_id = :m"  # noqa: S608 - ours
                f" AND position(convert_to(:t, 'UTF8') IN {column}) > 0",
                m=merchant.merchant,
                t=text,
            )
            assert left == [(0,)], (table, text)
    # The adjustments' events are still there, with their points and no reason.
    rows = await service.sql(
        "SELECT payload FROM outbox WHERE merchant_id = :m AND event_type = :t ORDER BY seq",
        m=merchant.merchant,
        t=events_pb2.LoyaltyPointsAdjusted.DESCRIPTOR.full_name,
    )
    sent = [events_pb2.LoyaltyPointsAdjusted.FromString(bytes(r[0])).entry for r in rows]
    assert [(e.customer_id, e.points, e.reason) for e in sent if e.kind == "adjusted"] == [
        (winner.id, 40, ""), (loser.id, 40, ""), (survivor.id, 5, "Stays here")
    ]  # fmt: skip
    # A retry of an adjustment is refused as the profile's requests are, and runs nothing.
    for request in adjustments.values():
        err = await _refused(merchant("AdjustPoints", request))
        assert (err.code(), read_error(err).reason) == (
            grpc.StatusCode.NOT_FOUND,
            "customer_erased",
        )
    assert await ledger() == after
    # Another customer's stored adjustment still replays.
    again = await merchant("AdjustPoints", kept)
    assert again.entry.reason == "Stays here"


async def test_erasing_a_merged_duplicate_keeps_the_merges_answer(
    merchant: Caller, service: Service
) -> None:
    """The duplicate's erasure leaves the merge's stored answer in place: a retry of the merge
    replays it (the survivor, and the duplicate with no personal data, as the erasure leaves
    it), not `customer_erased`. The survivor's erasure withdraws it: it holds their profile."""
    winner = await merchant.create(email="stays.m@example.com", given_name="Staysmerged")
    loser = await merchant.create(
        email="dupe.m@example.com", phone="+14155550166", given_name="Dupemerged"
    )
    merge = customer_pb2.MergeCustomersRequest(
        request_id="k-merge", winner_id=winner.id, loser_id=loser.id
    )
    first = await merchant("MergeCustomers", merge)
    await merchant("EraseCustomer", customer_pb2.EraseCustomerRequest(id=loser.id))

    again = await merchant("MergeCustomers", merge)
    assert again.winner == first.winner
    assert (again.loser.id, again.loser.email, again.loser.phone) == (loser.id, "", "")
    assert again.loser.given_name == "" and again.loser.merged_into == winner.id
    (stored,) = await service.sql(
        "SELECT response FROM processed_requests WHERE merchant_id = :m AND request_id = :r",
        m=merchant.merchant,
        r="k-merge",
    )
    assert b"Dupemerged" not in bytes(stored[0]) and b"dupe.m@" not in bytes(stored[0])

    await merchant("EraseCustomer", customer_pb2.EraseCustomerRequest(id=winner.id))
    err = await _refused(merchant("MergeCustomers", merge))
    assert read_error(err).reason == "customer_erased"


async def test_a_retry_after_erasure_never_brings_the_customer_back(
    merchant: Caller, service: Service
) -> None:
    """A request id whose answer held an erased customer stays spent: a retry of the create,
    the upsert or the import (a partner's queued one, or a direct gRPC caller's) is refused
    `customer_erased`, runs nothing and answers nothing of the customer."""
    email, upsert_email = "gone.svc@example.com", "gone.upsert@example.com"
    create = customer_pb2.CreateCustomerRequest(
        request_id="k-create", profile=P(email=email, given_name="Gone")
    )
    upsert = customer_pb2.UpsertCustomerRequest(
        request_id="k-upsert",
        profile=P(external_id="crm-gone", email=upsert_email, given_name="Upsert"),
    )
    batch = customer_pb2.BatchUpsertCustomersRequest(
        request_id="k-batch",
        customers=[
            P(external_id="imp-gone", email="gone.batch@example.com", given_name="Batchgone"),
            P(external_id="imp-stays", given_name="Stays"),
        ],
    )
    created = (await merchant("CreateCustomer", create)).customer
    upserted = (await merchant("UpsertCustomer", upsert)).customer
    imported = (await merchant("BatchUpsertCustomers", batch)).customers
    # Before the erasure a retry replays the same customer.
    assert (await merchant("CreateCustomer", create)).customer.id == created.id
    for gone in (created.id, upserted.id, imported[0].id):
        await merchant("EraseCustomer", customer_pb2.EraseCustomerRequest(id=gone))

    async def count(table: str, extra: str = "") -> int:
        rows = await service.sql(
            f"SELECT count(*) FROM {table} WHERE merchant_id = :m {extra}",  # noqa: S608 - ours
            m=merchant.merchant,
        )
        return int(rows[0][0])

    customers, events = await count("customers"), await count("outbox")
    for method, request in (
        ("CreateCustomer", create),
        ("UpsertCustomer", upsert),
        ("BatchUpsertCustomers", batch),
    ):
        err = await _refused(merchant(method, request))
        assert (err.code(), read_error(err).reason) == (
            grpc.StatusCode.NOT_FOUND,
            "customer_erased",
        ), method
        assert "gone" not in (err.details() or "").lower()
    # Even another request under a spent id: the withdrawn answer has no fingerprint left.
    other = customer_pb2.CreateCustomerRequest(request_id="k-create", profile=P(given_name="X"))
    err = await _refused(merchant("CreateCustomer", other))
    assert read_error(err).reason == "customer_erased"
    # Nothing ran: no customer, no event, and no search finds the email again.
    assert (await count("customers"), await count("outbox")) == (customers, events)
    assert await _search(merchant, email=email) == []
    assert await _search(merchant, email=upsert_email) == []
    assert await _search(merchant, query="batchgone") == []
    # The stored answers hold none of it: withdrawn, with their fingerprints.
    spent = await service.sql(
        "SELECT request_id, response, fingerprint FROM processed_requests"
        " WHERE merchant_id = :m AND request_id LIKE 'k-%' ORDER BY request_id",
        m=merchant.merchant,
    )
    assert [r[0] for r in spent] == ["k-batch", "k-create", "k-upsert"]
    for _, response, print_ in spent:
        held = bytes(response)
        assert held.startswith(b"\x00") and bytes(print_) == b""
        assert b"gone" not in held.lower() and b"Stays" not in held
    # A new request id is a new request, as ever.
    again = customer_pb2.CreateCustomerRequest(
        request_id="k-new", profile=P(email=email, given_name="Gone")
    )
    fresh = (await merchant("CreateCustomer", again)).customer
    assert fresh.id != created.id and await _search(merchant, email=email) == [fresh.id]


@pytest.fixture
def silent_nats() -> Iterator[str]:
    """A NATS address that refuses every connection (a port held, never listened on): the
    service's relay never connects, so every event it writes stays in its outbox."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield f"nats://127.0.0.1:{held.getsockname()[1]}"


async def test_an_erasure_sends_unpublished_events_with_the_erased_snapshot(
    infra: Infra, silent_nats: str
) -> None:
    async with serve_in_process("customer", infra, nats_url=silent_nats) as svc:
        service = Service(customer_pb2_grpc.CustomerServiceStub(svc.channel), svc.runtime, "")
        merchant = Caller(service.stub, f"mer_{uuid.uuid4().hex[:12]}")
        gone = await merchant.create(email="gone@example.com", given_name="Gonzo")
        await merchant(
            "UpdateCustomer", customer_pb2.UpdateCustomerRequest(id=gone.id, family_name="Away")
        )
        winner = await merchant.create(email="winner@example.com", given_name="Wendy")
        loser = await merchant.create(email="loser@example.com", given_name="Lou")
        await merchant(
            "MergeCustomers",
            customer_pb2.MergeCustomersRequest(winner_id=winner.id, loser_id=loser.id),
        )
        # One of the loser's events made it out before the erasure: that row goes.
        with psycopg.connect(svc.database_url) as conn:
            marked = conn.execute(
                "UPDATE outbox SET published_at = now() WHERE merchant_id = %s AND"
                " event_type = 'pos.customer.v1.CustomerCreated'"
                " AND position(convert_to(%s, 'UTF8') IN payload) > 0",
                (merchant.merchant, loser.id),
            )
            assert marked.rowcount == 1
        for erased in (gone.id, loser.id):
            await merchant("EraseCustomer", customer_pb2.EraseCustomerRequest(id=erased))

        rows = await service.sql(
            "SELECT event_type, payload, published_at IS NULL FROM outbox"
            " WHERE merchant_id = :m ORDER BY seq",
            m=merchant.merchant,
        )
    sent = [
        (t.rsplit(".", 1)[1], events_pb2.CustomerCreated.FromString(p), pending)
        for t, p, pending in rows
        if t != "pos.customer.v1.CustomerMerged" and t != "pos.customer.v1.CustomerErased"
    ]
    # The erased customer's creation and update are still sent, in order, without its data;
    # so is the loser's version its merge made (merged, no data), erased since.
    assert [(t, e.customer.id, e.customer.status) for t, e, _ in sent] == [
        ("CustomerCreated", gone.id, "erased"),
        ("CustomerUpdated", gone.id, "erased"),
        ("CustomerCreated", winner.id, "active"),
        ("CustomerUpdated", loser.id, "erased"),
    ]
    assert all(pending for *_, pending in sent)
    assert sent[1][1].customer.version == 2 and sent[1][1].customer.HasField("created_at")
    assert all(not (e.customer.email or e.customer.given_name) for _, e, _ in sent[:2])
    # The merge is another customer's (the winner's): sent untouched, the winner's data in it.
    merged = [
        events_pb2.CustomerMerged.FromString(p)
        for t, p, _ in rows
        if t == "pos.customer.v1.CustomerMerged"
    ]
    assert [(m.winner.id, m.winner.email, m.loser_id) for m in merged] == [
        (winner.id, "winner@example.com", loser.id)
    ]
    erasures = [t for t, *_ in rows if t == "pos.customer.v1.CustomerErased"]
    assert len(erasures) == 2
    for data in (b"gone@example.com", b"Gonzo", b"Away", b"loser@example.com", b"Lou"):
        assert not any(data in p for _, p, _ in rows), data


async def test_an_event_published_while_the_erasure_waits_for_it_leaves_the_outbox(
    infra: Infra, silent_nats: str
) -> None:
    """The relay holds a row (publishing it) when the erasure comes: the erasure waits for it
    and, the row now published, deletes it. (Filtered on `published_at` as it stood when the
    erasure began, the row dropped out of both the delete and the rewrite and kept the email.)"""
    async with serve_in_process("customer", infra, nats_url=silent_nats) as svc:
        service = Service(customer_pb2_grpc.CustomerServiceStub(svc.channel), svc.runtime, "")
        merchant = Caller(service.stub, f"mer_{uuid.uuid4().hex[:12]}")
        gone = await merchant.create(email="racing@example.com")
        with psycopg.connect(svc.database_url) as relay:
            # What the relay's claim does: the row locked, published, then committed.
            (seq,) = relay.execute(
                "SELECT seq FROM outbox WHERE merchant_id = %s FOR UPDATE",
                (merchant.merchant,),
            ).fetchone() or (None,)
            erasing = asyncio.ensure_future(
                merchant("EraseCustomer", customer_pb2.EraseCustomerRequest(id=gone.id))
            )

            def waiting() -> bool:
                with psycopg.connect(svc.database_url) as watcher:
                    row = watcher.execute(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                    ).fetchone()
                return bool(row and row[0])

            await until(lambda: waiting() or erasing.done(), limit=20)
            assert not erasing.done(), erasing.exception()
            relay.execute("UPDATE outbox SET published_at = now() WHERE seq = %s", (seq,))
            relay.commit()
        await erasing
        left = await service.sql(
            "SELECT count(*) FROM outbox WHERE position(convert_to('racing@', 'UTF8') IN payload)"
            " > 0"
        )
    assert left == [(0,)]


async def test_erasing_a_customer_erases_the_duplicates_merged_into_it(
    merchant: Caller, service: Service
) -> None:
    """A merge keeps the duplicate (it says where it went) and the orders other services hold
    under its id: they are the same person's. Erasing the survivor erases every customer
    merged into it, directly or through an earlier merge, each announced, so the order
    service blanks their orders' addresses and notes too."""
    a = await merchant.create(email="ann@example.com", given_name="Ann")
    b = await merchant.create(email="ann.b@example.com", given_name="Annie")
    c = await merchant.create(email="ann.c@example.com", given_name="A.")
    other = await merchant.create(email="bob@example.com", given_name="Bob")
    await merchant(
        "MergeCustomers", customer_pb2.MergeCustomersRequest(winner_id=b.id, loser_id=c.id)
    )
    await merchant(
        "MergeCustomers", customer_pb2.MergeCustomersRequest(winner_id=a.id, loser_id=b.id)
    )
    await merchant("EraseCustomer", customer_pb2.EraseCustomerRequest(id=a.id))

    rows = await service.sql(
        "SELECT payload FROM outbox WHERE merchant_id = :m"
        " AND event_type = 'pos.customer.v1.CustomerErased'",
        m=merchant.merchant,
    )
    told = {events_pb2.CustomerErased.FromString(bytes(r.payload)).customer_id for r in rows}
    assert told == {a.id, b.id, c.id}
    for gone in (a, b, c):
        err = await _refused(merchant("GetCustomer", customer_pb2.GetCustomerRequest(id=gone.id)))
        assert err.code() == grpc.StatusCode.NOT_FOUND
    # Erased again: no such customer, but the refusal names what the erasure took, so a caller
    # whose first attempt lost its answer still withdraws its copies of them (the gateway).
    again = await _refused(merchant("EraseCustomer", customer_pb2.EraseCustomerRequest(id=a.id)))
    assert again.code() == grpc.StatusCode.NOT_FOUND
    assert sorted(read_error(again).metadata["erased_ids"].split(",")) == sorted((a.id, b.id, c.id))
    missing = customer_pb2.EraseCustomerRequest(id="cus_never")
    assert (
        "erased_ids" not in read_error(await _refused(merchant("EraseCustomer", missing))).metadata
    )
    kept = await service.sql(
        "SELECT count(*) AS n FROM customers WHERE merchant_id = :m AND email LIKE 'ann%'",
        m=merchant.merchant,
    )
    assert kept[0].n == 0
    assert (await merchant("GetCustomer", customer_pb2.GetCustomerRequest(id=other.id))).customer
