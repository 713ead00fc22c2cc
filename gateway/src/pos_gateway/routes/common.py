"""What every route module shares: request models' building blocks and list answers."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, TypeVar, get_args

import grpc
from fastapi import Depends, Header, Path, Query, Request
from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    StringConstraints,
    ValidationInfo,
    field_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError

from pos.common.v1 import money_pb2
from pos_gateway import registers, staff
from pos_gateway.actions import principal_of, signed_in
from pos_gateway.auth import require
from pos_gateway.clients import Services
from pos_gateway.idempotency import REDACTED, SHOWN_ONCE
from pos_gateway.problems import Problem
from pos_kit.context import request_id_var
from pos_kit.countries import NOT_A_COUNTRY, is_country
from pos_kit.errors import InvalidArgument
from pos_kit.grpc_client import read_error
from pos_kit.money import MINOR_UNITS
from pos_kit.paging import ChangeCursor, decode_change, decode_token, encode_change, invalid_token
from pos_kit.text import CARD_NUMBER_NOT_ALLOWED, CARD_NUMBER_REASON, text_problem

T = TypeVar("T")

# No text in the API may hold NUL (PostgreSQL can't store it, and no name or id needs it) or a
# card number (PCI DSS: card data never lands here): the kit's text rules (`pos_kit.text`). The
# edge applies them to URLs and query strings, Body models to every string of a JSON body; the
# document says NUL on every string.
NO_NUL = "^[^\\u0000]*$"


def _holds_models(annotation: Any) -> bool:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return True
    return any(_holds_models(arg) for arg in get_args(annotation))


def _text_refusal(name: str, value: Any, maps_are_models: bool) -> str | None:
    """The text rule `value` breaks: the string itself, each string of a list, each key and
    string value of a map. A dict that is a nested model is left to that model, which names
    its own fields."""
    if isinstance(value, str):
        return text_problem(name, value)
    strings: list[Any] = []
    if isinstance(value, list):
        strings = value
    elif isinstance(value, dict) and not maps_are_models:
        strings = [*value.keys(), *value.values()]
    reasons = [text_problem(name, s) for s in strings if isinstance(s, str)]
    if CARD_NUMBER_REASON in reasons:
        return CARD_NUMBER_REASON
    return next((r for r in reasons if r is not None), None)


class Body(BaseModel):
    # Unknown fields are refused so a typo never silently does nothing.
    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _json_types(cls, value: Any, info: ValidationInfo) -> Any:
        # pydantic's lax mode reads `false` as 0 and `"3"` as 3 for an integer field, and
        # `"yes"` or 1 as true for a boolean one. JSON tells these apart, and a quantity sent as
        # a string or a tax rate of `true` is a client bug worth a 400, not a guess.
        field = cls.model_fields.get(info.field_name or "")
        if field is None or value is None:
            return value
        if field.annotation in (int, int | None):
            if isinstance(value, bool):
                raise ValueError("must be an integer, not a boolean")
            if isinstance(value, str):
                raise ValueError("must be a JSON number, not a string")
        elif field.annotation in (float, float | None):
            if isinstance(value, bool):
                raise ValueError("must be a number, not a boolean")
            if isinstance(value, str):
                raise ValueError("must be a JSON number, not a string")
        elif field.annotation in (bool, bool | None) and not isinstance(value, bool):
            raise ValueError("must be true or false")
        return value

    @field_validator("*", mode="before")
    @classmethod
    def _text_rules(cls, value: Any, info: ValidationInfo) -> Any:
        name = info.field_name or ""
        field = cls.model_fields.get(name)
        refusal = _text_refusal(name, value, field is not None and _holds_models(field.annotation))
        if refusal == CARD_NUMBER_REASON:
            # Its own error type: the problem's code becomes `card_number_not_allowed`.
            raise PydanticCustomError(CARD_NUMBER_NOT_ALLOWED, CARD_NUMBER_REASON)
        if refusal is not None:
            raise ValueError(refusal)
        return value


class Patch(Body):
    """A PATCH body: each field optional, left out to keep it. Null is taken only by the fields
    `CLEARABLE` names (JSON merge-patch: null removes the value); on any other it is a 400
    naming the field, as every other field has an empty value of its own to send instead. The
    document says the same: only those fields are nullable there."""

    CLEARABLE: ClassVar[frozenset[str]] = frozenset()

    @field_validator("*", mode="before")
    @classmethod
    def _null_clears(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and info.field_name not in cls.CLEARABLE:
            raise PydanticCustomError("null_not_allowed", "must not be null")
        return value

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        found = handler.resolve_ref_schema(schema)
        for name, field in found.get("properties", {}).items():
            if name not in cls.CLEARABLE:
                _not_nullable(field)
        return schema


def _not_nullable(field: dict[str, Any]) -> None:
    """A field's schema without its null branch (and without the null default it implies)."""
    branches = [b for b in field.get("anyOf", []) if b != {"type": "null"}]
    if "anyOf" in field:
        del field["anyOf"]
        if len(branches) == 1:
            field.update({k: v for k, v in branches[0].items() if k not in field})
        else:
            field["anyOf"] = branches
    if "default" in field and field["default"] is None:
        del field["default"]


