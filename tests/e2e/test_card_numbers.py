"""No card number lands anywhere: every free-text field the API documents refuses one, and
afterwards no database, log file or NATS stream of the platform holds any of them.

The fields come from the gateway's served OpenAPI document, so a field added later is planted
too. A field is free text when its schema is a string with no enum, format or pattern of its
own (the gateway's "no NUL" pattern, which every string carries, does not count).
"""

from __future__ import annotations

import asyncio
import copy
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import nats
import psycopg
import pytest
from nats.js.errors import NotFoundError
from psycopg import sql

from pos.common.v1 import money_pb2
from pos.customer.v1 import customer_pb2, customer_pb2_grpc
from pos.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from pos.order.v1 import order_pb2, order_pb2_grpc
from pos.payment.v1 import payment_pb2, payment_pb2_grpc
from pos.promotion.v1 import promotion_pb2, promotion_pb2_grpc
from pos_devstack.testing import TEST_CARD_NUMBERS, Running
from pos_gateway.routes.common import NO_NUL
from pos_kit.grpc_client import read_error

pytestmark = pytest.mark.e2e

CARDS = [n for n in TEST_CARD_NUMBERS if n != "6250941006528599"]
# Not card numbers (Luhn fails; a GTIN-13 in a barcode field): these are stored, and finding
# them proves the dumps below would have found a card number.
NEAR_MISS = "4242424242424241"
GTIN = "5901234123457"  # also passes Luhn: refused in free text, at home in `barcodes`
DUMMY_ID = "zzz_00000000000000000000000000"


def printed(number: str, style: int) -> str:
    """The number as typed: contiguous, in groups of four with spaces, or with dashes."""
    if style == 0:
        return number
    groups = [number[i : i + 4] for i in range(0, len(number), 4)]
    return (" " if style == 1 else "-").join(groups)


# --- the document's free-text fields ------------------------------------------------------------


def _resolve(schema: dict[str, Any], document: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].split("/")[-1]]
    return schema


def free_text(
    schema: dict[str, Any], document: dict[str, Any], path: tuple[str, ...] = ()
) -> Iterator[tuple[str, ...]]:
    """Paths of free-text strings: names, `[]` for an array's item, `*` for a map's value."""
    schema = _resolve(schema, document)
    for alternative in schema.get("anyOf", []) + schema.get("oneOf", []):
        yield from free_text(alternative, document, path)
    kind = schema.get("type")
    if kind == "object":
        for name, sub in schema.get("properties", {}).items():
            yield from free_text(sub, document, (*path, name))
        if isinstance(schema.get("additionalProperties"), dict):
            yield from free_text(schema["additionalProperties"], document, (*path, "*"))
    elif kind == "array":
        yield from free_text(schema.get("items", {}), document, (*path, "[]"))
    elif kind == "string":
        own_type = {"enum", "format"} & schema.keys() or schema.get("pattern", NO_NUL) != NO_NUL
        if not own_type:
            yield path


def put(node: Any, path: tuple[str, ...], value: str) -> Any:
    """A copy of `node` with `value` at `path` (containers made as needed)."""
    head, rest = path[0], path[1:]
    if head == "[]":
        items = list(node) if isinstance(node, list) else []
        first = items[0] if items and isinstance(items[0], dict) else {}
        return [put(first, rest, value) if rest else value, *items[1:]]
    if head == "*":
        return {"k": value}
    out = dict(node) if isinstance(node, dict) else {}
    out[head] = put(out.get(head), rest, value) if rest else value
    return out


def unique(node: Any, suffix: str) -> Any:
    """The document's example made new (its SKUs, external ids and emails are taken after the
    first use; its barcodes are dropped), so a planted value would be stored if not refused."""
    if isinstance(node, list):
        return [unique(item, suffix) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: unique(v, suffix) for k, v in node.items() if k != "barcodes"}
    for key in ("sku", "external_id"):
        if isinstance(out.get(key), str):
            out[key] = f"{out[key]}-{suffix}"
    if isinstance(out.get("email"), str):
        out["email"] = f"{suffix}-{out['email']}"
    return out


def field_name(path: tuple[str, ...]) -> str:
    """How the gateway names the field: `variants[0].name`; a list of strings or a map by its
    own name (`barcodes`, `variants[0].options`)."""
    name = ""
    for i, part in enumerate(path):
        if part == "[]" and i < len(path) - 1:
            name += "[0]"
        elif part not in ("[]", "*"):
            name += ("." if name else "") + part
    return name


