"""Customers, their profile and the events they raise. Plain Python: no storage or transport."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta

from pos_customer.domain import loyalty, text
from pos_kit.countries import NOT_A_COUNTRY, is_country
from pos_kit.errors import FieldViolation, raise_if, require
from pos_kit.text import CARD_NUMBER_REASON, compact_phone, holds_card_number

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_TAG = re.compile(r"^[^\s,][^,]{0,49}$")
CONSENT_CHANNELS = frozenset({"web", "in_store", "email", "sms", "phone", "app", "import"})
MAX_NAME = 100
MAX_NOTES = 2_000
MAX_ADDRESSES = 10
MAX_TAGS = 50
MAX_EXTERNAL_ID = 100
MAX_ADDRESS_FIELD = 200
ACTIVE, MERGED, ERASED = "active", "merged", "erased"


@dataclass(frozen=True)
class Address:
    label: str = ""
    line1: str = ""
    line2: str = ""
    city: str = ""
    region: str = ""
    postal_code: str = ""
    country: str = ""


@dataclass(frozen=True)
class Consent:
    granted: bool = False
    given_at: datetime | None = None
    channel: str = ""


@dataclass(frozen=True)
class Profile:
    """The fields of a create, update or upsert; None: leave as it is."""

    email: str | None = None
    phone: str | None = None
    given_name: str | None = None
    family_name: str | None = None
    external_id: str | None = None
    birthday: str | None = None
    notes: str | None = None
    consent: Consent | None = None
    addresses: tuple[Address, ...] | None = None
    tags: tuple[str, ...] | None = None


@dataclass
class Customer:
    id: str
    email: str | None
    given_name: str
    family_name: str
    loyalty_points: int = 0
    version: int = 1
    created_at: datetime | None = None
    updated_at: datetime | None = None
    phone: str | None = None
    external_id: str | None = None
    addresses: tuple[Address, ...] = ()
    birthday: date | None = None
    notes: str = ""
    consent: Consent = Consent()
    tags: tuple[str, ...] = ()
    group_ids: tuple[str, ...] = ()
    status: str = ACTIVE
    merged_into: str | None = None
    points_held: int = 0
    tier: str = ""
    events: list[object] = field(default_factory=list, repr=False, compare=False)

    @property
    def available_points(self) -> int:
        return self.loyalty_points - self.points_held

    def apply(self, profile: Profile) -> bool:
        """Apply a normalised, validated profile; True if anything changed."""
        before = self.snapshot()
        if profile.email is not None:
            self.email = profile.email or None
        if profile.phone is not None:
            self.phone = profile.phone or None
        if profile.given_name is not None:
            self.given_name = profile.given_name
        if profile.family_name is not None:
            self.family_name = profile.family_name
        if profile.external_id is not None:
            self.external_id = profile.external_id or None
        if profile.birthday is not None:
            self.birthday = date.fromisoformat(profile.birthday) if profile.birthday else None
        if profile.notes is not None:
            self.notes = profile.notes
        if profile.consent is not None:
            self.consent = profile.consent
        if profile.addresses is not None:
            self.addresses = profile.addresses
        if profile.tags is not None:
            self.tags = profile.tags
        return self.snapshot() != before

    def snapshot(self) -> tuple[object, ...]:
        return (
            self.email,
            self.phone,
            self.given_name,
            self.family_name,
            self.external_id,
            self.birthday,
            self.notes,
            self.consent,
            self.addresses,
            self.tags,
        )

    def search_terms(self) -> set[str]:
        """What a text search by prefix finds this customer by: each word of the name, the
        email and its local part, the phone's digits (with and without the country code is
        left to the prefix: "+1415" and "1415" both start "14155550100")."""
        terms = set(text.words(f"{self.given_name} {self.family_name}"))
        if self.email:
            terms.add(text.fold(self.email))
            terms.update(text.words(self.email.split("@", 1)[0]))
        if self.phone:
            terms.add(self.phone.lstrip("+"))
        return {t for t in terms if t}


def erased_copy(customer: Customer) -> Customer:
    """The customer with every personal field emptied: what an erasure leaves."""
    return replace(
        customer,
        email=None,
        phone=None,
        given_name="",
        family_name="",
        external_id=None,
        addresses=(),
        birthday=None,
        notes="",
        consent=Consent(),
        tags=(),
        group_ids=(),
        status=ERASED,
        events=[],
    )


class KeyTaken(Exception):
    """Another customer holds this email or external_id: one written after it was looked for
    (the unique indexes are what decides)."""

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


@dataclass(frozen=True)
class CustomerCreated:
    customer: Customer


@dataclass(frozen=True)
class CustomerUpdated:
    customer: Customer


@dataclass(frozen=True)
class CustomerMerged:
    winner: Customer
    loser_id: str


@dataclass(frozen=True)
class CustomerErased:
    customer_id: str


def normalise_email(value: str) -> str:
    return value.strip().lower()


def normalise_phone(value: str) -> str | None:
    """E.164 ("+14155550100") from what people type: "+1 (415) 555-0100", "0044 20 ...";
    None when it cannot be one (no country code: we do not guess a merchant's country)."""
    digits = compact_phone(value)
    if not re.fullmatch(r"\+[1-9][0-9]{6,14}", digits):
        return None
    return digits


# How far ahead of this service's clock a caller's may run: a consent given "now" there.
CLOCK_SKEW = timedelta(minutes=5)


def normalise_profile(raw: Profile, prefix: str = "") -> Profile:
    """A validated, normalised profile, or InvalidArgument naming every bad field at once
    (prefixed, e.g. "customers[3].email", for a batch)."""
    violations: list[FieldViolation] = []

    def name(f: str) -> str:
        return f"{prefix}{f}"

    email = phone = None
    if raw.email is not None:
        email = normalise_email(raw.email)
        if email:
            violations += require(bool(_EMAIL.match(email)), name("email"), "must be an email")
            violations += require(len(email) <= 254, name("email"), "must be at most 254 long")
    if raw.phone is not None:
        phone = ""
        if raw.phone.strip():
            found = normalise_phone(raw.phone)
            violations += require(
                found is not None,
                name("phone"),
                "must be a phone number with its country code, e.g. +14155550100",
            )
            if found is not None and holds_card_number(found):
                # Written in groups it passed the rule for free text; stored, it is a card.
                violations.append(FieldViolation(name("phone"), CARD_NUMBER_REASON))
            phone = found or ""
    given = raw.given_name.strip() if raw.given_name is not None else None
    family = raw.family_name.strip() if raw.family_name is not None else None
    for f, v in (("given_name", given), ("family_name", family)):
        if v is not None:
            violations += require(len(v) <= MAX_NAME, name(f), f"must be at most {MAX_NAME} long")
    external = raw.external_id.strip() if raw.external_id is not None else None
    if external is not None:
        violations += require(
            len(external) <= MAX_EXTERNAL_ID,
            name("external_id"),
            f"must be at most {MAX_EXTERNAL_ID} characters",
        )
    if raw.birthday:
        violations += _birthday(raw.birthday, name("birthday"))
    if raw.notes is not None:
        violations += require(
            len(raw.notes) <= MAX_NOTES, name("notes"), f"must be at most {MAX_NOTES} long"
        )
    if raw.consent is not None and raw.consent.granted:
        violations += require(
            raw.consent.channel in CONSENT_CHANNELS,
            name("marketing_consent.channel"),
            f"must be one of {', '.join(sorted(CONSENT_CHANNELS))}",
        )
        violations += require(
            raw.consent.given_at is not None,
            name("marketing_consent.given_at"),
            "is required when consent is granted",
        )
    if raw.consent is not None and raw.consent.given_at is not None:
        # Given (or withdrawn) is a fact of the past; a caller's clock may run a little ahead.
        latest = datetime.now(UTC) + CLOCK_SKEW
        violations += require(
            raw.consent.given_at <= latest,
            name("marketing_consent.given_at"),
            "must not be in the future",
        )
    if raw.addresses is not None:
        violations += require(
            len(raw.addresses) <= MAX_ADDRESSES,
            name("addresses"),
            f"at most {MAX_ADDRESSES} addresses",
        )
        for i, a in enumerate(raw.addresses):
            violations += _address(a, name(f"addresses[{i}]"))
    tags = None
    if raw.tags is not None:
        tags = tuple(dict.fromkeys(t.strip() for t in raw.tags))
        violations += require(len(tags) <= MAX_TAGS, name("tags"), f"at most {MAX_TAGS} tags")
        for i, t in enumerate(tags):
            violations += require(
                bool(_TAG.match(t)), name(f"tags[{i}]"), "1 to 50 characters, no comma"
            )
    raise_if(violations)
    consent = raw.consent
    if consent is not None and not consent.granted:
        # Withdrawn consent keeps when and how it was withdrawn, if the caller said.
        consent = Consent(False, consent.given_at, consent.channel)
    return Profile(
        email=email,
        phone=phone,
        given_name=given,
        family_name=family,
        external_id=external,
        birthday=raw.birthday,
        notes=raw.notes,
        consent=consent,
        addresses=raw.addresses,
        tags=tags,
    )


def _birthday(value: str, where: str) -> list[FieldViolation]:
    try:
        day = date.fromisoformat(value)
    except ValueError:
        return [FieldViolation(where, "must be a date, YYYY-MM-DD")]
    if not re.fullmatch(r"\d{4}-\d\d-\d\d", value) or day.year < 1900:
        return [FieldViolation(where, "must be a date, YYYY-MM-DD, after 1900")]
    # Today somewhere on Earth may be tomorrow in UTC.
    if day > datetime.now(UTC).date() + timedelta(days=1):
        return [FieldViolation(where, "must not be in the future")]
    return []


def _address(a: Address, where: str) -> list[FieldViolation]:
    violations: list[FieldViolation] = []
    for f in ("label", "line1", "line2", "city", "region", "postal_code"):
        violations += require(
            len(getattr(a, f)) <= MAX_ADDRESS_FIELD,
            f"{where}.{f}",
            f"must be at most {MAX_ADDRESS_FIELD} characters",
        )
    violations += require(bool(a.line1.strip()), f"{where}.line1", "is required")
    violations += require(is_country(a.country), f"{where}.country", NOT_A_COUNTRY)
    return violations


def require_identity(customer: Customer, where: str = "") -> None:
    """A customer is somebody: an email, a phone, a name or an external id."""
    raise_if(
        require(
            bool(
                customer.email
                or customer.phone
                or customer.given_name
                or customer.family_name
                or customer.external_id
            ),
            f"{where}email",
            "a customer needs an email, a phone, a name or an external_id",
        )
    )


# Every domain event this service raises; each has an integration event (adapters/events.py).
EVENTS: tuple[type, ...] = (
    CustomerCreated,
    CustomerUpdated,
    CustomerMerged,
    CustomerErased,
    loyalty.PointsEarned,
    loyalty.PointsRedeemed,
    loyalty.PointsAdjusted,
    loyalty.PointsExpired,
    loyalty.TierChanged,
)
