"""Gift card storage (PostgreSQL), the code hasher, and the gift card tender processor.

Concurrency: every change to a card locks its row (`SELECT ... FOR UPDATE`) for the rest of its
short transaction, checks the rule against the balance it read and writes the activity and the
new balance together. Concurrent redemptions of one card therefore queue on that row and each
sees its predecessor's balance: none can take what another already took.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from pos_kit.changes import list_page
from pos_kit.errors import DomainError
from pos_kit.ids import new_id
from pos_kit.money import Money
from pos_kit.paging import PageRequest
from pos_kit.uow import UnitOfWork
from pos_payment.adapters import at_register
from pos_payment.adapters.gift_card_messages import REGISTRY
from pos_payment.adapters.gift_card_tables import (
    gift_card_activities,
    gift_card_code_reservations,
    gift_card_settings,
    gift_card_tender_calls,
    gift_cards,
)
from pos_payment.domain.gift_cards import (
    Activity,
    ActivityKind,
    CardFilters,
    CodeReservation,
    GiftCard,
    GiftCardActivityCreated,
    GiftCardSettings,
    GiftCardStatus,
    IssueReason,
    hard_to_guess,
    normalize_code,
)
from pos_payment.domain.processor import (
    GIFT_CARD_INACTIVE,
    INSUFFICIENT_FUNDS,
    ProcessorAnswer,
    SourceCurrencyMismatch,
    SourceRefused,
    TenderProcessor,
    UnknownSource,
)


class CodeHasher:
    """The keyed hash a card is found by: HMAC-SHA256 under the service's secret, over the
    merchant and the normalised code. Without the key a stolen table cannot be searched for
    codes, and the same code at two merchants hashes differently."""

    def __init__(self, key: str) -> None:
        self._key = key.encode()

    def __call__(self, merchant_id: str, normalized_code: str) -> bytes:
        message = f"{merchant_id}\0{normalized_code}".encode()
        return hmac.new(self._key, message, hashlib.sha256).digest()


def _card(row: Row[Any]) -> GiftCard:
    m = row._mapping
    return GiftCard(
        id=m["id"],
        code_last4=m["code_last4"],
        currency=m["currency"],
        balance=m["balance"],
        status=GiftCardStatus(m["status"]),
        customer_id=m["customer_id"],
        order_id=m["order_id"],
        order_line_id=m["order_line_id"],
        reason=IssueReason(m["reason"]),
        location_id=m["location_id"],
        version=m["version"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
    )


def _activity(row: Row[Any]) -> Activity:
    m = row._mapping
    return Activity(
        id=m["id"],
        gift_card_id=m["gift_card_id"],
        kind=ActivityKind(m["kind"]),
        amount=m["amount"],
        balance_after=m["balance_after"],
        currency=m["currency"],
        reference=m["reference"],
        location_id=m["location_id"],
        created_at=m["created_at"],
    )


class SqlGiftCardRepository:
    def __init__(self, conn: AsyncConnection, merchant_id: str, hasher: CodeHasher) -> None:
        self._conn = conn
        self._merchant = merchant_id
        self._hash = hasher

    def _mine(self) -> Any:
        return gift_cards.c.merchant_id == self._merchant

    async def add(self, card: GiftCard, normalized_code: str) -> bool:
        """Store a new card; False when the merchant already has a card with this code."""
        row = (
            await self._conn.execute(
                pg_insert(gift_cards)
                .values(
                    merchant_id=self._merchant,
                    id=card.id,
                    code_hash=self._hash(self._merchant, normalized_code),
                    code_last4=card.code_last4,
                    currency=card.currency,
                    balance=card.balance,
                    status=card.status.value,
                    customer_id=card.customer_id,
                    order_id=card.order_id,
                    order_line_id=card.order_line_id,
                    reason=card.reason.value,
                    location_id=card.location_id,
                )
                .on_conflict_do_nothing(constraint="gift_cards_code_hash")
                .returning(gift_cards.c.created_at, gift_cards.c.updated_at)
            )
        ).first()
        if row is None:
            return False
        card.created_at, card.updated_at = row.created_at, row.updated_at
        return True

    async def get(self, card_id: str, *, lock: bool = False) -> GiftCard | None:
        query = select(gift_cards).where(self._mine(), gift_cards.c.id == card_id)
        row = (await self._conn.execute(query.with_for_update() if lock else query)).first()
        return _card(row) if row else None

    async def by_code(self, normalized_code: str, *, lock: bool = False) -> GiftCard | None:
        digest = self._hash(self._merchant, normalized_code)
        query = select(gift_cards).where(self._mine(), gift_cards.c.code_hash == digest)
        row = (await self._conn.execute(query.with_for_update() if lock else query)).first()
        return _card(row) if row else None

    async def lock_line(self, order_id: str, order_line_id: str) -> None:
        """Serialise, until this transaction ends, the issues of one order line's card (no row
        to lock before the first one exists): the second finds the first's card. Keyed by a
        hash of the merchant, the order and the line; two lines sharing the key only wait."""
        line = f"gift_card_line\0{self._merchant}\0{order_id}\0{order_line_id}".encode()
        key = int.from_bytes(hashlib.sha256(line).digest()[:8], "big", signed=True)
        await self._conn.execute(select(func.pg_advisory_xact_lock(key)))

    async def of_line(self, order_id: str, order_line_id: str) -> GiftCard | None:
        query = select(gift_cards).where(
            self._mine(),
            gift_cards.c.order_id == order_id,
            gift_cards.c.order_line_id == order_line_id,
        )
        row = (await self._conn.execute(query)).first()
        return _card(row) if row else None

    async def activation(self, card_id: str) -> Activity:
        t = gift_card_activities
        row = (
            await self._conn.execute(
                select(t).where(
                    t.c.merchant_id == self._merchant,
                    t.c.gift_card_id == card_id,
                    t.c.kind == ActivityKind.ACTIVATE.value,
                )
            )
        ).one()
        return _activity(row)

    async def lock_code(self, normalized_code: str) -> None:
        """Serialise, until this transaction ends, everything that decides who may have the
        code: its reservation and a card's creation with it. (A row lock cannot: neither the
        card nor the reservation may exist yet.) Keyed by the code's keyed hash; two codes
        sharing the key only wait for each other."""
        digest = self._hash(self._merchant, normalized_code)
        key = int.from_bytes(digest[:8], "big", signed=True)
        await self._conn.execute(select(func.pg_advisory_xact_lock(key)))

    async def reservation(self, normalized_code: str) -> CodeReservation | None:
        t = gift_card_code_reservations
        row = (
            await self._conn.execute(
                select(
                    t.c.order_id,
                    t.c.order_line_id,
                    t.c.expires_at,
                    (t.c.expires_at > func.now()).label("live"),
                ).where(
                    t.c.merchant_id == self._merchant,
                    t.c.code_hash == self._hash(self._merchant, normalized_code),
                )
            )
        ).first()
        if row is None:
            return None
        return CodeReservation(row.order_id, row.order_line_id, row.expires_at, row.live)

    async def reserve(
        self, normalized_code: str, order_id: str, order_line_id: str, seconds: int
    ) -> datetime:
        """Hold the code for the order's line (replacing whatever reservation it had: the
        caller decided under `lock_code` that it may). Answers when it lapses."""
        t = gift_card_code_reservations
        until = func.now() + timedelta(seconds=seconds)
        values = {"order_id": order_id, "order_line_id": order_line_id, "expires_at": until}
        expires: datetime = (
            await self._conn.execute(
                pg_insert(t)
                .values(
                    merchant_id=self._merchant,
                    code_hash=self._hash(self._merchant, normalized_code),
                    **values,
                )
                .on_conflict_do_update(
                    index_elements=[t.c.merchant_id, t.c.code_hash],
                    set_={**values, "created_at": func.now()},
                )
                .returning(t.c.expires_at)
            )
        ).scalar_one()
        return expires

    async def unreserve(self, normalized_code: str) -> None:
        t = gift_card_code_reservations
        await self._conn.execute(
            delete(t).where(
                t.c.merchant_id == self._merchant,
                t.c.code_hash == self._hash(self._merchant, normalized_code),
            )
        )

    async def release_order(self, order_id: str) -> int:
        """End every reservation of the order; how many there were."""
        t = gift_card_code_reservations
        ended = await self._conn.execute(
            delete(t)
            .where(t.c.merchant_id == self._merchant, t.c.order_id == order_id)
            .returning(t.c.code_hash)
        )
        return len(ended.all())

    async def open_shift_at(self, register_id: str) -> tuple[str, str] | None:
        return await at_register.open_shift(self._conn, self._merchant, register_id)

    async def record(
        self,
        card: GiftCard,
        activity: Activity,
        register_id: str = "",
        shift_id: str = "",
        paid_in_cash: bool = False,
    ) -> None:
        """The activity and the card's new balance, in the caller's transaction; with the
        register and its open shift it moved at outside a payment (the tender's own entries
        have none: its payment counts in the shift)."""
        stamp = (
            await self._conn.execute(
                update(gift_cards)
                .where(self._mine(), gift_cards.c.id == card.id)
                .values(
                    balance=card.balance,
                    status=card.status.value,
                    version=gift_cards.c.version + 1,
                    updated_at=func.now(),
                )
                .returning(gift_cards.c.version, gift_cards.c.updated_at)
            )
        ).one()
        card.version, card.updated_at = stamp.version, stamp.updated_at
        activity.created_at = card.updated_at
        await self._conn.execute(
            insert(gift_card_activities).values(
                merchant_id=self._merchant,
                id=activity.id,
                gift_card_id=activity.gift_card_id,
                kind=activity.kind.value,
                amount=activity.amount,
                balance_after=activity.balance_after,
                currency=activity.currency,
                reference=activity.reference,
                location_id=activity.location_id,
                created_at=activity.created_at,
                register_id=register_id,
                shift_id=shift_id,
                paid_in_cash=paid_in_cash,
            )
        )

    async def refundable(self, card_id: str) -> int:
        """What the card has spent (its redemptions) and not been given back (its refunds)."""
        t = gift_card_activities
        kinds = (ActivityKind.REDEEM.value, ActivityKind.REFUND.value)
        total = (
            await self._conn.execute(
                select(func.coalesce(func.sum(t.c.amount), 0)).where(
                    t.c.merchant_id == self._merchant,
                    t.c.gift_card_id == card_id,
                    t.c.kind.in_(kinds),
                )
            )
        ).scalar_one()
        return max(0, -int(total))

    async def activities(self, card_id: str, page: PageRequest) -> list[Activity]:
        t = gift_card_activities
        query = select(t).where(t.c.merchant_id == self._merchant, t.c.gift_card_id == card_id)
        if page.after is not None:
            query = query.where(t.c.id > page.after)
        rows = (await self._conn.execute(query.order_by(t.c.id).limit(page.fetch))).all()
        return [_activity(r) for r in rows]

    async def list(self, page: PageRequest, filters: CardFilters) -> list[GiftCard]:
        """By id, or with `page.since` the kit's change feed (oldest change first, up to the
        horizon). Indexes: the primary key by id, `gift_cards_changes` for the feed, and
        `gift_cards_customer`, `gift_cards_location`, `gift_cards_inactive` for the filters
        that pick out few cards."""
        t = gift_cards
        query = select(t).where(self._mine())
        if filters.customer_id:
            query = query.where(t.c.customer_id == filters.customer_id)
        if filters.location_id:
            query = query.where(t.c.location_id == filters.location_id)
        if filters.status is not None:
            query = query.where(t.c.status == filters.status.value)
        if filters.order_id:
            query = query.where(t.c.order_id == filters.order_id)
        rows = await list_page(self._conn, query, t.c.updated_at, t.c.id, page)
        return [_card(r) for r in rows]


async def move_to_survivor(
    conn: AsyncConnection, merchant_id: str, loser: str, winner: str
) -> list[GiftCard]:
    """The cards issued to a customer merged away (store credit, cards bought for them) are the
    survivor's now: a new version of each, stamped as a change for the list's feed. Each card
    as it now stands (as GetGiftCard answers it), for its event."""
    moved = await conn.execute(
        update(gift_cards)
        .where(gift_cards.c.merchant_id == merchant_id, gift_cards.c.customer_id == loser)
        .values(customer_id=winner, version=gift_cards.c.version + 1, updated_at=func.now())
        .returning(*gift_cards.c)
    )
    return sorted((_card(row) for row in moved.all()), key=lambda card: card.id)


class SqlGiftCardSettingsRepository:
    def __init__(self, conn: AsyncConnection, merchant_id: str) -> None:
        self._conn = conn
        self._merchant = merchant_id

    async def get(self, *, lock: bool = False) -> GiftCardSettings:
        t = gift_card_settings
        query = select(t).where(t.c.merchant_id == self._merchant)
        row = (await self._conn.execute(query.with_for_update() if lock else query)).first()
        if row is None:
            return GiftCardSettings()
        return GiftCardSettings(row.max_balance, row.updated_at, row.version)

    async def save(self, settings: GiftCardSettings) -> bool:
        t = gift_card_settings
        values = {"max_balance": settings.max_balance, "version": settings.version}
        row = (
            await self._conn.execute(
                pg_insert(t)
                .values(merchant_id=self._merchant, **values)
                .on_conflict_do_update(
                    index_elements=[t.c.merchant_id],
                    set_={**values, "updated_at": func.now()},
                    where=t.c.version == settings.version - 1,
                )
                .returning(t.c.updated_at)
            )
        ).first()
        if row is None:
            return False
        settings.updated_at = row.updated_at
        return True


class GiftCardUow(UnitOfWork):
    """The kit's unit of work with the gift card repositories and their event."""

    events = REGISTRY
    hasher: CodeHasher  # set by bootstrap on the class built for the process

    @property
    def cards(self) -> SqlGiftCardRepository:
        return SqlGiftCardRepository(self.conn, self.merchant_id, self.hasher)

    @property
    def card_settings(self) -> SqlGiftCardSettingsRepository:
        return SqlGiftCardSettingsRepository(self.conn, self.merchant_id)


