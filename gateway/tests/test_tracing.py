"""HTTP spans never carry a card number, even from a URL the edge goes on to refuse."""

from __future__ import annotations

import json

import httpx
from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from pos_gateway.tracing import REDACTED, instrument


async def test_a_card_number_in_the_url_is_redacted_from_the_span() -> None:
    app = FastAPI()

    @app.get("/v1/things/{thing_id}")
    async def thing(thing_id: str) -> dict[str, str]:
        return {"id": thing_id}

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrument(app, tracer_provider=provider)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        await client.get("/v1/things/t1", params={"note": "4242 4242 4242 4242"})
        await client.get("/v1/things/4242424242424242")
        await client.get("/v1/things/t2", params={"note": "4242424242424241"})  # fails Luhn

    servers = [s for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert len(servers) == 3
    seen = [json.dumps(dict(s.attributes or {})) for s in servers]
    assert "4242" not in seen[0] + seen[1] and REDACTED in seen[0] and REDACTED in seen[1]
    assert "4242424242424241" in seen[2]  # an ordinary URL is recorded as it was
