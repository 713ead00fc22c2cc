"""Loyalty points through the saga's crash paths, on in-memory fakes: a sale whose driver is
gone is finished (the points redeemed) or compensated (the points released) by the resumer,
with request ids derived from the order."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import pytest
from fakes import FakeStock, stopped_at, uow_factory
from test_checkout import Shop, _cmd, checkout

from pos_kit.errors import Conflict, DomainError, NotFound, RequestIdReused, Unavailable
from pos_kit.idempotency import Claim
from pos_kit.money import Money
from pos_order.domain.model import (
    FulfillmentRequest,
    FulfillmentType,
    HoldState,
    LineRequest,
    OrderStatus,
    PointsState,
    Tender,
)
from pos_order.service import saga
from pos_order.service.handlers import confirmation, drafts, tenders
from pos_order.service.ports import CheckoutPorts, CreateOrderCommand
from pos_order.service.saga import Policy


@dataclass
class FakeLoyalty:
    """The customer service's holds, one per order, as its rules go: finalising or releasing
    twice is once; a hold finalised cannot be released."""

    balance: int = 1000
    value: int = 1  # what a point takes off, minor units
    holds: dict[str, tuple[int, str]] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)

    async def point_value(self) -> int:
        return self.value

    async def available(self, customer_id: str) -> int | None:
        return self.balance - sum(p for p, s in self.holds.values() if s == "held")

    async def hold(
        self, request_id: str, order_id: str, customer_id: str, points: int, currency: str
    ) -> int:
        self.requests.append(request_id)
        held = sum(p for p, s in self.holds.values() if s == "held")
        if points > self.balance - held:
            raise Conflict("not that many points", "insufficient_points")
        self.holds[order_id] = (points, "held")
        return points * self.value

    async def finalize(self, request_id: str, order_id: str) -> None:
        self.requests.append(request_id)
        points, status = self.holds[order_id]
        if status == "held":
            self.balance -= points
            self.holds[order_id] = (points, "finalized")

    async def release(self, request_id: str, order_id: str) -> None:
        self.requests.append(request_id)
        if order_id not in self.holds:
            raise NotFound("points hold", order_id)
        points, status = self.holds[order_id]
        if status == "finalized":
            raise Conflict("the hold is finalized", "hold_finalized")
        self.holds[order_id] = (points, "released")

    async def reverse(self, request_id: str, order_id: str, reason: str) -> None:
        self.requests.append(request_id)
        points, _ = self.holds[order_id]
        self.balance += points
        self.holds[order_id] = (points, "reversed")


@dataclass
class PointsShop(Shop):
    loyalty: FakeLoyalty = field(default_factory=FakeLoyalty)
    stock: FakeStock = field(default_factory=lambda: FakeStock(TEE=10))

    @property
    def ports(self) -> CheckoutPorts:
        return CheckoutPorts(
            self.catalog, self.discounts, self.payments, self.customers, self.stock,
            loyalty=self.loyalty,
        )  # fmt: skip


async def test_a_sale_whose_card_never_reached_payment_releases_its_points_via_the_resumer() -> (
    None
):
    shop = PointsShop()
    shop.payments.down = True
    with pytest.raises(Unavailable):
        await checkout(shop, _cmd(redeem_points=250))
    (order,) = shop.saved.values()
    assert order.saga.points_state is PointsState.HELD  # held before the card was asked
    shop.payments.down = False

    resumed = await saga.resume(uow_factory(shop.store), shop.ports, order.id, Policy())

    assert resumed.status is OrderStatus.CANCELLED and resumed.cancel_reason == "abandoned"
    assert resumed.saga.points_state is PointsState.RELEASED
    assert shop.loyalty.holds[order.id] == (250, "released") and shop.loyalty.balance == 1000
    assert shop.loyalty.requests == [f"{order.id}/points/hold", f"{order.id}/points/release"]


async def test_a_sale_whose_answer_was_lost_redeems_its_points_when_the_resumer_confirms() -> None:
    shop = PointsShop()
    with pytest.raises(Unavailable):
        await checkout(shop, _cmd(card_token="tok_timeout", redeem_points=250))
    (order,) = shop.saved.values()
    assert order.totals.discount.amount == 250
    shop.payments.settle_pending()  # the payment reconciler captures it

    resumed = await saga.resume(uow_factory(shop.store), shop.ports, order.id, Policy())

    assert resumed.status is OrderStatus.COMPLETED
    assert resumed.saga.points_state is PointsState.FINALIZED
    assert shop.loyalty.balance == 750
    assert shop.payments.kept(order.id) == order.totals.total.amount
    # Cancelled after confirmation is not possible for a register sale (its goods left); the
    # finalisation ran once, under its derived id.
    assert shop.loyalty.requests.count(f"{order.id}/points/finalize") == 1


async def _run(steps: Any, shop: PointsShop, request_id: str) -> Any:
    """A use case's three steps as the kit runs them: read, calls, record."""
    new_uow = uow_factory(shop.store, "mer_a")
    async with new_uow() as uow:
        read = await steps.read(uow)
        await uow.commit()
    done = await steps.call(Claim("mer_a", request_id, datetime.now(UTC)), read)
    async with new_uow() as uow:
        answer = await steps.record(uow, done)
        await uow.commit()  # as the kit does after storing the answer
        return answer


