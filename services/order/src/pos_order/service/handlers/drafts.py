"""Orders made in steps: created (or drafted), edited while a draft, annotated, submitted."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Generic, TypeVar

from pos_kit.errors import (
    Conflict,
    DomainError,
    ErrorKind,
    FieldViolation,
    NotFound,
    Unavailable,
    raise_if,
    require,
)
from pos_kit.idempotency import Claim
from pos_order.domain.coupons import CouponStep, validate_codes
from pos_order.domain.model import (
    DraftAsk,
    FulfillmentRequest,
    FulfillmentType,
    HoldState,
    LineRequest,
    Order,
    OrderStatus,
    SagaState,
    metadata_violations,
    validate_order,
    validate_redemption,
)
from pos_order.domain.pricing import ORDER_KINDS, Buyer, Manual, manual_off_bps, validate_manual
from pos_order.service import saga
from pos_order.service.handlers.customers import as_answered, refuse_if_erased
from pos_order.service.handlers.new_order import (
    Priced,
    Started,
    announce_change,
    check_gift_card_lines,
    coupon_cart,
    discard,
    nothing_kept_if_refused,
    points_named,
    priced_order,
    reserve_or_drop,
    save_new,
    start_request,
)
from pos_order.service.ports import (
    CheckoutPorts,
    CreateOrderCommand,
    DraftChange,
    NewUow,
    OrderUnitOfWork,
)
from pos_order.service.saga import Policy, boundary, change, now

R = TypeVar("R")


class CreateOrder(Generic[R]):
    """An order from any channel: priced, saved `pending_payment`, then its pickup and
    shipment lines held (all or none), and announced (`order.created`) once they are: a
    sourced shipment's store is then known. Short stock: 409 naming the short lines, every
    hold, coupon and points hold it took given back, and the order withdrawn (nobody was told
    of it). `draft`: priced and saved `draft`, announced at once, nothing held (SubmitOrder)."""

    def __init__(
        self,
        cmd: CreateOrderCommand,
        ports: CheckoutPorts,
        new_uow: NewUow,
        policy: Policy,
        answer: Callable[[Order], R],
    ) -> None:
        fulfillments = cmd.fulfillments or [
            FulfillmentRequest(FulfillmentType.IN_STORE, cmd.location_id)
        ]
        raise_if(validate_redemption(cmd.redeem_points, cmd.customer_id))
        validate_order(cmd.channel, cmd.location_id, cmd.lines, fulfillments, cmd.metadata)
        raise_if(
            validate_codes(cmd.coupon_codes)
            + validate_manual(cmd.order_manual, "order_manual", ORDER_KINDS)
            + _no_printed_codes(cmd.lines)
            + (_no_draft_codes(cmd.coupon_codes) if cmd.draft else [])
        )
        self.cmd = replace(cmd, fulfillments=fulfillments)
        self.ports = ports
        self.new_uow = new_uow
        self.policy = policy
        self.answer = answer

    async def read(self, uow: OrderUnitOfWork) -> Started:
        cmd = self.cmd
        return await start_request(
            uow, cmd.request_id, cmd.fingerprint, cmd.customer_id, self.policy
        )

    async def call(self, claim: Claim, started: Started) -> Order:
        cmd = self.cmd
        order = started.existing
        if order is None:
            order_id = started.order_id  # derived from the request's stored start
            async with nothing_kept_if_refused(self.new_uow, cmd.request_id):
                priced = await priced_order(
                    self.ports,
                    self.new_uow,
                    started,
                    order_id,
                    cmd.location_id,
                    cmd.customer_id,
                    cmd.lines,
                    cmd.fulfillments,
                    cmd.channel,
                    cmd.coupon_codes,
                    cmd.order_manual,
                    cmd.redeem_points,
                    cmd.below_cost_permitted,
                )
                order = priced.order
                await check_gift_card_lines(
                    self.ports, cmd.lines, order, started.settings.hold_seconds
                )
            order.notes, order.metadata = cmd.notes, dict(cmd.metadata)
            if cmd.draft:
                # Announced now, as a draft: nothing is held, reserved or set aside until
                # its submit (SubmitOrder), which prices it again.
                order.made_draft(_ask_of(cmd))
                return await save_new(self.new_uow, priced)
            order.saga.hold_ttl = started.settings.hold_seconds
            # With stock to hold, the order is announced once it is held; else, with coupons,
            # once they are reserved (a refusal drops an order nobody was told of).
            order.saga.announce_when_held = any(f.held for f in order.fulfillments)
            announce = not cmd.coupon_codes and not order.saga.announce_when_held
            order = await save_new(self.new_uow, priced, announce)
            await boundary(self.policy, "order_saved")
        if order.saga.coupons.step is CouponStep.SENT:
            cart = await coupon_cart(self.new_uow, order, cmd.coupon_codes, cmd.order_manual)
            announce = not order.saga.announce_when_held
            order = await reserve_or_drop(
                self.new_uow, self.ports, order, cart, announce, cmd.request_id
            )
        if order.saga.state is SagaState.RUNNING and order.status is OrderStatus.PENDING_PAYMENT:
            if any(f.held for f in order.fulfillments) and self.ports.stock is None:
                raise Unavailable("stock cannot be held now", "inventory_unavailable")
            # Points refused: an order waiting for its holds was never announced, and is
            # withdrawn as for short stock; one announced already is cancelled.
            unannounced = self._withdraw if order.saga.announce_when_held else None
            try:
                order = await saga.hold_points(
                    self.new_uow, self.ports, order, self.policy, unannounced
                )
            except DomainError as exc:
                raise points_named(exc) from None
            order = await saga.hold_stock(
                self.new_uow, self.ports, order, self.policy, self._withdraw
            )
        return order

    async def _withdraw(self, order: Order) -> None:
        await discard(self.new_uow, order.id, self.cmd.request_id)

    async def record(self, uow: OrderUnitOfWork, order: Order) -> R:
        return self.answer(await as_answered(uow, order))


def _no_printed_codes(lines: list[LineRequest]) -> list[FieldViolation]:
    # The order is confirmed by a later request (or the resumer): a pre-printed card's code
    # would have to be kept until then, and codes are never stored. The register's one-call
    # checkout takes them.
    return [
        FieldViolation(
            f"lines[{i}].gift_card.code",
            "a pre-printed card's code is taken by the one-call checkout only",
        )
        for i, ln in enumerate(lines)
        if ln.gift_card is not None and ln.gift_card.code
    ]


def _ask_of(cmd: CreateOrderCommand) -> DraftAsk:
    return DraftAsk(
        list(cmd.lines),
        list(cmd.fulfillments),
        tuple(cmd.coupon_codes),
        cmd.order_manual,
        cmd.redeem_points,
    )


def _no_draft_codes(codes: Sequence[str]) -> list[FieldViolation]:
    """A coupon code is a bearer's claim on a discount, and the platform never stores one (the
    promotion service keeps a keyed hash, the order the coupon's id and last four): a draft,
    which waits, keeps none. They are given with its submit, which reserves them at once."""
    return require(
        not codes, "coupon_codes", "a draft keeps no coupon code: give the codes with its submit"
    )


def _validate_draft(
    order: Order, ask: DraftAsk, customer_id: str, metadata: dict[str, str]
) -> None:
    """A draft's cart as edited, checked as CreateOrder checks a new one: bad input is a 400
    naming each field, nothing written."""
    raise_if(validate_redemption(ask.redeem_points, customer_id))
    validate_order(order.channel, order.location_id, ask.lines, ask.fulfillments, metadata)
    raise_if(
        _no_draft_codes(ask.coupon_codes)
        + validate_manual(ask.order_manual, "order_manual", ORDER_KINDS)
        + _no_printed_codes(ask.lines)
    )


async def _draft_start(
    uow: OrderUnitOfWork, order: Order, customer_id: str, policy: Policy
) -> Started:
    """What pricing a draft again reads in the claiming transaction: the customer as the read
    model knows them (merged away: the survivor), and the merchant's settings."""
    who = await uow.customers.resolve(customer_id) if customer_id else None
    settings = await uow.settings.get() or policy.defaults
    buyer, resolved = (who.buyer, who.id) if who is not None else (Buyer(), customer_id)
    known = not customer_id or who is not None
    return Started(now(), known, order.id, order, settings, buyer, resolved)


