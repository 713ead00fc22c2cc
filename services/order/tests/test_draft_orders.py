"""Drafts on in-memory fakes: created priced with nothing held, edited (priced again, a new
version, a stale one refused), submitted (held as CreateOrder holds, or refused for short stock
and still a draft, then submitted again under new hold ids), cancelled with nothing to give
back, and left alone by the resumer."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from fakes import FakeCatalog, FakeCustomerService, FakePayments, FakeStock, FixedDiscount, Store
from fakes import uow_factory as fake_uows
from test_coupons_saga import CouponDiscount, FakeCoupons

from pos_kit.errors import Conflict, DomainError, InvalidArgument
from pos_kit.idempotency import Claim
from pos_kit.money import Money
from pos_order.domain.model import (
    FulfillmentRequest,
    FulfillmentType,
    HoldState,
    LineRequest,
    Order,
    OrderCancelled,
    OrderCreated,
    OrderStatus,
    OrderUpdated,
    SagaState,
    Tender,
)
from pos_order.domain.pricing import Manual
from pos_order.service import saga
from pos_order.service.handlers import confirmation, drafts
from pos_order.service.ports import (
    CheckoutPorts,
    CreateOrderCommand,
    DraftChange,
    OrderSettings,
)
from pos_order.service.saga import Policy

PICKUP = [FulfillmentRequest(FulfillmentType.PICKUP, "loc_1")]


class Shop:
    def __init__(self, tees: int = 5) -> None:
        self.store = Store()
        self.stock = FakeStock(TEE=tees, MUG=100)
        self.catalog = FakeCatalog(tax_bps=1000)
        self.ports = CheckoutPorts(
            self.catalog, FixedDiscount(500), FakePayments(), FakeCustomerService(), self.stock
        )
        self.policy = Policy(defaults=OrderSettings(hold_seconds=600))
        self.new_uow = fake_uows(self.store)
        self.requests = 0

    def run(self, steps: Any) -> Any:
        async def go() -> Any:
            async with self.new_uow() as uow:
                read = await steps.read(uow)
                await uow.commit()
            self.requests += 1
            outcome = await steps.call(Claim("mer_a", f"r{self.requests}", datetime.now(UTC)), read)
            async with self.new_uow() as uow:
                answer = await steps.record(uow, outcome)
                await uow.commit()
            return answer

        return asyncio.run(go())

    def draft(self, quantity: int = 2, **fields: Any) -> Order:
        self.requests += 1
        cmd = CreateOrderCommand(
            f"create-{self.requests}", "web", "loc_1", "", [LineRequest("TEE", quantity)],
            PICKUP, draft=True, **fields,
        )  # fmt: skip
        return self.run(drafts.CreateOrder(cmd, self.ports, self.new_uow, self.policy, _same))

    def edit(self, order: Order, **fields: Any) -> Order:
        change = DraftChange(f"edit-{self.requests}", order.id, **fields)
        return self.run(
            drafts.UpdateDraftOrder(change, self.ports, self.new_uow, self.policy, _same)
        )

    def submit(
        self, order: Order, codes: tuple[str, ...] = (), below_cost_permitted: bool = True
    ) -> Order:
        return self.run(
            drafts.SubmitOrder(
                "s",
                order.id,
                codes,
                self.ports,
                self.new_uow,
                self.policy,
                _same,
                below_cost_permitted=below_cost_permitted,
            )
        )

    def cancel(self, order: Order) -> Order:
        return self.run(
            confirmation.CancelOrder(
                order.id, self.ports, self.new_uow, self.policy, lambda o, _: o
            )
        )

    def order(self, order_id: str) -> Order:
        return self.store.orders[("mer_a", order_id)]

    def published(self, kind: type) -> list[str]:
        return [e.order.id for e in self.store.published if isinstance(e, kind)]

    def told(self) -> list[tuple[str, str, int]]:
        """Each event of an order as published: its type, the order's status and version."""
        return [
            (type(e).__name__, e.order.status.value, e.order.version)
            for e in self.store.published
            if hasattr(e, "order")
        ]


def _same(o: Order) -> Order:
    return o


