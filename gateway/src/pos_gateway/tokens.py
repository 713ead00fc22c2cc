"""Short-lived OAuth 2.0 access tokens: self-contained, HMAC-signed, checked without a database.

Format: `pos_at_<base64url(JSON claims)>.<base64url(HMAC-SHA256)>`. Claims: merchant, client,
scopes, expiry. A revoked client's tokens stop at their expiry (at most TOKEN_SECONDS).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass

PREFIX = "pos_at_"
TOKEN_SECONDS = 900


@dataclass(frozen=True)
class Claims:
    merchant_id: str
    client_id: str
    scopes: tuple[str, ...]
    expires_at: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret: str, body: str) -> str:
    # A distinct context string so a token signature can never double as an API-key hash.
    mac = hmac.new(secret.encode(), b"omnitill-access-token\0" + body.encode(), hashlib.sha256)
    return _b64(mac.digest())


def issue(secret: str, claims: Claims) -> str:
    body = _b64(
        json.dumps(
            {"m": claims.merchant_id, "c": claims.client_id, "s": list(claims.scopes),
             "e": claims.expires_at},
            separators=(",", ":"),
        ).encode()
    )  # fmt: skip
    return f"{PREFIX}{body}.{_sign(secret, body)}"


def verify(secret: str, token: str, now: float | None = None) -> Claims | None:
    """The token's claims, or None when it is forged, malformed or expired."""
    if not token.startswith(PREFIX) or token.count(".") != 1:
        return None
    body, signature = token[len(PREFIX) :].split(".")
    if not hmac.compare_digest(_sign(secret, body), signature):
        return None
    try:
        data = json.loads(_unb64(body))
        claims = Claims(str(data["m"]), str(data["c"]), tuple(data["s"]), int(data["e"]))
    except (ValueError, KeyError, TypeError):
        return None
    if claims.expires_at <= (time.time() if now is None else now):
        return None
    return claims
