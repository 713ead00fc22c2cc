"""Events this service consumes: the customer service's merges, so a coupon limited per
customer counts a person's uses under every id they had."""

from __future__ import annotations

from pos.customer.v1 import events_pb2 as customer_events
from pos_kit.consumer import PoisonMessage
from pos_promotion.adapters.repository import PromotionUow
from pos_promotion.service import handlers


async def on_customer_merged(uow: PromotionUow, message: customer_events.CustomerMerged) -> None:
    winner = message.winner
    if not winner.id or not message.loser_id:
        raise PoisonMessage("CustomerMerged without both customer ids")
    if winner.status == "erased":
        # Rewritten by the survivor's erasure: neither id is a customer any more, and no
        # checkout names them again.
        return
    await handlers.customer_merged(uow, message.loser_id, winner.id)
