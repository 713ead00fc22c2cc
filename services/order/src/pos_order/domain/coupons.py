"""The coupons an order names, as the saga tracks them (never their codes: the promotion service
keeps only a keyed hash of a code, and the order keeps the coupon's id and last four). A draft
keeps none either: its codes are given with its submit, which reserves them at once.

A coupon's use is reserved at the promotion service before any payment (request
`<order>/coupons/reserve`), redeemed when the order is confirmed (`<order>/coupons/redeem`) and
released when it is cancelled, before or after its confirmation (`<order>/coupons/release`: an
order is cancelled once, so one id serves both), all keyed by the order id, so a retry, the
resumer or a compensation asks the same thing again and never twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from pos_kit.errors import FieldViolation, require

MAX_COUPONS = 10


class CouponStep(Enum):
    NONE = "none"  # no coupon named
    SENT = "sent"  # named; the reservation asked for, its answer not recorded yet
    RESERVED = "reserved"
    REDEEMED = "redeemed"
    RELEASED = "released"


@dataclass(frozen=True)
class CouponUse:
    coupon_id: str
    promotion_id: str
    code_hint: str


@dataclass
class Coupons:
    step: CouponStep = CouponStep.NONE
    uses: list[CouponUse] = field(default_factory=list)

    @property
    def to_release(self) -> bool:
        """Something may be reserved or redeemed for the order: a cancelled order gives it
        back (the customer did not get the sale, so the coupon's use is theirs again)."""
        return self.step in (CouponStep.SENT, CouponStep.RESERVED, CouponStep.REDEEMED)

    def to_json(self) -> dict[str, object]:
        return {
            "step": self.step.value,
            "uses": [
                {"coupon_id": u.coupon_id, "promotion_id": u.promotion_id, "code_hint": u.code_hint}
                for u in self.uses
            ],
        }

    @staticmethod
    def from_json(found: dict[str, object] | None) -> Coupons:
        if not found:
            return Coupons()
        uses = found.get("uses") or []
        assert isinstance(uses, list)
        return Coupons(
            CouponStep(str(found.get("step", "none"))),
            [CouponUse(u["coupon_id"], u["promotion_id"], u["code_hint"]) for u in uses],
        )


def normalise(code: str) -> str:
    """Codes are case-insensitive and trimmed, as the promotion service reads them."""
    return code.strip().upper()


def validate_codes(
    codes: list[str] | tuple[str, ...], name: str = "coupon_codes"
) -> list[FieldViolation]:
    violations: list[FieldViolation] = []
    violations += require(len(codes) <= MAX_COUPONS, name, f"must have at most {MAX_COUPONS}")
    for i, code in enumerate(codes[:MAX_COUPONS]):
        violations += require(
            3 <= len(normalise(code)) <= 40, f"{name}[{i}]", "must be 3 to 40 characters"
        )
    # The later of two equal codes (they ignore case) is the one to fix: its place is named.
    first: dict[str, int] = {}
    for i, code in enumerate(codes):
        earlier = first.setdefault(normalise(code), i)
        violations += require(
            earlier == i, f"{name}[{i}]", f"repeats {name}[{earlier}] (codes ignore case)"
        )
    return violations