async def _price_draft(
    ports: CheckoutPorts,
    new_uow: NewUow,
    started: Started,
    ask: DraftAsk,
    customer_id: str,
    below_cost_permitted: bool = True,
) -> Priced:
    """The draft priced from its cart as the catalog, the promotions, the tax and the loyalty
    program stand now (no write): what CreateOrder's pricing step gives a new order."""
    order = started.existing
    assert order is not None
    priced = await priced_order(
        ports,
        new_uow,
        started,
        order.id,
        order.location_id,
        customer_id,
        ask.lines,
        ask.fulfillments,
        order.channel,
        ask.coupon_codes,
        ask.order_manual,
        ask.redeem_points,
        below_cost_permitted,
    )
    await check_gift_card_lines(ports, ask.lines, priced.order, started.settings.hold_seconds)
    return priced


def _draft_changed(current: int) -> Conflict:
    return Conflict(
        "the draft changed since the version you sent (or while this was priced)",
        "version_mismatch",
        {"current_version": str(current)},
    )


# How many times an edit or a submit naming no version prices a draft that other changes keep
# moving under it before it gives up (the 409 `version_mismatch`): each round one of the
# changes made at once is saved, so this many at once all apply.
DRAFT_ATTEMPTS = 10


def _priced_again(exc: Conflict, expected_version: int, attempt: int) -> bool:
    """Whether a change of a draft refused because another came in while it was priced is
    read and priced again: only one that named no version (one that did asked for exactly the
    version it saw), and a few times at most. A request naming no version was refused with a
    `version_mismatch` (a 412 at the gateway, for a request with no If-Match) for a change it
    never knew of; the draft as the other change left it is what it edits."""
    return exc.code == "version_mismatch" and not expected_version and attempt < DRAFT_ATTEMPTS - 1


