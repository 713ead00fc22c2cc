"""Gift card use cases: one short transaction each, the card's row locked while it changes.

A code is accepted only to be normalised and hashed; no answer, error or event repeats it, and
an unknown code gets the same answer whether or not any card ever had it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from pos_kit.errors import (
    Conflict,
    DomainError,
    ErrorKind,
    FieldViolation,
    NotFound,
    named_by,
    raise_if,
    require,
)
from pos_kit.ids import new_id
from pos_kit.paging import PageRequest
from pos_payment.domain.gift_cards import (
    DEFAULT_RESERVATION_SECONDS,
    MAX_ID,
    MAX_REASON,
    MAX_REFERENCE,
    MAX_RESERVATION_SECONDS,
    Activity,
    CardFilters,
    CodeReservation,
    GiftCard,
    GiftCardActivityCreated,
    GiftCardSettings,
    GiftCardStatus,
    IssueReason,
    generate_code,
    hard_to_guess,
    normalize_code,
    validate_max_balance,
    validate_money,
    validate_supplied_code,
    validate_text,
)
from pos_payment.domain.model import shift_currency_mismatch

Amount = tuple[int, str]


@dataclass(frozen=True)
class AtRegister:
    """Where value moves outside a payment: the calling register (empty: the back office),
    and whether the customer paid it in cash there (a card sold or loaded for cash)."""

    register_id: str = ""
    paid_in_cash: bool = False


BACK_OFFICE = AtRegister()


class CardRepository(Protocol):
    async def add(self, card: GiftCard, normalized_code: str) -> bool: ...
    async def get(self, card_id: str, *, lock: bool = False) -> GiftCard | None: ...
    async def by_code(self, normalized_code: str, *, lock: bool = False) -> GiftCard | None: ...
    async def record(
        self,
        card: GiftCard,
        activity: Activity,
        register_id: str = "",
        shift_id: str = "",
        paid_in_cash: bool = False,
    ) -> None: ...

    async def open_shift_at(self, register_id: str) -> tuple[str, str] | None:
        """The register's open shift (id, currency), read with a share lock."""
        ...

    async def activities(self, card_id: str, page: PageRequest) -> list[Activity]: ...

    async def refundable(self, card_id: str) -> int:
        """What the card has spent and not been given back."""
        ...

    async def list(self, page: PageRequest, filters: CardFilters) -> list[GiftCard]: ...

    async def lock_code(self, normalized_code: str) -> None:
        """Held to the transaction's end: whoever decides who may have this code waits."""
        ...

    async def lock_line(self, order_id: str, order_line_id: str) -> None:
        """Held to the transaction's end: another issue for this order line waits."""
        ...

    async def of_line(self, order_id: str, order_line_id: str) -> GiftCard | None: ...
    async def activation(self, card_id: str) -> Activity: ...

    async def reservation(self, normalized_code: str) -> CodeReservation | None: ...
    async def reserve(
        self, normalized_code: str, order_id: str, order_line_id: str, seconds: int
    ) -> datetime: ...
    async def unreserve(self, normalized_code: str) -> None: ...
    async def release_order(self, order_id: str) -> int: ...


class CardSettingsRepository(Protocol):
    async def get(self, *, lock: bool = False) -> GiftCardSettings: ...
    async def save(self, settings: GiftCardSettings) -> bool:
        """Write `settings` if the stored ones are still at the version before theirs (1: none
        stored yet); False, and nothing written, when another change came first."""
        ...


class GiftCardUnitOfWork(Protocol):
    merchant_id: str

    @property
    def cards(self) -> CardRepository: ...

    @property
    def card_settings(self) -> CardSettingsRepository: ...

    def publish(self, event: object) -> None: ...


def unknown_code() -> DomainError:
    # One answer for a code no card has, another merchant's card, and a typo alike: a guesser
    # learns nothing from it.
    return DomainError(
        "no gift card has this code",
        "resource_missing",
        [],
        {"resource": "gift card"},
        ErrorKind.NOT_FOUND,
    )


