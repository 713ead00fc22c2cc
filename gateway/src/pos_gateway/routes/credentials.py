"""A merchant's own credentials: API keys and OAuth clients (/v1/api-keys, /v1/oauth-clients),
and the client-credentials token exchange (/v1/oauth/token)."""

from __future__ import annotations

import base64
import time
from datetime import timedelta
from typing import Annotated, Any, Literal
from urllib.parse import unquote_plus

from fastapi import APIRouter, Form, Request
from pydantic import Field
from starlette.datastructures import FormData

from pos_gateway import admin, audit, keys, tokens
from pos_gateway import examples as ex
from pos_gateway.actions import guarded
from pos_gateway.auth import Principal, scope_challenge
from pos_gateway.idempotency import REDACTED
from pos_gateway.problems import Problem
from pos_gateway.ratelimit import address_key
from pos_gateway.routes.common import (
    CREATE,
    INT32,
    Body,
    Cursor,
    Limit,
    Name,
    PathId,
    cursor_after,
    example,
    op,
    problems,
    request_id,
    success,
)
from pos_gateway.schemas.credentials import (
    AccessToken,
    ApiKey,
    ApiKeyList,
    NewApiKey,
    NewOAuthClient,
    OAuthClient,
    OAuthClientList,
    RolledApiKey,
)
from pos_kit.paging import encode_token
from pos_kit.text import CARD_NUMBER_NOT_ALLOWED, CARD_NUMBER_REASON, text_problem

router = APIRouter(prefix="/v1", tags=["credentials"])
# The scopes of the two lists' cursors (pos_kit.paging): another list's are refused.
KEYS, CLIENTS = "gateway.api-keys", "gateway.oauth-clients"
Scope = Literal[keys.ALL_SCOPES]  # type: ignore[valid-type]


class KeyIn(Body):
    model_config = example(
        {"name": "till 3", "scopes": ["catalog:read", "orders:write"], "mode": "test"}
    )

    name: Name
    scopes: list[Scope] = Field(min_length=1, max_length=len(keys.ALL_SCOPES))
    mode: Literal["test", "live"] = "test"


ROLL_DEFAULT_SECONDS = 24 * 3600
ROLL_MAX_SECONDS = 7 * 24 * 3600


class RollIn(Body):
    model_config = example({"expires_in_seconds": 3600})

    expires_in_seconds: int = Field(
        ROLL_DEFAULT_SECONDS,
        ge=0,
        le=ROLL_MAX_SECONDS,
        json_schema_extra=INT32,
        description="How long the old key keeps working, from now (0: revoked at once)",
    )


class ClientIn(Body):
    model_config = example({"name": "accounting sync", "scopes": ["orders:read"]})

    name: Name
    scopes: list[Scope] = Field(min_length=1, max_length=len(keys.ALL_SCOPES))


def _reused() -> Problem:
    # The Idempotency-Key made another credential once (its stored answer has since expired).
    return Problem(
        422, "idempotency_key_reused", "this Idempotency-Key was used with a different request"
    )


def _missing(kind: str, ident: str) -> Problem:
    # `resource` names the kind, as every 404 `resource_missing` does (docs/problems.md).
    return Problem(
        404, "resource_missing", f"{kind} {ident!r} was not found", extra={"resource": kind}
    )


def _principal(request: Request) -> Principal:
    principal: Principal = request.state.principal
    return principal


async def grantable(
    request: Request, kind: str, name: str, asked: list[str], mode: str | None = None
) -> tuple[str, ...]:
    """The scopes a new credential (`kind`) may carry: only those the credential making it
    holds (one holding every scope, as a merchant's first key does, may grant any). Anything
    else is a 403 naming the scopes it cannot grant, and nothing is made; the attempt is in
    the audit log (`credential.refused`): a credential reaching for more than it holds is
    worth a look. A new API key's `mode` is held the same way: a test credential (a key
    pasted into a sandbox or a CI config) may make test keys only, never a live one."""
    principal = _principal(request)
    wanted = tuple(dict.fromkeys(asked))
    details: dict[str, Any] = {"kind": kind, "name": name, "scopes": list(wanted)}
    if mode is not None and mode not in ("test", principal.mode):
        await _refused(request, {**details, "mode": mode, "held_mode": principal.mode})
        raise Problem(
            403,
            "mode_not_grantable",
            f"a {principal.mode} credential cannot create a {mode} key",
            [{"field": "mode", "reason": f"a {principal.mode} credential makes test keys only"}],
        )
    beyond = [s for s in wanted if s not in principal.scopes]
    if beyond:
        await _refused(request, {**details, "not_held": beyond})
        raise not_grantable(beyond)
    return wanted


