"""Short-lived OAuth 2.0 access tokens: JWTs (RFC 9068's profile) signed and checked by PyJWT.

A token proves itself by its signature and claims (auth.py then asks whether its client is
still unrevoked, answered from a 10 s cache). Signed with HS256 (the gateway both signs and
checks, so a shared key is enough) under the first of TOKEN_SIGNING_KEYS; every key in the set
verifies. Each token names its key in the `kid` header, so a new key can sign while tokens of
the previous one stay valid until they expire (the gateway README says how to rotate).

A token is refused unless its header says HS256 with a known `kid` and `typ` at+jwt, its
signature holds, and `iss`, `aud`, `exp` and `iat` are ours and current.
"""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jwt

ALGORITHM = "HS256"
TYPE = "at+jwt"  # RFC 9068: tells an access token apart from any other JWT
ISSUER = "omnitill-gateway"
AUDIENCE = "omnitill-api"
TOKEN_SECONDS = 900
# Clock difference tolerated between the replica that signed and the one that checks.
LEEWAY_SECONDS = 30
# RFC 7518 §3.2: an HS256 key must have at least as many bits as the hash (256).
MIN_KEY_LENGTH = 32


@dataclass(frozen=True)
class Claims:
    merchant_id: str
    client_id: str
    scopes: tuple[str, ...]
    expires_at: int


def key_id(secret: str) -> str:
    """The `kid` of a signing key: derived from it, so an operator only ever handles keys.

    A hash of a random 32+ character key tells nothing about it; a context string keeps this
    hash from matching any other use of the same bytes.
    """
    digest = hashlib.sha256(b"omnitill-token-kid\0" + secret.encode()).digest()
    return base64.urlsafe_b64encode(digest[:12]).decode()


class KeySet:
    """The signing keys, newest first: the first signs, all of them verify."""

    def __init__(self, secrets: Sequence[str]) -> None:
        if not secrets:
            raise ValueError("at least one token signing key is required")
        if any(len(s) < MIN_KEY_LENGTH for s in secrets):
            raise ValueError(f"token signing keys must be at least {MIN_KEY_LENGTH} characters")
        self._keys = {key_id(s): s for s in secrets}
        if len(self._keys) != len(secrets):
            raise ValueError("token signing keys must all differ")
        self._signing_kid = key_id(secrets[0])

    @property
    def signing_kid(self) -> str:
        return self._signing_kid

    def issue(self, claims: Claims, issued_at: int | None = None) -> str:
        now = int(time.time()) if issued_at is None else issued_at
        payload = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": claims.client_id,
            "client_id": claims.client_id,
            "merchant_id": claims.merchant_id,
            "scope": " ".join(claims.scopes),
            "iat": now,
            "exp": claims.expires_at,
            "jti": uuid.uuid4().hex,
        }
        headers = {"kid": self._signing_kid, "typ": TYPE}
        return jwt.encode(
            payload, self._keys[self._signing_kid], algorithm=ALGORITHM, headers=headers
        )

    def verify(self, token: str) -> Claims | None:
        """The token's claims, or None when it is forged, malformed, expired or not ours."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return None
        # The header is attacker-controlled: it only picks a key, and only from our set. The
        # algorithm is fixed here, never taken from the token (no `none`, no RS/HS confusion).
        secret = self._keys.get(str(header.get("kid")))
        if secret is None or header.get("alg") != ALGORITHM or header.get("typ") != TYPE:
            return None
        try:
            data: dict[str, Any] = jwt.decode(
                token,
                secret,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=ISSUER,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "iss", "aud", "sub"], "strict_aud": True},
            )
        except jwt.PyJWTError:
            return None
        return _claims(data)


def _claims(data: dict[str, Any]) -> Claims | None:
    client, merchant, scope = data.get("sub"), data.get("merchant_id"), data.get("scope")
    if not (isinstance(client, str) and isinstance(merchant, str) and isinstance(scope, str)):
        return None
    expires, issued = data["exp"], data["iat"]
    if not (isinstance(expires, int) and isinstance(issued, int)):
        return None
    # We never sign a token that lives longer; one that does was not made by this code.
    if expires - issued > TOKEN_SECONDS:
        return None
    return Claims(merchant, client, tuple(scope.split()), expires)