def patched(body: Patch) -> dict[str, Any]:
    """The fields a PATCH sent (a null only on a field the body's CLEARABLE names: the model
    refuses any other): at least one, else a 400 whose `errors[]` names `body`, the field at
    fault (the catalogue's `body` for the body as a whole), as every other `invalid_request`
    names one."""
    sent = body.model_dump(exclude_unset=True)
    if not sent:
        raise Problem(
            400, "invalid_request", "send at least one field to change",
            [{"field": "body", "reason": "must name at least one field to change"}],
        )  # fmt: skip
    return sent


def example(body: dict[str, Any]) -> ConfigDict:
    """A request model's config with the example shown in the document."""
    return ConfigDict(extra="forbid", json_schema_extra={"examples": [body]})


def _integer_format(name: str) -> Callable[[dict[str, Any]], None]:
    def add(schema: dict[str, Any]) -> None:
        # On the integer itself, or on the integer branch of a nullable one.
        for branch in (schema, *schema.get("anyOf", [])):
            if branch.get("type") == "integer":
                branch["format"] = name

    return add


# `json_schema_extra` of integer fields: the document says which integer type holds them.
INT64 = _integer_format("int64")
INT32 = _integer_format("int32")
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

SKU = r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$"


def _not_blank(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("blank", "must hold more than spaces")
    return value


# A text a field requires: not spaces only (the 400 names the field).
NotBlank = AfterValidator(_not_blank)
# Kept without its leading and trailing spaces, as the inventory service keeps a location's
# and a product's name: `" Supervisor "` is the name `Supervisor` and reads as it.
Trimmed = AfterValidator(str.strip)
# A name a person reads on a receipt, in a list or in the audit log: not spaces only, and
# trimmed on create and on rename.
Name = Annotated[str, Field(min_length=1, max_length=100), NotBlank, Trimmed]

# Said of every filter that names a location: another merchant's id is one you do not have.
UNKNOWN_LOCATION = (
    "A location of yours to limit the answer to; one you do not have is a 404 "
    "`resource_missing` problem"
)
# Said of a body's location: where the thing made belongs.
LOCATION_OF_YOURS = (
    "The location of yours it belongs to; one you do not have is a 404 `resource_missing` problem"
)
Sku = Annotated[
    str,
    Field(
        pattern=SKU,
        max_length=64,
        description="1 to 64 letters, digits, '.', '_', '-' or '/'; the first a letter or digit",
        examples=["TEE-BLK-M"],
    ),
]


def _supported(code: str) -> str:
    if code not in MINOR_UNITS:
        raise ValueError("must be the ISO 4217 code of a supported currency")
    return code


# The currencies the platform supports, named in the document: a partner learns them there,
# not from a 400 (the same table the services check money against).
Currency = Annotated[
    str,
    AfterValidator(_supported),
    Field(
        description="ISO 4217 code of a supported currency",
        examples=["USD"],
        json_schema_extra={"enum": sorted(MINOR_UNITS)},
    ),
]


def _country(code: str) -> str:
    if code and not is_country(code):
        raise PydanticCustomError("country", NOT_A_COUNTRY)
    return code


# Two capitals are not yet a country (`ZZ`, `XA` are private use): checked here as well as by
# the service that keeps the address, so a body with other bad fields names this one too.
AssignedCountry = AfterValidator(_country)
COUNTRY_DESCRIPTION = "ISO 3166-1 alpha-2 code assigned to a country"


class MoneyIn(Body):
    amount: int = Field(
        ge=0, le=10**12, json_schema_extra=INT64, description="Integer minor units: 2599 = 25.99"
    )
    currency: Currency

    def pb(self) -> money_pb2.Money:
        return money_pb2.Money(amount=self.amount, currency=self.currency)


# Every id the services mint is a prefix and 26 characters (pos_kit.ids, 35 at most today); 64
# is the bound ids have in bodies too. A longer one is a 400 naming the parameter: no resource
# can have it. A shorter made-up one is looked up, and is a 404 like another merchant's.
ID_MAX = 64
PathId = Annotated[str, Path(min_length=1, max_length=ID_MAX, description="The resource's id")]
QueryId = Annotated[str, StringConstraints(max_length=ID_MAX)]

Limit = Annotated[int, Query(ge=1, le=200, description="Page size (default 50, max 200)")]
Cursor = Annotated[
    str | None,
    Query(
        max_length=512,
        description="next_cursor of the last page, sent with the same filters (another "
        "filter with it is a 400 naming `cursor`; `limit` may change)",
    ),
]


def refused_cursor() -> Problem:
    """The 400 naming `cursor` for a cursor the list did not give (the kit's words, as a
    service's refusal of its `page_token` reads at the gateway)."""
    refusal = invalid_token("cursor")
    errors = [{"field": v.field, "reason": v.description} for v in refusal.violations]
    # The public code of any invalid request, as a service's refusal reads at the gateway.
    return Problem(400, "invalid_request", refusal.message, errors)


def bound(scope: str, *filters: object) -> str:
    """The scope of a list's cursors as filtered by `filters` (as the services bind theirs,
    `pos_kit.paging.page_scope`): a cursor used with other filters is `refused_cursor()`,
    never read as a position in a list it was not given for."""
    if all(value is None for value in filters):
        return scope
    text = "\x00".join("" if value is None else str(value) for value in filters)
    return f"{scope}|{hashlib.blake2b(text.encode(), digest_size=8).hexdigest()}"


def cursor_after(cursor: str | None, scope: str) -> str:
    """The key a list of the gateway's own resumes after ("" for the first page): the cursor
    is the kit's page token of the list `scope` names (`encode_token(key, scope)` made it), as
    the services' lists give; any other is `refused_cursor()`."""
    try:
        return decode_token(cursor or "", "cursor", scope) or ""
    except InvalidArgument:
        raise refused_cursor() from None


_RFC3339 = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$"


# "2026-01-31T09:00:00.123456789+05:30" is 35 characters; more is digits past any clock's.
TIME_MAX = 64


def _time_max(value: object) -> object:
    if isinstance(value, str) and len(value) > TIME_MAX:
        raise ValueError(f"must be an RFC 3339 time of at most {TIME_MAX} characters")
    return value


def _rfc3339_only(value: object) -> object:
    # pydantic would also take a number of seconds since 1970 ("0.5") as a time; the API
    # promises RFC 3339, so anything else is refused rather than guessed at.
    _time_max(value)
    if isinstance(value, str) and not re.fullmatch(_RFC3339, value, flags=re.IGNORECASE):
        raise ValueError("must be an RFC 3339 time with an offset, e.g. 2026-01-31T09:00:00Z")
    return value


def _time_bounded(schema: dict[str, Any]) -> None:
    # On the time itself, or on the string branch of a nullable one.
    for branch in (schema, *schema.get("anyOf", [])):
        if branch.get("format") == "date-time":
            branch["maxLength"] = TIME_MAX
            branch["pattern"] = YEARS_PATTERN


# The times the API takes are of the years 1970 to 9998 as written (the document's pattern says
# the same), and none is before 1970 began in UTC. Earlier ones are no time a sale, a count or a
# consent happened at, a year before 1000 is no RFC 3339 time the API could write back, and 9999
# with an offset west of UTC would fall past the calendar's end. The first bound is the instant
# too: 1970-01-01T00:00:00+14:00 is 1970 as written but 1969 in UTC, where it was stored and
# written back.
FIRST_YEAR, LAST_YEAR = 1970, 9998
FIRST_INSTANT = datetime(FIRST_YEAR, 1, 1, tzinfo=UTC)
YEARS_PATTERN = r"^(19[7-9][0-9]|[2-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])-"
TIME_RANGE = f"must be a time of the years {FIRST_YEAR} to {LAST_YEAR}"


def _in_range(value: object) -> object:
    if not isinstance(value, datetime):
        return value
    if not FIRST_YEAR <= value.year <= LAST_YEAR:
        raise ValueError(TIME_RANGE)
    if value.tzinfo is not None and value < FIRST_INSTANT:
        raise ValueError(f"must not be before {FIRST_INSTANT:%Y-%m-%dT%H:%M:%SZ}")
    return value


# An RFC 3339 time in a query: the shape and length _rfc3339_only holds it to.
Rfc3339 = BeforeValidator(_rfc3339_only)
InRange = AfterValidator(_in_range)
TIME_SCHEMA = _time_bounded


def _body_time(value: object) -> object:
    # JSON's own types: a time is a string in RFC 3339 (a number would be taken by pydantic
    # as seconds since 1970, and a count or an adjustment silently stamped in another year).
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise ValueError("must be an RFC 3339 time with an offset, e.g. 2026-01-31T09:00:00Z")
    return _rfc3339_only(value)


# A time in a body: an RFC 3339 string, its length held to the document's maxLength, its
# value to the range.
BodyTime = Annotated[datetime, BeforeValidator(_body_time), InRange]


UpdatedSince = Annotated[
    datetime | None,
    Rfc3339,
    InRange,
    Query(
        description="Only what changed at or after this RFC 3339 time, oldest change first; "
        "poll again from the last `updated_at` you saw",
        json_schema_extra=TIME_SCHEMA,
    ),
]


CreatedSince = Annotated[
    datetime | None,
    Rfc3339,
    InRange,
    Query(
        description="Only what was created at or after this RFC 3339 time",
        json_schema_extra=TIME_SCHEMA,
    ),
]
CreatedBefore = Annotated[
    datetime | None,
    Rfc3339,
    InRange,
    Query(
        description="Only what was created before this RFC 3339 time",
        json_schema_extra=TIME_SCHEMA,
    ),
]


def created_window(
    request: Any, created_since: datetime | None, created_before: datetime | None
) -> None:
    """A list request's `created_since` and `created_before`, those given (the service
    checks that the second is after the first)."""
    if created_since is not None:
        request.created_since.CopyFrom(timestamp(created_since, "created_since"))
    if created_before is not None:
        request.created_before.CopyFrom(timestamp(created_before, "created_before"))


def timestamp(value: datetime, name: str = "updated_since") -> Timestamp:
    if value.tzinfo is None:
        raise Problem(
            400,
            "invalid_request",
            f"{name} must carry a time zone",
            [{"field": name, "reason": "must be an RFC 3339 time with an offset"}],
        )
    stamp = Timestamp()
    stamp.FromDatetime(value.astimezone(UTC))
    return stamp


# The gateway's own lists that are change feeds read them as the services' lists do (the kit's
# `pos_kit.changes.list_changed`): the time, the cursor and its scope the same way.


def since_time(value: datetime) -> datetime:
    """An `updated_since` as the services read it (UTC, to the microsecond); one without a
    time zone is the same 400 as on their lists."""
    return timestamp(value).ToDatetime(tzinfo=UTC)


def feed_scope(scope: str) -> str:
    """The scope of a feed's cursors (`pos_kit.paging.page_scope`): not the list's by id."""
    return scope + "|changes"


def change_after(cursor: str | None, scope: str) -> ChangeCursor | None:
    """Where a change feed of the gateway's own resumes (None: from `updated_since`): a
    cursor the feed of the list `scope` names gave, or `refused_cursor()`."""
    try:
        return decode_change(cursor or "", "cursor", feed_scope(scope))
    except InvalidArgument:
        raise refused_cursor() from None


def next_change(items: list[Any], limit: int, scope: str) -> str | None:
    """The cursor after a feed page read `limit + 1` deep (each item has `updated_at` and
    `id`): None at the end."""
    if len(items) <= limit:
        return None
    last = items[limit - 1]
    return encode_change(last.updated_at, last.id, feed_scope(scope))


async def services(request: Request) -> Services:
    # async: FastAPI runs a plain `def` dependency in a worker thread, a thread hand-off on
    # every request for one attribute read.
    svc: Services = request.app.state.services
    return svc


def request_id() -> str:
    """The Idempotency-Key of this request (or a fresh id): the services' request_id."""
    return request_id_var.get() or ""


# RFC 9457 problem details, one schema named in every error answer (a generated SDK gets one
# Problem class, not one per status and operation), but for the two that carry more: the
# models are in schemas.problems, added to the document by openapi.build.
_PROBLEM_SCHEMAS = {402: "PaymentDeclined", 412: "VersionMismatch"}


def _problem(status: int) -> dict[str, Any]:
    name = _PROBLEM_SCHEMAS.get(status, "Problem")
    return {"application/problem+json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}


_ERRORS = {
    400: (
        "Invalid request: `errors[]` names each field, and each query parameter the operation"
        " does not take (`unknown_parameter`: never ignored, so a misspelt filter is no filter)"
    ),
    401: "Missing or invalid API key",
    402: "The payment was declined; the order and payment are in the problem",
    403: "The credential lacks the required scope (`insufficient_scope`)",
    404: "No such resource for this merchant",
    409: "Conflict with the current state, or the same Idempotency-Key still running",
    410: (
        "Gone for good: a cursor older than what the event feed keeps (`cursor_expired`), or"
        " a request whose answer held a customer erased since (`customer_erased`: the same"
        " Idempotency-Key never runs again)"
    ),
    412: "If-Match names a version that is no longer current",
    413: "Request body too large",
    422: "Idempotency-Key reused with a different request",
    429: "Rate limit exceeded; see Retry-After",
    503: "A service the request needs is unavailable",
    504: "A service the request needs did not answer in time",
}
# What any authenticated /v1 operation may answer, whatever it does.
EDGE = (400, 401, 403, 413, 429, 503, 504)
# What a POST adds: a conflict (or its Idempotency-Key still running), a reused key, and a
# replay of an answer that named a customer erased since: its Idempotency-Key answers 410
# `customer_erased` (routes.customers.erase_customer withdraws every stored answer naming the
# customer: an order's, a return's, a gift card's, a profile's).
CREATE = (409, 410, 422)
PROFILE_CREATE = CREATE


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI responses for these problem statuses."""
    return {
        code: {"description": _ERRORS[code], "content": _problem(code)}
        for code in sorted(set(statuses))
    }


# FastAPI drops every null from the document, examples' too (`"next_cursor": null`): an
# example's nulls travel as this stand-in (no text in the API holds NUL), which
# openapi.with_nulls turns back into null.
NULL = "\x00null"


def _nulls_kept(value: Any) -> Any:
    if value is None:
        return NULL
    if isinstance(value, dict):
        return {k: _nulls_kept(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nulls_kept(v) for v in value]
    return value


def success(example: Any, media_type: str = "application/json") -> dict[str, Any]:
    """The OpenAPI success answer's example (its schema is the route's return type; plain
    text is a string)."""
    media: dict[str, Any] = {"example": _nulls_kept(example)}
    if media_type.startswith("text/"):
        media["schema"] = {"type": "string"}
    return {"description": "Success", "content": {media_type: media}}


def shown_once_text(fields: tuple[str, ...]) -> str:
    names = " and ".join(f"`{f}`" for f in fields)
    return (
        f" {names} {'is' if len(fields) == 1 else 'are'} shown in this answer only, with "
        f"`{REDACTED}: false`. A replay (the same `Idempotency-Key`) creates nothing and answers "
        f"the same resource with {names} null and `{REDACTED}: true`: a secret is never stored "
        "with the answer."
    )


async def member_signed_in(request: Request) -> None:
    """A register's request that sells or moves money is someone's: with no member signed in
    it is a 403 `staff_sign_in_required` before anything is asked of a service, as a
    checkout's is, so no tender lands in a drawer and no sale is made with no one on record."""
    signed_in(principal_of(request))


def op(
    scope: str,
    summary: str,
    errors: tuple[int, ...] = (),
    *,
    example: dict[str, Any],
    status: int = 200,
    shown_once: tuple[str, ...] = (),
    also: tuple[str, ...] = (),
    sells: bool = False,
) -> dict[str, Any]:
    """Everything a /v1 route declares besides its path: scope check, docs, its success answer
    (`status`, with an `example`) and its error answers (`errors`: the statuses it may answer
    besides the EDGE ones). `shown_once` names the answer's secret fields: the edge reads them
    here (idempotency.shown_once), never stores them, and a replay has them null. `also`: the
    scopes of other resources the answer holds, required as well. `sells`: the route sells,
    takes money or hands goods over, so at a register a member must be signed in (a route
    guarded by `actions.guarded` is held to that there already)."""
    scopes = [scope, *also]
    dependencies = [require(s) for s in scopes]
    if sells:
        dependencies.append(Depends(member_signed_in))
    extra: dict[str, Any] = {"security": [{"apiKey": scopes}], "x-required-scopes": scopes}
    if shown_once:
        extra[SHOWN_ONCE] = list(shown_once)
    return {
        "summary": summary,
        # No description here: FastAPI then takes the route's docstring (its rules), and
        # openapi.build puts the scope in front of it.
        "status_code": status,
        "dependencies": dependencies,
        "responses": {status: success(example), **problems(*EDGE, *errors)},
        "openapi_extra": extra,
    }


def conflict_shown(operation: dict[str, Any], description: str, example: Any) -> dict[str, Any]:
    """The route's 409 answer said in its own words, with `example` as its problem: the
    conflict a caller meets first there (a cash refund asked from the back office, say)."""
    answer = operation["responses"][409]
    operation["responses"][409] = {
        **answer,
        "description": description,
        "content": {
            media: {**shown, "example": example} for media, shown in answer["content"].items()
        },
    }
    return operation


# An entity tag holding a version: `"3"`, `W/"3"` or a bare 3; a list of them (`"3", "4"`,
# `if_match.ListedVersions`: true if any is current); or `*`, any version (RFC 9110).
_TAG = r'(W/)?"?[1-9][0-9]{0,17}"?'
# A list is bounded as every header value the document names: past it, the 400 of a malformed one.
IF_MATCH_MAX = 256
IF_MATCH = rf"^(\*|[ ,]*{_TAG}([ ]*,[ ,]*{_TAG})*[ ,]*)$"
IfMatch = Annotated[
    str | None,
    Header(
        description='The version you saw, as its ETag: `"3"` (or `W/"3"`, or 3), or a list of '
        'them (`"3", "4"`: any one current will do); stale is a 412. `*` matches whatever '
        "version is current",
        json_schema_extra={"pattern": IF_MATCH},
    ),
]


def any_version(if_match: str | None) -> bool:
    """`If-Match: *`: true of any current representation, false when there is none (RFC 9110,
    13.1.1), so a change goes ahead whatever the version, and a missing resource is still
    missing (a 404, or on an upsert the 412 of no current version: nothing is created)."""
    return if_match is not None and if_match.strip() == "*"


def expected_version(if_match: str | None) -> int:
    """If-Match carries the version as an entity tag: `"3"`, `W/"3"` or a bare 3; none is 0,
    and so is `*`: the services read 0 as "whatever the current version is"."""
    if if_match is None or any_version(if_match):
        return 0
    tag = if_match.strip().removeprefix("W/").strip('"')
    # ASCII digits only and at most 18 of them: int() takes other scripts' digits, and a
    # number past int64 would fail in protobuf as a 500 instead of this 400.
    if not re.fullmatch(r"[1-9][0-9]{0,17}", tag):
        raise Problem(
            400,
            "invalid_if_match",
            "If-Match must be the resource's version",
            [{"field": "If-Match", "reason": "must be a positive version number"}],
        )
    return int(tag)


async def version_checked(call: Awaitable[T]) -> T:
    """A stale If-Match (reason `version_mismatch`) is a 412 carrying the current version."""
    try:
        return await call
    except grpc.aio.AioRpcError as exc:
        remote = read_error(exc)
        if remote.reason == "version_mismatch":
            raise Problem(
                412,
                "version_mismatch",
                remote.message,
                extra={"current_version": int(remote.metadata.get("current_version", "0"))},
            ) from None
        raise


async def known_register(request: Request, register_id: str) -> None:
    """A register a filter names is the caller's own, or the answer is a 404 (as for any id
    of another merchant); a register's credential knows only its own location's registers."""
    principal = principal_of(request)
    found = await registers.get(request.app.state.engine, principal.merchant_id, register_id)
    if found is None or principal.location_id not in (None, found.location_id):
        raise register_missing(register_id)


async def known_staff(request: Request, staff_id: str) -> None:
    """A staff member a filter names is the caller's own, or the answer is a 404."""
    principal = principal_of(request)
    if await staff.get(request.app.state.engine, principal.merchant_id, staff_id) is None:
        raise Problem(404, "resource_missing", f"staff member {staff_id!r} was not found",
                      extra={"resource": "staff"})  # fmt: skip


def register_missing(register_id: str) -> Problem:
    """The 404 of a register the caller does not have, as for a made-up id."""
    return Problem(404, "resource_missing", f"register {register_id!r} was not found",
                   extra={"resource": "register"})  # fmt: skip