def test_a_draft_is_priced_and_announced_with_nothing_held() -> None:
    shop = Shop()
    draft = shop.draft(2, notes="gift", metadata={"cart": "c1"})
    assert draft.status is OrderStatus.DRAFT
    # Priced as an order is: 2 x 25.00, 5.00 off, 10 % tax on the rest.
    assert (draft.totals.subtotal.amount, draft.totals.discount.amount) == (5000, 500)
    assert (draft.totals.tax.amount, draft.totals.total.amount) == (450, 4950)
    assert shop.stock.available("TEE") == 5 and shop.stock.requests == {}
    assert all(f.hold is None for f in draft.fulfillments)
    # Nothing for the resumer, no expiry; order.created once, as a draft.
    assert draft.saga.state is SagaState.DONE and draft.expires_at is None
    assert shop.published(OrderCreated) == [draft.id]
    assert draft.timeline[0].status == "draft"
    # No tender, no confirmation while it is a draft.
    with pytest.raises(Conflict) as err:
        shop.order(draft.id).add_tender(Tender.CASH, 100, "t")
    assert err.value.code == "order_not_pending"


def test_an_edit_prices_the_draft_again_as_a_new_version() -> None:
    shop = Shop()
    draft = shop.draft(2)
    edited = shop.edit(
        draft,
        expected_version=draft.version,
        lines=[LineRequest("TEE", 1), LineRequest("MUG", 3)],
        notes="ring the bell",
    )
    assert edited.version == draft.version + 1
    assert [(ln.sku, ln.quantity) for ln in edited.lines] == [("TEE", 1), ("MUG", 3)]
    assert edited.totals.subtotal.amount == 2500 + 3600 and edited.notes == "ring the bell"
    assert shop.stock.requests == {}
    # The version seen before the edit is stale now: refused, nothing written.
    with pytest.raises(Conflict) as stale:
        shop.edit(draft, expected_version=draft.version, notes="lost")
    assert stale.value.code == "version_mismatch"
    assert stale.value.metadata["current_version"] == str(edited.version)
    assert shop.order(draft.id).notes == "ring the bell"
    # Bad input names its field, nothing written.
    with pytest.raises(InvalidArgument) as bad:
        shop.edit(edited, lines=[LineRequest("TEE", 0)])
    assert [v.field for v in bad.value.violations] == ["lines[0].quantity"]
    assert shop.order(draft.id).version == edited.version
    # The edit is announced with the draft at its new version; what was refused, not.
    assert shop.published(OrderCreated) == shop.published(OrderUpdated) == [draft.id]
    assert shop.told()[1:] == [("OrderUpdated", "draft", edited.version)]


def test_an_edit_removes_the_drafts_manual_discount_only_when_told_to() -> None:
    shop = Shop()
    manual = Manual("percent", 1000, "regular customer", "key_1")
    draft = shop.draft(2, order_manual=manual)
    assert draft.saga.draft is not None and draft.saga.draft.order_manual == manual
    kept = shop.edit(draft, notes="still ten off")
    assert kept.saga.draft is not None and kept.saga.draft.order_manual == manual
    cleared = shop.edit(kept, clear_order_manual=True)
    assert cleared.saga.draft is not None and cleared.saga.draft.order_manual is None
    assert cleared.version == kept.version + 1 and cleared.notes == "still ten off"
    assert shop.told()[-1] == ("OrderUpdated", "draft", cleared.version)


def test_a_submit_holds_the_draft_repriced_now() -> None:
    shop = Shop()
    draft = shop.draft(2)
    # The catalog changed while the draft waited: the submit sells at today's price.
    shop.catalog.items["TEE"] = replace(shop.catalog.items["TEE"], unit_price=Money(3000, "USD"))
    order = shop.submit(draft)
    assert order.status is OrderStatus.PENDING_PAYMENT
    assert order.lines[0].unit_price.amount == 3000 and order.totals.subtotal.amount == 6000
    assert order.fulfillments[0].hold is HoldState.HELD and shop.stock.available("TEE") == 3
    assert order.saga.draft is None and order.expires_at is not None
    assert [c.status for c in order.timeline if ":" not in c.status] == [
        "draft",
        "pending_payment",
    ]
    # Created once, as a draft; the submit, once its stock is held, is its update.
    assert shop.told() == [
        ("OrderCreated", "draft", draft.version),
        ("OrderUpdated", "pending_payment", order.version),
    ]
    # Submitted again (another request): answered as it is, nothing held or told twice.
    assert shop.submit(draft).status is OrderStatus.PENDING_PAYMENT
    assert shop.stock.available("TEE") == 3 and len(shop.told()) == 2
    # No longer a draft: no edit.
    with pytest.raises(Conflict) as err:
        shop.edit(order, notes="late")
    assert err.value.code == "order_not_draft"


