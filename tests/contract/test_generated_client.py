"""A partner can generate an SDK from the served document and sell with it.

openapi-python-client writes a client package from /openapi.json (read from the running
gateway, then generated offline from the file); the test imports it and runs a small partner
flow through it, as a merchant with the demo data: list products, create a customer, read it
back, check out.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from pos_devstack.testing import Running

pytestmark = pytest.mark.e2e

PACKAGE = "omnitill_client"


@pytest.fixture
def sdk(platform: Running, tmp_path: Path) -> Iterator[ModuleType]:
    document = tmp_path / "openapi.json"
    document.write_bytes(platform.http.get("/openapi.json").content)
    config = tmp_path / "config.yaml"
    # No post hooks: the generated code is imported, not committed, so it needs no formatting.
    config.write_text(f"package_name_override: {PACKAGE}\npost_hooks: []\n")
    generator = Path(sys.executable).parent / "openapi-python-client"
    run = subprocess.run(
        [
            str(generator), "generate", "--path", str(document), "--config", str(config),
            "--meta", "none", "--output-path", str(tmp_path / PACKAGE), "--fail-on-warning",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(tmp_path))
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def _load(name: str) -> Any:
    return importlib.import_module(f"{PACKAGE}.{name}")


def test_a_generated_client_runs_a_partner_flow(
    platform: Running, demo_merchant: Any, sdk: ModuleType
) -> None:
    models = _load("models")
    problem = models.Problem
    client = sdk.AuthenticatedClient(
        base_url=platform.platform.gateway_url,
        token=demo_merchant.key,
        raise_on_unexpected_status=True,  # an undocumented status fails the flow
    )
    with client:
        products = _load("api.catalog.list_products").sync(client=client)
        assert not isinstance(products, problem)
        skus = {p["sku"] for p in products.to_dict()["data"]}
        assert "MUG-LOGO" in skus

        email = f"partner-{uuid.uuid4().hex[:8]}@example.com"
        made = _load("api.customers.create_customer").sync(
            client=client,
            body=models.CustomerIn(email=email, given_name="Grace"),
            idempotency_key=f"sdk-{uuid.uuid4()}",
        )
        assert not isinstance(made, problem), made
        customer_id = made.to_dict()["id"]
        again = _load("api.customers.get_customer").sync(customer_id, client=client)
        assert again.to_dict()["email"] == email

        missing = _load("api.customers.get_customer").sync("cus_nope", client=client)
        assert isinstance(missing, problem) and missing.code == "resource_missing"

        locations = _load("api.locations_and_inventory.list_locations").sync(client=client)
        location = locations.to_dict()["data"][0]
        sale = _load("api.orders_and_payments.checkout").sync(
            client=client,
            body=models.CheckoutIn(
                location_id=location["id"],
                customer_id=customer_id,
                lines=[models.CheckoutLineIn(sku="MUG-LOGO", quantity=1)],
                tender_type=models.CheckoutInTenderType.CARD,
                card_token="tok_visa",
            ),
            idempotency_key=f"sdk-{uuid.uuid4()}",
        )
        assert not isinstance(sale, problem), sale
        order = sale.to_dict()["order"]
        assert order["customer_id"] == customer_id
        assert sale.to_dict()["payment"]["status"] == "captured"
