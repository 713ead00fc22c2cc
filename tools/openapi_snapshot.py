"""Write the gateway's OpenAPI document to gateway/openapi.json (the committed snapshot).

`make openapi` runs this after an intended API change; tests/test_openapi.py fails when the
served document and the snapshot differ, so an accidental change never ships unseen.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SNAPSHOT = Path(__file__).resolve().parent.parent / "gateway" / "openapi.json"


def current() -> dict[str, Any]:
    from pos_gateway.app import create_app
    from pos_gateway.settings import GatewaySettings

    settings = GatewaySettings(
        database_url="postgresql://snapshot@127.0.0.1/snapshot",
        gateway_secret_key="snapshot-only-not-a-real-secret-value",  # noqa: S106
        token_signing_keys=["snapshot-only-not-a-real-token-signing-key"],
        inventory_addr="inventory:50051",
        promotion_addr="promotion:50051",
        customer_addr="customer:50051",
        payment_addr="payment:50051",
        order_addr="order:50051",
        dispatcher_addr="dispatcher:50051",
    )
    document: dict[str, Any] = create_app(settings).openapi()
    return document


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    SNAPSHOT.write_text(render(current()))
    print(f"wrote {SNAPSHOT}")
