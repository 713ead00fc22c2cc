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


def _rate(location: dict[str, Any], name: str, category: str) -> int:
    """The rate (basis points) of the tax `name` on a line of `category` at the location: one
    of its several taxes, else its single rate (per category where it lists one)."""
    for tax in location.get("taxes") or []:
        if tax.get("name") == name:
            return int((tax.get("rates_bps") or {}).get(category, tax.get("rate_bps", 0)))
    rates = location.get("tax_rates_bps") or {}
    return int(rates.get(category, location.get("tax_rate_bps", 0)))


def _tax_label(name: str, rate: int) -> str:
    label = "Tax" if name in ("", "tax") else name
    return f"{label} {rate / 100:g}%"


def _discount_name(d: dict[str, Any]) -> str:
    """An offer by its name (the promotion's reason); a manual one with the staff's reason."""
    if d.get("promotion_id") == "manual":
        # The order carries the promotion service's wording, "Manual: <the staff's reason>".
        reason = str(d.get("reason") or "").removeprefix("Manual:").strip()
        return f"Manual discount: {reason or 'by staff'}"
    return str(d.get("reason") or d.get("promotion_id") or "Discount")


def tax_inclusive(order: dict[str, Any]) -> bool:
    """The sale's prices held their tax (VAT): its total is its subtotal less its discounts,
    the tax contained in it rather than added (the order service prices a whole order one way,
    the selling store's)."""
    tax = int(order["tax_total"]["amount"])
    goods = int(order["subtotal"]["amount"]) - int(order["discount_total"]["amount"])
    return tax != 0 and int(order["total"]["amount"]) == goods


def _compound(location: dict[str, Any], name: str) -> bool:
    return any(
        t.get("name") == name and bool(t.get("compound")) for t in location.get("taxes") or []
    )


def _taxed_at(
    line: dict[str, Any], order: dict[str, Any], stores: dict[str, dict[str, Any]]
) -> dict[str, Any] | None:
    """The store whose taxes the line was charged (the one its fulfilment hands its goods
    over at or ships them from), when it is not the selling one and is known."""
    for f in order.get("fulfillments") or []:
        if f.get("id") == line.get("fulfillment_id"):
            return stores.get(f.get("location_id", ""))
    return None


def _line_taxes(
    line: dict[str, Any],
    location: dict[str, Any],
    inclusive: bool = False,
    taxed_at: dict[str, Any] | None = None,
) -> list[tuple[str, int, bool, int, int]]:
    """The line's taxes as the pricing step stored them: (name, rate, compound, taxable,
    amount). What a tax is charged on is the line's price after its discounts, less the tax
    it contains when prices include it; a compound tax's adds the taxes listed before it
    (domain/tax.py of the order service), compounding as the line kept it was charged; a line
    priced before that was kept: as the store it was taxed at (`taxed_at`, else the selling
    location) compounds it now."""
    paid = int(line["line_total"]["amount"]) - int(line["discount_total"]["amount"])
    stored = line.get("taxes") or []
    net = paid - (sum(int(t["amount"]["amount"]) for t in stored) if inclusive else 0)
    category = line.get("tax_category", "")
    out: list[tuple[str, int, bool, int, int]] = []
    before = 0
    for t in stored:
        amount = int(t["amount"]["amount"])
        kept = t.get("compound")
        compound = bool(kept) if kept is not None else _compound(taxed_at or location, t["name"])
        taxable = net + (before if compound else 0)
        before += amount
        if not amount:
            continue
        # The rate the line was taxed at (the store its goods left from, at the sale); a line
        # priced before rates were kept: the selling store's rate now.
        rate = int(t.get("rate_bps") or 0) or _rate(location, t["name"], category)
        out.append((t["name"], rate, compound, taxable, amount))
    return out


