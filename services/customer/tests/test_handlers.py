"""Customer use cases on in-memory fakes."""

from __future__ import annotations

import pytest

from pos_customer.domain.model import (
    Customer,
    CustomerCreated,
    CustomerUpdated,
    LoyaltyPointsEarned,
    points_for,
)
from pos_customer.service import handlers
from pos_kit.errors import AlreadyExists, Conflict, InvalidArgument, NotFound
from pos_kit.paging import PageRequest


class FakeCustomers:
    """Bound to one merchant, like the real repository; `rows` may be shared by several."""

    def __init__(self, merchant: str, rows: dict[tuple[str, str], Customer]) -> None:
        self.rows = rows
        self.merchant = merchant
        self.saved_versions: list[int] = []
        self.lose_race = False

    async def add(self, customer: Customer) -> None:
        self.rows[(self.merchant, customer.id)] = customer

    async def get(self, customer_id: str) -> Customer | None:
        return self.rows.get((self.merchant, customer_id))

    async def get_by_email(self, email: str) -> Customer | None:
        return next(
            (c for (m, _), c in self.rows.items() if m == self.merchant and c.email == email),
            None,
        )

    async def save_points(self, customer: Customer) -> None:
        self.rows[(self.merchant, customer.id)] = customer

    async def save_profile(self, customer: Customer, seen_version: int) -> bool:
        self.saved_versions.append(seen_version)
        return not self.lose_race

    async def list(self, page: PageRequest) -> list[Customer]:
        mine = (c for (m, _), c in self.rows.items() if m == self.merchant)
        return sorted(mine, key=lambda c: c.id)[: page.fetch]


class FakeUow:
    def __init__(
        self, merchant_id: str = "mer_a", rows: dict[tuple[str, str], Customer] | None = None
    ) -> None:
        self.customers = FakeCustomers(merchant_id, {} if rows is None else rows)
        self.published: list[object] = []

    def publish(self, event: object) -> None:
        self.published.append(event)


async def test_create_normalises_email_and_announces_the_customer() -> None:
    uow = FakeUow()
    customer = await handlers.create_customer(uow, " Ada@Example.COM ", "Ada", "Lovelace")
    assert customer.email == "ada@example.com"
    assert customer.id.startswith("cus_")
    assert [type(e) for e in uow.published] == [CustomerCreated]


async def test_an_email_is_unique_per_merchant() -> None:
    uow = FakeUow()
    await handlers.create_customer(uow, "ada@example.com", "Ada", "")
    with pytest.raises(AlreadyExists):
        await handlers.create_customer(uow, "ADA@example.com", "Ada", "")


async def test_bad_email_is_a_field_error() -> None:
    with pytest.raises(InvalidArgument) as err:
        await handlers.create_customer(FakeUow(), "not-an-email", "Ada", "")
    assert [v.field for v in err.value.violations] == ["email"]


async def test_another_merchants_customer_is_not_found() -> None:
    uow = FakeUow()
    customer = await handlers.create_customer(uow, "ada@example.com", "Ada", "")
    other = FakeUow("mer_b", uow.customers.rows)
    with pytest.raises(NotFound):
        await handlers.get_customer(other, customer.id)
    assert await handlers.get_customer(uow, customer.id) is customer


async def test_a_confirmed_order_earns_a_point_per_whole_unit() -> None:
    uow = FakeUow()
    customer = await handlers.create_customer(uow, "ada@example.com", "Ada", "")
    assert await handlers.credit_order(uow, customer.id, "ord_1", 6040) == 60
    assert customer.loyalty_points == 60
    earned = [e for e in uow.published if isinstance(e, LoyaltyPointsEarned)]
    assert earned == [LoyaltyPointsEarned(customer.id, "ord_1", 60, 60)]


def test_points_round_down_and_never_go_negative() -> None:
    assert points_for(199) == 1
    assert points_for(99) == 0
    assert points_for(-500) == 0


async def test_an_update_with_a_stale_version_is_refused_with_the_current_one() -> None:
    uow = FakeUow()
    customer = await handlers.create_customer(uow, "ada@example.com", "Ada", "")
    updated = await handlers.update_customer(uow, customer.id, None, "Augusta", None, 1)
    assert (updated.given_name, updated.version) == ("Augusta", 2)
    assert uow.customers.saved_versions == [1]
    with pytest.raises(Conflict) as err:
        await handlers.update_customer(uow, customer.id, None, "Ada", None, 1)
    assert err.value.code == "version_mismatch"
    assert err.value.metadata == {"current_version": "2"}


async def test_losing_a_concurrent_update_race_is_a_conflict_not_a_lost_write() -> None:
    uow = FakeUow()
    customer = await handlers.create_customer(uow, "ada@example.com", "Ada", "")
    uow.customers.lose_race = True
    with pytest.raises(Conflict):
        await handlers.update_customer(uow, customer.id, None, "Augusta", None, 0)
    assert not any(isinstance(e, CustomerUpdated) for e in uow.published)
