"""The benchmark's bulk loader (tools/bench_customers.py) writes what the gRPC import writes:
its search figures at 1,000,000 customers hold only if bulk-loaded customers are stored, and
found, exactly as imported ones are."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from pos.customer.v1 import customer_pb2

from .conftest import Caller, Service

pytestmark = pytest.mark.asyncio(loop_scope="session")
COUNT = 1_000
TOOL = Path(__file__).resolve().parents[3] / "tools" / "bench_customers.py"


def _tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_customers_under_test", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def _stored(service: Service, merchant: str) -> tuple[list[Any], list[Any]]:
    """The merchant's profiles and search terms, keyed by external_id (ids differ by design)."""
    profiles = await service.sql(
        "SELECT external_id, email, phone, given_name, family_name, addresses, tags, notes,"
        " birthday, consent_granted, consent_channel, status, version, loyalty_points, tier"
        " FROM customers WHERE merchant_id = :m ORDER BY external_id",
        m=merchant,
    )
    terms = await service.sql(
        "SELECT c.external_id, t.term FROM customer_terms t JOIN customers c"
        " ON c.merchant_id = t.merchant_id AND c.id = t.customer_id"
        " WHERE t.merchant_id = :m ORDER BY 1, 2",
        m=merchant,
    )
    return profiles, terms


async def _found(caller: Caller, request: customer_pb2.SearchCustomersRequest) -> set[str]:
    request.page_size = 100
    answer = await caller("SearchCustomers", request)
    return {c.external_id for c in answer.customers}


async def test_bulk_loaded_customers_are_stored_and_found_as_imported_ones(
    service: Service, merchant: Caller, other: Caller
) -> None:
    bench = _tool()
    bulk, imported = merchant, other
    await bench.bulk_load(service.runtime.engine, bulk.merchant, 0, COUNT)
    await bench.import_over_grpc(service.stub, imported.md(), 0, COUNT)

    bulk_profiles, bulk_terms = await _stored(service, bulk.merchant)
    imported_profiles, imported_terms = await _stored(service, imported.merchant)
    assert len(bulk_profiles) == COUNT and len(bulk_terms) >= 4 * COUNT
    assert bulk_profiles == imported_profiles
    assert bulk_terms == imported_terms

    family = bench.FAMILY
    searches = [
        customer_pb2.SearchCustomersRequest(email="CUSTOMER417@example.com"),
        customer_pb2.SearchCustomersRequest(phone="+1 415 000-0418"),
        customer_pb2.SearchCustomersRequest(query=family[0][:4]),  # "Love": 1 in 24
        customer_pb2.SearchCustomersRequest(query=f"zo {family[3]}0"),  # accent folded
        customer_pb2.SearchCustomersRequest(query="mull"),  # "Müller"
    ]
    for request in searches:
        expected = await _found(imported, request)
        assert expected, f"the imported customers answer {request}"
        assert await _found(bulk, request) == expected, request