def merchant_of(key: str) -> str:
    """The merchant a processor idempotency key belongs to: the payment service makes every
    key `<merchant id>/<request id>...` (handlers.request_key), and the tender port carries no
    merchant of its own. A gift card is only ever found within that merchant."""
    merchant, sep, _ = key.partition("/")
    if not sep or not merchant:
        raise ValueError("a processor key names its merchant")
    return merchant


class GiftCardTender:
    """Gift cards as a payment tender (`TenderProcessor`), on the same ledger as the API.

    authorize takes the value at once (a redemption), so an authorised amount can never be spent
    twice; a void gives back what was not captured, a refund gives value back (both as refund
    activities). Every answer is remembered under its key in the same transaction as its
    effect: a repeat replays it, and the reconciler's lookup reads it.
    """

    def __init__(self, new_uow: Callable[[], GiftCardUow]) -> None:
        self._new_uow = new_uow

    async def lookup(self, key: str) -> ProcessorAnswer | None:
        async with self._new_uow().reading() as uow:
            return await _remembered(uow, key)

    async def authorize(
        self, source: str, amount: Money, capture: bool, key: str, *, payment_id: str = ""
    ) -> ProcessorAnswer:
        try:
            code = normalize_code(source)
        except DomainError:
            raise UnknownSource() from None
        if not hard_to_guess(code):
            raise UnknownSource()
        async with self._new_uow().bind(merchant_of(key)) as uow:
            card = await uow.cards.by_code(code, lock=True)
            if card is None:
                raise UnknownSource()
            # Asked under the card's lock, so a repeat running beside the first waits for it
            # and replays its answer instead of taking the value twice.
            known = await _remembered(uow, key)
            if known is not None:
                return known
            if card.currency != amount.currency:
                # The wrong card for this sale, as a redemption in another currency is: a
                # field error of the request (nothing taken or remembered), not a decline.
                raise SourceCurrencyMismatch(card.currency)
            # A card that cannot pay is refused as a redemption of it is (nothing taken or
            # remembered), not declined: the request may be sent again for what it holds.
            if card.status is not GiftCardStatus.ACTIVE:
                raise SourceRefused(GIFT_CARD_INACTIVE)
            if card.balance < amount.amount:
                raise SourceRefused(INSUFFICIENT_FUNDS, card.balance)
            reference = new_id("gca")
            activity = card.redeem(reference, amount.amount, amount.currency, False, payment_id, "")
            await _apply(uow, card, activity)
            answer = ProcessorAnswer(True, reference, "gift_card", card.code_last4)
            await _remember(uow, key, "authorize", card.id, amount.amount, answer)
            await uow.commit()
            return answer

    async def capture(self, reference: str, amount: Money, key: str) -> ProcessorAnswer:
        # The value left the card at authorisation; a capture only records how much of it
        # stays taken (what a later void gives back is the rest).
        async with self._new_uow().bind(merchant_of(key)) as uow:
            known = await _remembered(uow, key)
            if known is not None:
                return known
            answer = ProcessorAnswer(True, reference)
            await _remember(uow, key, "capture", "", amount.amount, answer)
            await uow.commit()
            return answer

    async def void(self, reference: str, key: str, *, payment_id: str = "") -> ProcessorAnswer:
        async with self._new_uow().bind(merchant_of(key)) as uow:
            card, held = await _authorization(uow, reference)
            known = await _remembered(uow, key)  # under the card's lock, as in authorize
            if known is not None:
                return known
            captured = await _sum_of(uow, reference, "capture")
            # Never more than the card spent and was not given back (read under its lock), as
            # a refund: the card's own refund (POST /v1/gift-cards/{id}/refunds) may have given
            # the held value back already. Until 2026-12-05 the void gave it back again.
            back = min(held - captured, await uow.cards.refundable(card.id))
            if back > 0:
                # A card deactivated since (lost, stolen) takes the held part back too, and
                # stays deactivated, as a payment's refund to it does: the customer never spent
                # it, so it is on the card's ledger for the merchant to reissue. Until
                # 2026-12-05 it was dropped (`back = 0`): the held value was in no balance.
                activity = card.refund(
                    new_id("gca"), back, card.currency, payment_id, "", of_a_payment=True
                )
                await _apply(uow, card, activity)
            answer = ProcessorAnswer(True, reference)
            await _remember(uow, key, "void", card.id, back, answer)
            await uow.commit()
            return answer

    async def refund(
        self, reference: str, amount: Money, key: str, *, payment_id: str = ""
    ) -> ProcessorAnswer:
        async with self._new_uow().bind(merchant_of(key)) as uow:
            card, _ = await _authorization(uow, reference)
            known = await _remembered(uow, key)  # under the card's lock, as in authorize
            if known is not None:
                return known
            decline = ""
            if amount.amount > await uow.cards.refundable(card.id):
                # Given back already by the card's own refund (POST /v1/gift-cards/{id}/
                # refunds): the same spend is not given back twice.
                decline = "gift_card_refund_exceeds_spent"
            else:
                # A card deactivated since takes it too, and stays deactivated: the refund is
                # on its ledger, never lost (domain.gift_cards.GiftCard.refund).
                activity = card.refund(
                    new_id("gca"), amount.amount, amount.currency, payment_id, "", of_a_payment=True
                )
                await _apply(uow, card, activity)
            answer = ProcessorAnswer(not decline, reference, decline_code=decline)
            await _remember(uow, key, "refund", card.id, amount.amount, answer)
            await uow.commit()
            return answer


