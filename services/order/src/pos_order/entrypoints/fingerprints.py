"""Requests as their stored fingerprints are taken: bearer codes replaced by keyed hashes.

A retry with the same request id must match the first request, codes included, so a code
cannot simply be left out of the fingerprint. A plain hash of it would not do either: gift card
and coupon codes are short, and the stored fingerprint (with the stored answer, which holds every
other field) could be searched for them offline. HMAC-SHA256 under the service's
CODE_FINGERPRINT_KEY cannot be, without the key.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TypeVar

from pos.order.v1 import order_pb2

M = TypeVar("M", order_pb2.CheckoutRequest, order_pb2.CreateOrderRequest)


class CodePrinter:
    def __init__(self, key: str) -> None:
        self._key = key.encode()

    def _keyed(self, code: str) -> str:
        return hmac.new(self._key, code.encode(), hashlib.sha256).hexdigest()

    def sale(self, request: M) -> M:
        """A checkout or an order: its coupon codes and pre-printed gift cards' codes keyed, and
        without whether the caller may sell below cost, which says who asks, not what is asked
        (a retry a manager's override allows is the same sale)."""
        printed_cards = isinstance(request, order_pb2.CheckoutRequest) and any(
            ln.gift_card.code for ln in request.lines
        )
        if not request.coupon_codes and not printed_cards and not request.below_cost_not_permitted:
            return request
        printed = type(request)()
        printed.CopyFrom(request)
        printed.below_cost_not_permitted = False
        printed.coupon_codes[:] = [self._keyed(c) for c in request.coupon_codes]
        if isinstance(printed, order_pb2.CheckoutRequest):
            for ln in printed.lines:
                if ln.gift_card.code:
                    ln.gift_card.code = self._keyed(ln.gift_card.code)
        return printed

    def submit(self, request: order_pb2.SubmitOrderRequest) -> order_pb2.SubmitOrderRequest:
        """A draft's submit: its coupon codes, and without whether the caller may sell below
        cost (as a sale's)."""
        if not request.coupon_codes and not request.below_cost_not_permitted:
            return request
        printed = order_pb2.SubmitOrderRequest()
        printed.CopyFrom(request)
        printed.below_cost_not_permitted = False
        printed.coupon_codes[:] = [self._keyed(c) for c in request.coupon_codes]
        return printed

    def tender(self, request: order_pb2.AddTenderRequest) -> order_pb2.AddTenderRequest:
        """A gift card tender's code."""
        if not request.gift_card_code:
            return request
        printed = order_pb2.AddTenderRequest()
        printed.CopyFrom(request)
        printed.gift_card_code = self._keyed(request.gift_card_code)
        return printed

    def exchange(self, request: order_pb2.CreateExchangeRequest) -> order_pb2.CreateExchangeRequest:
        """The gift card codes of an exchange's tenders for the difference, and without whether
        the caller may sell below cost (as a sale's)."""
        if not any(t.gift_card_code for t in request.tenders) and not (
            request.below_cost_not_permitted
        ):
            return request
        printed = order_pb2.CreateExchangeRequest()
        printed.CopyFrom(request)
        printed.below_cost_not_permitted = False
        for t in printed.tenders:
            if t.gift_card_code:
                t.gift_card_code = self._keyed(t.gift_card_code)
        return printed
