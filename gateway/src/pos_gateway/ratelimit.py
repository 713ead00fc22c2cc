"""Per-credential token buckets, advertised on every answer.

Two stores with one interface (`decide(key) -> Decision`), chosen by RATE_LIMIT_STORE:
`memory` (this module: in-process, right for the local platform and one replica) and
`postgres` (shared_ratelimit: one budget per credential across every gateway replica).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Protocol


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

    def take(self, key: str, now: float | None = None) -> Decision:
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[key] = (tokens, now)
        return decision(allowed, tokens, self.rate, self.burst)
