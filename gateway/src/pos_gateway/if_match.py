"""`If-Match` with a list of entity tags (RFC 9110, 13.1.1: `"3", "4"`): true when any of
them is the current version.

The routes and the services compare one expected version (`routes.common.expected_version`),
in the same transaction as the change. So a list is asked as its first version, and when that
is a 412 `version_mismatch` whose `current_version` is another one the list names, asked again
as that one: a 412 changes nothing, so the second attempt is the only one that can. A list of
versions that holds none current answers the first attempt's 412. A value that is no list of
versions (`*` among tags, a tag that is not a version) is left as sent, for the route's 400.

Inside the edge (`app.create_app` adds it first), so an `Idempotency-Key` request is claimed,
stored or let go once, with the answer the client gets.
"""

from __future__ import annotations

import json
import re

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pos_gateway.bodies import read_body, replay
from pos_gateway.routes.common import IF_MATCH_MAX

# One tag of a list, as `routes.common.IF_MATCH` takes one alone: `"3"`, `W/"3"` or 3.
_TAG = re.compile(r'(?:W/)?"?([1-9][0-9]{0,17})"?')


def listed_versions(value: str) -> list[int] | None:
    """The versions a list of entity tags names, in order and once each; None when the value
    is not a list (one tag, `*`) or is a malformed one, which the route reads as ever. Empty
    elements count for nothing (RFC 9110, 5.6.1)."""
    if "," not in value or len(value) > IF_MATCH_MAX:
        return None
    versions: list[int] = []
    for element in value.split(","):
        tag = element.strip()
        if not tag:
            continue
        found = _TAG.fullmatch(tag)
        if found is None:
            return None
        versions.append(int(found.group(1)))
    return list(dict.fromkeys(versions)) or None


def _as_if_match(scope: Scope, version: int) -> Scope:
    headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"if-match"]
    return {**scope, "headers": [*headers, (b"if-match", f'"{version}"'.encode())]}


def _current_version(held: list[Message]) -> int | None:
    """The `current_version` of a held 412 `version_mismatch` answer, else None."""
    start = next((m for m in held if m["type"] == "http.response.start"), None)
    if start is None or start["status"] != 412:
        return None
    body = b"".join(m.get("body", b"") for m in held if m["type"] == "http.response.body")
    try:
        problem = json.loads(body)
        if problem.get("code") != "version_mismatch":
            return None
        return int(problem["current_version"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


class ListedVersions:
    """Asks a request whose `If-Match` lists versions as described above."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        value = Headers(scope=scope).get("if-match") if scope["type"] == "http" else None
        versions = listed_versions(value) if value is not None else None
        if not versions:
            await self.app(scope, receive, send)
            return
        body = await read_body(receive)
        held: list[Message] = []

        async def hold(message: Message) -> None:
            held.append(message)

        await self.app(_as_if_match(scope, versions[0]), replay(body), hold)
        current = _current_version(held)
        if current is not None and current != versions[0] and current in versions:
            await self.app(_as_if_match(scope, current), replay(body), send)
            return
        for message in held:
            await send(message)
