"""Integration events -> public events: the type, the resource, and the snapshot's shape."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

from pos_dispatcher.adapters.snapshots import (
    ORDER_EVENT_OBJECT,
    ORDER_EVENT_PARTS,
    SOURCES,
    public_events,
)

from pos.common.v1 import money_pb2
from pos.customer.v1 import events_pb2 as customer_events_pb2
from pos.customer.v1 import loyalty_pb2
from pos.gateway.v1 import events_pb2 as gateway_events_pb2
from pos.inventory.v1 import events_pb2 as inventory_events_pb2
from pos.inventory.v1 import inventory_pb2, stock_events_pb2
from pos.order.v1 import events_pb2 as order_events_pb2
from pos.order.v1 import order_pb2
from pos.payment.v1 import gift_cards_pb2, shifts_pb2
from pos.promotion.v1 import events_pb2 as promotion_events_pb2
from pos.promotion.v1 import promotion_pb2
from pos_gateway.convert import to_model
from pos_gateway.schemas.events import EVENT_TYPES, EventData
from pos_gateway.schemas.gift_cards import GiftCard
from pos_gateway.schemas.people import PointsEntry
from pos_kit import personal


def _activity_created() -> gift_cards_pb2.GiftCardActivityCreated:
    message = gift_cards_pb2.GiftCardActivityCreated(
        gift_card=gift_cards_pb2.GiftCard(
            id="gc_1",
            code_last4="H3RZ",
            balance=money_pb2.Money(amount=5000, currency="USD"),
            status=gift_cards_pb2.GIFT_CARD_STATUS_ACTIVE,
            version=1,
        ),
        activity=gift_cards_pb2.GiftCardActivity(
            id="gca_1",
            gift_card_id="gc_1",
            kind=gift_cards_pb2.GIFT_CARD_ACTIVITY_KIND_ACTIVATE,
            amount=money_pb2.Money(amount=5000, currency="USD"),
            balance_after=money_pb2.Money(amount=5000, currency="USD"),
        ),
    )
    message.meta.event_id = "evt_1"
    message.meta.merchant_id = "mer_a"
    message.meta.occurred_at.FromDatetime(datetime(2026, 12, 1, tzinfo=UTC))
    for stamped in (message.gift_card.created_at, message.gift_card.updated_at):
        stamped.FromDatetime(datetime(2026, 12, 1, tzinfo=UTC))
    message.activity.created_at.FromDatetime(datetime(2026, 12, 1, tzinfo=UTC))
    return message


def test_a_gift_card_activity_is_a_public_event_with_the_card_and_no_code() -> None:
    (event,) = public_events(_activity_created())
    assert (event.id, event.type, event.resource_id) == (
        "evt_1",
        "gift_card.activity_created",
        "gc_1",
    )
    shown = event.data["object"]
    assert shown["gift_card"]["code_last4"] == "H3RZ"
    assert "code" not in shown["gift_card"]
    assert shown["activity"]["kind"] == "activate"
    assert shown["activity"]["balance_after"] == {"amount": 5000, "currency": "USD"}


def test_the_gift_card_event_is_read_from_the_payment_stream_under_a_documented_type() -> None:
    assert gift_cards_pb2.GiftCardActivityCreated in SOURCES["payment"]
    assert "gift_card.activity_created" in EVENT_TYPES


def test_a_gift_cards_new_version_without_an_activity_is_the_card_as_get_answers_it() -> None:
    """A card moved to a merge's survivor: `gift_card.updated`, the card alone as `object`
    (what `GET /v1/gift-cards/{id}` answers), read from the payment stream."""
    moved = gift_cards_pb2.GiftCardUpdated(gift_card=_activity_created().gift_card)
    moved.gift_card.customer_id, moved.gift_card.version = "cus_survivor", 2
    moved.meta.event_id, moved.meta.merchant_id = "evt_2", "mer_a"
    moved.meta.occurred_at.FromDatetime(datetime(2026, 12, 2, tzinfo=UTC))
    (event,) = public_events(moved)
    assert (event.id, event.type, event.resource_id) == ("evt_2", "gift_card.updated", "gc_1")
    shown = event.data["object"]
    assert shown == to_model(GiftCard, moved.gift_card).model_dump(mode="json")
    assert (shown["customer_id"], shown["version"], shown["code_last4"]) == (
        "cus_survivor", 2, "H3RZ")  # fmt: skip
    assert "code" not in shown
    assert gift_cards_pb2.GiftCardUpdated in SOURCES["payment"]
    assert "gift_card.updated" in EVENT_TYPES


def _stamped(message: object, *stamps: object) -> None:
    for stamp in stamps:
        stamp.FromDatetime(datetime(2026, 12, 1, tzinfo=UTC))  # type: ignore[attr-defined]
    meta = message.meta  # type: ignore[attr-defined]
    meta.event_id, meta.merchant_id = "evt_2", "mer_a"
    meta.occurred_at.FromDatetime(datetime(2026, 12, 1, tzinfo=UTC))


def test_promotion_and_coupon_events_are_public_with_their_snapshots() -> None:
    promotion = promotion_pb2.Promotion(
        id="promo_1",
        name="Shirts BOGO",
        status=promotion_pb2.PROMOTION_STATUS_ENDED,
        version=3,
        stackable=True,
        rule=promotion_pb2.Rule(
            kind=promotion_pb2.OFFER_KIND_BUY_X_GET_Y,
            level=promotion_pb2.OFFER_LEVEL_ITEM,
            items=promotion_pb2.ItemSelector(categories=["shirts"]),
            percent_bps=10000,
            buy_quantity=1,
            get_quantity=1,
        ),
        conditions=promotion_pb2.Conditions(time_zone="UTC"),
    )
    for kind, word in (
        (promotion_events_pb2.PromotionUpdated, "updated"),
        (promotion_events_pb2.PromotionEnded, "ended"),
    ):
        message = kind(promotion=promotion)
        _stamped(message, message.promotion.created_at, message.promotion.updated_at)
        (event,) = public_events(message)
        assert (event.type, event.resource_id) == (f"promotion.{word}", "promo_1")
        shown = event.data["object"]
        assert shown["status"] == "ended" and shown["rule"]["kind"] == "buy_x_get_y"
        assert kind in SOURCES["promotion"] and event.type in EVENT_TYPES
    # A producer from before `schedule_state` sent none: null, never a guess; one that sends it
    # is shown as sent (the state when the event was published).
    assert shown["schedule_state"] is None
    promotion.schedule_state = promotion_pb2.SCHEDULE_STATE_FINISHED
    ended = promotion_events_pb2.PromotionEnded(promotion=promotion)
    _stamped(ended, ended.promotion.created_at, ended.promotion.updated_at)
    (event,) = public_events(ended)
    assert event.data["object"]["schedule_state"] == "finished"
    redeemed = promotion_events_pb2.CouponRedeemed(
        coupon=promotion_pb2.Coupon(
            id="cpn_1", promotion_id="promo_1", code_hint="-26", max_uses=5, redeemed_count=1
        ),
        order_id="ord_1",
        customer_id="cus_1",
    )
    _stamped(redeemed, redeemed.coupon.created_at)
    (event,) = public_events(redeemed)
    assert (event.type, event.resource_id) == ("coupon.redeemed", "cpn_1")
    assert event.data["object"]["code_hint"] == "-26" and "code" not in event.data["object"]
    # Which sale used it, as the promotion's event says: a partner counting uses per order.
    assert (event.data["order_id"], event.data["customer_id"]) == ("ord_1", "cus_1")
    assert EventData.model_validate(event.data).model_dump()["order_id"] == "ord_1"
    assert "coupon.redeemed" in EVENT_TYPES
    # Its order cancelled after confirmation: the use given back, the count down again.
    released = promotion_events_pb2.CouponReleased(
        coupon=promotion_pb2.Coupon(
            id="cpn_1", promotion_id="promo_1", code_hint="-26", max_uses=5, redeemed_count=0
        ),
        order_id="ord_1",
    )
    _stamped(released, released.coupon.created_at)
    (event,) = public_events(released)
    assert (event.type, event.resource_id) == ("coupon.released", "cpn_1")
    assert event.data["object"]["redeemed_count"] == 0 and "code" not in event.data["object"]
    assert (event.data["order_id"], event.data["customer_id"]) == ("ord_1", "")
    # Sent without a status (a producer from before coupons had one): active, as every coupon
    # was then; a deactivated one's use given back says so, with when.
    assert (event.data["object"]["status"], event.data["object"]["deactivated_at"]) == (
        "active",
        None,
    )
    released.coupon.status = promotion_pb2.COUPON_STATUS_DEACTIVATED
    released.coupon.deactivated_at.FromSeconds(1_768_469_400)
    (event,) = public_events(released)
    assert (event.data["object"]["status"], event.data["object"]["deactivated_at"]) == (
        "deactivated",
        "2026-01-15T09:30:00.000Z",
    )
    assert "coupon.released" in EVENT_TYPES
    # Deleted (never used): a tombstone, so a partner mirroring promotions drops it.
    deleted = promotion_events_pb2.PromotionDeleted(promotion_id="promo_1")
    _stamped(deleted)
    (event,) = public_events(deleted)
    assert (event.type, event.resource_id, event.data) == (
        "promotion.deleted",
        "promo_1",
        {"object": {"id": "promo_1"}},
    )
    assert "promotion.deleted" in EVENT_TYPES


def _shift_closed() -> shifts_pb2.ShiftClosed:
    usd = lambda amount: money_pb2.Money(amount=amount, currency="USD")  # noqa: E731
    message = shifts_pb2.ShiftClosed(
        shift=shifts_pb2.Shift(
            id="shf_1", location_id="loc_1", register_id="reg_1",
            status=shifts_pb2.SHIFT_STATUS_CLOSED, opened_by="stf_1", closed_by="stf_2",
            opening_float=usd(10_000), counted_cash=usd(11_190), over_short=-10,
            report=shifts_pb2.ShiftReport(
                expected_cash=usd(11_200), cash_sales=usd(1840), cash_refunds=usd(840),
                pay_ins=usd(500), pay_outs=usd(300), no_sale_count=1,
            ),
            version=2,
        )
    )  # fmt: skip
    message.meta.event_id = "evt_2"
    message.meta.merchant_id = "mer_a"
    message.meta.occurred_at.FromDatetime(datetime(2026, 12, 1, tzinfo=UTC))
    for stamped in (message.shift.opened_at, message.shift.closed_at):
        stamped.FromDatetime(datetime(2026, 12, 1, tzinfo=UTC))
    return message


def test_a_closed_shift_is_a_public_event_with_its_over_short_and_report() -> None:
    (event,) = public_events(_shift_closed())
    assert (event.id, event.type, event.resource_id) == ("evt_2", "shift.closed", "shf_1")
    shown = event.data["object"]
    assert (shown["status"], shown["over_short"], shown["closed_by"]) == ("closed", -10, "stf_2")
    assert shown["report"]["expected_cash"] == {"amount": 11_200, "currency": "USD"}
    # Sent without updated_at (by a payment service older than it): its last change is its
    # close. Sent with it: as sent.
    assert shown["updated_at"] == shown["closed_at"]
    stamped = _shift_closed()
    stamped.shift.updated_at.FromDatetime(datetime(2026, 12, 2, tzinfo=UTC))
    (event,) = public_events(stamped)
    assert event.data["object"]["updated_at"] == "2026-12-02T00:00:00.000Z"
    assert shifts_pb2.ShiftOpened in SOURCES["payment"]
    assert {"shift.opened", "shift.closed"} <= set(EVENT_TYPES)


def test_the_gateways_register_staff_and_override_events_are_public_events() -> None:
    at = datetime(2026, 12, 1, tzinfo=UTC)
    register = gateway_events_pb2.Register(
        id="reg_1", location_id="loc_1", name="Till 1", status="retired"
    )
    member = gateway_events_pb2.StaffMember(
        id="stf_1", name="Cass", role="cashier", location_ids=["loc_1"], status="active", version=1
    )
    override = gateway_events_pb2.Override(
        id="ovr_1", permission="refund", requested_by="stf_1", approved_by="stf_2",
        register_id="reg_1",
    )  # fmt: skip
    for stamped in (register.created_at, register.paired_at, register.retired_at,
                    member.created_at, member.updated_at, override.granted_at,
                    override.expires_at):  # fmt: skip
        stamped.FromDatetime(at)
    messages = [
        gateway_events_pb2.RegisterCreated(register=register),
        gateway_events_pb2.RegisterUpdated(register=register),
        gateway_events_pb2.RegisterPaired(register=register),
        gateway_events_pb2.RegisterRetired(register=register),
        gateway_events_pb2.StaffCreated(staff=member),
        gateway_events_pb2.StaffUpdated(staff=member),
        gateway_events_pb2.StaffDeactivated(staff=member),
        gateway_events_pb2.OverrideGranted(override=override),
    ]
    seen = []
    for i, message in enumerate(messages):
        message.meta.event_id = f"evt_{i}"
        message.meta.occurred_at.FromDatetime(at)
        (event,) = public_events(message)
        assert event.type in EVENT_TYPES and type(message) in SOURCES["gateway"]
        seen.append((event.type, event.resource_id))
    assert seen == [
        ("register.created", "reg_1"), ("register.updated", "reg_1"), ("register.paired", "reg_1"),
        ("register.retired", "reg_1"),
        ("staff.created", "stf_1"),
        ("staff.updated", "stf_1"), ("staff.deactivated", "stf_1"),
        ("override.granted", "ovr_1"),
    ]  # fmt: skip
    # A register sent without updated_at (by an older gateway) changed last at its latest time.
    (retired,) = public_events(messages[3])
    assert retired.data["object"]["updated_at"] == retired.data["object"]["retired_at"]
    # ... and, sent without a version, is at the version the gateway's migration gave it.
    assert retired.data["object"]["version"] == 1
    counted = gateway_events_pb2.RegisterUpdated(register=register)
    counted.register.version = 4
    counted.meta.event_id = "evt_counted"
    counted.meta.occurred_at.FromDatetime(at)
    (updated,) = public_events(counted)
    assert updated.data["object"]["version"] == 4
    (granted,) = public_events(messages[-1])
    assert granted.data["object"]["used_at"] is None  # unset: null, as GET answers
    assert granted.data["object"]["approved_by"] == "stf_2"


def test_low_stock_carries_the_level_and_the_threshold_it_crossed() -> None:
    """A partner acting on low stock needs where (location and SKU), how much is left and the
    alert's threshold, all from the event."""
    message = stock_events_pb2.LowStock(
        level=inventory_pb2.StockLevel(
            sku="MUG-LOGO", location_id="loc_1", on_hand=3, reserved=1, available=2
        ),
        threshold=3,
    )
    _stamped(message, message.level.updated_at)
    (event,) = public_events(message)
    assert (event.type, event.resource_id) == ("inventory.low_stock", "loc_1:MUG-LOGO")
    assert event.data["threshold"] == 3
    shown = event.data["object"]
    assert (shown["sku"], shown["location_id"], shown["available"]) == ("MUG-LOGO", "loc_1", 2)
    assert "threshold" not in shown  # the level as GET answers it, nothing more
    assert stock_events_pb2.LowStock in SOURCES["inventory"] and event.type in EVENT_TYPES
    # Documented where partners read the event's data.
    documented = EventData.model_json_schema()["properties"]["threshold"]
    assert documented["type"] == "integer" and "inventory.low_stock" in documented["description"]
    # The other types' data gain no field.
    (changed,) = public_events(
        inventory_events_pb2.StockChanged(meta=message.meta, level=message.level)
    )
    assert set(changed.data) == {"object"}


