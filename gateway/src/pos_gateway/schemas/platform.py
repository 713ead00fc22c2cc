"""The gateway's own health answers."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pos_gateway.schemas.base import Answer

Check = Literal["ok", "not_serving", "unavailable"]


class Health(Answer):
    status: Literal["ok"]


class ReadinessChecks(Answer):
    """The gateway's database, then each service's gRPC health."""

    database: Literal["ok", "unavailable"]
    inventory: Check
    promotion: Check
    customer: Check
    payment: Check
    order: Check
    dispatcher: Check


class Readiness(Answer):
    ready: bool = Field(description="Whether the gateway's own database answers")
    checks: ReadinessChecks
