"""A register's credential works at its own location only.

Naming another location (path, query or body) is refused by the edge before this runs. Here
the rest: records of money and sales reached by id (a payment, an order, a refund, a terminal
checkout, in the path or as a body's `order_id`/`payment_id`) must belong to the register's
location, and lists of them are narrowed to it when the request names no location (gift cards
too: a till lists the cards its store sold, though any card is spent anywhere). Anything
elsewhere answers the same 404 as a made-up id, so a till learns nothing of other stores.
A customer's purchase history is narrowed by its route (`routes.customers`), and what holds
every store's sales (the list of returns, a customer's export) is refused there (403).

A location's order is one sold there or fulfilled from there (a web order picked up at this
store is handed over by its register). A payment, a terminal checkout and a refund (through
its payment) are where the payment was taken. A return is where its order is and where its
units went back to stock (one without a receipt: only the latter).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable

import grpc

from pos.order.v1 import order_pb2
from pos.payment.v1 import payment_pb2
from pos_gateway.clients import Services
from pos_gateway.problems import Problem

# Lists that hold another location's sales and money unless narrowed.
CONFINED_LISTS = frozenset({"/v1/payments", "/v1/orders", "/v1/refunds", "/v1/gift-cards"})

_BY_ID = re.compile(r"^/v1/(payments|orders|refunds|terminal-checkouts|returns)/([^/]+)")
_RESOURCE = {
    "payments": "payment",
    "orders": "order",
    "refunds": "refund",
    "terminal-checkouts": "terminal checkout",
    "returns": "return",
}
_BODY_REFERENCES = {"order_id": "orders", "payment_id": "payments"}


async def _payment_at(svc: Services, payment_id: str) -> set[str]:
    answer = await svc.payment.GetPayment(payment_pb2.GetPaymentRequest(id=payment_id))
    return {answer.payment.location_id}


async def _order_at(svc: Services, order_id: str) -> set[str]:
    answer = await svc.order.GetOrder(order_pb2.GetOrderRequest(id=order_id))
    return {answer.order.location_id} | {f.location_id for f in answer.order.fulfillments}


async def _refund_at(svc: Services, refund_id: str) -> set[str]:
    answer = await svc.payment.GetRefund(payment_pb2.GetRefundRequest(id=refund_id))
    return await _payment_at(svc, answer.refund.payment_id)


async def _checkout_at(svc: Services, checkout_id: str) -> set[str]:
    answer = await svc.payment.GetTerminalCheckout(
        payment_pb2.GetTerminalCheckoutRequest(id=checkout_id)
    )
    return {answer.checkout.location_id}


async def _return_at(svc: Services, return_id: str) -> set[str]:
    answer = await svc.order.GetReturn(order_pb2.GetReturnRequest(id=return_id))
    found = answer.order_return
    restocked = {line.location_id for line in found.lines if line.location_id}
    return restocked | (await _order_at(svc, found.order_id) if found.order_id else set())


_WHERE: dict[str, Callable[[Services, str], Awaitable[set[str]]]] = {
    "payments": _payment_at,
    "orders": _order_at,
    "refunds": _refund_at,
    "terminal-checkouts": _checkout_at,
    "returns": _return_at,
}


def narrowed_query(method: str, path: str, query_string: bytes, own: str) -> bytes | None:
    """The query string a register's list runs with: its own location when it names none."""
    if method != "GET" or path not in CONFINED_LISTS:
        return None
    if re.search(rb"(^|&)location_id=", query_string):
        return None  # named: the edge has already refused any location but its own
    own_param = b"location_id=" + own.encode()
    return own_param if not query_string else query_string + b"&" + own_param


def _named(path: str, body: bytes) -> list[tuple[str, str]]:
    """(collection, id) of every record the request reaches by id."""
    found: list[tuple[str, str]] = []
    match = _BY_ID.match(path)
    if match is not None:
        found.append((match.group(1), match.group(2)))
    if body:
        try:
            parsed = json.loads(body)
        except (ValueError, RecursionError):
            parsed = None  # the route answers a malformed (or too deeply nested) body
        if isinstance(parsed, dict):
            for field, collection in _BODY_REFERENCES.items():
                value = parsed.get(field)
                if isinstance(value, str) and value:
                    found.append((collection, value))
    return found


async def elsewhere(svc: Services, path: str, body: bytes, own: str) -> Problem | None:
    """The 404 for the first record the request reaches that is not at `own`, if any.

    A record that does not exist is left to the route, which answers its usual 404; a
    look-up that fails otherwise (a service down) refuses the request rather than let it
    through unchecked."""
    for collection, record_id in _named(path, body):
        try:
            where = await _WHERE[collection](svc, record_id)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                continue
            raise
        if own not in where:
            resource = _RESOURCE[collection]
            return Problem(
                404,
                "resource_missing",
                f"{resource} {record_id!r} was not found",
                extra={"resource": resource},
            )
    return None
