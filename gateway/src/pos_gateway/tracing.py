"""HTTP spans, made only when traces are exported, and never carrying a card number.

The instrumentation records the request's URL, query string included, before the edge has
refused anything: a URL holding a card number has those attributes replaced, so the number
does not travel to the trace collector either.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from fastapi import FastAPI

from pos_kit.text import holds_card_number

REDACTED = "[redacted: card number]"
# Attributes that hold the URL or a part of it, in the old and the new HTTP conventions.
URL_ATTRIBUTES = ("http.url", "url.full", "http.target", "url.path", "url.query")


def redact_card_numbers(span: Any, scope: dict[str, Any]) -> None:
    """server_request_hook: the span's URL attributes go if the URL holds a card number."""
    if span is None or not span.is_recording():
        return
    query = scope.get("query_string", b"").decode("latin-1")
    url = urllib.parse.unquote_plus(f"{scope.get('path', '')}?{query}")
    if not holds_card_number(url):
        return
    present = getattr(span, "attributes", None) or {}
    for name in URL_ATTRIBUTES:
        if name in present:
            span.set_attribute(name, REDACTED)


def instrument(app: FastAPI, tracer_provider: Any = None) -> None:
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app, server_request_hook=redact_card_numbers, tracer_provider=tracer_provider
    )
