"""Manual discounts and price overrides at checkout, through the gateway: recorded on the order
line with the reason and who asked; at a register, a cashier gives a discount within the role's
limit alone, while a price override or a discount above the limit needs a manager's override."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from pos_devstack.testing import Running

pytestmark = pytest.mark.e2e


def _post(http: httpx.Client, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
    return http.post(path, json=body or {}, headers={"Idempotency-Key": str(uuid.uuid4())})


def _sale(location: str, manual: dict[str, Any] | None, **extra: Any) -> dict[str, Any]:
    line: dict[str, Any] = {"sku": "MUG-LOGO", "quantity": 2}
    if manual is not None:
        line["manual"] = manual
    return {
        "location_id": location,
        "lines": [line],
        "tender_type": "cash",
        "cash_tendered": {"amount": 100_000, "currency": "USD"},
        **extra,
    }


def _paired_till(
    platform: Running, cashier: tuple[str, str], manager: tuple[str, str]
) -> tuple[str, dict[str, str], str, str]:
    """A cashier and a manager (name, PIN) at the first store, and a register there paired:
    the store, the members by role, the register and its credential."""
    http = platform.http
    here = http.get("/v1/locations").json()["data"][0]["id"]
    tag = uuid.uuid4().hex[:4]
    members = {}
    for (name, pin), role in ((cashier, "cashier"), (manager, "manager")):
        made = _post(
            http,
            "/v1/staff",
            {"name": f"{name} {tag}", "role": role, "location_ids": [here], "pin": pin},
        )
        assert made.status_code == 201, made.text
        members[role] = made.json()["id"]
    register = _post(http, "/v1/registers", {"location_id": here, "name": f"Till {tag}"}).json()
    code = _post(http, f"/v1/registers/{register['id']}/pairing-codes").json()["code"]
    paired = httpx.post(platform.platform.gateway_url + "/v1/registers/pair", json={"code": code})
    assert paired.status_code == 201, paired.text
    return here, members, register["id"], paired.json()["credential"]


@contextmanager
def _signed_in(
    platform: Running, credential: str, staff_id: str, pin: str
) -> Iterator[httpx.Client]:
    """A client of the paired register with the member signed in at it."""
    with httpx.Client(
        base_url=platform.platform.gateway_url,
        timeout=15.0,
        headers={"Authorization": f"Bearer {credential}"},
    ) as till:
        signed = _post(till, "/v1/register-sessions", {"staff_id": staff_id, "pin": pin})
        assert signed.is_success, signed.text
        # Cash goes in the drawer of the shift open there: one is opened, or is open already.
        shift = _post(till, "/v1/shifts", {"opening_float": {"amount": 0, "currency": "USD"}})
        assert shift.is_success or shift.json()["code"] == "shift_already_open", shift.text
        yield till


def _manual_discounts(order: dict[str, Any]) -> list[tuple[str, int, str, str]]:
    return [
        (d["promotion_id"], d["amount"]["amount"], d["reason"], d["requested_by"])
        for ln in order["lines"]
        for d in ln["discounts"]
        if d["promotion_id"] == "manual"
    ]


def test_a_manual_line_and_order_discount_are_recorded_with_reason_and_who(
    platform: Running,
) -> None:
    http = platform.http
    here = http.get("/v1/locations").json()["data"][0]["id"]
    body = _sale(
        here,
        {"kind": "percent", "value": 2000, "reason": "damaged box"},
        order_manual={"kind": "amount", "value": 100, "reason": "loyal customer"},
    )
    preview = _post(
        http, "/v1/carts/calculate", {k: body[k] for k in ("location_id", "lines", "order_manual")}
    )
    sold = _post(http, "/v1/checkouts", body)
    assert sold.status_code == 201, sold.text
    order = sold.json()["order"]
    found = _manual_discounts(order)
    # The reason as given, in the promotion service's words ("Manual: damaged box").
    reasons = {reason.removeprefix("Manual: ") for _, _, reason, _ in found}
    assert reasons == {"damaged box", "loyal customer"}
    assert all(who.startswith("key:") for *_, who in found)
    # Mugs 2 x 12.00, 20 % off the line: 4.80; then 1.00 off the order.
    assert sum(a for _, a, r, _ in found if r.endswith("damaged box")) == 480
    assert sum(a for _, a, r, _ in found if r.endswith("loyal customer")) == 100
    assert preview.status_code == 200, preview.text
    assert preview.json()["total"] == order["total"]
    # A new price above the list price is refused, naming the field, and nothing is sold.
    dearer = _post(
        http, "/v1/checkouts", _sale(here, {"kind": "price", "value": 99_999, "reason": "typo"})
    )
    assert dearer.status_code == 400, dearer.text
    assert "lines[0].manual.value" in {e["field"] for e in dearer.json()["errors"]}


def test_a_manual_amount_off_a_line_comes_off_each_unit_in_the_preview_and_the_sale(
    platform: Running,
) -> None:
    """1.00 off a line of 3 mugs is 1.00 off each mug, 3.00 off the line, as `amount` is
    documented: the cart preview says what the checkout then records, to the cent."""
    http = platform.http
    here = http.get("/v1/locations").json()["data"][0]["id"]
    body = _sale(here, {"kind": "amount", "value": 100, "reason": "scratched"})
    body["lines"][0]["quantity"] = 3
    preview = _post(http, "/v1/carts/calculate", {k: body[k] for k in ("location_id", "lines")})
    assert preview.status_code == 200, preview.text
    sold = _post(http, "/v1/checkouts", body)
    assert sold.status_code == 201, sold.text
    order = sold.json()["order"]
    assert [a for _, a, _, _ in _manual_discounts(order)] == [300]
    assert _manual_discounts(preview.json()) == _manual_discounts(order)
    assert [ln["discount_total"] for ln in preview.json()["lines"]] == [
        ln["discount_total"] for ln in order["lines"]
    ]
    for field in ("subtotal", "discount_total", "tax_total", "total"):
        assert preview.json()[field] == order[field], field


def test_a_cashier_needs_a_manager_for_a_price_override_or_a_discount_above_the_limit(
    platform: Running,
) -> None:
    http = platform.http
    here, members, register_id, credential = _paired_till(
        platform, ("Cassie", "2468"), ("Manny", "8642")
    )
    with _signed_in(platform, credential, members["cashier"], "2468") as till:
        within = _post(
            till,
            "/v1/checkouts",
            _sale(here, {"kind": "percent", "value": 500, "reason": "scuffed"}),
        )
        assert within.status_code == 201, within.text
        assert _manual_discounts(within.json()["order"])[0][3] == members["cashier"]
        # 10 % on the line and 10 % on the order, each within the limit, are 19 % off it.
        both = _sale(
            here,
            {"kind": "percent", "value": 1000, "reason": "scuffed"},
            order_manual={"kind": "percent", "value": 1000, "reason": "loyal"},
        )
        stacked = _post(till, "/v1/checkouts", both)
        assert (stacked.status_code, stacked.json()["code"]) == (403, "permission_required")
        assert stacked.json()["permission"] == "discount_above_limit"
        declined: list[str] = []
        sold: dict[str, str] = {}
        for manual, permission in (
            ({"kind": "price", "value": 900, "reason": "price match"}, "price_override"),
            ({"kind": "percent", "value": 2500, "reason": "end of line"}, "discount_above_limit"),
        ):
            alone = _post(till, "/v1/checkouts", _sale(here, manual))
            assert (alone.status_code, alone.json()["code"]) == (403, "permission_required")
            assert alone.json()["permission"] == permission
            granted = _post(
                till,
                "/v1/overrides",
                {"manager_id": members["manager"], "pin": "8642", "permission": permission},
            )
            assert granted.status_code == 201, granted.text
            # A declined card sold nothing: the override waits for the next attempt, and the
            # attempt is no sale in the audit log.
            card = {**_sale(here, manual), "tender_type": "card", "card_token": "tok_declined"}
            del card["cash_tendered"]
            refused = _post(till, "/v1/checkouts", card)
            assert (refused.status_code, refused.json()["code"]) == (402, "payment_declined")
            declined.append(refused.json()["order"]["id"])
            done = _post(till, "/v1/checkouts", _sale(here, manual))
            assert done.status_code == 201, done.text
            sold[permission] = done.json()["order"]["id"]
            recorded = _manual_discounts(done.json()["order"])
            assert recorded and recorded[0][2].endswith(str(manual["reason"]))
            assert recorded[0][3] == members["cashier"]
    # One audit entry per guarded action, naming the cashier who asked and the manager who
    # approved it; the sale within the cashier's own limit needed no one.
    entries = http.get("/v1/audit-log", params={"register_id": register_id, "limit": 200}).json()[
        "data"
    ]
    guarded = [(e["action"], e["staff_id"], e["approved_by"], e["resource_id"]) for e in entries
               if e["action"] in ("price_override", "discount")]  # fmt: skip
    assert sorted(guarded) == [
        ("discount", members["cashier"], members["manager"], sold["discount_above_limit"]),
        ("price_override", members["cashier"], members["manager"], sold["price_override"]),
    ]
    sales = {e["resource_id"] for e in entries if e["action"] == "sale"}
    assert set(sold.values()) <= sales
    assert not sales & set(declined)


def test_an_override_taken_by_a_sale_whose_card_answer_was_lost_stays_with_that_sale(
    platform: Running,
) -> None:
    """A manager's override taken by a sale whose card answer was lost (503
    `payment_pending`: the sale may still be finished) stays with that sale: another sale
    above the limit is refused, and the retry under the first sale's Idempotency-Key uses the
    override again until it answers how the sale ended, which the audit log then names."""
    http = platform.http
    here, members, register_id, credential = _paired_till(
        platform, ("Lena", "3579"), ("Otto", "9753")
    )
    half = {"kind": "percent", "value": 5000, "reason": "clearance"}

    def card(token: str) -> dict[str, Any]:
        body = {**_sale(here, half), "tender_type": "card", "card_token": token}
        del body["cash_tendered"]
        return body

    with _signed_in(platform, credential, members["cashier"], "3579") as till:
        granted = _post(
            till,
            "/v1/overrides",
            {"manager_id": members["manager"], "pin": "9753", "permission": "discount_above_limit"},
        )
        assert granted.status_code == 201, granted.text
        key = str(uuid.uuid4())

        def first() -> httpx.Response:
            return till.post(
                "/v1/checkouts", json=card("tok_timeout"), headers={"Idempotency-Key": key}
            )

        lost = first()
        assert (lost.status_code, lost.json()["code"]) == (503, "payment_pending"), lost.text
        # The manager approved one sale: the next one above the limit is refused.
        other = _post(till, "/v1/checkouts", card("tok_visa"))
        assert other.status_code == 403, other.text
        assert other.json()["code"] == "permission_required"
        assert other.json()["permission"] == "discount_above_limit"
        # The first sale's retry is its own: pending until the card is settled, then the sale.
        deadline = time.monotonic() + 180
        while (again := first()).status_code == 503:
            assert again.json()["code"] == "payment_pending", again.text
            assert time.monotonic() < deadline, "the card was never settled"
            time.sleep(1)
        assert again.status_code == 201, again.text
        sold = again.json()["order"]
        # 2 x 12.00, half off: the discount the manager approved, once.
        assert [(a, r.removeprefix("Manual: ")) for _, a, r, _ in _manual_discounts(sold)] == [
            (1200, "clearance")
        ]
    entries = http.get("/v1/audit-log", params={"register_id": register_id, "limit": 200}).json()[
        "data"
    ]
    discounts = [(e["staff_id"], e["approved_by"], e["resource_id"]) for e in entries
                 if e["action"] == "discount"]  # fmt: skip
    assert discounts == [(members["cashier"], members["manager"], sold["id"])]
    assert [e["resource_id"] for e in entries if e["action"] == "sale"] == [sold["id"]]


def test_a_cashier_cannot_stack_discounts_above_the_limit_across_a_drafts_edits(
    platform: Running,
) -> None:
    """A draft's edit is judged on the manual discounts the draft carries after it (those it
    keeps and those the edit gives), line and order together, as one request giving them all
    is: 10 % on a line, then 10 % on the order, is 19 % off that line."""
    here, members, _, credential = _paired_till(platform, ("Cara", "1357"), ("Mona", "7531"))
    line_off = {"kind": "percent", "value": 1000, "reason": "scuffed"}
    order_off = {"kind": "percent", "value": 1000, "reason": "loyal"}
    with _signed_in(platform, credential, members["cashier"], "1357") as till:

        def patch(order_id: str, body: dict[str, Any]) -> httpx.Response:
            return till.patch(
                f"/v1/orders/{order_id}", json=body,
                headers={"Idempotency-Key": str(uuid.uuid4())},
            )  # fmt: skip

        def draft(manual: dict[str, Any] | None, **extra: Any) -> dict[str, Any]:
            line: dict[str, Any] = {"sku": "MUG-LOGO", "quantity": 2}
            if manual is not None:
                line["manual"] = manual
            made = _post(
                till,
                "/v1/orders",
                {"location_id": here, "lines": [line], "status": "draft", **extra},
            )
            assert made.status_code == 201, made.text
            order: dict[str, Any] = made.json()
            return order

        # The line's 10 % kept, the order's 10 % added: refused, the draft unchanged.
        on_line = draft(line_off)
        stacked = patch(on_line["id"], {"order_manual": order_off})
        assert (stacked.status_code, stacked.json()["code"]) == (403, "permission_required")
        assert stacked.json()["permission"] == "discount_above_limit"
        # The order's 10 % kept, a line's 10 % added: refused as well.
        on_order = draft(None, order_manual=order_off)
        relined = patch(on_order["id"], {"lines": [{"sku": "MUG-LOGO", "quantity": 3,
                                                    "manual": line_off}]})  # fmt: skip
        assert (relined.status_code, relined.json()["code"]) == (403, "permission_required")
        for order in (on_line, on_order):
            now = till.get(f"/v1/orders/{order['id']}").json()
            assert now["version"] == order["version"]
            assert now["total"] == order["total"]
        # Within the limit over the whole draft, an edit needs no one: the line's discount
        # replaced by the order's, or a note.
        swapped = patch(on_line["id"], {"lines": [{"sku": "MUG-LOGO", "quantity": 2}],
                                        "order_manual": order_off})  # fmt: skip
        assert swapped.status_code == 200, swapped.text
        assert patch(on_order["id"], {"notes": "gift"}).status_code == 200
        # A manager's override allows the stacked discounts for that one edit.
        granted = _post(
            till,
            "/v1/overrides",
            {"manager_id": members["manager"], "pin": "7531", "permission": "discount_above_limit"},
        )
        assert granted.status_code == 201, granted.text
        approved = patch(on_order["id"], {"lines": [{"sku": "MUG-LOGO", "quantity": 2,
                                                     "manual": line_off}]})  # fmt: skip
        assert approved.status_code == 200, approved.text
        # 2 x 12.00 = 24.00: 10 % off the line (2.40), then 10 % off the rest (2.16).
        assert sum(a for _, a, _, _ in _manual_discounts(approved.json())) == 456
        # The override was spent on that edit: stacking again is refused.
        again = patch(on_order["id"], {"lines": [{"sku": "MUG-LOGO", "quantity": 1,
                                                  "manual": line_off}]})  # fmt: skip
        assert (again.status_code, again.json()["code"]) == (403, "permission_required")


def test_selling_below_unit_cost_by_hand_needs_sell_below_cost(platform: Running) -> None:
    """A product's unit cost is kept with it (its variants' too, or the product's); a line a
    cashier's manual discount leaves below it is a 403 naming the line and the permission,
    nothing sold, until a manager's override allows that one sale, which the audit log then
    names. Within the cost, or sold by an API key (the merchant itself), it needs no one."""
    http = platform.http
    here, members, register_id, credential = _paired_till(
        platform, ("Cody", "1470"), ("Mara", "0741")
    )
    sku = f"BOOK-{uuid.uuid4().hex[:6].upper()}"
    made = _post(http, "/v1/products", {
        "sku": sku, "name": "Atlas", "price": {"amount": 1000, "currency": "USD"},
        "unit_cost": {"amount": 950, "currency": "USD"},
        "variants": [{"sku": f"{sku}-HC", "name": "Hardcover",
                      "price": {"amount": 2000, "currency": "USD"},
                      "unit_cost": {"amount": 1500, "currency": "USD"}}],
    })  # fmt: skip
    assert made.status_code == 201, made.text
    product = made.json()
    assert product["unit_cost"] == {"amount": 950, "currency": "USD"}
    assert product["variants"][0]["unit_cost"] == {"amount": 1500, "currency": "USD"}
    other_currency = http.patch(
        f"/v1/products/{product['id']}", json={"unit_cost": {"amount": 1, "currency": "EUR"}}
    )
    assert other_currency.status_code == 400, other_currency.text
    assert {e["field"] for e in other_currency.json()["errors"]} == {"unit_cost.currency"}

    def sale(line_sku: str, percent: int) -> dict[str, Any]:
        body = _sale(here, {"kind": "percent", "value": percent, "reason": "shelf worn"})
        body["lines"] = [{**body["lines"][0], "sku": line_sku, "quantity": 1}]
        return body

    with _signed_in(platform, credential, members["cashier"], "1470") as till:
        # 10 % off (within a cashier's limit) leaves 9.00 for a book that cost 9.50.
        below = _post(till, "/v1/checkouts", sale(sku, 1000))
        assert (below.status_code, below.json()["code"]) == (403, "permission_required")
        assert below.json()["permission"] == "sell_below_cost"
        assert {e["field"] for e in below.json()["errors"]} == {"lines[0]"}
        # 4 % off leaves 9.60; the hardcover's own cost (15.00) is under its 10 % off price.
        for line_sku, percent in ((sku, 400), (f"{sku}-HC", 1000)):
            within = _post(till, "/v1/checkouts", sale(line_sku, percent))
            assert within.status_code == 201, within.text
        granted = _post(
            till,
            "/v1/overrides",
            {"manager_id": members["manager"], "pin": "0741", "permission": "sell_below_cost"},
        )
        assert granted.status_code == 201, granted.text
        allowed = _post(till, "/v1/checkouts", sale(sku, 1000))
        assert allowed.status_code == 201, allowed.text
        # The override was spent on that sale.
        again = _post(till, "/v1/checkouts", sale(sku, 1000))
        assert (again.status_code, again.json()["code"]) == (403, "permission_required")
    # The merchant's own key sells below cost without anyone's approval.
    assert _post(http, "/v1/checkouts", sale(sku, 1000)).status_code == 201
    entries = http.get("/v1/audit-log", params={"register_id": register_id, "limit": 200}).json()[
        "data"
    ]
    below_cost = [(e["staff_id"], e["approved_by"], e["resource_id"]) for e in entries
                  if e["action"] == "sell_below_cost"]  # fmt: skip
    assert below_cost == [(members["cashier"], members["manager"], allowed.json()["order"]["id"])]
    # Unset (null), the product's cost is no longer known; a variant keeps its own.
    cleared = http.patch(f"/v1/products/{product['id']}", json={"unit_cost": None})
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["unit_cost"] is None
    assert cleared.json()["variants"][0]["unit_cost"] == {"amount": 1500, "currency": "USD"}


def _open_product_below_cost(platform: Running, here: str) -> str:
    """An open-price product that costs the merchant 50.00, in stock at the store."""
    http = platform.http
    sku = f"FIT-{uuid.uuid4().hex[:6].upper()}"
    made = _post(http, "/v1/products", {
        "sku": sku, "name": "Fitting", "open_price": True,
        "price": {"amount": 100, "currency": "USD"},
        "unit_cost": {"amount": 5000, "currency": "USD"},
    })  # fmt: skip
    assert made.status_code == 201, made.text
    received = {"sku": sku, "location_id": here, "delta": 5, "reason": "received"}
    assert _post(http, "/v1/inventory/adjustments", received).status_code == 201
    return sku


def _below_cost_entries(platform: Running, register_id: str) -> list[tuple[str, str, str]]:
    entries = platform.http.get(
        "/v1/audit-log", params={"register_id": register_id, "limit": 200}
    ).json()["data"]
    return [(e["staff_id"], e["approved_by"], e["resource_id"]) for e in entries
            if e["action"] == "sell_below_cost"]  # fmt: skip


def test_an_exchange_selling_below_cost_by_hand_needs_sell_below_cost(platform: Running) -> None:
    """An exchange's new line entered below its product's unit cost is judged as a checkout's
    line is: without `sell_below_cost` a 403 naming the permission and the new line, nothing
    returned or sold, until a manager's override allows that one exchange, which the audit
    log then names with the new order."""
    http = platform.http
    here, members, register_id, credential = _paired_till(
        platform, ("Ines", "2581"), ("Otto", "3692")
    )
    sku = _open_product_below_cost(platform, here)
    mug = {"sku": "MUG-LOGO", "quantity": 1}
    card = {"tender_type": "card", "card_token": "tok_visa"}
    sale = _post(http, "/v1/checkouts", {"location_id": here, "lines": [mug], **card})
    assert sale.status_code == 201, sale.text
    order_id = sale.json()["order"]["id"]
    path = f"/v1/orders/{order_id}/exchanges"
    # A mug (12.00) for a fitting at 30.00, which costs 50.00: the customer pays up, so no
    # `refund` is needed.
    ask = {
        "lines": [{"line_id": "L1", "quantity": 1, "restock": True}],
        "new_lines": [{"sku": sku, "quantity": 1,
                       "unit_price": {"amount": 3000, "currency": "USD"}}],
        "reason": "unwanted",
        "tenders": [card],
    }  # fmt: skip
    with _signed_in(platform, credential, members["cashier"], "2581") as till:
        below = _post(till, path, ask)
        assert (below.status_code, below.json()["code"]) == (403, "permission_required")
        assert below.json()["permission"] == "sell_below_cost"
        assert {e["field"] for e in below.json()["errors"]} == {"new_lines[0]"}
        assert http.get(f"/v1/orders/{order_id}/returns").json()["data"] == []
        granted = _post(
            till,
            "/v1/overrides",
            {"manager_id": members["manager"], "pin": "3692", "permission": "sell_below_cost"},
        )
        assert granted.status_code == 201, granted.text
        allowed = _post(till, path, ask)
        assert allowed.status_code == 201, allowed.text
        assert allowed.json()["order"]["lines"][0]["unit_price"]["amount"] == 3000
    new_order = allowed.json()["order"]["id"]
    assert _below_cost_entries(platform, register_id) == [
        (members["cashier"], members["manager"], new_order)
    ]


def test_a_drafts_submit_selling_below_cost_by_hand_needs_sell_below_cost(
    platform: Running,
) -> None:
    """A draft is priced again at its submit, and its prices given by hand are judged for the
    member submitting it as at creation: a draft the merchant's key priced below cost is a 403
    naming `sell_below_cost` when a cashier submits it, the order still a draft, until a
    manager's override allows that submit, which the audit log then names."""
    http = platform.http
    here, members, register_id, credential = _paired_till(
        platform, ("Jana", "4815"), ("Piet", "1623")
    )
    sku = _open_product_below_cost(platform, here)
    line = {"sku": sku, "quantity": 1, "unit_price": {"amount": 3000, "currency": "USD"}}
    draft = _post(http, "/v1/orders", {"location_id": here, "lines": [line], "status": "draft"})
    assert draft.status_code == 201, draft.text
    order_id = draft.json()["id"]
    with _signed_in(platform, credential, members["cashier"], "4815") as till:
        below = _post(till, f"/v1/orders/{order_id}/submit")
        assert (below.status_code, below.json()["code"]) == (403, "permission_required")
        assert below.json()["permission"] == "sell_below_cost"
        assert {e["field"] for e in below.json()["errors"]} == {"lines[0]"}
        kept = http.get(f"/v1/orders/{order_id}").json()
        assert (kept["status"], kept["version"]) == ("draft", draft.json()["version"])
        granted = _post(
            till,
            "/v1/overrides",
            {"manager_id": members["manager"], "pin": "1623", "permission": "sell_below_cost"},
        )
        assert granted.status_code == 201, granted.text
        allowed = _post(till, f"/v1/orders/{order_id}/submit")
        assert allowed.status_code == 200, allowed.text
        assert allowed.json()["status"] == "pending_payment"
    assert _below_cost_entries(platform, register_id) == [
        (members["cashier"], members["manager"], order_id)
    ]


