"""The edge middleware on a stand-in route, against the gateway's real database."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest_asyncio
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from pos_devstack.testing import Infra
from pos_gateway.admin import create_merchant, issue_key
from pos_gateway.auth import KeyStore
from pos_gateway.edge import EdgeMiddleware
from pos_gateway.idempotency import ERASED_ANSWER, IdempotencyStore, Stored, fingerprint
from pos_gateway.ratelimit import TokenBuckets
from pos_kit.db import make_engine

SECRET = "edge-test-secret-0123456789abcdefghij"


class Harness:
    def __init__(self, client: httpx.AsyncClient, key: str, gate: asyncio.Event) -> None:
        self.client = client
        self.key = key
        self.gate = gate  # the stand-in route waits on it, to hold a request "in flight"
        self.calls = 0
        self.entered = asyncio.Event()  # set when a request reaches the stand-in route
        self.busy_key = ""  # a credential of its own (its own rate limit) for /v1/busy
        self.strict_key = ""  # and two for /v1/strict
        self.strict_key_2 = ""
        self.bad_key_key = ""  # a credential of its own for the malformed Idempotency-Keys
        self.chunked_key = ""  # and one for the bodies sent without a Content-Length
        self.limited_key = ""  # and one for /v1/limited
        self.slash_key = ""  # and one for the redirected request
        self.limited_calls = 0
        self.busy_calls = 0
        self.person_calls = 0
        self.person_keys: list[str] = []  # three credentials for /v1/person
        self.merchant = ""
        self.store: IdempotencyStore | None = None


@pytest_asyncio.fixture(loop_scope="session")
async def harness(infra: Infra) -> AsyncIterator[Harness]:
    engine = make_engine(infra.service_database("gateway"), pool_size=4)
    merchant = await create_merchant(engine, "Edge")
    key = (await issue_key(engine, SECRET, merchant, "edge")).key
    gate = asyncio.Event()
    gate.set()
    state: dict[str, Harness] = {}

    async def thing(request: Request) -> JSONResponse:
        state["h"].calls += 1
        state["h"].entered.set()
        await gate.wait()
        return JSONResponse({"n": state["h"].calls}, status_code=201)

    async def strict(request: Request) -> JSONResponse:
        # Refuses a negative quantity as bad input; anything else is made.
        asked = await request.json()
        if asked.get("quantity", 0) < 0:
            body = {"code": "invalid_argument", "errors": [{"field": "quantity"}]}
            return JSONResponse(body, status_code=400)
        if asked.get("sku") == "NOPE":
            return JSONResponse({"code": "not_found"}, status_code=404)
        return JSONResponse({"made": True}, status_code=201)

    async def busy(request: Request) -> JSONResponse:
        # A service still working on the same request_id, the first time only.
        state["h"].busy_calls += 1
        if state["h"].busy_calls == 1:
            return JSONResponse({"code": "request_in_progress"}, status_code=409)
        return JSONResponse({"n": state["h"].busy_calls}, status_code=201)

    async def person(request: Request) -> JSONResponse:
        # Makes a "customer" holding personal data, a new one each time it runs.
        state["h"].person_calls += 1
        asked = await request.json()
        made = {"id": f"cus_{state['h'].person_calls:026d}", "email": asked["email"]}
        return JSONResponse(made, status_code=201)

    async def limited(request: Request) -> JSONResponse:
        # A route's own budget (a gift card code's look-ups) spent, the first time only.
        state["h"].limited_calls += 1
        if state["h"].limited_calls == 1:
            body = {"code": "code_lookups_limited", "status": 429}
            return JSONResponse(body, status_code=429, headers={"Retry-After": "1"})
        return JSONResponse({"n": state["h"].limited_calls}, status_code=201)

    app = Starlette(
        routes=[
            Route("/v1/limited", limited, methods=["POST"]),
            Route("/v1/thing", thing, methods=["GET", "POST"]),
            Route("/v1/person", person, methods=["POST"]),
            Route("/v1/busy", busy, methods=["POST"]),
            Route("/v1/strict", strict, methods=["POST"]),
        ]
    )
    app.state.keys = KeyStore(engine, SECRET)
    app.state.idempotency = IdempotencyStore(engine)
    app.add_middleware(EdgeMiddleware, limits=TokenBuckets(1.0, 3), max_body=1000)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://edge") as client:
        state["h"] = Harness(client, key, gate)
        state["h"].merchant = merchant
        state["h"].store = app.state.idempotency
        state["h"].person_keys = [
            (await issue_key(engine, SECRET, merchant, f"edge-person{i}")).key for i in range(3)
        ]
        state["h"].busy_key = (await issue_key(engine, SECRET, merchant, "edge-busy")).key
        state["h"].strict_key = (await issue_key(engine, SECRET, merchant, "edge-strict")).key
        state["h"].strict_key_2 = (await issue_key(engine, SECRET, merchant, "edge-strict2")).key
        state["h"].bad_key_key = (await issue_key(engine, SECRET, merchant, "edge-badkey")).key
        state["h"].chunked_key = (await issue_key(engine, SECRET, merchant, "edge-chunked")).key
        state["h"].limited_key = (await issue_key(engine, SECRET, merchant, "edge-limited")).key
        state["h"].slash_key = (await issue_key(engine, SECRET, merchant, "edge-slash")).key
        yield state["h"]
    await engine.dispose()


def _auth(h: Harness, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {h.key}", **extra}


async def test_a_concurrent_retry_is_409_and_a_later_one_replays(harness: Harness) -> None:
    h = harness
    h.gate.clear()
    first = asyncio.create_task(
        h.client.post("/v1/thing", json={"a": 1}, headers=_auth(h, **{"Idempotency-Key": "k1"}))
    )
    await asyncio.wait_for(h.entered.wait(), 10)  # the first request now holds the key
    racing = await h.client.post(
        "/v1/thing", json={"a": 1}, headers=_auth(h, **{"Idempotency-Key": "k1"})
    )
    assert racing.status_code == 409
    assert racing.json()["code"] == "idempotency_request_in_progress"
    h.gate.set()
    done = await first
    assert done.status_code == 201
    replay = await h.client.post(
        "/v1/thing", json={"a": 1}, headers=_auth(h, **{"Idempotency-Key": "k1"})
    )
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.content == done.content
    assert h.calls == 1


async def test_past_the_burst_a_credential_gets_429_with_retry_after(harness: Harness) -> None:
    h = harness
    answers = [await h.client.get("/v1/thing", headers=_auth(h)) for _ in range(6)]
    limited = [a for a in answers if a.status_code == 429]
    assert limited, "the bucket of 3 should have run out"
    assert limited[0].json()["code"] == "rate_limited"
    assert int(limited[0].headers["retry-after"]) >= 1
    assert all("ratelimit" in a.headers for a in answers)


async def test_oversized_bodies_are_413_before_anything_else(harness: Harness) -> None:
    answer = await harness.client.post("/v1/thing", content=b"x" * 2000)
    assert answer.status_code == 413
    assert answer.headers["content-type"] == "application/problem+json"


async def _chunks(body: bytes, size: int = 100) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


async def test_a_body_sent_in_chunks_is_bounded_as_one_with_its_length(harness: Harness) -> None:
    """A body sent without a Content-Length (chunked) is held to the same bound: past it a
    413 before anything else, where it was read whole, however large, and handed on. One
    within it reaches the route whole."""
    h = harness
    headers = {"Authorization": f"Bearer {h.chunked_key}", "Content-Type": "application/json"}
    for path in ("/v1/strict", "/v1/thing"):
        for key in ({}, {"Idempotency-Key": f"chunked-{path}"}):
            big = json.dumps({"quantity": 1, "note": "x" * 2000}).encode()
            answer = await h.client.post(path, content=_chunks(big), headers={**headers, **key})
            assert answer.status_code == 413, (path, key, answer.text)
            assert answer.json()["code"] == "body_too_large"
            assert answer.headers["content-type"] == "application/problem+json"
    small = json.dumps({"quantity": 1, "note": "x" * 500}).encode()
    answer = await h.client.post("/v1/strict", content=_chunks(small), headers=headers)
    assert answer.status_code == 201 and answer.json() == {"made": True}, answer.text
    answer = await h.client.post(
        "/v1/strict", content=_chunks(small), headers={**headers, "Idempotency-Key": "chunked-ok"}
    )
    assert answer.status_code == 201 and answer.json() == {"made": True}, answer.text


async def test_a_request_refused_for_its_rate_is_run_again_under_the_same_key(
    harness: Harness,
) -> None:
    """A 429 (a route's own budget spent, or a service's RESOURCE_EXHAUSTED) is "retry
    later": nothing ran, so it is not kept under the Idempotency-Key. Kept, the retry the
    answer asks for was handed the 429 again for a day (a sale paid with a gift card never
    went through under its key)."""
    h = harness
    headers = {"Authorization": f"Bearer {h.limited_key}", "Idempotency-Key": "limited-1"}
    first = await h.client.post("/v1/limited", json={"code": "X"}, headers=headers)
    assert first.status_code == 429
    retry = await h.client.post("/v1/limited", json={"code": "X"}, headers=headers)
    assert retry.status_code == 201, retry.text
    assert "idempotent-replayed" not in retry.headers and h.limited_calls == 2
    replay = await h.client.post("/v1/limited", json={"code": "X"}, headers=headers)
    assert replay.headers["idempotent-replayed"] == "true" and replay.content == retry.content
    assert h.limited_calls == 2


async def test_a_request_id_is_echoed_only_when_short_and_visible(harness: Harness) -> None:
    """The id goes back on the answer and into logs: a client's own is kept when it is 1 to
    128 visible ASCII characters (as the document says), anything else is replaced."""
    sent = {"trace-me-123": True, "x" * 128: True, "x" * 129: False, "a b": False}
    for given, kept in sent.items():
        answer = await harness.client.get("/healthz", headers={"X-Request-Id": given})
        assert (answer.headers["x-request-id"] == given) is kept, given
        assert 1 <= len(answer.headers["x-request-id"]) <= 128


async def test_a_services_request_in_progress_is_not_kept_for_the_key(harness: Harness) -> None:
    headers = {"Authorization": f"Bearer {harness.busy_key}", "Idempotency-Key": "busy-1"}
    busy = await harness.client.post("/v1/busy", json={"a": 1}, headers=headers)
    assert busy.status_code == 409

    retried = await harness.client.post("/v1/busy", json={"a": 1}, headers=headers)

    # Run again, not a replay of "still in progress" after the work is done.
    assert retried.status_code == 201 and retried.json() == {"n": 2}
    assert "Idempotent-Replayed" not in retried.headers


async def test_a_request_refused_as_it_came_keeps_nothing_under_its_key(harness: Harness) -> None:
    """A 400 changed nothing: the corrected body may be sent under the same key (it is not a
    422 `idempotency_key_reused`), and it is the corrected answer that is then replayed."""
    h = harness
    headers = {"Authorization": f"Bearer {h.strict_key}", "Idempotency-Key": "fix-me"}
    refused = await h.client.post("/v1/strict", json={"quantity": -1}, headers=headers)
    assert refused.status_code == 400
    fixed = await h.client.post("/v1/strict", json={"quantity": 1}, headers=headers)
    assert fixed.status_code == 201 and fixed.json() == {"made": True}
    replay = await h.client.post("/v1/strict", json={"quantity": 1}, headers=headers)
    assert replay.headers["idempotent-replayed"] == "true" and replay.content == fixed.content


async def test_a_request_naming_what_does_not_exist_keeps_nothing_either(harness: Harness) -> None:
    h = harness
    headers = {"Authorization": f"Bearer {h.strict_key_2}", "Idempotency-Key": "fix-sku"}
    unknown = await h.client.post("/v1/strict", json={"sku": "NOPE"}, headers=headers)
    assert unknown.status_code == 404
    fixed = await h.client.post("/v1/strict", json={"sku": "TEE"}, headers=headers)
    assert fixed.status_code == 201


async def test_a_redirect_keeps_nothing_under_its_key(harness: Harness) -> None:
    """A redirect (the stand-in app's, from `/v1/thing/` to `/v1/thing`) is no answer to the
    request: kept, the request it points to was refused as the key reused with another
    request (422), and a retry was sent the redirect again for as long as the key lived."""
    h = harness
    headers = {"Authorization": f"Bearer {h.slash_key}", "Idempotency-Key": "slashed"}
    redirected = await h.client.post("/v1/thing/", json={"a": 1}, headers=headers)
    assert redirected.status_code == 307
    assert redirected.headers["location"].endswith("/v1/thing")
    followed = await h.client.post("/v1/thing", json={"a": 1}, headers=headers)
    assert followed.status_code == 201, followed.text
    replay = await h.client.post("/v1/thing", json={"a": 1}, headers=headers)
    assert replay.headers["idempotent-replayed"] == "true" and replay.content == followed.content


async def test_an_answer_holding_an_erased_customer_is_withdrawn_and_its_key_stays_spent(
    harness: Harness,
) -> None:
    """What erasure does to the store (routes.customers.erase_customer): every answer that
    holds the customer becomes the 410 `customer_erased`, replayed as any answer is; the
    request never runs again under its key, and a new key is a new request."""
    h = harness
    assert h.store is not None
    credentials = iter(h.person_keys * 2)  # two requests each, within the burst

    async def post(email: str, key: str) -> httpx.Response:
        headers = {"Authorization": f"Bearer {next(credentials)}", "Idempotency-Key": key}
        return await h.client.post("/v1/person", json={"email": email}, headers=headers)

    first = await post("gone.edge@example.com", "erased-1")
    assert first.status_code == 201
    gone = first.json()["id"]
    other = await post("stays@example.com", "erased-2")
    withdrawn = await h.store.withdraw_answers_naming(h.merchant, gone, ERASED_ANSWER)
    assert withdrawn == 1
    calls = h.person_calls

    again = await post("gone.edge@example.com", "erased-1")
    assert (again.status_code, again.headers["idempotent-replayed"]) == (410, "true")
    assert again.headers["content-type"] == "application/problem+json"
    assert again.json()["code"] == "customer_erased"
    assert "gone.edge" not in again.text and gone not in again.text
    # Another body under the spent key is still a 422; nothing runs either way.
    assert (await post("x@example.com", "erased-1")).status_code == 422
    assert h.person_calls == calls
    # An answer that does not hold the customer is kept as it was.
    kept = await post("stays@example.com", "erased-2")
    assert kept.content == other.content and kept.headers["idempotent-replayed"] == "true"
    # A new key is a new request.
    fresh = await post("gone.edge@example.com", "erased-3")
    assert fresh.status_code == 201 and h.person_calls == calls + 1


async def test_an_answer_stored_after_its_customers_erasure_is_kept_as_the_410(
    harness: Harness,
) -> None:
    """An answer naming a customer erased a moment before it is stored (an order the order
    service accepted before it heard of the erasure): the erasure's withdrawal has run, so the
    store keeps it as the 410 itself; an answer naming no erased customer is kept as it was."""
    h = harness
    assert h.store is not None
    credentials = iter(h.person_keys * 2)

    async def post(email: str, key: str) -> httpx.Response:
        headers = {"Authorization": f"Bearer {next(credentials)}", "Idempotency-Key": key}
        return await h.client.post("/v1/person", json={"email": email}, headers=headers)

    coming = f"cus_{h.person_calls + 1:026d}"  # the id the next person is made with
    await h.store.record_erasures(h.merchant, [coming])
    first = await post("late.edge@example.com", "late-1")
    assert first.status_code == 201 and first.json()["id"] == coming
    other = await post("kept.edge@example.com", "late-2")
    calls = h.person_calls

    again = await post("late.edge@example.com", "late-1")
    assert (again.status_code, again.headers["idempotent-replayed"]) == (410, "true")
    assert again.json()["code"] == "customer_erased" and "late.edge" not in again.text
    assert "etag" not in again.headers
    kept = await post("kept.edge@example.com", "late-2")
    assert kept.content == other.content and kept.headers["idempotent-replayed"] == "true"
    assert h.person_calls == calls
    # Another merchant's erasure of the same id changes nothing here.
    await h.store.record_erasures("mer_someone_else", [f"cus_{h.person_calls + 1:026d}"])
    mine = await post("mine.edge@example.com", "late-3")
    assert (await post("mine.edge@example.com", "late-3")).content == mine.content


async def test_the_same_body_sent_again_in_other_json_form_is_the_same_request(
    harness: Harness,
) -> None:
    """A client that serialises its request again when it retries (keys in another order,
    indentation) sends the same request: replayed, not a 422. Another value is still a 422,
    and a key claimed with the fingerprint of the body's bytes (before bodies were compared by
    their meaning) still matches the same bytes."""
    h = harness
    assert h.store is not None
    engine = h.store._engine
    one = (await issue_key(engine, SECRET, h.merchant, "edge-canon1")).key
    two = (await issue_key(engine, SECRET, h.merchant, "edge-canon2")).key

    async def post(credential: str, key: str, body: bytes) -> httpx.Response:
        headers = {"Authorization": f"Bearer {credential}", "Idempotency-Key": key,
                   "Content-Type": "application/json"}  # fmt: skip
        return await h.client.post("/v1/strict", content=body, headers=headers)

    first = await post(one, "canon-1", b'{"sku": "A", "quantity": 2, "note": "\\u00e9"}')
    assert first.status_code == 201, first.text
    again = await post(
        one, "canon-1", b'{\n  "note": "\xc3\xa9",\n  "quantity": 2,\n  "sku": "A"\n}'
    )
    assert (again.status_code, again.headers.get("idempotent-replayed")) == (201, "true")
    assert again.content == first.content
    other = await post(one, "canon-1", b'{"sku":"A","quantity":3,"note":"\xc3\xa9"}')
    assert (other.status_code, other.json()["code"]) == (422, "idempotency_key_reused")

    raw = b'{"quantity" : 5, "sku" : "B"}'
    claim = await h.store.claim(h.merchant, "canon-old", (fingerprint("POST", "/v1/strict", raw),))
    assert claim.proceed
    await h.store.complete(h.merchant, "canon-old", Stored(201, "application/json", b'{"old":1}'))
    replayed = await post(two, "canon-old", raw)
    assert (replayed.status_code, replayed.content) == (201, b'{"old":1}')
    assert replayed.headers["idempotent-replayed"] == "true"
    changed = await post(two, "canon-old", b'{"quantity": 6, "sku": "B"}')
    assert changed.status_code == 422


async def test_the_query_is_part_of_the_request_a_key_was_used_with(harness: Harness) -> None:
    """The same key, path and body with another query (`?consumer=B` after `?consumer=A`) is
    another request: a 422, where A's answer was replayed and B never ran. The query counts by
    its meaning (its parameters in another order, or percent-encoded otherwise, are the same
    request), and a request without one is fingerprinted as ever: a key claimed before the
    query counted still matches it."""
    h = harness
    assert h.store is not None
    engine = h.store._engine
    credentials = [
        (await issue_key(engine, SECRET, h.merchant, f"edge-query{i}")).key for i in range(3)
    ]
    sent = 0

    async def post(key: str, query: str) -> httpx.Response:
        nonlocal sent
        sent += 1  # each credential's budget is 3 a second: spread over three of them
        headers = {"Authorization": f"Bearer {credentials[sent % 3]}", "Idempotency-Key": key}
        return await h.client.post("/v1/thing" + query, json={"a": 1}, headers=headers)

    first = await post("query-1", "?consumer=A&limit=5")
    assert first.status_code == 201, first.text
    other = await post("query-1", "?consumer=B&limit=5")
    assert (other.status_code, other.json()["code"]) == (422, "idempotency_key_reused")
    same = await post("query-1", "?limit=5&consumer=%41")
    assert (same.status_code, same.headers.get("idempotent-replayed")) == (201, "true")
    assert same.content == first.content
    bare = await post("query-1", "")
    assert (bare.status_code, bare.json()["code"]) == (422, "idempotency_key_reused")

    claim = await h.store.claim(
        h.merchant, "query-old", (fingerprint("POST", "/v1/thing", b'{"a":1}'),)
    )
    assert claim.proceed
    await h.store.complete(h.merchant, "query-old", Stored(201, "application/json", b'{"old":1}'))
    replayed = await post("query-old", "")
    assert (replayed.status_code, replayed.content) == (201, b'{"old":1}')
    assert (await post("query-old", "?consumer=A")).status_code == 422


async def test_a_refused_requests_key_is_let_go_before_its_answer_leaves(
    harness: Harness,
) -> None:
    """A client correcting a 404 the moment it has it sends the corrected body under the same
    key: the key must be free by then (it was let go after the answer had left: the retry
    got a 422 for another body, or a 500 when it was let go between the claim's statements)."""
    h = harness
    key = "fix-sku-at-once"
    inner = h.client._transport.app  # type: ignore[attr-defined]
    held_as_it_left: list[bool] = []

    async def watching(scope, receive, send):  # type: ignore[no-untyped-def]
        async def watch(message):  # type: ignore[no-untyped-def]
            if message["type"] == "http.response.body" and not message.get("more_body"):
                async with h.store._engine.connect() as conn:  # type: ignore[union-attr]
                    found = await conn.execute(
                        text("SELECT count(*) FROM idempotency_keys WHERE key = :key"),
                        {"key": key},
                    )
                    held_as_it_left.append(bool(found.scalar_one()))
            await send(message)

        await inner(scope, receive, watch)

    headers = {"Authorization": f"Bearer {h.strict_key_2}", "Idempotency-Key": key}
    transport = httpx.ASGITransport(app=watching)
    async with httpx.AsyncClient(transport=transport, base_url="http://edge") as client:
        unknown = await client.post("/v1/strict", json={"sku": "NOPE"}, headers=headers)
        assert unknown.status_code == 404
        assert held_as_it_left == [False]
        fixed = await client.post("/v1/strict", json={"sku": "TEE"}, headers=headers)
    assert fixed.status_code == 201 and held_as_it_left == [False, True]


async def test_a_malformed_idempotency_key_is_a_field_error_naming_the_header(
    harness: Harness,
) -> None:
    """An empty, too long or unprintable key is refused as a bad field is: `errors[]` names
    the header, as a bad If-Match or a card number in the key does, and the route never runs."""
    h = harness
    calls = h.calls
    for key in ("", "k" * 256):
        headers = {"Authorization": f"Bearer {h.bad_key_key}", "Idempotency-Key": key}
        answer = await h.client.post("/v1/thing", json={"a": 1}, headers=headers)
        assert answer.status_code == 400, answer.text
        problem = answer.json()
        assert problem["code"] == "invalid_idempotency_key"
        assert [e["field"] for e in problem["errors"]] == ["Idempotency-Key"], problem
    assert h.calls == calls