def test_points_earned_carries_the_entry_the_points_history_lists() -> None:
    """As the other point events do: the entry as GET /v1/customers/{id}/points lists it (its
    id, kind and time), so a partner matches it with the history; `balance` stays beside
    `balance_after`, as the event carried it first."""
    entry = loyalty_pb2.PointsEntry(
        id="pte_1", customer_id="cus_1", kind="earned", points=60, balance_after=75,
        order_id="ord_1",
    )  # fmt: skip
    entry.created_at.FromDatetime(datetime(2026, 12, 1, tzinfo=UTC))
    message = customer_events_pb2.LoyaltyPointsEarned(
        customer_id="cus_1", order_id="ord_1", points=60, balance=75, entry=entry
    )
    _stamped(message)
    (event,) = public_events(message)
    assert (event.type, event.resource_id) == ("loyalty.points_earned", "cus_1")
    listed = to_model(PointsEntry, entry).model_dump(mode="json")
    assert event.data == {"object": {**listed, "balance": 75}}
    # One an older producer sent without the entry: the accrual, as it was.
    message.ClearField("entry")
    (older,) = public_events(message)
    assert older.data == {
        "object": {"customer_id": "cus_1", "order_id": "ord_1", "points": 60, "balance": 75}
    }


def _personal_order() -> order_pb2.Order:
    usd = money_pb2.Money(amount=2500, currency="USD")
    zero = money_pb2.Money(amount=0, currency="USD")
    order = order_pb2.Order(
        id="ord_1", location_id="loc_1", customer_id="cus_1",
        lines=[order_pb2.OrderLine(sku="TEE", name="T-shirt", quantity=1, unit_price=usd,
                                   line_total=usd, fulfillment_id="ful_1")],
        subtotal=usd, discount_total=zero, tax_total=zero, total=usd,
        status=order_pb2.ORDER_STATUS_CONFIRMED, channel="web", version=2, notes="ring twice",
        metadata={"buyer_phone": "+14155550199"},
        fulfillments=[order_pb2.Fulfillment(
            id="ful_1", type=order_pb2.FULFILLMENT_TYPE_SHIPMENT,
            status=order_pb2.FULFILLMENT_STATUS_RESERVED, location_id="loc_1", amount=usd,
            captured=zero, ship_to="1 Erased Road",
            destination=inventory_pb2.GeoPoint(latitude=51.5, longitude=-0.1),
        )],
    )  # fmt: skip
    for stamped in (order.created_at, order.updated_at):
        stamped.FromDatetime(datetime(2026, 12, 1, tzinfo=UTC))
    return order


