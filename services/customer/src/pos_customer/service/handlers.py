"""Use cases of the customer service; every entrypoint (gRPC, consumers) calls these."""

from __future__ import annotations

from pos_customer.domain.model import (
    Customer,
    CustomerCreated,
    CustomerUpdated,
    validate_new_customer,
    validate_profile,
)
from pos_customer.service.ports import CustomerUnitOfWork
from pos_kit.errors import AlreadyExists, Conflict, NotFound
from pos_kit.ids import new_id
from pos_kit.paging import PageRequest


async def create_customer(
    uow: CustomerUnitOfWork, email: str, given_name: str, family_name: str
) -> Customer:
    email = email.strip().lower()
    validate_new_customer(email, given_name, family_name)
    if await uow.customers.get_by_email(email) is not None:
        raise AlreadyExists("a customer with this email already exists", "email_taken")
    customer = Customer(new_id("cus"), email, given_name.strip(), family_name.strip())
    await uow.customers.add(customer)
    uow.publish(CustomerCreated(customer))
    return customer


async def get_customer(uow: CustomerUnitOfWork, customer_id: str) -> Customer:
    customer = await uow.customers.get(customer_id)
    if customer is None:
        raise NotFound("customer", customer_id)
    return customer


async def list_customers(uow: CustomerUnitOfWork, page: PageRequest) -> list[Customer]:
    """By id, or the change feed partners poll (oldest change first, resumable by cursor)."""
    return await uow.customers.list(page)


async def credit_order(
    uow: CustomerUnitOfWork, customer_id: str, order_id: str, total_minor: int
) -> int:
    """Loyalty for a confirmed order. A sale to an unknown customer earns nothing."""
    customer = await uow.customers.get(customer_id)
    if customer is None:
        return 0
    points = customer.earn_points(order_id, total_minor)
    if points:
        await uow.customers.save_points(customer)
        for event in customer.events:
            uow.publish(event)
        customer.events.clear()
    return points


def _stale(current: int) -> Conflict:
    return Conflict(
        "the customer changed since the version you sent",
        "version_mismatch",
        {"current_version": str(current)},
    )


async def update_customer(
    uow: CustomerUnitOfWork,
    customer_id: str,
    email: str | None,
    given_name: str | None,
    family_name: str | None,
    expected_version: int,
) -> Customer:
    if email is not None:
        email = email.strip().lower()
    validate_profile(email, given_name, family_name)
    customer = await get_customer(uow, customer_id)
    if expected_version and expected_version != customer.version:
        raise _stale(customer.version)
    if email is not None and email != customer.email:
        if await uow.customers.get_by_email(email) is not None:
            raise AlreadyExists("a customer with this email already exists", "email_taken")
        customer.email = email
    if given_name is not None:
        customer.given_name = given_name.strip()
    if family_name is not None:
        customer.family_name = family_name.strip()
    seen = customer.version
    customer.version += 1
    # The write itself re-checks the version, so two concurrent updates cannot both win.
    if not await uow.customers.save_profile(customer, seen):
        current = await get_customer(uow, customer_id)
        raise _stale(current.version)
    uow.publish(CustomerUpdated(customer))
    return customer
