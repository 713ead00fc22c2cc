"""Coupon codes and their redemption: reserved at checkout, redeemed on confirmation, released on
cancel (before or after the confirmation: a cancelled order's use comes back either way). A use
counts from its reservation, so a limit holds however many checkouts race."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from pos_kit.errors import Conflict, FieldViolation, raise_if, require

CODE = re.compile(r"[A-Z0-9][A-Z0-9-]{2,39}")
# No 0/O, 1/I/L: a generated code is read aloud at a till.
ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
GENERATED_LENGTH = 12
MAX_BATCH = 10_000
MAX_CODES_PER_CART = 10


def normalize(code: str) -> str:
    """Codes are case-insensitive: stored (hashed) and compared upper-case, spaces trimmed."""
    return code.strip().upper()


def generate(count: int) -> list[str]:
    return [
        "".join(secrets.choice(ALPHABET) for _ in range(GENERATED_LENGTH)) for _ in range(count)
    ]


def hint(code: str) -> str:
    """What a list may show of a code: its last characters, a third of it at most and never
    more than four (a generated code shows four), so a short code is never shown whole."""
    return code[len(code) - min(4, len(code) // 3) :]


class CouponStatus(StrEnum):
    ACTIVE = "active"
    # Deactivated on its own, its promotion and other codes untouched (a code that leaked):
    # final, as ending a promotion is.
    DEACTIVATED = "deactivated"


class ReservationStatus(StrEnum):
    RESERVED = "reserved"
    REDEEMED = "redeemed"
    RELEASED = "released"


class Refusal(StrEnum):
    """Why a code cannot apply: a reason in a cart preview, a refusal at checkout."""

    UNKNOWN = "coupon_unknown"
    EXPIRED = "coupon_expired"
    EXHAUSTED = "coupon_exhausted"
    CUSTOMER_LIMIT = "coupon_customer_limit"
    CUSTOMER_REQUIRED = "coupon_customer_required"  # limited per customer; the sale names none
    INACTIVE = "coupon_inactive"  # its promotion is paused or ended
    DEACTIVATED = "coupon_deactivated"  # the code itself was deactivated
    NOT_APPLICABLE = "coupon_not_applicable"  # gives this cart nothing


MESSAGES = {
    Refusal.UNKNOWN: "no such coupon code",
    Refusal.EXPIRED: "the coupon has expired",
    Refusal.EXHAUSTED: "the coupon has no uses left",
    Refusal.CUSTOMER_LIMIT: "this customer has used the coupon as often as it allows",
    Refusal.CUSTOMER_REQUIRED: "the coupon is limited per customer: name the customer_id",
    Refusal.INACTIVE: "the coupon's promotion is not running",
    Refusal.DEACTIVATED: "the coupon was deactivated",
    Refusal.NOT_APPLICABLE: "the coupon gives this cart no discount",
}


class CouponRefused(Conflict):
    """A code that cannot be used: the code says why, `code_index` and the field error
    (`codes[i]`, which the order service tells its caller as `coupon_codes[i]`) which."""

    def __init__(self, index: int, refusal: Refusal) -> None:
        super().__init__(
            f"codes[{index}]: {MESSAGES[refusal]}", refusal.value, {"code_index": str(index)}
        )
        self.violations = [FieldViolation(f"codes[{index}]", MESSAGES[refusal])]


@dataclass
class Coupon:
    id: str
    promotion_id: str
    code_hint: str
    max_uses: int = 0  # 0: no limit
    max_uses_per_customer: int = 0
    redeemed_count: int = 0
    reserved_count: int = 0
    expires_at: datetime | None = None
    created_at: datetime | None = None
    code: str = ""  # only on the answer that created it
    status: CouponStatus = CouponStatus.ACTIVE
    deactivated_at: datetime | None = None
    # The moment of its last change (stamped by the database): its place in the change feed.
    updated_at: datetime | None = None

    def deactivate(self, at: datetime) -> bool:
        """False when it already was: the first deactivation's time stays."""
        if self.status is CouponStatus.DEACTIVATED:
            return False
        self.status, self.deactivated_at = CouponStatus.DEACTIVATED, at
        return True

    def refusal(self, at: datetime, customer_uses: int | None, customer_id: str) -> Refusal | None:
        """Why it cannot be reserved now, if it cannot (the promotion's state aside). Only new
        reservations: a use reserved before a deactivation still redeems, as one reserved
        before its promotion ended does."""
        if self.status is CouponStatus.DEACTIVATED:
            return Refusal.DEACTIVATED
        if self.expires_at is not None and at >= self.expires_at:
            return Refusal.EXPIRED
        if self.max_uses and self.redeemed_count + self.reserved_count >= self.max_uses:
            return Refusal.EXHAUSTED
        if self.max_uses_per_customer:
            # Without a customer the limit could not be counted: every anonymous sale would
            # use the code again.
            if not customer_id:
                return Refusal.CUSTOMER_REQUIRED
            if customer_uses is not None and customer_uses >= self.max_uses_per_customer:
                return Refusal.CUSTOMER_LIMIT
        return None


@dataclass(frozen=True)
class CouponRedeemed:
    coupon: Coupon
    order_id: str
    customer_id: str


@dataclass(frozen=True)
class CouponReleased:
    """A redeemed use given back (its order cancelled after confirmation): `redeemed_count`
    went down, so a partner that counted the `CouponRedeemed` hears it no longer counts. A
    reservation released before its redemption was never announced and is not either."""

    coupon: Coupon
    order_id: str
    customer_id: str


@dataclass
class Reservation:
    order_id: str
    coupon_id: str
    customer_id: str
    status: str = ReservationStatus.RESERVED.value


def validate_batch(
    codes: list[str],
    generate_count: int,
    max_uses: int,
    per_customer: int,
    expires_at: datetime | None = None,
    at: datetime | None = None,
) -> list[str]:
    """The normalized codes to create, or InvalidArgument naming every field that is wrong."""
    v: list[FieldViolation] = []
    if expires_at is not None and at is not None:
        # Coupons no sale could ever use are a mistake in the request, not a batch to keep.
        v += require(expires_at > at, "expires_at", "must be in the future")
    v += require(
        not (codes and generate_count), "codes", "give codes or a count to generate, not both"
    )
    v += require(bool(codes or generate_count), "codes", "give codes, or a count to generate")
    v += require(0 <= generate_count <= MAX_BATCH, "generate", f"must be between 1 and {MAX_BATCH}")
    v += require(len(codes) <= MAX_BATCH, "codes", f"at most {MAX_BATCH} at once")
    v += require(max_uses >= 0, "max_uses", "must not be negative (0: no limit)")
    v += require(per_customer >= 0, "max_uses_per_customer", "must not be negative (0: no limit)")
    normalized = [normalize(c) for c in codes]
    for i, code in enumerate(normalized[:MAX_BATCH]):
        v += require(
            bool(CODE.fullmatch(code)),
            f"codes[{i}]",
            "3 to 40 letters, digits or dashes, starting with a letter or digit",
        )
    # The later of two equal codes is the one to fix (codes ignore case).
    seen: set[str] = set()
    for i, code in enumerate(normalized[:MAX_BATCH]):
        v += require(code not in seen, f"codes[{i}]", "repeats an earlier code (codes ignore case)")
        seen.add(code)
    raise_if(v)
    return normalized