async def _change_draft(
    new_uow: NewUow, priced: Priced, seen: int, apply: Callable[[Order], None]
) -> Order:
    """One short transaction: the draft read locked, still at the version it was priced from
    (changed since, the pricing would undo the other change: a 409 `version_mismatch`, nothing
    written), changed by `apply`, saved as a new version with what pricing learnt."""
    async with new_uow() as uow:
        order = await uow.orders.get(priced.order.id, lock=True)
        if order is None:
            raise NotFound("order", priced.order.id)
        order.require_draft("only a draft is edited or submitted")
        if order.version != seen:
            raise _draft_changed(order.version)
        if priced.learnt is not None:
            await uow.customers.remember(priced.order.customer_id, priced.learnt)
        if priced.location is not None:
            await uow.prices.remember_location(priced.location)
        order.touched(now())
        apply(order)
        await refuse_if_erased(uow, order.customer_id)
        await uow.orders.save(order)
        announce_change(uow, order)
        await uow.commit()
    return order


# What is kept on an order beside the sale: changed in any status, nothing priced again.
ANNOTATIONS = frozenset({"notes", "metadata"})


MAX_NOTES = 2000


class AnnotateOrder(Generic[R]):
    """An order's notes or metadata changed, whatever its status: a packing note, a partner's
    own ids kept on the order after it is placed (a draft's too, without pricing it again).
    Nothing is priced, held or paid: a new version, announced (`order_updated`).
    `expected_version` (0: any) not the order's is a 409 `version_mismatch` with
    `current_version`, nothing written."""

    def __init__(self, cmd: DraftChange, new_uow: NewUow, answer: Callable[[Order], R]) -> None:
        violations: list[FieldViolation] = []
        if cmd.notes is not None:
            violations += require(len(cmd.notes) <= MAX_NOTES, "notes", "at most 2,000 characters")
        if cmd.metadata is not None:
            violations += metadata_violations(dict(cmd.metadata))
        raise_if(violations)
        self.cmd = cmd
        self.new_uow = new_uow
        self.answer = answer

    def _check(self, order: Order | None) -> Order:
        if order is None:
            raise NotFound("order", self.cmd.order_id)
        if self.cmd.expected_version and self.cmd.expected_version != order.version:
            raise _order_changed(order.version)
        return order

    async def read(self, uow: OrderUnitOfWork) -> None:
        self._check(await uow.orders.get(self.cmd.order_id))

    async def call(self, claim: Claim, read: None) -> Order:
        async with self.new_uow() as uow:
            order = self._check(await uow.orders.get(self.cmd.order_id, lock=True))
            order.annotated(self.cmd.notes, self.cmd.metadata, now())
            await uow.orders.save(order)
            announce_change(uow, order)
            await uow.commit()
        return order

    async def record(self, uow: OrderUnitOfWork, order: Order) -> R:
        return self.answer(await as_answered(uow, order))


