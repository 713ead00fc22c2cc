"""Registers, staff, roles, register sessions, overrides and the audit log."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import ConfigDict, Field

from pos_gateway.keys import ALL_SCOPES
from pos_gateway.permissions import PERMISSIONS
from pos_gateway.registers import CODE_PATTERN
from pos_gateway.routes.common import INT32
from pos_gateway.schemas.base import PAGE_MAX, Answer, Id, Page, Timestamp
from pos_gateway.schemas.credentials import Scope

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


class Role(Answer):
    id: str = Field(min_length=1, max_length=64, description="A built-in role's id is its name")
    name: str = Field(min_length=1, max_length=100)
    permissions: list[Permission] = Field(max_length=len(PERMISSIONS))
    discount_limit_bps: int = Field(
        ge=0, le=10_000, json_schema_extra=INT32,
        description="The largest discount given without an override (1000 = 10 %)",
    )  # fmt: skip
    built_in: bool


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
