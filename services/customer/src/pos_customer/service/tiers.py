"""A customer's tier: what they earned in the program's period, their merged history included
(the ledger's earns and reversals: redemptions, adjustments and expiry do not count)."""

from __future__ import annotations

from datetime import UTC, datetime

from pos_customer.domain import loyalty
from pos_customer.domain.model import Customer
from pos_customer.service.ports import CustomerUnitOfWork


def starting_tier(program: loyalty.Program) -> str:
    """The tier a new customer holds from the start: one at threshold 0, if the program has
    one (every customer's, earned or not)."""
    tier = program.tier_for(0)
    return tier.name if tier else ""


async def tier_now(uow: CustomerUnitOfWork, customer: Customer, program: loyalty.Program) -> str:
    """The tier the ledger gives the customer under the program now. The stored tier is the one
    of their last earn or reversal: a period passed since, or a program changed, can have
    moved it (a tier at threshold 0 is every customer's from the start)."""
    if not program.tiers:
        return ""
    now = datetime.now(UTC)
    earned = await uow.loyalty.earned_since(customer.id, loyalty.tier_since(program, now))
    tier = program.tier_for(earned)
    return tier.name if tier else ""


async def retier(uow: CustomerUnitOfWork, customer: Customer, program: loyalty.Program) -> bool:
    """Set the tier from the ledger (none when the program has no tiers any more); a change is
    saved and announced (True). The customer's row must be locked."""
    name = await tier_now(uow, customer, program)
    if name == customer.tier:
        return False
    previous, customer.tier = customer.tier, name
    await uow.customers.save_points(customer)
    uow.publish(loyalty.TierChanged(customer.id, previous, name))
    return True


def moves_tiers(before: loyalty.Program, after: loyalty.Program) -> bool:
    """Whether a change of the program can move a customer's tier."""
    return (before.tiers, before.tier_period_days) != (after.tiers, after.tier_period_days)
