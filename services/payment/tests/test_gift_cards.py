"""Gift cards running for real, against PostgreSQL and NATS: a balance that never goes negative
under concurrent redemptions, a ledger that always sums to it, replays that apply once, codes
that are kept nowhere, and refusals that write nothing."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import nats
import psycopg
import pytest
import pytest_asyncio
from nats.js.errors import NotFoundError

from pos.common.v1 import money_pb2
from pos.payment.v1 import events_pb2, gift_cards_pb2_grpc, payment_pb2, payment_pb2_grpc
from pos.payment.v1 import gift_cards_pb2 as G
from pos_devstack.testing import Infra, serve_in_process
from pos_kit.grpc_client import read_error
from pos_kit.ids import new_id
from pos_payment.adapters.gift_cards import CodeHasher
from pos_payment.bootstrap import DEVELOPMENT_CODE_KEY

pytestmark = pytest.mark.asyncio(loop_scope="session")

P = payment_pb2


@dataclass
class Running:
    cards: gift_cards_pb2_grpc.GiftCardServiceStub
    payments: payment_pb2_grpc.PaymentServiceStub
    database_url: str
    nats_url: str

    def sql(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database_url) as conn:
            return conn.execute(query, args).fetchall()  # type: ignore[arg-type]

    def one(self, query: str, *args: Any) -> Any:
        return self.sql(query, *args)[0][0]


@pytest_asyncio.fixture(loop_scope="session")
async def running(infra: Infra) -> AsyncIterator[Running]:
    overrides: dict[str, Any] = {"sweep_interval_seconds": 3600.0}
    async with serve_in_process("payment", infra, **overrides) as svc:
        yield Running(
            gift_cards_pb2_grpc.GiftCardServiceStub(svc.channel),
            payment_pb2_grpc.PaymentServiceStub(svc.channel),
            svc.database_url,
            infra.nats_url,
        )


def usd(amount: int, currency: str = "USD") -> money_pb2.Money:
    return money_pb2.Money(amount=amount, currency=currency)


def merchant() -> str:
    return new_id("mer")


def md(merchant_id: str) -> tuple[tuple[str, str], ...]:
    return (("x-merchant-id", merchant_id),)


def rid() -> str:
    return new_id("req")


async def refused(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value.code(), read_error(err.value).reason


async def issue(running: Running, m: str, amount: int, **fields: Any) -> G.IssueGiftCardResponse:
    request = G.IssueGiftCardRequest(request_id=fields.pop("request_id", rid()), amount=usd(amount))
    for name, value in fields.items():
        setattr(request, name, value)
    answer: G.IssueGiftCardResponse = await running.cards.IssueGiftCard(
        request, metadata=md(m), timeout=10
    )
    return answer


def ledger_sum(running: Running, m: str, card_id: str) -> int:
    return int(
        running.one(
            "SELECT coalesce(sum(amount), 0) FROM gift_card_activities "
            "WHERE merchant_id = %s AND gift_card_id = %s",
            m,
            card_id,
        )
    )


def balance(running: Running, m: str, card_id: str) -> int:
    return int(
        running.one("SELECT balance FROM gift_cards WHERE merchant_id = %s AND id = %s", m, card_id)
    )


# --- the life of a card ------------------------------------------------------------------------


async def test_a_card_is_issued_loaded_redeemed_in_part_and_its_ledger_is_its_balance(
    running: Running,
) -> None:
    m = merchant()
    issued = await issue(running, m, 5000, location_id="loc_1")
    card = issued.gift_card
    assert (card.balance.amount, card.status) == (5000, G.GIFT_CARD_STATUS_ACTIVE)
    assert issued.code and not issued.code_redacted
    assert card.code_last4 == issued.code.replace("-", "")[-4:]

    loaded = await running.cards.LoadGiftCard(
        G.LoadGiftCardRequest(request_id=rid(), id=card.id, amount=usd(2500)),
        metadata=md(m),
        timeout=30,
    )
    assert loaded.gift_card.balance.amount == 7500
    # A code typed in lower case and without its dashes finds the same card.
    typed = issued.code.replace("-", "").lower()
    found = await running.cards.LookupGiftCard(
        G.LookupGiftCardRequest(code=typed), metadata=md(m), timeout=30
    )
    assert found.gift_card.id == card.id

    # More than the balance, partial allowed: the card covers what it holds, the rest is due.
    partial = await running.cards.RedeemGiftCard(
        G.RedeemGiftCardRequest(
            request_id=rid(), code=issued.code, amount=usd(9000), allow_partial=True
        ),
        metadata=md(m),
        timeout=30,
    )
    assert (partial.redeemed.amount, partial.remaining_due.amount) == (7500, 1500)
    assert partial.gift_card.balance.amount == 0

    kinds = await running.cards.ListGiftCardActivities(
        G.ListGiftCardActivitiesRequest(gift_card_id=card.id), metadata=md(m), timeout=30
    )
    assert [(a.kind, a.amount.amount, a.balance_after.amount) for a in kinds.activities] == [
        (G.GIFT_CARD_ACTIVITY_KIND_ACTIVATE, 5000, 5000),
        (G.GIFT_CARD_ACTIVITY_KIND_LOAD, 2500, 7500),
        (G.GIFT_CARD_ACTIVITY_KIND_REDEEM, -7500, 0),
    ]
    assert ledger_sum(running, m, card.id) == balance(running, m, card.id) == 0

    # Another merchant's card is not found, by id or by code.
    other = merchant()
    assert (
        await refused(
            running.cards.GetGiftCard(
                G.GetGiftCardRequest(id=card.id), metadata=md(other), timeout=30
            )
        )
    )[0] == grpc.StatusCode.NOT_FOUND
    assert (
        await refused(
            running.cards.LookupGiftCard(
                G.LookupGiftCardRequest(code=issued.code), metadata=md(other), timeout=30
            )
        )
    )[0] == grpc.StatusCode.NOT_FOUND


async def test_a_gift_card_is_a_payment_tender_through_the_same_ledger(running: Running) -> None:
    m = merchant()
    issued = await issue(running, m, 10_000)
    card_id = issued.gift_card.id

    def pay(amount: int, capture: bool, request_id: str) -> Any:
        return running.payments.CreatePayment(
            P.CreatePaymentRequest(
                request_id=request_id,
                order_id="ord_gift",
                tender_type=P.TENDER_TYPE_GIFT_CARD,
                amount=usd(amount),
                gift_card_code=issued.code,
                capture=capture,
            ),
            metadata=md(m),
            timeout=30,
        )

    first = rid()
    sale = (await pay(3000, True, first)).payment
    assert (sale.status, sale.card_last4) == (
        P.PAYMENT_STATUS_CAPTURED,
        issued.gift_card.code_last4,
    )
    assert balance(running, m, card_id) == 7000
    # The stored fingerprint is not a plain hash of a request holding the code (one could be
    # searched for a short code); a replay is still recognised, and charges nothing again.
    stored = bytes(
        running.one(
            "SELECT fingerprint FROM processed_requests WHERE merchant_id = %s AND request_id = %s",
            m,
            first,
        )
    )
    raw = P.CreatePaymentRequest(
        request_id=first,
        order_id="ord_gift",
        tender_type=P.TENDER_TYPE_GIFT_CARD,
        amount=usd(3000),
        gift_card_code=issued.code,
        capture=True,
    ).SerializeToString(deterministic=True)
    assert stored != hashlib.sha256(b"CreatePayment\0" + raw).digest()
    assert (await pay(3000, True, first)).payment.id == sale.id
    assert balance(running, m, card_id) == 7000

    # An authorisation takes the value at once; capturing part of it and voiding the rest gives
    # the rest back.
    held = (await pay(4000, False, rid())).payment
    assert balance(running, m, card_id) == 3000
    await running.payments.CapturePayment(
        P.CapturePaymentRequest(request_id=rid(), payment_id=held.id, amount=usd(1500)),
        metadata=md(m),
        timeout=30,
    )
    await running.payments.VoidPayment(
        P.VoidPaymentRequest(request_id=rid(), payment_id=held.id, release_uncaptured_rest=True),
        metadata=md(m),
        timeout=30,
    )
    assert balance(running, m, card_id) == 5500

    # A refund goes back to the card.
    await running.payments.CreateRefund(
        P.CreateRefundRequest(request_id=rid(), payment_id=sale.id, amount=usd(1000)),
        metadata=md(m),
        timeout=30,
    )
    assert balance(running, m, card_id) == 6500

    # More than the balance is refused as a redemption of it is, naming the amount with what
    # the card holds: never a negative balance, no payment kept (not a declined one either),
    # and the same request id pays once the amount is what the card can pay.
    before = running.one("SELECT count(*) FROM payments WHERE merchant_id = %s", m)
    again = rid()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await pay(6501, True, again)
    short = read_error(err.value)
    assert (err.value.code(), short.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "insufficient_funds",
    )
    assert [(v.field, v.description) for v in short.violations] == [
        ("amount.amount", "must be at most 6500, what the gift card holds")
    ]
    assert issued.code not in str(err.value.details())
    assert ledger_sum(running, m, card_id) == balance(running, m, card_id) == 6500
    assert running.one("SELECT count(*) FROM payments WHERE merchant_id = %s", m) == before
    assert (await pay(6500, True, again)).payment.status == P.PAYMENT_STATUS_CAPTURED
    assert balance(running, m, card_id) == 0

    # An unknown code is the 404 of a code no card has, naming the field, with no hint, and
    # no payment is kept.
    before = running.one("SELECT count(*) FROM payments WHERE merchant_id = %s", m)
    code, reason = await refused(
        running.payments.CreatePayment(
            P.CreatePaymentRequest(
                request_id=rid(),
                order_id="ord_gift",
                tender_type=P.TENDER_TYPE_GIFT_CARD,
                amount=usd(100),
                gift_card_code="NOPE-NOPE-NOPE-NOPE",
                capture=True,
            ),
            metadata=md(m),
            timeout=30,
        )
    )
    assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "resource_missing")
    assert running.one("SELECT count(*) FROM payments WHERE merchant_id = %s", m) == before


async def test_a_tenders_activities_name_its_payment_never_a_request(running: Running) -> None:
    """What a gift card tender did to the card (its redemption, the rest of it given back by
    a void, a refund) is listed with the payment's id as `reference`, as the card's event
    shows it: what the merchant finds in `GET /v1/payments/{id}` (with its order). Until
    2026-12-05 it was the payment service's processor key (`<merchant>/<request id>`), an id
    of a request no user ever sees."""
    m = merchant()
    issued = await issue(running, m, 10_000)
    card_id = issued.gift_card.id
    requests = [rid(), rid(), rid(), rid()]
    held = (
        await running.payments.CreatePayment(
            P.CreatePaymentRequest(
                request_id=requests[0],
                order_id="ord_gift_refs",
                tender_type=P.TENDER_TYPE_GIFT_CARD,
                amount=usd(4000),
                gift_card_code=issued.code,
                capture=False,
            ),
            metadata=md(m),
            timeout=30,
        )
    ).payment
    await running.payments.CapturePayment(
        P.CapturePaymentRequest(request_id=requests[1], payment_id=held.id, amount=usd(3000)),
        metadata=md(m),
        timeout=30,
    )
    await running.payments.VoidPayment(
        P.VoidPaymentRequest(
            request_id=requests[2], payment_id=held.id, release_uncaptured_rest=True
        ),
        metadata=md(m),
        timeout=30,
    )
    await running.payments.CreateRefund(
        P.CreateRefundRequest(request_id=requests[3], payment_id=held.id, amount=usd(500)),
        metadata=md(m),
        timeout=30,
    )
    listed = await running.cards.ListGiftCardActivities(
        G.ListGiftCardActivitiesRequest(gift_card_id=card_id), metadata=md(m), timeout=30
    )
    moved = [
        (a.kind, a.amount.amount, a.reference)
        for a in listed.activities
        if a.kind != G.GIFT_CARD_ACTIVITY_KIND_ACTIVATE
    ]
    assert moved == [
        (G.GIFT_CARD_ACTIVITY_KIND_REDEEM, -4000, held.id),
        (G.GIFT_CARD_ACTIVITY_KIND_REFUND, 1000, held.id),
        (G.GIFT_CARD_ACTIVITY_KIND_REFUND, 500, held.id),
    ]
    assert balance(running, m, card_id) == 7500
    stored = running.sql(
        "SELECT reference FROM gift_card_activities WHERE merchant_id = %s AND gift_card_id = %s",
        m,
        card_id,
    )
    assert not [r for (r,) in stored if m in r or any(q in r for q in requests)]


async def test_a_card_sold_on_an_order_line_is_activated_on_confirm_and_deactivated_on_cancel(
    running: Running,
) -> None:
    """Driven as the order saga drives it: each step's request id derives from the order."""
    m = merchant()
    order, line = "ord_with_card", "line_2"
    confirm = G.IssueGiftCardRequest(
        request_id=f"{order}/gift_card_activate/{line}",
        amount=usd(2500),
        order_id=order,
        order_line_id=line,
        location_id="loc_store",
    )
    first = await running.cards.IssueGiftCard(confirm, metadata=md(m), timeout=30)
    again = await running.cards.IssueGiftCard(
        confirm, metadata=md(m), timeout=30
    )  # the saga retried
    assert again.gift_card.id == first.gift_card.id
    assert (first.code_redacted, again.code_redacted, again.code) == (False, True, "")
    assert (first.gift_card.order_id, first.gift_card.order_line_id) == (order, line)

    cancel = G.DeactivateGiftCardRequest(
        request_id=f"{order}/gift_card_deactivate/{line}",
        id=first.gift_card.id,
        reason="order_cancelled",
    )
    ended = await running.cards.DeactivateGiftCard(cancel, metadata=md(m), timeout=30)
    replayed = await running.cards.DeactivateGiftCard(cancel, metadata=md(m), timeout=30)
    assert ended.gift_card.status == G.GIFT_CARD_STATUS_DEACTIVATED
    assert ended.activity.amount.amount == -2500 and replayed.activity.id == ended.activity.id
    assert ledger_sum(running, m, first.gift_card.id) == 0

    # Store credit for a return without a receipt is a card issued to the customer.
    credit = await issue(running, m, 1200, customer_id="cus_1", reason="store_credit")
    assert (credit.gift_card.reason, credit.gift_card.customer_id) == ("store_credit", "cus_1")


