"""Registers, staff, roles, register sessions, overrides and the audit log."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import ConfigDict, Field

from pos_gateway.keys import ALL_SCOPES
from pos_gateway.permissions import PERMISSIONS
from pos_gateway.registers import CODE_PATTERN
from pos_gateway.routes.common import INT32, INT64, INT64_MAX, INT64_MIN
from pos_gateway.schemas.base import (
    PAGE_MAX,
    Answer,
    Id,
    Money,
    OptionalId,
    Page,
    SignedMoney,
    Timestamp,
    Version,
)
from pos_gateway.schemas.credentials import Scope
from pos_gateway.schemas.gift_cards import TenderTotals

Permission = StrEnum("Permission", {p.upper(): p for p in PERMISSIONS})  # type: ignore[misc]
Permission.__doc__ = "What a role may do at a register without a manager's override"


class RegisterStatus(StrEnum):
    """`unpaired` until a device exchanges a pairing code; `retired` for good"""

    UNPAIRED = "unpaired"
    PAIRED = "paired"
    RETIRED = "retired"


class Register(Answer):
    id: Id
    location_id: Id
    name: str = Field(min_length=1, max_length=100)
    status: RegisterStatus
    created_at: Timestamp
    paired_at: Timestamp | None
    retired_at: Timestamp | None
    updated_at: Timestamp = Field(
        description="The moment of its last change: its place in the list's `updated_since` feed"
    )
    version: Version = Field(
        description="Bumped by every change (renamed, paired, retired); send it back in If-Match"
    )


class RegisterList(Page[Register]):
    pass


class PairingCode(Answer):
    register_id: Id
    code: Annotated[str, Field(pattern=CODE_PATTERN, max_length=10)] | None = Field(
        description="Shown in this answer only; null in a replay. Valid ten minutes, once"
    )
    expires_at: Timestamp
    secret_redacted: bool = Field(description="true in a replay: the code is not kept")


class PairedRegister(Answer):
    # Named apart from BaseModel.register (an ABC method), sent as `register`.
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    paired: Register = Field(alias="register")
    credential: str = Field(
        pattern=r"^pos_reg_[A-Za-z0-9]{38}$",
        max_length=46,
        description="The device's credential (`Authorization: Bearer ...`), shown once",
    )
    scopes: list[Scope] = Field(max_length=len(ALL_SCOPES))


class StaffStatus(StrEnum):
    """`deactivated` for good: signed out everywhere, never signs in again"""

    ACTIVE = "active"
    DEACTIVATED = "deactivated"


class StaffMember(Answer):
    id: Id
    name: str = Field(min_length=1, max_length=100)
    role: str = Field(
        min_length=1, max_length=64, description="`cashier`, `manager`, `admin` or a role's id"
    )
    location_ids: list[Id] = Field(max_length=1000)
    status: StaffStatus
    locked_until: Timestamp | None = Field(description="Set after too many wrong PINs")
    version: int = Field(ge=1, le=2**31 - 1, json_schema_extra=INT32)
    created_at: Timestamp
    updated_at: Timestamp


class StaffList(Page[StaffMember]):
    pass


class SignInMember(Answer):
    """A member a till may offer to sign in: who, not how to reach or manage them."""

    id: Id
    name: str = Field(min_length=1, max_length=100)
    role: str = Field(
        min_length=1, max_length=64, description="`cashier`, `manager`, `admin` or a role's id"
    )
    locked_until: Timestamp | None = Field(description="Set after too many wrong PINs")


class SignInMemberList(Page[SignInMember]):
    pass


class Role(Answer):
    id: str = Field(min_length=1, max_length=64, description="A built-in role's id is its name")
    name: str = Field(min_length=1, max_length=100)
    permissions: list[Permission] = Field(max_length=len(PERMISSIONS))
    discount_limit_bps: int = Field(
        ge=0, le=10_000, json_schema_extra=INT32,
        description="The largest discount given without an override (1000 = 10 %)",
    )  # fmt: skip
    built_in: bool
    version: Version = Field(description="Bumped by every change; send it back in If-Match "
                             "(a built-in role stays at 1)")  # fmt: skip
    updated_at: Timestamp | None = Field(
        None,
        description="The moment of its last change (made, or a new `version`): its place in "
        "the list's `updated_since` feed; null for a built-in role, which never changes",
    )


class RoleList(Page[Role]):
    pass


class RegisterSession(Answer):
    id: Id
    register_id: Id
    staff_id: Id
    started_at: Timestamp
    ended_at: Timestamp | None


class Override(Answer):
    id: Id
    permission: Permission
    requested_by: Id = Field(description="The member signed in at the register")
    approved_by: Id = Field(description="The member whose PIN approved it")
    register_id: Id
    granted_at: Timestamp
    expires_at: Timestamp = Field(description="Unused by then, it lapses")
    used_at: Timestamp | None


class AuditEntry(Answer):
    id: Id
    occurred_at: Timestamp
    action: str = Field(max_length=64, description="`refund`, `staff.signed_in`, ...")
    staff_id: Id | None = Field(description="Who did it at a register")
    approved_by: Id | None = Field(description="The manager whose override allowed it")
    register_id: Id | None
    credential_id: Id | None = Field(description="The API key or OAuth client that did it")
    resource_type: str | None = Field(max_length=64)
    resource_id: str | None = Field(max_length=64)
    details: dict[str, Any] = Field(
        max_length=PAGE_MAX, description="What changed: snapshots before and after, amounts"
    )


class AuditEntryList(Page[AuditEntry]):
    pass


class AuditSettings(Answer):
    retention_days: int = Field(ge=30, le=3650, json_schema_extra=INT32)
    updated_at: Timestamp | None
    version: Version


class ShiftStatus(StrEnum):
    """`open` until closed with the counted cash"""

    OPEN = "open"
    CLOSED = "closed"


class ShiftReport(Answer):
    expected_cash: SignedMoney = Field(
        description="float + cash sales - cash refunds + pay-ins - pay-outs + gift cards sold "
        "for cash: below zero when "
        "more cash was recorded going out than the drawer held (a cash refund of another "
        "register's sale, say), which the count at the close then shows"
    )
    cash_sales: Money
    cash_refunds: Money
    pay_ins: Money
    pay_outs: Money
    no_sale_count: int = Field(ge=0, le=INT64_MAX, json_schema_extra=INT64)
    tenders: list[TenderTotals] = Field(
        max_length=64,
        description="What each tender took and gave back at the register while the shift was "
        "open, each capture and refund when it succeeded: one after the close (a pickup "
        "captured at hand-over) counts in the shift open then, never in a closed one. One "
        "line per tender and currency: the shift's currency first; a card taken in another "
        "currency has a line of its own (cash in another currency is refused at the register, "
        "409 `shift_currency_mismatch`)",
    )
    discounts: Money | None = Field(
        None,
        description="What the orders confirmed at the register during the shift took off "
        "(promotions, manual discounts, loyalty points); counted as their events arrive, so "
        "one that arrives after the close is not in it",
    )
    discounted_orders: int = Field(0, ge=0, le=INT64_MAX, json_schema_extra=INT64)
    override_count: int = Field(
        0, ge=0, le=INT64_MAX, json_schema_extra=INT64,
        description="Managers' overrides granted at the register during the shift",
    )  # fmt: skip
    gift_cards_sold: Money | None = Field(
        None,
        description="Gift cards sold on their own (`POST /v1/gift-cards`, reason `sale`) and "
        "loaded at the register during the shift; a card sold as an order line is in the "
        "order's tenders instead",
    )
    gift_cards_sold_cash: Money | None = Field(
        None,
        description="Of `gift_cards_sold`, what was paid in cash (`paid_in_cash`): in the "
        "expected cash",
    )
    gift_cards_redeemed: SignedMoney | None = Field(
        None,
        description="Value taken off gift cards at the register during the shift outside a "
        "payment (`POST /v1/gift-cards/redeem`) less value given back to cards there; a gift "
        "card taken as a payment tender is in the tenders instead",
    )


class Shift(Answer):
    id: Id
    location_id: Id
    register_id: Id
    status: ShiftStatus
    opened_by: OptionalId = Field(description="The member signed in when it was opened")
    closed_by: OptionalId
    opening_float: Money
    counted_cash: Money | None = Field(description="Set when closed")
    over_short: int = Field(
        ge=INT64_MIN, le=INT64_MAX, json_schema_extra=INT64,
        description="Counted minus expected, in minor units: negative when short",
    )  # fmt: skip
    report: ShiftReport
    opened_at: Timestamp
    closed_at: Timestamp | None
    version: Version
    updated_at: Timestamp = Field(
        description="When it was last opened or closed: its place in the list's "
        "`updated_since` feed (what its payments and movements add to its report does not "
        "move it)"
    )


class ShiftList(Page[Shift]):
    pass


class DrawerMovementKind(StrEnum):
    """Money put in, taken out, or the drawer opened without a sale"""

    PAY_IN = "pay_in"
    PAY_OUT = "pay_out"
    NO_SALE = "no_sale"


class DrawerMovement(Answer):
    id: Id
    shift_id: Id
    kind: DrawerMovementKind
    amount: Money
    reason: str = Field(max_length=500)
    staff_id: OptionalId
    register_id: Id
    created_at: Timestamp


class DrawerMovementMade(Answer):
    movement: DrawerMovement
    shift: Shift