def not_grantable(beyond: list[str]) -> Problem:
    """The 403 for a credential asking to give out scopes it does not hold (`errors[]` on
    `scopes`, naming them)."""
    names = ", ".join(beyond)
    return Problem(
        403,
        "scope_not_grantable",
        f"this credential cannot grant scopes it does not hold itself: {names}",
        [{"field": "scopes", "reason": f"not held by this credential: {names}"}],
    )


async def _refused(
    request: Request, details: dict[str, Any], resource: tuple[str, str] | None = None
) -> None:
    principal = _principal(request)
    async with request.app.state.engine.begin() as conn:
        await audit.record(
            conn, principal.merchant_id, "credential.refused", audit.actor_of(principal),
            resource, details, request_id(),
        )  # fmt: skip


# The kinds of credential as a sentence names them.
_ARTICLED = {"api_key": "an API key", "oauth_client": "an OAuth client"}


async def within_scopes(
    request: Request,
    kind: str,
    ident: str,
    name: str,
    held: list[str],
    mode: str | None = None,
    action: str = "revoke",
) -> None:
    """A credential acts (revokes) only on a credential holding no scope it lacks itself:
    else `credentials:manage` alone would be a way to cut off a key or client that can do
    more than the caller can. A 403 `insufficient_scope` naming the scopes it lacks (in
    `WWW-Authenticate` too), nothing changes, and the attempt is in the audit log
    (`credential.refused`, on the credential acted on). An API key's `mode` is held as
    creation holds it: a test credential acts on test keys only, never a live one (a 403
    `mode_not_grantable`, recorded the same way)."""
    principal = _principal(request)
    if mode is not None and mode not in ("test", principal.mode):
        details: dict[str, Any] = {"kind": kind, "action": action, "name": name, "scopes": held}
        details.update(mode=mode, held_mode=principal.mode)
        await _refused(request, details, (kind, ident))
        raise Problem(
            403,
            "mode_not_grantable",
            f"a {principal.mode} credential cannot {action} a {mode} key",
        )
    beyond = [s for s in held if s not in principal.scopes]
    if not beyond:
        return
    details = {"kind": kind, "action": action, "name": name, "scopes": held, "not_held": beyond}
    await _refused(request, details, (kind, ident))
    raise Problem(
        403,
        "insufficient_scope",
        f"this credential cannot act on {_ARTICLED[kind]} holding scopes it lacks: "
        + ", ".join(beyond),
        headers=scope_challenge(" ".join(beyond)),
    )


def _ts(value: Any) -> str | None:
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def key_json(k: admin.KeyInfo) -> dict[str, Any]:
    return {
        "id": k.id,
        "name": k.name,
        "key_hint": k.key_hint,
        "mode": k.mode,
        "scopes": k.scopes,
        "created_at": _ts(k.created_at),
        "last_used_at": _ts(k.last_used_at),
        "revoked_at": _ts(k.revoked_at),
        "expires_at": _ts(k.expires_at),
    }


def _client_json(c: admin.ClientInfo) -> dict[str, Any]:
    return {
        "id": c.id,
        "client_id": c.id,
        "name": c.name,
        "scopes": c.scopes,
        "created_at": _ts(c.created_at),
        "revoked_at": _ts(c.revoked_at),
    }


def _page(found: list[dict[str, Any]], limit: int, scope: str) -> dict[str, Any]:
    """A page of `limit` of what was read (`limit` + 1, to know whether more follow); the
    cursor holds the last id shown, as ids order the list."""
    data = found[:limit]
    more = len(found) > limit
    return {"data": data, "next_cursor": encode_token(data[-1]["id"], scope) if more else None}


