"""pos.customer.v1.CustomerService: translates protobuf <-> handlers, nothing more."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

import grpc

from pos.common.v1 import money_pb2
from pos.customer.v1 import customer_pb2, customer_pb2_grpc, loyalty_pb2
from pos_customer.adapters import messages
from pos_customer.adapters.messages import customer_to_proto
from pos_customer.adapters.repository import CustomerUow
from pos_customer.domain.model import Profile
from pos_customer.service import handlers, points
from pos_kit.paging import decode_token, encode_token, page_of, page_request, page_scope
from pos_kit.servicer import Servicer, mutation, query


def _profile(
    legacy: customer_pb2.CreateCustomerRequest | customer_pb2.UpdateCustomerRequest,
    create: bool,
) -> Profile:
    """The request's `profile`, with the older top-level fields where it leaves them unset."""
    profile = messages.profile_from_proto(legacy.profile)
    for name in ("email", "given_name", "family_name"):
        if getattr(profile, name) is not None:
            continue
        if create:
            value = getattr(legacy, name)
            if value:
                profile = replace(profile, **{name: value})
        elif legacy.HasField(name):  # type: ignore[arg-type]
            profile = replace(profile, **{name: getattr(legacy, name)})
    return profile


class CustomerApi(Servicer[CustomerUow], customer_pb2_grpc.CustomerServiceServicer):
    @mutation(customer_pb2.CreateCustomerResponse)
    async def CreateCustomer(
        self, request: customer_pb2.CreateCustomerRequest, uow: CustomerUow
    ) -> customer_pb2.CreateCustomerResponse:
        customer = await handlers.create_customer(uow, _profile(request, create=True))
        return customer_pb2.CreateCustomerResponse(customer=customer_to_proto(customer))

    @mutation(customer_pb2.UpdateCustomerResponse)
    async def UpdateCustomer(
        self, request: customer_pb2.UpdateCustomerRequest, uow: CustomerUow
    ) -> customer_pb2.UpdateCustomerResponse:
        customer = await handlers.update_customer(
            uow, request.id, _profile(request, create=False), request.expected_version
        )
        return customer_pb2.UpdateCustomerResponse(customer=customer_to_proto(customer))

    @mutation(customer_pb2.UpsertCustomerResponse)
    async def UpsertCustomer(
        self, request: customer_pb2.UpsertCustomerRequest, uow: CustomerUow
    ) -> customer_pb2.UpsertCustomerResponse:
        customer, created = await handlers.upsert_customer(
            uow,
            messages.profile_from_proto(request.profile),
            request.expected_version,
            request.require_existing,
        )
        return customer_pb2.UpsertCustomerResponse(
            customer=customer_to_proto(customer), created=created
        )

    @mutation(customer_pb2.BatchUpsertCustomersResponse)
    async def BatchUpsertCustomers(
        self, request: customer_pb2.BatchUpsertCustomersRequest, uow: CustomerUow
    ) -> customer_pb2.BatchUpsertCustomersResponse:
        result = await handlers.batch_upsert(
            uow, [messages.profile_from_proto(p) for p in request.customers]
        )
        return customer_pb2.BatchUpsertCustomersResponse(
            customers=[customer_to_proto(c) for c in result.customers],
            created=result.created,
            updated=result.updated,
        )

    @query
    async def GetCustomer(
        self, request: customer_pb2.GetCustomerRequest, uow: CustomerUow
    ) -> customer_pb2.GetCustomerResponse:
        customer = await handlers.get_customer(uow, request.id)
        return customer_pb2.GetCustomerResponse(customer=customer_to_proto(customer))

    @query
    async def ListCustomers(
        self, request: customer_pb2.ListCustomersRequest, uow: CustomerUow
    ) -> customer_pb2.ListCustomersResponse:
        page = page_request(request)
        found, token = page_of(await handlers.list_customers(uow, page, request.group_id), page)
        return customer_pb2.ListCustomersResponse(
            customers=[customer_to_proto(c) for c in found], next_page_token=token
        )

    @query
    async def SearchCustomers(
        self, request: customer_pb2.SearchCustomersRequest, uow: CustomerUow
    ) -> customer_pb2.SearchCustomersResponse:
        scope = page_scope(request)
        found, next_key = await handlers.search_customers(
            uow, request.email, request.phone, request.external_id, request.query,
            request.page_size, decode_token(request.page_token, scope=scope),
        )  # fmt: skip
        return customer_pb2.SearchCustomersResponse(
            customers=[customer_to_proto(c) for c in found],
            next_page_token=encode_token(next_key, scope) if next_key else "",
        )

    @mutation(customer_pb2.EraseCustomerResponse)
    async def EraseCustomer(
        self, request: customer_pb2.EraseCustomerRequest, uow: CustomerUow
    ) -> customer_pb2.EraseCustomerResponse:
        erased_at, merged = await handlers.erase_customer(uow, request.id, request.requested_by)
        answer = customer_pb2.EraseCustomerResponse(id=request.id, merged_customer_ids=merged)
        answer.erased_at.FromDatetime(erased_at)
        return answer

    @query
    async def ExportCustomer(
        self, request: customer_pb2.ExportCustomerRequest, uow: CustomerUow
    ) -> customer_pb2.ExportCustomerResponse:
        found = await handlers.export_customer(uow, request.id)
        return customer_pb2.ExportCustomerResponse(
            customer=customer_to_proto(found.customer),
            groups=[messages.group_to_proto(g) for g in found.groups],
            points_history=[messages.entry_to_proto(e) for e in found.entries],
            orders=[messages.purchase_to_proto(o) for o in found.purchases],
            merged_customer_ids=found.merged,
        )

    @mutation(customer_pb2.MergeCustomersResponse)
    async def MergeCustomers(
        self, request: customer_pb2.MergeCustomersRequest, uow: CustomerUow
    ) -> customer_pb2.MergeCustomersResponse:
        winner, loser = await handlers.merge_customers(
            uow, request.winner_id, request.loser_id, request.points_not_permitted
        )
        return customer_pb2.MergeCustomersResponse(
            winner=customer_to_proto(winner), loser=customer_to_proto(loser)
        )

    @mutation(customer_pb2.CreateGroupResponse)
    async def CreateGroup(
        self, request: customer_pb2.CreateGroupRequest, uow: CustomerUow
    ) -> customer_pb2.CreateGroupResponse:
        group = await handlers.create_group(uow, request.name, request.description)
        return customer_pb2.CreateGroupResponse(group=messages.group_to_proto(group))

    @query
    async def GetGroup(
        self, request: customer_pb2.GetGroupRequest, uow: CustomerUow
    ) -> customer_pb2.GetGroupResponse:
        group = await handlers.get_group(uow, request.id)
        return customer_pb2.GetGroupResponse(group=messages.group_to_proto(group))

    @query
    async def ListGroups(
        self, request: customer_pb2.ListGroupsRequest, uow: CustomerUow
    ) -> customer_pb2.ListGroupsResponse:
        page = page_request(request)
        found, token = page_of(await handlers.list_groups(uow, page), page)
        return customer_pb2.ListGroupsResponse(
            groups=[messages.group_to_proto(g) for g in found], next_page_token=token
        )

    @mutation(customer_pb2.AddGroupMembersResponse)
    async def AddGroupMembers(
        self, request: customer_pb2.AddGroupMembersRequest, uow: CustomerUow
    ) -> customer_pb2.AddGroupMembersResponse:
        group = await handlers.change_members(uow, request.group_id, request.customer_ids, True)
        return customer_pb2.AddGroupMembersResponse(group=messages.group_to_proto(group))

    @mutation(customer_pb2.UpdateGroupResponse)
    async def UpdateGroup(
        self, request: customer_pb2.UpdateGroupRequest, uow: CustomerUow
    ) -> customer_pb2.UpdateGroupResponse:
        group = await handlers.update_group(
            uow,
            request.id,
            request.name if request.HasField("name") else None,
            request.description if request.HasField("description") else None,
            request.expected_version,
        )
        return customer_pb2.UpdateGroupResponse(group=messages.group_to_proto(group))

    @mutation(customer_pb2.DeleteGroupResponse)
    async def DeleteGroup(
        self, request: customer_pb2.DeleteGroupRequest, uow: CustomerUow
    ) -> customer_pb2.DeleteGroupResponse:
        group = await handlers.delete_group(uow, request.id, request.expected_version)
        return customer_pb2.DeleteGroupResponse(group=messages.group_to_proto(group))

    @mutation(customer_pb2.RemoveGroupMembersResponse)
    async def RemoveGroupMembers(
        self, request: customer_pb2.RemoveGroupMembersRequest, uow: CustomerUow
    ) -> customer_pb2.RemoveGroupMembersResponse:
        group = await handlers.change_members(uow, request.group_id, request.customer_ids, False)
        return customer_pb2.RemoveGroupMembersResponse(group=messages.group_to_proto(group))

    @query
    async def ListCustomerOrders(
        self, request: customer_pb2.ListCustomerOrdersRequest, uow: CustomerUow
    ) -> customer_pb2.ListCustomerOrdersResponse:
        customer = await handlers.active_customer(uow, request.customer_id)
        page = page_request(request)
        rows = await uow.purchases.list(customer.id, page, request.location_id)
        items = rows[: page.limit]
        token = ""
        if len(rows) > page.limit:
            last = items[-1]
            token = encode_token(f"{last.ordered_at.isoformat()}|{last.order_id}", page.scope)
        spend, visits, last_visit, favourite = await uow.purchases.summary(
            customer.id, request.location_id
        )
        summary = loyalty_pb2.PurchaseSummary(visit_count=visits, favourite_location_id=favourite)
        if spend:
            # One currency per merchant in practice; the largest if a merchant has several.
            currency, amount = max(spend.items(), key=lambda kv: (kv[1], kv[0]))
            summary.lifetime_spend.CopyFrom(money_pb2.Money(amount=amount, currency=currency))
            summary.lifetime_spend_by_currency.extend(
                money_pb2.Money(amount=a, currency=c) for c, a in sorted(spend.items())
            )
        if last_visit is not None:
            summary.last_visit_at.FromDatetime(last_visit)
        return customer_pb2.ListCustomerOrdersResponse(
            orders=[messages.purchase_to_proto(r) for r in items],
            next_page_token=token,
            summary=summary,
        )

    @query
    async def GetLoyaltyProgram(
        self, request: loyalty_pb2.GetLoyaltyProgramRequest, uow: CustomerUow
    ) -> loyalty_pb2.GetLoyaltyProgramResponse:
        program = await points.get_program(uow)
        return loyalty_pb2.GetLoyaltyProgramResponse(program=messages.program_to_proto(program))

    @mutation(loyalty_pb2.SetLoyaltyProgramResponse)
    async def SetLoyaltyProgram(
        self, request: loyalty_pb2.SetLoyaltyProgramRequest, uow: CustomerUow
    ) -> loyalty_pb2.SetLoyaltyProgramResponse:
        before, program = await points.set_program(
            uow, messages.program_from_proto(request.program), request.expected_version
        )
        return loyalty_pb2.SetLoyaltyProgramResponse(
            program=messages.program_to_proto(program),
            previous=messages.program_to_proto(before),
        )

    @query
    async def ListPointsHistory(
        self, request: loyalty_pb2.ListPointsHistoryRequest, uow: CustomerUow
    ) -> loyalty_pb2.ListPointsHistoryResponse:
        page = page_request(request)
        entries, next_key = await points.history(uow, request.customer_id, page)
        return loyalty_pb2.ListPointsHistoryResponse(
            entries=[messages.entry_to_proto(e) for e in entries],
            next_page_token=encode_token(next_key, page.scope) if next_key else "",
        )

    @mutation(loyalty_pb2.AdjustPointsResponse)
    async def AdjustPoints(
        self, request: loyalty_pb2.AdjustPointsRequest, uow: CustomerUow
    ) -> loyalty_pb2.AdjustPointsResponse:
        entry, balance = await points.adjust(
            uow, request.customer_id, request.points, request.reason
        )
        return loyalty_pb2.AdjustPointsResponse(
            entry=messages.entry_to_proto(entry), balance=balance
        )

    @mutation(loyalty_pb2.HoldPointsResponse)
    async def HoldPoints(
        self, request: loyalty_pb2.HoldPointsRequest, uow: CustomerUow
    ) -> loyalty_pb2.HoldPointsResponse:
        hold = await points.hold(
            uow, request.order_id, request.customer_id, request.points, request.currency
        )
        return loyalty_pb2.HoldPointsResponse(hold=messages.hold_to_proto(hold))

    @mutation(loyalty_pb2.FinalizePointsResponse)
    async def FinalizePoints(
        self, request: loyalty_pb2.FinalizePointsRequest, uow: CustomerUow
    ) -> loyalty_pb2.FinalizePointsResponse:
        hold = await points.finalize(uow, request.order_id)
        return loyalty_pb2.FinalizePointsResponse(hold=messages.hold_to_proto(hold))

    @mutation(loyalty_pb2.ReleasePointsResponse)
    async def ReleasePoints(
        self, request: loyalty_pb2.ReleasePointsRequest, uow: CustomerUow
    ) -> loyalty_pb2.ReleasePointsResponse:
        hold = await points.release(uow, request.order_id)
        return loyalty_pb2.ReleasePointsResponse(hold=messages.hold_to_proto(hold))

    @mutation(loyalty_pb2.ReverseOrderPointsResponse)
    async def ReverseOrderPoints(
        self, request: loyalty_pb2.ReverseOrderPointsRequest, uow: CustomerUow
    ) -> loyalty_pb2.ReverseOrderPointsResponse:
        entries = await points.reverse_order(uow, request.order_id, request.reason)
        return loyalty_pb2.ReverseOrderPointsResponse(
            entries=[messages.entry_to_proto(e) for e in entries]
        )

    @mutation(loyalty_pb2.ExpirePointsResponse)
    async def ExpirePoints(
        self, request: loyalty_pb2.ExpirePointsRequest, uow: CustomerUow
    ) -> loyalty_pb2.ExpirePointsResponse:
        as_of = (
            request.as_of.ToDatetime(tzinfo=UTC) if request.HasField("as_of") else datetime.now(UTC)
        )
        customers, expired = await points.expire(uow, as_of)
        return loyalty_pb2.ExpirePointsResponse(customers=customers, points=expired)


def registrar(uow: Callable[[], CustomerUow]) -> Callable[[grpc.aio.Server], None]:
    def register(server: grpc.aio.Server) -> None:
        customer_pb2_grpc.add_CustomerServiceServicer_to_server(CustomerApi(uow), server)

    return register


SERVICE_NAME = customer_pb2.DESCRIPTOR.services_by_name["CustomerService"].full_name