def _taxes(
    order: dict[str, Any], location: dict[str, Any], stores: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """Tax per rate: the lines' own taxes summed per tax, rate and compounding (a city tax
    compounding at one store and a plain one of the same rate at another are two taxes, each
    charged on its own amount). An order sold before lines kept their taxes has only its
    total: at the location's single rate."""
    currency = order["total"]["currency"]
    per: dict[tuple[str, int, bool], list[int]] = {}
    inclusive = tax_inclusive(order)
    for line in order["lines"]:
        at = _taxed_at(line, order, stores)
        for name, rate, compound, taxable, amount in _line_taxes(line, location, inclusive, at):
            found = per.setdefault((name, rate, compound), [0, 0])
            found[0] += taxable
            found[1] += amount
    if sum(amount for _, amount in per.values()) == int(order["tax_total"]["amount"]) and per:
        return [
            {
                "name": _tax_label(name, rate),
                "rate_bps": rate,
                "compound": compound,
                "taxable": _money(taxable, currency),
                "amount": _money(amount, currency),
            }
            for (name, rate, compound), (taxable, amount) in per.items()
        ]
    goods = sum(ln["line_total"]["amount"] for ln in order["lines"] if not ln.get("gift_card"))
    rate = int(location.get("tax_rate_bps", 0))
    if not (order["tax_total"]["amount"] or rate):
        return []
    return [
        {
            "name": _tax_label("", rate),
            "rate_bps": rate,
            "compound": False,
            "taxable": _money(
                goods
                - order["discount_total"]["amount"]
                - (order["tax_total"]["amount"] if tax_inclusive(order) else 0),
                currency,
            ),
            "amount": order["tax_total"],
        }
    ]


def _discounts(order: dict[str, Any]) -> list[dict[str, Any]]:
    """Each offer by name, its lines' shares summed; what the lines do not account for (an
    order sold before lines kept their discounts) as one `Discounts` entry."""
    currency = order["total"]["currency"]
    per: dict[str, int] = {}
    for line in order["lines"]:
        for d in line.get("discounts") or []:
            name = _discount_name(d)
            per[name] = per.get(name, 0) + int(d["amount"]["amount"])
    rest = int(order["discount_total"]["amount"]) - sum(per.values())
    if rest > 0:
        per["Discounts"] = per.get("Discounts", 0) + rest
    return [{"name": name, "amount": _money(amount, currency)} for name, amount in per.items()]


def build(
    order: dict[str, Any],
    payments: list[dict[str, Any]],
    returns: list[dict[str, Any]],
    location: dict[str, Any],
    window_days: int,
    return_id: str = "",
    policy_text: str = "",
    stores: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The receipt of the sale, or with `return_id` the receipt of that return. `stores`: the
    other stores the order's fulfilments hand goods over at or ship from, by id, whose taxes
    their lines were charged."""
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
        "return_policy_text": policy_text,
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
            # A refund the processor refused gave nothing back: what it owed is in the
            # settlement, when a person settled it.
            "tenders": [
                {
                    **_tender(by_payment.get(x["payment_id"], {"id": x["payment_id"]})),
                    "amount": x["amount"],
                }
                for x in ret["refunds"]
                if x.get("status") != "failed"
            ],
            "settlement": _settled(ret.get("settlement")),
            **_exchanged(ret),
        }
    stores = stores or {}
    taxes = _taxes(order, location, stores)
    discounts = _discounts(order)
    back = _back_per_payment(returns, by_payment)
    tenders = []
    change = 0
    for payment_id in order.get("payment_ids", []):
        p = by_payment.get(payment_id)
        if p is None or p.get("status") not in ("captured", "authorized"):
            continue
        change += int((p.get("change_due") or {}).get("amount", 0))
        tenders.append(
            {
                **_tender(p),
                "amount": _paying(p),
                "refunded": _money(back.get(payment_id, 0), currency),
            }
        )
    # Cash taken while the payment service was away: paid, though no payment records it yet.
    to_record = [
        {"tender_type": t["tender_type"], "amount": t["amount"]}
        for t in order.get("tenders_to_record") or []
    ]
    change += sum(
        int((t.get("change_due") or {}).get("amount", 0))
        for t in order.get("tenders_to_record") or []
    )
    refunded = sum(back.get(pid, 0) for pid in order.get("payment_ids", []))
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
                "discounts": [
                    {"name": _discount_name(d), "amount": d["amount"]}
                    for d in ln.get("discounts") or []
                ],
                "taxes": [
                    {
                        "name": _tax_label(name, rate),
                        "rate_bps": rate,
                        "amount": _money(amount, currency),
                    }
                    for name, rate, _, _, amount in _line_taxes(ln, location)
                ],
            }
            for ln in order["lines"]
        ],
        "subtotal": order["subtotal"],
        "discounts": discounts,
        "taxes": taxes,
        "tax_inclusive": tax_inclusive(order),
        "total": order["total"],
        "tenders": tenders,
        "tenders_to_record": to_record,
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
                **_exchanged(r),
            }
            for r in returns
        ],
        "refunded": _money(refunded, currency),
        "settlement": None,
        # An exchange's new order: the order its returned units came from, and their credit.
        "exchange_of": order.get("exchange_of", ""),
        "exchange_credit": order.get("exchange_credit") if order.get("exchange_of") else None,
    }


def _paying(payment: dict[str, Any]) -> dict[str, Any]:
    """What a tender pays for the sale: what it captured, or while goods still wait to be
    handed over or shipped (captured then), what it holds for them: authorised less voided
    (a cancelled fulfilment's share, a void through the payments API)."""
    captured = int((payment.get("captured") or {}).get("amount", 0))
    authorized = payment.get("authorized") or payment["amount"]
    voided = int((payment.get("voided") or {}).get("amount", 0))
    held = int(authorized["amount"]) - voided
    return _money(max(captured, held), authorized["currency"])


def _returned(returns: list[dict[str, Any]]) -> int:
    """What the order's returns gave back to its tenders: an exchange's credited part paid
    for its new order instead."""
    return sum(
        int(r["amount"]["amount"]) - int((r.get("credited") or {}).get("amount", 0))
        for r in returns
    )


def _back_per_payment(
    returns: list[dict[str, Any]], by_payment: dict[str, dict[str, Any]]
) -> dict[str, int]:
    """What went back to each payment: what the payment counts (its returns' refunds and
    those made otherwise: through the payments API, by a cancellation, by a return of an
    exchange's new order giving back its credit), or what the returns refunded to it when
    more (a refund still pending at the processor is not in the payment's count yet; one the
    processor refused gave nothing back)."""
    by_returns: dict[str, int] = {}
    for r in returns:
        for x in r.get("refunds") or []:
            if x.get("status") == "failed":
                continue
            pid = x["payment_id"]
            by_returns[pid] = by_returns.get(pid, 0) + int(x["amount"]["amount"])
    counted = {
        pid: int((p.get("refunded") or {}).get("amount", 0)) for pid, p in by_payment.items()
    }
    return {
        pid: max(counted.get(pid, 0), by_returns.get(pid, 0))
        for pid in set(counted) | set(by_returns)
    }


def _settled(settlement: dict[str, Any] | None) -> dict[str, Any] | None:
    if not settlement:
        return None
    return {
        "outcome": settlement["outcome"],
        "tender_type": settlement.get("tender_type"),
        "amount": settlement["amount"],
        "reference": settlement.get("reference", ""),
    }


def _exchanged(ret: dict[str, Any]) -> dict[str, Any]:
    """A return made in an exchange: its new order, and what of it paid for that order."""
    if not ret.get("exchange_order_id"):
        return {}
    return {"exchange_order_id": ret["exchange_order_id"], "credited": ret.get("credited")}


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
        if receipt.get("exchange_order_id"):
            out.append(_row("RETURNED", money_text(receipt["total"])))
            out.append(_row("Exchange credit", money_text(receipt["credited"])))
            out.append(f"  to order {receipt['exchange_order_id']}")
        else:
            out.append(_row("REFUND", money_text(receipt["total"])))
        for t in receipt["tenders"]:
            out.append(_row(_tender_text(t), money_text(t["amount"])))
        for t in receipt.get("tenders_to_record") or []:
            out.append(_row(str(t["tender_type"]), money_text(t["amount"])))
        settled = receipt.get("settlement")
        if settled and settled["outcome"] == "paid_out_of_band":
            out.append(
                _row(settled["tender_type"] or "paid otherwise", money_text(settled["amount"]))
            )
            if settled["reference"]:
                out.append(f"  {settled['reference']}"[:WIDTH])
        elif settled:
            out.append(_row("Not refunded", money_text(settled["amount"])))
    else:
        # Prices that hold their tax: it is in the total, not added to it.
        incl = "Incl. " if receipt.get("tax_inclusive") else ""
        out.append(receipt["at"] or "")
        if receipt.get("exchange_of"):
            out.append(f"Exchange of {receipt['exchange_of']}")
        out.append("-" * WIDTH)
        for ln in receipt["lines"]:
            name = ln["name"] + (f" ({ln['gift_card_last4']})" if ln["gift_card_last4"] else "")
            out.append(_row(f"{ln['quantity']} x {name}", money_text(ln["line_total"])))
            for d in ln.get("discounts") or []:
                off = {**d["amount"], "amount": -d["amount"]["amount"]}
                out.append(_row(f"  {d['name']}", money_text(off)))
            for t in ln.get("taxes") or []:
                out.append(_row(f"  {incl}{t['name']}", money_text(t["amount"])))
        out.append("-" * WIDTH)
        out.append(_row("Subtotal", money_text(receipt["subtotal"])))
        for d in receipt["discounts"]:
            out.append(
                _row(d["name"], money_text({**d["amount"], "amount": -d["amount"]["amount"]}))
            )
        for t in receipt["taxes"]:
            # A compound tax and a plain one of the same name and rate (two stores) are two
            # taxes, each on its own amount: the compound one says so.
            marked = " compound" if t.get("compound") else ""
            out.append(_row(f"{incl}{t['name']}{marked}", money_text(t["amount"])))
        out.append(_row("TOTAL", money_text(receipt["total"])))
        if receipt.get("exchange_credit"):
            out.append(_row("Returned goods", money_text(receipt["exchange_credit"])))
        for t in receipt["tenders"]:
            out.append(_row(_tender_text(t), money_text(t["amount"])))
        if receipt["change_due"]["amount"]:
            out.append(_row("Change", money_text(receipt["change_due"])))
        for r in receipt["returns"]:
            when = (r["at"] or "")[:16].replace("T", " ")
            back = {**r["amount"], "amount": -r["amount"]["amount"]}
            out.append(_row(f"Returned {when}", money_text(back)))
            if r.get("exchange_order_id"):
                # An order id fills most of a roll's width: on a line of its own.
                out.append(_row("  Exchange credit", money_text(r["credited"])))
                out.append(f"  to order {r['exchange_order_id']}")
        # Refunds no return on this receipt accounts for (the payments API, a cancellation).
        other = int(receipt["refunded"]["amount"]) - _returned(receipt["returns"])
        if other > 0:
            out.append(_row("Refunded", money_text({**receipt["refunded"], "amount": -other})))
    out += ["-" * WIDTH, *textwrap.wrap(receipt["return_policy"], WIDTH)]
    for paragraph in (receipt.get("return_policy_text") or "").splitlines():
        out += textwrap.wrap(paragraph, WIDTH) or [""]
    out.append("")
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
