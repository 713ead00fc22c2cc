"""pos.inventory.v1.StockService: translates protobuf <-> handlers, nothing more."""

from __future__ import annotations

from collections.abc import Callable

import grpc

from pos.inventory.v1 import stock_pb2, stock_pb2_grpc
from pos_inventory.adapters.messages import (
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
from pos_inventory.adapters.stock import entry_seq
from pos_inventory.domain.reservations import validate_hold
from pos_inventory.domain.sourcing import Strategy
from pos_inventory.service import availability, reservations, stock
from pos_kit.context import current_merchant
from pos_kit.idempotency import once
from pos_kit.paging import decode_token, encode_token, page_size

S = stock_pb2

_STRATEGIES = {
    Strategy.PICKUP: S.SOURCING_STRATEGY_PICKUP,
    Strategy.SINGLE: S.SOURCING_STRATEGY_SINGLE,
    Strategy.SPLIT: S.SOURCING_STRATEGY_SPLIT,
    Strategy.UNFULFILLABLE: S.SOURCING_STRATEGY_UNFULFILLABLE,
}


class StockApi(stock_pb2_grpc.StockServiceServicer):
    def __init__(self, uow: Callable[[], InventoryUow]) -> None:
        self._uow = uow

    def _scoped(self) -> InventoryUow:
        return self._uow().bind(current_merchant())

    async def CountStock(
        self, request: S.CountStockRequest, context: grpc.aio.ServicerContext
    ) -> S.CountStockResponse:
        async with self._scoped() as uow:

            async def work() -> S.CountStockResponse:
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
                return S.CountStockResponse(
                    level=level_to_proto(level), entry=entry_to_proto(entry)
                )

            return await once(uow, "CountStock", request, S.CountStockResponse, work)

    async def TransferStock(
        self, request: S.TransferStockRequest, context: grpc.aio.ServicerContext
    ) -> S.TransferStockResponse:
        async with self._scoped() as uow:

            async def work() -> S.TransferStockResponse:
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
                    levels=[level_to_proto(x) for x in levels],
                    entries=[entry_to_proto(x) for x in entries],
                )

            return await once(uow, "TransferStock", request, S.TransferStockResponse, work)

    async def ListStockHistory(
        self, request: S.ListStockHistoryRequest, context: grpc.aio.ServicerContext
    ) -> S.ListStockHistoryResponse:
        limit = page_size(request.page_size)
        after = decode_token(request.page_token)
        async with self._scoped() as uow:
            found = await stock.stock_history(
                uow,
                request.sku,
                request.location_id,
                limit + 1,
                entry_seq(after) if after else None,
            )
        page = found[:limit]
        return S.ListStockHistoryResponse(
            entries=[entry_to_proto(x) for x in page],
            next_page_token=encode_token(page[-1].id) if len(found) > limit else "",
        )

    async def SetLowStockThreshold(
        self, request: S.SetLowStockThresholdRequest, context: grpc.aio.ServicerContext
    ) -> S.SetLowStockThresholdResponse:
        threshold = request.threshold if request.HasField("threshold") else None
        async with self._scoped() as uow:

            async def work() -> S.SetLowStockThresholdResponse:
                await stock.set_low_stock_threshold(uow, request.sku, threshold)
                answer = S.SetLowStockThresholdResponse(sku=request.sku)
                if threshold is not None:
                    answer.threshold = threshold
                return answer

            return await once(
                uow, "SetLowStockThreshold", request, S.SetLowStockThresholdResponse, work
            )

    async def CreateReservation(
        self, request: S.CreateReservationRequest, context: grpc.aio.ServicerContext
    ) -> S.CreateReservationResponse:
        hold = validate_hold(
            request.location_id,
            lines_from_proto(list(request.lines)),
            request.ttl_seconds,
            request.reference,
        )
        async with self._scoped() as uow:

            async def work() -> S.CreateReservationResponse:
                reservation, levels = await reservations.create_reservation(uow, hold)
                return S.CreateReservationResponse(
                    reservation=reservation_to_proto(reservation),
                    levels=[level_to_proto(x) for x in levels],
                )

            return await once(uow, "CreateReservation", request, S.CreateReservationResponse, work)

    async def CommitReservation(
        self, request: S.CommitReservationRequest, context: grpc.aio.ServicerContext
    ) -> S.CommitReservationResponse:
        async with self._scoped() as uow:

            async def work() -> S.CommitReservationResponse:
                reservation, levels = await reservations.commit_reservation(uow, request.id)
                return S.CommitReservationResponse(
                    reservation=reservation_to_proto(reservation),
                    levels=[level_to_proto(x) for x in levels],
                )

            return await once(uow, "CommitReservation", request, S.CommitReservationResponse, work)

    async def ReleaseReservation(
        self, request: S.ReleaseReservationRequest, context: grpc.aio.ServicerContext
    ) -> S.ReleaseReservationResponse:
        async with self._scoped() as uow:

            async def work() -> S.ReleaseReservationResponse:
                reservation, levels = await reservations.release_reservation(uow, request.id)
                return S.ReleaseReservationResponse(
                    reservation=reservation_to_proto(reservation),
                    levels=[level_to_proto(x) for x in levels],
                )

            return await once(
                uow, "ReleaseReservation", request, S.ReleaseReservationResponse, work
            )

    async def GetReservation(
        self, request: S.GetReservationRequest, context: grpc.aio.ServicerContext
    ) -> S.GetReservationResponse:
        async with self._scoped() as uow:
            reservation = await reservations.get_reservation(uow, request.id)
        return S.GetReservationResponse(reservation=reservation_to_proto(reservation))

    async def GetAvailability(
        self, request: S.GetAvailabilityRequest, context: grpc.aio.ServicerContext
    ) -> S.GetAvailabilityResponse:
        async with self._scoped() as uow:
            found = await availability.availability(
                uow, list(request.skus), list(request.location_ids)
            )
        return S.GetAvailabilityResponse(
            skus=[
                S.SkuAvailability(
                    sku=x.sku,
                    on_hand=x.on_hand,
                    reserved=x.reserved,
                    available=x.available,
                    locations=[level_to_proto(lv) for lv in x.locations],
                )
                for x in found
            ]
        )

    async def FindNearbyStock(
        self, request: S.FindNearbyStockRequest, context: grpc.aio.ServicerContext
    ) -> S.FindNearbyStockResponse:
        async with self._scoped() as uow:
            found = await availability.nearby_stock(
                uow,
                lines_from_proto(list(request.lines)),
                geo_from_proto(request.near) if request.HasField("near") else None,
                request.radius_km,
                request.pickup_only,
                page_size(request.page_size),
            )
        return S.FindNearbyStockResponse(
            locations=[
                S.NearbyLocation(
                    location=location_to_proto(x.location),
                    distance_km=round(x.distance_km, 3),
                    levels=[level_to_proto(lv) for lv in x.levels],
                )
                for x in found
            ]
        )

    async def ProposeSourcing(
        self, request: S.ProposeSourcingRequest, context: grpc.aio.ServicerContext
    ) -> S.ProposeSourcingResponse:
        async with self._scoped() as uow:

            async def work() -> S.ProposeSourcingResponse:
                sourced = await availability.propose_sourcing(
                    uow,
                    lines_from_proto(list(request.lines)),
                    geo_from_proto(request.destination)
                    if request.HasField("destination")
                    else None,
                    request.pickup_location_id,
                    request.dry_run,
                    request.ttl_seconds,
                    request.reference,
                )
                proposal = sourced.proposal
                return S.ProposeSourcingResponse(
                    strategy=_STRATEGIES[proposal.strategy],
                    allocations=[
                        S.SourcingAllocation(
                            location_id=a.location_id,
                            distance_km=round(a.distance_km or 0.0, 3),
                            lines=lines_to_proto(a.lines),
                            reservation_id=sourced.reservation_ids.get(a.location_id, ""),
                        )
                        for a in proposal.allocations
                    ],
                    reason=proposal.reason,
                    reason_code=proposal.reason_code,
                    short=lines_to_proto(proposal.short),
                )

            if request.dry_run:
                # Holds nothing, so there is nothing to apply once: answer fresh every time.
                return await work()
            return await once(uow, "ProposeSourcing", request, S.ProposeSourcingResponse, work)


SERVICE_NAME = stock_pb2.DESCRIPTOR.services_by_name["StockService"].full_name
