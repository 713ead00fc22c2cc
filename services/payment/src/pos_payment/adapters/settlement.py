"""The settlement report's reads: one location's captures, refunds, tips, and gift cards sold
(of them, for cash), issued without a sale (store credit, promotions) and undone, between two
instants, summed by PostgreSQL (a day of 100,000 payments arrives as a few rows).

Each movement counts at the time it was asked for (its row's created_at): a sale captured at
once, a later capture operation, a refund. Those times never change, so a closed day's report
stays what it was (`updated_at` moves with every later change of the row); a movement the
processor settled late (pending, then reconciled) joins the day it was asked on.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, Table, and_, func, literal, or_, select, union_all
from sqlalchemy.ext.asyncio import AsyncConnection

from pos_payment.adapters.gift_card_tables import gift_card_activities, gift_cards
from pos_payment.adapters.tables import operations, payments, refunds
from pos_payment.domain.gift_cards import IssueReason
from pos_payment.domain.settlement import Day, Movement

# The deactivation reasons (DeactivateGiftCardRequest.reason) of a card whose sale was undone:
# the order service's, when the order that sold it is cancelled or the line returned.
SALE_UNDONE = ("order_cancelled", "line_returned")
STORE_CREDIT = IssueReason.STORE_CREDIT.value
PROMOTIONAL = IssueReason.PROMOTIONAL.value
# Cards issued with nothing sold: money given back, value given away.
NOT_SOLD = (STORE_CREDIT, PROMOTIONAL)


class SqlSettlementLedger:
    def __init__(self, conn: AsyncConnection, merchant_id: str) -> None:
        self._conn = conn
        self._merchant = merchant_id

    def _payments_here(self, day: Day) -> list[ColumnElement[bool]]:
        p = payments
        return [
            p.c.merchant_id == self._merchant,
            p.c.location_id == day.location_id,
            p.c.currency == day.currency,
        ]

    async def movements(self, day: Day) -> list[Movement]:
        p, o, r = payments, operations, refunds
        start, end = day.starts_at, day.ends_at
        at_once = select(
            p.c.tender_type,
            p.c.card_brand,
            literal(False).label("refund"),
            p.c.captured.label("amount"),
        ).where(
            *self._payments_here(day),
            p.c.capture_at_once.is_(True),
            p.c.captured > 0,
            p.c.created_at >= start,
            p.c.created_at < end,
        )
        joined = and_(p.c.merchant_id == o.c.merchant_id, p.c.id == o.c.payment_id)
        later = (
            select(
                p.c.tender_type,
                p.c.card_brand,
                literal(False).label("refund"),
                o.c.amount.label("amount"),
            )
            .select_from(o.join(p, joined))
            .where(
                o.c.merchant_id == self._merchant,
                o.c.kind == "capture",
                o.c.status == "succeeded",
                o.c.created_at >= start,
                o.c.created_at < end,
                *self._payments_here(day),
            )
        )
        paid = and_(p.c.merchant_id == r.c.merchant_id, p.c.id == r.c.payment_id)
        refunded = (
            select(
                p.c.tender_type,
                p.c.card_brand,
                literal(True).label("refund"),
                r.c.amount.label("amount"),
            )
            .select_from(r.join(p, paid))
            .where(
                r.c.merchant_id == self._merchant,
                r.c.status == "succeeded",
                r.c.created_at >= start,
                r.c.created_at < end,
                *self._payments_here(day),
            )
        )
        moved = union_all(at_once, later, refunded).subquery()
        query = select(
            moved.c.tender_type,
            moved.c.card_brand,
            moved.c.refund,
            func.sum(moved.c.amount).label("amount"),
            func.count().label("count"),
        ).group_by(moved.c.tender_type, moved.c.card_brand, moved.c.refund)
        rows = (await self._conn.execute(query)).all()
        return [
            Movement(row.tender_type, row.card_brand, row.refund, int(row.amount), int(row[4]))
            for row in rows
        ]

    async def tips(self, day: Day) -> int:
        """Tips of the payments taken that day (a tip belongs to the sale it came with)."""
        p = payments
        total = (
            await self._conn.execute(
                select(func.coalesce(func.sum(p.c.tip), 0)).where(
                    *self._payments_here(day),
                    p.c.captured > 0,
                    p.c.created_at >= day.starts_at,
                    p.c.created_at < day.ends_at,
                )
            )
        ).scalar_one()
        return int(total)

    async def _card_activities(self, day: Day, *where: ColumnElement[bool]) -> tuple[int, int]:
        """The sum and count of the merchant's gift card activities of the day, in its currency,
        that `where` keeps (on the activity, or on its card, `gift_cards`)."""
        a = gift_card_activities
        row = (
            await self._conn.execute(
                select(func.coalesce(func.sum(a.c.amount), 0), func.count())
                .select_from(a.join(gift_cards, _card_of(a)))
                .where(
                    a.c.merchant_id == self._merchant,
                    a.c.currency == day.currency,
                    a.c.created_at >= day.starts_at,
                    a.c.created_at < day.ends_at,
                    *where,
                )
            )
        ).one()
        return int(row[0]), int(row[1])

    async def gift_cards_sold(self, day: Day) -> tuple[int, int]:
        """Value put on cards at the location that day: activations and loads, and how many. A
        card issued as store credit (money given back: `store_credit_issued`) or as a
        promotion (value given away: `promotional_issued`) was not sold; value loaded on it
        later was."""
        return await self._card_activities(day, *self._sold_here(day))

    async def gift_cards_sold_cash(self, day: Day) -> int:
        """Of the cards sold at the location that day, the value paid for in cash at a
        register (`paid_in_cash`): cash in the drawer that no payment took."""
        a = gift_card_activities
        paid, _ = await self._card_activities(
            day, *self._sold_here(day), a.c.paid_in_cash.is_(True)
        )
        return paid

    @staticmethod
    def _sold_here(day: Day) -> list[ColumnElement[bool]]:
        a, g = gift_card_activities, gift_cards
        return [
            a.c.location_id == day.location_id,
            or_(a.c.kind == "load", and_(a.c.kind == "activate", g.c.reason.not_in(NOT_SOLD))),
        ]

    async def gift_card_sales_undone(self, day: Day) -> tuple[int, int]:
        """Sales undone that day: cards sold with an order and deactivated because the order
        was cancelled (its compensation included) or the line returned, at the location the
        card was sold (a deactivation carries none), with what was taken off them, and how
        many. Counted the day they were undone, apart from the day's sales: a closed day stays
        closed, and a day that undoes an earlier day's sale is not a negative day of sales."""
        a, g = gift_card_activities, gift_cards
        taken, count = await self._card_activities(
            day,
            a.c.kind == "deactivate",
            a.c.reference.in_(SALE_UNDONE),
            g.c.order_id != "",
            g.c.location_id == day.location_id,
        )
        # A deactivation's amount is what the card held, taken off (negative).
        return -taken, count

    async def redeemed_directly(self, day: Day) -> int:
        """Value taken off cards at the location through the gift card API (`RedeemGiftCard`
        naming the location), less value given back to cards there the same way
        (`RefundToGiftCard`). The gift card tender's own redemptions and refunds name no
        location on the card's ledger (they are the payments', counted by tender), so nothing
        is counted twice; an API redemption naming no location is no location's."""
        a = gift_card_activities
        taken, _ = await self._card_activities(
            day, a.c.location_id == day.location_id, a.c.kind.in_(("redeem", "refund"))
        )
        # A redemption's amount is taken off the card (negative), a refund's given back.
        return -taken

    async def store_credit_issued(self, day: Day) -> tuple[int, int]:
        """Value put on cards issued as store credit at the location (a return without a
        receipt credits its customer on a new card), and how many."""
        return await self._issued_as(day, STORE_CREDIT)

    async def promotional_issued(self, day: Day) -> tuple[int, int]:
        """Value put on cards given away as a promotion at the location, and how many."""
        return await self._issued_as(day, PROMOTIONAL)

    async def _issued_as(self, day: Day, reason: str) -> tuple[int, int]:
        a, g = gift_card_activities, gift_cards
        return await self._card_activities(
            day, a.c.location_id == day.location_id, a.c.kind == "activate", g.c.reason == reason
        )


def _card_of(a: Table) -> ColumnElement[bool]:
    g = gift_cards
    return and_(g.c.merchant_id == a.c.merchant_id, g.c.id == a.c.gift_card_id)
