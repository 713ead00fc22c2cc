"""pos.dispatcher.v1.DispatcherService: translates protobuf <-> handlers, nothing more."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from pos.dispatcher.v1 import dispatcher_pb2 as pb
from pos.dispatcher.v1 import dispatcher_pb2_grpc
from pos_dispatcher.adapters.messages import (
    DELIVERY_STATUS_NAME,
    STATUS,
    delivery_to_proto,
    event_to_proto,
    subscription_to_proto,
)
from pos_dispatcher.adapters.repository import DispatcherUow
from pos_dispatcher.service import handlers
from pos_kit.errors import FieldViolation, InvalidArgument
from pos_kit.idempotency import once
from pos_kit.paging import page_of, page_request, page_size
from pos_kit.servicer import Servicer, mutation, query


def _time(request: Any, name: str) -> datetime | None:
    value: Timestamp = getattr(request, name)
    return value.ToDatetime(tzinfo=UTC) if request.HasField(name) else None


class ShownOnce:
    """A secret made by the first run of a request. The stored answer (replayed to a retry)
    never holds it: only the run that made it hands it out."""

    def __init__(self) -> None:
        self.secret = ""


class DispatcherApi(Servicer[DispatcherUow], dispatcher_pb2_grpc.DispatcherServiceServicer):
    @query
    async def ListEvents(
        self, request: pb.ListEventsRequest, uow: DispatcherUow
    ) -> pb.ListEventsResponse:
        found, cursor, more, head = await handlers.list_events(
            uow, request.after, list(request.types), page_size(request.page_size)
        )
        return pb.ListEventsResponse(
            events=[event_to_proto(e) for e in found],
            next_after=cursor,
            has_more=more,
            head=head,
        )

    @query
    async def GetEvent(
        self, request: pb.GetEventRequest, uow: DispatcherUow
    ) -> pb.GetEventResponse:
        return pb.GetEventResponse(event=event_to_proto(await handlers.get_event(uow, request.id)))

    # Create and rotate answer with a secret that must not be stored with the answer, so they
    # run `once` themselves: the stored answer is the one without the secret.
    async def CreateSubscription(
        self, request: pb.CreateSubscriptionRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateSubscriptionResponse:
        made = ShownOnce()
        async with self.bound_uow() as uow:
            answer = await once(
                uow,
                "CreateSubscription",
                request,
                pb.CreateSubscriptionResponse,
                functools.partial(self._create, request, uow, made),
            )
        if made.secret:
            answer.secret = made.secret
        return answer

    @staticmethod
    async def _create(
        request: pb.CreateSubscriptionRequest, uow: DispatcherUow, made: ShownOnce
    ) -> pb.CreateSubscriptionResponse:
        sub, made.secret = await handlers.create_subscription(
            uow, request.url, list(request.event_types), request.description
        )
        return pb.CreateSubscriptionResponse(subscription=subscription_to_proto(sub))

    async def RotateSubscriptionSecret(
        self, request: pb.RotateSubscriptionSecretRequest, context: grpc.aio.ServicerContext
    ) -> pb.RotateSubscriptionSecretResponse:
        made = ShownOnce()
        async with self.bound_uow() as uow:
            answer = await once(
                uow,
                "RotateSubscriptionSecret",
                request,
                pb.RotateSubscriptionSecretResponse,
                functools.partial(self._rotate, request, uow, made),
            )
        if made.secret:
            answer.secret = made.secret
        return answer

    @staticmethod
    async def _rotate(
        request: pb.RotateSubscriptionSecretRequest, uow: DispatcherUow, made: ShownOnce
    ) -> pb.RotateSubscriptionSecretResponse:
        sub, made.secret = await handlers.rotate_secret(uow, request.id, request.overlap_seconds)
        return pb.RotateSubscriptionSecretResponse(subscription=subscription_to_proto(sub))

    @query
    async def GetSubscription(
        self, request: pb.GetSubscriptionRequest, uow: DispatcherUow
    ) -> pb.GetSubscriptionResponse:
        sub = await handlers.get_subscription(uow, request.id)
        return pb.GetSubscriptionResponse(subscription=subscription_to_proto(sub))

    @query
    async def ListSubscriptions(
        self, request: pb.ListSubscriptionsRequest, uow: DispatcherUow
    ) -> pb.ListSubscriptionsResponse:
        page = page_request(request)
        found, token = page_of(await handlers.list_subscriptions(uow, page), page)
        return pb.ListSubscriptionsResponse(
            subscriptions=[subscription_to_proto(s) for s in found], next_page_token=token
        )

    @mutation(pb.UpdateSubscriptionResponse)
    async def UpdateSubscription(
        self, request: pb.UpdateSubscriptionRequest, uow: DispatcherUow
    ) -> pb.UpdateSubscriptionResponse:
        sub, changed = await handlers.update_subscription(
            uow,
            request.id,
            url=request.url if request.HasField("url") else None,
            event_types=list(request.event_types) if request.replace_event_types else None,
            description=request.description if request.HasField("description") else None,
            status=STATUS.optional(request.status, "status"),
            expected_version=request.expected_version,
        )
        return pb.UpdateSubscriptionResponse(
            subscription=subscription_to_proto(sub), changed=changed
        )

    @mutation(pb.DeleteSubscriptionResponse)
    async def DeleteSubscription(
        self, request: pb.DeleteSubscriptionRequest, uow: DispatcherUow
    ) -> pb.DeleteSubscriptionResponse:
        await handlers.delete_subscription(uow, request.id, request.expected_version)
        return pb.DeleteSubscriptionResponse()

    @mutation(pb.SendTestEventResponse)
    async def SendTestEvent(
        self, request: pb.SendTestEventRequest, uow: DispatcherUow
    ) -> pb.SendTestEventResponse:
        delivery = await handlers.send_test(uow, request.id)
        return pb.SendTestEventResponse(delivery=delivery_to_proto(delivery))

    @query
    async def ListDeliveries(
        self, request: pb.ListDeliveriesRequest, uow: DispatcherUow
    ) -> pb.ListDeliveriesResponse:
        page = page_request(request)
        if request.status and request.status not in DELIVERY_STATUS_NAME:
            raise InvalidArgument(
                "status is not valid", [FieldViolation("status", "is not a delivery status")]
            )
        found = await handlers.list_deliveries(
            uow,
            request.subscription_id,
            status=DELIVERY_STATUS_NAME.get(request.status),
            event_id=request.event_id or None,
            created_after=_time(request, "created_after"),
            created_before=_time(request, "created_before"),
            page=page,
        )
        items, token = page_of(found, page)
        return pb.ListDeliveriesResponse(
            deliveries=[delivery_to_proto(d) for d in items], next_page_token=token
        )

    @mutation(pb.ReplayDeliveryResponse)
    async def ReplayDelivery(
        self, request: pb.ReplayDeliveryRequest, uow: DispatcherUow
    ) -> pb.ReplayDeliveryResponse:
        found = await handlers.replay_delivery(uow, request.subscription_id, request.delivery_id)
        return pb.ReplayDeliveryResponse(delivery=delivery_to_proto(found))

    @mutation(pb.ReplayFailedDeliveriesResponse)
    async def ReplayFailedDeliveries(
        self, request: pb.ReplayFailedDeliveriesRequest, uow: DispatcherUow
    ) -> pb.ReplayFailedDeliveriesResponse:
        count = await handlers.replay_failed(
            uow,
            request.subscription_id,
            _time(request, "created_after"),
            _time(request, "created_before"),
        )
        return pb.ReplayFailedDeliveriesResponse(replayed=count)


def registrar(uow: Callable[[], DispatcherUow]) -> Callable[[grpc.aio.Server], None]:
    def register(server: grpc.aio.Server) -> None:
        dispatcher_pb2_grpc.add_DispatcherServiceServicer_to_server(DispatcherApi(uow), server)

    return register


SERVICE_NAME = pb.DESCRIPTOR.services_by_name["DispatcherService"].full_name
