"""Gateway pieces that need no sockets: keys, the JSON shape, the gRPC -> HTTP table."""

from __future__ import annotations

import os
import subprocess
import sys

import grpc
import pytest

from pos.common.v1 import money_pb2
from pos.order.v1 import order_pb2
from pos.payment.v1 import payment_pb2
from pos_gateway import keys
from pos_gateway.convert import to_json
from pos_gateway.edge import service_request_id
from pos_gateway.idempotency import canonical, fingerprints
from pos_gateway.problems import HTTP_FOR_GRPC


def test_generated_keys_are_well_formed_and_a_typo_is_not() -> None:
    key = keys.generate("test")
    assert key.startswith("pos_test_")
    assert keys.well_formed(key)
    flipped = key[:-7] + ("A" if key[-7] != "A" else "B") + key[-6:]
    assert not keys.well_formed(flipped)
    assert keys.well_formed(keys.generate("live"))
    assert not keys.well_formed("pos_test_short")


def test_keys_are_stored_only_as_a_keyed_hash() -> None:
    key = keys.generate()
    digest = keys.keyed_hash("server-secret-one", key)
    assert key.encode() not in digest
    assert digest != keys.keyed_hash("server-secret-two", key)
    assert keys.hint(key).endswith("…") and len(keys.hint(key)) < len(key) // 2


def test_public_json_keeps_integers_words_and_nulls() -> None:
    order = order_pb2.Order(
        id="ord_1",
        total=money_pb2.Money(amount=6040, currency="USD"),
        status=order_pb2.ORDER_STATUS_PENDING_PAYMENT,
    )
    body = to_json(order)
    assert body["total"] == {"amount": 6040, "currency": "USD"}
    assert body["status"] == "pending_payment"
    assert body["subtotal"] is None
    assert body["created_at"] is None
    payment = to_json(payment_pb2.Payment(tender_type=payment_pb2.TENDER_TYPE_CARD))
    assert payment["tender_type"] == "card"
    assert payment["status"] is None  # UNSPECIFIED is absent, not a word


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, 400),
        (grpc.StatusCode.NOT_FOUND, 404),
        (grpc.StatusCode.ALREADY_EXISTS, 409),
        (grpc.StatusCode.ABORTED, 409),
        (grpc.StatusCode.FAILED_PRECONDITION, 409),
        (grpc.StatusCode.OUT_OF_RANGE, 400),
        (grpc.StatusCode.UNAUTHENTICATED, 401),
        (grpc.StatusCode.PERMISSION_DENIED, 403),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
        (grpc.StatusCode.CANCELLED, 499),
        (grpc.StatusCode.UNIMPLEMENTED, 501),
        (grpc.StatusCode.UNAVAILABLE, 503),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 504),
        (grpc.StatusCode.INTERNAL, 500),
        (grpc.StatusCode.UNKNOWN, 500),
        (grpc.StatusCode.DATA_LOSS, 500),
    ],
)
def test_every_grpc_code_has_its_http_status(code: grpc.StatusCode, status: int) -> None:
    assert HTTP_FOR_GRPC[code] == status


def test_the_table_covers_every_grpc_code() -> None:
    assert set(HTTP_FOR_GRPC) == set(grpc.StatusCode)


def test_a_bucket_allows_its_burst_then_refuses_until_refilled() -> None:
    from pos_gateway.ratelimit import TokenBuckets

    buckets = TokenBuckets(rate_per_second=2.0, burst=3)
    decisions = [buckets.take("key_a", now=100.0) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert decisions[2].remaining == 0
    assert decisions[3].retry_after == 1
    assert buckets.take("key_b", now=100.0).allowed  # another credential is not slowed
    assert buckets.take("key_a", now=100.5).allowed  # half a second refills one token
    assert buckets.policy == '"default";q=3;w=2'


def test_buckets_of_many_addresses_do_not_pile_up_once_refilled() -> None:
    """Every source address without a credential has a bucket: a full one is the same as none,
    so those are let go once there are many (one each of a million addresses was kept for the
    life of the process), while one still spending keeps what it spent."""
    from pos_gateway.ratelimit import MAX_BUCKETS, TokenBuckets

    buckets = TokenBuckets(rate_per_second=2.0, burst=3)
    for _ in range(3):
        buckets.take("address:spent", now=100.0)
    for n in range(MAX_BUCKETS * 3):
        buckets.take(f"address:10.0.{n // 256}.{n % 256}", now=100.0 + n / 1000)
    assert len(buckets._buckets) <= MAX_BUCKETS + 1
    # The spent one refilled meanwhile (it is many seconds later): it may go too; one spent
    # just now is kept, and still refused.
    late = 100.0 + MAX_BUCKETS * 3 / 1000
    for _ in range(3):
        buckets.take("address:busy", now=late)
    for n in range(MAX_BUCKETS * 2):
        buckets.take(f"address:10.1.{n // 256}.{n % 256}", now=late)
    assert not buckets.take("address:busy", now=late).allowed
    assert len(buckets._buckets) <= MAX_BUCKETS + 2


def test_the_cli_refuses_a_merchant_name_holding_a_card_number() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pos_gateway", "create-merchant", "Shop 4242-4242-4242-4242"],
        capture_output=True,
        text=True,
        env={"PATH": os.environ.get("PATH", "")},  # refused before any setting is read
    )
    assert out.returncode == 2
    assert "card number" in out.stderr and "4242" not in out.stderr


