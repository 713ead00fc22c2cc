"""Domain objects <-> pos.customer.v1 protobuf messages."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from pos.common.v1 import money_pb2
from pos.customer.v1 import customer_pb2, loyalty_pb2
from pos_customer.domain import loyalty
from pos_customer.domain.model import ERASED, Address, Consent, Customer, Profile


def _address_pb(a: Address) -> customer_pb2.Address:
    return customer_pb2.Address(**a.__dict__)


def customer_to_proto(c: Customer) -> customer_pb2.Customer:
    msg = customer_pb2.Customer(
        id=c.id,
        email=c.email or "",
        given_name=c.given_name,
        family_name=c.family_name,
        loyalty_points=c.loyalty_points,
        version=c.version,
        phone=c.phone or "",
        external_id=c.external_id or "",
        addresses=[_address_pb(a) for a in c.addresses],
        birthday=c.birthday.isoformat() if c.birthday else "",
        notes=c.notes,
        tags=list(c.tags),
        group_ids=list(c.group_ids),
        status=c.status,
        merged_into=c.merged_into or "",
        points_held=c.points_held,
        tier=c.tier,
    )
    msg.marketing_consent.SetInParent()
    msg.marketing_consent.granted = c.consent.granted
    msg.marketing_consent.channel = c.consent.channel
    if c.consent.given_at is not None:
        msg.marketing_consent.given_at.FromDatetime(c.consent.given_at)
    if c.created_at is not None:
        msg.created_at.FromDatetime(c.created_at)
    if c.updated_at is not None:
        msg.updated_at.FromDatetime(c.updated_at)
    return msg


# What an erased customer's snapshot keeps: no personal data, only what totals, audits and
# ordering need (what `model.erased_copy` leaves as it was), and its times.
_KEPT_WHEN_ERASED = ("id", "loyalty_points", "version", "merged_into", "points_held", "tier")


def erased_snapshot(c: customer_pb2.Customer, status: str = ERASED) -> customer_pb2.Customer:
    """A snapshot as an erasure leaves it, for an event written before the erasure (`status`:
    erased, unless an answer replayed as it was given keeps its own)."""
    kept = customer_pb2.Customer(status=status, **{n: getattr(c, n) for n in _KEPT_WHEN_ERASED})
    kept.marketing_consent.SetInParent()
    if c.HasField("created_at"):
        kept.created_at.CopyFrom(c.created_at)
    if c.HasField("updated_at"):
        kept.updated_at.CopyFrom(c.updated_at)
    return kept


def erased_in_merge_answer(response: bytes, customer_id: str) -> bytes | None:
    """A merge's stored answer as an erasure of `customer_id` leaves it. The duplicate merged
    away: the answer is kept, and replayed to a retry of the merge, with the duplicate's
    snapshot holding no personal data (it held none once merged; emptied all the same). The
    survivor (whose profile the answer holds): None, the answer is withdrawn."""
    answer = customer_pb2.MergeCustomersResponse.FromString(response)
    if answer.loser.id != customer_id or answer.winner.id == customer_id:
        return None
    answer.loser.CopyFrom(erased_snapshot(answer.loser, status=answer.loser.status))
    kept: bytes = answer.SerializeToString()
    return kept


def profile_from_proto(p: customer_pb2.ProfileFields) -> Profile:
    def opt(name: str) -> str | None:
        return getattr(p, name) if p.HasField(name) else None  # type: ignore[arg-type]

    consent = None
    if p.HasField("marketing_consent"):
        m = p.marketing_consent
        at = m.given_at.ToDatetime(tzinfo=UTC) if m.HasField("given_at") else None
        consent = Consent(m.granted, at, m.channel)
    addresses = None
    if p.HasField("addresses"):
        addresses = tuple(
            Address(
                label=a.label,
                line1=a.line1,
                line2=a.line2,
                city=a.city,
                region=a.region,
                postal_code=a.postal_code,
                country=a.country,
            )
            for a in p.addresses.addresses
        )
    return Profile(
        email=opt("email"),
        phone=opt("phone"),
        given_name=opt("given_name"),
        family_name=opt("family_name"),
        external_id=opt("external_id"),
        birthday=opt("birthday"),
        notes=opt("notes"),
        consent=consent,
        addresses=addresses,
        tags=tuple(p.tags.tags) if p.HasField("tags") else None,
    )


def program_to_proto(p: loyalty.Program) -> loyalty_pb2.LoyaltyProgram:
    return loyalty_pb2.LoyaltyProgram(
        enabled=p.enabled,
        points_per_unit=p.points_per_unit,
        rounding=p.rounding,
        earning_tenders=list(p.earning_tenders),
        excluded_skus=list(p.excluded_skus),
        tiers=[loyalty_pb2.Tier(**t.__dict__) for t in p.tiers],
        expiry_days=p.expiry_days,
        tier_period_days=p.tier_period_days,
        point_value_minor=p.point_value_minor,
        version=p.version,
    )


def program_from_proto(m: loyalty_pb2.LoyaltyProgram) -> loyalty.Program:
    return loyalty.Program(
        enabled=m.enabled,
        points_per_unit=m.points_per_unit,
        rounding=m.rounding or "down",
        earning_tenders=tuple(m.earning_tenders),
        excluded_skus=tuple(m.excluded_skus),
        tiers=tuple(
            loyalty.Tier(t.name, t.threshold_points, t.multiplier_bps or loyalty.BPS)
            for t in m.tiers
        ),
        expiry_days=m.expiry_days,
        tier_period_days=m.tier_period_days,
        point_value_minor=m.point_value_minor,
    )


def entry_to_proto(e: loyalty.Entry) -> loyalty_pb2.PointsEntry:
    msg = loyalty_pb2.PointsEntry(
        id=e.id,
        customer_id=e.customer_id,
        kind=e.kind,
        points=e.points,
        balance_after=e.balance_after,
        order_id=e.order_id,
        reason=e.reason,
        return_id=e.order_return_id,
        fulfillment_id=e.fulfillment_id,
    )
    if e.created_at is not None:
        msg.created_at.FromDatetime(e.created_at)
    return msg


def hold_to_proto(h: loyalty.Hold) -> loyalty_pb2.PointsHold:
    return loyalty_pb2.PointsHold(
        order_id=h.order_id,
        customer_id=h.customer_id,
        points=h.points,
        status=h.status,
        discount=money_pb2.Money(amount=h.points * h.point_value_minor, currency=h.currency),
    )


def purchase_to_proto(row: Any) -> loyalty_pb2.Purchase:
    msg = loyalty_pb2.Purchase(
        order_id=row.order_id,
        location_id=row.location_id,
        total=money_pb2.Money(amount=row.total_amount, currency=row.currency),
        points_earned=row.points_earned,
        status=row.status,
        returned=money_pb2.Money(amount=int(row.returned), currency=row.currency),
    )
    msg.ordered_at.FromDatetime(row.ordered_at)
    return msg


def group_to_proto(g: Any) -> customer_pb2.Group:
    msg = customer_pb2.Group(
        id=g.id,
        name=g.name,
        description=g.description,
        member_count=g.member_count,
        version=g.version,
        status=getattr(g, "status", "active"),
    )
    if g.created_at is not None:
        msg.created_at.FromDatetime(g.created_at)
    if getattr(g, "updated_at", None) is not None:
        msg.updated_at.FromDatetime(g.updated_at)
    return msg