def test_a_submit_short_of_stock_leaves_a_draft_that_may_be_submitted_again() -> None:
    shop = Shop(tees=5)
    draft = shop.draft(2)
    # Two pickups: the mugs' hold is taken, the shirts' refused.
    draft = shop.edit(
        draft,
        lines=[LineRequest("MUG", 1, 0), LineRequest("TEE", 4, 1)],
        fulfillments=PICKUP * 2,
    )
    shop.stock.on_hand["TEE"] = 3
    with pytest.raises(DomainError) as short:
        shop.submit(draft)
    assert short.value.code == "insufficient_stock"
    back = shop.order(draft.id)
    assert back.status is OrderStatus.DRAFT and back.saga.state is SagaState.DONE
    assert back.timeline[-1].status == "draft" and back.timeline[-1].reason == "insufficient_stock"
    assert all(f.hold is None for f in back.fulfillments)
    assert shop.stock.available("TEE") == 3 and shop.stock.available("MUG") == 100
    assert shop.published(OrderCancelled) == []
    # Never announced as placed; a draft again, priced by the submit: announced as changed.
    assert shop.published(OrderCreated) == [draft.id]
    assert shop.told()[-1] == ("OrderUpdated", "draft", back.version)
    # Stock arrives: the same draft is submitted again, and holds anew (the first submit's
    # hold ids answered with what they did then).
    shop.stock.on_hand["TEE"] = 10
    order = shop.submit(back)
    assert order.status is OrderStatus.PENDING_PAYMENT
    assert shop.stock.available("TEE") == 6 and shop.stock.available("MUG") == 99
    assert shop.told()[-1] == ("OrderUpdated", "pending_payment", order.version)
    assert shop.published(OrderCreated) == [draft.id]


def test_a_cancelled_draft_gives_nothing_back_and_keeps_no_codes() -> None:
    shop = Shop()
    draft = shop.draft(2)
    cancelled = shop.cancel(draft)
    assert cancelled.status is OrderStatus.CANCELLED and cancelled.saga.draft is None
    assert shop.stock.requests == {} and shop.published(OrderCancelled) == [draft.id]
    with pytest.raises(Conflict) as err:
        shop.submit(draft)
    assert err.value.code == "order_not_draft"


def test_the_resumer_leaves_a_draft_alone() -> None:
    shop = Shop()
    draft = shop.draft(2)
    resumed = asyncio.run(saga.resume(shop.new_uow, shop.ports, draft.id, shop.policy))
    assert resumed.status is OrderStatus.DRAFT and resumed.version == draft.version


def test_a_submit_whose_driver_is_gone_is_put_back_to_draft_by_the_resumer() -> None:
    shop = Shop()
    draft = shop.draft(2)
    steps = drafts.SubmitOrder("s", draft.id, (), shop.ports, shop.new_uow, shop.policy, _same)
    shop.stock.down = True  # the submit stops after saving it pending, its hold not asked
    with pytest.raises(DomainError):
        shop.run(steps)
    assert shop.order(draft.id).status is OrderStatus.PENDING_PAYMENT
    shop.stock.down = False
    asyncio.run(saga.resume(shop.new_uow, shop.ports, draft.id, shop.policy))
    back = shop.order(draft.id)
    assert back.status is OrderStatus.DRAFT and back.timeline[-1].reason == "abandoned"
    assert shop.told()[-1] == ("OrderUpdated", "draft", back.version)
    # Its hold, asked again by the compensation to learn whether one was made, is released.
    assert shop.stock.available("TEE") == 5
    assert shop.submit(back).status is OrderStatus.PENDING_PAYMENT