async def test_a_pre_printed_code_reserved_for_an_order_line_is_its_until_activated_or_released(
    running: Running,
) -> None:
    """The order saga reserves a pre-printed code before the sale is charged: of concurrent
    reservations of one code exactly one holds it; while it does, no other order may reserve
    or activate the code, nor the API issue a card with it; its own activation consumes it, and
    a release (the order cancelled) frees it for the next sale."""
    m = merchant()
    code = "HELD-" + new_id("c")[-12:].upper()

    def reserve(order: str, line: str = "L1", request_id: str = "", **fields: Any) -> Any:
        return running.cards.ReserveGiftCardCode(
            G.ReserveGiftCardCodeRequest(
                request_id=request_id or f"{order}/gift_card_reserve/{line}",
                code=fields.pop("code", code),
                order_id=order,
                order_line_id=line,
                **fields,
            ),
            metadata=md(m),
            timeout=30,
        )

    def release(order: str) -> Any:
        return running.cards.ReleaseGiftCardCodes(
            G.ReleaseGiftCardCodesRequest(request_id=rid(), order_id=order),
            metadata=md(m),
            timeout=30,
        )

    def activate(order: str, line: str = "L1", written: str = code) -> Any:
        return running.cards.IssueGiftCard(
            G.IssueGiftCardRequest(
                request_id=f"{order}/gift_card/{line}",
                amount=usd(2500),
                code=written,
                order_id=order,
                order_line_id=line,
            ),
            metadata=md(m),
            timeout=30,
        )

    answers = await asyncio.gather(
        *(reserve(f"ord_race_{n}") for n in range(20)), return_exceptions=True
    )
    won = [n for n, a in enumerate(answers) if not isinstance(a, BaseException)]
    assert len(won) == 1, answers
    for a in answers:
        if isinstance(a, grpc.aio.AioRpcError):
            assert (a.code(), read_error(a).reason) == (
                grpc.StatusCode.ALREADY_EXISTS,
                "gift_card_code_taken",
            )
    holder = f"ord_race_{won[0]}"
    held = answers[won[0]]
    assert isinstance(held, G.ReserveGiftCardCodeResponse)
    assert held.HasField("expires_at") and not held.activated
    # The saga retried: the same reservation.
    assert await reserve(holder) == held

    taken = (grpc.StatusCode.ALREADY_EXISTS, "gift_card_code_taken")
    other = "ord_other"
    assert await refused(reserve(other)) == taken
    assert await refused(activate(other, written=code.lower())) == taken
    assert await refused(issue(running, m, 1000, code=code)) == taken
    count = "SELECT count(*) FROM gift_cards WHERE merchant_id = %s"
    assert running.one(count, m) == 0

    # Released (its order cancelled): the next sale reserves and activates it, consuming it.
    assert (await release(other)).released == 0
    assert (await release(holder)).released == 1
    await reserve(other)
    card = (await activate(other)).gift_card
    assert (card.order_id, card.order_line_id, card.balance.amount) == (other, "L1", 2500)
    reservations = "SELECT count(*) FROM gift_card_code_reservations WHERE merchant_id = %s"
    assert running.one(reservations, m) == 0
    # Now the card has it: refused to any other order; its own line again hears `activated`.
    assert await refused(reserve(holder, request_id=rid())) == taken
    again = await reserve(other, request_id=rid())
    assert again.activated and not again.HasField("expires_at")

    # A reservation that lapsed (its order vanished before its saga could release it) is
    # taken over by the next sale.
    lapsed = "LAPSED-" + new_id("c")[-12:].upper()
    await reserve("ord_gone", code=lapsed, ttl_seconds=60)
    assert await refused(reserve("ord_next", code=lapsed)) == taken
    with psycopg.connect(running.database_url) as conn:
        conn.execute(
            "UPDATE gift_card_code_reservations SET expires_at = now() - interval '1 second' "
            "WHERE merchant_id = %s AND order_id = 'ord_gone'",
            (m,),
        )
    await reserve("ord_next", code=lapsed)
    assert await refused(reserve("ord_gone", code=lapsed, request_id=rid())) == taken