def plants(document: dict[str, Any]) -> Iterator[tuple[str, str, str, str, Any]]:
    """(method, path, where, field, base) for every free-text field: `where` is `query`,
    `json` or `form`; `base` is the body the document shows, or the field's path."""
    for route, operations in document["paths"].items():
        url = re.sub(r"\{[^}]+\}", DUMMY_ID, route)
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                if "$ref" in parameter:  # the shared headers (Idempotency-Key, If-Match)
                    continue
                if parameter["in"] == "query":
                    for path in free_text(parameter["schema"], document):
                        yield method, url, "query", parameter["name"], path
            for media, content in operation.get("requestBody", {}).get("content", {}).items():
                schema = _resolve(content["schema"], document)
                base = content.get("example") or (schema.get("examples") or [{}])[0]
                where = "form" if media == "application/x-www-form-urlencoded" else "json"
                for path in dict.fromkeys(free_text(schema, document)):
                    yield method, url, where, field_name(path), (base, path)


# --- what the platform holds ---------------------------------------------------------------------


def _text(value: Any) -> str:
    if isinstance(value, memoryview):
        value = value.tobytes()
    if isinstance(value, bytes):
        return value.decode("latin-1")  # raw bytes: protobuf payloads hold strings as UTF-8
    return str(value)


def database_dumps(platform: Running) -> dict[str, str]:
    """Every row of every table of every database (each service and the gateway), as text."""
    dumps = {}
    for name, url in platform.platform.database_urls.items():
        with psycopg.connect(url) as conn:
            tables = conn.execute(
                "SELECT table_schema, table_name FROM information_schema.tables "
                "WHERE table_type = 'BASE TABLE' "
                "AND table_schema NOT IN ('pg_catalog', 'information_schema')"
            ).fetchall()
            assert tables, name
            rows = []
            for schema, table in tables:
                query = sql.SQL("SELECT * FROM {}.{}").format(
                    sql.Identifier(schema), sql.Identifier(table)
                )
                rows += [" | ".join(map(_text, row)) for row in conn.execute(query)]
        dumps[name] = "\n".join(rows)
    return dumps


def log_files(platform: Running) -> dict[str, str]:
    logs = platform.platform.home / "logs"
    return {p.name: p.read_bytes().decode("latin-1") for p in sorted(logs.glob("*.log"))}


async def _stream_dumps(url: str) -> dict[str, str]:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        dumps = {}
        for info in await js.streams_info():
            state, parts = info.state, []
            for seq in range(max(state.first_seq, 1), state.last_seq + 1 if state.messages else 1):
                try:
                    msg = await js.get_msg(info.config.name or "", seq)
                except NotFoundError:
                    continue  # deleted
                parts.append(f"{msg.subject} {msg.headers} {_text(msg.data or b'')}")
            dumps[info.config.name or ""] = "\n".join(parts)
        return dumps
    finally:
        await nc.close()


def stream_dumps(platform: Running) -> dict[str, str]:
    """Every message (subject, headers, payload) of every JetStream stream."""
    return asyncio.run(_stream_dumps(platform.platform.nats.url))


# --- the test ----------------------------------------------------------------------------------


def _refused(answer: httpx.Response, field: str, number: str) -> str | None:
    """Why the answer is not the expected refusal, or None."""
    if answer.status_code != 400:
        return f"{answer.status_code} {answer.text[:200]}"
    body = answer.json()
    if body.get("code") != "card_number_not_allowed":
        return f"code {body.get('code')}: {body.get('errors')}"
    if field not in [e["field"] for e in body.get("errors", [])]:
        return f"field not named: {body.get('errors')}"
    if number in answer.text:
        return "the answer repeats the number"
    return None


