"""The settlement report use case: validate the day, read its movements, build the report."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

from pos_payment.domain.settlement import (
    Day,
    Movement,
    SettlementReport,
    build_report,
    validate_day,
)


class SettlementLedger(Protocol):
    async def movements(self, day: Day) -> list[Movement]: ...
    async def tips(self, day: Day) -> int: ...
    async def gift_cards_sold(self, day: Day) -> tuple[int, int]: ...
    async def gift_cards_sold_cash(self, day: Day) -> int: ...
    async def store_credit_issued(self, day: Day) -> tuple[int, int]: ...
    async def gift_card_sales_undone(self, day: Day) -> tuple[int, int]: ...
    async def promotional_issued(self, day: Day) -> tuple[int, int]: ...
    async def redeemed_directly(self, day: Day) -> int: ...


async def settlement_report(
    ledger: SettlementLedger, location_id: str, date: str, time_zone: str, currency: str
) -> SettlementReport:
    day = validate_day(location_id, date, time_zone, currency)
    # Stated in the answer: a report of today changes as the day goes on.
    computed_at = datetime.now(UTC)
    return build_report(
        day,
        await ledger.movements(day),
        await ledger.gift_cards_sold(day),
        await ledger.tips(day),
        computed_at,
        await ledger.store_credit_issued(day),
        await ledger.gift_card_sales_undone(day),
        await ledger.promotional_issued(day),
        await ledger.redeemed_directly(day),
        await ledger.gift_cards_sold_cash(day),
    )