async def test_an_order_line_has_one_card_whatever_request_id_asks_for_it(
    running: Running,
) -> None:
    """The order's line is the card's identity: a second issue for it under another request id
    (the order service asking again after its stored answer was lost, a caller's bug) answers
    the card already issued, with no code shown and no second card funded; one that asks for
    another amount, currency or code is refused, and nothing is written."""
    m = merchant()
    order = "ord_" + new_id("o")[-12:]

    def ask(line: str, amount: int = 2500, **fields: Any) -> Any:
        return running.cards.IssueGiftCard(
            G.IssueGiftCardRequest(
                request_id=fields.pop("request_id", rid()),
                amount=usd(amount, fields.pop("currency", "USD")),
                order_id=order,
                order_line_id=line,
                **fields,
            ),
            metadata=md(m),
            timeout=30,
        )

    first = await ask("L1", request_id=f"{order}/gift_card/L1")
    assert first.code and not first.code_redacted
    again = await ask("L1")
    assert again.gift_card.id == first.gift_card.id
    assert again.activity.id == first.activity.id
    assert (again.code, again.code_redacted) == ("", True)
    cards = "SELECT count(*) FROM gift_cards WHERE merchant_id = %s"
    activities = "SELECT count(*) FROM gift_card_activities WHERE merchant_id = %s"
    assert (running.one(cards, m), running.one(activities, m)) == (1, 1)

    # Spent since: the answer is the card as it is now, with its activation.
    await running.cards.RedeemGiftCard(
        G.RedeemGiftCardRequest(request_id=rid(), code=first.code, amount=usd(1000)),
        metadata=md(m),
        timeout=30,
    )
    later = await ask("L1")
    assert (later.gift_card.id, later.gift_card.balance.amount) == (first.gift_card.id, 1500)
    assert later.activity.id == first.activity.id

    taken = (grpc.StatusCode.ALREADY_EXISTS, "gift_card_line_issued")
    assert await refused(ask("L1", 3000)) == taken
    assert await refused(ask("L1", currency="EUR")) == taken
    assert await refused(ask("L1", code="OTHER-" + new_id("c")[-12:].upper())) == taken
    assert (running.one(cards, m), running.one(activities, m)) == (1, 2)

    # A pre-printed card: asked again without its code (the order's recovery) or with it, the
    # same card; its line's code is not shown by either.
    printed = "LINE-" + new_id("c")[-12:].upper()
    sold = await ask("L2", code=printed)
    assert sold.code == printed
    for code in ("", printed.lower()):
        same = await ask("L2", code=code)
        assert (same.gift_card.id, same.code, same.code_redacted) == (sold.gift_card.id, "", True)
    # Another order's line of the same name is another card.
    other = await running.cards.IssueGiftCard(
        G.IssueGiftCardRequest(
            request_id=rid(), amount=usd(2500), order_id=order + "_b", order_line_id="L1"
        ),
        metadata=md(m),
        timeout=30,
    )
    assert other.gift_card.id != first.gift_card.id
    assert running.one(cards, m) == 3

    # Concurrent issues of one line under as many request ids: one card, every answer it.
    answers = await asyncio.gather(*(ask("L3") for _ in range(12)))
    assert len({a.gift_card.id for a in answers}) == 1
    assert sum(1 for a in answers if a.code) == 1
    assert running.one(cards, m) == 4
    line_cards = running.sql(
        "SELECT order_line_id, count(*) FROM gift_cards WHERE merchant_id = %s "
        "GROUP BY order_line_id",
        m,
    )
    assert sorted(line_cards) == [("L1", 2), ("L2", 1), ("L3", 1)]


