"""The kit's pure parts of the servicer idiom: enum mapping, paging, the event registry."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from pos.customer.v1 import customer_pb2, events_pb2
from pos.payment.v1 import payment_pb2
from pos_kit.enums import ProtoEnum
from pos_kit.errors import ErrorKind, InvalidArgument, NotFound
from pos_kit.events import EventRegistry
from pos_kit.grpc_errors import KIND_OF_STATUS, STATUS_OF_KIND
from pos_kit.paging import PageRequest, decode_change, decode_token, page_of, page_request


class Status(Enum):
    CAPTURED = "captured"
    DECLINED = "declined"


def test_enum_members_pair_with_proto_values_by_name() -> None:
    statuses = ProtoEnum(Status, payment_pb2.PaymentStatus)
    assert statuses.to_proto(Status.DECLINED) == payment_pb2.PAYMENT_STATUS_DECLINED
    assert statuses.from_proto(payment_pb2.PAYMENT_STATUS_CAPTURED, "status") is Status.CAPTURED
    assert statuses.optional(0, "status") is None


def test_an_unspecified_or_unknown_enum_value_is_a_field_error() -> None:
    statuses = ProtoEnum(Status, payment_pb2.PaymentStatus)
    for number in (0, 99):
        with pytest.raises(InvalidArgument) as err:
            statuses.from_proto(number, "status")
        assert [v.field for v in err.value.violations] == ["status"]
        assert "captured" in err.value.violations[0].description


def test_a_domain_member_without_a_proto_value_fails_when_the_mapping_is_built() -> None:
    class Wider(Enum):
        CAPTURED = "captured"
        REFUNDED = "refunded"

    with pytest.raises(LookupError, match="PAYMENT_STATUS_REFUNDED"):
        ProtoEnum(Wider, payment_pb2.PaymentStatus)


@dataclass
class Item:
    id: str
    updated_at: datetime


def test_a_page_by_id_gives_the_next_token_only_when_more_follow() -> None:
    page = PageRequest(limit=2)
    items = [Item(f"i{n}", datetime(2026, 1, n, tzinfo=UTC)) for n in range(1, 4)]
    shown, token = page_of(items, page)
    assert [i.id for i in shown] == ["i1", "i2"]
    assert decode_token(token) == "i2"
    assert page_of(items[:2], page) == (items[:2], "")


def test_a_change_feed_page_resumes_after_the_last_change() -> None:
    since = datetime(2026, 1, 1, tzinfo=UTC)
    page = PageRequest(limit=1, since=since)
    items = [
        Item("b", datetime(2026, 1, 2, tzinfo=UTC)),
        Item("a", datetime(2026, 1, 3, tzinfo=UTC)),
    ]
    _, token = page_of(items, page)
    cursor = decode_change(token)
    assert cursor is not None and (cursor.id, cursor.updated_at) == ("b", items[0].updated_at)


def test_a_list_request_becomes_a_page_request() -> None:
    plain = page_request(customer_pb2.ListCustomersRequest(page_size=5))
    assert (plain.limit, plain.fetch, plain.since, plain.after) == (5, 6, None, None)
    stamp = Timestamp()
    stamp.FromDatetime(datetime(2026, 3, 1, tzinfo=UTC))
    feed = page_request(customer_pb2.ListCustomersRequest(updated_since=stamp))
    assert feed.since == datetime(2026, 3, 1, tzinfo=UTC)
    with pytest.raises(InvalidArgument):
        page_request(customer_pb2.ListCustomersRequest(page_size=10_000))


@dataclass(frozen=True)
class Created:
    name: str


@dataclass(frozen=True)
class Forgotten:
    name: str


def test_the_event_registry_maps_each_domain_event_and_checks_coverage() -> None:
    registry = EventRegistry()

    @registry.maps(Created)
    def _created(event: Created) -> events_pb2.CustomerCreated:
        return events_pb2.CustomerCreated(customer=customer_pb2.Customer(given_name=event.name))

    outgoing = registry.to_outgoing(Created("Ada"), "mer_a")
    assert outgoing.subject == "pos.customer.v1.customer_created"
    assert outgoing.merchant_id == "mer_a"
    decoded = events_pb2.CustomerCreated.FromString(outgoing.payload)
    assert (decoded.customer.given_name, decoded.meta.merchant_id) == ("Ada", "mer_a")
    registry.check([Created])
    with pytest.raises(LookupError, match="Forgotten"):
        registry.check([Created, Forgotten])
    with pytest.raises(TypeError):
        registry.to_outgoing(Forgotten("x"), "mer_a")


def test_every_error_kind_has_one_status_and_back() -> None:
    assert set(STATUS_OF_KIND) == set(ErrorKind)
    assert all(KIND_OF_STATUS[STATUS_OF_KIND[kind]] is kind for kind in ErrorKind)
    assert NotFound("customer", "cus_1").kind is ErrorKind.NOT_FOUND