def _order_events() -> list[Any]:
    usd = money_pb2.Money(amount=2500, currency="USD")
    returned = order_pb2.Return(
        id="ret_1", order_id="ord_1", reason="too small", status="completed", amount=usd,
        lines=[order_pb2.ReturnLine(line_id="L1", sku="TEE", quantity=1, location_id="loc_1",
                                    amount=usd)],
    )  # fmt: skip
    returned.created_at.FromDatetime(datetime(2026, 12, 2, tzinfo=UTC))
    made = []
    kinds: list[Any] = SOURCES["order"]
    for kind in kinds:
        message = kind(order=_personal_order())
        if kind is order_events_pb2.OrderReturned:
            message.order_return.CopyFrom(returned)
        if kind is order_events_pb2.OrderFulfillmentUpdated:
            message.fulfillment_id = "ful_1"
        message.meta.event_id = "evt_1"
        message.meta.occurred_at.FromDatetime(datetime(2026, 12, 2, tzinfo=UTC))
        made.append(message)
    return made


def test_the_feed_blanks_an_order_events_data_as_erasure_blanks_the_message() -> None:
    """The feed's stored JSON of every order event, blanked where its parts hold an order,
    is the JSON of the event whose message was blanked: the public names are the contract's,
    so the one rule (`pos_kit.personal`) reads the same on both."""
    seen = set()
    for message in _order_events():
        (before,) = public_events(message)
        blanked = copy.deepcopy(before.data)
        parts = ORDER_EVENT_PARTS.get(before.type, ORDER_EVENT_OBJECT)
        assert any(personal.blank_json(blanked[key], parts[key]) for key in parts)
        assert personal.blank(message)
        (after,) = public_events(message)
        assert blanked == after.data, before.type
        assert "1 Erased Road" not in json.dumps(blanked) and "ring twice" not in json.dumps(
            blanked
        )
        seen.add(before.type)
    assert {"order.confirmed", "order.returned", "order.fulfillment_updated"} <= seen