def _grpc_refusals(platform: Running, card: str) -> dict[str, Any]:
    """A direct gRPC call to each service with a card number in a free-text field."""
    md = (("x-merchant-id", "mer_direct_grpc"),)
    usd = money_pb2.Money(amount=100, currency="USD")
    calls: list[tuple[str, Any, str, Any]] = [
        ("inventory", inventory_pb2_grpc.InventoryServiceStub, "CreateProduct",
         inventory_pb2.CreateProductRequest(request_id="g1", sku="G-1", name=card, price=usd)),
        ("inventory", inventory_pb2_grpc.InventoryServiceStub, "CreateLocation",
         inventory_pb2.CreateLocationRequest(
             request_id="g2", name="L", currency="USD",
             address=inventory_pb2.Address(line1=f"Flat 2, {card}"))),
        ("promotion", promotion_pb2_grpc.PromotionServiceStub, "CreatePromotion",
         promotion_pb2.CreatePromotionRequest(request_id="g3", name=card, percent_off_bps=100)),
        ("customer", customer_pb2_grpc.CustomerServiceStub, "CreateCustomer",
         customer_pb2.CreateCustomerRequest(
             request_id="g4", email="direct@example.com", given_name=card)),
        ("payment", payment_pb2_grpc.PaymentServiceStub, "AuthorizeAndCapture",
         payment_pb2.AuthorizeAndCaptureRequest(
             request_id="g5", order_id="ord_x", amount=usd,
             tender_type=payment_pb2.TENDER_TYPE_CARD, card_token=card)),
        ("order", order_pb2_grpc.OrderServiceStub, "Checkout",
         order_pb2.CheckoutRequest(
             request_id="g6", location_id=DUMMY_ID, card_token=card,
             tender_type=payment_pb2.TENDER_TYPE_CARD,
             lines=[order_pb2.CheckoutLine(sku="G-1", quantity=1)])),
    ]  # fmt: skip
    seen = {}
    for service, stub_class, method, request in calls:
        address = f"127.0.0.1:{platform.platform.ports.services[service]}"
        with grpc.insecure_channel(address) as channel:
            with pytest.raises(grpc.RpcError) as err:
                getattr(stub_class(channel), method)(request, metadata=md, timeout=10)
            remote = read_error(err.value)  # type: ignore[arg-type]
            seen[f"{service}.{method}"] = (
                err.value.code(),  # type: ignore[attr-defined]
                remote.reason,
                [v.field for v in remote.violations],
                card in remote.message + str(remote.violations),
            )
    return seen


