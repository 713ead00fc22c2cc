"""pos.inventory.v1.StockService: translates protobuf <-> handlers, nothing more."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc
from google.protobuf.message import Message

from pos.inventory.v1 import inventory_pb2, stock_pb2, stock_pb2_grpc
from pos_inventory.adapters.messages import (
    RESERVATION_STATUSES,
    STRATEGIES,
    entry_to_proto,
    geo_from_proto,
    level_to_proto,
    lines_from_proto,
    lines_to_proto,
    location_to_proto,
    reservation_to_proto,
    when,
)
from pos_inventory.adapters.repository import InventoryUow
from pos_inventory.domain.model import StockLevel
from pos_inventory.domain.reservations import HoldDue, OutOfStock, validate_hold
from pos_inventory.service import availability, reservations, stock
from pos_inventory.service.ports import HistoryFilters
from pos_kit.paging import page_of, page_request, page_size, time_field
from pos_kit.servicer import GrpcMethod, Servicer, mutation, query

S = stock_pb2

Req = TypeVar("Req")
R = TypeVar("R", bound=Message)
Api = TypeVar("Api", bound=Servicer[InventoryUow])


def mutation_unless(
    dry: Callable[[Req], bool], response_type: type[R]
) -> Callable[[Callable[[Api, Req, InventoryUow], Awaitable[R]]], GrpcMethod[Api, Req, R]]:
    """A mutation, except for a request `dry` says changes nothing: that one is a query,
    answered fresh every time and never stored under its request_id.

    (The kit's `mutation` and `query` each serve one kind of RPC; ProposeSourcing is both.)
    """

    def decorate(
        method: Callable[[Api, Req, InventoryUow], Awaitable[R]],
    ) -> GrpcMethod[Api, Req, R]:
        changes = mutation(response_type)(method)
        reads = query(method)

        @functools.wraps(method)
        async def rpc(self: Api, request: Req, context: grpc.aio.ServicerContext) -> R:
            run = reads if dry(request) else changes
            return await run(self, request, context)

        return rpc

    return decorate


def ending_due_holds(method: GrpcMethod[Api, Req, R]) -> GrpcMethod[Api, Req, R]:
    """A commit that found its hold past its time (`HoldDue`) is refused, and its transaction
    rolled back with its request id unclaimed; the hold then ends as expired in a transaction
    of its own, as the sweep would end it (units back once, `ReservationExpired`), so the
    refusal and the hold agree at once. A retry finds it expired: the same refusal. (A release
    needs none of this: it ends a due hold as expired itself, and answers it so.)"""

    @functools.wraps(method)
    async def rpc(self: Api, request: Req, context: grpc.aio.ServicerContext) -> R:
        try:
            return await method(self, request, context)
        except HoldDue as due:
            async with self.bound_uow() as uow:
                if await reservations.expire_reservation(uow, due.reservation_id):
                    await uow.commit()
            raise

    return rpc


# How many times a write short of units held by due holds ends the ones its refusal names and
# is tried again (each refusal names up to `reservations.MAX_DUE_IN_THE_WAY`): a bound on one
# request's work; the sweep ends any others.
MAX_FREEING_ROUNDS = 20


def freeing_due_holds(method: GrpcMethod[Api, Req, R]) -> GrpcMethod[Api, Req, R]:
    """A write short of available units (`OutOfStock`) where holds past their time still
    hold some of the short SKUs (the sweep runs every few seconds; the refusal names them)
    ends those holds as expired, each in a transaction of its own as the sweep would (units
    back once, `ReservationExpired`), and is tried again. Its own transaction was rolled
    back with its request id unclaimed, so the retry is the first answer. Due holds hold
    nothing by their terms: the last unit of a SKU was refused for up to a sweep interval
    while an abandoned cart's hold sat past its time.

    Tried again as long as the refusal names due holds (a refusal names at most
    `MAX_DUE_IN_THE_WAY`), up to `MAX_FREEING_ROUNDS` times: tried once more only, a write
    short by more than that many due holds' units was refused though every unit it wanted
    was held by holds past their time. Every hold named is ended once this loop has been
    through it, by this request or by whoever got there first (the sweep, another write
    refused for it), its units given back either way, so the retry is due whoever ended it:
    counting only those this request ended, a write that lost that race stood by a refusal
    for units nothing held any more. The next refusal names other holds, so the rounds end."""

    @functools.wraps(method)
    async def rpc(self: Api, request: Req, context: grpc.aio.ServicerContext) -> R:
        for _ in range(MAX_FREEING_ROUNDS):
            try:
                return await method(self, request, context)
            except OutOfStock as short:
                if not short.due_holds:
                    raise
                for reservation_id in short.due_holds:
                    async with self.bound_uow() as uow:
                        if await reservations.expire_reservation(uow, reservation_id):
                            await uow.commit()
        return await method(self, request, context)

    return rpc


# How many times a sourcing outrun for the units it proposed is proposed again: a bound on one
# request's work (each round lost is another write's units taken first).
MAX_SOURCING_ROUNDS = 20


def sourcing_again_when_outrun(
    method: GrpcMethod[Api, S.ProposeSourcingRequest, R],
) -> GrpcMethod[Api, S.ProposeSourcingRequest, R]:
    """A sourcing proposes on the levels it read, then holds there: another write may take
    those units in between, and its hold is short (`OutOfStock`). Its transaction was rolled
    back with its request id unclaimed, so it is proposed again on the levels as they now are
    (another store, a split, or `unfulfillable` naming what is short), as a sourcing made a
    moment later would be. Before, it was refused `insufficient_stock` though other stores had
    the units, and a refusal no sourcing answers otherwise (short stock is `unfulfillable`)."""

    @functools.wraps(method)
    async def rpc(
        self: Api, request: S.ProposeSourcingRequest, context: grpc.aio.ServicerContext
    ) -> R:
        for _ in range(MAX_SOURCING_ROUNDS):
            try:
                return await method(self, request, context)
            except OutOfStock:
                if request.dry_run:  # holds nothing, so never outrun: not a race
                    raise
        return await method(self, request, context)

    return rpc


def _levels(levels: list[StockLevel]) -> list[inventory_pb2.StockLevel]:
    return [level_to_proto(x) for x in levels]


def _dry_run(request: S.ProposeSourcingRequest) -> bool:
    return request.dry_run


class StockApi(Servicer[InventoryUow], stock_pb2_grpc.StockServiceServicer):
    @mutation(S.CountStockResponse)
    async def CountStock(
        self, request: S.CountStockRequest, uow: InventoryUow
    ) -> S.CountStockResponse:
        level, entry = await stock.count_stock(
            uow,
            request.request_id,
            request.sku,
            request.location_id,
            request.quantity,
            request.expected_on_hand if request.HasField("expected_on_hand") else None,
            when(request.occurred_at, request.HasField("occurred_at")),
            request.note,
        )
        return S.CountStockResponse(level=level_to_proto(level), entry=entry_to_proto(entry))

    @freeing_due_holds
    @mutation(S.TransferStockResponse)
    async def TransferStock(
        self, request: S.TransferStockRequest, uow: InventoryUow
    ) -> S.TransferStockResponse:
        transfer_id, levels, entries = await stock.transfer_stock(
            uow,
            request.from_location_id,
            request.to_location_id,
            lines_from_proto(list(request.lines)),
            when(request.occurred_at, request.HasField("occurred_at")),
            request.note,
        )
        return S.TransferStockResponse(
            transfer_id=transfer_id,
            levels=_levels(levels),
            entries=[entry_to_proto(x) for x in entries],
        )

    @query
    async def ListStockHistory(
        self, request: S.ListStockHistoryRequest, uow: InventoryUow
    ) -> S.ListStockHistoryResponse:
        page = page_request(request)
        filters = HistoryFilters(
            sku=request.sku,
            location_id=request.location_id,
            kind=request.kind,
            reason=request.reason,
            recorded_since=time_field(request, "recorded_since"),
            recorded_before=time_field(request, "recorded_before"),
        )
        found = await stock.stock_history(uow, filters, page)
        entries, token = page_of(found, page)
        return S.ListStockHistoryResponse(
            entries=[entry_to_proto(x) for x in entries], next_page_token=token
        )

    @mutation(S.SetLowStockThresholdResponse)
    async def SetLowStockThreshold(
        self, request: S.SetLowStockThresholdRequest, uow: InventoryUow
    ) -> S.SetLowStockThresholdResponse:
        threshold = request.threshold if request.HasField("threshold") else None
        await stock.set_low_stock_threshold(uow, request.sku, threshold)
        answer = S.SetLowStockThresholdResponse(sku=request.sku)
        if threshold is not None:
            answer.threshold = threshold
        return answer

    @query
    async def ListLowStockThresholds(
        self, request: S.ListLowStockThresholdsRequest, uow: InventoryUow
    ) -> S.ListLowStockThresholdsResponse:
        page = page_request(request)
        found = await stock.low_stock_thresholds(uow, list(request.skus), page)
        thresholds, token = page_of(found, page)
        return S.ListLowStockThresholdsResponse(
            thresholds=[S.LowStockThreshold(sku=t.sku, threshold=t.threshold) for t in thresholds],
            next_page_token=token,
        )

    @freeing_due_holds
    @mutation(S.CreateReservationResponse)
    async def CreateReservation(
        self, request: S.CreateReservationRequest, uow: InventoryUow
    ) -> S.CreateReservationResponse:
        hold = validate_hold(
            request.location_id,
            lines_from_proto(list(request.lines)),
            request.ttl_seconds,
            request.reference,
        )
        reservation, levels = await reservations.create_reservation(uow, hold)
        return S.CreateReservationResponse(
            reservation=reservation_to_proto(reservation), levels=_levels(levels)
        )

    @ending_due_holds
    @mutation(S.CommitReservationResponse)
    async def CommitReservation(
        self, request: S.CommitReservationRequest, uow: InventoryUow
    ) -> S.CommitReservationResponse:
        reservation, levels = await reservations.commit_reservation(uow, request.id)
        return S.CommitReservationResponse(
            reservation=reservation_to_proto(reservation), levels=_levels(levels)
        )

    @mutation(S.ReleaseReservationResponse)
    async def ReleaseReservation(
        self, request: S.ReleaseReservationRequest, uow: InventoryUow
    ) -> S.ReleaseReservationResponse:
        reservation, levels = await reservations.release_reservation(uow, request.id)
        return S.ReleaseReservationResponse(
            reservation=reservation_to_proto(reservation), levels=_levels(levels)
        )

    @query
    async def GetReservation(
        self, request: S.GetReservationRequest, uow: InventoryUow
    ) -> S.GetReservationResponse:
        reservation = await reservations.get_reservation(uow, request.id)
        return S.GetReservationResponse(reservation=reservation_to_proto(reservation))

    @query
    async def ListReservations(
        self, request: S.ListReservationsRequest, uow: InventoryUow
    ) -> S.ListReservationsResponse:
        page = page_request(request)  # its tokens are bound to the filters too
        status = RESERVATION_STATUSES.optional(request.status, "status")
        found = await reservations.list_reservations(
            uow, page, status, request.location_id, request.sku
        )
        listed, token = page_of(found, page)
        return S.ListReservationsResponse(
            reservations=[reservation_to_proto(x) for x in listed], next_page_token=token
        )

    @query
    async def GetAvailability(
        self, request: S.GetAvailabilityRequest, uow: InventoryUow
    ) -> S.GetAvailabilityResponse:
        found = await availability.availability(uow, list(request.skus), list(request.location_ids))
        return S.GetAvailabilityResponse(
            skus=[
                S.SkuAvailability(
                    sku=x.sku,
                    on_hand=x.on_hand,
                    reserved=x.reserved,
                    available=x.available,
                    locations=_levels(x.locations),
                )
                for x in found
            ]
        )

    @query
    async def FindNearbyStock(
        self, request: S.FindNearbyStockRequest, uow: InventoryUow
    ) -> S.FindNearbyStockResponse:
        found = await availability.nearby_stock(
            uow,
            lines_from_proto(list(request.lines)),
            geo_from_proto(request.near) if request.HasField("near") else None,
            request.radius_km,
            request.pickup_only,
            # The nearest few, not pages: a page size with no token.
            page_size(request.page_size),
        )
        return S.FindNearbyStockResponse(
            locations=[
                S.NearbyLocation(
                    location=location_to_proto(x.location),
                    distance_km=round(x.distance_km, 3),
                    levels=_levels(x.levels),
                )
                for x in found
            ]
        )

    @sourcing_again_when_outrun
    @freeing_due_holds
    @mutation_unless(_dry_run, S.ProposeSourcingResponse)
    async def ProposeSourcing(
        self, request: S.ProposeSourcingRequest, uow: InventoryUow
    ) -> S.ProposeSourcingResponse:
        sourced = await availability.propose_sourcing(
            uow,
            lines_from_proto(list(request.lines)),
            geo_from_proto(request.destination) if request.HasField("destination") else None,
            request.pickup_location_id,
            request.dry_run,
            request.ttl_seconds,
            request.reference,
            request.currency,
        )
        proposal = sourced.proposal
        return S.ProposeSourcingResponse(
            strategy=STRATEGIES.to_proto(proposal.strategy),
            allocations=[
                S.SourcingAllocation(
                    location_id=a.location_id,
                    distance_km=round(a.distance_km or 0.0, 3),
                    distance_unknown=a.distance_km is None,
                    lines=lines_to_proto(a.lines),
                    reservation_id=sourced.reservation_ids.get(a.location_id, ""),
                )
                for a in proposal.allocations
            ],
            reason=proposal.reason,
            reason_code=proposal.reason_code,
            short=lines_to_proto(proposal.short),
        )


def registrar(uow: Callable[[], InventoryUow]) -> Callable[[grpc.aio.Server], None]:
    def register(server: grpc.aio.Server) -> None:
        stock_pb2_grpc.add_StockServiceServicer_to_server(StockApi(uow), server)

    return register


SERVICE_NAME = stock_pb2.DESCRIPTOR.services_by_name["StockService"].full_name
