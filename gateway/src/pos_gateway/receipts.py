"""Receipts: a sale's (or one return's) record a customer keeps, as JSON, plain text or HTML.

Composed here from what the services answer (the order and its returns, the payments with
their card brand and last four, the order settings, the selling location with its time zone):
a receipt is a view of several services' records, kept nowhere. Times are in the location's
zone; money is written language-neutrally, the currency code and the amount with the currency's
own number of minor units (`USD 25.00`, `JPY 2500`, `BHD 1.250`).
"""

from __future__ import annotations

import html
import textwrap
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pos_kit.money import MINOR_UNITS

WIDTH = 42  # characters of a till's paper roll


def money_text(money: dict[str, Any]) -> str:
    currency = money["currency"]
    digits = MINOR_UNITS.get(currency, 2)
    amount = int(money["amount"])
    sign = "-" if amount < 0 else ""
    whole, part = divmod(abs(amount), 10**digits) if digits else (abs(amount), 0)
    return f"{currency} {sign}{whole}" + (f".{part:0{digits}d}" if digits else "")


def local(stamp: str | None, zone: str) -> str | None:
    """An RFC 3339 time in the location's zone, with its offset."""
    if not stamp:
        return None
    try:
        tz = ZoneInfo(zone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        tz = ZoneInfo("UTC")
    at = datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(tz)
    return at.isoformat(timespec="seconds")


def _money(amount: int, currency: str) -> dict[str, Any]:
    return {"amount": amount, "currency": currency}


def _tender(payment: dict[str, Any]) -> dict[str, Any]:
    return {
        "payment_id": payment["id"],
        "tender_type": payment.get("tender_type", ""),
        "card_brand": payment.get("card_brand", ""),
        "card_last4": payment.get("card_last4", ""),
    }


def _policy(window_days: int) -> str:
    if window_days <= 0:
        return "Sales are final: no returns."
    return (
        f"Returns within {window_days} days of purchase with this receipt, refunded to the "
        "original payment."
    )


def build(
    order: dict[str, Any],
    payments: list[dict[str, Any]],
    returns: list[dict[str, Any]],
    location: dict[str, Any],
    window_days: int,
    return_id: str = "",
) -> dict[str, Any]:
    """The receipt of the sale, or with `return_id` the receipt of that return."""
    currency = order["total"]["currency"]
    zone = location.get("time_zone") or "UTC"
    by_payment = {p["id"]: p for p in payments}
    names = {ln.get("id", ""): ln for ln in order["lines"]}
    head = {
        "order_id": order["id"],
        "location": {
            "id": location["id"],
            "name": location.get("name", ""),
            "time_zone": zone,
        },
        "return_policy": _policy(window_days),
    }
    if return_id:
        found = [r for r in returns if r["id"] == return_id]
        if not found:
            return {}
        ret = found[0]
        return {
            **head,
            "kind": "return",
            "return_id": ret["id"],
            "at": local(ret.get("completed_at") or ret.get("created_at"), zone),
            "reason": ret["reason"],
            "lines": [
                {
                    "line_id": ln["line_id"],
                    "name": names.get(ln["line_id"], {}).get("name", ln["sku"]),
                    "sku": ln["sku"],
                    "quantity": ln["quantity"],
                    "amount": ln["amount"],
                    "restocked": ln["restock"],
                }
                for ln in ret["lines"]
            ],
            "total": ret["amount"],
            "tenders": [
                {
                    **_tender(by_payment.get(x["payment_id"], {"id": x["payment_id"]})),
                    "amount": x["amount"],
                }
                for x in ret["refunds"]
            ],
        }
    goods = sum(ln["line_total"]["amount"] for ln in order["lines"] if not ln.get("gift_card"))
    taxable = goods - order["discount_total"]["amount"]
    rate = int(location.get("tax_rate_bps", 0))
    taxes = []
    if order["tax_total"]["amount"] or rate:
        taxes.append(
            {
                "name": f"Tax {rate / 100:g}%",
                "rate_bps": rate,
                "taxable": _money(taxable, currency),
                "amount": order["tax_total"],
            }
        )
    discounts = []
    if order["discount_total"]["amount"]:
        discounts.append({"name": "Discounts", "amount": order["discount_total"]})
    tenders = []
    change = 0
    for payment_id in order.get("payment_ids", []):
        p = by_payment.get(payment_id)
        if p is None or p.get("status") not in ("captured", "authorized"):
            continue
        change += int((p.get("change_due") or {}).get("amount", 0))
        tenders.append({**_tender(p), "amount": p.get("captured") or p["amount"]})
    refunded = sum(int(r["amount"]["amount"]) for r in returns)
    return {
        **head,
        "kind": "sale",
        "at": local(order.get("created_at"), zone),
        "status": order["status"],
        "lines": [
            {
                "line_id": ln.get("id", ""),
                "name": ln["name"],
                "sku": ln["sku"],
                "quantity": ln["quantity"],
                "unit_price": ln["unit_price"],
                "line_total": ln["line_total"],
                "gift_card_last4": (ln.get("gift_card") or {}).get("code_last4", ""),
            }
            for ln in order["lines"]
        ],
        "subtotal": order["subtotal"],
        "discounts": discounts,
        "taxes": taxes,
        "total": order["total"],
        "tenders": tenders,
        "change_due": _money(change, currency),
        "returns": [
            {
                "return_id": r["id"],
                "at": local(r.get("completed_at") or r.get("created_at"), zone),
                "lines": [
                    {"line_id": ln["line_id"], "quantity": ln["quantity"], "amount": ln["amount"]}
                    for ln in r["lines"]
                ],
                "amount": r["amount"],
            }
            for r in returns
        ],
        "refunded": _money(refunded, currency),
    }


def _row(left: str, right: str) -> str:
    room = max(1, WIDTH - len(right))
    return f"{left[: room - 1]:<{room}}{right}"


def text(receipt: dict[str, Any]) -> str:
    """A till's paper roll: fixed width, one fact a line."""
    out = [receipt["location"]["name"] or receipt["location"]["id"], f"Order {receipt['order_id']}"]
    if receipt["kind"] == "return":
        out += [
            f"RETURN {receipt['return_id']}",
            receipt["at"] or "",
            f"Reason: {receipt['reason']}",
        ]
        out.append("-" * WIDTH)
        for ln in receipt["lines"]:
            out.append(_row(f"{ln['quantity']} x {ln['name']}", money_text(ln["amount"])))
        out.append("-" * WIDTH)
        out.append(_row("REFUND", money_text(receipt["total"])))
        for t in receipt["tenders"]:
            out.append(_row(_tender_text(t), money_text(t["amount"])))
    else:
        out.append(receipt["at"] or "")
        out.append("-" * WIDTH)
        for ln in receipt["lines"]:
            name = ln["name"] + (f" ({ln['gift_card_last4']})" if ln["gift_card_last4"] else "")
            out.append(_row(f"{ln['quantity']} x {name}", money_text(ln["line_total"])))
        out.append("-" * WIDTH)
        out.append(_row("Subtotal", money_text(receipt["subtotal"])))
        for d in receipt["discounts"]:
            out.append(
                _row(d["name"], money_text({**d["amount"], "amount": -d["amount"]["amount"]}))
            )
        for t in receipt["taxes"]:
            out.append(_row(t["name"], money_text(t["amount"])))
        out.append(_row("TOTAL", money_text(receipt["total"])))
        for t in receipt["tenders"]:
            out.append(_row(_tender_text(t), money_text(t["amount"])))
        if receipt["change_due"]["amount"]:
            out.append(_row("Change", money_text(receipt["change_due"])))
        for r in receipt["returns"]:
            when = (r["at"] or "")[:16].replace("T", " ")
            back = {**r["amount"], "amount": -r["amount"]["amount"]}
            out.append(_row(f"Returned {when}", money_text(back)))
    out += ["-" * WIDTH, *textwrap.wrap(receipt["return_policy"], WIDTH), ""]
    return "\n".join(out)


def _tender_text(t: dict[str, Any]) -> str:
    if t["card_last4"]:
        return f"{t['card_brand'] or t['tender_type']} **** {t['card_last4']}"
    return str(t["tender_type"] or "tender")


def html_page(receipt: dict[str, Any]) -> str:
    """The same lines as the paper roll, escaped, in a page that prints as one."""
    body = html.escape(text(receipt))
    title = html.escape(f"Receipt {receipt['order_id']}")
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{title}</title></head>\n<body><pre>{body}</pre></body></html>\n"
    )
