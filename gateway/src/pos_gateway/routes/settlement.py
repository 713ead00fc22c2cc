"""The settlement report of a location's day: /v1/settlement-reports."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from pos.inventory.v1 import inventory_pb2
from pos.payment.v1 import settlement_pb2 as S
from pos_gateway import examples as ex
from pos_gateway.clients import Services
from pos_gateway.convert import to_model
from pos_gateway.problems import Problem
from pos_gateway.routes.common import UNKNOWN_LOCATION, QueryId, op, services
from pos_gateway.schemas.gift_cards import SettlementReport

router = APIRouter(prefix="/v1", tags=["payments"])
Svc = Annotated[Services, Depends(services)]

DATE = r"^\d{4}-\d\d-\d\d$"


async def locations_of(
    svc: Services, wanted: Sequence[str], field: str = "", *, listed: bool = True
) -> list[inventory_pb2.Location]:
    """The merchant's locations of these ids, in the order asked, from one listing (paged only
    until every one is found). The inventory service says which are yours: the first id that
    is not (another merchant's too) is a 404 like a made-up one, naming `field[i]` if given
    (`field` itself when the body holds one id there, not a list: `listed=False`)."""
    if not wanted:
        return []
    found: dict[str, inventory_pb2.Location] = {}
    token = ""
    while True:
        page = await svc.inventory.ListLocations(
            inventory_pb2.ListLocationsRequest(page_size=200, page_token=token)
        )
        found.update((loc.id, loc) for loc in page.locations if loc.id in wanted)
        token = page.next_page_token
        if not token or len(found) == len(set(wanted)):
            break
    for index, location_id in enumerate(wanted):
        if location_id not in found:
            # With `field`, the body's list the id came from: which entry, as a 400 names it.
            named = f"{field}[{index}]" if listed else field
            errors = [{"field": named, "reason": "no such location"}] if field else []
            raise Problem(
                404,
                "resource_missing",
                f"location {location_id!r} was not found",
                errors,
                extra={"resource": "location"},
            )
    return [found[location_id] for location_id in wanted]


async def location_of(svc: Services, location_id: str, field: str = "") -> inventory_pb2.Location:
    """The location owns the day's time zone and the currency (see locations_of); `field` is
    the body's field that named it, for the 404's `errors[]`."""
    (location,) = await locations_of(svc, [location_id], field, listed=False)
    return location


async def open_location_of(svc: Services, location_id: str, field: str) -> inventory_pb2.Location:
    """As `location_of`, for something new at the location (a register, a shift, a card
    payment): a location the merchant closed is a 409 `location_inactive` naming `field`."""
    location = await location_of(svc, location_id, field)
    if location.status == inventory_pb2.LOCATION_STATUS_INACTIVE:
        raise Problem(
            409,
            "location_inactive",
            f"location {location_id!r} is inactive: nothing new is opened there",
            [{"field": field, "reason": "the location is inactive"}] if field else None,
            extra={"location_id": location_id},
        )
    return location


def in_its_currency(location: inventory_pb2.Location, currency: str) -> None:
    """Value moved at a location is in its currency: the location's settlement report, in that
    currency, counts it (another currency would leave it out of every report). 400
    `currency_mismatch` on `amount.currency` otherwise."""
    if currency and location.currency and currency != location.currency:
        raise Problem(
            400,
            "currency_mismatch",
            f"the amount is in {currency} but location {location.id} sells in "
            f"{location.currency}",
            [{"field": "amount.currency", "reason": f"must be {location.currency}, the "
              "currency of the location"}],
        )  # fmt: skip


@router.get(
    "/settlement-reports",
    **op("payments:read", "A location's settlement report for a day", (404,),
         example=ex.SETTLEMENT_REPORT),
)  # fmt: skip
async def get_settlement_report(
    svc: Svc,
    location_id: Annotated[QueryId, Query(min_length=1, description=UNKNOWN_LOCATION)],
    date: Annotated[str, Query(pattern=DATE, max_length=10, description="The local day")],
) -> SettlementReport:
    """The day is the location's calendar day in its own time zone, in its currency. Per
    tender: captured, refunded and net amounts and counts; card totals by brand; gift cards
    sold (issued and loaded there) against redeemed there (as a tender, or through
    `/v1/gift-cards/redeem` naming the location); of the cards sold, those paid in cash at a
    register (`gift_cards_sold_cash`: cash in the drawers that no payment took, so in no
    tender; the day's cash is the `cash` tender's net and it, as a shift's expected cash
    counts it); store credit issued there (returns without a receipt), apart from the cards
    sold; tips. A movement counts on the day it was asked for; the same sales split into
    different payments give the same totals. A report of a day not yet over changes as it
    goes on: `computed_at` says when it was made."""
    location = await location_of(svc, location_id)
    answer = await svc.settlement.GetSettlementReport(
        S.GetSettlementReportRequest(
            location_id=location_id,
            date=date,
            time_zone=location.time_zone or "UTC",
            currency=location.currency,
        )
    )
    return to_model(SettlementReport, answer.report)
