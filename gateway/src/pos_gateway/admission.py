"""A bound on the requests the gateway works on at once; the excess is answered, never dropped.

Past the bound a request gets a 503 problem with `Retry-After` at once, before it costs a key
look-up, a database connection or a service call: a client learns to come back, while the
requests already admitted keep their latency. Without a bound an overloaded replica only grows
its queue (every waiting request holding memory and, in time, its caller's patience), and
nothing tells a load balancer to send traffic elsewhere.

The probes (`/healthz`, `/readyz`) and `/metrics` are never shed: an orchestrator that saw a
busy replica fail its liveness probe would restart it and turn load into an outage.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from pos_gateway.problems import Problem, problem_response

EXEMPT = frozenset({"/healthz", "/readyz", "/metrics"})


class AdmissionLimit:
    def __init__(self, app: ASGIApp, limit: int, retry_after_seconds: int = 1) -> None:
        self.app = app
        self.limit = limit
        self.retry_after = str(retry_after_seconds)
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            problem = Problem(
                503,
                "overloaded",
                "the gateway is at its limit of requests in progress; retry after the time "
                "in Retry-After (a POST with the same Idempotency-Key is safe to retry)",
                headers={"Retry-After": self.retry_after},
            )
            await problem_response(problem)(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
