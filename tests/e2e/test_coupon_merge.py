"""A coupon once per customer after a customer merge, every service a separate process: the
duplicate is the same person, so a use under either id is the person's use. A checkout naming
the duplicate (the order the survivor's) or the survivor is refused once either used it, and
concurrent checkouts under both ids sell one. A merchant of its own: no other test's checkout
sees these offers."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import psycopg
import pytest

from pos_devstack.http_checks import post_answered
from pos_devstack.testing import Running

pytestmark = pytest.mark.e2e


def _post(http: httpx.Client, path: str, body: dict[str, Any]) -> httpx.Response:
    return http.post(path, json=body, headers={"Idempotency-Key": str(uuid.uuid4())})


def _ok(answer: httpx.Response, status: int = 201) -> Any:
    assert answer.status_code == status, answer.text
    return answer.json()


@pytest.fixture(scope="module")
def shop(platform: Running) -> Iterator[tuple[httpx.Client, str]]:
    with platform.new_merchant(f"Merges {uuid.uuid4().hex[:8]}") as http:
        store = _ok(
            _post(http, "/v1/locations", {"name": "Merge St", "currency": "USD", "tax_rate_bps": 0})
        )
        _ok(
            _post(
                http,
                "/v1/products",
                {"sku": "MRG-TEE", "name": "Tee", "price": {"amount": 2000, "currency": "USD"}},
            )
        )
        yield http, store["id"]


def _welcome(http: httpx.Client) -> tuple[str, str]:
    """A 50 % offer with one code, once per customer: (promotion id, code)."""
    promo = _ok(
        _post(
            http,
            "/v1/promotions",
            {"name": "Welcome", "percent_off_bps": 5000, "requires_coupon": True},
        )
    )
    code = f"WELCOME-{uuid.uuid4().hex[:8].upper()}"
    coupons = {"codes": [code], "max_uses_per_customer": 1}
    _ok(_post(http, f"/v1/promotions/{promo['id']}/coupons", coupons))
    return promo["id"], code


def _customer(http: httpx.Client) -> str:
    made = _post(http, "/v1/customers", {"email": f"{uuid.uuid4().hex[:10]}@example.com"})
    return str(_ok(made)["id"])


def _sale(store: str, customer: str, code: str) -> dict[str, Any]:
    return {
        "location_id": store,
        "customer_id": customer,
        "lines": [{"sku": "MRG-TEE", "quantity": 1}],
        "tender_type": "card",
        "card_token": "tok_visa",
        "coupon_codes": [code],
    }


def _merged_into(platform: Running, service: str, query: str, duplicate: str) -> str | None:
    url = platform.platform.env_for(service)["DATABASE_URL"].replace("+psycopg", "")
    with psycopg.connect(url) as conn:
        row = conn.execute(query, (duplicate,)).fetchone()
    return row[0] if row else None


def _merge(platform: Running, http: httpx.Client, survivor: str, duplicate: str) -> None:
    """Merged at the customer service, and heard by the order service (which names the
    survivor on the duplicate's orders) and this one (which counts them as one)."""
    _ok(_post(http, f"/v1/customers/{survivor}/merge", {"duplicate_id": duplicate}), 200)
    heard = {
        "order": "SELECT merged_into FROM known_customers WHERE customer_id = %s",
        "promotion": "SELECT survivor_id FROM customer_merges WHERE duplicate_id = %s",
    }
    deadline = time.monotonic() + 30
    for service, query in heard.items():
        while _merged_into(platform, service, query, duplicate) != survivor:
            assert time.monotonic() < deadline, f"the {service} service never learnt the merge"
            time.sleep(0.1)


def test_a_once_per_customer_coupon_is_used_once_by_a_merged_customer(
    platform: Running, shop: tuple[httpx.Client, str]
) -> None:
    http, store = shop
    promotion_id, code = _welcome(http)
    survivor, duplicate = _customer(http), _customer(http)
    first = _ok(_post(http, "/v1/checkouts", _sale(store, duplicate, code)))["order"]
    assert first["discount_total"]["amount"] == 1000
    again = _post(http, "/v1/checkouts", _sale(store, duplicate, code))
    assert (again.status_code, again.json()["code"]) == (409, "coupon_customer_limit")

    _merge(platform, http, survivor, duplicate)
    # Naming the duplicate (the order would be the survivor's) or the survivor: used already.
    for named in (duplicate, survivor):
        answer = _post(http, "/v1/checkouts", _sale(store, named, code))
        assert answer.status_code == 409, answer.text
        assert answer.json()["code"] == "coupon_customer_limit"
        keep = ("location_id", "customer_id", "lines", "coupon_codes")
        cart = {k: v for k, v in _sale(store, named, code).items() if k in keep}
        quote = _ok(_post(http, "/v1/carts/calculate", cart), 200)
        assert [r["reason"] for r in quote["rejected_coupons"]] == ["coupon_customer_limit"]
    [coupon] = http.get(f"/v1/promotions/{promotion_id}/coupons").json()["data"]
    assert (coupon["redeemed_count"], coupon["reserved_count"]) == (1, 0)
    # Another customer still gets it.
    _ok(_post(http, "/v1/checkouts", _sale(store, _customer(http), code)))


def test_concurrent_checkouts_under_both_ids_of_a_merged_customer_sell_one(
    platform: Running, shop: tuple[httpx.Client, str]
) -> None:
    """Through the platform both reach the promotion service as the survivor (the order
    service resolves the duplicate); `services/promotion/tests/test_offers_grpc.py -k
    concurrent_checkouts_under_both_ids` names both ids to the reservation itself."""
    http, store = shop
    promotion_id, code = _welcome(http)
    survivor, duplicate = _customer(http), _customer(http)
    _merge(platform, http, survivor, duplicate)

    def sell(n: int) -> tuple[int, Any]:
        with httpx.Client(base_url=str(http.base_url), headers=http.headers, timeout=60) as c:
            body = _sale(store, survivor if n % 2 else duplicate, code)
            # A busy machine may answer 503 (a deadline): a till retries with the same key
            # until it has an answer (post_answered).
            answer = post_answered(c, "/v1/checkouts", body)
            return answer.status_code, answer.json()

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(sell, range(8)))
    sold = [r["order"] for s, r in results if s == 201]
    assert len(sold) == 1, [(s, r.get("code")) for s, r in results]
    assert sold[0]["customer_id"] == survivor
    assert {(s, r["code"]) for s, r in results if s != 201} == {(409, "coupon_customer_limit")}
    [coupon] = http.get(f"/v1/promotions/{promotion_id}/coupons").json()["data"]
    assert coupon["redeemed_count"] + coupon["reserved_count"] == 1
