"""The customer domain's rules, in plain Python (no server)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pos_customer.domain import loyalty, text
from pos_customer.domain.loyalty import Sale
from pos_customer.domain.model import (
    Address,
    Consent,
    Customer,
    Profile,
    normalise_phone,
    normalise_profile,
)
from pos_kit.errors import InvalidArgument
from pos_kit.text import CARD_NUMBER_NOT_ALLOWED, CARD_NUMBER_REASON


def _sale(total: int, tax: int = 0, lines: tuple[loyalty.SaleLine, ...] = ()) -> loyalty.Sale:
    return loyalty.Sale("ord_1", "cus_1", "loc_1", "USD", total, tax, lines)


def test_phones_are_normalised_to_e164() -> None:
    assert normalise_phone("+1 (415) 555-0100") == "+14155550100"
    assert normalise_phone("0044 20 7946 0958") == "+442079460958"
    assert normalise_phone("415 555 0100") is None  # no country code: not guessed
    assert normalise_phone("+0123") is None


def test_a_bad_profile_names_every_bad_field_at_once() -> None:
    raw = Profile(
        email="not-an-email",
        phone="12",
        birthday="1990-02-30",
        consent=Consent(True, None, "fax"),
        addresses=(Address(line1="", country="usa"),),
        tags=("ok", "a,b"),
    )
    with pytest.raises(InvalidArgument) as err:
        normalise_profile(raw, "customers[2].")
    assert sorted(v.field for v in err.value.violations) == [
        "customers[2].addresses[0].country",
        "customers[2].addresses[0].line1",
        "customers[2].birthday",
        "customers[2].email",
        "customers[2].marketing_consent.channel",
        "customers[2].marketing_consent.given_at",
        "customers[2].phone",
        "customers[2].tags[1]",
    ]


def test_a_phone_that_normalises_to_a_card_number_is_refused_as_one() -> None:
    # "+37 8282 2463 10005" passes the rule for free text; its E.164 form is a card number.
    for where in ("", "customers[2]."):
        with pytest.raises(InvalidArgument) as err:
            normalise_profile(Profile(given_name="P", phone="+37 8282 2463 10005"), where)
        assert err.value.code == CARD_NUMBER_NOT_ALLOWED
        assert [(v.field, v.description) for v in err.value.violations] == [
            (f"{where}phone", CARD_NUMBER_REASON)
        ]
        assert "378282246310005" not in str(err.value) + repr(err.value.violations)
    assert normalise_profile(Profile(phone="+44 20 7946 0958")).phone == "+442079460958"


@pytest.mark.parametrize("code", ["ZZ", "AA", "QM", "XA", "XK", "UK"])
def test_an_address_names_a_country_iso_has_assigned(code: str) -> None:
    """Two capitals are not yet a country: private-use and unassigned codes were taken."""
    with pytest.raises(InvalidArgument) as err:
        normalise_profile(Profile(addresses=(Address(line1="1 Main St", country=code),)))
    assert [(v.field, v.description) for v in err.value.violations] == [
        (
            "addresses[0].country",
            "must be an ISO 3166-1 alpha-2 code assigned to a country, e.g. US",
        )
    ]
    kept = normalise_profile(Profile(addresses=(Address(line1="1 Main St", country="GB"),)))
    assert kept.addresses is not None and kept.addresses[0].country == "GB"


def test_a_profile_is_normalised() -> None:
    at = datetime(2026, 1, 2, tzinfo=UTC)
    p = normalise_profile(
        Profile(
            email=" Zoë@Example.COM ",
            phone="+33 6 12 34 56 78",
            given_name=" Zoë ",
            consent=Consent(True, at, "in_store"),
            tags=("vip", "vip", " late "),
        )
    )
    assert (p.email, p.phone, p.given_name, p.tags) == (
        "zoë@example.com",
        "+33612345678",
        "Zoë",
        ("vip", "late"),
    )


def test_search_terms_ignore_case_and_accents() -> None:
    c = Customer("cus_1", "zoe.dupont@example.com", "Zoë", "Dupont-Léger", phone="+33612345678")
    assert c.search_terms() == {
        "zoe",
        "dupont",
        "leger",
        "zoe.dupont@example.com",
        "33612345678",
    }
    assert text.words("ZOË  d") == ["zoe", "d"]


def test_default_program_earns_a_point_per_whole_unit_rounded_down() -> None:
    program = loyalty.DEFAULT_PROGRAM
    assert loyalty.points_for(program, _sale(6040)) == 60
    assert loyalty.points_for(program, _sale(99)) == 0
    assert loyalty.points_for(program, _sale(-500)) == 0


def test_tax_and_excluded_lines_earn_nothing_and_tiers_multiply() -> None:
    program = loyalty.Program(
        points_per_unit=2,
        rounding="nearest",
        excluded_skus=("GIFT",),
        tiers=(loyalty.Tier("gold", 100, 15_000),),
    )
    sale = _sale(10_050, 1_000, (loyalty.SaleLine("GIFT", 2_000), loyalty.SaleLine("TEE", 7_050)))
    # (10050 - 1000 - 2000) = 70.50 units x 2 = 141
    assert loyalty.points_for(program, sale) == 141
    # x 1.5 = 211.5, rounded half away from zero
    assert loyalty.points_for(program, sale, "gold") == 212
    assert program.tier_for(99) is None
    assert program.tier_for(100) == loyalty.Tier("gold", 100, 15_000)


def test_a_gift_card_sold_earns_nothing_and_earns_once_spent() -> None:
    program = loyalty.DEFAULT_PROGRAM
    card = loyalty.SaleLine("GIFT-CARD", 5_000, gift_card=True)
    tee = loyalty.SaleLine("TEE", 2_000)
    # Bought with goods: only the goods earn.
    assert loyalty.points_for(program, _sale(7_000, 0, (card, tee))) == 20
    # The card alone earns nothing when sold ...
    assert loyalty.points_for(program, _sale(5_000, 0, (card,))) == 0
    # ... and the goods it pays for later earn as any sale does.
    spent = loyalty.Sale("o2", "c", "l", "USD", 5_000, 0, (tee,), tenders=("gift_card",))
    assert loyalty.points_for(program, spent) == 50


def test_tenders_that_do_not_earn() -> None:
    program = loyalty.Program(earning_tenders=("card",))
    sale = loyalty.Sale("o", "c", "l", "USD", 1000, 0, (), tenders=("gift_card",))
    assert loyalty.points_for(program, sale) == 0


def test_expiry_spends_the_oldest_credits_first_and_keeps_what_is_held() -> None:
    # 100 old points, 30 spent since: 70 of the old ones are left to expire.
    assert loyalty.expirable(100, 30, 500) == 70
    # Spending more than the old credits leaves none of them.
    assert loyalty.expirable(100, 130, 500) == 0
    # Never more than is available (held points stay).
    assert loyalty.expirable(100, 0, 40) == 40


def test_a_program_is_checked_field_by_field() -> None:
    bad = loyalty.Program(
        points_per_unit=-1,
        rounding="up",
        earning_tenders=("cheque",),
        tiers=(loyalty.Tier("", 10, 5_000),),
    )
    with pytest.raises(InvalidArgument) as err:
        loyalty.validate_program(bad)
    assert sorted(v.field for v in err.value.violations) == [
        "earning_tenders[0]",
        "points_per_unit",
        "rounding",
        "tiers[0].multiplier_bps",
        "tiers[0].name",
    ]


def test_a_program_refuses_repeated_tenders_and_two_tiers_at_one_threshold() -> None:
    bad = loyalty.Program(
        earning_tenders=("card", "cash", "card"),
        tiers=(
            loyalty.Tier("silver", 40, 15_000),
            loyalty.Tier("gold", 100, 20_000),
            loyalty.Tier("bronze", 40, 12_000),
        ),
    )
    with pytest.raises(InvalidArgument) as err:
        loyalty.validate_program(bad)
    assert sorted((v.field, v.description) for v in err.value.violations) == [
        ("earning_tenders[2]", "repeats earning_tenders[0]"),
        ("tiers[2].threshold_points", "repeats tiers[0]"),
    ]


def test_a_program_refuses_a_repeated_excluded_sku() -> None:
    """A SKU twice excludes nothing more: stored as sent, the same program written twice was
    a different one (a new version and audit entry for no change)."""
    bad = loyalty.Program(excluded_skus=("GIFT-CARD", "MUG", "GIFT-CARD"))
    with pytest.raises(InvalidArgument) as err:
        loyalty.validate_program(bad)
    assert [(v.field, v.description) for v in err.value.violations] == [
        ("excluded_skus[2]", "repeats excluded_skus[0]")
    ]


def test_a_birthday_in_the_future_is_refused() -> None:
    tomorrow_somewhere = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    normalise_profile(Profile(birthday=tomorrow_somewhere))
    later = (datetime.now(UTC) + timedelta(days=3)).date().isoformat()
    with pytest.raises(InvalidArgument) as err:
        normalise_profile(Profile(birthday=later))
    assert [(v.field, v.description) for v in err.value.violations] == [
        ("birthday", "must not be in the future")
    ]


def test_a_sale_is_judged_by_the_tenders_its_order_names() -> None:
    """The order_confirmed consumer reads the order's tender types: a program earning on cards
    gives nothing for a cash sale, and the full rate for a card one."""
    from pos.common.v1 import money_pb2
    from pos.order.v1 import events_pb2 as order_events
    from pos.order.v1 import order_pb2
    from pos_customer.entrypoints.consumers import sale_of

    def confirmed(*tenders: str, amounts: tuple[int, ...] = ()) -> order_events.OrderConfirmed:
        usd = money_pb2.Money(amount=5000, currency="USD")
        order = order_pb2.Order(id="ord_t", customer_id="cus_1", location_id="loc_1",
                                total=usd, tender_types=list(tenders),
                                tender_amounts=list(amounts))  # fmt: skip
        order.tax_total.currency = "USD"
        return order_events.OrderConfirmed(order=order)

    program = loyalty.Program(earning_tenders=("card",))
    assert sale_of(confirmed("cash")).tenders == ("cash",)
    assert loyalty.points_for(program, sale_of(confirmed("cash"))) == 0
    # An order from before orders named their tenders' amounts: any earning tender earns all.
    assert loyalty.points_for(program, sale_of(confirmed("gift_card", "card"))) == 50
    # With the amounts: only the card's share earns (a cent of card earns nothing on $50).
    assert (
        loyalty.points_for(program, sale_of(confirmed("gift_card", "card", amounts=(4999, 1)))) == 0
    )
    assert (
        loyalty.points_for(program, sale_of(confirmed("gift_card", "card", amounts=(3000, 2000))))
        == 20
    )
    # A declined card (0) beside the gift card that paid: nothing earns.
    assert (
        loyalty.points_for(program, sale_of(confirmed("card", "gift_card", amounts=(0, 5000)))) == 0
    )
    # Every tender earning: the whole sale, whatever the amounts.
    assert (
        loyalty.points_for(
            loyalty.DEFAULT_PROGRAM, sale_of(confirmed("card", "gift_card", amounts=(1, 4999)))
        )
        == 50
    )


def test_cash_not_recorded_yet_is_a_tender_of_the_sale() -> None:
    """Cash taken while the payment service was away is in no payment yet (the order's
    `tenders_to_record`): still the sale's tender, so a card-only program gives it nothing
    (named no tender, the sale would earn as on every program)."""
    from pos.common.v1 import money_pb2
    from pos.order.v1 import events_pb2 as order_events
    from pos.order.v1 import order_pb2
    from pos_customer.entrypoints.consumers import sale_of

    usd = money_pb2.Money(amount=5000, currency="USD")
    order = order_pb2.Order(id="ord_t", customer_id="cus_1", location_id="loc_1", total=usd)
    order.tax_total.currency = "USD"
    order.tenders_to_record.add(tender_type="cash", amount=usd)
    sale = sale_of(order_events.OrderConfirmed(order=order))
    assert (sale.tenders, sale.tender_amounts) == (("cash",), (5000,))
    assert loyalty.points_for(loyalty.Program(earning_tenders=("card",)), sale) == 0
    assert loyalty.points_for(loyalty.DEFAULT_PROGRAM, sale) == 50


def test_an_excluded_line_takes_off_what_was_paid_for_it_not_its_shelf_price() -> None:
    from pos.common.v1 import money_pb2
    from pos.order.v1 import events_pb2 as order_events
    from pos.order.v1 import order_pb2
    from pos_customer.entrypoints.consumers import sale_of

    def usd(amount: int) -> money_pb2.Money:
        return money_pb2.Money(amount=amount, currency="USD")

    def confirmed(lines: list[tuple[str, int, int, int]], tax: int, total: int) -> Sale:
        order = order_pb2.Order(
            id="ord_1", customer_id="cus_1", total=usd(total), tax_total=usd(tax),
            subtotal=usd(sum(t for _, t, _, _ in lines)),
            discount_total=usd(sum(d for _, _, d, _ in lines)),
            lines=[order_pb2.OrderLine(sku=sku, line_total=usd(t), discount_total=usd(d),
                                       tax_total=usd(x)) for sku, t, d, x in lines],
        )  # fmt: skip
        return sale_of(order_events.OrderConfirmed(order=order))

    program = loyalty.Program(excluded_skus=("MUG",))
    # 10 % off both lines, 8.25 % added: the tees' 45.00 after the discount earn 45.
    added = confirmed([("TEE", 5000, 500, 371), ("MUG", 1200, 120, 89)], 460, 6040)
    assert loyalty.points_for(program, added) == 45
    # A VAT store (prices contain it): the tees' 50.00 hold 8.33 of it, so 41.67 earns 41.
    held = confirmed([("TEE", 5000, 0, 833), ("MUG", 1200, 0, 200)], 1033, 6200)
    assert loyalty.points_for(program, held) == 41


def test_consent_given_in_the_future_is_refused() -> None:
    """A consent is a fact of the past: one given (or withdrawn) next year is a mistake in
    the request, named as a birthday in the future is. A clock a little ahead is not."""
    now = datetime.now(UTC)
    for granted in (True, False):
        with pytest.raises(InvalidArgument) as err:
            normalise_profile(_consent_profile(granted, now + timedelta(days=365)))
        assert [v.field for v in err.value.violations] == ["marketing_consent.given_at"]
    skewed = normalise_profile(_consent_profile(True, now + timedelta(seconds=30)))
    assert skewed.consent is not None and skewed.consent.granted


def _consent_profile(granted: bool, at: datetime) -> Profile:
    return Profile(email="c@example.com", consent=Consent(granted, at, "email"))
