"""Page tokens: a token the platform gave reads back to its key, anything else is refused
(never read as some other key, which would restart a list or end it without a word)."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pos.customer.v1 import customer_pb2
from pos.order.v1 import order_pb2
from pos_kit.errors import InvalidArgument
from pos_kit.paging import (
    TOKEN_MAX,
    _checksum,
    decode_change,
    decode_token,
    encode_change,
    encode_token,
    page_of,
    page_request,
    page_scope,
)

# Seeded: the same examples every run, whatever profile is loaded.
SEEDED = settings(derandomize=True, database=None, max_examples=300, deadline=None)

KEY = "prod_01j9x6q2b3c4d5e6f7g8h9k0mn"


def _refused(token: str, field: str = "page_token") -> None:
    with pytest.raises(InvalidArgument) as caught:
        decode_token(token, field)
    assert [v.field for v in caught.value.violations] == [field]
    assert caught.value.code == "invalid_argument"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def test_a_token_reads_back_to_its_key_and_is_url_safe() -> None:
    token = encode_token(KEY)
    assert decode_token(token) == KEY
    assert token.isascii() and set(token) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    )
    # Not the key's plain base64: a client can't make one up from an id.
    assert token != _b64(KEY.encode())


def test_no_token_is_the_first_page() -> None:
    assert decode_token("") is None
    assert decode_change("") is None


@SEEDED
@given(st.text(max_size=120))
def test_any_key_round_trips(key: str) -> None:
    assert decode_token(encode_token(key)) == key


@SEEDED
@given(
    st.datetimes(
        min_value=datetime(2000, 1, 1),
        max_value=datetime(2100, 1, 1),
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30))]),
    ),
    st.from_regex(r"[a-z]{2,6}_[0-9a-z]{26}", fullmatch=True),
)
def test_a_change_cursor_round_trips(updated_at: datetime, item_id: str) -> None:
    cursor = decode_change(encode_change(updated_at, item_id))
    assert cursor is not None
    assert (cursor.updated_at, cursor.id) == (updated_at, item_id)


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        "!!!!",
        "eyJ4IjoxfQ",  # {"x":1}
        "d2hzdWJfMDFt",  # whsub_01m
        _b64(KEY.encode()),  # the plain base64 of an id, as cursors were
        KEY,  # an id as it is, as the gateway's own lists gave
        "12345",
        "\xff\xfe",
        "prod_\u00e9\u00e8",
        "\u2603\u2603\u2603\u2603",
        "AA==",
        " " + encode_token(KEY),
        encode_token(KEY) + "\n",
        encode_token(KEY) + "=",
        encode_token(KEY) + "==",
        "A" * (TOKEN_MAX + 4),
    ],
)
def test_a_string_the_platform_did_not_give_is_refused(token: str) -> None:
    _refused(token)


def test_the_refusal_names_the_field_it_is_asked_to() -> None:
    _refused("garbage", "cursor")
    with pytest.raises(InvalidArgument) as caught:
        decode_change("garbage", "cursor")
    assert [v.field for v in caught.value.violations] == ["cursor"]


def test_a_tampered_token_is_refused() -> None:
    token = encode_token(KEY)
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    for at in range(len(raw)):
        for bit in (0x01, 0x80):
            flipped = bytearray(raw)
            flipped[at] ^= bit
            _refused(_b64(bytes(flipped)))
    # Another key with the checksum of the first; another version with its own checksum.
    other = _b64(b"\x01" + b"prod_01j9x6q2b3c4d5e6f7g8h9k0mz" + raw[-4:])
    _refused(other)
    _refused(_b64(b"\x02" + raw[1:]))


def test_a_token_with_spare_bits_set_is_refused() -> None:
    # Base64 text whose last character carries bits the bytes do not: the same bytes decode,
    # but it is not the text we gave.
    for key in (KEY[:-1], KEY[:-2]):  # one byte past a group of three, and two
        token = encode_token(key)
        spare = {2: 4, 3: 2}[len(token) % 4]
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        last = alphabet.index(token[-1])
        twins = [
            c for c in alphabet if c != token[-1] and alphabet.index(c) >> spare == last >> spare
        ]
        assert len(twins) == 2**spare - 1
        for other in twins:
            twin = token[:-1] + other
            assert base64.urlsafe_b64decode(twin + "=" * (-len(twin) % 4)) == (
                base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            )
            _refused(twin)


def test_every_truncation_is_refused() -> None:
    token = encode_token(KEY)
    for end in range(1, len(token)):
        _refused(token[:end])
    for start in range(1, len(token)):
        _refused(token[start:])


def test_a_key_that_is_not_utf8_is_refused() -> None:
    body = b"\x01" + b"prod_\xff\xfe"
    _refused(_b64(body + _checksum(body, "")))


def test_a_plain_token_is_not_a_change_cursor() -> None:
    with pytest.raises(InvalidArgument):
        decode_change(encode_token(KEY))
    with pytest.raises(InvalidArgument):
        decode_change(encode_token("not a time|" + KEY))
    with pytest.raises(InvalidArgument):
        decode_change(encode_token("2026-01-01T00:00:00+00:00|"))


@SEEDED
@given(st.text(max_size=600))
def test_random_text_is_refused(token: str) -> None:
    # The checksum is 32 bits: a string that happens to carry a valid one is out of reach of
    # any number of examples a test runs.
    if token:
        _refused(token)


@SEEDED
@given(st.binary(max_size=200))
def test_random_base64_is_refused(raw: bytes) -> None:
    token = _b64(raw)
    if token:
        _refused(token)


def test_a_token_is_good_for_its_own_list_only() -> None:
    token = encode_token(KEY, "pos.inventory.v1.ListProductsRequest")
    assert decode_token(token, scope="pos.inventory.v1.ListProductsRequest") == KEY
    with pytest.raises(InvalidArgument):
        decode_token(token, scope="pos.customer.v1.ListCustomersRequest")
    with pytest.raises(InvalidArgument):
        decode_token(token)
    # A change feed's cursor and a by-id cursor of the same list are told apart.
    feed = customer_pb2.ListCustomersRequest(page_size=1)
    feed.updated_since.FromDatetime(datetime(2026, 1, 1, tzinfo=UTC))
    plain = customer_pb2.ListCustomersRequest(page_size=1)
    assert page_scope(feed) != page_scope(plain)
    change = encode_change(datetime(2026, 1, 2, tzinfo=UTC), "cus_1", page_scope(feed))
    assert page_request(_with_token(feed, change)).cursor == decode_change(
        change, scope=page_scope(feed)
    )
    with pytest.raises(InvalidArgument):
        page_request(_with_token(plain, change))
    by_id = encode_token("cus_1", page_scope(plain))
    assert page_request(_with_token(plain, by_id)).after == "cus_1"
    with pytest.raises(InvalidArgument):
        page_request(_with_token(feed, by_id))


def test_a_cursor_is_good_for_its_filters_only() -> None:
    """A cursor positions the list as filtered when it was given: with another filter it
    would page on from a position of another list (skipping or repeating items), so it is
    refused; another page size is still the same list."""
    mine = order_pb2.ListOrdersRequest(page_size=2, customer_id="cus_1", channel="web")
    token = encode_token("ord_5", page_scope(mine))
    again = order_pb2.ListOrdersRequest(page_size=50, customer_id="cus_1", channel="web")
    again.page_token = token
    assert page_request(again).after == "ord_5"
    for other in (
        order_pb2.ListOrdersRequest(customer_id="cus_2", channel="web"),
        order_pb2.ListOrdersRequest(customer_id="cus_1"),
        order_pb2.ListOrdersRequest(customer_id="cus_1", channel="web", register_id="reg_1"),
        order_pb2.ListOrdersRequest(
            customer_id="cus_1", channel="web", status=order_pb2.ORDER_STATUS_CANCELLED
        ),
    ):
        other.page_token = token
        with pytest.raises(InvalidArgument) as caught:
            page_request(other)
        assert [v.field for v in caught.value.violations] == ["page_token"]
    # A change feed's cursor is bound to its starting time too.
    feed = order_pb2.ListOrdersRequest()
    feed.updated_since.FromDatetime(datetime(2026, 1, 1, tzinfo=UTC))
    change = encode_change(datetime(2026, 1, 2, tzinfo=UTC), "ord_1", page_scope(feed))
    later = order_pb2.ListOrdersRequest(page_token=change)
    later.updated_since.FromDatetime(datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC))
    with pytest.raises(InvalidArgument):
        page_request(later)
    feed.page_token = change
    assert page_request(feed).cursor is not None


def test_a_page_walk_reads_back_every_token_it_gives() -> None:
    request = customer_pb2.ListCustomersRequest(page_size=2)
    ids = [f"cus_{n:02d}" for n in range(7)]
    seen: list[str] = []
    while True:
        page = page_request(request)
        found = [_Item(i) for i in ids if page.after is None or i > page.after][: page.fetch]
        shown, token = page_of(found, page)
        seen += [i.id for i in shown]
        if not token:
            break
        request = _with_token(request, token)
    assert seen == ids


@dataclass
class _Item:
    id: str


def _with_token(request: customer_pb2.ListCustomersRequest, token: str) -> Any:
    copy = customer_pb2.ListCustomersRequest()
    copy.CopyFrom(request)
    copy.page_token = token
    return copy