def test_the_idempotency_fingerprint_is_keyed_so_a_short_secret_in_a_body_cannot_be_searched() -> (
    None
):
    import hashlib

    from pos_gateway.idempotency import fingerprint, fingerprint_key

    body = b'{"code":"ABCD-1234"}'
    key = fingerprint_key("gateway-secret-0123456789")
    mine = fingerprint("POST", "/v1/gift-cards/lookup", body, key)
    assert mine == fingerprint("POST", "/v1/gift-cards/lookup", body, key)
    assert mine != fingerprint(
        "POST", "/v1/gift-cards/lookup", body, fingerprint_key("other-secret-0123456789")
    )
    assert mine != hashlib.sha256(b"POST /v1/gift-cards/lookup\n" + body).digest()
    assert mine != fingerprint("POST", "/v1/gift-cards/lookup", b'{"code":"ABCD-1235"}', key)


@pytest.mark.parametrize(
    "body",
    [b'{"note": "\\ud800"}', b'{"delta": NaN}', b"[" * 5000 + b"]" * 5000],
    ids=["lone-surrogate", "nan", "deep"],
)
def test_a_body_json_parses_but_no_route_takes_is_fingerprinted_as_its_bytes(
    body: bytes,
) -> None:
    """Under an Idempotency-Key these were a 500 (the canonical form could not be written);
    byte for byte, the request goes on and the route answers its 400."""
    assert canonical(body) == body
    assert len(fingerprints("POST", "/v1/customers", body)) == 1
    assert canonical(b'{"b": 1, "a": 2}') == b'{"a":2,"b":1}'


def test_which_query_parameters_take_many_values() -> None:
    from typing import Annotated

    from fastapi import Query

    from pos_gateway.query_once import takes_many

    assert takes_many(list[str])
    assert takes_many(list[str] | None)
    assert takes_many(Annotated[list[str] | None, Query()])
    assert not takes_many(str)
    assert not takes_many(str | None)
    assert not takes_many(Annotated[int, Query()])
    assert not takes_many(Annotated[str | None, Query(max_length=5)])


def test_a_service_down_or_too_slow_says_when_to_retry() -> None:
    import grpc

    from pos_gateway.problems import from_rpc_error

    for code, status in (
        (grpc.StatusCode.UNAVAILABLE, 503),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 504),
    ):
        error = grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), "slow")
        problem = from_rpc_error(error)
        assert problem.status == status
        assert int(problem.headers["Retry-After"]) > 0
    refused = grpc.aio.AioRpcError(
        grpc.StatusCode.FAILED_PRECONDITION, grpc.aio.Metadata(), grpc.aio.Metadata(), "no"
    )
    assert "Retry-After" not in from_rpc_error(refused).headers


def test_a_clients_key_is_set_apart_from_the_ids_the_platform_derives() -> None:
    # Derived ids hold a '/': a key holding one is prefixed; any other is the request id.
    uuid_key = "5f0c2a8e-6a57-4c43-9d2f-0b8c6f1f3e21"
    assert service_request_id(uuid_key) == uuid_key
    assert service_request_id("ord_1/release/ord_1-1") == "key:ord_1/release/ord_1-1"
    assert service_request_id("key:x/y") == "key:key:x/y"
    derived = f"{service_request_id('K')}/payment"
    assert service_request_id(derived) != derived


def test_if_match_star_is_any_version_and_other_tags_still_a_version() -> None:
    from pos_gateway.problems import Problem
    from pos_gateway.routes.common import any_version, expected_version

    # RFC 9110 13.1.1: `*` matches whatever version is current (0: no check at the services).
    assert expected_version("*") == 0 and expected_version(" * ") == 0
    assert any_version("*") and not any_version('"3"') and not any_version(None)
    assert [expected_version(t) for t in ('"3"', 'W/"3"', "3", None)] == [3, 3, 3, 0]
    for bad in ("**", '"*"', "W/*", "0", "abc"):
        with pytest.raises(Problem):
            expected_version(bad)