@router.post(
    "/api-keys",
    **op(
        "credentials:manage",
        "Create an API key",
        CREATE,
        example=ex.NEW_API_KEY,
        status=201,
        shown_once=("key",),
    ),
)
async def create_key(body: KeyIn, request: Request) -> NewApiKey:
    """The key is in this answer only: it is stored as a keyed hash and cannot be shown again.

    A credential grants only scopes it holds itself (one holding every scope may grant any):
    asking for others is a 403 `scope_not_grantable` naming them (`errors[]` on `scopes`),
    and the attempt is in the audit log (`credential.refused`).

    A credential makes keys of its own mode or test keys: a live key may make either, a test
    key only test ones. An OAuth access token and a register's credential have no mode of
    their own (OAuth clients and registers are made without one), so they count as test.
    Asking for a `live` key with any of these is a 403 `mode_not_grantable` (`errors[]` on
    `mode`); nothing is made and the attempt is in the audit log (`credential.refused`)."""
    merchant = _principal(request).merchant_id
    scopes = await grantable(request, "api_key", body.name, body.scopes, body.mode)
    state = request.app.state
    try:
        async with guarded(request, "api_key.created") as done:
            key_id, key = await admin.issue_key_once(
                state.engine, state.secret, merchant, body.name, scopes, body.mode,
                request_id(),
            )  # fmt: skip
            done.resource = ("api_key", key_id)
            # As the platform's entry for a key it issues says: a live key is worth seeing.
            done.details = {"name": body.name, "scopes": list(scopes), "mode": body.mode}
    except admin.RequestReused:
        raise _reused() from None
    info = await admin.get_key(state.engine, merchant, key_id)
    assert info is not None  # this request made it, or an earlier attempt of it
    return NewApiKey.model_validate({**key_json(info), "key": key, REDACTED: key is None})


@router.get(
    "/api-keys",
    **op(
        "credentials:manage",
        "List API keys (never the keys themselves)",
        example={"data": [ex.API_KEY], "next_cursor": None},
    ),
)
async def list_keys(request: Request, limit: Limit = 50, cursor: Cursor = None) -> ApiKeyList:
    """Every key, revoked ones too, newest first, in pages of `limit`."""
    found = await admin.list_keys(
        request.app.state.engine,
        _principal(request).merchant_id,
        cursor_after(cursor, KEYS),
        limit + 1,
    )
    return ApiKeyList.model_validate(_page([key_json(k) for k in found], limit, KEYS))


@router.delete(
    "/api-keys/{key_id}",
    **op("credentials:manage", "Revoke an API key", (404,), example=ex.REVOKED_API_KEY),
)
async def revoke_key(key_id: PathId, request: Request) -> ApiKey:
    """A credential revokes only a key holding no scope it lacks itself (one holding every
    scope may revoke any): revoking one that holds more is a 403 `insufficient_scope` naming
    the scopes it lacks; the key stays and the attempt is in the audit log
    (`credential.refused`). As it makes none, a test credential (a test key, an OAuth access
    token, a register's credential) revokes no live key: a 403 `mode_not_grantable`,
    recorded the same way."""
    engine, merchant = request.app.state.engine, _principal(request).merchant_id
    found = await admin.get_key(engine, merchant, key_id)
    if found is None:
        raise _missing("api key", key_id)
    # A key's scopes never change once made: what was read is what is revoked.
    await within_scopes(request, "api_key", key_id, found.name, found.scopes, found.mode)
    async with guarded(request, "api_key.revoked") as done:
        revoked, now = await admin.revoke_key(engine, merchant, key_id)
        if revoked is None:
            raise _missing("api key", key_id)
        done.resource = ("api_key", key_id)
        # What was revoked, as its creation's entry names it (the key may be long gone from
        # the list a reader of the log has at hand).
        done.details = {"name": found.name, "scopes": found.scopes, "mode": found.mode}
        done.changed = now  # revoked already: one entry, from the revocation that did it
    request.app.state.keys.forget(key_id)
    return ApiKey.model_validate(key_json(revoked))


