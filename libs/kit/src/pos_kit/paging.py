"""Cursor paging shared by every list RPC: opaque tokens, bounded page sizes."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime

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
