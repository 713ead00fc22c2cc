"""Cursor paging shared by every list RPC: opaque tokens, bounded page sizes."""

from __future__ import annotations

import base64
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


def encode_token(last_key: str) -> str:
    return base64.urlsafe_b64encode(last_key.encode()).decode().rstrip("=")


def decode_token(token: str) -> str | None:
    if not token:
        return None
    try:
        return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except ValueError:  # binascii.Error, UnicodeDecodeError and non-ASCII input alike
        raise InvalidArgument(
            "page_token is not valid", [FieldViolation("page_token", "is not a valid cursor")]
        ) from None


@dataclass(frozen=True)
class ChangeCursor:
    """Position in a list ordered by (updated_at, id): where a change feed resumes."""

    updated_at: datetime
    id: str


def encode_change(updated_at: datetime, item_id: str) -> str:
    return encode_token(f"{updated_at.isoformat()}|{item_id}")


def decode_change(token: str) -> ChangeCursor | None:
    raw = decode_token(token)
    if raw is None:
        return None
    stamp, _, item_id = raw.partition("|")
    try:
        return ChangeCursor(datetime.fromisoformat(stamp), item_id)
    except ValueError:
        raise InvalidArgument(
            "page_token is not valid", [FieldViolation("page_token", "is not a valid cursor")]
        ) from None


T = TypeVar("T")


@dataclass(frozen=True)
class PageRequest:
    """One page of a list: by id after a cursor, or (with `since`) a change feed."""

    limit: int = DEFAULT_PAGE_SIZE
    after: str | None = None
    since: datetime | None = None
    cursor: ChangeCursor | None = None

    @property
    def fetch(self) -> int:
        """Rows to read: one more than the page, to learn whether another page follows."""
        return self.limit + 1


def page_request(request: Any) -> PageRequest:
    """From a list request's `page_size`, `page_token` and, if it has one, `updated_since`."""
    limit = page_size(request.page_size)
    if "updated_since" in request.DESCRIPTOR.fields_by_name and request.HasField("updated_since"):
        since = request.updated_since.ToDatetime(tzinfo=UTC)
        return PageRequest(limit, since=since, cursor=decode_change(request.page_token))
    return PageRequest(limit, after=decode_token(request.page_token))


def page_of(found: Sequence[T], page: PageRequest) -> tuple[list[T], str]:
    """The page's items and the token of the next page ("" at the end). Items have an `id`,
    and for a change feed an `updated_at`."""
    items = list(found[: page.limit])
    if len(found) <= page.limit:
        return items, ""
    last: Any = items[-1]
    if page.since is not None:
        return items, encode_change(last.updated_at, last.id)
    return items, encode_token(last.id)