@router.post(
    "/api-keys/{key_id}/roll",
    **op(
        "credentials:manage",
        "Roll an API key (a new key, the old one working for a while)",
        (404, *CREATE),
        example=ex.ROLLED_API_KEY,
        status=201,
        shown_once=("key",),
    ),
)
async def roll_key(key_id: PathId, body: RollIn, request: Request) -> RolledApiKey:
    """Replaces a key without downtime: a new key of the same name, scopes and mode, shown in
    this answer only (stored as a keyed hash, as at creation), while the old one keeps working
    until `expires_in_seconds` from now (a day unless said, at most 7 days; 0 revokes it at
    once), then is refused. `rolled_from` is the old key, with that `expires_at`.

    A key is rolled once: rolling a rolled key is a 409 `api_key_rolled` (roll its
    replacement), a revoked one a 409 `api_key_revoked`. As for revoking, a credential rolls
    only a key holding no scope it lacks itself (else a 403 `insufficient_scope` naming
    them), and a test credential no live key (a 403 `mode_not_grantable`); nothing changes
    and the attempt is in the audit log (`credential.refused`). The roll is
    `api_key.rolled` on the old key."""
    seconds = body.expires_in_seconds
    state, merchant = request.app.state, _principal(request).merchant_id
    found = await admin.get_key(state.engine, merchant, key_id)
    if found is None:
        raise _missing("api key", key_id)
    # A key's scopes and mode never change once made: what was read is what is rolled.
    await within_scopes(
        request, "api_key", key_id, found.name, found.scopes, found.mode, action="roll"
    )
    try:
        async with guarded(request, "api_key.rolled") as done:
            rolled = await admin.roll_key(
                state.engine, state.secret, merchant, key_id, timedelta(seconds=seconds),
                request_id(),
            )  # fmt: skip
            if rolled is None:
                raise _missing("api key", key_id)
            new_id, key = rolled
            done.resource = ("api_key", key_id)
            done.details = {"name": found.name, "mode": found.mode, "new_key_id": new_id,
                            "expires_in_seconds": seconds}  # fmt: skip
    except admin.RequestReused:
        raise _reused() from None
    except admin.KeyRevoked:
        raise Problem(409, "api_key_revoked", f"api key {key_id!r} is revoked") from None
    except admin.KeyRolled:
        raise Problem(
            409, "api_key_rolled", f"api key {key_id!r} was rolled already: roll its replacement"
        ) from None
    state.keys.forget(key_id)
    info = await admin.get_key(state.engine, merchant, new_id)
    old = await admin.get_key(state.engine, merchant, key_id)
    assert info is not None and old is not None  # this request made it, or an earlier attempt
    return RolledApiKey.model_validate(
        {**key_json(info), "key": key, REDACTED: key is None, "rolled_from": key_json(old)}
    )


@router.post(
    "/oauth-clients",
    **op(
        "credentials:manage",
        "Create an OAuth client",
        CREATE,
        example=ex.NEW_OAUTH_CLIENT,
        status=201,
        shown_once=("client_secret",),
    ),
)
async def create_client(body: ClientIn, request: Request) -> NewOAuthClient:
    """The client secret is in this answer only.

    A credential grants only scopes it holds itself (one holding every scope may grant any):
    asking for others is a 403 `scope_not_grantable` naming them (`errors[]` on `scopes`),
    and the attempt is in the audit log (`credential.refused`). A client has no mode: its
    access tokens count as test credentials, so they make test API keys only, whatever
    key made the client."""
    merchant = _principal(request).merchant_id
    scopes = await grantable(request, "oauth_client", body.name, body.scopes)
    state = request.app.state
    try:
        async with guarded(request, "oauth_client.created") as done:
            client_id, client_secret = await admin.create_client(
                state.engine, state.secret, merchant, body.name, scopes, request_id(),
            )  # fmt: skip
            done.resource = ("oauth_client", client_id)
            done.details = {"name": body.name, "scopes": list(scopes)}
    except admin.RequestReused:
        raise _reused() from None
    info = await admin.get_client(state.engine, merchant, client_id)
    assert info is not None  # this request made it, or an earlier attempt of it
    secret = {"client_secret": client_secret, REDACTED: client_secret is None}
    return NewOAuthClient.model_validate({**_client_json(info), **secret})


