"""Migration 0020 names the payment on the gift card activities a tender wrote before it, and
touches no other activity."""

from __future__ import annotations

from pathlib import Path

import psycopg

import pos_payment
from pos_devstack.testing import Infra
from pos_kit import migrate as kit_migrate

MIGRATIONS = Path(pos_payment.__file__).parent / "migrations"
M = "mer_1"
CARD = "gcd_1"
# The processor keys the payment service asked the card under: the payment's, a void's, a
# refund's (`<merchant>/<request id>`, a refund's with its tender's number).
SALE, VOID, REFUND = f"{M}/req_sale", f"{M}/req_void", f"{M}/req_refund/000"


def _plant(url: str) -> None:
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO payments (merchant_id, id, order_id, tender_type, amount, currency,"
            " status, request_key) VALUES (%s, 'pay_1', 'ord_1', 'gift_card', 4000, 'USD',"
            " 'captured', %s)",
            (M, SALE),
        )
        conn.execute(
            "INSERT INTO payment_operations (merchant_id, id, payment_id, kind, amount, status,"
            " request_key) VALUES (%s, 'voi_1', 'pay_1', 'void', 1000, 'succeeded', %s)",
            (M, VOID),
        )
        conn.execute(
            "INSERT INTO refunds (merchant_id, id, payment_id, order_id, tender_type, amount,"
            " currency, status, request_key) VALUES (%s, 'rfd_1', 'pay_1', 'ord_1',"
            " 'gift_card', 500, 'USD', 'succeeded', %s)",
            (M, REFUND),
        )
        for key, kind in ((SALE, "authorize"), (VOID, "void"), (REFUND, "refund")):
            conn.execute(
                "INSERT INTO gift_card_tender_calls (key, merchant_id, kind, gift_card_id,"
                " amount, approved, reference) VALUES (%s, %s, %s, %s, 0, true, 'gca_redeem')",
                (key, M, kind, CARD),
            )
        activities = [
            ("gca_1", "activate", 10_000, "ord_sold"),
            ("gca_redeem", "redeem", -4000, SALE),
            ("gca_3", "refund", 1000, VOID),
            ("gca_4", "refund", 500, REFUND),
            # The card's own routes: the merchant's reference, even one shaped like a key.
            ("gca_5", "load", 100, f"{M}/req_load"),
            ("gca_6", "redeem", -100, "till 4, receipt 12"),
        ]
        for activity_id, kind, amount, reference in activities:
            conn.execute(
                "INSERT INTO gift_card_activities (merchant_id, id, gift_card_id, kind, amount,"
                " balance_after, currency, reference) VALUES (%s, %s, %s, %s, %s, 0, 'USD', %s)",
                (M, activity_id, CARD, kind, amount, reference),
            )


def _references(url: str) -> dict[str, str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT id, reference FROM gift_card_activities").fetchall()
    return dict(rows)


def test_a_tenders_activities_then_name_its_payment(infra: Infra) -> None:
    url = infra.create_database("payment")
    kit_migrate.upgrade(MIGRATIONS, url, "0019")
    _plant(url)

    kit_migrate.upgrade(MIGRATIONS, url)

    assert _references(url) == {
        "gca_1": "ord_sold",
        "gca_redeem": "pay_1",
        "gca_3": "pay_1",
        "gca_4": "pay_1",
        "gca_5": f"{M}/req_load",
        "gca_6": "till 4, receipt 12",
    }
