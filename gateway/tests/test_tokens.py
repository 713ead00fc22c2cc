"""OAuth access tokens: JWTs signed by the first key of the set, checked against all of them."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
import pytest
from pydantic import ValidationError

from pos_gateway import tokens
from pos_gateway.settings import GatewaySettings

OLD = "old-token-signing-key-0123456789abcdef"
NEW = "new-token-signing-key-0123456789abcdef"
OTHER = "someone-elses-signing-key-0123456789abc"


def _claims(seconds: int = tokens.TOKEN_SECONDS, now: int | None = None) -> tokens.Claims:
    start = int(time.time()) if now is None else now
    return tokens.Claims("mer_1", "cli_1", ("orders:read", "catalog:read"), start + seconds)


def _forge(header: dict[str, Any], payload: dict[str, Any], key: str = NEW) -> str:
    """A token with exactly this header and payload, HMAC-signed with `key` (or unsigned for
    alg none), made by hand so nothing in PyJWT second-guesses the header."""

    def b64(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    head = f"{b64(header)}.{b64(payload)}"
    if str(header.get("alg")).lower() == "none":
        return head + "."
    algorithm = jwt.get_algorithm_by_name(str(header["alg"]))
    signature = algorithm.sign(head.encode(), algorithm.prepare_key(key))
    return head + "." + base64.urlsafe_b64encode(signature).decode().rstrip("=")


def _payload(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    payload = {
        "iss": tokens.ISSUER,
        "aud": tokens.AUDIENCE,
        "sub": "cli_1",
        "client_id": "cli_1",
        "merchant_id": "mer_1",
        "scope": "orders:read",
        "iat": now,
        "exp": now + 600,
    }
    payload.update(changes)
    return {k: v for k, v in payload.items() if v is not None}


def _header(**changes: Any) -> dict[str, Any]:
    return {"alg": "HS256", "typ": "at+jwt", "kid": tokens.key_id(NEW), **changes}


def test_a_token_carries_merchant_client_and_scopes_as_a_standard_jwt() -> None:
    keyset = tokens.KeySet([NEW])
    token = keyset.issue(_claims())
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "HS256", "typ": "at+jwt", "kid": tokens.key_id(NEW)}
    body = jwt.decode(token, NEW, algorithms=["HS256"], audience=tokens.AUDIENCE)
    assert body["iss"] == tokens.ISSUER and body["sub"] == "cli_1"
    assert body["exp"] - body["iat"] == tokens.TOKEN_SECONDS
    claims = keyset.verify(token)
    assert claims is not None
    assert claims.merchant_id == "mer_1" and claims.client_id == "cli_1"
    assert claims.scopes == ("orders:read", "catalog:read")


def test_the_previous_key_still_verifies_during_the_overlap_and_not_after() -> None:
    before = tokens.KeySet([OLD]).issue(_claims())
    during = tokens.KeySet([NEW, OLD])
    assert during.verify(before) is not None
    fresh = during.issue(_claims())
    assert jwt.get_unverified_header(fresh)["kid"] == tokens.key_id(NEW)
    # Step 1 of a rotation: the replicas that do not sign with the new key yet accept it.
    assert tokens.KeySet([OLD, NEW]).verify(fresh) is not None
    after = tokens.KeySet([NEW])
    assert after.verify(before) is None  # the rotated-out key's tokens are refused
    assert after.verify(fresh) is not None


def test_an_unknown_kid_is_refused_even_with_a_good_signature_under_another_key() -> None:
    theirs = tokens.KeySet([OTHER]).issue(_claims())
    assert tokens.KeySet([NEW]).verify(theirs) is None
    # Claiming one of our kids does not help a token signed with another key.
    assert tokens.KeySet([NEW]).verify(_forge(_header(), _payload(), key=OTHER)) is None
    assert tokens.KeySet([NEW]).verify(_forge(_header(kid=None), _payload())) is None


def test_a_tampered_token_is_refused() -> None:
    keyset = tokens.KeySet([NEW])
    token = keyset.issue(_claims())
    head, payload, signature = token.split(".")
    widened = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    widened["scope"] = "payments:write orders:write"
    forged_payload = base64.urlsafe_b64encode(json.dumps(widened).encode()).decode().rstrip("=")
    assert keyset.verify(f"{head}.{forged_payload}.{signature}") is None
    flipped = signature[:-2] + ("AA" if not signature.endswith("AA") else "BB")
    assert keyset.verify(f"{head}.{payload}.{flipped}") is None
    for junk in ("", "not-a-token", "a.b.c", token + ".", "pos_at_e30.AAAA"):
        assert keyset.verify(junk) is None


def test_an_expired_token_is_refused() -> None:
    keyset = tokens.KeySet([NEW])
    an_hour_ago = int(time.time()) - 3600
    assert keyset.verify(keyset.issue(_claims(now=an_hour_ago), issued_at=an_hour_ago)) is None


@pytest.mark.parametrize("alg", ["none", "None", "HS512", "HS384"])
def test_only_the_configured_algorithm_is_accepted(alg: str) -> None:
    token = _forge(_header(alg=alg), _payload())
    assert tokens.KeySet([NEW]).verify(token) is None
    # The same claims with the configured algorithm pass: only `alg` made the difference.
    assert tokens.KeySet([NEW]).verify(_forge(_header(), _payload())) is not None


@pytest.mark.parametrize(
    ("header", "payload"),
    [
        ({}, {"iss": "someone-else"}),
        ({}, {"aud": "another-api"}),
        ({}, {"aud": ["omnitill-api", "another-api"]}),
        ({}, {"exp": None}),
        ({}, {"iat": None}),
        ({}, {"iss": None}),
        ({}, {"aud": None}),
        ({}, {"sub": None}),
        ({}, {"merchant_id": None}),
        ({}, {"iat": int(time.time()) + 3600, "exp": int(time.time()) + 3900}),  # issued later
        ({}, {"exp": int(time.time()) + 86_400}),  # lives longer than we ever sign
        ({"typ": "JWT"}, {}),  # an ID token or any other JWT is not an access token
    ],
)
def test_claims_are_checked(header: dict[str, Any], payload: dict[str, Any]) -> None:
    assert tokens.KeySet([NEW]).verify(_forge(_header(**header), _payload(**payload))) is None


def test_key_sets_refuse_short_or_repeated_keys() -> None:
    with pytest.raises(ValueError, match="at least 32"):
        tokens.KeySet(["short"])
    with pytest.raises(ValueError, match="differ"):
        tokens.KeySet([NEW, NEW])
    with pytest.raises(ValueError, match="at least one"):
        tokens.KeySet([])


def _settings(**env: str) -> GatewaySettings:
    return GatewaySettings(
        database_url="postgresql://gw:a-real-password-here@127.0.0.1/gw",
        gateway_secret_key="g" * 40,
        inventory_addr="i:1",
        promotion_addr="p:1",
        customer_addr="c:1",
        payment_addr="pa:1",
        order_addr="o:1",
        dispatcher_addr="d:1",
        **env,  # type: ignore[arg-type]
    )


def test_settings_read_a_comma_separated_key_list_newest_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TOKEN_SIGNING_KEYS", f" {NEW} , {OLD} ")
    assert _settings().token_signing_keys == [NEW, OLD]
    monkeypatch.setenv("TOKEN_SIGNING_KEYS", f"{NEW},tooshort")
    with pytest.raises(ValidationError) as refused:
        _settings()
    assert NEW not in str(refused.value)  # a settings error never prints a key
    monkeypatch.delenv("TOKEN_SIGNING_KEYS")
    with pytest.raises(ValidationError):
        _settings()


def test_production_refuses_placeholder_signing_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMNITILL_ENV", "production")
    monkeypatch.setenv("TOKEN_SIGNING_KEYS", f"{NEW},{OLD}")
    assert _settings().token_signing_keys == [NEW, OLD]
    for placeholder in ("changeme", "secret", ""):
        monkeypatch.setenv("TOKEN_SIGNING_KEYS", f"{NEW},{placeholder}" if placeholder else "")
        with pytest.raises(ValidationError):
            _settings()
