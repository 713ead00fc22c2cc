"""What staff roles may do at a register.

The built-in roles: a cashier sells and may give discounts up to 10 %; a manager and an admin
may do everything. `no_sale` opens the drawer outside a sale: a no-sale open, and a pay-out
(cash taken out of it). A merchant's own roles name their permissions. What a member may not do
alone succeeds with a manager's PIN given for that one action (an override, staff.py).
"""

from __future__ import annotations

PERMISSIONS = (
    "refund",
    "void",
    "price_override",
    "discount_above_limit",
    "no_sale",
    "sell_below_cost",
)
BUILT_IN_ROLES = ("cashier", "manager", "admin")
# The discount a role may give without an override, in basis points (1000 = 10 %).
CASHIER_DISCOUNT_LIMIT_BPS = 1000
FULL_DISCOUNT_BPS = 10_000


def built_in(role: str) -> tuple[frozenset[str], int] | None:
    """(permissions, discount limit) of a built-in role; None for a merchant's own."""
    if role == "cashier":
        return frozenset(), CASHIER_DISCOUNT_LIMIT_BPS
    if role in ("manager", "admin"):
        return frozenset(PERMISSIONS), FULL_DISCOUNT_BPS
    return None