@dataclass(frozen=True)
class Issue:
    amount: Amount
    code: str = ""
    customer_id: str = ""
    order_id: str = ""
    order_line_id: str = ""
    reason: str = ""
    location_id: str = ""
    paid_in_cash: bool = False


@dataclass(frozen=True)
class Moved:
    card: GiftCard
    activity: Activity


def _reason(value: str) -> IssueReason:
    if not value:
        return IssueReason.SALE
    try:
        return IssueReason(value)
    except ValueError:
        names = ", ".join(r.value for r in IssueReason)
        raise_if(require(False, "reason", f"must be one of: {names}"))
        raise  # unreachable: raise_if raised


def validate_issue(ask: Issue) -> tuple[str, IssueReason]:
    """The normalised code to store (generated when none was supplied) and the reason."""
    validate_money("amount", *ask.amount)
    violations = []
    for name, value in (
        ("customer_id", ask.customer_id),
        ("order_id", ask.order_id),
        ("order_line_id", ask.order_line_id),
        ("location_id", ask.location_id),
    ):
        violations += validate_text(name, value, MAX_ID)
    violations += require(
        bool(ask.order_id) or not ask.order_line_id, "order_id", "is required with order_line_id"
    )
    raise_if(violations)
    reason = _reason(ask.reason)
    raise_if(
        require(
            not ask.paid_in_cash or (reason is IssueReason.SALE and not ask.order_id),
            "paid_in_cash",
            "only a card sold on its own is paid in cash (an order's card is paid by its "
            "tenders; store credit and promotional cards are not paid for)",
        )
    )
    code = validate_supplied_code(ask.code) if ask.code else normalize_code(generate_code())
    return code, reason


async def _apply(
    uow: GiftCardUnitOfWork, card: GiftCard, activity: Activity, at: AtRegister = BACK_OFFICE
) -> Moved:
    shift_id = await _shift_of(uow, at, card.currency)
    await uow.cards.record(card, activity, at.register_id, shift_id, at.paid_in_cash)
    uow.publish(GiftCardActivityCreated(card, activity))
    return Moved(card, activity)


async def _shift_of(uow: GiftCardUnitOfWork, at: AtRegister, currency: str) -> str:
    """The shift value moved at a register counts in: the one open there (read with its share
    lock, as payments attach to it, so its close waits for this transaction), or none. Cash
    paid for it needs that shift, and a drawer holds its shift's currency only: refused
    otherwise, before anything is written."""
    shift = await uow.cards.open_shift_at(at.register_id) if at.register_id else None
    if shift is not None and shift[1] != currency:
        raise shift_currency_mismatch(at.register_id, shift[1], currency, ["amount.currency"])
    if at.paid_in_cash and shift is None:
        why = (
            "a register with an open shift: it is made from the back office"
            if not at.register_id
            else f"a shift open at register {at.register_id}, which has none"
        )
        refused = Conflict(
            f"cash paid for a gift card goes in a register's drawer and needs {why}",
            "cash_needs_open_shift",
            {"register_id": at.register_id} if at.register_id else {},
        )
        refused.violations = [FieldViolation("paid_in_cash", f"needs {why}")]
        raise refused
    return shift[0] if shift is not None else ""


@dataclass(frozen=True)
class Issued:
    moved: Moved
    made: bool  # False: the order line's card, issued before (its code is not shown again)


async def issue(
    uow: GiftCardUnitOfWork, ask: Issue, code: str, reason: IssueReason, register_id: str = ""
) -> Issued:
    """A new active card holding `ask.amount`. `code` is already normalised. A card sold on
    its own at a register (not an order's line, not store credit nor promotional) counts in
    the shift open there.

    An order line has one card, whatever request asks for it: asked again (under another
    request id: the order service's retry after its answer was lost, a caller's bug) the
    answer is the card issued for it, as it is now, with its activation, and nothing moves;
    asked for another card (another amount, code or reason) it is refused
    (`gift_card_line_issued`). The order's recovery finds the line's card the same way."""
    if ask.order_line_id:
        await uow.cards.lock_line(ask.order_id, ask.order_line_id)
        sold = await uow.cards.of_line(ask.order_id, ask.order_line_id)
        if sold is not None:
            return Issued(await _issued_before(uow, sold, ask, code, reason), made=False)
    return Issued(await _issue(uow, ask, code, reason, register_id), made=True)