def test_no_tender_is_taken_while_a_submit_is_unfinished() -> None:
    shop = Shop()
    draft = shop.draft(2)
    shop.stock.down = True  # the submit stops after saving it pending, its hold not asked
    with pytest.raises(DomainError):
        shop.submit(draft)
    pending = shop.order(draft.id)
    assert pending.status is OrderStatus.PENDING_PAYMENT
    with pytest.raises(Conflict) as err:
        pending.add_tender(Tender.CASH, 100, "t")
    assert err.value.code == "order_submitting"
    # Its submit, retried, finishes it: then the tender is taken.
    shop.stock.down = False
    order = shop.submit(draft)
    assert order.saga.draft is None and shop.stock.available("TEE") == 3
    # Announced once its submit finished, not when it was left unfinished.
    assert [t[:2] for t in shop.told()] == [("OrderCreated", "draft"),
                                           ("OrderUpdated", "pending_payment")]  # fmt: skip
    assert order.add_tender(Tender.CASH, 100, "t").amount == 100


def test_a_drafts_coupon_is_given_at_its_submit_and_reserved_once_its_stock_is_held() -> None:
    """A code is never stored: a draft takes none (400, nothing saved), and its submit, given
    them, prices the draft with them and reserves them once its stock is held."""
    shop = Shop(tees=1)
    coupons = FakeCoupons()
    shop.ports = CheckoutPorts(
        shop.catalog, CouponDiscount(), FakePayments(), FakeCustomerService(), shop.stock,
        coupons=coupons,
    )  # fmt: skip
    with pytest.raises(DomainError) as refused:
        shop.draft(2, coupon_codes=("SAVE10",))
    assert [v.field for v in refused.value.violations] == ["coupon_codes"]
    assert shop.store.orders == {}
    draft = shop.draft(2)
    with pytest.raises(DomainError) as edited:
        shop.edit(draft, coupon_codes=("SAVE10",))
    assert [v.field for v in edited.value.violations] == ["coupon_codes"]
    assert draft.totals.discount.amount == 0 and coupons.requests == []
    with pytest.raises(DomainError) as short:
        shop.submit(draft, ("SAVE10",))
    assert short.value.code == "insufficient_stock"
    # Refused for stock before the promotion service was asked anything: its one reservation
    # per order is still to be made (given back, it would answer the next submit so).
    assert shop.order(draft.id).status is OrderStatus.DRAFT and coupons.reserved == {}
    assert "SAVE10" not in repr(shop.order(draft.id))  # nothing of the code was kept
    shop.stock.on_hand["TEE"] = 5
    order = shop.submit(draft, ("SAVE10",))
    assert order.status is OrderStatus.PENDING_PAYMENT and order.totals.discount.amount == 1000
    assert coupons.reserved == {draft.id: "reserved"} and order.saga.coupons.uses
    assert order.saga.draft is None


def _beside_another_edit(shop: Shop, steps: Any, other: DraftChange) -> Any:
    """`steps` read the draft, then `other` edits it to its end, then `steps` go on: a change
    that came in while they priced."""

    async def run(s: Any, request_id: str) -> Any:
        async with shop.new_uow() as uow:
            read = await s.read(uow)
            await uow.commit()
        return read, request_id

    async def go() -> Any:
        read, _ = await run(steps, "first")
        meanwhile = drafts.UpdateDraftOrder(other, shop.ports, shop.new_uow, shop.policy, _same)
        other_read, _ = await run(meanwhile, "other")
        await meanwhile.call(Claim("mer_a", other.request_id, datetime.now(UTC)), other_read)
        return await steps.call(Claim("mer_a", "first", datetime.now(UTC)), read)

    return asyncio.run(go())


def test_an_edit_naming_no_version_beside_another_is_priced_again_with_both() -> None:
    """Two edits of one cart at once, neither naming a version: both apply, the later priced
    again from the draft the first left (its lines with the other's notes). It was a 409
    `version_mismatch` (a 412 at the gateway) for a request that named no version; one that
    names the version it saw is still refused, nothing written."""
    shop = Shop()
    draft = shop.draft(2)
    lines = [LineRequest("TEE", 1), LineRequest("MUG", 3)]
    steps = drafts.UpdateDraftOrder(
        DraftChange("edit-lines", draft.id, lines=lines), shop.ports, shop.new_uow, shop.policy,
        _same,
    )  # fmt: skip
    other = DraftChange("edit-notes", draft.id, notes="ring the bell", metadata={"cart": "c2"})

    edited = _beside_another_edit(shop, steps, other)

    assert edited.version == draft.version + 2
    assert [(ln.sku, ln.quantity) for ln in edited.lines] == [("TEE", 1), ("MUG", 3)]
    assert edited.totals.subtotal.amount == 2500 + 3600
    assert (edited.notes, edited.metadata) == ("ring the bell", {"cart": "c2"})
    assert shop.told()[-1] == ("OrderUpdated", "draft", edited.version)

    seen = shop.order(draft.id).version
    named = drafts.UpdateDraftOrder(
        DraftChange("edit-named", draft.id, expected_version=seen, lines=[LineRequest("TEE", 4)]),
        shop.ports, shop.new_uow, shop.policy, _same,
    )  # fmt: skip
    with pytest.raises(Conflict) as stale:
        _beside_another_edit(shop, named, DraftChange("edit-again", draft.id, notes="late"))
    assert stale.value.code == "version_mismatch"
    after = shop.order(draft.id)
    assert [(ln.sku, ln.quantity) for ln in after.lines] == [("TEE", 1), ("MUG", 3)]
    assert after.notes == "late"


