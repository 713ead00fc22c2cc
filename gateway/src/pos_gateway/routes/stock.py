"""Counts, transfers, history, low stock, reservations, availability and sourcing."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

import grpc
from fastapi import APIRouter, Depends, Query
from pydantic import Field, StringConstraints

from pos.inventory.v1 import inventory_pb2, stock_pb2
from pos.order.v1 import order_pb2
from pos_gateway import examples as ex
from pos_gateway.clients import Services
from pos_gateway.convert import to_json, to_model, to_page
from pos_gateway.problems import Problem, from_rpc_error
from pos_gateway.routes.common import (
    CREATE,
    INT32,
    INT64,
    INT64_MAX,
    INT64_MIN,
    SKU,
    TIME_SCHEMA,
    UNKNOWN_LOCATION,
    Body,
    BodyTime,
    Cursor,
    InRange,
    Limit,
    PathId,
    QueryId,
    Rfc3339,
    Sku,
    example,
    op,
    request_id,
    services,
    timestamp,
)
from pos_gateway.routes.inventory import GeoIn, OccurredAt
from pos_gateway.schemas.stock import (
    Counted,
    HeldReservation,
    LedgerEntryList,
    NearbyLocationList,
    Reservation,
    ReservationList,
    ReservationStatus,
    SkuAvailabilityList,
    SourcingProposal,
    Threshold,
    ThresholdList,
    Transfer,
)

router = APIRouter(prefix="/v1", tags=["stock and reservations"])
# What a write here may answer besides the edge's problems: unknown ids, conflicts, a reused key.
W = (404, *CREATE)
Svc = Annotated[Services, Depends(services)]
LocationId = Field(min_length=1, max_length=64, examples=["loc_01JD8X3M1Y0B9QK8V2T4N6P7RS"])
# A location filter's value: empty names no location (a 400), it does not widen the answer.
LocationIdIn = Annotated[QueryId, StringConstraints(min_length=1)]


# The most units one line of a hold, a transfer or a sourcing takes.
LINE_UNITS_MAX = 1_000_000_000


class LineIn(Body):
    sku: Sku
    quantity: int = Field(ge=1, le=LINE_UNITS_MAX, json_schema_extra=INT64, examples=[1])

    def pb(self) -> stock_pb2.StockLine:
        return stock_pb2.StockLine(sku=self.sku, quantity=self.quantity)


Lines = Field(min_length=1, max_length=100)


class CountIn(Body):
    model_config = example(
        {"sku": "TEE-BLK-M", "location_id": ex.LOCATION_ID, "quantity": 46, "expected_on_hand": 48}
    )

    sku: Sku
    location_id: str = LocationId
    quantity: int = Field(
        ge=0, le=1_000_000_000, json_schema_extra=INT64, description="Units counted on the shelf"
    )
    expected_on_hand: int | None = Field(
        None,
        ge=INT64_MIN,
        le=INT64_MAX,
        json_schema_extra=INT64,
        description="Apply only if on_hand is still this; otherwise 409 `count_conflict` with "
        "the current `on_hand`",
    )
    occurred_at: BodyTime | None = OccurredAt
    note: str = Field("", max_length=500)


class TransferIn(Body):
    model_config = example(
        {
            "from_location_id": ex.LOCATION_ID,
            "to_location_id": "loc_01j9x6q2b3c4d5e6f7g8h9k0mp",
            "lines": [{"sku": "TEE-BLK-M", "quantity": 2}],
        }
    )

    from_location_id: str = LocationId
    to_location_id: str = LocationId
    lines: list[LineIn] = Lines
    occurred_at: BodyTime | None = OccurredAt
    note: str = Field("", max_length=500)


class ThresholdIn(Body):
    model_config = example({"sku": "TEE-BLK-M", "threshold": 5})

    sku: Sku
    threshold: int | None = Field(
        ge=0,
        le=1_000_000_000,
        json_schema_extra=INT64,
        description="Alert when available falls to this; null removes it",
    )


class ReservationIn(Body):
    model_config = example(
        {
            "location_id": ex.LOCATION_ID,
            "lines": [{"sku": "TEE-BLK-M", "quantity": 2}],
            "ttl_seconds": 900,
            "reference": "cart-8812",
        }
    )

    location_id: str = LocationId
    lines: list[LineIn] = Lines
    ttl_seconds: int = Field(
        900, ge=1, le=604_800, json_schema_extra=INT32, description="How long the hold lasts"
    )
    reference: str = Field("", max_length=200, description="Yours, e.g. a cart or order id")


class SourcingIn(Body):
    model_config = example(
        {
            "lines": [{"sku": "TEE-BLK-M", "quantity": 2}],
            "destination": {"latitude": 39.78, "longitude": -89.65},
            "dry_run": True,
        }
    )

    lines: list[LineIn] = Lines
    destination: GeoIn | None = Field(None, description="Ship here; or give pickup_location_id")
    pickup_location_id: str | None = Field(None, max_length=64)
    dry_run: bool = Field(False, description="Propose only; hold nothing")
    ttl_seconds: int = Field(900, ge=1, le=604_800, json_schema_extra=INT32)
    reference: str = Field("", max_length=200)


@router.post(
    "/inventory/counts",
    **op("inventory:write", "Record a physical count", W, example=ex.COUNTED, status=201),
)
async def count_stock(body: CountIn, svc: Svc) -> Counted:
    request = stock_pb2.CountStockRequest(
        request_id=request_id(),
        sku=body.sku,
        location_id=body.location_id,
        quantity=body.quantity,
        note=body.note,
    )
    if body.expected_on_hand is not None:
        request.expected_on_hand = body.expected_on_hand
    if body.occurred_at is not None:
        request.occurred_at.CopyFrom(timestamp(body.occurred_at, "occurred_at"))
    return to_model(Counted, await svc.stock.CountStock(request))


@router.post(
    "/inventory/transfers",
    **op("inventory:write", "Move stock between locations", W, example=ex.TRANSFER, status=201),
)
async def transfer_stock(body: TransferIn, svc: Svc) -> Transfer:
    """Every line or none. The two locations must differ and each SKU appears once (400).
    A move meant as now (no `occurred_at`, or one ahead of now: accepted up to 5 minutes, a
    till's clock running fast) needs the units available at the source, on hand and not held
    (409 `insufficient_stock`); one stamped with an `occurred_at` already past reports a move
    made and is recorded whatever the source has left, as a stamped adjustment is (stock may
    show negative), so changes arriving late end in the same levels."""
    request = stock_pb2.TransferStockRequest(
        request_id=request_id(),
        from_location_id=body.from_location_id,
        to_location_id=body.to_location_id,
        lines=[line.pb() for line in body.lines],
        note=body.note,
    )
    if body.occurred_at is not None:
        request.occurred_at.CopyFrom(timestamp(body.occurred_at, "occurred_at"))
    return to_model(Transfer, await svc.stock.TransferStock(request))


@router.get(
    "/inventory/history",
    **op(
        "inventory:read",
        "The stock ledger, newest first",
        (404,),
        example=ex.page(ex.LEDGER_ENTRY),
    ),
)
async def stock_history(
    svc: Svc,
    # Empty is a 400, not "no filter": a client's unset variable would list every entry.
    sku: Annotated[Sku | None, Query()] = None,
    location_id: Annotated[
        str | None, Query(min_length=1, max_length=64, description=UNKNOWN_LOCATION)
    ] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
    kind: Annotated[
        Literal["adjustment", "count", "transfer_out", "transfer_in", "sale"] | None,
        Query(description="Only entries of this kind"),
    ] = None,
    reason: Annotated[
        Literal["received", "sold", "returned", "damaged", "correction", "lost"] | None,
        Query(
            description="Only entries of this reason: adjustments made for it and, for `sold`, "
            "sales too (`kind` tells them apart)"
        ),
    ] = None,
    recorded_since: Annotated[
        datetime | None,
        Rfc3339,
        InRange,
        Query(
            description="Only entries recorded at or after this RFC 3339 time",
            json_schema_extra=TIME_SCHEMA,
        ),
    ] = None,
    recorded_before: Annotated[
        datetime | None,
        Rfc3339,
        InRange,
        Query(
            description="Only entries recorded before this RFC 3339 time",
            json_schema_extra=TIME_SCHEMA,
        ),
    ] = None,
) -> LedgerEntryList:
    """Every movement of stock, newest first. Each filter narrows the list: a SKU, a location
    (one you do not have is a 404), an entry's `kind`, its `reason`, and when it was recorded
    (`recorded_since` and `recorded_before`, on each entry's `recorded_at`; together a day's
    or a month's movements, the second after the first, else a 400). `reason` matches the
    entry's own, set on adjustments and on sales (every sale is `sold`): `reason=sold` lists
    the sales with the adjustments made for that reason, `kind=adjustment` (or `sale`) beside
    it only those. A cursor pages on only with the filters it was given with."""
    ask = stock_pb2.ListStockHistoryRequest(
        sku=sku or "",
        location_id=location_id or "",
        page_size=limit,
        page_token=cursor or "",
        kind=kind or "",
        reason=reason or "",
    )
    if recorded_since is not None:
        ask.recorded_since.CopyFrom(timestamp(recorded_since, "recorded_since"))
    if recorded_before is not None:
        ask.recorded_before.CopyFrom(timestamp(recorded_before, "recorded_before"))
    answer = await svc.stock.ListStockHistory(ask)
    return to_page(LedgerEntryList, answer.entries, answer.next_page_token)


@router.post(
    "/inventory/low-stock-thresholds",
    **op("inventory:write", "Set or remove a low-stock alert", W, example=ex.THRESHOLD),
)
async def set_threshold(body: ThresholdIn, svc: Svc) -> Threshold:
    """`inventory.low_stock` is announced for a location when its `available` falls to or
    below the threshold, once per crossing, and at once for each location already at or below
    a threshold set here (unless the threshold it replaced covered it already). Read back with
    `GET /v1/inventory/low-stock-thresholds`."""
    request = stock_pb2.SetLowStockThresholdRequest(request_id=request_id(), sku=body.sku)
    if body.threshold is not None:
        request.threshold = body.threshold
    return to_model(Threshold, await svc.stock.SetLowStockThreshold(request))


@router.get(
    "/inventory/low-stock-thresholds",
    **op("inventory:read", "List low-stock alerts", example=ex.page(ex.THRESHOLD)),
)
async def list_thresholds(
    svc: Svc,
    sku: Annotated[
        list[Sku] | None,
        Query(max_length=200, description="Only these SKUs' thresholds (at most 200)"),
    ] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> ThresholdList:
    """The thresholds set with `POST /v1/inventory/low-stock-thresholds`, one per SKU, by SKU
    (A to Z) in pages; with `sku`, those of these SKUs only. A SKU with no threshold (none set,
    or removed) is not listed. A cursor pages on only with the `sku` it was given with."""
    ask = stock_pb2.ListLowStockThresholdsRequest(
        skus=sku or [], page_size=limit, page_token=cursor or ""
    )
    answer = await svc.stock.ListLowStockThresholds(ask)
    return to_page(ThresholdList, answer.thresholds, answer.next_page_token)


@router.get(
    "/inventory/availability",
    **op(
        "inventory:read",
        "Availability across locations",
        (404,),
        example=ex.listed(ex.AVAILABILITY),
    ),
)
async def availability(
    svc: Svc,
    sku: Annotated[list[Sku], Query(min_length=1, max_length=200)],
    location_id: Annotated[
        list[LocationIdIn] | None, Query(max_length=200, description=UNKNOWN_LOCATION)
    ] = None,
) -> SkuAvailabilityList:
    """Per SKU, its level at each location that has it: at most one entry for each of a
    merchant's 1,000 locations at most, and the totals over them. What can be promised: a
    location the merchant closed (`status: inactive`) sells nothing, so its units are neither
    in the totals nor listed, named in `location_id` or not (`GET /v1/inventory` still reads
    its stock)."""
    answer = await svc.stock.GetAvailability(
        stock_pb2.GetAvailabilityRequest(skus=sku, location_ids=location_id or [])
    )
    return to_page(SkuAvailabilityList, answer.skus)


# A SKU (64 at most), a colon and a quantity: more than 80 characters is no line.
SkuLine = Annotated[str, StringConstraints(max_length=80)]


def _lines_from_query(values: list[str]) -> list[stock_pb2.StockLine]:
    """`SKU` or `SKU:quantity` (a colon never appears in a SKU)."""
    lines: list[stock_pb2.StockLine] = []
    for value in values:
        sku, colon, quantity = value.partition(":")
        # As every SKU is checked here: the service would name its own `lines[0].sku`.
        if not re.fullmatch(SKU, sku):
            raise Problem(
                400,
                "invalid_request",
                "the request is not valid",
                [{"field": "sku", "reason": f"{value!r}: write SKU or SKU:quantity, the SKU 1 to "
                  "64 letters, digits, '.', '_', '-' or '/', the first a letter or digit"}],
            )  # fmt: skip
        # ASCII digits only (`str.isdigit` takes "²" too), a whole number of units from 1 to
        # what a line takes (a hold's, a sourcing's): past it the service would name its own
        # `lines[0].quantity`, which the caller did not send.
        if colon and not (
            re.fullmatch(r"[0-9]{1,19}", quantity) and 1 <= int(quantity) <= LINE_UNITS_MAX
        ):
            raise Problem(
                400,
                "invalid_request",
                "the request is not valid",
                [{"field": "sku", "reason": f"{value!r}: write SKU or SKU:quantity, a quantity "
                  f"from 1 to {LINE_UNITS_MAX:,}"}],
            )  # fmt: skip
        if any(line.sku == sku for line in lines):
            # The service would name its own field (`lines[1].sku`); the caller wrote `sku`.
            raise Problem(
                400,
                "invalid_request",
                "the request is not valid",
                [{"field": "sku", "reason": f"{sku!r} is given more than once; give each SKU "
                  "once, with its quantity (SKU:quantity)"}],
            )  # fmt: skip
        lines.append(stock_pb2.StockLine(sku=sku, quantity=int(quantity or 1)))
    return lines


@router.get(
    "/inventory/nearby",
    **op(
        "inventory:read",
        "Locations with stock near a point",
        (404, 409),
        example=ex.listed(ex.NEARBY),
    ),
)
async def nearby(
    svc: Svc,
    sku: Annotated[
        list[SkuLine], Query(min_length=1, max_length=100, description="SKU or SKU:quantity")
    ],
    # NaN fails every comparison: without allow_inf_nan a NaN latitude was told it must be
    # at most 90 (and an infinite one the same), not that it is no finite number.
    latitude: Annotated[float, Query(ge=-90, le=90, allow_inf_nan=False)],
    longitude: Annotated[float, Query(ge=-180, le=180, allow_inf_nan=False)],
    radius_km: Annotated[
        float,
        Query(
            ge=0,
            le=20_000,
            allow_inf_nan=False,
            description="Only locations this close, in km; 0 (the default): any distance",
        ),
    ] = 0,
    pickup_only: bool = False,
    limit: Annotated[
        int,
        Query(
            ge=1,
            le=200,
            description="How many of the nearest to answer (default 10, max 200); the "
            "answer is those alone, with no further page (`next_cursor` is always null)",
        ),
    ] = 10,
) -> NearbyLocationList:
    """Each `sku` is a SKU (one unit) or `SKU:quantity` with a whole quantity, else a 400.
    A SKU no product of yours sells under is a 404 `resource_missing` naming `sku` and
    `skus`, as in sourcing and holds. An archived product is not for sale: its SKU is a 409
    `product_archived` naming `skus`, with stock or without, as in sourcing."""
    try:
        answer = await svc.stock.FindNearbyStock(
            stock_pb2.FindNearbyStockRequest(
                lines=_lines_from_query(sku),
                near=inventory_pb2.GeoPoint(latitude=latitude, longitude=longitude),
                radius_km=radius_km,
                pickup_only=pickup_only,
                page_size=limit,
            )
        )
    except grpc.aio.AioRpcError as exc:
        # An unknown SKU is named by the service as its line (`lines[1].sku`); the caller
        # wrote it as `sku`.
        problem = from_rpc_error(exc)
        for error in problem.errors:
            error["field"] = re.sub(r"^lines\[\d+\]\.sku$", "sku", error["field"])
        raise problem from exc
    return to_page(NearbyLocationList, answer.locations)


def _held(
    answer: stock_pb2.CreateReservationResponse
    | stock_pb2.CommitReservationResponse
    | stock_pb2.ReleaseReservationResponse,
) -> HeldReservation:
    """A reservation write's answer: the reservation with the levels it changed."""
    levels = [to_json(x) for x in answer.levels]
    return HeldReservation.model_validate({**to_json(answer.reservation), "levels": levels})


async def _reference_not_an_order(svc: Services, reference: str) -> None:
    """Refuse a hold of the caller's whose reference names one of the merchant's orders: a
    hold so referenced is taken for the order's own (`_not_an_orders`), so the caller could
    neither sell nor release it, and the order, which did not make it, never does either: it
    would stay held until it expired."""
    if not reference.startswith("ord_"):
        return
    try:
        await svc.order.GetOrder(order_pb2.GetOrderRequest(id=reference))
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            return  # a reference of the caller's own that only looks like an order's
        raise
    reason = f"names order {reference}, whose holds are the order's own: use a reference of yours"
    raise Problem(
        400,
        "invalid_request",
        "the request is not valid",
        [{"field": "reference", "reason": reason}],
    )


@router.post("/reservations", **op("inventory:write", "Hold stock", W, example=ex.HELD, status=201))
async def create_reservation(body: ReservationIn, svc: Svc) -> HeldReservation:
    """Every line or none; each SKU appears once (400); 409 `insufficient_stock` names the SKUs
    short and what is available. A `reference` that is the id of one of your orders is a 400
    naming it: a hold so referenced is the order's to sell or release (409
    `reservation_managed_by_order`), and the order sells or releases only the holds it made."""
    await _reference_not_an_order(svc, body.reference)
    answer = await svc.stock.CreateReservation(
        stock_pb2.CreateReservationRequest(
            request_id=request_id(),
            location_id=body.location_id,
            lines=[line.pb() for line in body.lines],
            ttl_seconds=body.ttl_seconds,
            reference=body.reference,
        )
    )
    return _held(answer)


@router.get(
    "/reservations/{reservation_id}",
    **op("inventory:read", "Get a reservation", (404,), example=ex.RESERVATION),
)
async def get_reservation(reservation_id: PathId, svc: Svc) -> Reservation:
    """A hold past its `expires_at` (by the inventory's clock) reads `expired`, swept or not,
    and its units are no longer `reserved` in any read of stock, nor in the levels a write
    answers or announces (`inventory.changed`, `inventory.low_stock`)."""
    answer = await svc.stock.GetReservation(stock_pb2.GetReservationRequest(id=reservation_id))
    return to_model(Reservation, answer.reservation)


@router.get(
    "/reservations",
    **op("inventory:read", "List reservations", (404,), example=ex.page(ex.RESERVATION)),
)
async def list_reservations(
    svc: Svc,
    limit: Limit = 50,
    cursor: Cursor = None,
    status: Annotated[
        ReservationStatus | None,
        Query(description="Only the reservations in this status, as each reads"),
    ] = None,
    location_id: Annotated[LocationIdIn | None, Query(description=UNKNOWN_LOCATION)] = None,
    sku: Annotated[
        Sku | None, Query(description="Only the holds of this SKU (on any line)")
    ] = None,
) -> ReservationList:
    """The merchant's reservations by id, in pages (`limit`, `cursor`), each as
    `GET /v1/reservations/{id}` reads it: a hold past its `expires_at` is `expired`, swept or
    not, so `status=active` lists only holds that still hold their units. `status`,
    `location_id` (one you do not have is a 404 naming it) and `sku` (a hold with a line of
    it) narrow the list; a cursor pages on only with the filters it was given with."""
    answer = await svc.stock.ListReservations(
        stock_pb2.ListReservationsRequest(
            page_size=limit,
            page_token=cursor or "",
            status=stock_pb2.ReservationStatus.Value(f"RESERVATION_STATUS_{status.upper()}")
            if status is not None
            else stock_pb2.RESERVATION_STATUS_UNSPECIFIED,
            location_id=location_id or "",
            sku=sku or "",
        )
    )
    return to_page(ReservationList, answer.reservations, answer.next_page_token)


async def _not_an_orders(svc: Services, reservation_id: str) -> None:
    """Refuse a hold one of the merchant's orders made: sold or released behind the order's
    back, its units would be gone with no sale, or the order left holding nothing."""
    found = await svc.stock.GetReservation(stock_pb2.GetReservationRequest(id=reservation_id))
    reference = found.reservation.reference
    if not reference.startswith("ord_"):
        return
    try:
        await svc.order.GetOrder(order_pb2.GetOrderRequest(id=reference))
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            return  # a reference of the caller's own that only looks like an order's
        raise
    raise Problem(
        409,
        "reservation_managed_by_order",
        f"this hold is order {reference}'s: it is sold by the order's confirmation and given "
        "back by its cancel",
        extra={"order_id": reference},
    )


@router.post(
    "/reservations/{reservation_id}/commit",
    **op("inventory:write", "Sell the held units", W, example=ex.HELD),
)
async def commit_reservation(reservation_id: PathId, svc: Svc) -> HeldReservation:
    """A hold an order made (its `reference` is the order's id) is the order's to sell or
    give back, with its confirmation or its cancel: a 409 `reservation_managed_by_order`.
    A hold past its `expires_at` (by the inventory's clock) is a 409 `reservation_expired`,
    swept or not: it ends as expired, its units given back."""
    await _not_an_orders(svc, reservation_id)
    answer = await svc.stock.CommitReservation(
        stock_pb2.CommitReservationRequest(request_id=request_id(), id=reservation_id)
    )
    return _held(answer)


@router.post(
    "/reservations/{reservation_id}/release",
    **op("inventory:write", "Give the held units back", W, example=ex.HELD),
)
async def release_reservation(reservation_id: PathId, svc: Svc) -> HeldReservation:
    """A hold an order made is the order's (409 `reservation_managed_by_order`): cancel the
    order, or its fulfilment, to give its units back. Releasing again is a no-op answering the
    hold `released`, and so is releasing one past its `expires_at` (by the inventory's clock),
    swept or not: it ends as expired, its units given back by the expiry
    (`reservation.expired`), once, and is answered `expired`. A hold committed is a 409
    `reservation_committed`: its units are sold."""
    await _not_an_orders(svc, reservation_id)
    answer = await svc.stock.ReleaseReservation(
        stock_pb2.ReleaseReservationRequest(request_id=request_id(), id=reservation_id)
    )
    return _held(answer)


@router.post(
    "/sourcing",
    **op("inventory:write", "Propose where to fulfil lines from", W, example=ex.SOURCING),
)
async def propose_sourcing(body: SourcingIn, svc: Svc) -> SourcingProposal:
    """Pickup, one location, or a split, with the reason; holds the stock unless dry_run. Give
    exactly one of `destination` (ship there) and `pickup_location_id` (collect there), else a
    400; each SKU appears once. A split has an allocation per location shipping a part, of a
    merchant's 1,000 locations at most. An archived product's SKU is a 409 `product_archived`,
    dry run or not, with stock or without: a dry run answers what the real call would. A
    `reference` that is the id of one of your orders is a 400 naming it, dry run or not, as
    for a reservation."""
    await _reference_not_an_order(svc, body.reference)
    request = stock_pb2.ProposeSourcingRequest(
        request_id=request_id(),
        lines=[line.pb() for line in body.lines],
        pickup_location_id=body.pickup_location_id or "",
        dry_run=body.dry_run,
        ttl_seconds=body.ttl_seconds,
        reference=body.reference,
    )
    if body.destination is not None:
        request.destination.CopyFrom(body.destination.pb())
    proposal = to_json(await svc.stock.ProposeSourcing(request))
    for allocation in proposal["allocations"]:
        # No position, or a pickup with no destination: no distance, rather than a false 0 km.
        if allocation.pop("distance_unknown"):
            allocation["distance_km"] = None
    return SourcingProposal.model_validate(proposal)