# --- never negative --------------------------------------------------------------------------


async def test_200_concurrent_redemptions_never_take_a_card_below_zero(running: Running) -> None:
    m = merchant()
    issued = await issue(running, m, 10_000)
    card_id = issued.gift_card.id

    async def attempt(n: int) -> int:
        # Half through the gift card API, half as a payment tender: one ledger, one lock.
        if n % 2:
            answer = await running.cards.RedeemGiftCard(
                G.RedeemGiftCardRequest(request_id=f"r-{n}", code=issued.code, amount=usd(70)),
                metadata=md(m),
                timeout=60,
            )
            return int(answer.redeemed.amount)
        paid = await running.payments.CreatePayment(
            P.CreatePaymentRequest(
                request_id=f"p-{n}",
                order_id=f"ord_{n}",
                amount=usd(70),
                tender_type=P.TENDER_TYPE_GIFT_CARD,
                gift_card_code=issued.code,
                capture=True,
            ),
            metadata=md(m),
            timeout=60,
        )
        return 70 if paid.payment.status == P.PAYMENT_STATUS_CAPTURED else 0

    async def redeem(n: int) -> int:
        # 200 callers queue on one card's lock: on a busy machine some wait longer than the
        # pool's wait and are told `overloaded`, which a client retries with the same request
        # id (a retry never takes twice: the sums below would show it).
        for _ in range(10):
            try:
                return await attempt(n)
            except grpc.aio.AioRpcError as err:
                if read_error(err).reason == "overloaded":
                    continue
                assert read_error(err).reason == "insufficient_funds", err
                return 0
        raise AssertionError(f"redemption {n} was refused as overloaded ten times")

    taken = await asyncio.gather(*(redeem(n) for n in range(200)))
    left = balance(running, m, card_id)
    assert left >= 0
    assert sum(taken) == 10_000 - left
    assert sum(1 for t in taken if t) == 10_000 // 70  # every unit the card could give, given
    assert ledger_sum(running, m, card_id) == left
    # The ledger's running balance never dipped below zero either.
    assert (
        running.one("SELECT min(balance_after) FROM gift_card_activities WHERE merchant_id = %s", m)
        >= 0
    )


# --- replays ---------------------------------------------------------------------------------


async def test_every_gift_card_mutation_replayed_with_its_request_id_applies_once(
    running: Running,
) -> None:
    m = merchant()
    issue_request = G.IssueGiftCardRequest(
        request_id=rid(), amount=usd(1000), code="PRE-PRINTED-0042"
    )
    first = await running.cards.IssueGiftCard(issue_request, metadata=md(m), timeout=30)
    replay = await running.cards.IssueGiftCard(issue_request, metadata=md(m), timeout=30)
    assert first.code == "PRE-PRINTED-0042" and (replay.code, replay.code_redacted) == ("", True)
    card_id = first.gift_card.id
    calls: list[tuple[Any, Any]] = [
        (
            running.cards.LoadGiftCard,
            G.LoadGiftCardRequest(request_id=rid(), id=card_id, amount=usd(500)),
        ),
        (
            running.cards.RedeemGiftCard,
            G.RedeemGiftCardRequest(request_id=rid(), code="pre-printed-0042", amount=usd(300)),
        ),
        (
            running.cards.RefundToGiftCard,
            G.RefundToGiftCardRequest(request_id=rid(), id=card_id, amount=usd(100)),
        ),
        (
            running.cards.AdjustGiftCard,
            G.AdjustGiftCardRequest(
                request_id=rid(), id=card_id, amount=usd(-50), reason="miscount"
            ),
        ),
        (
            running.payments.CreatePayment,
            P.CreatePaymentRequest(
                request_id=rid(),
                order_id="ord_replay",
                tender_type=P.TENDER_TYPE_GIFT_CARD,
                amount=usd(200),
                gift_card_code="PRE-PRINTED-0042",
                capture=True,
            ),
        ),
        (
            running.cards.DeactivateGiftCard,
            G.DeactivateGiftCardRequest(request_id=rid(), id=card_id),
        ),
    ]
    for method, request in calls:
        once = await method(request, metadata=md(m), timeout=30)
        twice, thrice = await asyncio.gather(
            method(request, metadata=md(m), timeout=30),
            method(request, metadata=md(m), timeout=30),
            return_exceptions=True,
        )
        for again in (twice, thrice):
            if isinstance(again, grpc.aio.AioRpcError):  # still running: 409, never a 2nd effect
                assert again.code() == grpc.StatusCode.ABORTED
            else:
                assert again == once
    kinds = [
        r[0]
        for r in running.sql(
            "SELECT kind FROM gift_card_activities WHERE merchant_id = %s ORDER BY id", m
        )
    ]
    assert kinds == ["activate", "load", "redeem", "refund", "adjust", "redeem", "deactivate"]
    assert ledger_sum(running, m, card_id) == 0


# --- refusals write nothing ------------------------------------------------------------------


def footprint(running: Running, m: str) -> tuple[Any, ...]:
    return tuple(
        running.one(f"SELECT count(*) FROM {table} WHERE merchant_id = %s", m)  # noqa: S608
        for table in (
            "gift_cards",
            "gift_card_activities",
            "gift_card_code_reservations",
            "processed_requests",
            "outbox",
        )
    )


