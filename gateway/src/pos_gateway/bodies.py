"""A request body read whole once, and handed on to the app as if it were still arriving: for
the middleware that must look at a body before the route does (the Idempotency-Key's
fingerprint, a register's confinement, an If-Match list tried at more than one version)."""

from __future__ import annotations

from starlette.types import Message, Receive


async def read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def read_bounded(receive: Receive, limit: int) -> bytes | None:
    """The body, or None as soon as it holds more than `limit` bytes (the rest is not read)."""
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def then(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives `body` once, then whatever `receive` gives (a disconnect, in
    its time)."""
    sent = False

    async def given() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return given


async def _left() -> Message:
    return {"type": "http.disconnect"}


def replay(body: bytes) -> Receive:
    """A `receive` that gives `body` once, then says the client left."""
    return then(body, _left)
