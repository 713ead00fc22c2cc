"""The admission bound: past it every request is answered 503 with Retry-After, none dropped."""

from __future__ import annotations

import asyncio
import contextlib

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from pos_gateway.admission import AdmissionLimit


def gated_app(limit: int) -> tuple[AdmissionLimit, asyncio.Event, list[str], asyncio.Event]:
    gate = asyncio.Event()
    full = asyncio.Event()  # set once `limit` requests are in progress
    entered: list[str] = []

    async def slow(request: Request) -> JSONResponse:
        entered.append(request.path_params["n"])
        if len(entered) >= limit:
            full.set()
        await gate.wait()
        return JSONResponse({"n": request.path_params["n"]})

    async def fails(request: Request) -> JSONResponse:
        raise RuntimeError("boom")

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    app = Starlette(
        routes=[
            Route("/v1/slow/{n}", slow),
            Route("/v1/fails", fails),
            Route("/healthz", healthz),
        ]
    )
    return AdmissionLimit(app, limit=limit), gate, entered, full


async def test_requests_past_the_bound_are_answered_503_with_retry_after() -> None:
    app, gate, entered, full = gated_app(limit=3)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://g") as c:
        calls = [asyncio.create_task(c.get(f"/v1/slow/{n}")) for n in range(3)]
        await asyncio.wait_for(full.wait(), timeout=10)
        shed = await asyncio.wait_for(
            asyncio.gather(*(c.get(f"/v1/slow/x{n}") for n in range(7))), timeout=10
        )
        # The probes are never shed, even when the bound is reached.
        assert (await c.get("/healthz")).status_code == 200
        gate.set()
        served = await asyncio.gather(*calls)
        assert [r.status_code for r in served] == [200, 200, 200]
        assert sorted(entered) == ["0", "1", "2"]  # no shed request reached the route
        for answer in shed:
            assert answer.status_code == 503
            assert answer.headers["retry-after"] == "1"
            assert answer.headers["content-type"] == "application/problem+json"
            assert answer.json()["code"] == "overloaded"
        # Capacity comes back when requests end, also when one fails.
        for _ in range(5):
            with contextlib.suppress(RuntimeError):
                await c.get("/v1/fails")
        assert app.in_flight == 0
        again = await asyncio.gather(*(c.get(f"/v1/slow/y{n}") for n in range(3)))
        assert [r.status_code for r in again] == [200, 200, 200]