def _order_changed(current: int) -> Conflict:
    return Conflict(
        "the order changed since the version you sent", "version_mismatch",
        {"current_version": str(current)},
    )  # fmt: skip


class UpdateDraftOrder(Generic[R]):
    """A draft's cart edited: each field given replaces the draft's (lines, fulfilments,
    customer, coupons, manual discount, points, notes, metadata), and the draft is priced again
    from what it then asks, as the catalog, the promotions and the customer stand now: a new
    version. Nothing is held or reserved. `expected_version` (0: any) not the draft's is a 409
    `version_mismatch` with `current_version`, nothing written, and so is a change that came in
    while this one was priced; with no `expected_version`, the draft as that change left it is
    read and priced again instead (`DRAFT_ATTEMPTS`); an order that is no longer a draft is a
    409 `order_not_draft`.
    Each edit is announced (`order_updated`, the draft at its new version), so a partner
    following events sees every version of the cart. `clear_order_manual`: the draft's manual
    discount on the whole order is removed (`order_manual` None keeps it)."""

    def __init__(
        self,
        cmd: DraftChange,
        ports: CheckoutPorts,
        new_uow: NewUow,
        policy: Policy,
        answer: Callable[[Order], R],
    ) -> None:
        self.cmd = cmd
        self.ports = ports
        self.new_uow = new_uow
        self.policy = policy
        self.answer = answer

    def _ask(self, draft: DraftAsk) -> DraftAsk:
        cmd = self.cmd
        return DraftAsk(
            draft.lines if cmd.lines is None else cmd.lines,
            draft.fulfillments if cmd.fulfillments is None else cmd.fulfillments,
            draft.coupon_codes if cmd.coupon_codes is None else cmd.coupon_codes,
            self._order_manual(draft),
            draft.redeem_points if cmd.redeem_points is None else cmd.redeem_points,
        )

    def _order_manual(self, draft: DraftAsk) -> Manual | None:
        cmd = self.cmd
        if cmd.clear_order_manual:
            return None
        return draft.order_manual if cmd.order_manual is None else cmd.order_manual

    def _within_limit(self, ask: DraftAsk) -> None:
        """The caller's limit holds over the draft's manual discounts after the change (those
        it keeps and those given now, a line's and the order's together), as over one request
        giving them all: 10 % kept on a line and 10 % given on the order is 19 % off it."""
        limit = self.cmd.manual_limit_bps
        if limit is None:
            return
        off = manual_off_bps([ln.manual for ln in ask.lines], ask.order_manual)
        if off is not None and off <= limit:
            return
        raise DomainError(
            "the draft's manual discounts after this change are above the caller's limit",
            "discount_above_limit",
            [],
            {"limit_bps": str(limit)},
            ErrorKind.FORBIDDEN,
        )

    async def read(self, uow: OrderUnitOfWork) -> tuple[Started, DraftAsk]:
        cmd = self.cmd
        order = await uow.orders.get(cmd.order_id)
        if order is None:
            raise NotFound("order", cmd.order_id)
        order.require_draft("only a draft is edited")
        if cmd.expected_version and cmd.expected_version != order.version:
            raise _draft_changed(order.version)
        assert order.saga.draft is not None
        ask = self._ask(order.saga.draft)
        self._within_limit(ask)
        given = cmd.fulfillments if cmd.fulfillments is not None else ask.fulfillments
        fulfillments = given or [FulfillmentRequest(FulfillmentType.IN_STORE, order.location_id)]
        ask = replace(ask, fulfillments=fulfillments)
        customer_id = order.customer_id if cmd.customer_id is None else cmd.customer_id
        metadata = order.metadata if cmd.metadata is None else cmd.metadata
        _validate_draft(order, ask, customer_id, metadata)
        return await _draft_start(uow, order, customer_id, self.policy), ask

    async def call(self, claim: Claim, read: tuple[Started, DraftAsk]) -> Order:
        for attempt in range(DRAFT_ATTEMPTS):
            try:
                return await self._price_and_save(*read)
            except Conflict as exc:
                if not _priced_again(exc, self.cmd.expected_version, attempt):
                    raise
            async with self.new_uow().reading() as uow:
                read = await self.read(uow)
        raise AssertionError("unreachable: the last attempt raises")

    async def _price_and_save(self, started: Started, ask: DraftAsk) -> Order:
        cmd = self.cmd
        assert started.existing is not None
        customer_id = started.existing.customer_id if cmd.customer_id is None else cmd.customer_id
        priced = await _price_draft(
            self.ports, self.new_uow, started, ask, customer_id, cmd.below_cost_permitted
        )

        def revise(o: Order) -> None:
            o.edited(priced.order, ask)
            if cmd.notes is not None:
                o.notes = cmd.notes
            if cmd.metadata is not None:
                o.metadata = dict(cmd.metadata)

        return await _change_draft(self.new_uow, priced, started.existing.version, revise)

    async def record(self, uow: OrderUnitOfWork, order: Order) -> R:
        return self.answer(await as_answered(uow, order))


