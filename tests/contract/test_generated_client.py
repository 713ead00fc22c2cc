"""A partner can generate an SDK from the served document and sell with it.

openapi-python-client writes a client package from /openapi.json (read from the running
gateway, then generated offline from the file); the test imports it and runs a small partner
flow through it, as a merchant with the demo data: list products, create a customer, read it
back, check out. Every answer comes back as a typed model of the document's schemas.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import datetime
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
    """Every answer arrives as the generated class of its schema, read by attribute: a field the
    document does not name would land in `additional_properties`, a missing one fail to parse."""
    models = _load("models")
    client = sdk.AuthenticatedClient(
        base_url=platform.platform.gateway_url,
        token=demo_merchant.key,
        raise_on_unexpected_status=True,  # an undocumented status fails the flow
    )
    with client:
        products = _load("api.catalog.list_products").sync(client=client)
        assert isinstance(products, models.ProductList), products
        mug = next(p for p in products.data if p.sku == "MUG-LOGO")
        assert isinstance(mug.price, models.Money) and mug.price.amount > 0
        assert mug.status == models.ProductStatus.ACTIVE
        one = _load("api.catalog.get_product").sync(mug.id, client=client)
        # The answer of GET /v1/products/{id} and an item of GET /v1/products: one type.
        assert isinstance(one, models.Product) and one.to_dict() == mug.to_dict()

        email = f"partner-{uuid.uuid4().hex[:8]}@example.com"
        made = _load("api.customers.create_customer").sync(
            client=client,
            body=models.CustomerIn(email=email, given_name="Grace"),
            idempotency_key=f"sdk-{uuid.uuid4()}",
        )
        assert isinstance(made, models.Customer), made
        again = _load("api.customers.get_customer").sync(made.id, client=client)
        assert isinstance(again, models.Customer), again
        assert (again.email, again.given_name, again.version) == (email, "Grace", made.version)
        assert isinstance(again.created_at, datetime) and again.created_at.tzinfo is not None

        missing = _load("api.customers.get_customer").sync("cus_nope", client=client)
        assert isinstance(missing, models.Problem) and missing.code == "resource_missing"

        locations = _load("api.locations_and_inventory.list_locations").sync(client=client)
        assert isinstance(locations, models.LocationList), locations
        location = locations.data[0]
        sale = _load("api.orders_and_payments.checkout").sync(
            client=client,
            body=models.CheckoutIn(
                location_id=location.id,
                customer_id=made.id,
                lines=[models.CheckoutLineIn(sku="MUG-LOGO", quantity=1)],
                tender_type=models.CheckoutInTenderType.CARD,
                card_token="tok_visa",
            ),
            idempotency_key=f"sdk-{uuid.uuid4()}",
        )
        assert isinstance(sale, models.Checkout), sale
        assert sale.order.customer_id == made.id
        assert [(line.sku, line.quantity) for line in sale.order.lines] == [("MUG-LOGO", 1)]
        assert sale.order.total.currency == location.currency
        # An open string: the payment vocabulary grows (commerce-states) without a new client.
        assert sale.payment.status == "captured"
        assert sale.payment.amount.to_dict() == sale.order.total.to_dict()
        order = _load("api.orders_and_payments.get_order").sync(sale.order.id, client=client)
        assert isinstance(order, models.Order) and order.to_dict() == sale.order.to_dict()
        for answer in (mug, made, location, sale, sale.order, sale.payment, order):
            assert not answer.additional_properties, answer
