"""Per-credential token buckets, advertised on every answer.

In-process: right for the local platform and one gateway replica. Several replicas need a
shared store; the interface (take -> Decision) is what such a store must provide.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Decision:
    allowed: bool
    remaining: int
    reset_seconds: int  # until the bucket is full again
    retry_after: int  # when not allowed: until one token is back


class TokenBuckets:
    def __init__(self, rate_per_second: float, burst: int) -> None:
        self.rate = rate_per_second
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}

    @property
    def policy(self) -> str:
        # IETF RateLimit header fields: quota `burst` per window of burst/rate seconds.
        window = max(1, math.ceil(self.burst / self.rate))
        return f'"default";q={self.burst};w={window}'

    def take(self, key: str, now: float | None = None) -> Decision:
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[key] = (tokens, now)
        reset = math.ceil((self.burst - tokens) / self.rate)
        retry = 0 if allowed else max(1, math.ceil((1.0 - tokens) / self.rate))
        return Decision(allowed, int(tokens), reset, retry)

    def header(self, decision: Decision) -> str:
        return f'"default";r={decision.remaining};t={decision.reset_seconds}'