class SubmitOrder(Generic[R]):
    """A draft submitted: priced again from its cart (a draft may be days old: the catalog,
    promotions, tax and point value as they stand now), saved `pending_payment`, then its
    pickup and shipment lines held exactly as CreateOrder holds a new order's (all or none),
    its coupons reserved and its points held, in that order. Short stock is the 409
    `insufficient_stock` CreateOrder answers, every hold taken released, and the order is a
    draft again, priced as it was before the submit (its timeline says why); so is a coupon
    refused at its reservation. Points
    refused once its coupons are reserved cancel it (the promotion service would answer a
    later submit with the released reservation). An order submitted already and waiting for
    payment is answered as it is (a submit under way is driven on); any other is a 409
    `order_not_draft`."""

    def __init__(
        self,
        request_id: str,
        order_id: str,
        coupon_codes: tuple[str, ...],
        ports: CheckoutPorts,
        new_uow: NewUow,
        policy: Policy,
        answer: Callable[[Order], R],
        below_cost_permitted: bool = True,
    ) -> None:
        # Refused before a request id is claimed: nothing to undo.
        raise_if(validate_codes(coupon_codes))
        self.request_id = request_id
        # False: a line priced below its unit cost by hand, as the draft is priced now, is
        # refused (403 `permission_required` naming `sell_below_cost`), the draft left as it was.
        self.below_cost_permitted = below_cost_permitted
        self.order_id = order_id
        # Kept in memory for this run only, as every code the order is given.
        self.coupon_codes = coupon_codes
        self.ports = ports
        self.new_uow = new_uow
        self.policy = policy
        self.answer = answer

    async def read(self, uow: OrderUnitOfWork) -> Started:
        order = await uow.orders.get(self.order_id)
        if order is None:
            raise NotFound("order", self.order_id)
        if order.status is OrderStatus.PENDING_PAYMENT and order.saga.submits:
            return Started(now(), True, order.id, order, self.policy.defaults)
        order.require_draft("only a draft is submitted")
        return await _draft_start(uow, order, order.customer_id, self.policy)

    async def call(self, claim: Claim, started: Started) -> Order:
        for attempt in range(DRAFT_ATTEMPTS):
            try:
                order = await self._price_and_submit(started)
                break
            except Conflict as exc:
                # A submit names no version: an edit that came in while it priced the draft is
                # priced with it again. So is the draft as another submit left it: that one
                # saved it first (this one's save finds no draft), or reserved the coupon's
                # last use first (this one's pricing finds it exhausted); read again, the
                # order submitted is answered as it is.
                if not (_priced_again(exc, 0, attempt) or await self._moved(started, attempt)):
                    raise
            async with self.new_uow().reading() as uow:
                started = await self.read(uow)
        return await self._drive(order)

    async def _moved(self, started: Started, attempt: int) -> bool:
        """Whether the order changed since `started` read it (and another attempt is left)."""
        assert started.existing is not None
        if attempt >= DRAFT_ATTEMPTS - 1:
            return False
        async with self.new_uow().reading() as uow:
            now_ = await uow.orders.get(self.order_id)
        return now_ is not None and now_.version != started.existing.version

    async def _price_and_submit(self, started: Started) -> Order:
        order = started.existing
        assert order is not None
        if order.status is OrderStatus.DRAFT:
            assert order.saga.draft is not None
            ask = replace(order.saga.draft, coupon_codes=self.coupon_codes)
            priced = await _price_draft(
                self.ports,
                self.new_uow,
                started,
                ask,
                order.customer_id,
                self.below_cost_permitted,
            )
            hold_seconds = started.settings.hold_seconds
            order = await _change_draft(
                self.new_uow,
                priced,
                order.version,
                lambda o: o.submit(priced.order, hold_seconds, now(), len(self.coupon_codes)),
            )
        return order

    async def _drive(self, order: Order) -> Order:
        if order.saga.draft is None or order.saga.state is not SagaState.RUNNING:
            return order  # submitted in full already (or cancelled since)
        back = saga.back_to_draft(self.new_uow)
        if any(f.hold is HoldState.SENT for f in order.fulfillments) and self.ports.stock is None:
            raise Unavailable("stock cannot be held now", "inventory_unavailable")
        # Stock first: refused, nothing was asked of the promotion or customer service, which
        # keep one reservation or hold per order and would answer a later submit with it.
        order = await saga.hold_stock(self.new_uow, self.ports, order, self.policy, back)
        if order.asks_coupons_or_points:
            order, _ = await change(self.new_uow, order.id, lambda o: o.stock_held())
        if order.saga.coupons.step is CouponStep.SENT:
            asked = order.saga.draft
            manual = asked.order_manual if asked is not None else None
            cart = await coupon_cart(self.new_uow, order, self.coupon_codes, manual)
            try:
                order = await saga.reserve_coupons(self.new_uow, self.ports, order, cart)
            except DomainError as exc:
                if exc.kind in saga.TRANSIENT:
                    raise
                # All or none: nothing was reserved, and a later submit may ask again.
                await saga.refused(self.new_uow, self.ports, order, self.policy, exc.code, back)
                raise
        # Refused by the customer service, its points hold was not made; refused here (their
        # value changed since the draft was priced) it was, and is released: either way, once
        # its coupons were reserved, a later submit would hear the reservation given back.
        unreserved = order.saga.coupons.step is CouponStep.NONE
        order = await saga.hold_points(
            self.new_uow, self.ports, order, self.policy, back if unreserved else None
        )
        order, _ = await change(self.new_uow, order.id, lambda o: o.submitted())
        return order

    async def record(self, uow: OrderUnitOfWork, order: Order) -> R:
        return self.answer(await as_answered(uow, order))
