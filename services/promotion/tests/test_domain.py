"""Validation of offers, carts and coupon batches, as plain Python."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pytest

from pos_kit.errors import InvalidArgument
from pos_kit.money import BPS
from pos_promotion.domain.coupons import hint, normalize, validate_batch
from pos_promotion.domain.engine import Manual, ManualKind
from pos_promotion.domain.model import (
    CartLineInput,
    MoneyInput,
    Schedule,
    first_kind_offer,
    new_cart,
    schedule_of,
    validate_offer,
)
from pos_promotion.domain.rules import Conditions, Kind, Level, Offer, Rule, Tier


def fields(err: pytest.ExceptionInfo[InvalidArgument]) -> list[str]:
    return [v.field for v in err.value.violations]


def test_a_window_that_ends_before_it_starts_and_contradictory_tiers_are_refused() -> None:
    offer = Offer(
        "promo_1",
        "  Bad  ",
        Rule(Kind.TIERS, Level.ITEM, tiers=(Tier(2, 1000), Tier(2, 2000), Tier(4, 500))),
        Conditions(
            starts_at=datetime(2026, 12, 2),
            ends_at=datetime(2026, 12, 1),
            time_zone="America",  # a folder of zones, not a zone
            hours_from=time(9),
        ),
    )
    with pytest.raises(InvalidArgument) as err:
        validate_offer(offer)
    assert set(fields(err)) == {
        "rule.tiers[1].min_quantity",
        "rule.tiers[2].percent_bps",
        "conditions.ends_at",
        "conditions.time_zone",
        "conditions.hours_until",
    }


def test_contradictory_tiers_name_the_tier_at_fault() -> None:
    """The later of two tiers for one quantity is named by its min_quantity, and a tier for
    more units giving no more than one for fewer by its percent_bps, whatever the order the
    tiers are sent in."""
    rule = Rule(Kind.TIERS, Level.ITEM, tiers=(Tier(4, 1500), Tier(2, 2000), Tier(6, 2500)))
    with pytest.raises(InvalidArgument) as err:
        validate_offer(Offer("p", "Tiers", rule))
    assert err.value.violations[0].field == "rule.tiers[0].percent_bps"
    assert "rule.tiers[1]" in err.value.violations[0].description
    ok = Rule(Kind.TIERS, Level.ITEM, tiers=(Tier(6, 2500), Tier(2, 1000), Tier(4, 1500)))
    validate_offer(Offer("p", "Tiers", ok))


def test_order_rules_are_percent_or_amount_and_amounts_need_a_currency() -> None:
    with pytest.raises(InvalidArgument) as err:
        validate_offer(
            Offer("p", "Bundle", Rule(Kind.BUNDLE, Level.ORDER, amount=100, get_quantity=1))
        )
    assert set(fields(err)) == {"rule.level", "rule.amount.currency", "rule.get_quantity"}


def test_the_first_kind_names_every_bad_field() -> None:
    with pytest.raises(InvalidArgument) as err:
        first_kind_offer("p", " ", 0, MoneyInput(-1, "usd"))
    assert set(fields(err)) == {
        "name",
        "percent_off_bps",
        "minimum_subtotal.currency",
        "minimum_subtotal.amount",
    }


def test_manual_discounts_need_a_reason_and_who_and_an_override_stays_under_list() -> None:
    lines = [
        CartLineInput(
            "X", 1, MoneyInput(1000, "USD"), manual=Manual(ManualKind.PRICE, 1200, "", "")
        ),
    ]
    with pytest.raises(InvalidArgument) as err:
        new_cart(lines, "USD")
    assert set(fields(err)) == {
        "lines[0].manual.reason",
        "lines[0].manual.requested_by",
        "lines[0].manual.value",
    }


def test_coupon_codes_ignore_case_and_a_batch_is_checked_whole() -> None:
    assert normalize(" save10 ") == "SAVE10"
    with pytest.raises(InvalidArgument) as err:
        validate_batch(["save10", "SAVE10", "a"], 0, -1, 0)
    assert set(fields(err)) == {"codes[1]", "codes[2]", "max_uses"}
    assert validate_batch(["Summer-26"], 0, 5, 1) == ["SUMMER-26"]


@pytest.mark.parametrize(
    ("code", "shown"),
    [("SU1", "1"), ("ABCD", "D"), ("SAVE10", "10"), ("WINTER-26", "-26"), ("K7M2P9Q3R4T6", "R4T6")],
)
def test_a_hint_never_shows_a_code_whole(code: str, shown: str) -> None:
    """A third of the code at most, four characters at most: a 3-4 character code is not
    given away by a coupon list, an order or an event."""
    assert hint(code) == shown


@pytest.mark.parametrize(
    "rule",
    [
        Rule(Kind.PERCENT_OFF, Level.ITEM, percent_bps=1000, limit_per_order=1),
        Rule(Kind.PERCENT_OFF, Level.ORDER, percent_bps=1000, limit_per_order=1),
        Rule(Kind.AMOUNT_OFF, Level.ORDER, amount=500, limit_per_order=1),
        Rule(Kind.TIERS, Level.ITEM, tiers=(Tier(2, 1000),), limit_per_order=1),
        Rule(Kind.SALE_PRICE, Level.ITEM, amount=500, limit_per_order=1),
        Rule(Kind.FREE_ITEM, Level.ITEM, get_quantity=1, limit_per_order=1),
    ],
    ids=lambda r: f"{r.kind}-{r.level}",
)
def test_a_limit_per_order_on_a_rule_that_does_not_count_uses_is_refused(rule: Rule) -> None:
    """Only buy X get Y sets, bundles and an item amount off's units are counted: on any
    other rule the limit would be kept and shown, and never hold (a 10 % off "once" took 10 %
    off every matching line)."""
    with pytest.raises(InvalidArgument) as err:
        validate_offer(Offer("p", "Limited", rule, currency="USD"))
    assert fields(err) == ["rule.limit_per_order"]


def test_a_limit_per_order_is_kept_where_it_counts() -> None:
    for rule in (
        Rule(Kind.AMOUNT_OFF, Level.ITEM, amount=500, limit_per_order=2),
        Rule(Kind.BUNDLE, Level.ITEM, amount=500, get_quantity=2, limit_per_order=2),
        Rule(
            Kind.BUY_X_GET_Y,
            Level.ITEM,
            percent_bps=BPS,
            buy_quantity=1,
            get_quantity=1,
            limit_per_order=2,
        ),
    ):
        assert validate_offer(Offer("p", "Limited", rule, currency="USD")).rule == rule


def test_the_schedule_is_where_now_is_against_the_window() -> None:
    """In the offer's own zone the window opens and closes at one instant everywhere: 09:00 in
    New York is 14:00 UTC in December. Without a zone it is read at each sale's location, so it
    is scheduled until it opened at the first location anywhere (UTC+14) and finished once it
    closed at the last (UTC-12)."""
    new_york = Conditions(
        starts_at=datetime(2026, 12, 5, 9),
        ends_at=datetime(2026, 12, 6, 9),
        time_zone="America/New_York",
    )
    at = lambda *t: datetime(*t, tzinfo=UTC)  # noqa: E731
    assert schedule_of(new_york, at(2026, 12, 5, 13, 59)) is Schedule.SCHEDULED
    assert schedule_of(new_york, at(2026, 12, 5, 14)) is Schedule.RUNNING
    assert schedule_of(new_york, at(2026, 12, 6, 13, 59)) is Schedule.RUNNING
    assert schedule_of(new_york, at(2026, 12, 6, 14)) is Schedule.FINISHED  # the end is exclusive
    anywhere = Conditions(starts_at=datetime(2026, 12, 5), ends_at=datetime(2026, 12, 6))
    assert schedule_of(anywhere, at(2026, 12, 4, 9, 59)) is Schedule.SCHEDULED
    assert schedule_of(anywhere, at(2026, 12, 4, 10)) is Schedule.RUNNING  # midnight at UTC+14
    assert schedule_of(anywhere, at(2026, 12, 6, 11, 59)) is Schedule.RUNNING  # 23:59 at UTC-12
    assert schedule_of(anywhere, at(2026, 12, 6, 12)) is Schedule.FINISHED
    # One side open, or no window at all: never scheduled or never finished.
    assert schedule_of(Conditions(), at(1999, 1, 1)) is Schedule.RUNNING
    assert schedule_of(Conditions(ends_at=datetime(2026, 1, 1)), at(1999, 1, 1)) is Schedule.RUNNING
    assert (
        schedule_of(Conditions(starts_at=datetime(2026, 1, 1)), at(2099, 1, 1)) is Schedule.RUNNING
    )