async def _apply(uow: GiftCardUow, card: GiftCard, activity: Activity) -> None:
    await uow.cards.record(card, activity)
    uow.publish(GiftCardActivityCreated(card, activity))


async def _authorization(uow: GiftCardUow, reference: str) -> tuple[GiftCard, int]:
    """The card an authorisation took value from (locked), and how much it took."""
    t = gift_card_tender_calls
    row = (
        await uow.conn.execute(
            select(t.c.gift_card_id, t.c.amount).where(
                t.c.merchant_id == uow.merchant_id,
                t.c.reference == reference,
                t.c.kind == "authorize",
                t.c.approved.is_(True),
            )
        )
    ).first()
    card = None if row is None else await uow.cards.get(row.gift_card_id, lock=True)
    if row is None or card is None:
        raise UnknownSource()
    return card, int(row.amount)


async def _sum_of(uow: GiftCardUow, reference: str, kind: str) -> int:
    t = gift_card_tender_calls
    total = (
        await uow.conn.execute(
            select(func.coalesce(func.sum(t.c.amount), 0)).where(
                t.c.merchant_id == uow.merchant_id,
                t.c.reference == reference,
                t.c.kind == kind,
                t.c.approved.is_(True),
            )
        )
    ).scalar_one()
    return int(total)


