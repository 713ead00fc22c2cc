"""A tier change re-tiers a merchant's customers a batch a transaction: the change's own
transaction the first batch, a background pass the rest, on real PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from pos.customer.v1 import customer_pb2, events_pb2, loyalty_pb2
from pos_customer.domain.loyalty import Sale
from pos_customer.entrypoints.retier import retier_all
from pos_customer.service import points
from pos_devstack.testing import Infra, serve_in_process

from .conftest import Caller, Service

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def service(infra: Infra) -> AsyncIterator[Service]:
    """The service with its background pass asleep after its first round: the test runs it."""
    from pos.customer.v1 import customer_pb2_grpc

    async with serve_in_process("customer", infra, retier_seconds=3600) as svc:
        yield Service(customer_pb2_grpc.CustomerServiceStub(svc.channel), svc.runtime, "")


def _program(*tiers: tuple[str, int]) -> loyalty_pb2.SetLoyaltyProgramRequest:
    program = loyalty_pb2.LoyaltyProgram(enabled=True, points_per_unit=1, point_value_minor=1)
    for name, threshold in tiers:
        program.tiers.append(
            loyalty_pb2.Tier(name=name, threshold_points=threshold, multiplier_bps=10_000)
        )
    return loyalty_pb2.SetLoyaltyProgramRequest(program=program)


async def _earners(service: Service, merchant: Caller, n: int) -> list[str]:
    """`n` customers with 100 points earned each, by id."""
    ids = []
    for i in range(n):
        c = await merchant.create(given_name=f"Earner {i}")
        sale = Sale(f"ord_rt{i}", c.id, "loc_1", "USD", 10_000, 0, ())
        async with service.runtime.uow().bind(merchant.merchant) as uow:
            await points.credit_sale(uow, sale)
            await uow.commit()
        ids.append(c.id)
    return sorted(ids)


async def _tiers(merchant: Caller, ids: list[str]) -> list[str]:
    out = []
    for customer_id in ids:
        got = await merchant("GetCustomer", customer_pb2.GetCustomerRequest(id=customer_id))
        out.append(got.customer.tier)
    return out


async def _left(service: Service, merchant: Caller) -> str | None:
    rows = await service.sql(
        "SELECT retier_after FROM loyalty_programs WHERE merchant_id = :m", m=merchant.merchant
    )
    return rows[0][0]  # type: ignore[no-any-return]


async def test_a_tier_change_past_one_batch_is_finished_by_the_background_pass(
    merchant: Caller, service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Five customers, batches of two: the change re-tiers the first two by id in its own
    transaction and leaves the rest; the background pass finishes them in two more batches,
    each customer announced once; then nothing is left."""
    monkeypatch.setattr(points, "RETIER_BATCH", 2)
    await merchant("SetLoyaltyProgram", _program(("gold", 100)))
    ids = await _earners(service, merchant, 5)
    assert await _tiers(merchant, ids) == ["gold"] * 5
    assert await _left(service, merchant) is None

    await merchant("SetLoyaltyProgram", _program(("gold", 500), ("silver", 50)))
    assert await _tiers(merchant, ids) == ["silver", "silver", "gold", "gold", "gold"]
    assert await _left(service, merchant) == ids[1]

    assert await retier_all(service.runtime.uow) == 2
    assert await _tiers(merchant, ids) == ["silver"] * 5
    assert await _left(service, merchant) is None
    assert await retier_all(service.runtime.uow) == 0  # nothing left: no batch

    rows = await service.sql(
        "SELECT payload FROM outbox WHERE merchant_id = :m AND event_type = :t",
        m=merchant.merchant,
        t=events_pb2.LoyaltyTierChanged.DESCRIPTOR.full_name,
    )
    moves = []
    for (payload,) in rows:
        event = events_pb2.LoyaltyTierChanged()
        event.ParseFromString(bytes(payload))
        moves.append((event.customer_id, event.previous_tier, event.tier))
    assert sorted(m for m in moves if m[1] == "gold") == [(i, "gold", "silver") for i in ids]


async def test_a_tier_change_while_one_is_under_way_starts_it_over(
    merchant: Caller, service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second change before the background pass came: the customers the first change left
    go straight to the second program's tier; none is left behind on the first's."""
    monkeypatch.setattr(points, "RETIER_BATCH", 2)
    await merchant("SetLoyaltyProgram", _program(("gold", 100)))
    ids = await _earners(service, merchant, 4)
    await merchant("SetLoyaltyProgram", _program(("silver", 50)))
    assert await _tiers(merchant, ids) == ["silver", "silver", "gold", "gold"]
    await merchant("SetLoyaltyProgram", _program(("bronze", 50)))
    assert await _tiers(merchant, ids) == ["bronze", "bronze", "gold", "gold"]
    assert await _left(service, merchant) == ids[1]

    await retier_all(service.runtime.uow)
    assert await _tiers(merchant, ids) == ["bronze"] * 4
    assert await _left(service, merchant) is None