def test_no_card_number_is_accepted_or_kept_anywhere(platform: Running) -> None:
    http = platform.http
    admin = {"Authorization": f"Bearer {platform.platform._secrets()['platform_admin_token']}"}
    document = httpx.get(platform.platform.gateway_url + "/openapi.json").json()

    # The controls: accepted values that look a little like card numbers.
    tag = uuid.uuid4().hex[:8]
    control = http.post(
        "/v1/products",
        json={"sku": f"CTL-{tag}", "name": f"Control {NEAR_MISS}", "barcodes": [GTIN],
              "price": {"amount": 100, "currency": "USD"}},
        headers={"Idempotency-Key": f"control-{tag}"},
    )  # fmt: skip
    assert control.status_code == 201, control.text
    customer = http.post(
        "/v1/customers",
        json={"email": f"c-{tag}@example.com", "given_name": f"Call +1 415 555 0100 {NEAR_MISS}"},
    )
    assert customer.status_code == 201, customer.text

    planted: list[str] = []
    keys: list[str] = []
    failures: list[str] = []
    fields = list(plants(document))
    assert len(fields) >= 40, "the document lists the API's free-text fields"
    for n, (method, url, where, field, base) in enumerate(fields):
        for i, number in enumerate(CARDS):
            value = printed(number, (n + i) % 3)
            planted.append(value)
            headers = admin if url.startswith("/v1/admin/") else {}
            if method == "post" and not url.startswith(("/v1/admin/", "/v1/oauth/")):
                keys.append(f"card-test-{tag}-{len(keys)}")
                headers = {**headers, "Idempotency-Key": keys[-1]}
            if where == "query":
                answer = http.request(method, url, params={field: value}, headers=headers)
            elif where == "form":
                form = {**copy.deepcopy(base[0]), field: value}
                answer = httpx.post(platform.platform.gateway_url + url, data=form)
            else:
                body = put(unique(base[0], f"{tag}-{len(planted)}"), base[1], value)
                answer = http.request(method, url, json=body, headers=headers)
            why = _refused(answer, field, value)
            if why:
                failures.append(f"{method.upper()} {url} {where} {field} <- {value!r}: {why}")
    assert failures == [], "\n".join(failures)

    # Fields with a type of their own follow it: a GTIN is a barcode, a card number is not.
    in_barcode = http.post(
        "/v1/products",
        json={"sku": f"BAR-{tag}", "name": "Bar", "barcodes": [printed(CARDS[2], 1)],
              "price": {"amount": 100, "currency": "USD"}},
    )  # fmt: skip
    assert _refused(in_barcode, "barcodes", printed(CARDS[2], 1)) is None
    assert http.get("/v1/products", params={"barcode": GTIN}).json()["data"][0]["sku"] == (
        f"CTL-{tag}"
    )
    refused_key = http.post(
        "/v1/customers",
        json={"email": f"k-{tag}@example.com"},
        headers={"Idempotency-Key": printed(CARDS[0], 2)},
    )
    assert _refused(refused_key, "Idempotency-Key", printed(CARDS[0], 2)) is None
    planted.append(printed(CARDS[0], 2))

    # Straight to the services over gRPC: INVALID_ARGUMENT with a field violation, no echo.
    for style in range(3):
        for call, (code, reason, violations, echoed) in _grpc_refusals(
            platform, printed(CARDS[style + 4], style)
        ).items():
            assert code == grpc.StatusCode.INVALID_ARGUMENT, call
            assert reason == "card_number_not_allowed", call
            assert violations and not echoed, (call, violations)
        planted.append(printed(CARDS[style + 4], style))
    # NUL too, which PostgreSQL cannot store: refused by the service, not a 500.
    address = f"127.0.0.1:{platform.platform.ports.services['customer']}"
    with grpc.insecure_channel(address) as channel, pytest.raises(grpc.RpcError) as err:
        customer_pb2_grpc.CustomerServiceStub(channel).CreateCustomer(
            customer_pb2.CreateCustomerRequest(
                request_id="g-nul", email="nul@example.com", family_name="a\x00b"
            ),
            metadata=(("x-merchant-id", "mer_direct_grpc"),),
            timeout=10,
        )
    nul = read_error(err.value)  # type: ignore[arg-type]
    assert nul.status == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in nul.violations] == ["family_name"]

    # Now look everywhere. The controls' events must have reached their streams first.
    deadline = time.monotonic() + 30
    while True:
        streams = stream_dumps(platform)
        if NEAR_MISS in streams.get("POS_INVENTORY", "") and NEAR_MISS in streams.get(
            "POS_CUSTOMER", ""
        ):
            break
        assert time.monotonic() < deadline, "the controls' events never reached NATS"
        time.sleep(0.2)
    databases = database_dumps(platform)
    logs = log_files(platform)
    assert NEAR_MISS in databases["inventory"] and NEAR_MISS in databases["customer"]
    assert NEAR_MISS in databases["gateway"]  # the control's stored answer
    assert {"gateway.log", "inventory.log", "order.log", "postgres.log"} <= logs.keys()

    places = {
        **{f"database {k}": v for k, v in databases.items()},
        **{f"log {k}": v for k, v in logs.items()},
        **{f"stream {k}": v for k, v in streams.items()},
    }
    digits = {re.sub(r"\D", "", v) for v in planted}
    found = [
        f"{needle!r} in {place}"
        for needle in sorted({*planted, *digits})
        for place, text in places.items()
        if needle in text
    ]
    assert found == []
    # A refused request keeps nothing at the gateway either, not even its Idempotency-Key.
    assert [k for k in keys if k in databases["gateway"]] == []


# Phone numbers a customer is stored with: E.164, separators gone. Each passes the rule for free
# text (its groups are not a card's), and each is stored as a card number (the test numbers
# 378282246310005, 4222222222222 and 30569309025904).
CARD_PHONES = [
    "+37 8282 2463 10005",
    "+378.282.246.310.005",
    "+378 (282) 246-310005",
    "+42 2222 2222 222",
    "+30 5693 0902 5904",
]


def test_a_phone_number_stored_as_a_card_number_is_refused_on_every_customer_route(
    platform: Running,
) -> None:
    http = platform.http
    tag = uuid.uuid4().hex[:8]
    made = http.post("/v1/customers", json={"given_name": "P", "external_id": f"ph-{tag}"})
    assert made.status_code == 201, made.text
    customer = made.json()["id"]
    failures = []
    for phone in CARD_PHONES:
        calls = [
            ("phone", http.post("/v1/customers", json={"given_name": "P", "phone": phone})),
            ("phone", http.patch(f"/v1/customers/{customer}", json={"phone": phone})),
            ("phone", http.post(
                "/v1/customers/upsert", json={"external_id": f"up-{tag}", "phone": phone})),
            ("customers[1].phone", http.post("/v1/customers/batch", json={"customers": [
                {"external_id": f"b0-{tag}"}, {"external_id": f"b1-{tag}", "phone": phone}]})),
            ("phone", http.get("/v1/customers/search", params={"phone": phone})),
        ]  # fmt: skip
        for field, answer in calls:
            why = _refused(answer, field, phone)
            if why is None and re.sub(r"\D", "", phone) in answer.text:
                why = "the answer repeats the number"
            if why:
                failures.append(f"{answer.request.method} {answer.request.url} {phone!r}: {why}")
    assert failures == []
    assert http.get(f"/v1/customers/{customer}").json()["phone"] == ""
    assert (
        http.get("/v1/customers/search", params={"external_id": f"up-{tag}"}).json()["data"] == []
    )
    # An ordinary number is stored as ever.
    kept = http.post("/v1/customers", json={"given_name": "P", "phone": "+44 20 7946 0958"})
    assert (kept.status_code, kept.json()["phone"]) == (201, "+442079460958"), kept.text