def test_a_fulfillment_update_names_the_fulfillment_and_its_new_status() -> None:
    """`order.fulfillment_updated` says which of the order's fulfilments changed and to what
    (`fulfillment_id`, `fulfillment_status`, beside the order as `object`), so a partner
    shipping one store's share acts on it without searching the order; documented where
    partners read the event's data. Until 2026-12-05 its data was the order alone."""
    order = _personal_order()
    shipped = order_pb2.Fulfillment()
    shipped.CopyFrom(order.fulfillments[0])
    shipped.id, shipped.status = "ful_2", order_pb2.FULFILLMENT_STATUS_SHIPPED
    order.fulfillments.append(shipped)
    message = order_events_pb2.OrderFulfillmentUpdated(order=order, fulfillment_id="ful_2")
    message.meta.event_id = "evt_1"
    message.meta.occurred_at.FromDatetime(datetime(2026, 12, 2, tzinfo=UTC))
    # Said by the event: the status this change took it to, though the order moved on since
    # (changes made in one transaction share its snapshot).
    message.fulfillment_status = order_pb2.FULFILLMENT_STATUS_PICKED
    (event,) = public_events(message)
    assert (event.type, event.resource_id) == ("order.fulfillment_updated", "ord_1")
    assert (event.data["fulfillment_id"], event.data["fulfillment_status"]) == ("ful_2", "picked")
    assert [f["status"] for f in event.data["object"]["fulfillments"]] == ["reserved", "shipped"]
    # An event from before the status was sent: as the order's snapshot shows it.
    message.ClearField("fulfillment_status")
    (older,) = public_events(message)
    assert (older.data["fulfillment_id"], older.data["fulfillment_status"]) == ("ful_2", "shipped")
    documented = EventData.model_json_schema()["properties"]
    for name in ("fulfillment_id", "fulfillment_status"):
        assert "order.fulfillment_updated" in documented[name]["description"]
    # The order's other events gain no field.
    (confirmed,) = public_events(order_events_pb2.OrderConfirmed(meta=message.meta, order=order))
    assert set(confirmed.data) == {"object"}


