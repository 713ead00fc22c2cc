"""Events this service consumes: the customer ids each merchant has (and which were merged
into which), and the prices a register
sale is priced from while inventory is down (the checkout's read models); refunds of its
orders' payments and voids of their authorisations, wherever they were asked."""

from __future__ import annotations

from pos.customer.v1 import events_pb2 as customer_events
from pos.inventory.v1 import events_pb2 as inventory_events
from pos.inventory.v1 import inventory_pb2
from pos.payment.v1 import events_pb2 as payment_events
from pos.payment.v1 import payment_pb2
from pos_kit.consumer import PoisonMessage
from pos_kit.money import Money
from pos_order.adapters.repository import OrderUow
from pos_order.domain.model import PricedItem
from pos_order.domain.pricing import Buyer
from pos_order.service.handlers import customers, payment_changes


async def on_customer_changed(
    uow: OrderUow, message: customer_events.CustomerCreated | customer_events.CustomerUpdated
) -> None:
    customer = message.customer
    if not customer.id:
        raise PoisonMessage(f"{message.DESCRIPTOR.name} without a customer id")
    if customer.status == "erased":
        # An event the customer's erasure rewrote (sent later than the tombstone, maybe):
        # the id is no customer any more, as the tombstone says; never known again.
        await customers.erase_customer(uow, customer.id)
        return
    if customer.status == "merged":
        # The duplicate's version a merge made (no groups, no tags): a sale naming it is the
        # survivor's once `customer_merged` is heard, and until then it prices as it did.
        await customers.remember_customer(uow, customer.id, customer.version)
        return
    buyer = Buyer.of(list(customer.group_ids), list(customer.tags))
    await customers.remember_customer(uow, customer.id, customer.version, buyer)


async def on_customer_merged(uow: OrderUow, message: customer_events.CustomerMerged) -> None:
    """A duplicate merged into a customer: a sale naming the duplicate is the survivor's."""
    winner = message.winner
    if not winner.id or not message.loser_id:
        raise PoisonMessage("CustomerMerged without both customer ids")
    if winner.status == "erased":
        # Rewritten by the survivor's erasure (its tombstones follow): neither id is a
        # customer any more; remembering the merge would only bring an erased id back.
        return
    buyer = Buyer.of(list(winner.group_ids), list(winner.tags))
    await customers.customer_merged(uow, message.loser_id, winner.id, winner.version, buyer)


async def on_refund_succeeded(uow: OrderUow, message: payment_events.RefundSucceeded) -> None:
    refund = message.refund
    if not refund.order_id:
        return  # a payment taken for no order
    if not message.HasField("payment"):
        # Published before the event carried its payment (the stream keeps a month of them):
        # nothing to learn from it; the next refund of that payment, or a read of it, says.
        return
    await payment_changes.refund_made(
        uow, refund.order_id, refund.payment_id, message.payment.refunded.amount
    )


async def on_payment_voided(uow: OrderUow, message: payment_events.PaymentVoided) -> None:
    payment = message.payment
    if payment.order_id and (
        payment.status == payment_pb2.PAYMENT_STATUS_VOIDED or payment.voided.amount > 0
    ):
        await payment_changes.payment_voided(
            uow, payment.order_id, payment.id, payment.voided.amount
        )


async def on_customer_erased(uow: OrderUow, message: customer_events.CustomerErased) -> None:
    if not message.customer_id:
        raise PoisonMessage("CustomerErased without a customer id")
    await customers.erase_customer(uow, message.customer_id)


def _priced_skus(product: inventory_pb2.Product) -> list[PricedItem]:
    """The product's own SKU and each variant's, with the price a sale of it takes."""
    price = Money(product.price.amount, product.price.currency)
    same = (product.tax_category, product.id, product.category, product.open_price)
    cost = product.unit_cost.amount if product.HasField("unit_cost") else None
    items = [PricedItem(product.sku, product.name, price, *same, cost)] if product.sku else []
    for variant in product.variants:
        own = variant.price if variant.HasField("price") else product.price
        # Named as inventory names it when it prices the sale (`Tee / M`): the same line reads
        # the same whether inventory is up or not.
        name = f"{product.name} / {variant.name}" if variant.name else product.name
        unit_cost = variant.unit_cost.amount if variant.HasField("unit_cost") else cost
        items.append(
            PricedItem(variant.sku, name, Money(own.amount, own.currency), *same, unit_cost)
        )
    return items


async def on_product_changed(
    uow: OrderUow,
    message: inventory_events.ProductCreated | inventory_events.ProductUpdated,
) -> None:
    """The read model a register sale is priced from while inventory is down."""
    product = message.product
    if not product.price.currency:
        raise PoisonMessage(f"{message.DESCRIPTOR.name} without a price")
    if product.status == inventory_pb2.PRODUCT_STATUS_ARCHIVED:
        # A change to an archived product (its name, say) does not put it back on sale: only
        # unarchiving it does, announced with the status active.
        await uow.prices.forget_prices([item.sku for item in _priced_skus(product)])
        return
    version = int(product.version)
    await uow.prices.remember_prices([(item, version) for item in _priced_skus(product)])


async def on_product_archived(uow: OrderUow, message: inventory_events.ProductArchived) -> None:
    await uow.prices.forget_prices([item.sku for item in _priced_skus(message.product)])