async def _issued_before(
    uow: GiftCardUnitOfWork, card: GiftCard, ask: Issue, code: str, reason: IssueReason
) -> Moved:
    """The line's card if it is the card asked for: the amount it was activated with, its
    currency and reason, and its code when one is supplied (none: a generated one was asked
    for, or the code is not known to the asker, as to the order's recovery)."""
    activation = await uow.cards.activation(card.id)
    differ = []
    if activation.amount != ask.amount[0]:
        differ.append(FieldViolation("amount.amount", f"must be {activation.amount}"))
    if activation.currency != ask.amount[1]:
        differ.append(FieldViolation("amount.currency", f"must be {activation.currency}"))
    if ask.code:
        holder = await uow.cards.by_code(code)
        if holder is None or holder.id != card.id:
            differ.append(FieldViolation("code", "must be the line's card's code"))
    if reason is not card.reason:
        differ.append(FieldViolation("reason", f"must be {card.reason.value}"))
    if differ:
        raise DomainError(
            "this order line has a gift card already, issued for another amount, code or reason",
            "gift_card_line_issued",
            differ,
            {},
            ErrorKind.ALREADY_EXISTS,
        )
    return Moved(card, activation)


async def _issue(
    uow: GiftCardUnitOfWork, ask: Issue, code: str, reason: IssueReason, register_id: str
) -> Moved:
    amount, currency = ask.amount
    settings = await uow.card_settings.get()
    card = GiftCard(
        id=new_id("gc"),
        code_last4=code[-4:],
        currency=currency,
        customer_id=ask.customer_id,
        order_id=ask.order_id,
        order_line_id=ask.order_line_id,
        reason=reason,
        location_id=ask.location_id,
    )
    activity = card.activate(new_id("gca"), amount, settings.max_balance)
    card.balance = 0  # stored empty; the activation's activity puts the value on it
    if ask.code:
        # A pre-printed code another order holds is not this card's, even if that order has
        # not been paid yet; this order's own reservation is consumed by its card.
        await uow.cards.lock_code(code)
        held = await uow.cards.reservation(code)
        if held is not None:
            if held.live and not held.holds_for(ask.order_id, ask.order_line_id):
                raise _code_taken("another sale holds this gift card code")
            await uow.cards.unreserve(code)
    if not await uow.cards.add(card, code):
        raise _code_taken("this merchant already has a gift card with that code")
    card.balance = activity.balance_after
    sold_alone = reason is IssueReason.SALE and not ask.order_id
    at = AtRegister(register_id, ask.paid_in_cash) if sold_alone else BACK_OFFICE
    return await _apply(uow, card, activity, at)


def _code_taken(message: str) -> DomainError:
    # The same answer whether a card has the code or a sale holds it: the caller's remedy is
    # the same (another card). Its field error names the field, never the code.
    reason = "another gift card, or a sale in progress, has this code"
    return DomainError(
        message,
        "gift_card_code_taken",
        [FieldViolation("code", reason)],
        {},
        ErrorKind.ALREADY_EXISTS,
    )


@dataclass(frozen=True)
class Reserved:
    expires_at: datetime | None  # None: `activated`
    activated: bool = False


def validate_reservation(
    code: str, order_id: str, order_line_id: str, seconds: int
) -> tuple[str, int]:
    """The normalised code and the reservation's length in seconds."""
    violations = require(bool(code), "code", "is required")
    for name, value in (("order_id", order_id), ("order_line_id", order_line_id)):
        violations += require(bool(value), name, "is required")
        violations += validate_text(name, value, MAX_ID)
    violations += require(
        0 <= seconds <= MAX_RESERVATION_SECONDS,
        "ttl_seconds",
        f"must be between 1 and {MAX_RESERVATION_SECONDS} (0: {DEFAULT_RESERVATION_SECONDS})",
    )
    raise_if(violations)
    return validate_supplied_code(code), seconds or DEFAULT_RESERVATION_SECONDS


