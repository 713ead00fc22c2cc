"""Subscriptions, their event type patterns, and the delivery schedule (plain Python)."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from enum import StrEnum
from urllib.parse import urlsplit

from pos_gateway.schemas.events import EVENT_TYPES as PUBLIC_TYPES
from pos_kit.errors import FieldViolation, raise_if, require

# The public event types: the gateway's document names them, and a subscription may name only
# these, a `<resource>.*` wildcard over them, or `*`: a typo must fail at creation, not
# silently receive nothing for ever.
EVENT_TYPES = frozenset(PUBLIC_TYPES)
RESOURCES = frozenset(t.split(".")[0] for t in EVENT_TYPES)
# Sent by "send a test event" to one subscription only; never in the feed.
TEST_EVENT_TYPE = "webhook_subscription.tested"
DISABLED_EVENT_TYPE = "webhook_subscription.disabled"

MAX_URL_LENGTH = 2048
MAX_TYPES = 64
MAX_DESCRIPTION = 500


class Status(StrEnum):
    ENABLED = "enabled"
    DISABLED = "disabled"


class DisabledReason(StrEnum):
    BY_REQUEST = "by_request"
    ENDPOINT_GONE = "endpoint_gone"  # the receiver answered 410 Gone
    FAILING = "failing"  # every attempt failed for longer than FAILING_DISABLES_AFTER


def type_pattern_ok(pattern: str) -> bool:
    if pattern == "*" or pattern in EVENT_TYPES:
        return True
    resource, _, rest = pattern.partition(".")
    return rest == "*" and resource in RESOURCES


def matches(patterns: list[str], event_type: str) -> bool:
    resource = event_type.partition(".")[0]
    return any(p in ("*", event_type, f"{resource}.*") for p in patterns)


def check_types(patterns: list[str], name: str = "event_types") -> list[FieldViolation]:
    problems = require(0 < len(patterns) <= MAX_TYPES, name, f"name 1 to {MAX_TYPES} types")
    for i, pattern in enumerate(patterns):
        problems += require(
            type_pattern_ok(pattern),
            f"{name}[{i}]",
            "must be a public event type, `<resource>.*` or `*`",
        )
    return problems


def check_url(url: str, name: str = "url") -> list[FieldViolation]:
    """The URL's form; where it points is checked against the network rules apart
    (adapters/network.py), at creation and again at every connection."""
    if len(url) > MAX_URL_LENGTH:
        return [FieldViolation(name, f"must be at most {MAX_URL_LENGTH} characters")]
    try:
        parts = urlsplit(url)
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:
        return [FieldViolation(name, "is not a URL")]
    return (
        require(parts.scheme in ("http", "https"), name, "must be an http or https URL")
        + require(bool(parts.hostname), name, "must name a host")
        + require(parts.username is None and parts.password is None, name, "has credentials")
        + require(port_ok, name, "has an invalid port")
        + require(not parts.fragment, name, "must not have a fragment")
        + require(re.fullmatch(r"[\x21-\x7e]+", url) is not None, name, "must be plain ASCII")
    )  # fmt: skip


def check_description(description: str) -> list[FieldViolation]:
    return require(
        len(description) <= MAX_DESCRIPTION,
        "description",
        f"must be at most {MAX_DESCRIPTION} characters",
    )


def validate_subscription(url: str, patterns: list[str], description: str) -> None:
    raise_if(check_url(url) + check_types(patterns) + check_description(description))


@dataclass
class Subscription:
    id: str
    url: str
    event_types: list[str]
    description: str
    status: Status = Status.ENABLED
    disabled_reason: str = ""
    version: int = 1
    created_at: datetime | None = None
    updated_at: datetime | None = None
    failing_since: datetime | None = None
    events: list[object] = field(default_factory=list)


# --- the delivery schedule --------------------------------------------------------------------

# Waits after each failed attempt: quick at first (a blip), then hours apart, adding up to a
# little over three days, so a receiver down for a long weekend still gets everything.
RETRY_DELAYS = (
    timedelta(seconds=5),
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=14),
    timedelta(hours=20),
    timedelta(hours=24),
)
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1
# A subscription none of whose attempts succeeded for this long is disabled (and an event says
# so) when one of its deliveries runs out of attempts.
FAILING_DISABLES_AFTER = timedelta(days=3)
# Jitter only lengthens a wait (by up to this fraction): receivers coming back are not hit by
# every queued retry at once, and the schedule never adds up to less than three days.
JITTER = 0.1
# A Retry-After further away than this is capped: a receiver cannot park deliveries for ever.
MAX_RETRY_AFTER = timedelta(hours=24)


class Verdict(StrEnum):
    SUCCEEDED = "succeeded"
    RETRY = "retry"
    GONE = "gone"  # 410: disable the subscription now


def verdict(status_code: int) -> Verdict:
    """No answer at all (a timeout, a refused connection) is status 0: retried."""
    if 200 <= status_code < 300:
        return Verdict.SUCCEEDED
    if status_code == 410:
        return Verdict.GONE
    return Verdict.RETRY


def next_attempt(
    attempts_made: int,
    now: datetime,
    retry_after: timedelta | None = None,
    rng: random.Random | None = None,
) -> datetime | None:
    """When to try again after `attempts_made` failed attempts, or None: give up. A 429's
    Retry-After is a floor, never a way to retry sooner than the schedule."""
    if attempts_made >= MAX_ATTEMPTS:
        return None
    base = RETRY_DELAYS[attempts_made - 1]
    wait = base * (1 + JITTER * (rng or random).random())
    if retry_after is not None:
        wait = max(wait, min(retry_after, MAX_RETRY_AFTER))
    return now + wait


def parse_retry_after(value: str | None, now: datetime) -> timedelta | None:
    """Seconds, or an HTTP date; anything unreadable is ignored (the schedule applies)."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        # Any wait past the cap is the cap: a longer figure (up to the header's 8 KiB of
        # digits) overflowed timedelta, and the failure it was part of went unrecorded.
        if len(value) > len(str(int(MAX_RETRY_AFTER.total_seconds()))):
            return MAX_RETRY_AFTER
        return min(timedelta(seconds=int(value)), MAX_RETRY_AFTER)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(when - now, timedelta(0))