@router.get(
    "/oauth-clients",
    **op(
        "credentials:manage",
        "List OAuth clients",
        example={"data": [ex.OAUTH_CLIENT], "next_cursor": None},
    ),
)
async def list_clients(
    request: Request, limit: Limit = 50, cursor: Cursor = None
) -> OAuthClientList:
    """Every client, revoked ones too, newest first, in pages of `limit`."""
    found = await admin.list_clients(
        request.app.state.engine,
        _principal(request).merchant_id,
        cursor_after(cursor, CLIENTS),
        limit + 1,
    )
    return OAuthClientList.model_validate(_page([_client_json(c) for c in found], limit, CLIENTS))


@router.delete(
    "/oauth-clients/{client_id}",
    **op("credentials:manage", "Revoke an OAuth client", (404,), example=ex.REVOKED_OAUTH_CLIENT),
)
async def revoke_client(client_id: PathId, request: Request) -> OAuthClient:
    """A credential revokes only a client holding no scope it lacks itself (one holding every
    scope may revoke any): revoking one that holds more is a 403 `insufficient_scope` naming
    the scopes it lacks; the client stays and the attempt is in the audit log
    (`credential.refused`)."""
    engine, merchant = request.app.state.engine, _principal(request).merchant_id
    found = await admin.get_client(engine, merchant, client_id)
    if found is None:
        raise _missing("oauth client", client_id)
    # A client's scopes never change once made: what was read is what is revoked.
    await within_scopes(request, "oauth_client", client_id, found.name, found.scopes)
    async with guarded(request, "oauth_client.revoked") as done:
        revoked, now = await admin.revoke_client(engine, merchant, client_id)
        if revoked is None:
            raise _missing("oauth client", client_id)
        done.resource = ("oauth_client", client_id)
        done.details = {"name": found.name, "scopes": found.scopes}
        done.changed = now
    request.app.state.keys.forget(client_id)
    return OAuthClient.model_validate(_client_json(revoked))


FORM = "application/x-www-form-urlencoded"
TOKEN_FORM_EXAMPLE = {
    "grant_type": "client_credentials",
    "client_id": ex.OAUTH_CLIENT["client_id"],
    "client_secret": ex.NEW_OAUTH_CLIENT["client_secret"],
    "scope": "orders:read",
}


