"""An offer's rule and conditions <-> the JSON of the `definition` column."""

from __future__ import annotations

from datetime import datetime, time
from typing import Any

from pos_promotion.domain.rules import Conditions, Kind, Level, Offer, Rule, Selector, Tier


def _selector(s: Selector | None) -> dict[str, list[str]] | None:
    if s is None:
        return None
    return {
        "skus": sorted(s.skus),
        "product_ids": sorted(s.product_ids),
        "categories": sorted(s.categories),
    }


def _selector_of(d: dict[str, list[str]] | None) -> Selector | None:
    if d is None:
        return None
    return Selector(frozenset(d["skus"]), frozenset(d["product_ids"]), frozenset(d["categories"]))


def _iso(value: datetime | time | None) -> str | None:
    return None if value is None else value.isoformat()


def to_json(offer: Offer) -> dict[str, Any]:
    rule, c = offer.rule, offer.conditions
    return {
        "currency": offer.currency,
        "priority": offer.priority,
        "exclusive": offer.exclusive,
        "stackable": offer.stackable,
        "requires_coupon": offer.requires_coupon,
        "rule": {
            "kind": rule.kind.value,
            "level": rule.level.value,
            "items": _selector(rule.items),
            "percent_bps": rule.percent_bps,
            "amount": rule.amount,
            "buy_quantity": rule.buy_quantity,
            "get_quantity": rule.get_quantity,
            "get_items": _selector(rule.get_items),
            "tiers": [[t.min_quantity, t.percent_bps] for t in rule.tiers],
            "limit_per_order": rule.limit_per_order,
        },
        "conditions": {
            "starts_at": _iso(c.starts_at),
            "ends_at": _iso(c.ends_at),
            "time_zone": c.time_zone,
            "days": sorted(c.days),
            "hours_from": _iso(c.hours_from),
            "hours_until": _iso(c.hours_until),
            "channels": sorted(c.channels),
            "location_ids": sorted(c.location_ids),
            "customer_groups": sorted(c.customer_groups),
            "min_quantity": c.min_quantity,
            "min_amount": c.min_amount,
        },
    }


def from_json(offer_id: str, name: str, d: dict[str, Any]) -> Offer:
    r, c = d["rule"], d["conditions"]
    rule = Rule(
        Kind(r["kind"]),
        Level(r["level"]),
        _selector_of(r["items"]) or Selector(),
        r["percent_bps"],
        r["amount"],
        r["buy_quantity"],
        r["get_quantity"],
        _selector_of(r["get_items"]),
        tuple(Tier(q, b) for q, b in r["tiers"]),
        r["limit_per_order"],
    )
    conditions = Conditions(
        datetime.fromisoformat(c["starts_at"]) if c["starts_at"] else None,
        datetime.fromisoformat(c["ends_at"]) if c["ends_at"] else None,
        c["time_zone"],
        frozenset(c["days"]),
        time.fromisoformat(c["hours_from"]) if c["hours_from"] else None,
        time.fromisoformat(c["hours_until"]) if c["hours_until"] else None,
        frozenset(c["channels"]),
        frozenset(c["location_ids"]),
        frozenset(c["customer_groups"]),
        c["min_quantity"],
        c["min_amount"],
    )
    return Offer(
        offer_id,
        name,
        rule,
        conditions,
        d["currency"],
        d["priority"],
        d["exclusive"],
        d["stackable"],
        d["requires_coupon"],
    )