def _wide(digits: str, zero: int) -> str:
    """`digits` in another script, whose zero is the code point `zero`."""
    return digits.translate({48 + d: zero + d for d in range(10)})


# A card number as people write it, beyond single spaces and dashes: other separators, one or
# two between groups, Unicode spaces and dashes, other digits (fullwidth, Arabic-Indic).
WRITTEN = [
    "4111.1111.1111.1111",
    "4111_1111_1111_1111",
    "4111/1111/1111/1111",
    "4111  1111\t1111  1111",
    "4111\u00a01111\u00a01111\u00a01111",
    "4111\u20131111\u20141111\u20131111",
    _wide("4111111111111111", 0xFF10),  # fullwidth
    _wide("4111 1111 1111 1111", 0x0660),  # Arabic-Indic
]


def test_card_numbers_in_their_written_forms_are_refused_on_every_route_family(
    platform: Running,
) -> None:
    http = platform.http
    tag = uuid.uuid4().hex[:8]
    usd = {"amount": 100, "currency": "USD"}
    failures = []

    def check(field: str, answer: httpx.Response, value: str) -> None:
        why = _refused(answer, field, value)
        if why is None and "4111" in answer.text:
            why = "the answer repeats the number"
        if why:
            failures.append(f"{answer.request.method} {answer.request.url.path} {value!r}: {why}")

    for n, value in enumerate(WRITTEN):
        check("notes", http.post("/v1/customers", json={"given_name": "W", "notes": value}), value)
        product = {"sku": f"W-{tag}-{n}", "name": f"Tee {value}", "price": usd}
        check("name", http.post("/v1/products", json=product), value)
        check("q", http.get("/v1/customers/search", params={"q": value}), value)
        if value.isascii() and "\t" not in value:  # what a header can carry
            keyed = http.post("/v1/customers", json={"given_name": "W"},
                              headers={"Idempotency-Key": f"key {value}"})  # fmt: skip
            check("Idempotency-Key", keyed, value)
    # A webhook's URL, its digits percent-escaped.
    for url in ("https://hooks.example.com/%34111111111111111",
                "https://hooks.example.com/in?c=4111%201111%201111%201111"):  # fmt: skip
        hook = {"url": url, "event_types": ["order.*"]}
        check("url", http.post("/v1/webhook-subscriptions", json=hook), url)
    assert failures == [], "\n".join(failures)

    # Straight to a service over gRPC: the same rule.
    address = f"127.0.0.1:{platform.platform.ports.services['customer']}"
    with grpc.insecure_channel(address) as channel, pytest.raises(grpc.RpcError) as err:
        customer_pb2_grpc.CustomerServiceStub(channel).CreateCustomer(
            customer_pb2.CreateCustomerRequest(
                request_id=f"w-{tag}", profile=customer_pb2.ProfileFields(notes=WRITTEN[5])
            ),
            metadata=(("x-merchant-id", "mer_direct_grpc"),),
            timeout=10,
        )
    refused = read_error(err.value)  # type: ignore[arg-type]
    assert (refused.status, refused.reason) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "card_number_not_allowed",
    )
    assert [v.field for v in refused.violations] == ["profile.notes"]

    # What looks a little like them is stored as sent.
    fine = http.post("/v1/customers", json={"given_name": "W", "notes": (
        "ref pos_20261202_000123, 2026/12/02 at 10.20, v2026.12.02.1033, 192.168.100.200, "
        "+33 6.12.34.56.78, tracking 1Z999AA10123456784, 4111 - 1111 - 1111 - 1111")})  # fmt: skip
    assert fine.status_code == 201, fine.text
