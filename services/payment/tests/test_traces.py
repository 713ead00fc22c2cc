"""Traces of payments carry no card token and no card number: the gRPC and SQL spans the
platform exports (OTEL_EXPORTER_OTLP_ENDPOINT set) are recorded here and searched."""

from __future__ import annotations

import json
from collections.abc import Iterator

import grpc
import pytest
from opentelemetry.instrumentation.grpc import GrpcAioInstrumentorClient, GrpcAioInstrumentorServer
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from pos.common.v1 import money_pb2
from pos.payment.v1 import payment_pb2, payment_pb2_grpc
from pos_devstack.testing import TEST_CARD_NUMBERS, Infra, serve_in_process
from pos_kit.ids import new_id

pytestmark = pytest.mark.asyncio(loop_scope="session")
P = payment_pb2
MD = (("x-merchant-id", "mer_traces"),)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """The instrumentation production turns on, recording into memory for this test only."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    server, client, sql = (
        GrpcAioInstrumentorServer(),
        GrpcAioInstrumentorClient(),
        SQLAlchemyInstrumentor(),
    )
    server.instrument(tracer_provider=provider)  # type: ignore[no-untyped-call]
    client.instrument(tracer_provider=provider)  # type: ignore[no-untyped-call]
    # The instrumentation declares SQLAlchemy 2.1 outside its tested range; it still works.
    sql.instrument(tracer_provider=provider, skip_dep_check=True)
    try:
        yield exporter
    finally:
        sql.uninstrument()
        client.uninstrument()  # type: ignore[no-untyped-call]
        server.uninstrument()  # type: ignore[no-untyped-call]


def _text(span: ReadableSpan) -> str:
    parts = [span.name, json.dumps(dict(span.attributes or {}), default=str)]
    parts += [e.name + json.dumps(dict(e.attributes or {}), default=str) for e in span.events]
    return "\n".join(parts)


async def test_no_token_or_card_number_in_any_span(
    infra: Infra, spans: InMemorySpanExporter
) -> None:
    tokens = ["tok_visa", "tok_mastercard", "tok_declined"]
    async with serve_in_process("payment", infra) as svc:
        stub = payment_pb2_grpc.PaymentServiceStub(svc.channel)
        for token in tokens:
            await stub.CreatePayment(
                P.CreatePaymentRequest(
                    request_id=new_id("req"),
                    order_id="ord_traced",
                    tender_type=P.TENDER_TYPE_CARD,
                    amount=money_pb2.Money(amount=1234, currency="USD"),
                    card_token=token,
                    capture=True,
                ),
                metadata=MD,
                timeout=10,
            )
        for number in TEST_CARD_NUMBERS[:3]:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.CreatePayment(
                    P.CreatePaymentRequest(
                        request_id=new_id("req"),
                        order_id="ord_traced",
                        tender_type=P.TENDER_TYPE_CARD,
                        amount=money_pb2.Money(amount=1234, currency="USD"),
                        card_token=number,
                    ),
                    metadata=MD,
                    timeout=10,
                )
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    recorded = spans.get_finished_spans()
    text = "\n".join(_text(s) for s in recorded)
    # The tripwires: the spans were recorded, and they do hold what the calls did.
    assert "CreatePayment" in text
    assert "db.name" in text  # the database spans too
    assert not [t for t in tokens if t in text]
    digits = "".join(c for c in text if c.isdigit() or c == "\n")
    for number in TEST_CARD_NUMBERS:
        plain = number.replace(" ", "").replace("-", "")
        assert plain not in digits and number not in text
