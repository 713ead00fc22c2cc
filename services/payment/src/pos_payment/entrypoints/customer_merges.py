"""The customer service's merges, as the gift cards see them: a card issued to a duplicate
merged away (store credit given back on a return, a card bought for them) is the survivor's,
so the survivor's card list and balance of store credit show it, and each moved card's new
version is announced (`gift_card_updated`)."""

from __future__ import annotations

from pos.customer.v1 import events_pb2 as customer_events
from pos_kit.consumer import PoisonMessage
from pos_payment.adapters.gift_card_messages import REGISTRY as CARD_EVENTS
from pos_payment.adapters.gift_cards import move_to_survivor
from pos_payment.adapters.repository import PaymentUow
from pos_payment.domain.gift_cards import GiftCardUpdated


async def on_customer_merged(uow: PaymentUow, message: customer_events.CustomerMerged) -> None:
    winner = message.winner
    if not winner.id or not message.loser_id:
        raise PoisonMessage("CustomerMerged without both customer ids")
    if winner.status == "erased":
        # Rewritten by the survivor's erasure: neither id is a customer any more, and the
        # cards stay as the erasure left them.
        return
    moved = await move_to_survivor(uow.conn, uow.merchant_id, message.loser_id, winner.id)
    # Each card's new version is announced, as every other change of a card is (that one by
    # its activity): in this transaction, through the gift cards' own event mapping.
    for card in moved:
        uow.emit(CARD_EVENTS.to_outgoing(GiftCardUpdated(card), uow.merchant_id))