def test_a_refund_that_succeeds_announces_the_payment_it_moved() -> None:
    """A refund's success moves its payment (`refunded`, a new version): `refund.succeeded`
    is followed by `payment.updated` with the payment as it stands after it, as GET answers
    it, so a partner keeping payments from events misses no version. Until 2026-12-05 only
    the refund was announced, and the payment's `refunded` changed with no event of its own."""
    from pos.payment.v1 import events_pb2 as payment_events_pb2
    from pos.payment.v1 import payment_pb2
    from pos_gateway.schemas.payments import Payment

    usd = lambda amount: money_pb2.Money(amount=amount, currency="USD")  # noqa: E731
    payment = payment_pb2.Payment(
        id="pay_1", order_id="ord_1", tender_type=payment_pb2.TENDER_TYPE_CARD,
        amount=usd(4871), total=usd(4871), authorized=usd(4871), captured=usd(4871),
        refunded=usd(100), status=payment_pb2.PAYMENT_STATUS_CAPTURED, version=4,
        location_id="loc_1",
    )  # fmt: skip
    for stamped in (payment.created_at, payment.updated_at):
        stamped.FromDatetime(datetime(2026, 12, 5, tzinfo=UTC))
    refund = payment_pb2.Refund(
        id="ref_1", payment_id="pay_1", order_id="ord_1", amount=usd(100),
        tender_type=payment_pb2.TENDER_TYPE_CARD, status=payment_pb2.REFUND_STATUS_SUCCEEDED,
    )  # fmt: skip
    for stamped in (refund.created_at, refund.updated_at):
        stamped.FromDatetime(datetime(2026, 12, 5, tzinfo=UTC))
    message = payment_events_pb2.RefundSucceeded(refund=refund, payment=payment)
    message.meta.event_id = "evt_1"
    message.meta.occurred_at.FromDatetime(datetime(2026, 12, 5, tzinfo=UTC))
    succeeded, moved = public_events(message)
    assert (succeeded.id, succeeded.type, succeeded.resource_id) == (
        "evt_1",
        "refund.succeeded",
        "ref_1",
    )
    assert (moved.type, moved.resource_id) == ("payment.updated", "pay_1")
    assert moved.id != succeeded.id and moved.id == public_events(message)[1].id
    assert moved.data == {"object": to_model(Payment, payment).model_dump(mode="json")}
    assert moved.data["object"]["refunded"]["amount"] == 100
    assert moved.data["object"]["version"] == 4
    # An event from a producer that did not send the payment: the refund alone, as before.
    message.ClearField("payment")
    (alone,) = public_events(message)
    assert alone.type == "refund.succeeded"