async def test_bad_input_is_refused_with_its_reason_and_writes_nothing(running: Running) -> None:
    m = merchant()
    issued = await issue(running, m, 1000)
    card_id = issued.gift_card.id
    ended = await issue(running, m, 500)
    await running.cards.DeactivateGiftCard(
        G.DeactivateGiftCardRequest(request_id=rid(), id=ended.gift_card.id),
        metadata=md(m),
        timeout=30,
    )
    await running.cards.UpdateGiftCardSettings(
        G.UpdateGiftCardSettingsRequest(request_id=rid(), max_balance=5000),
        metadata=md(m),
        timeout=30,
    )
    before = footprint(running, m)
    cases: list[tuple[Any, Any, grpc.StatusCode, str]] = [
        (
            running.cards.RedeemGiftCard,
            G.RedeemGiftCardRequest(request_id=rid(), code="ZZZZ-ZZZZ-ZZZZ-ZZZZ", amount=usd(1)),
            grpc.StatusCode.NOT_FOUND,
            "resource_missing",
        ),
        (
            running.cards.LookupGiftCard,
            G.LookupGiftCardRequest(code="ZZZZ-ZZZZ-ZZZZ-ZZZZ"),
            grpc.StatusCode.NOT_FOUND,
            "resource_missing",
        ),
        (
            running.cards.RedeemGiftCard,
            G.RedeemGiftCardRequest(request_id=rid(), code=ended.code, amount=usd(1)),
            grpc.StatusCode.FAILED_PRECONDITION,
            "gift_card_inactive",
        ),
        (
            running.cards.LoadGiftCard,
            G.LoadGiftCardRequest(request_id=rid(), id=card_id, amount=usd(4001)),
            grpc.StatusCode.FAILED_PRECONDITION,
            "gift_card_balance_limit",
        ),
        (
            running.cards.LoadGiftCard,
            G.LoadGiftCardRequest(request_id=rid(), id=card_id, amount=usd(100, "EUR")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "currency_mismatch",
        ),
        (  # a refund asked of the card itself gives back at most what it spent (nothing)
            running.cards.RefundToGiftCard,
            G.RefundToGiftCardRequest(request_id=rid(), id=card_id, amount=usd(1)),
            grpc.StatusCode.FAILED_PRECONDITION,
            "gift_card_refund_exceeds_spent",
        ),
        (
            running.cards.RedeemGiftCard,
            G.RedeemGiftCardRequest(request_id=rid(), code=issued.code, amount=usd(100, "EUR")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "currency_mismatch",
        ),
        (
            running.cards.RedeemGiftCard,
            G.RedeemGiftCardRequest(request_id=rid(), code=issued.code, amount=usd(1001)),
            grpc.StatusCode.FAILED_PRECONDITION,
            "insufficient_funds",
        ),
        (
            running.cards.IssueGiftCard,
            G.IssueGiftCardRequest(request_id=rid(), amount=usd(6000)),
            grpc.StatusCode.FAILED_PRECONDITION,
            "gift_card_balance_limit",
        ),
        (
            running.cards.IssueGiftCard,
            G.IssueGiftCardRequest(request_id=rid(), amount=usd(-5)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "invalid_argument",
        ),
        (
            running.cards.IssueGiftCard,
            G.IssueGiftCardRequest(request_id=rid(), amount=usd(5), code="short"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "invalid_argument",
        ),
        (
            running.cards.AdjustGiftCard,
            G.AdjustGiftCardRequest(request_id=rid(), id=card_id, amount=usd(-1001), reason="x"),
            grpc.StatusCode.FAILED_PRECONDITION,
            "insufficient_funds",
        ),
        (
            running.cards.LoadGiftCard,
            G.LoadGiftCardRequest(request_id=rid(), id="gc_nope", amount=usd(1)),
            grpc.StatusCode.NOT_FOUND,
            "resource_missing",
        ),
        (  # a code a card has is not reserved for an order
            running.cards.ReserveGiftCardCode,
            G.ReserveGiftCardCodeRequest(
                request_id=rid(), code=issued.code, order_id="ord_x", order_line_id="L1"
            ),
            grpc.StatusCode.ALREADY_EXISTS,
            "gift_card_code_taken",
        ),
        (
            running.cards.ReserveGiftCardCode,
            G.ReserveGiftCardCodeRequest(
                request_id=rid(), code="PRINTED-0001", order_id="", order_line_id="L1"
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "invalid_argument",
        ),
        (
            running.cards.ReserveGiftCardCode,
            G.ReserveGiftCardCodeRequest(
                request_id=rid(), code="short", order_id="ord_x", order_line_id="L1"
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "invalid_argument",
        ),
        (
            running.cards.ReserveGiftCardCode,
            G.ReserveGiftCardCodeRequest(
                request_id=rid(),
                code="PRINTED-0001",
                order_id="ord_x",
                order_line_id="L1",
                ttl_seconds=-1,
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "invalid_argument",
        ),
    ]
    for method, request, status, reason in cases:
        assert await refused(method(request, metadata=md(m), timeout=30)) == (status, reason), (
            request
        )
    assert footprint(running, m) == before
    assert ledger_sum(running, m, card_id) == balance(running, m, card_id) == 1000


# --- codes are kept nowhere ------------------------------------------------------------------


async def _stream_text(url: str) -> str:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        parts = []
        for info in await js.streams_info():
            state = info.state
            for seq in range(max(state.first_seq, 1), state.last_seq + 1 if state.messages else 1):
                try:
                    msg = await js.get_msg(info.config.name or "", seq)
                except NotFoundError:
                    continue
                parts.append(f"{msg.subject} {msg.headers} {(msg.data or b'').decode('latin-1')}")
        return "\n".join(parts)
    finally:
        await nc.close()


def database_text(running: Running) -> str:
    with psycopg.connect(running.database_url) as conn:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_type = 'BASE TABLE' AND table_schema = 'public'"
        ).fetchall()
        rows = []
        for (table,) in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):  # noqa: S608
                rows.append(
                    " | ".join(
                        bytes(v).decode("latin-1") if isinstance(v, memoryview | bytes) else str(v)
                        for v in row
                    )
                )
    return "\n".join(rows)


async def test_no_gift_card_code_is_kept_in_any_table_log_stored_answer_or_event(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    m = merchant()
    generated = await issue(running, m, 4000)
    supplied = await issue(running, m, 4000, code="MERCHANT-CARD-777-XQ")
    codes = [generated.code, supplied.code]
    # A code reserved for an order's line (the saga's step before the sale is paid) is kept as
    # the card's would be: its keyed hash.
    reserved = "RESERVED-CARD-888-ZK"
    await running.cards.ReserveGiftCardCode(
        G.ReserveGiftCardCodeRequest(
            request_id=rid(), code=reserved, order_id="ord_dump", order_line_id="L9"
        ),
        metadata=md(m),
        timeout=30,
    )
    for n, code in enumerate(codes):
        card_id = (generated, supplied)[n].gift_card.id
        await running.cards.LoadGiftCard(
            G.LoadGiftCardRequest(request_id=rid(), id=card_id, amount=usd(100)),
            metadata=md(m),
            timeout=30,
        )
        await running.cards.RedeemGiftCard(
            G.RedeemGiftCardRequest(request_id=rid(), code=code, amount=usd(50)),
            metadata=md(m),
            timeout=30,
        )
        await running.cards.LookupGiftCard(
            G.LookupGiftCardRequest(code=code), metadata=md(m), timeout=30
        )
        await running.payments.CreatePayment(
            P.CreatePaymentRequest(
                request_id=rid(),
                order_id="ord_dump",
                tender_type=P.TENDER_TYPE_GIFT_CARD,
                amount=usd(25),
                gift_card_code=code,
                capture=True,
            ),
            metadata=md(m),
            timeout=30,
        )
    # Every activity's event reached the stream (the relay publishes after commit).
    activities = running.one("SELECT count(*) FROM gift_card_activities WHERE merchant_id = %s", m)
    assert activities == 8
    streamed = ""

    async def all_published() -> bool:
        nonlocal streamed
        streamed = await _stream_text(running.nats_url)
        return streamed.count(m) >= activities  # each event names its merchant

    for _ in range(100):
        if await all_published():
            break
        await asyncio.sleep(0.1)
    assert "gift_card_activity_created" in streamed
    dumped = database_text(running)
    logged = "\n".join(r.getMessage() + str(r.args) + str(r.exc_info) for r in caplog.records)
    assert caplog.records and m in dumped
    for code in [*codes, reserved]:
        for form in {code, code.replace("-", ""), code.upper(), code.replace("-", "").upper()}:
            assert form not in dumped
            assert form not in logged
            assert form not in streamed
    # What is kept: the last four, as for a card.
    assert generated.gift_card.code_last4 in dumped


async def test_a_refund_to_a_card_gives_back_at_most_what_it_spent(running: Running) -> None:
    """1,000 issued, 100 spent: a refund to the card of 500 would make 400 from nothing, so
    it is refused naming what is left to give back (100), writing nothing; 100 is taken, and
    then nothing more."""
    m = merchant()
    issued = await issue(running, m, 1000)
    card_id = issued.gift_card.id
    await running.cards.RedeemGiftCard(
        G.RedeemGiftCardRequest(request_id=rid(), code=issued.code, amount=usd(100)),
        metadata=md(m),
        timeout=30,
    )

    def refund(amount: int) -> Any:
        return running.cards.RefundToGiftCard(
            G.RefundToGiftCardRequest(request_id=rid(), id=card_id, amount=usd(amount)),
            metadata=md(m),
            timeout=30,
        )

    before = footprint(running, m)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await refund(500)
    problem = read_error(err.value)
    assert (problem.reason, problem.metadata["refundable"]) == (
        "gift_card_refund_exceeds_spent",
        "100",
    )
    assert [v.field for v in problem.violations] == ["amount.amount"]
    assert footprint(running, m) == before
    assert (await refund(100)).gift_card.balance.amount == 1000
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await refund(1)
    assert read_error(err.value).metadata["refundable"] == "0"


async def test_a_pre_printed_code_taken_already_names_the_code(running: Running) -> None:
    """A second card with a code the merchant's first has: a 409 `gift_card_code_taken` whose
    field error names `code` (the card's code is the request's field at fault, as a sale's
    line names `lines[i].gift_card.code`), never repeating the code."""
    m = merchant()
    await issue(running, m, 1000, code="PRINTED-7731")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await issue(running, m, 500, code="printed-7731")
    problem = read_error(err.value)
    assert (err.value.code(), problem.reason) == (
        grpc.StatusCode.ALREADY_EXISTS,
        "gift_card_code_taken",
    )
    assert [v.field for v in problem.violations] == ["code"]
    assert "7731" not in str(err.value.details())


async def test_a_refund_to_a_card_in_another_currency_is_a_currency_mismatch(
    running: Running,
) -> None:
    """A refund to a USD card in euros is the request's mistake whatever the card spent: a
    400 `currency_mismatch` naming amount.currency, as a load or a redemption in euros is,
    not a 409 saying the card spent nothing to give back. Nothing is written."""
    m = merchant()
    issued = await issue(running, m, 1000)
    before = footprint(running, m)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await running.cards.RefundToGiftCard(
            G.RefundToGiftCardRequest(
                request_id=rid(), id=issued.gift_card.id, amount=usd(100, "EUR")
            ),
            metadata=md(m),
            timeout=30,
        )
    problem = read_error(err.value)
    assert (err.value.code(), problem.reason) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "currency_mismatch",
    )
    assert [v.field for v in problem.violations] == ["amount.currency"]
    assert footprint(running, m) == before


async def test_a_capture_in_another_currency_than_the_card_is_a_currency_mismatch(
    running: Running,
) -> None:
    """Capturing euros of a USD gift card's authorisation is the request's mistake, as a
    redemption or a refund in euros is: a 400 `currency_mismatch` naming amount.currency (an
    `invalid_request` before), and nothing more is taken off the card; the authorisation is
    captured in its own currency afterwards."""
    m = merchant()
    issued = await issue(running, m, 5000)
    card_id = issued.gift_card.id
    held = (
        await running.payments.CreatePayment(
            P.CreatePaymentRequest(
                request_id=rid(),
                order_id="ord_capture_eur",
                tender_type=P.TENDER_TYPE_GIFT_CARD,
                amount=usd(2000),
                gift_card_code=issued.code,
                capture=False,
            ),
            metadata=md(m),
            timeout=30,
        )
    ).payment
    assert balance(running, m, card_id) == 3000
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await running.payments.CapturePayment(
            P.CapturePaymentRequest(request_id=rid(), payment_id=held.id, amount=usd(1500, "EUR")),
            metadata=md(m),
            timeout=30,
        )
    problem = read_error(err.value)
    assert (err.value.code(), problem.reason) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "currency_mismatch",
    )
    assert [v.field for v in problem.violations] == ["amount.currency"]
    assert balance(running, m, card_id) == 3000
    captured = await running.payments.CapturePayment(
        P.CapturePaymentRequest(request_id=rid(), payment_id=held.id, amount=usd(1500)),
        metadata=md(m),
        timeout=30,
    )
    assert captured.payment.captured.amount == 1500


async def test_a_spend_given_back_once_is_not_given_back_again(running: Running) -> None:
    """1,299 spent as a payment tender, then given back to the card by the gift card's own
    refund: a refund of the payment would give the same 1,299 back a second time, so the card
    declines it, and the balance is what was issued."""
    m = merchant()
    issued = await issue(running, m, 5000)
    card_id = issued.gift_card.id
    sale = (
        await running.payments.CreatePayment(
            P.CreatePaymentRequest(
                request_id=rid(),
                order_id="ord_twice",
                tender_type=P.TENDER_TYPE_GIFT_CARD,
                amount=usd(1299),
                gift_card_code=issued.code,
                capture=True,
            ),
            metadata=md(m),
            timeout=30,
        )
    ).payment
    await running.cards.RefundToGiftCard(
        G.RefundToGiftCardRequest(request_id=rid(), id=card_id, amount=usd(1299)),
        metadata=md(m),
        timeout=30,
    )
    assert balance(running, m, card_id) == 5000
    try:
        answer = await running.payments.CreateRefund(
            P.CreateRefundRequest(request_id=rid(), payment_id=sale.id, amount=usd(1299)),
            metadata=md(m),
            timeout=30,
        )
        assert [r.status for r in answer.refunds] == [P.REFUND_STATUS_FAILED], answer
    except grpc.aio.AioRpcError as err:
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION, err
    assert ledger_sum(running, m, card_id) == balance(running, m, card_id) == 5000


async def test_an_authorisation_on_a_card_deactivated_since_is_still_voided(
    running: Running,
) -> None:
    """1,000 held by an authorisation, then the card deactivated (reported stolen): its
    balance is written off, but the held part was never spent, so the void gives it back to
    the card's ledger (the card stays deactivated, for the merchant to reissue), as a
    payment's refund to it does; the authorisation ends (a cancelled order's payment voided,
    never `authorized` for ever). Until 2026-12-05 the held part was dropped."""
    m = merchant()
    issued = await issue(running, m, 5000)
    card_id = issued.gift_card.id
    held = (
        await running.payments.CreatePayment(
            P.CreatePaymentRequest(
                request_id=rid(),
                order_id="ord_stolen",
                tender_type=P.TENDER_TYPE_GIFT_CARD,
                amount=usd(1000),
                gift_card_code=issued.code,
                capture=False,
            ),
            metadata=md(m),
            timeout=30,
        )
    ).payment
    await running.cards.DeactivateGiftCard(
        G.DeactivateGiftCardRequest(request_id=rid(), id=card_id, reason="stolen"),
        metadata=md(m),
        timeout=30,
    )
    voided = await running.payments.VoidPayment(
        P.VoidPaymentRequest(request_id=rid(), payment_id=held.id), metadata=md(m), timeout=30
    )
    assert voided.payment.status == P.PAYMENT_STATUS_VOIDED
    assert ledger_sum(running, m, card_id) == balance(running, m, card_id) == 1000
    card = await running.cards.GetGiftCard(
        G.GetGiftCardRequest(id=card_id), metadata=md(m), timeout=30
    )
    assert card.gift_card.status == G.GIFT_CARD_STATUS_DEACTIVATED


async def test_a_hold_given_back_by_the_cards_own_refund_is_not_given_back_by_its_void(
    running: Running,
) -> None:
    """1,000 held by an authorisation, then given back to the card by the gift card's own
    refund (it counts as spent and not given back): the void of that authorisation (an order
    cancelled) would give the same 1,000 back a second time, so it gives back only what the
    card has spent and not been given back, here nothing. The balance is what was issued and
    the ledger sums to it; the payment is voided. Until 2026-12-05 the card ended 1,000 above
    what it was issued with: money from nothing."""
    m = merchant()
    issued = await issue(running, m, 5000)
    card_id = issued.gift_card.id
    held = (
        await running.payments.CreatePayment(
            P.CreatePaymentRequest(
                request_id=rid(),
                order_id="ord_held_twice",
                tender_type=P.TENDER_TYPE_GIFT_CARD,
                amount=usd(1000),
                gift_card_code=issued.code,
                capture=False,
            ),
            metadata=md(m),
            timeout=30,
        )
    ).payment
    await running.cards.RefundToGiftCard(
        G.RefundToGiftCardRequest(request_id=rid(), id=card_id, amount=usd(1000)),
        metadata=md(m),
        timeout=30,
    )
    assert balance(running, m, card_id) == 5000
    voided = await running.payments.VoidPayment(
        P.VoidPaymentRequest(request_id=rid(), payment_id=held.id), metadata=md(m), timeout=30
    )
    assert voided.payment.status == P.PAYMENT_STATUS_VOIDED
    assert ledger_sum(running, m, card_id) == balance(running, m, card_id) == 5000


async def test_a_card_in_another_currency_than_the_payment_is_a_field_error_not_a_decline(
    running: Running,
) -> None:
    """A euro card tendered for a dollar payment is the request's mistake, as a redemption in
    another currency is: INVALID_ARGUMENT `currency_mismatch` naming `gift_card_code`, with
    both currencies. No payment is kept (it was a failed one, a 402 at the gateway), nothing
    is taken off the card and no answer is remembered under the key, so the request id may
    be used again with a card in the payment's currency."""
    m = merchant()
    issued = await running.cards.IssueGiftCard(
        G.IssueGiftCardRequest(request_id=rid(), amount=usd(5000, "EUR")),
        metadata=md(m),
        timeout=10,
    )
    before = running.one("SELECT count(*) FROM payments WHERE merchant_id = %s", m)

    def tender(request_id: str, currency: str, code: str) -> Any:
        return running.payments.CreatePayment(
            P.CreatePaymentRequest(
                request_id=request_id, order_id="ord_abroad", tender_type=P.TENDER_TYPE_GIFT_CARD,
                amount=usd(1000, currency), gift_card_code=code, capture=True,
            ),
            metadata=md(m),
            timeout=30,
        )  # fmt: skip

    again = rid()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await tender(again, "USD", issued.code)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    problem = read_error(err.value)
    assert problem.reason == "currency_mismatch"
    assert [v.field for v in problem.violations] == ["gift_card_code"]
    assert "EUR" in problem.violations[0].description
    assert issued.code not in str(err.value.details())
    assert running.one("SELECT count(*) FROM payments WHERE merchant_id = %s", m) == before
    assert running.one("SELECT count(*) FROM gift_card_tender_calls WHERE merchant_id = %s", m) == 0
    card_id = issued.gift_card.id
    assert ledger_sum(running, m, card_id) == balance(running, m, card_id) == 5000

    dollars = await issue(running, m, 2000)
    paid = (await tender(again, "USD", dollars.code)).payment
    assert (paid.status, paid.amount.amount) == (P.PAYMENT_STATUS_CAPTURED, 1000)
    euros = (await tender(rid(), "EUR", issued.code)).payment
    assert euros.status == P.PAYMENT_STATUS_CAPTURED
    assert balance(running, m, card_id) == 4000


async def test_a_payments_refund_to_a_card_deactivated_since_is_on_its_ledger(
    running: Running,
) -> None:
    """3,000 paid by a card, then the card deactivated (reported lost): the payment's refund
    still goes back to it, so a return paid with it completes. The card stays deactivated,
    its ledger records the refund and its balance is what it was given back; nothing is
    spent from it, nothing is loaded or refunded to it directly, and a refund never gives
    back more than the card spent."""
    m = merchant()
    issued = await issue(running, m, 5000)
    card_id = issued.gift_card.id

    async def pay(order_id: str, amount: int) -> Any:
        request = P.CreatePaymentRequest(
            request_id=rid(),
            order_id=order_id,
            tender_type=P.TENDER_TYPE_GIFT_CARD,
            amount=usd(amount),
            gift_card_code=issued.code,
            capture=True,
        )
        return (await running.payments.CreatePayment(request, metadata=md(m), timeout=30)).payment

    sale = await pay("ord_lost", 3000)
    await running.cards.DeactivateGiftCard(
        G.DeactivateGiftCardRequest(request_id=rid(), id=card_id, reason="lost"),
        metadata=md(m),
        timeout=30,
    )

    async def refund(amount: int) -> Any:
        answer = await running.payments.CreateRefund(
            P.CreateRefundRequest(request_id=rid(), payment_id=sale.id, amount=usd(amount)),
            metadata=md(m),
            timeout=30,
        )
        return answer.refunds[0]

    first = await refund(1000)
    assert (first.status, first.failure_code) == (P.REFUND_STATUS_SUCCEEDED, "")
    card = (
        await running.cards.GetGiftCard(
            G.GetGiftCardRequest(id=card_id), metadata=md(m), timeout=30
        )
    ).gift_card
    assert (card.status, card.balance.amount) == (G.GIFT_CARD_STATUS_DEACTIVATED, 1000)
    kinds = running.sql(
        "SELECT kind, amount FROM gift_card_activities WHERE merchant_id = %s "
        "AND gift_card_id = %s ORDER BY id",
        m,
        card_id,
    )
    assert kinds == [("activate", 5000), ("redeem", -3000), ("deactivate", -2000), ("refund", 1000)]
    assert ledger_sum(running, m, card_id) == balance(running, m, card_id) == 1000

    # Deactivated all the same: nothing taken from or put on it by any other way.
    for call, reason in (
        (
            running.cards.RedeemGiftCard(
                G.RedeemGiftCardRequest(request_id=rid(), code=issued.code, amount=usd(100)),
                metadata=md(m),
                timeout=30,
            ),
            "gift_card_inactive",
        ),
        (
            running.cards.RefundToGiftCard(
                G.RefundToGiftCardRequest(request_id=rid(), id=card_id, amount=usd(100)),
                metadata=md(m),
                timeout=30,
            ),
            "gift_card_inactive",
        ),
    ):
        assert (await refused(call))[1] == reason
    # A tender too, refused as a redemption is (nothing taken, no payment kept).
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await pay("ord_lost_2", 100)
    spent = read_error(err.value)
    assert (err.value.code(), spent.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "gift_card_inactive",
    )
    assert [v.field for v in spent.violations] == ["gift_card_code"]

    rest = await refund(2000)
    assert rest.status == P.REFUND_STATUS_SUCCEEDED
    assert ledger_sum(running, m, card_id) == balance(running, m, card_id) == 3000
    assert (await refused(refund(1)))[1] == "amount_exceeds_refundable"


async def test_a_refusal_for_the_balance_or_the_maximum_names_the_amount(
    running: Running,
) -> None:
    """A card that cannot hold, or does not hold, the amount asked is refused naming the field
    at fault (`amount.amount`), as a refund beyond what the card spent is: a partner's form
    shows the reason by the amount, not only a code."""
    m = merchant()
    await running.cards.UpdateGiftCardSettings(
        G.UpdateGiftCardSettingsRequest(request_id=rid(), max_balance=5000),
        metadata=md(m),
        timeout=30,
    )
    issued = await issue(running, m, 1000)
    card_id = issued.gift_card.id
    cases: list[tuple[Any, Any, str, str]] = [
        (
            running.cards.IssueGiftCard,
            G.IssueGiftCardRequest(request_id=rid(), amount=usd(6000)),
            "gift_card_balance_limit",
            "must be at most 5000",
        ),
        (
            running.cards.LoadGiftCard,
            G.LoadGiftCardRequest(request_id=rid(), id=card_id, amount=usd(4001)),
            "gift_card_balance_limit",
            "must be at most 4000",
        ),
        (
            running.cards.AdjustGiftCard,
            G.AdjustGiftCardRequest(request_id=rid(), id=card_id, amount=usd(4001), reason="x"),
            "gift_card_balance_limit",
            "must be at most 4000",
        ),
        (
            running.cards.RedeemGiftCard,
            G.RedeemGiftCardRequest(request_id=rid(), code=issued.code, amount=usd(1001)),
            "insufficient_funds",
            "must be at most 1000",
        ),
        (
            running.cards.AdjustGiftCard,
            G.AdjustGiftCardRequest(request_id=rid(), id=card_id, amount=usd(-1001), reason="x"),
            "insufficient_funds",
            "must be at least -1000",
        ),
    ]
    for method, request, reason, description in cases:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await method(request, metadata=md(m), timeout=30)
        error = read_error(err.value)
        assert error.reason == reason, request
        assert [(v.field, v.description) for v in error.violations] == [
            ("amount.amount", description)
        ], request
    assert balance(running, m, card_id) == 1000


async def test_a_code_of_fewer_than_8_letters_or_digits_is_no_cards_code(running: Running) -> None:
    """Dashes and underscores are not a secret: a pre-printed code with fewer than 8 letters or
    digits is refused (400 naming `code`) on its own card and on an order's line, and a card
    that has one from before the rule is found by no code, answered as a code no card has."""
    m = merchant()
    for code in ("-------Z", "Z_______", "AB-CD-EF-G"):
        assert await refused(issue(running, m, 500, code=code)) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "invalid_argument",
        )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await issue(running, m, 500, code=code)
        assert [v.field for v in read_error(err.value).violations] == ["code"]
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await running.cards.ReserveGiftCardCode(
                G.ReserveGiftCardCodeRequest(
                    request_id=rid(), code=code, order_id="ord_short", order_line_id="L1"
                ),
                metadata=md(m),
                timeout=30,
            )
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert [v.field for v in read_error(err.value).violations] == ["code"]
    assert running.one("SELECT count(*) FROM gift_cards WHERE merchant_id = %s", m) == 0
    assert (
        running.one("SELECT count(*) FROM gift_card_code_reservations WHERE merchant_id = %s", m)
        == 0
    )

    # A card issued with the one-letter code "Z" before the rule.
    card = (await issue(running, m, 1000, code="OLDCARD-0001")).gift_card
    running.sql(
        "UPDATE gift_cards SET code_hash = %s, code_last4 = 'Z' "
        "WHERE merchant_id = %s AND id = %s RETURNING id",
        CodeHasher(DEVELOPMENT_CODE_KEY)(m, "Z"),
        m,
        card.id,
    )
    unknown = (grpc.StatusCode.NOT_FOUND, "resource_missing")
    for code in ("z---", "Z"):
        assert (
            await refused(
                running.cards.LookupGiftCard(
                    G.LookupGiftCardRequest(code=code), metadata=md(m), timeout=30
                )
            )
            == unknown
        )
        assert (
            await refused(
                running.cards.RedeemGiftCard(
                    G.RedeemGiftCardRequest(request_id=rid(), code=code, amount=usd(100)),
                    metadata=md(m),
                    timeout=30,
                )
            )
            == unknown
        )

    def pay(code: str) -> Any:
        return running.payments.CreatePayment(
            P.CreatePaymentRequest(
                request_id=rid(),
                order_id="ord_short",
                tender_type=P.TENDER_TYPE_GIFT_CARD,
                amount=usd(100),
                gift_card_code=code,
                capture=True,
            ),
            metadata=md(m),
            timeout=30,
        )

    # As a tender: the answer a code no card has gets.
    answers = []
    for code in ("NOCARD-9999-9999", "z---"):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await pay(code)
        problem = read_error(err.value)
        answers.append((err.value.code(), problem.reason, [v.field for v in problem.violations]))
    assert answers[0] == answers[1]
    assert answers[1][2] == ["gift_card_code"]
    assert balance(running, m, card.id) == 1000


async def test_a_failed_refund_announces_the_payment_as_it_now_stands(running: Running) -> None:
    """A refund the card declines (its spend given back by the card's own refund first) still
    changes the payment (the amount it set aside is released: a new version): the outbox
    carries that version, the payment as GetPayment shows it, as a successful refund does."""
    m = merchant()
    issued = await issue(running, m, 5000)
    sale = (
        await running.payments.CreatePayment(
            P.CreatePaymentRequest(
                request_id=rid(),
                order_id="ord_failed_refund",
                tender_type=P.TENDER_TYPE_GIFT_CARD,
                amount=usd(1299),
                gift_card_code=issued.code,
                capture=True,
            ),
            metadata=md(m),
            timeout=30,
        )
    ).payment
    await running.cards.RefundToGiftCard(
        G.RefundToGiftCardRequest(request_id=rid(), id=issued.gift_card.id, amount=usd(1299)),
        metadata=md(m),
        timeout=30,
    )
    answer = await running.payments.CreateRefund(
        P.CreateRefundRequest(request_id=rid(), payment_id=sale.id, amount=usd(1299)),
        metadata=md(m),
        timeout=30,
    )
    assert [(r.status, r.failure_code) for r in answer.refunds] == [
        (P.REFUND_STATUS_FAILED, "gift_card_refund_exceeds_spent")
    ]
    shown = (
        await running.payments.GetPayment(
            P.GetPaymentRequest(id=sale.id), metadata=md(m), timeout=30
        )
    ).payment
    assert shown.version > sale.version

    carrying = {
        "pos.payment.v1.payment_authorized": events_pb2.PaymentAuthorized,
        "pos.payment.v1.payment_captured": events_pb2.PaymentCaptured,
        "pos.payment.v1.payment_updated": events_pb2.PaymentUpdated,
        "pos.payment.v1.refund_succeeded": events_pb2.RefundSucceeded,
    }
    rows = running.sql(
        "SELECT subject, payload FROM outbox WHERE subject = ANY(%s) ORDER BY seq",
        list(carrying),
    )
    snapshots = [
        p
        for p in (carrying[s].FromString(payload).payment for s, payload in rows)
        if p.id == sale.id
    ]
    assert snapshots and snapshots[-1] == shown
