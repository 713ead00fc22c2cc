"""Locations and stock: /v1/locations, /v1/inventory."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from google.protobuf.field_mask_pb2 import FieldMask
from pydantic import AfterValidator, Field, StrictBool, StrictInt
from pydantic_core import PydanticCustomError

from pos.inventory.v1 import inventory_pb2
from pos_gateway import examples as ex
from pos_gateway.clients import Services
from pos_gateway.convert import to_json, to_model, to_page
from pos_gateway.problems import Problem
from pos_gateway.routes.common import (
    COUNTRY_DESCRIPTION,
    CREATE,
    INT32,
    INT64,
    TIME_SCHEMA,
    UNKNOWN_LOCATION,
    AssignedCountry,
    Body,
    BodyTime,
    Currency,
    Cursor,
    IfMatch,
    Limit,
    Patch,
    PathId,
    Sku,
    UpdatedSince,
    example,
    expected_version,
    op,
    patched,
    refused_cursor,
    request_id,
    services,
    timestamp,
    version_checked,
)
from pos_gateway.routes.settlement import location_of
from pos_gateway.schemas.stock import (
    SKUS_ASKED_MAX,
    Adjusted,
    Location,
    LocationList,
    StockLevelList,
    TaxRateKey,
)
from pos_kit.zones import is_iana_zone

router = APIRouter(prefix="/v1", tags=["locations and inventory"])
Svc = Annotated[Services, Depends(services)]


class AddressIn(Body):
    line1: str = Field("", max_length=200, examples=["1 Main St"])
    line2: str = Field("", max_length=200)
    city: str = Field("", max_length=200, examples=["Springfield"])
    region: str = Field("", max_length=200, examples=["IL"])
    postal_code: str = Field("", max_length=20, examples=["62701"])
    country: Annotated[
        str,
        Field(
            pattern=r"^([A-Z]{2})?$",
            max_length=2,
            description=f"{COUNTRY_DESCRIPTION}; empty: none",
            examples=["US"],
        ),
        AssignedCountry,
    ] = ""


class GeoIn(Body):
    # A finite number (Python's JSON reader takes NaN and Infinity): NaN fails every
    # comparison, and was told it must be at most 90 rather than what is wrong with it.
    latitude: float = Field(ge=-90, le=90, allow_inf_nan=False, examples=[39.7817])
    longitude: float = Field(ge=-180, le=180, allow_inf_nan=False, examples=[-89.6501])

    def pb(self) -> inventory_pb2.GeoPoint:
        return inventory_pb2.GeoPoint(latitude=self.latitude, longitude=self.longitude)


# A tax rate in a map of them: a JSON number, as every integer of a body is (a map's values are
# not the fields Body's own check reads, so strict here: `false` or "200" is no rate).
RateBps = Annotated[StrictInt, Field(ge=0, le=10_000, json_schema_extra=INT32)]


class LocationTaxIn(Body):
    name: str = Field(min_length=1, max_length=32, examples=["state"])
    rate_bps: int = Field(ge=0, le=10_000, json_schema_extra=INT32, description="625 = 6.25 %")
    rates_bps: dict[TaxRateKey, RateBps] = Field(
        default_factory=dict, max_length=50, description="Per tax category"
    )
    compound: StrictBool = False

    def pb(self) -> inventory_pb2.LocationTax:
        return inventory_pb2.LocationTax(
            name=self.name, rate_bps=self.rate_bps, rates_bps=self.rates_bps, compound=self.compound
        )


def _iana_zone(name: str) -> str:
    """Checked here as well as by the inventory service, so a body with other bad fields
    names this one too (every field error at once). A zone of the IANA database, not any
    file ZoneInfo opens (`localtime`, `right/UTC`), as the service checks."""
    if not is_iana_zone(name):
        raise PydanticCustomError("time_zone", "must be an IANA time zone, e.g. Europe/Paris")
    return name


class LocationIn(Body):
    model_config = example(
        {
            "name": "Harbor Store",
            "currency": "USD",
            "tax_rate_bps": 700,
            "address": {"line1": "9 Pier Rd", "city": "Portland", "country": "US"},
            "geo": {"latitude": 45.52, "longitude": -122.68},
            "time_zone": "America/Los_Angeles",
            "tax_rates_bps": {"food": 0},
            "pickup_enabled": True,
            "ship_enabled": True,
        }
    )

    name: str = Field(min_length=1, max_length=200, examples=["Main St store"])
    currency: Currency
    tax_rate_bps: int = Field(
        0, ge=0, le=10_000, json_schema_extra=INT32, description="825 = 8.25 %"
    )
    kind: Literal["store", "warehouse"] = "store"
    address: AddressIn | None = None
    geo: GeoIn | None = None
    time_zone: Annotated[
        str, Field(max_length=64, examples=["America/Chicago"]), AfterValidator(_iana_zone)
    ] = "UTC"
    tax_rates_bps: dict[TaxRateKey, RateBps] = Field(
        default_factory=dict,
        max_length=50,
        description='Basis points per tax category, e.g. {"food": 200}; others pay tax_rate_bps',
    )
    pickup_enabled: bool = False
    ship_enabled: bool = False
    prices_include_tax: StrictBool = Field(
        False,
        description="Shelf prices here include their tax (VAT): a sale shows the tax contained "
        "instead of adding it",
    )
    taxes: list[LocationTaxIn] = Field(
        default_factory=list,
        max_length=5,
        description="More than one tax on a sale here (a state's, then a city's), each charged "
        "on its own and rounded per line; when set they replace tax_rate_bps and "
        "tax_rates_bps. A `compound` tax is charged on the price plus the taxes before it (not "
        "the first). Names differ",
    )

    def pb(self) -> inventory_pb2.CreateLocationRequest:
        request = inventory_pb2.CreateLocationRequest(
            request_id=request_id(),
            name=self.name,
            currency=self.currency,
            tax_rate_bps=self.tax_rate_bps,
            kind=LOCATION_KINDS[self.kind],
            time_zone=self.time_zone,
            tax_rates_bps=self.tax_rates_bps,
            pickup_enabled=self.pickup_enabled,
            ship_enabled=self.ship_enabled,
            prices_include_tax=self.prices_include_tax,
            taxes=[t.pb() for t in self.taxes],
        )
        if self.address is not None:
            request.address.CopyFrom(inventory_pb2.Address(**self.address.model_dump()))
        if self.geo is not None:
            request.geo.CopyFrom(self.geo.pb())
        return request


LOCATION_KINDS = {
    "store": inventory_pb2.LOCATION_KIND_STORE,
    "warehouse": inventory_pb2.LOCATION_KIND_WAREHOUSE,
}


REASONS = {
    "received": inventory_pb2.ADJUSTMENT_REASON_RECEIVED,
    "sold": inventory_pb2.ADJUSTMENT_REASON_SOLD,
    "returned": inventory_pb2.ADJUSTMENT_REASON_RETURNED,
    "damaged": inventory_pb2.ADJUSTMENT_REASON_DAMAGED,
    "correction": inventory_pb2.ADJUSTMENT_REASON_CORRECTION,
    "lost": inventory_pb2.ADJUSTMENT_REASON_LOST,
}
Reason = Literal["received", "sold", "returned", "damaged", "correction", "lost"]
OccurredAt = Field(
    None,
    json_schema_extra=TIME_SCHEMA,
    description="When it happened (RFC 3339 with an offset); unset means now, and so does a "
    "time ahead of now (accepted up to 5 minutes: a till's clock running fast), recorded at the "
    "server's clock. A change from before the latest physical count is recorded but changes "
    "nothing: the count saw it.",
)


def _never_zero(schema: dict[str, Any]) -> None:
    INT64(schema)
    schema["not"] = {"const": 0}


class AdjustmentIn(Body):
    model_config = example(
        {"sku": "TEE-BLK-M", "location_id": ex.LOCATION_ID, "delta": 24, "reason": "received"}
    )

    sku: Sku
    location_id: str = Field(min_length=1, max_length=64)
    delta: int = Field(
        ge=-1_000_000_000,
        le=1_000_000_000,
        description="Signed change of on-hand units; never zero",
        json_schema_extra=_never_zero,
    )
    reason: Reason
    occurred_at: BodyTime | None = OccurredAt
    note: str = Field("", max_length=500)


@router.post(
    "/locations",
    **op("inventory:write", "Create a location", CREATE, example=ex.LOCATION, status=201),
)
async def create_location(body: LocationIn, svc: Svc) -> Location:
    """`time_zone` must be an IANA time zone name (`America/Chicago`), else a 400. A sale of a
    product whose tax category is a key of `tax_rates_bps` is taxed at that rate, any other
    at `tax_rate_bps`. A merchant has at most 1,000 locations: one more is a 409
    `location_limit_reached`."""
    answer = await svc.inventory.CreateLocation(body.pb())
    return to_model(Location, answer.location)


_LOCATION_STATUSES = {
    "": inventory_pb2.LOCATION_STATUS_UNSPECIFIED,
    "active": inventory_pb2.LOCATION_STATUS_ACTIVE,
    "inactive": inventory_pb2.LOCATION_STATUS_INACTIVE,
}


class LocationPatch(Patch):
    model_config = example({"pickup_enabled": True, "tax_rate_bps": 875})
    CLEARABLE = frozenset({"geo"})

    name: str | None = Field(None, min_length=1, max_length=200, examples=["Harbor Store"])
    address: AddressIn | None = Field(None, description="Replaced whole")
    geo: GeoIn | None = Field(None, description="Replaced whole; null clears it")
    time_zone: Annotated[
        str | None, Field(max_length=64, examples=["America/Chicago"]), AfterValidator(_iana_zone)
    ] = None
    tax_rate_bps: int | None = Field(
        None, ge=0, le=10_000, json_schema_extra=INT32, description="825 = 8.25 %"
    )
    tax_rates_bps: dict[TaxRateKey, RateBps] | None = Field(
        None, max_length=50, description="Replaced whole; {} clears them"
    )
    prices_include_tax: StrictBool | None = None
    taxes: list[LocationTaxIn] | None = Field(
        None, max_length=5, description="Replaced whole; [] goes back to tax_rate_bps"
    )
    pickup_enabled: StrictBool | None = Field(
        None, description="Customers may collect online orders here"
    )
    ship_enabled: StrictBool | None = Field(None, description="Online orders may ship from here")
    status: Literal["active", "inactive"] | None = Field(
        None, description="`inactive` closes the location; `active` reopens it"
    )

    def pb(self) -> inventory_pb2.UpdateLocationRequest:
        request = inventory_pb2.UpdateLocationRequest(
            name=self.name or "",
            time_zone=self.time_zone or "",
            tax_rate_bps=self.tax_rate_bps or 0,
            tax_rates_bps=self.tax_rates_bps or {},
            prices_include_tax=bool(self.prices_include_tax),
            taxes=[t.pb() for t in self.taxes or []],
            pickup_enabled=bool(self.pickup_enabled),
            ship_enabled=bool(self.ship_enabled),
            status=_LOCATION_STATUSES[self.status or ""],
        )
        if self.address is not None:
            request.address.CopyFrom(inventory_pb2.Address(**self.address.model_dump()))
        if self.geo is not None:
            request.geo.CopyFrom(self.geo.pb())
        return request


@router.patch(
    "/locations/{location_id}",
    **op("inventory:write", "Update a location", (404, 409, 412),
         example={**ex.LOCATION, "version": 2}),
)  # fmt: skip
async def update_location(
    location_id: PathId, body: LocationPatch, svc: Svc, response: Response, if_match: IfMatch = None
) -> Location:
    """Only the fields sent change; an address, a geo point, rates or taxes are replaced whole
    (`geo: null` clears the point; null on any other field is a 400 naming it). The tax
    fields price every sale from the change on (an order priced before keeps its tax);
    `time_zone` is the day of the location's settlement report and the hours of the offers
    that name no `time_zone` of their own (an offer's own zone wins). A
    location's `currency` and `kind` never change.
    `pickup_enabled` and `ship_enabled` decide what online orders may do here: an order's
    pickup at a location without `pickup_enabled`, or its shipment from a named location
    without `ship_enabled`, is refused (400), and sourcing ships only from locations with
    `ship_enabled`. `status: inactive` closes the location (a store shut for good): a sale,
    an order or a cart selling there, a reservation, a transfer into it or a `received` or
    `returned` adjustment there is a 409 `location_inactive` naming the field that chose it,
    an order's
    pickup at it or shipment from it a 400; it is never sourced, nor listed by
    `/v1/inventory/nearby`, nor counted in `/v1/inventory/availability`. Its stock can still
    be counted, written off and transferred out, its orders fulfilled and returned;
    `status: active` reopens it. Send `If-Match: "<version>"` to change only the version you
    saw: a stale one is a 412 with `current_version`. Each change bumps `version`; fields
    sent as they already are change nothing."""
    sent = patched(body)
    request = body.pb()
    request.request_id = request_id()
    request.id = location_id
    request.expected_version = expected_version(if_match)
    request.update_mask.CopyFrom(FieldMask(paths=sorted(sent)))
    answer = await version_checked(svc.inventory.UpdateLocation(request))
    response.headers["ETag"] = f'"{answer.location.version}"'
    return to_model(Location, answer.location)


@router.get(
    "/locations/{location_id}",
    **op("inventory:read", "Get a location", (404,), example=ex.LOCATION),
)
async def get_location(location_id: PathId, svc: Svc, response: Response) -> Location:
    """With its `version` (also the `ETag`), for an `If-Match` on a change."""
    location = await location_of(svc, location_id)
    response.headers["ETag"] = f'"{location.version}"'
    return to_model(Location, location)


@router.get("/locations", **op("inventory:read", "List locations", example=ex.page(ex.LOCATION)))
async def list_locations(
    svc: Svc,
    limit: Limit = 50,
    cursor: Cursor = None,
    updated_since: UpdatedSince = None,
    status: Annotated[
        Literal["active", "inactive"] | None,
        Query(description="Only the locations in this status (not with `updated_since`)"),
    ] = None,
) -> LocationList:
    """By id (of one `status`, if given; a cursor is good only with the status it was made
    with), or with `updated_since` the change feed (oldest change first; every status: a feed
    of one would never tell you a location left it, so `status` with `updated_since` is a 400
    naming `status`, as for products)."""
    if status is not None and updated_since is not None:
        reason = "cannot be combined with updated_since"
        raise Problem(
            400, "invalid_request", f"status {reason}", [{"field": "status", "reason": reason}]
        )
    request = inventory_pb2.ListLocationsRequest(
        page_size=limit, page_token=cursor or "", status=_LOCATION_STATUSES[status or ""]
    )
    if updated_since is not None:
        request.updated_since.CopyFrom(timestamp(updated_since))
    answer = await svc.inventory.ListLocations(request)
    return to_page(LocationList, answer.locations, answer.next_page_token)


@router.get(
    "/inventory",
    **op("inventory:read", "Stock levels of SKUs", (404,), example=ex.listed(ex.STOCK_LEVEL)),
)
async def stock_levels(
    svc: Svc,
    sku: Annotated[
        list[Sku] | None,
        Query(
            max_length=SKUS_ASKED_MAX,
            description="The SKUs to read; none: every SKU at `location_id`, in pages",
        ),
    ] = None,
    location_id: Annotated[str | None, Query(max_length=64, description=UNKNOWN_LOCATION)] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> StockLevelList:
    """With `sku`: one level per SKU and location that has it, at most 200 SKUs at each of a
    merchant's 1,000 locations at most, in one answer (`next_cursor` null). With
    `location_id` alone: every level at that location, a store's whole stock, by SKU in pages
    (`limit`, `cursor`). Neither is a 400 naming `sku`; a `cursor` with `sku` a 400 naming
    `cursor` (those answers are never paged)."""
    if sku and cursor:
        raise refused_cursor()
    if not sku and not location_id:
        reason = "give SKUs, or a location_id to list its stock"
        raise Problem(400, "invalid_request", reason, [{"field": "sku", "reason": reason}])
    request = inventory_pb2.GetStockLevelsRequest(skus=sku or [], location_id=location_id or "")
    if not sku:
        request.page_size, request.page_token = limit, cursor or ""
    answer = await svc.inventory.GetStockLevels(request)
    return to_page(StockLevelList, answer.levels, answer.next_page_token)


@router.post(
    "/inventory/adjustments",
    **op(
        "inventory:write",
        "Adjust stock with a reason",
        (404, *CREATE),
        example=ex.ADJUSTED,
        status=201,
    ),
)
async def adjust_stock(body: AdjustmentIn, svc: Svc) -> Adjusted:
    """Answers the new level, with the ledger `entry` the change wrote. The reason says which
    way the units went: `received` and `returned` add units (a positive `delta`), `sold`,
    `damaged` and `lost` take them away (negative), `correction` either; the other sign is a
    400 naming `delta`. A location the merchant closed (`status: inactive`) takes no more
    units in: `received` (a delivery) and `returned` (goods brought back) there are a 409
    `location_inactive` naming `location_id`, as a transfer into it is; `correction`, either
    way, still sets its stock right (as a count does), and `damaged`, `lost` and `sold` still
    take its units off. A decrease takes only
    units on hand that no reservation holds: more is a 409 `insufficient_stock` naming `delta`
    (with `on_hand` and `available`), and nothing is written; release a hold to write its
    units off. A decrease sent with an `occurred_at` already past reports something that
    happened and is recorded whatever it leaves (below zero, or below what is held); one
    stamped ahead of now (accepted up to 5 minutes: a till's clock running fast) has not
    happened yet and is checked as one sent without it."""
    request = inventory_pb2.AdjustStockRequest(
        request_id=request_id(),
        sku=body.sku,
        location_id=body.location_id,
        delta=body.delta,
        reason=REASONS[body.reason],
        note=body.note,
    )
    if body.occurred_at is not None:
        request.occurred_at.CopyFrom(timestamp(body.occurred_at, "occurred_at"))
    answer = await svc.inventory.AdjustStock(request)
    return Adjusted.model_validate({**to_json(answer.level), "entry": to_json(answer.entry)})
