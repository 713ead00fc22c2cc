"""The customers an order is for, as the order service's read model knows them."""

from __future__ import annotations

from pos_kit.errors import NotFound
from pos_order.domain.model import Order
from pos_order.domain.pricing import MAX_MERGE_HOPS, Buyer
from pos_order.service.ports import CustomerLookup, NewUow, OrderUnitOfWork


async def resolve_customer(customers: CustomerLookup, customer_id: str) -> tuple[str, int]:
    """Refuse a customer id the merchant does not have, exactly as one that exists nowhere;
    a duplicate merged into another customer is that customer (followed through every merge):
    the id a sale is recorded under, and its version.

    Ids learnt from the customer service's events need no call (see `start_request`), so a
    sale for a known customer goes on while that service is down. Only an id not seen yet is
    asked about; the survivor's version is returned for the caller to remember with its own
    writes, so the next sale needs no call. If the customer service cannot answer for such an
    id, the look-up's Unavailable (503) stands: letting it through would let any id through.
    """
    current, seen = customer_id, {customer_id}
    for _ in range(MAX_MERGE_HOPS):
        found = await customers.find(current)
        if found is None:
            break
        if not found.merged_into:
            return current, found.version
        if found.merged_into in seen:
            break
        current = found.merged_into
        seen.add(current)
    # Every request that names a customer names it as `customer_id`.
    raise NotFound("customer", customer_id, ["customer_id"])


async def current_customer(
    new_uow: NewUow, customers: CustomerLookup, customer_id: str
) -> tuple[str, Buyer]:
    """The customer `customer_id` is now, and what pricing needs of them: itself, or the
    survivor a duplicate was merged into. The read model answers for an id it knows; only one
    it does not is asked of the customer service (`resolve_customer`: an id the merchant does
    not have, an erased one included, is a 404)."""
    async with new_uow().reading() as uow:
        found = await uow.customers.resolve(customer_id)
    if found is not None:
        return found.id, found.buyer
    survivor, _ = await resolve_customer(customers, customer_id)
    return survivor, Buyer()


async def remember_customer(
    uow: OrderUnitOfWork, customer_id: str, version: int, buyer: Buyer | None = None
) -> None:
    """A customer created or changed at the customer service: its id is now known here, with
    what pricing needs of it (groups, tax exemption)."""
    await uow.customers.remember(customer_id, version, buyer)


async def customer_merged(
    uow: OrderUnitOfWork, loser_id: str, winner_id: str, version: int, buyer: Buyer
) -> None:
    """The customer service merged a duplicate into a customer: the survivor is known as the
    merge left it (a new version: its groups, points and history changed), and a sale naming
    the duplicate is the survivor's from now on."""
    await uow.customers.remember(winner_id, version, buyer)
    await uow.customers.merged(loser_id, winner_id)


async def erase_customer(uow: OrderUnitOfWork, customer_id: str) -> None:
    """The customer asked to be forgotten: their orders keep the customer id (a tombstone),
    lines and money, and lose what could be personal (shipment addresses and destinations,
    notes, the metadata a partner set); the stored answers and published events of this
    service that hold those go too, its events not sent yet go out without them, and the id
    is no customer any more (a sale naming it asks the customer service: 404).
    Idempotent: a redelivery finds nothing left to erase.

    The id is marked erased first, its row of the read model locked until the commit: an order
    naming it being written meanwhile (`refuse_if_erased`) is committed before the orders are
    blanked here, so it is blanked with them, or waits for this and is refused."""
    await uow.customers.forget(customer_id)
    await uow.orders.erase_customer(customer_id)


async def refuse_if_erased(uow: OrderUnitOfWork, customer_id: str) -> None:
    """In the transaction that writes an order naming `customer_id` (a new one, a draft's
    edit): the customer erased, even since the request read them as known, is a customer the
    merchant does not have (404), nothing written. The customer's row of the read model stays
    locked until the commit, so an erasure coming now waits for the order and blanks it."""
    if customer_id and await uow.customers.erased(customer_id):
        raise NotFound("customer", customer_id, ["customer_id"])


async def as_answered(uow: OrderUnitOfWork, order: Order) -> Order:
    """The order as the answer stored with this transaction may hold it: as this request
    last saw it, or, its customer erased since (the erasure blanked the order and deleted the
    answers stored before it: one stored after must not bring back what it blanked), as it is
    stored now. The customer's row of the read model stays locked until the answer is
    committed: an erasure coming meanwhile waits, then finds the answer and deletes it."""
    if order.customer_id and await uow.customers.erased(order.customer_id):
        stored = await uow.orders.get(order.id)
        if stored is not None:
            return stored
    return order
