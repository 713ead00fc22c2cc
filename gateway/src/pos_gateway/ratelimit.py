"""Per-credential token buckets, advertised on every answer.

Two stores with one interface (`decide(key) -> Decision`), chosen by RATE_LIMIT_STORE:
`memory` (this module: in-process, right for the local platform and one replica) and
`postgres` (shared_ratelimit: one budget per credential across every gateway replica).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol


def address_key(scope: Mapping[str, Any]) -> str:
    """The bucket of a request whose credential is not known (yet): its source address's.
    Answers given before a credential is read (401s, the open paths, `/v1/admin/`) spend it."""
    client = scope.get("client")
    return "address:" + (client[0] if client else "unknown")


@dataclass(frozen=True)
class Decision:
    allowed: bool
    remaining: int
    reset_seconds: int  # until the bucket is full again
    retry_after: int  # when not allowed: until one token is back


class Limiter(Protocol):
    @property
    def policy(self) -> str: ...

    def header(self, decision: Decision) -> str: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def decide(self, key: str) -> Decision: ...

    async def refund(self, key: str) -> None: ...


def decision(allowed: bool, tokens: float, rate: float, burst: int) -> Decision:
    """What a bucket holding `tokens` after the request tells the client."""
    reset = math.ceil((burst - tokens) / rate)
    retry = 0 if allowed else max(1, math.ceil((1.0 - tokens) / rate))
    return Decision(allowed, int(tokens), reset, retry)


def policy(rate: float, burst: int) -> str:
    # IETF RateLimit header fields: quota `burst` per window of burst/rate seconds.
    window = max(1, math.ceil(burst / rate))
    return f'"default";q={burst};w={window}'


def header(decision: Decision) -> str:
    return f'"default";r={decision.remaining};t={decision.reset_seconds}'


# How many buckets the in-memory store holds before it lets go of those that no longer matter:
# every source address without a credential has one, so without a bound a flood from many
# addresses (or IPv6 ones, each its own) grew the process for as long as it ran.
MAX_BUCKETS = 10_000


class TokenBuckets:
    def __init__(self, rate_per_second: float, burst: int) -> None:
        self.rate = rate_per_second
        self.burst = burst
        self.policy = policy(rate_per_second, burst)
        self._buckets: dict[str, tuple[float, float]] = {}

    def header(self, decision: Decision) -> str:
        return header(decision)

    async def start(self) -> None:
        """Nothing to connect: the buckets live in this process."""

    async def close(self) -> None:
        """Nothing to release."""

    async def decide(self, key: str) -> Decision:
        return self.take(key)

    async def refund(self, key: str) -> None:
        """Give back the token a request took (one that turned out not to count)."""
        self.give_back(key)

    def give_back(self, key: str) -> None:
        held = self._buckets.get(key)
        if held is not None:
            self._buckets[key] = (min(float(self.burst), held[0] + 1.0), held[1])

    def take(self, key: str, now: float | None = None) -> Decision:
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > MAX_BUCKETS:
            self._prune(now)
        return decision(allowed, tokens, self.rate, self.burst)

    def _prune(self, now: float) -> None:
        """Let go of every bucket that is full again (the same as no bucket); if that leaves
        too many still spending at once, keep the half that spent the most (the others start
        full again: a little lenient, only while that many spend at once)."""
        held = {
            key: min(float(self.burst), tokens + (now - last) * self.rate)
            for key, (tokens, last) in self._buckets.items()
        }
        for key, tokens in held.items():
            if tokens >= self.burst:
                del self._buckets[key]
        if len(self._buckets) > MAX_BUCKETS:
            kept = sorted(self._buckets, key=held.__getitem__)[: MAX_BUCKETS // 2]
            self._buckets = {key: self._buckets[key] for key in kept}