async def _remembered(uow: GiftCardUow, key: str) -> ProcessorAnswer | None:
    t = gift_card_tender_calls
    row = (await uow.conn.execute(select(t).where(t.c.key == key))).first()
    if row is None:
        return None
    return ProcessorAnswer(row.approved, row.reference, "gift_card", row.last4, row.decline_code)


async def _remember(
    uow: GiftCardUow, key: str, kind: str, card_id: str, amount: int, answer: ProcessorAnswer
) -> None:
    await uow.conn.execute(
        insert(gift_card_tender_calls).values(
            key=key,
            merchant_id=uow.merchant_id,
            kind=kind,
            gift_card_id=card_id,
            amount=amount,
            approved=answer.approved,
            reference=answer.reference,
            last4=answer.last4,
            decline_code=answer.decline_code,
        )
    )


class WithSandboxCodes:
    """Real gift cards first; a code no card has goes on to the sandbox gift cards (`gc_...`),
    which integrators and the demo data rely on. Later calls go where the authorisation went:
    the sandbox's references start `sbx_`, the gift cards' `gca_`."""

    def __init__(self, cards: GiftCardTender, sandbox: TenderProcessor) -> None:
        self._cards = cards
        self._sandbox = sandbox

    def _of(self, reference: str) -> TenderProcessor:
        return self._sandbox if reference.startswith("sbx_") else self._cards

    async def authorize(
        self, source: str, amount: Money, capture: bool, key: str, *, payment_id: str = ""
    ) -> ProcessorAnswer:
        try:
            return await self._cards.authorize(source, amount, capture, key, payment_id=payment_id)
        except UnknownSource:
            return await self._sandbox.authorize(
                source, amount, capture, key, payment_id=payment_id
            )

    async def capture(self, reference: str, amount: Money, key: str) -> ProcessorAnswer:
        return await self._of(reference).capture(reference, amount, key)

    async def void(self, reference: str, key: str, *, payment_id: str = "") -> ProcessorAnswer:
        return await self._of(reference).void(reference, key, payment_id=payment_id)

    async def refund(
        self, reference: str, amount: Money, key: str, *, payment_id: str = ""
    ) -> ProcessorAnswer:
        return await self._of(reference).refund(reference, amount, key, payment_id=payment_id)

    async def lookup(self, key: str) -> ProcessorAnswer | None:
        return await self._cards.lookup(key) or await self._sandbox.lookup(key)