def _oauth_error(
    status: int,
    error: str,
    detail: str,
    code: str | None = None,
    errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> Problem:
    # RFC 6749 clients read `error`; everyone else reads the problem's `code` (the same, unless
    # a finer one says more, like `card_number_not_allowed`).
    extra = {"error": error, "error_description": detail}
    return Problem(status, code or error, detail, errors, headers=headers, extra=extra)


# Failed client authentications at the token exchange, budgeted per client_id and per source
# address (each its own bucket): a guessed secret costs a token, a right one gives it back, so
# a client that knows its secret is never held up by its own successes. Past the budget a 429
# with Retry-After, before the secret is even checked.
CLIENT_AUTH_RATE, CLIENT_AUTH_BURST = 0.1, 10  # ten wrong secrets, then one every 10 s
ADDRESS_AUTH_RATE, ADDRESS_AUTH_BURST = 1.0, 100


def _basic(request: Request) -> tuple[str, str] | None:
    """The client credentials of `Authorization: Basic` (RFC 6749 section 2.3.1: each
    form-urlencoded, then `id:secret` in base64), or None when the request sends none."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        decoded = ""
    client_id, colon, client_secret = decoded.partition(":")
    if not colon:
        raise _oauth_error(
            400, "invalid_request",
            "Authorization: Basic must carry base64 of client_id:client_secret",
            errors=[{"field": "Authorization", "reason": "must be Basic base64(id:secret)"}],
        )  # fmt: skip
    return unquote_plus(client_id), unquote_plus(client_secret)


def _client_credentials(
    request: Request, client_id: str | None, client_secret: str | None
) -> tuple[str, str, bool]:
    """(client_id, client_secret, whether they came in the Authorization header): from HTTP
    Basic or from the form, never both (RFC 6749 section 2.3: one method per request)."""
    basic = _basic(request)
    if basic is not None:
        if client_secret is not None or client_id not in (None, basic[0]):
            raise _oauth_error(
                400, "invalid_request",
                "send the client credentials once: in Authorization: Basic or in the form",
            )  # fmt: skip
        return basic[0], basic[1], True
    missing = [name for name, v in (("client_id", client_id), ("client_secret", client_secret))
               if not v]  # fmt: skip
    if missing or client_id is None or client_secret is None:
        raise _oauth_error(
            400, "invalid_request",
            "client authentication is required: Authorization: Basic, or client_id and "
            "client_secret in the form",
            errors=[{"field": name, "reason": "Field required"} for name in missing],
        )  # fmt: skip
    return client_id, client_secret, False


CLIENT_BUCKET = "client-auth:client:"
ADDRESS_BUCKET = "client-auth:"


async def _throttled(request: Request, client_id: str) -> list[str]:
    """Spend a failed authentication's token of the client's bucket and the address's; the
    buckets spent (to give back if the secret is right). Past either budget a 429."""
    state = request.app.state
    spent: list[str] = []
    refused: list[int] = []
    for limits, bucket in (
        # Named apart from the API's own buckets (with the shared store they are one table),
        # and from each other: a client id spelled `address:<ip>` is still a client's.
        (state.client_auth, CLIENT_BUCKET + client_id),
        (state.address_auth, ADDRESS_BUCKET + address_key(request.scope)),
    ):
        decision = await limits.decide(bucket)
        if decision.allowed:
            spent.append(bucket)
        else:
            refused.append(decision.retry_after)
    if refused:
        await _give_back(request, spent)
        # RFC 6749 has no error for a budget spent: its `temporarily_unavailable` ("try again
        # later") is the nearest, beside the problem's own code.
        raise _oauth_error(
            429, "temporarily_unavailable",
            "too many failed client authentications; retry after the given time",
            code="rate_limited", headers={"Retry-After": str(max(refused))},
        )  # fmt: skip
    return spent


async def _give_back(request: Request, spent: list[str]) -> None:
    state = request.app.state
    for bucket in spent:
        by_address = not bucket.startswith(CLIENT_BUCKET)
        limits = state.address_auth if by_address else state.client_auth
        await limits.refund(bucket)


@router.post(
    "/oauth/token",
    summary="Exchange client credentials for a short-lived access token",
    description="OAuth 2.0 client credentials grant (form encoded). The client authenticates "
    "with HTTP Basic (`Authorization: Basic base64(client_id:client_secret)`, RFC 6749 "
    "section 2.3.1) or with `client_id` and `client_secret` in the form, not both. The access "
    "token is a JWT (RFC 9068) that lasts 15 minutes; treat it as opaque. Errors carry RFC "
    "6749's `error` beside the problem's `code` (`invalid_request`, `invalid_client`, "
    "`unsupported_grant_type`, `invalid_scope`, and `temporarily_unavailable` on the 429 "
    "below); a parameter sent more than once is an `invalid_request` naming it (RFC 6749 "
    "section 3.2); `scope` is scope names apart by spaces, each granted once, and a scope the "
    "client was not given is an `invalid_scope` naming `scope`; a wrong secret sent "
    "with Basic answers "
    "`WWW-Authenticate: Basic`. Failed client authentications are limited per client_id "
    f"({CLIENT_AUTH_BURST}, then one every {round(1 / CLIENT_AUTH_RATE)} s) and per source "
    "address: past that a 429 with Retry-After, before the secret is checked. Answers are "
    "sent with `Cache-Control: no-store`.",
    responses={200: success(ex.TOKEN), **problems(400, 401, 413, 429)},
    openapi_extra={"requestBody": {"content": {FORM: {"example": TOKEN_FORM_EXAMPLE}}}},
)
async def token(
    request: Request,
    # An empty form field counts as absent (FastAPI), so the document says at least one.
    # Documented as the one value it may have; checked below so a wrong one gets RFC 6749's
    # `unsupported_grant_type` rather than a generic validation answer.
    grant_type: Annotated[
        str, Form(min_length=1, max_length=64, json_schema_extra={"enum": ["client_credentials"]})
    ],
    # Both optional in the form: the client may authenticate with HTTP Basic instead.
    client_id: Annotated[str | None, Form(min_length=1, max_length=64)] = None,
    client_secret: Annotated[str | None, Form(min_length=1, max_length=128)] = None,
    scope: Annotated[str, Form(max_length=1000)] = "",
) -> AccessToken:
    _once(await request.form())
    form = {"grant_type": grant_type, "client_id": client_id or "",
            "client_secret": client_secret or "", "scope": scope}  # fmt: skip
    _text_rules(form)
    if grant_type != "client_credentials":
        raise _oauth_error(400, "unsupported_grant_type", "only client_credentials is supported")
    client_id, client_secret, basic = _client_credentials(request, client_id, client_secret)
    if basic:
        _text_rules({"client_id": client_id, "client_secret": client_secret})
        if len(client_id) > 64 or len(client_secret) > 128:
            raise _oauth_error(401, "invalid_client", "unknown client or wrong secret",
                               headers={"WWW-Authenticate": BASIC_CHALLENGE})  # fmt: skip
    spent = await _throttled(request, client_id)
    state = request.app.state
    found = await admin.client_for_secret(state.engine, state.secret, client_id, client_secret)
    if found is None:
        challenge = {"WWW-Authenticate": BASIC_CHALLENGE} if basic else None
        raise _oauth_error(401, "invalid_client", "unknown client or wrong secret",
                           headers=challenge)  # fmt: skip
    await _give_back(request, spent)
    merchant, allowed = found
    asked = _scopes(scope) if scope else allowed
    beyond = [s for s in asked if s not in allowed]
    if beyond:
        names = ", ".join(beyond)
        raise _oauth_error(
            400, "invalid_scope", "the client may not ask for these scopes",
            errors=[{"field": "scope", "reason": f"not given to this client: {names}"}],
        )  # fmt: skip
    now = int(time.time())
    signing: tokens.KeySet = state.tokens
    access = signing.issue(
        tokens.Claims(merchant, client_id, tuple(asked), now + tokens.TOKEN_SECONDS), now
    )
    return AccessToken(
        access_token=access,
        token_type="Bearer",  # noqa: S106 (the scheme's name, not a secret)
        expires_in=tokens.TOKEN_SECONDS,
        scope=" ".join(asked),
    )


BASIC_CHALLENGE = 'Basic realm="omnitill"'


def _scopes(scope: str) -> list[str]:
    """RFC 6749 section 3.3: scope tokens apart by spaces (tabs and line breaks are no part of
    it); a scope naming none is an error, not a token that may do nothing; a token named twice
    is granted once."""
    asked = [s for s in scope.split(" ") if s]
    if not asked or any(not s.isprintable() for s in asked):
        raise _oauth_error(
            400, "invalid_scope", "scope must be scope names apart by spaces",
            errors=[{"field": "scope", "reason": "scope names apart by spaces"}],
        )  # fmt: skip
    return list(dict.fromkeys(asked))


TOKEN_PARAMETERS = ("grant_type", "client_id", "client_secret", "scope")


def _once(form: FormData) -> None:
    """RFC 6749 section 3.2: request parameters must not be included more than once. The form
    reader keeps the last of a repeated field, so `grant_type=client_credentials&grant_type=
    password` was read as one of them, silently: a parameter sent twice is an
    `invalid_request` naming it. Parameters the exchange does not know are ignored, as the
    RFC asks, repeated or not."""
    sent = [name for name, _ in form.multi_items()]
    twice = [name for name in TOKEN_PARAMETERS if sent.count(name) > 1]
    if twice:
        raise _oauth_error(
            400, "invalid_request",
            "a parameter must not be sent more than once: " + ", ".join(twice),
            errors=[{"field": name, "reason": "sent more than once"} for name in twice],
        )  # fmt: skip


def _text_rules(form: dict[str, str]) -> None:
    refused = {k: r for k, v in form.items() if (r := text_problem(k, v)) is not None}
    if refused:
        card = CARD_NUMBER_REASON in refused.values()
        raise _oauth_error(
            400,
            "invalid_request",
            "card numbers are never accepted" if card else "form fields must not contain NUL",
            code=CARD_NUMBER_NOT_ALLOWED if card else None,
            errors=[{"field": k, "reason": r} for k, r in refused.items()],
        )