def test_a_drafts_edit_selling_below_cost_by_hand_needs_sell_below_cost(
    platform: Running,
) -> None:
    """An edit that prices the draft again judges its prices given by hand for the member
    making it, as one naming lines does and as its submit does: a draft the merchant's key
    priced below cost, edited by a cashier without naming its lines (its points), is a 403
    naming `sell_below_cost` and the line, the draft unchanged; its notes alone, which price
    nothing, need no one."""
    http = platform.http
    here, members, _, credential = _paired_till(platform, ("Kira", "5926"), ("Lars", "6295"))
    sku = _open_product_below_cost(platform, here)
    line = {"sku": sku, "quantity": 1, "unit_price": {"amount": 3000, "currency": "USD"}}
    draft = _post(http, "/v1/orders", {"location_id": here, "lines": [line], "status": "draft"})
    assert draft.status_code == 201, draft.text
    order_id, version = draft.json()["id"], draft.json()["version"]
    with _signed_in(platform, credential, members["cashier"], "5926") as till:

        def patch(body: dict[str, Any]) -> httpx.Response:
            return till.patch(
                f"/v1/orders/{order_id}", json=body,
                headers={"Idempotency-Key": str(uuid.uuid4()), "If-Match": f'"{version}"'},
            )  # fmt: skip

        for body in ({"redeem_points": 0}, {"lines": [line]}):
            below = patch(body)
            assert (below.status_code, below.json()["code"]) == (403, "permission_required")
            assert below.json()["permission"] == "sell_below_cost"
            assert {e["field"] for e in below.json()["errors"]} == {"lines[0]"}
        assert http.get(f"/v1/orders/{order_id}").json()["version"] == version
        noted = patch({"notes": "fitting room 2"})
        assert noted.status_code == 200, noted.text
