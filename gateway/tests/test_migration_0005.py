"""Migration 0005 removes the secrets that answers stored before it still hold."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

import pos_gateway
from pos_devstack.testing import Infra
from pos_gateway import keys
from pos_kit import migrate as kit_migrate

MIGRATIONS = Path(pos_gateway.__file__).parent / "migrations"

API_KEY = keys.generate("live")
CLIENT_SECRET = "pos_cs_Old-Style-Secret_0123456789abcdefghijklmno"
KEY_ANSWER = {
    "id": "key_01old",
    "name": "till 3",
    "key_hint": keys.hint(API_KEY),
    "mode": "live",
    "scopes": ["catalog:read"],
    "created_at": "2026-11-30T10:00:00.000Z",
    "last_used_at": None,
    "revoked_at": None,
    "key": API_KEY,
}
CLIENT_ANSWER = {"id": "cli_01old", "client_id": "cli_01old", "name": "sync",
                 "scopes": ["orders:read"], "client_secret": CLIENT_SECRET}  # fmt: skip
# Answers of other routes: a product whose field happens to be called `key`, a problem, and a
# body that is not JSON. None of them may change.
OTHER_KEY = json.dumps({"id": "prd_1", "key": "colour", "name": "Tee"}).encode()
PROBLEM = json.dumps({"code": "invalid_request", "detail": 'field "key" is wrong'}).encode()
NOT_JSON = b'"key" \xff not json'


def _plant(url: str, rows: dict[str, bytes]) -> None:
    with psycopg.connect(url) as conn:
        for key, body in rows.items():
            conn.execute(
                "INSERT INTO idempotency_keys (merchant_id, key, fingerprint, state, locked_until,"
                " status_code, content_type, body) VALUES ('mer_1', %s, %s, 'done', now(), 201,"
                " 'application/json', %s)",
                (key, b"print-" + key.encode(), body),
            )


def _bodies(url: str) -> dict[str, bytes]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT key, body FROM idempotency_keys").fetchall()
    return {key: bytes(body) for key, body in rows}


def test_old_answers_lose_their_secrets_and_nothing_else(infra: Infra) -> None:
    url = infra.create_database("gateway")
    kit_migrate.upgrade(MIGRATIONS, url, "0004")
    planted = {
        "api-key": json.dumps(KEY_ANSWER).encode(),
        "client": json.dumps(CLIENT_ANSWER).encode(),
        "product": OTHER_KEY,
        "problem": PROBLEM,
        "binary": NOT_JSON,
    }
    _plant(url, planted)

    kit_migrate.upgrade(MIGRATIONS, url)

    after = _bodies(url)
    everything = b"\n".join(after.values())
    assert API_KEY.encode() not in everything
    assert CLIENT_SECRET.encode() not in everything
    key_answer = json.loads(after["api-key"])
    assert key_answer == {**KEY_ANSWER, "key": None, "secret_redacted": True}
    client_answer = json.loads(after["client"])
    assert client_answer == {**CLIENT_ANSWER, "client_secret": None, "secret_redacted": True}
    for untouched in ("product", "problem", "binary"):
        assert after[untouched] == planted[untouched]


def test_the_database_then_refuses_an_answer_holding_a_secret(infra: Infra) -> None:
    url = infra.service_database("gateway")
    # As the gateway (any version) writes JSON: without spaces.
    compact = json.dumps(KEY_ANSWER, separators=(",", ":")).encode()
    for body in (compact, json.dumps(CLIENT_ANSWER, separators=(",", ":")).encode()):
        with pytest.raises(psycopg.errors.CheckViolation):
            _plant(url, {"refused": body})
    # A shown-once secret not redacted, and an answer that is not a JSON object: its bytes.
    unredacted = {"id": "gc_1", "code": "GIFT1234", "secret_redacted": False}
    for body in (json.dumps(unredacted).encode(), b'["x",{"key":"pos_test_abc"}] \xff'):
        with pytest.raises(psycopg.errors.CheckViolation):
            _plant(url, {"refused": body})
    redacted = {**KEY_ANSWER, "key": None, "secret_redacted": True}
    # Fields of the answer itself are read, not any bytes: a merchant's metadata naming them
    # is data (since 0022).
    metadata = {"id": "ord_1", "metadata": {"client_secret": "x", "key": "pos_live_y",
                                            "secret_redacted": False}}  # fmt: skip
    _plant(url, {
        "kept": json.dumps(redacted, separators=(",", ":")).encode(),
        "metadata": json.dumps(metadata, separators=(",", ":")).encode(),
        "binary": NOT_JSON,
    })  # fmt: skip
    assert set(_bodies(url)) == {"kept", "metadata", "binary"}


def test_every_field_a_route_shows_a_secret_in_once_is_guarded(infra: Infra) -> None:
    """The guard (migration 0022) names the shown-once fields: each field a route of the
    published document declares (`x-shown-once`) is refused holding something in an answer
    not redacted, and kept null, as a sale that sold no gift card answers."""
    url = infra.service_database("gateway")
    document = json.loads((Path(pos_gateway.__file__).parents[2] / "openapi.json").read_text())
    declared = {
        field
        for operations in document["paths"].values()
        for operation in operations.values()
        if isinstance(operation, dict)
        for field in operation.get("x-shown-once", ())
    }
    assert {"gift_cards", "code", "client_secret"} <= declared
    for field in sorted(declared):
        for shown in ("secret-value", ["secret-value"], {"code": "secret-value"}):
            body = json.dumps({"id": "x_1", field: shown, "secret_redacted": False})
            with pytest.raises(psycopg.errors.CheckViolation):
                _plant(url, {f"shown-{field}": body.encode()})
        empty = {"id": "x_1", field: None, "secret_redacted": False}
        _plant(url, {f"empty-{field}": json.dumps(empty).encode()})
    assert {k for k in _bodies(url) if k.startswith("empty-")} == {f"empty-{f}" for f in declared}
