"""Media types, from the document: what an operation takes (a request body's `Content-Type`,
415 otherwise) and what it answers in (the `Accept` header, 406 when it allows none of them).

Read from the app's own OpenAPI document, as `idempotency.shown_once` is, so every operation,
present and future, is held to what it declares with no code of its own: a JSON body says it is
JSON (`application/json`, or a `+json` type such as `application/merge-patch+json`; parameters
such as `charset` are passed over, RFC 8259 gives JSON none), and a client's `Accept` is
negotiated by RFC 9110 section 12.5.1 (quality values, the most specific range deciding a
type's quality, `*/*` and `type/*`), the client's order then the operation's breaking ties.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from starlette.datastructures import Headers

from pos_gateway.problems import OAUTH_PATHS, Problem

JSON = "application/json"
MEDIA_TABLE = "media_types"

# (path pattern, parameters in the template, the template's slashes, method, media types
# taken, media types answered)
Entry = tuple[re.Pattern[str], int, int, str, tuple[str, ...], tuple[str, ...]]
# The entries by method and number of path segments (a template's parameter matches one), so
# a request is matched against a few templates, not every one.
Index = dict[tuple[str, int], list[Entry]]

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
            found.append(
                (pattern, len(parts) - 1, path.count("/"), method.upper(), takes, tuple(gives))
            )
    return sorted(found, key=lambda entry: entry[1])


def _declared(scope: Mapping[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """What the operation of this request takes and answers (None: no operation of the
    document, such as a path that does not exist; the router answers those)."""
    app = scope.get("app")
    state = getattr(app, "state", None)
    if state is None:
        return None
    index: Index | None = getattr(state, MEDIA_TABLE, None)
    if index is None:
        build = getattr(app, "openapi", None)
        index = indexed(table(build()) if callable(build) else [])
        setattr(state, MEDIA_TABLE, index)
    method = scope.get("method", "")
    path = scope.get("path", "")
    for pattern, _, _, _, takes, gives in index.get(("GET" if method == "HEAD" else method,
                                                  path.count("/")), ()):  # fmt: skip
        if pattern.fullmatch(path):
            return takes, gives
    return None


def indexed(entries: list[Entry]) -> Index:
    index: Index = {}
    for entry in entries:
        index.setdefault((entry[3], entry[2]), []).append(entry)
    return index


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


def _ranges(accept: str) -> list[tuple[str, str, float, int]]:
    """The media ranges of an Accept value: (type, subtype, quality, place); a malformed range
    is passed over."""
    ranges = []
    for place, item in enumerate(accept.split(",")):
        media, *parameters = item.split(";")
        kind, slash, subtype = media.strip().lower().partition("/")
        if not slash or not _TOKEN.match(kind) or not _TOKEN.match(subtype):
            continue
        if kind == "*" and subtype != "*":
            continue
        quality = 1.0
        for parameter in parameters:
            name, _, value = parameter.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value.strip())
                except ValueError:
                    quality = -1.0
        if 0.0 <= quality <= 1.0:
            ranges.append((kind, subtype, quality, place))
    return ranges


def negotiate(accept: str | None, offered: Sequence[str]) -> str | None:
    """The one of `offered` that `accept` prefers (RFC 9110 section 12.5.1): each type's
    quality is that of the most specific range naming it; the highest wins, then the range the
    client listed first, then the order of `offered`. None: the client accepts none of them.
    No Accept (or one with no range we can read) accepts anything: the first offered."""
    if not offered:
        return None
    ranges = _ranges(accept or "")
    if not ranges:
        return offered[0]
    best: tuple[float, int, int] | None = None
    chosen: str | None = None
    for rank, media in enumerate(offered):
        kind, _, subtype = essence(media).partition("/")
        matching = [
            (specific, quality, place)
            for want_kind, want_subtype, quality, place in ranges
            if (specific := _specificity(want_kind, want_subtype, kind, subtype)) >= 0
        ]
        if not matching:
            continue
        _, quality, place = max(matching, key=lambda m: m[0])
        if quality <= 0:
            continue
        key = (-quality, place, rank)
        if best is None or key < best:
            best, chosen = key, media
    return chosen


def _specificity(want_kind: str, want_subtype: str, kind: str, subtype: str) -> int:
    if want_kind == "*":
        return 0
    if want_kind != kind:
        return -1
    if want_subtype == "*":
        return 1
    return 2 if want_subtype == subtype else -1


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


def not_acceptable(scope: Mapping[str, Any], headers: Headers) -> Problem | None:
    """The 406 of a request whose Accept allows none of the media types the operation answers
    in (`application/pdf` of a receipt), refused before the route runs. Its problem comes as
    `application/problem+json` all the same, as RFC 9110 allows."""
    accept = headers.get("accept")
    if accept is None or accept == "*/*" or scope.get("path") in OAUTH_PATHS:
        return None  # anything goes; the token exchange answers as RFC 6749 says (above)
    declared = _declared(scope)
    if declared is None or not declared[1]:
        return None
    gives = declared[1]
    if negotiate(accept, gives) is not None:
        return None
    named = ", ".join(gives)
    return Problem(
        406,
        "not_acceptable",
        f"this operation answers in {named}; the Accept header allows none of them",
        [{"field": "Accept", "reason": f"must accept one of {named}"}],
    )
