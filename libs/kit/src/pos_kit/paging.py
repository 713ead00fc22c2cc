"""Cursor paging shared by every list RPC: opaque tokens, bounded page sizes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from pos_kit.errors import FieldViolation, InvalidArgument

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200


def page_size(requested: int) -> int:
    if requested < 0 or requested > MAX_PAGE_SIZE:
        raise InvalidArgument(
            "page_size is out of range",
            [FieldViolation("page_size", f"must be between 1 and {MAX_PAGE_SIZE}")],
        )
    return requested or DEFAULT_PAGE_SIZE


# A cursor is ours only if it reads back exactly: URL-safe base64 (no padding) of a version
# byte, the key, and a checksum of both and of the list's scope (the list it pages; not
# stored). A string we did not issue (garbage, another API's token, a cursor cut short or
# edited, another list's cursor) fails one of those checks and is refused, never read as some
# other key (which would restart the list, or end it, without a word).
TOKEN_VERSION = b"\x01"
_CHECKSUM_BYTES = 4
_CHECKSUM_PERSON = b"omnitill.cursor"
# The public bound on a cursor (the gateway's `cursor` query parameter takes 512 characters).
TOKEN_MAX = 512
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9_-]+")


def _checksum(body: bytes, scope: str) -> bytes:
    digest = hashlib.blake2b(digest_size=_CHECKSUM_BYTES, person=_CHECKSUM_PERSON)
    digest.update(scope.encode() + b"\x00")
    digest.update(body)
    return digest.digest()


def invalid_token(field: str = "page_token") -> InvalidArgument:
    """The refusal of a page token this list did not issue, naming `field`."""
    return InvalidArgument(
        f"{field} is not valid", [FieldViolation(field, "is not a cursor this list gave")]
    )


def encode_token(last_key: str, scope: str = "") -> str:
    """The opaque token of the page after `last_key` in the list `scope` names."""
    body = TOKEN_VERSION + last_key.encode()
    return base64.urlsafe_b64encode(body + _checksum(body, scope)).decode().rstrip("=")


def decode_token(token: str, field: str = "page_token", scope: str = "") -> str | None:
    """The key a token of `encode_token(key, scope)` holds; None for "" (the first page).
    Anything else is an InvalidArgument naming `field`: strict base64 of our alphabet that
    re-encodes to the very same text, our version, the checksum of this scope and UTF-8 text,
    or it is not this list's."""
    if not token:
        return None
    if len(token) > TOKEN_MAX or not _TOKEN_CHARS.fullmatch(token):
        raise invalid_token(field)
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except ValueError:  # binascii.Error: a length no base64 text has
        raise invalid_token(field) from None
    # Re-encoding must give the token back: no spare bits set in the last character.
    if base64.urlsafe_b64encode(raw).decode().rstrip("=") != token:
        raise invalid_token(field)
    body, checksum = raw[:-_CHECKSUM_BYTES], raw[-_CHECKSUM_BYTES:]
    if not body.startswith(TOKEN_VERSION):
        raise invalid_token(field)
    if not hmac.compare_digest(checksum, _checksum(body, scope)):
        raise invalid_token(field)
    try:
        return body[len(TOKEN_VERSION) :].decode()
    except UnicodeDecodeError:
        raise invalid_token(field) from None


@dataclass(frozen=True)
class ChangeCursor:
    """Position in a list ordered by (updated_at, id): where a change feed resumes."""

    updated_at: datetime
    id: str


def encode_change(updated_at: datetime, item_id: str, scope: str = "") -> str:
    return encode_token(f"{updated_at.isoformat()}|{item_id}", scope)


def decode_change(token: str, field: str = "page_token", scope: str = "") -> ChangeCursor | None:
    """The position a token of `encode_change` holds; None for "" (the first page)."""
    raw = decode_token(token, field, scope)
    if raw is None:
        return None
    stamp, bar, item_id = raw.partition("|")
    try:
        updated_at = datetime.fromisoformat(stamp)
    except ValueError:
        updated_at = None
    if not bar or not item_id or updated_at is None:
        raise invalid_token(field)
    return ChangeCursor(updated_at, item_id)


T = TypeVar("T")


@dataclass(frozen=True)
class PageRequest:
    """One page of a list: by id after a cursor, or (with `since`) a change feed."""

    limit: int = DEFAULT_PAGE_SIZE
    after: str | None = None
    since: datetime | None = None
    cursor: ChangeCursor | None = None
    # The list a token is good for (see `page_scope`): a token of another list is refused.
    scope: str = ""

    @property
    def fetch(self) -> int:
        """Rows to read: one more than the page, to learn whether another page follows."""
        return self.limit + 1


# What a list request carries that is not one of its filters: a next page may change them.
PAGING_FIELDS = ("page_size", "page_token")


def page_scope(request: Any) -> str:
    """The scope of a list request's tokens: the request's message name, whether it reads the
    change feed (`updated_since`) or by key (the two keys differ), and its filters. A cursor
    positions a list as filtered when it was given; the same cursor with other filters would
    page on from a position of another list, skipping or repeating items without a word, so
    it is refused (as Square refuses a cursor used with another query)."""
    name: str = request.DESCRIPTOR.full_name
    if "updated_since" in request.DESCRIPTOR.fields_by_name and request.HasField("updated_since"):
        name += "|changes"
    filters = filters_of(request)
    return f"{name}|{filters}" if filters else name


def filters_of(request: Any) -> str:
    """A digest of the request's fields other than its paging ("" with none set)."""
    rest = type(request)()
    rest.CopyFrom(request)
    for paging in PAGING_FIELDS:
        if paging in rest.DESCRIPTOR.fields_by_name:
            rest.ClearField(paging)
    serialized: bytes = rest.SerializeToString(deterministic=True)
    if not serialized:
        return ""
    return hashlib.blake2b(serialized, digest_size=8).hexdigest()


def page_request(request: Any) -> PageRequest:
    """From a list request's `page_size`, `page_token` and, if it has one, `updated_since`."""
    limit = page_size(request.page_size)
    scope = page_scope(request)
    if "updated_since" in request.DESCRIPTOR.fields_by_name and request.HasField("updated_since"):
        since = request.updated_since.ToDatetime(tzinfo=UTC)
        cursor = decode_change(request.page_token, scope=scope)
        return PageRequest(limit, since=since, cursor=cursor, scope=scope)
    return PageRequest(limit, after=decode_token(request.page_token, scope=scope), scope=scope)


def page_of(found: Sequence[T], page: PageRequest) -> tuple[list[T], str]:
    """The page's items and the token of the next page ("" at the end). Items have an `id`,
    and for a change feed an `updated_at`."""
    items = list(found[: page.limit])
    if len(found) <= page.limit:
        return items, ""
    last: Any = items[-1]
    if page.since is not None:
        return items, encode_change(last.updated_at, last.id, page.scope)
    return items, encode_token(last.id, page.scope)


def time_field(request: Any, name: str) -> datetime | None:
    """A request's optional Timestamp field (a list's window, `created_since` say) as an aware
    time, None when it is unset."""
    if not request.HasField(name):
        return None
    value: datetime = getattr(request, name).ToDatetime(UTC)
    return value
