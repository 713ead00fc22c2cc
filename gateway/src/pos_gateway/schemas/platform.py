"""The gateway's own health answers."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pos_gateway.schemas.base import Answer, OptionalId, Page, Timestamp

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


class Readiness(Answer):
    ready: bool = Field(description="Whether the gateway's own database answers")
    checks: ReadinessChecks


class DeadLetter(Answer):
    """A message a consumer could not apply, kept in the dead-letter stream until redriven."""

    sequence: int = Field(ge=1, le=2**63 - 1, description="Its place in the dead-letter stream")
    consumer: str = Field(max_length=200, description="The consumer that gave up on it")
    subject: str = Field(max_length=300, description="The subject it was published on")
    event_id: OptionalId
    event_type: str = Field(max_length=300)
    merchant_id: OptionalId
    error: str = Field(max_length=200, description="Why the consumer gave up (no payload data)")
    deliveries: int = Field(ge=0, le=2**31 - 1, description="Attempts before it was set aside")
    dead_lettered_at: Timestamp | None


class DeadLetterList(Page[DeadLetter]):
    pass


class Redriven(Answer):
    """What a redrive sent again to its consumer."""

    redriven: list[DeadLetter] = Field(max_length=10_000)