def test_a_submit_beside_an_edit_submits_the_draft_as_edited() -> None:
    """The shopper's last edit lands while the submit prices the cart: the submit prices the
    edited draft again and holds it. A submit names no version: it was a 409
    `version_mismatch` it could do nothing about."""
    shop = Shop()
    draft = shop.draft(2)
    steps = drafts.SubmitOrder("s", draft.id, (), shop.ports, shop.new_uow, shop.policy, _same)

    submitted = _beside_another_edit(
        shop, steps, DraftChange("edit-last", draft.id, lines=[LineRequest("TEE", 3)])
    )

    assert submitted.status is OrderStatus.PENDING_PAYMENT
    assert [(ln.sku, ln.quantity) for ln in submitted.lines] == [("TEE", 3)]
    assert shop.stock.available("TEE") == 2


def test_a_submit_judges_selling_below_cost_as_the_catalog_stands_now() -> None:
    """A draft's price entered by hand is judged against its product's unit cost again at the
    submit, which prices the draft as the catalog stands: the cost raised since, a submit by
    a caller who may not sell below cost is refused (`permission_required` naming
    `sell_below_cost` and the line), the draft left as it was, nothing held or announced;
    one who may submits it, its line marked sold below cost."""
    shop = Shop()
    fitting = replace(shop.catalog.items["TEE"], open_price=True, unit_cost=1000)
    shop.catalog.items["TEE"] = fitting
    entered = [LineRequest("TEE", 1, unit_price=Money(3000, "USD"))]
    cmd = CreateOrderCommand(
        "create-fitting", "web", "loc_1", "", entered, PICKUP, draft=True,
        below_cost_permitted=False,
    )  # fmt: skip
    draft = shop.run(drafts.CreateOrder(cmd, shop.ports, shop.new_uow, shop.policy, _same))
    assert draft.status is OrderStatus.DRAFT and not draft.lines[0].below_cost
    told = shop.told()
    shop.catalog.items["TEE"] = replace(fitting, unit_cost=4000)

    with pytest.raises(DomainError) as refused:
        shop.submit(draft, below_cost_permitted=False)
    assert refused.value.code == "permission_required"
    assert refused.value.metadata == {"permission": "sell_below_cost"}
    assert [v.field for v in refused.value.violations] == ["lines[0]"]
    kept = shop.order(draft.id)
    assert kept.status is OrderStatus.DRAFT and kept.version == draft.version
    assert shop.stock.requests == {} and shop.told() == told

    order = shop.submit(draft)
    assert order.status is OrderStatus.PENDING_PAYMENT
    assert order.lines[0].unit_price.amount == 3000 and order.lines[0].below_cost


def test_whether_a_submit_may_sell_below_cost_is_not_in_its_fingerprint() -> None:
    """Who asks, not what is asked: a retry of a refused submit a manager's override allows is
    the same submit."""
    from pos.order.v1 import order_pb2
    from pos_order.entrypoints.fingerprints import CodePrinter

    printer = CodePrinter("a key of the service")
    refused = order_pb2.SubmitOrderRequest(
        request_id="s", order_id="o", below_cost_not_permitted=True
    )
    allowed = order_pb2.SubmitOrderRequest(request_id="s", order_id="o")
    assert printer.submit(refused) == printer.submit(allowed) == allowed
    assert refused.below_cost_not_permitted