async def reserve_code(
    uow: GiftCardUnitOfWork, code: str, order_id: str, order_line_id: str, seconds: int
) -> Reserved:
    """Hold a pre-printed code for an order's line before the order is paid: the check that
    the code is free and the hold are one step (under `lock_code`, which `issue` takes too),
    so of concurrent sales of one card exactly one gets it and the others are refused before
    anything is charged. `code` is already normalised. The same line again renews its hold;
    an expired hold of another order is taken over."""
    await uow.cards.lock_code(code)
    card = await uow.cards.by_code(code)
    if card is not None:
        if card.order_id == order_id and card.order_line_id == order_line_id:
            return Reserved(None, activated=True)  # the sale went through already
        raise _code_taken("this merchant already has a gift card with that code")
    held = await uow.cards.reservation(code)
    if held is not None and held.live and not held.holds_for(order_id, order_line_id):
        raise _code_taken("another sale holds this gift card code")
    return Reserved(await uow.cards.reserve(code, order_id, order_line_id, seconds))


async def release_codes(uow: GiftCardUnitOfWork, order_id: str) -> int:
    """End the order's reservations that no activation consumed: the codes are free again."""
    raise_if(
        require(bool(order_id), "order_id", "is required")
        + validate_text("order_id", order_id, MAX_ID)
    )
    return await uow.cards.release_order(order_id)


async def _card(uow: GiftCardUnitOfWork, card_id: str, *, lock: bool = False) -> GiftCard:
    raise_if(require(bool(card_id), "id", "is required") + validate_text("id", card_id, MAX_ID))
    card = await uow.cards.get(card_id, lock=lock)
    if card is None:
        raise NotFound("gift card", card_id)
    return card


async def _by_code(uow: GiftCardUnitOfWork, code: str, *, lock: bool = False) -> GiftCard:
    raise_if(require(bool(code), "code", "is required"))
    normalised = normalize_code(code)
    card = await uow.cards.by_code(normalised, lock=lock) if hard_to_guess(normalised) else None
    if card is None:
        # Naming the request's field says nothing a guesser did not send (docs/problems.md,
        # `resource_missing`: a body field that named the resource is named).
        raise named_by(unknown_code(), ["code"])
    return card


def _texts(reference: str, location_id: str) -> None:
    raise_if(
        validate_text("reference", reference, MAX_REFERENCE)
        + validate_text("location_id", location_id, MAX_ID)
    )


async def load(
    uow: GiftCardUnitOfWork,
    card_id: str,
    amount: Amount,
    reference: str,
    location_id: str,
    at: AtRegister = BACK_OFFICE,
) -> Moved:
    validate_money("amount", *amount)
    _texts(reference, location_id)
    card = await _card(uow, card_id, lock=True)
    settings = await uow.card_settings.get()
    activity = card.load(new_id("gca"), *amount, settings.max_balance, reference, location_id)
    return await _apply(uow, card, activity, at)


@dataclass(frozen=True)
class Redeemed:
    moved: Moved
    redeemed: int
    remaining_due: int


async def redeem(
    uow: GiftCardUnitOfWork,
    code: str,
    amount: Amount,
    partial: bool,
    reference: str,
    location_id: str,
    register_id: str = "",
) -> Redeemed:
    validate_money("amount", *amount)
    _texts(reference, location_id)
    card = await _by_code(uow, code, lock=True)
    activity = card.redeem(new_id("gca"), *amount, partial, reference, location_id)
    taken = -activity.amount
    moved = await _apply(uow, card, activity, AtRegister(register_id))
    return Redeemed(moved, taken, amount[0] - taken)


