"""Inventory rules in plain Python."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pos_inventory.domain.catalog import validate_product
from pos_inventory.domain.model import (
    MAX_SKUS_PER_CALL,
    Address,
    Adjustment,
    GeoPoint,
    Location,
    Reason,
    StockLevel,
    geo_violations,
    validate_adjustment,
    validate_location,
    validate_sku_list,
)
from pos_kit.errors import InvalidArgument
from pos_kit.money import Money


def _fields(err: pytest.ExceptionInfo[InvalidArgument]) -> set[str]:
    return {v.field for v in err.value.violations}


def test_a_location_needs_a_name_a_known_currency_and_a_rate_within_100_percent() -> None:
    validate_location(Location("", "Main St", "USD", 0))
    validate_location(Location("", "Main St", "JPY", 10_000, time_zone="Asia/Tokyo"))
    with pytest.raises(InvalidArgument) as err:
        validate_location(Location("", "  ", "XXQ", 10_001))
    assert _fields(err) == {"name", "currency", "tax_rate_bps"}
    with pytest.raises(InvalidArgument) as err:
        validate_location(Location("", "Main St", "usd", -1))
    assert _fields(err) == {"currency", "tax_rate_bps"}


@pytest.mark.parametrize(
    "name", ["localtime", "posixrules", "Factory", "right/UTC", "posix/Europe/Paris", "Mars/X"]
)
def test_a_time_zone_is_an_iana_zone_not_any_file_zoneinfo_opens(name: str) -> None:
    """The tz database's own files beside its zones (the host's `localtime`, `posixrules`,
    `Factory`, the `posix/` and `right/` copies) open as zones, and were accepted as one."""
    with pytest.raises(InvalidArgument) as err:
        validate_location(Location("", "Main St", "USD", 0, time_zone=name))
    assert _fields(err) == {"time_zone"}
    for zone in ("Europe/Paris", "America/Argentina/Buenos_Aires", "UTC", "Etc/GMT+5"):
        validate_location(Location("", "Main St", "USD", 0, time_zone=zone))


def test_a_location_in_detail_is_checked_field_by_field() -> None:
    bad = Location(
        "",
        "Depot",
        "USD",
        0,
        time_zone="Mars/Olympus",
        geo=GeoPoint(91.0, -181.0),
        tax_rates_bps={"food": 200, "Bad Name": 10, "luxury": 20_000},
        address=Address(country="usa"),
    )
    with pytest.raises(InvalidArgument) as err:
        validate_location(bad)
    assert _fields(err) == {
        "time_zone",
        "geo.latitude",
        "geo.longitude",
        "tax_rates_bps.Bad Name",
        "tax_rates_bps.luxury",
        "address.country",
    }
    good = Location("", "Depot", "USD", 825, tax_rates_bps={"food": 200})
    assert (good.tax_rate_for("food"), good.tax_rate_for("clothing")) == (200, 825)


@pytest.mark.parametrize("code", ["ZZ", "AA", "QM", "QZ", "XA", "XK", "XZ", "UK", "EU"])
def test_a_location_address_names_a_country_iso_has_assigned(code: str) -> None:
    """Two capitals are not yet a country: private-use and unassigned codes were taken."""
    with pytest.raises(InvalidArgument) as err:
        validate_location(Location("", "Depot", "USD", 0, address=Address(country=code)))
    assert [(v.field, v.description) for v in err.value.violations] == [
        ("address.country", "must be an ISO 3166-1 alpha-2 code assigned to a country, e.g. US")
    ]
    for good in ("GB", "US", "AX", "CW", ""):  # none given is still no country
        validate_location(Location("", "Depot", "USD", 0, address=Address(country=good)))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_a_position_that_is_not_a_finite_number_is_named_as_such(bad: float) -> None:
    """NaN fails every comparison, so a range check alone told the caller a NaN latitude
    "must be between -90 and 90": true, but not what was wrong with it."""
    for point, field in ((GeoPoint(bad, 4.9), "latitude"), (GeoPoint(52.4, bad), "longitude")):
        assert [(v.field, v.description) for v in geo_violations(point, "near")] == [
            (f"near.{field}", "must be a finite number")
        ]
        with pytest.raises(InvalidArgument) as err:
            validate_location(Location("", "Depot", "USD", 0, geo=point))
        assert [(v.field, v.description) for v in err.value.violations] == [
            (f"geo.{field}", "must be a finite number")
        ]
    assert geo_violations(GeoPoint(52.4, 4.9), "near") == []


def test_a_product_needs_a_sku_a_name_and_a_price_that_is_not_negative() -> None:
    validate_product("MUG-01", "Mug", Money(0, "USD"))
    with pytest.raises(InvalidArgument) as err:
        validate_product("has space", "", Money(-1, "USD"))
    assert _fields(err) == {"sku", "name", "price.amount"}
    with pytest.raises(InvalidArgument) as err:
        validate_product("", "Mug", Money(100, "USD"))
    assert _fields(err) == {"sku"}


def test_an_adjustment_changes_something_at_a_named_place() -> None:
    validate_adjustment(Adjustment("SKU", "loc_1", -3, Reason.DAMAGED))
    with pytest.raises(InvalidArgument) as err:
        validate_adjustment(Adjustment("", "", 0, Reason.RECEIVED))
    assert _fields(err) == {"sku", "location_id", "delta"}
    with pytest.raises(InvalidArgument) as err:
        validate_adjustment(Adjustment("SKU", "loc_1", 2_000_000_000, Reason.RECEIVED))
    assert _fields(err) == {"delta"}
    validate_adjustment(Adjustment("SKU", "loc_1", 1, Reason.RETURNED, "ret_" + "x" * 60))
    with pytest.raises(InvalidArgument) as err:
        validate_adjustment(Adjustment("SKU", "loc_1", 1, Reason.RETURNED, "ret_" + "x" * 61))
    assert _fields(err) == {"reference"}


@pytest.mark.parametrize(
    ("reason", "delta"),
    [(Reason.RECEIVED, -1), (Reason.RETURNED, -4), (Reason.DAMAGED, 1), (Reason.LOST, 2),
     (Reason.SOLD, 3)],
)  # fmt: skip
def test_a_reason_says_which_way_the_units_went(reason: Reason, delta: int) -> None:
    validate_adjustment(Adjustment("SKU", "loc_1", -delta, reason))
    with pytest.raises(InvalidArgument) as err:
        validate_adjustment(Adjustment("SKU", "loc_1", delta, reason))
    assert _fields(err) == {"delta"}


def test_a_correction_goes_either_way() -> None:
    validate_adjustment(Adjustment("SKU", "loc_1", 5, Reason.CORRECTION))
    validate_adjustment(Adjustment("SKU", "loc_1", -5, Reason.CORRECTION))


def test_only_a_late_fact_may_drive_stock_negative() -> None:
    # A sale keyed in by hand is a request to take units, reference or not: the sales of
    # orders come from their events, never as adjustments.
    now = datetime(2026, 12, 5, 12, tzinfo=UTC)
    assert not Adjustment("SKU", "loc_1", -1, Reason.SOLD, "ord_1").may_go_negative(now)
    assert not Adjustment("SKU", "loc_1", -1, Reason.SOLD).may_go_negative(now)
    assert not Adjustment("SKU", "loc_1", -1, Reason.DAMAGED, "ord_1").may_go_negative(now)
    late = datetime(2026, 12, 1, tzinfo=UTC)
    assert Adjustment("SKU", "loc_1", -1, Reason.DAMAGED, occurred_at=late).may_go_negative(now)
    assert Adjustment("SKU", "loc_1", -1, Reason.DAMAGED, occurred_at=now).may_go_negative(now)
    # A stamp a little ahead (a till's clock running fast) reports nothing yet: as now.
    ahead = now + timedelta(minutes=2)
    assert not Adjustment("SKU", "loc_1", -1, Reason.DAMAGED, occurred_at=ahead).may_go_negative(
        now
    )


def test_available_is_on_hand_less_reserved_and_never_below_zero() -> None:
    assert StockLevel("SKU", "loc_1", 10, 3).available == 7
    assert StockLevel("SKU", "loc_1", -2, 0).available == 0
    assert StockLevel("SKU", "loc_1", 2, 5).available == 0


def test_a_sku_list_is_neither_empty_nor_unbounded() -> None:
    validate_sku_list(["A"])
    with pytest.raises(InvalidArgument) as err:
        validate_sku_list([])
    assert _fields(err) == {"skus"}
    with pytest.raises(InvalidArgument):
        validate_sku_list([f"S{i}" for i in range(MAX_SKUS_PER_CALL + 1)])
