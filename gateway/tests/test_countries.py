"""A country is one ISO has assigned: two capitals such as `ZZ` (private use) are refused at
the gateway with a 400 naming the field, beside any other bad field of the body, as the
services refuse them.

The real gateway application against its real database; the services are never dialled, as
every request here is answered before one would be.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import gateway_alone
import httpx
import pytest_asyncio

from pos_devstack.testing import Infra

SECRET = "countries-test-secret-0123456789abcdef"
REASON = "must be an ISO 3166-1 alpha-2 code assigned to a country, e.g. US"


@pytest_asyncio.fixture(loop_scope="session")
async def http(infra: Infra) -> AsyncIterator[httpx.AsyncClient]:
    url = infra.service_database("gateway")
    key = await gateway_alone.merchant_key(url, SECRET, "Countries")
    async with gateway_alone.serve(gateway_alone.settings(url, SECRET), key) as (_, client):
        yield client


def _errors(answer: httpx.Response) -> list[tuple[str, str]]:
    assert answer.status_code == 400, answer.text
    return [(e["field"], e["reason"]) for e in answer.json()["errors"]]


async def test_a_location_or_customer_address_names_an_assigned_country(
    http: httpx.AsyncClient,
) -> None:
    for code in ("ZZ", "AA", "QM", "XA", "XK"):
        address = {"line1": "1 Main St", "country": code}
        created = await http.post(
            "/v1/locations",
            json={"name": "Depot", "currency": "USD", "address": address, "time_zone": "Mars/X"},
        )
        assert sorted(_errors(created)) == [
            ("address.country", REASON),
            ("time_zone", "must be an IANA time zone, e.g. Europe/Paris"),
        ]
        changed = await http.patch("/v1/locations/loc_1", json={"address": address})
        assert _errors(changed) == [("address.country", REASON)]
        customer = await http.post(
            "/v1/customers", json={"email": "a@b.co", "addresses": [address]}
        )
        assert _errors(customer) == [("addresses[0].country", REASON)]
        batch = {"customers": [{"external_id": "c1", "addresses": [address]}]}
        assert _errors(await http.post("/v1/customers/batch", json=batch)) == [
            ("customers[0].addresses[0].country", REASON)
        ]


async def test_a_location_time_zone_is_an_iana_zone_not_any_file_zoneinfo_opens(
    http: httpx.AsyncClient,
) -> None:
    # Refused at the gateway, before the service is dialled, creating or changing one.
    for name in ("localtime", "posixrules", "Factory", "right/UTC", "posix/Europe/Paris"):
        created = await http.post(
            "/v1/locations", json={"name": "Depot", "currency": "USD", "time_zone": name}
        )
        assert _errors(created) == [("time_zone", "must be an IANA time zone, e.g. Europe/Paris")]
        changed = await http.patch("/v1/locations/loc_1", json={"time_zone": name})
        assert _errors(changed) == [("time_zone", "must be an IANA time zone, e.g. Europe/Paris")]