async def refund_to(
    uow: GiftCardUnitOfWork,
    card_id: str,
    amount: Amount,
    reference: str,
    location_id: str,
    register_id: str = "",
) -> Moved:
    validate_money("amount", *amount)
    _texts(reference, location_id)
    card = await _card(uow, card_id, lock=True)
    card.in_its_currency(amount[1])
    # Value back to the card it was spent from: never more than it spent and was not given
    # back (read under the card's lock), or a refund would make money from nothing.
    left = await uow.cards.refundable(card.id)
    if amount[0] > left:
        refused = Conflict(
            f"the gift card has spent {left} that was not given back: a refund to it is at most "
            "that (a load adds value instead)",
            "gift_card_refund_exceeds_spent",
            {"refundable": str(left)},
        )
        refused.violations = [FieldViolation("amount.amount", f"must be at most {left}")]
        raise refused
    settings = await uow.card_settings.get()
    activity = card.refund(
        new_id("gca"), *amount, reference, location_id, max_balance=settings.max_balance
    )
    return await _apply(uow, card, activity, AtRegister(register_id))


async def adjust(uow: GiftCardUnitOfWork, card_id: str, amount: Amount, reason: str) -> Moved:
    validate_money("amount", *amount, signed=True)
    raise_if(
        require(bool(reason.strip()), "reason", "is required")
        + validate_text("reason", reason, MAX_REASON)
    )
    card = await _card(uow, card_id, lock=True)
    settings = await uow.card_settings.get()
    activity = card.adjust(new_id("gca"), *amount, settings.max_balance, reason)
    return await _apply(uow, card, activity)


async def deactivate(
    uow: GiftCardUnitOfWork, card_id: str, reason: str, expected_balance: int = 0
) -> Moved:
    raise_if(validate_text("reason", reason, MAX_REASON))
    card = await _card(uow, card_id, lock=True)
    if (
        expected_balance
        and card.status is GiftCardStatus.ACTIVE
        and (card.balance != expected_balance)
    ):
        # Read under the card's lock: a spend or a load since the caller looked (a return of
        # the line that sold it) is not wiped out with the rest.
        raise Conflict(
            f"the gift card holds {card.balance}, not {expected_balance}: it was spent or "
            "loaded since",
            "gift_card_balance_changed",
            {"balance": str(card.balance)},
        )
    activity = card.deactivate(new_id("gca"), reason or "requested")
    return await _apply(uow, card, activity)


async def get(uow: GiftCardUnitOfWork, card_id: str) -> GiftCard:
    return await _card(uow, card_id)


async def lookup(uow: GiftCardUnitOfWork, code: str) -> GiftCard:
    return await _by_code(uow, code)


async def activities(uow: GiftCardUnitOfWork, card_id: str, page: PageRequest) -> list[Activity]:
    await _card(uow, card_id)
    return await uow.cards.activities(card_id, page)


async def list_cards(
    uow: GiftCardUnitOfWork, page: PageRequest, filters: CardFilters
) -> list[GiftCard]:
    """A page of the merchant's cards: by id, or with `page.since` the change feed."""
    raise_if(
        validate_text("customer_id", filters.customer_id, MAX_ID)
        + validate_text("location_id", filters.location_id, MAX_ID)
        + validate_text("order_id", filters.order_id, MAX_ID)
    )
    return await uow.cards.list(page, filters)


async def get_settings(uow: GiftCardUnitOfWork) -> GiftCardSettings:
    return await uow.card_settings.get()


def _settings_changed(current_version: int) -> DomainError:
    return Conflict(
        "the settings changed since the version you sent",
        "version_mismatch",
        {"current_version": str(current_version)},
    )


async def update_settings(
    uow: GiftCardUnitOfWork, max_balance: int, expected_version: int = 0
) -> tuple[GiftCardSettings, GiftCardSettings]:
    """The settings before and after the change. With `expected_version`, a stale version
    changes nothing (`version_mismatch`); the same maximum again is no change (no new
    version)."""
    validate_max_balance(max_balance)
    # Twice at most: a merchant's first change can lose the race to create the row to another
    # first change; without If-Match it is then applied on top of the winner's, as any later.
    for attempt in (1, 2):
        current = await uow.card_settings.get(lock=True)
        if expected_version and expected_version != current.version:
            raise _settings_changed(current.version)
        if max_balance == current.max_balance:
            return current, current
        settings = GiftCardSettings(max_balance, version=current.version + 1)
        if await uow.card_settings.save(settings):
            return current, settings
        if expected_version or attempt == 2:
            raise _settings_changed((await uow.card_settings.get()).version)
    raise AssertionError("unreachable")
