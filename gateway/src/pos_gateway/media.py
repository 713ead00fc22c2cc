"""Media types, from the document: what an operation takes (a request body's `Content-Type`,
415 otherwise).

Read from the app's own OpenAPI document, as `idempotency.shown_once` is, so every operation,
present and future, is held to what it declares with no code of its own: a JSON body says it is
JSON (`application/json`, or a `+json` type such as `application/merge-patch+json`; parameters
such as `charset` are passed over, RFC 8259 gives JSON none).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from starlette.datastructures import Headers

from pos_gateway.problems import OAUTH_PATHS, Problem

JSON = "application/json"
MEDIA_TABLE = "media_types"

# (path pattern, parameters in the template, method, media types taken, media types answered)
Entry = tuple[re.Pattern[str], int, str, tuple[str, ...], tuple[str, ...]]

_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def table(document: Mapping[str, Any]) -> list[Entry]:
    """Every operation's media types: those its request body takes (none: it reads no body)
    and those its success answers come in. A path written out wins over a template it also
    fits (`/v1/events/stream` over `/v1/events/{event_id}`), as the document reads."""
    found: list[Entry] = []
    for path, operations in document.get("paths", {}).items():
        parts = re.split(r"\{[^/}]+\}", path)
        pattern = re.compile("[^/]+".join(re.escape(part) for part in parts))
        for method, operation in operations.items():
            if not isinstance(operation, dict):
                continue
            takes = tuple(operation.get("requestBody", {}).get("content", {}))
            gives = dict.fromkeys(
                media
                for status, answer in operation.get("responses", {}).items()
                if str(status).startswith("2") and isinstance(answer, dict)
                for media in answer.get("content", {})
            )
            found.append((pattern, len(parts) - 1, method.upper(), takes, tuple(gives)))
    return sorted(found, key=lambda entry: entry[1])


def _declared(scope: Mapping[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """What the operation of this request takes and answers (None: no operation of the
    document, such as a path that does not exist; the router answers those)."""
    app = scope.get("app")
    state = getattr(app, "state", None)
    if state is None:
        return None
    entries: list[Entry] | None = getattr(state, MEDIA_TABLE, None)
    if entries is None:
        build = getattr(app, "openapi", None)
        entries = table(build()) if callable(build) else []
        setattr(state, MEDIA_TABLE, entries)
    method = scope.get("method")
    method = "GET" if method == "HEAD" else method
    for pattern, _, declared_method, takes, gives in entries:
        if declared_method == method and pattern.fullmatch(scope.get("path", "")):
            return takes, gives
    return None


def essence(value: str) -> str:
    """A media type without its parameters, lower case (`application/json`)."""
    return value.split(";", 1)[0].strip().lower()


def taken(content_type: str, takes: Iterable[str]) -> bool:
    """Whether a body of `content_type` is one of `takes`: JSON also as any `+json` type."""
    sent = essence(content_type)
    kind, _, subtype = sent.partition("/")
    if not (_TOKEN.match(kind) and _TOKEN.match(subtype)):
        return False
    declared = {essence(t) for t in takes}
    if sent in declared:
        return True
    return JSON in declared and kind == "application" and subtype.endswith("+json")


def unsupported(scope: Mapping[str, Any], headers: Headers, has_body: bool) -> Problem | None:
    """The 415 of a body the operation does not take in its media type (a JSON body sent as
    `text/plain`, or with no Content-Type): refused before anything reads it. A request with
    no body, or to an operation that reads none, is never refused here."""
    if not has_body or scope.get("path") in OAUTH_PATHS:
        # RFC 6749 (section 5.2) makes every refusal of the token exchange a 400 naming its
        # `error`: a JSON body there is its `invalid_request`.
        return None
    declared = _declared(scope)
    if declared is None or not declared[0]:
        return None
    takes = declared[0]
    content_type = headers.get("content-type")
    if content_type is not None and taken(content_type, takes):
        return None
    named = " or ".join(takes)
    reason = f"must be {named}" if content_type is not None else f"is required: {named}"
    return Problem(
        415,
        "unsupported_media_type",
        f"this operation takes a body of {named}"
        + (f", not {essence(content_type)}" if content_type is not None else ""),
        [{"field": "Content-Type", "reason": reason}],
        # What the body may be sent as (RFC 9110 section 15.5.16).
        headers={"Accept": ", ".join(takes)},
    )