async def test_a_web_order_holds_its_points_and_a_cancellation_releases_them() -> None:
    shop = PointsShop()
    new_uow = uow_factory(shop.store, "mer_a")
    cmd = CreateOrderCommand(
        "req-web", "web", "loc_1", "cus_1", [LineRequest("TEE", 2)], [], redeem_points=400
    )
    order = await _run(drafts.CreateOrder(cmd, shop.ports, new_uow, Policy(), _same), shop,
                       cmd.request_id)  # fmt: skip
    assert order.status is OrderStatus.PENDING_PAYMENT
    assert order.saga.points_state is PointsState.HELD and order.totals.discount.amount == 400
    assert shop.loyalty.holds[order.id] == (400, "held")

    cancelled = await _run(confirmation.CancelOrder(order.id, shop.ports, new_uow, Policy(), _kept),
                           shop, "req-cancel")  # fmt: skip

    assert cancelled.status is OrderStatus.CANCELLED
    assert cancelled.saga.points_state is PointsState.RELEASED
    assert shop.loyalty.holds[order.id] == (400, "released") and shop.loyalty.balance == 1000


def _kept(order: Any, _refunded: Any) -> Any:
    return order


def _same(order: Any) -> Any:
    return order


@dataclass
class RefusingLoyalty(FakeLoyalty):
    """The finalisation is refused for good (its derived request id already used with another
    body: `idempotency_key_reused`); `down_at_release`: the customer service cannot answer
    the compensation's release that many times."""

    down_at_release: int = 0

    async def finalize(self, request_id: str, order_id: str) -> None:
        self.requests.append(request_id)
        raise RequestIdReused()

    async def release(self, request_id: str, order_id: str) -> None:
        if self.down_at_release:
            self.down_at_release -= 1
            raise Unavailable("the customer service is unavailable", "customer_unavailable")
        await super().release(request_id, order_id)


@pytest.mark.parametrize("interrupted", ["no", "after_the_restock", "at_the_compensation"])
async def test_a_confirmation_failing_after_its_holds_were_committed_restocks_them_once(
    interrupted: str,
) -> None:
    """The pickup's hold is committed (its units sold), then the points' finalisation is
    refused: the confirmation is compensated, and the units come back to stock once (they
    stayed sold before: the hold, committed, could no longer be released). So they do when
    the compensation is cut short after the restock, or at its start, and the resumer
    finishes it: the restock is asked under its derived request id, never applied twice."""
    cut_short = interrupted == "after_the_restock"
    shop = PointsShop(loyalty=RefusingLoyalty(down_at_release=int(cut_short)))
    new_uow = uow_factory(shop.store, "mer_a")
    pickup = FulfillmentRequest(FulfillmentType.PICKUP, "loc_1")
    cmd = CreateOrderCommand(
        "req-web", "web", "loc_1", "cus_1", [LineRequest("TEE", 2)], [pickup], redeem_points=100
    )
    order = await _run(drafts.CreateOrder(cmd, shop.ports, new_uow, Policy(), _same), shop,
                       cmd.request_id)  # fmt: skip
    tender = tenders.TenderCommand(
        "req-card", order.id, None, Tender.CARD, Money(order.balance_due, order.currency),
        card_token="tok_visa",
    )  # fmt: skip
    await _run(tenders.AddTender(tender, shop.ports, new_uow, Policy(), _kept), shop, "req-card")
    assert shop.stock.on_hand["TEE"] == 10 and shop.stock.available("TEE") == 8
    policy = Policy()
    if interrupted == "at_the_compensation":
        policy = replace(policy, pause_at=frozenset({"compensating"}))
    confirm = confirmation.ConfirmOrder(order.id, shop.ports, new_uow, policy, _same)

    if interrupted == "at_the_compensation":  # the process dies there (the test hook)
        await stopped_at("compensating", _run(confirm, shop, "req-confirm"))
    else:
        with pytest.raises(DomainError) as err:
            await _run(confirm, shop, "req-confirm")
        assert err.value.code == ("customer_unavailable" if cut_short else "idempotency_key_reused")
    (fulfillment,) = order.fulfillments
    (hold,) = shop.stock.reservations.values()
    assert hold.status == "committed"  # the confirmation got that far
    if interrupted != "no":
        assert shop.saved[("mer_a", order.id)].status is OrderStatus.PENDING_PAYMENT
        resumed = await saga.resume(new_uow, shop.ports, order.id, Policy())
        assert resumed.status is OrderStatus.CANCELLED

    after = shop.saved[("mer_a", order.id)]
    assert (after.status, after.cancel_reason) == (OrderStatus.CANCELLED, "confirmation_failed")
    assert shop.stock.on_hand["TEE"] == 10 and shop.stock.available("TEE") == 10
    assert after.fulfillments[0].hold is HoldState.RESTOCKED
    assert f"{order.id}/restock/{fulfillment.id}" in shop.stock.requests
    assert shop.payments.kept(order.id) == 0 and shop.payments.held(order.id) == 0
    assert shop.loyalty.holds[order.id] == (100, "released") and shop.loyalty.balance == 1000
