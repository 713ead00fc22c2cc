"""Use cases of customer profiles, groups, merges and erasure; every entrypoint calls these."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pos_customer.domain import loyalty, text
from pos_customer.domain.model import (
    ACTIVE,
    ERASED,
    MERGED,
    Customer,
    CustomerCreated,
    CustomerErased,
    CustomerMerged,
    CustomerUpdated,
    KeyTaken,
    Profile,
    erased_copy,
    normalise_email,
    normalise_phone,
    normalise_profile,
    require_identity,
)
from pos_customer.service.ports import CustomerUnitOfWork
from pos_customer.service.tiers import retier, starting_tier
from pos_kit.errors import (
    AlreadyExists,
    Conflict,
    DomainError,
    ErrorKind,
    FieldViolation,
    InvalidArgument,
    NotFound,
    raise_if,
    require,
)
from pos_kit.ids import new_id
from pos_kit.paging import PageRequest
from pos_kit.text import CARD_NUMBER_REASON, holds_card_number

MAX_BATCH = 1_000
MAX_SEARCH = 100
MAX_GROUP_CHANGE = 1_000
# The metadata of the refusal of an erasure of a customer erased already that names the ids
# erased with it (`_erased_before`; the gateway reads it as `problems.ERASED_IDS`).
ERASED_IDS = "erased_ids"


def _stale(current: int) -> Conflict:
    return Conflict(
        "the customer changed since the version you sent",
        "version_mismatch",
        {"current_version": str(current)},
    )


def _missing_for_version(external_id: str) -> Conflict:
    # Version 0: nothing current (a customer's first version is 1).
    return Conflict(
        f"no customer has external_id {external_id!r}, so no version of it can match",
        "version_mismatch",
        {"current_version": "0"},
    )


def _taken(field: str) -> AlreadyExists:
    return AlreadyExists(
        f"a customer with this {field} already exists",
        f"{field}_taken",
        [FieldViolation(field, "is another customer's")],
    )


async def _unique_keys(uow: CustomerUnitOfWork, customer: Customer) -> None:
    """Email and external_id are unique per merchant; a taken one is a field error. This is
    the common case's answer; one taken by a request running at the same time is found by the
    write (KeyTaken)."""
    if customer.email:
        other = await uow.customers.get_by_email(customer.email)
        if other is not None and other.id != customer.id:
            raise _taken("email")
    if customer.external_id:
        found = await uow.customers.get_by_external_ids([customer.external_id])
        other = found.get(customer.external_id)
        if other is not None and other.id != customer.id:
            raise _taken("external_id")


async def create_customer(uow: CustomerUnitOfWork, profile: Profile) -> Customer:
    profile = normalise_profile(profile)
    customer = Customer(new_id("cus"), None, "", "")
    customer.apply(profile)
    require_identity(customer)
    await _unique_keys(uow, customer)
    customer.tier = starting_tier(await uow.loyalty.program())
    try:
        async with uow.customers.claiming_keys():
            await uow.customers.add(customer)
    except KeyTaken as taken:
        raise _taken(taken.field) from None
    uow.publish(CustomerCreated(customer))
    return customer


async def get_customer(uow: CustomerUnitOfWork, customer_id: str) -> Customer:
    """An active customer, or a merged one (which answers where it went); an erased one is
    gone."""
    customer = await uow.customers.get(customer_id)
    if customer is None or customer.status not in (ACTIVE, MERGED):
        raise NotFound("customer", customer_id)
    return customer


async def active_customer(
    uow: CustomerUnitOfWork, customer_id: str, *, for_update: bool = False, field: str = ""
) -> Customer:
    """A customer that can change. One merged away is a conflict naming where it went (its
    read answers it, so "not found" would send the caller looking for a typo); one erased, or
    none, is a 404. `field`: the request field that named it, when a body did."""
    customer = await uow.customers.get(customer_id, for_update=for_update)
    fields = [field] if field else []
    if customer is not None and customer.status == MERGED and customer.merged_into:
        raise DomainError(
            f"customer {customer_id!r} was merged into {customer.merged_into!r}: change that one",
            "customer_merged",
            [FieldViolation(f, f"was merged into {customer.merged_into}") for f in fields],
            {"merged_into": customer.merged_into},
            ErrorKind.CONFLICT,
        )
    if customer is None or customer.status != ACTIVE:
        raise NotFound("customer", customer_id, fields)
    return customer


async def list_customers(
    uow: CustomerUnitOfWork, page: PageRequest, group_id: str = ""
) -> list[Customer]:
    """By id, or the change feed partners poll (oldest change first, resumable by cursor);
    with `group_id`, only that group's members. The feed also holds the customers merged or
    erased since: a merged one as its read answers it (no personal data, `merged_into`), an
    erased one as a tombstone (its id, status, version and times, nothing else), so a poller
    learns of both as event readers do."""
    if group_id:
        await get_group(uow, group_id)
    return [tombstone(c) for c in await uow.customers.list(page, group_id)]


def tombstone(customer: Customer) -> Customer:
    """What the change feed shows of a customer: an erased one is its id, `erased`, its
    version and its times; nothing that was theirs (points, tier, whom they merged with)."""
    if customer.status != ERASED:
        return customer
    return Customer(
        id=customer.id,
        email=None,
        given_name="",
        family_name="",
        version=customer.version,
        created_at=customer.created_at,
        updated_at=customer.updated_at,
        status=ERASED,
    )


async def update_customer(
    uow: CustomerUnitOfWork, customer_id: str, profile: Profile, expected_version: int
) -> Customer:
    profile = normalise_profile(profile)
    # Locked: without If-Match a change applies on top of whatever is current, so two at once
    # both land (in turn) instead of the second being told of a version it never sent.
    customer = await active_customer(uow, customer_id, for_update=True)
    if expected_version and expected_version != customer.version:
        raise _stale(customer.version)
    return await _write_update(uow, customer, profile)


async def _write_update(uow: CustomerUnitOfWork, customer: Customer, profile: Profile) -> Customer:
    if not customer.apply(profile):
        return customer
    require_identity(customer)
    await _unique_keys(uow, customer)
    seen = customer.version
    customer.version += 1
    # The write itself re-checks the version, so two concurrent updates cannot both win.
    try:
        async with uow.customers.claiming_keys():
            saved = await uow.customers.save(customer, seen)
    except KeyTaken as taken:
        raise _taken(taken.field) from None
    if not saved:
        current = await active_customer(uow, customer.id)
        raise _stale(current.version)
    uow.publish(CustomerUpdated(customer))
    return customer


async def upsert_customer(
    uow: CustomerUnitOfWork,
    profile: Profile,
    expected_version: int,
    require_existing: bool = False,
) -> tuple[Customer, bool]:
    """(the customer, whether it was created). With `expected_version` only that version is
    changed, with `require_existing` any version (If-Match: *): either way one that does not
    exist is not made."""
    raise_if(require(bool((profile.external_id or "").strip()), "external_id", "is required"))
    profile = normalise_profile(profile)
    external_id = profile.external_id or ""
    found = (await uow.customers.get_by_external_ids([external_id])).get(external_id)
    if found is None and (expected_version or require_existing):
        # If-Match is false when there is nothing current (RFC 9110, 13.1.1): the caller
        # meant to change a customer it saw, so one that is gone is not made again.
        raise _missing_for_version(external_id)
    if found is None:
        try:
            return await create_customer(uow, profile), True
        except AlreadyExists as taken:
            if taken.code not in ("external_id_taken", "email_taken"):
                raise
            # A request running at the same time created this external_id's customer, with
            # this email too: whichever read or unique index told this one so, it updates that
            # customer (whose update checks the email again: another customer's is taken).
            # With no customer of the external_id the refusal stands: the email is another's,
            # or the winner went again at once (erased, merged).
            found = (await uow.customers.get_by_external_ids([external_id])).get(external_id)
            if found is None:
                raise
    if expected_version and expected_version != found.version:
        raise _stale(found.version)
    return await _write_update(uow, found, profile), False


@dataclass(frozen=True)
class BatchResult:
    customers: list[Customer]
    created: int
    updated: int


async def batch_upsert(uow: CustomerUnitOfWork, profiles: Sequence[Profile]) -> BatchResult:
    """All of them or none: every item is checked before anything is written, and a bad one
    names itself (`customers[3].email`)."""
    violations: list[FieldViolation] = []
    violations += require(
        0 < len(profiles) <= MAX_BATCH, "customers", f"1 to {MAX_BATCH} customers a call"
    )
    clean: list[Profile] = []
    for i, raw in enumerate(profiles):
        where = f"customers[{i}]."
        if not (raw.external_id or "").strip():
            violations.append(FieldViolation(f"{where}external_id", "is required"))
            continue
        try:
            clean.append(normalise_profile(raw, where))
        except InvalidArgument as bad:
            violations += bad.violations
    raise_if(violations)
    seen: dict[str, int] = {}
    emails: dict[str, int] = {}
    for i, p in enumerate(clean):
        key = p.external_id or ""
        if key in seen:
            violations.append(
                FieldViolation(f"customers[{i}].external_id", f"repeats customers[{seen[key]}]")
            )
        seen[key] = i
        if p.email:
            if p.email in emails:
                violations.append(
                    FieldViolation(f"customers[{i}].email", f"repeats customers[{emails[p.email]}]")
                )
            emails[p.email] = i
    raise_if(violations)
    # Twice at most: a request running at the same time may create one of these external ids
    # (or take an email) between the reads and the writes; read again, they are updates then.
    for attempt in (1, 2):
        try:
            async with uow.customers.claiming_keys():
                return await _write_batch(uow, clean, list(seen), list(emails))
        except KeyTaken as taken:
            if attempt == 2:
                raise _taken(taken.field) from None
    raise AssertionError("unreachable")


async def _write_batch(
    uow: CustomerUnitOfWork, clean: list[Profile], external_ids: list[str], emails: list[str]
) -> BatchResult:
    violations: list[FieldViolation] = []
    # The emails first: a customer of one of these external ids created between the two
    # reads (by a request running at the same time) is then found as the one to update, not
    # taken for another customer holding its email; one created after both is refused by
    # the unique index, and the batch reads again.
    taken = await uow.customers.taken_emails(emails)
    existing = await uow.customers.get_by_external_ids(external_ids)
    new: list[Customer] = []
    changed: list[Customer] = []
    result: list[Customer] = []
    for i, p in enumerate(clean):
        customer = existing.get(p.external_id or "")
        if customer is None:
            customer = Customer(new_id("cus"), None, "", "")
            customer.apply(p)
            new.append(customer)
        elif customer.apply(p):
            customer.version += 1
            changed.append(customer)
        if customer.email and taken.get(customer.email, customer.id) != customer.id:
            violations.append(FieldViolation(f"customers[{i}].email", "is another customer's"))
        result.append(customer)
    raise_if(violations)
    if new:
        tier = starting_tier(await uow.loyalty.program())
        for customer in new:
            customer.tier = tier
    await uow.customers.add_many(new)
    await uow.customers.save_many(changed)
    for c in new:
        uow.publish(CustomerCreated(c))
    for c in changed:
        uow.publish(CustomerUpdated(c))
    return BatchResult(result, len(new), len(changed))


async def search_customers(
    uow: CustomerUnitOfWork,
    email: str,
    phone: str,
    external_id: str,
    query: str,
    limit: int,
    after: str | None = None,
) -> tuple[list[Customer], str]:
    """A page of the customers the search finds, and the key to page on from ("" at the
    end)."""
    violations: list[FieldViolation] = []
    phone_key = None
    if phone:
        phone_key = normalise_phone(phone)
        violations += require(
            phone_key is not None, "phone", "must be a phone number with its country code"
        )
        if phone_key is not None and holds_card_number(phone_key):
            violations.append(FieldViolation("phone", CARD_NUMBER_REASON))
    words = text.search_words(query)
    violations += require(
        bool(email or phone or external_id or words),
        "query",
        "search by email, phone, external_id or query",
    )
    violations += require(len(words) <= 5, "query", "at most 5 words")
    violations += require(len(query) <= 200, "query", "at most 200 characters")
    raise_if(violations)
    limit = min(max(limit, 1), MAX_SEARCH) if limit else 20
    return await uow.customers.search(
        normalise_email(email) if email else None,
        phone_key,
        (external_id.strip() or None) if external_id else None,
        words,
        limit,
        after,
    )


async def erase_customer(
    uow: CustomerUnitOfWork, customer_id: str, requested_by: str
) -> tuple[Any, list[str]]:
    """Personal data goes; the customer id, its points ledger and purchases (no personal data
    in them) stay, so totals and audits still add up. The erasure is recorded without any.
    Answers when, and the ids of the duplicates merged into it, erased with it."""
    customer = await uow.customers.get(customer_id, for_update=True)
    if customer is not None and customer.status == ERASED:
        raise await _erased_before(uow, customer_id)
    if customer is None or customer.status not in (ACTIVE, MERGED):
        raise NotFound("customer", customer_id)
    # An open order redeeming points confirms by finalising them on this customer: erased,
    # the order would fail after its card was charged. Holds are taken under the same lock.
    held = await uow.loyalty.open_holds(customer.id) if customer.points_held else []
    if held:
        raise Conflict(
            "an open order holds the customer's points: erase once it is confirmed or cancelled",
            "points_held",
            {"order_id": held[0]},
        )
    # The duplicates merged into it are the same person: their profiles, and what other
    # services hold under their ids (orders' addresses and notes), go too.
    merged = list(await uow.customers.merged_into(customer_id))
    for gone in [customer_id, *merged]:
        found = customer if gone == customer_id else await uow.customers.get(gone, for_update=True)
        if found is None or found.status not in (ACTIVE, MERGED):
            continue  # erased already
        # A new version: the change feed shows the erasure, and a poller comparing versions
        # does not take the tombstone for the copy it holds.
        erased = erased_copy(found)
        erased.version += 1
        await uow.customers.erase(erased, requested_by)
        await uow.groups.forget(gone)
        await uow.loyalty.forget_reasons(gone)
        await uow.customers.purge_copies(gone)
        uow.publish(CustomerErased(gone))
    return await uow.customers.erased_at(customer_id), merged


async def _erased_before(uow: CustomerUnitOfWork, customer_id: str) -> NotFound:
    """An erasure of a customer erased already: no such customer, as for any caller, but the
    refusal names (metadata `erased_ids`) the customer and the duplicates erased with it. The
    caller that erased them may have failed after this service's commit, before withdrawing
    its own copies of them (the gateway's Idempotency-Key answers); its retry, refused here,
    still finishes that."""
    refused = NotFound("customer", customer_id)
    erased = [customer_id, *await uow.customers.merged_into(customer_id)]
    refused.metadata[ERASED_IDS] = ",".join(erased)
    return refused


async def merge_customers(
    uow: CustomerUnitOfWork, winner_id: str, loser_id: str, points_not_permitted: bool = False
) -> tuple[Customer, Customer]:
    """`points_not_permitted`: the caller may not move points by hand (a register's member
    without the permission AdjustPoints takes there); a merge that would move some is refused,
    decided on the duplicate as locked, so points earned meanwhile are not moved unchecked."""
    raise_if(
        require(winner_id != loser_id, "loser_id", "cannot merge a customer into itself")
        + require(bool(winner_id), "winner_id", "is required")
        + require(bool(loser_id), "loser_id", "is required")
    )
    # The customer the caller names first is the one a 404 names; then both are locked in id
    # order, so two merges of the same pair never deadlock.
    named = {winner_id: "", loser_id: "loser_id"}
    await active_customer(uow, winner_id)
    await active_customer(uow, loser_id, field="loser_id")
    first, second = sorted((winner_id, loser_id))
    locked = {
        first: await active_customer(uow, first, for_update=True, field=named[first]),
        second: await active_customer(uow, second, for_update=True, field=named[second]),
    }
    winner, loser = locked[winner_id], locked[loser_id]
    if points_not_permitted and (loser.loyalty_points or loser.points_held):
        raise DomainError(
            f"the duplicate has {loser.loyalty_points} points that the merge would move: the "
            "signed-in member may not move points alone, a manager's override is needed for "
            "this action",
            "permission_required",
            metadata={"permission": "refund"},
            kind=ErrorKind.FORBIDDEN,
        )
    moved = loser.loyalty_points
    if moved:
        loser.loyalty_points = 0
        out = await uow.loyalty.append(
            loyalty.Entry(
                new_id("pte"),
                loser.id,
                loyalty.MERGED_OUT,
                -moved,
                0,
                "",
                f"merged into {winner.id}",
            )
        )
        winner.loyalty_points += moved
        into = await uow.loyalty.append(
            loyalty.Entry(
                new_id("pte"),
                winner.id,
                loyalty.MERGED_IN,
                moved,
                winner.loyalty_points,
                "",
                f"merged from {loser.id}",
            )
        )
        # Partners that follow balances by events see both sides move.
        uow.publish(loyalty.PointsAdjusted(out))
        uow.publish(loyalty.PointsAdjusted(into))
    winner.points_held += loser.points_held
    loser.points_held = 0
    await uow.loyalty.move_holds(loser.id, winner.id)
    await uow.purchases.move(loser.id, winner.id)
    await uow.groups.move_members(loser.id, winner.id)
    await uow.customers.save_points(winner)
    await uow.customers.save_points(loser)
    # The loser keeps no personal data (its email and external_id are free again); it answers
    # with where it went.
    stub = erased_copy(loser)
    stub.status, stub.merged_into, stub.version = MERGED, winner.id, loser.version + 1
    await uow.customers.save(stub, loser.version)
    # A new version of the duplicate (merged, `merged_into`, its data gone): announced as GET
    # answers it now, before the merge's own event, as every other change of a customer is.
    gone = await uow.customers.get(loser.id)
    assert gone is not None, "locked above"
    uow.publish(CustomerUpdated(gone))
    # The loser's earns now count towards the winner's tier (earned_since follows merges).
    await retier(uow, winner, await uow.loyalty.program())
    winner = await active_customer(uow, winner.id)
    # Its groups, points and history changed: a new version (locked above), as its event says.
    seen = winner.version
    winner.version += 1
    saved = await uow.customers.save(winner, seen)
    assert saved, "locked above"
    uow.publish(CustomerMerged(winner, loser.id))
    return winner, gone


# Groups


@dataclass(frozen=True)
class Group:
    id: str
    name: str
    description: str
    member_count: int
    created_at: Any
    version: int
    # The moment of its last change (made, or a new version): its place in the change feed.
    updated_at: Any = None
    # active, or deleted: a tombstone, which only the change feed shows.
    status: str = "active"


def _group(row: Any) -> Group:
    return Group(
        row.id,
        row.name,
        row.description,
        int(row.member_count),
        row.created_at,
        row.version,
        row.updated_at,
        "deleted" if row.deleted_at is not None else "active",
    )


def _stale_group(group: Group, expected_version: int) -> None:
    """A group at another version than `expected_version` (0: any) is refused, as a customer
    is: the change was decided on what the group was."""
    if expected_version and expected_version != group.version:
        raise Conflict(
            "the group changed since the version you sent",
            "version_mismatch",
            {"current_version": str(group.version)},
        )


def _group_name_taken() -> AlreadyExists:
    return AlreadyExists(
        "a group with this name already exists",
        "group_name_taken",
        [FieldViolation("name", "is another group's")],
    )


async def create_group(uow: CustomerUnitOfWork, name: str, description: str) -> Group:
    name = name.strip()
    raise_if(
        require(0 < len(name) <= 100, "name", "1 to 100 characters")
        + require(len(description) <= 500, "description", "at most 500 characters")
    )
    # Any case: `VIP` beside `vip` would read as one group, as role and tier names would.
    if await uow.groups.get_by_name(name) is not None:
        raise _group_name_taken()
    group_id = new_id("cgrp")
    try:
        await uow.groups.add(group_id, name, description)
    except KeyTaken:  # taken by a create at the same moment: the index decided
        raise _group_name_taken() from None
    return await get_group(uow, group_id)


async def get_group(uow: CustomerUnitOfWork, group_id: str, lock: str = "") -> Group:
    row = await uow.groups.get(group_id, lock)
    if row is None:
        raise NotFound("group", group_id)
    return _group(row)


async def list_groups(uow: CustomerUnitOfWork, page: PageRequest) -> list[Group]:
    return [_group(r) for r in await uow.groups.list(page)]


async def change_members(
    uow: CustomerUnitOfWork, group_id: str, customer_ids: Sequence[str], add: bool
) -> Group:
    ids = list(dict.fromkeys(customer_ids))
    raise_if(
        require(
            0 < len(ids) <= MAX_GROUP_CHANGE,
            "customer_ids",
            f"1 to {MAX_GROUP_CHANGE} customer ids",
        )
    )
    # Shared: members change while the group stays (a delete waits, or finds none after).
    await get_group(uow, group_id, lock="share")
    # Locked in one order (no deadlock between two changes of overlapping lists): each
    # customer whose groups change gets a new version below.
    # Another merchant's customer is one that does not exist: a 404 names it, as it names an
    # erased one (gone, as its read says), joining or leaving.
    for customer_id in sorted(ids):
        field = f"customer_ids[{list(customer_ids).index(customer_id)}]"
        if add:
            await active_customer(uow, customer_id, for_update=True, field=field)
            continue
        # A merged customer may leave (its groups went to the survivor: nothing changes).
        found = await uow.customers.get(customer_id, for_update=True)
        if found is None or found.status not in (ACTIVE, MERGED):
            raise NotFound("customer", customer_id, [field])
    if add:
        changed = await uow.groups.add_members(group_id, ids)
    else:
        changed = await uow.groups.remove_members(group_id, ids)
    await _groups_changed(uow, changed)
    return await get_group(uow, group_id)


async def _groups_changed(uow: CustomerUnitOfWork, changed: Sequence[str]) -> None:
    """A customer's groups are part of the customer: promotions for a group are priced from
    the customer's events, and a partner's copy keyed on its version must see the change.
    The customers are locked already."""
    for customer_id in sorted(changed):
        customer = await uow.customers.get(customer_id)
        if customer is None or customer.status != ACTIVE:
            continue  # a merged customer's groups went to the winner; it is not announced
        seen = customer.version
        customer.version += 1
        saved = await uow.customers.save(customer, seen)
        assert saved, "locked above"
        uow.publish(CustomerUpdated(customer))


async def update_group(
    uow: CustomerUnitOfWork,
    group_id: str,
    name: str | None,
    description: str | None,
    expected_version: int = 0,
) -> Group:
    """Only what is given changes, and bumps the group's version (what it already is changes
    nothing); the members keep their versions (their groups are ids). With
    `expected_version`, a group at another version is refused (`version_mismatch`)."""
    group = await get_group(uow, group_id, lock="update")
    _stale_group(group, expected_version)
    new_name = group.name if name is None else name.strip()
    new_description = group.description if description is None else description
    raise_if(
        require(0 < len(new_name) <= 100, "name", "1 to 100 characters")
        + require(len(new_description) <= 500, "description", "at most 500 characters")
    )
    if new_name != group.name:
        # Any case; its own name in another case is a rename.
        holder = await uow.groups.get_by_name(new_name)
        if holder is not None and holder.id != group_id:
            raise _group_name_taken()
    if (new_name, new_description) != (group.name, group.description):
        try:
            await uow.groups.change(group_id, new_name, new_description)
        except KeyTaken:  # taken by a change at the same moment: the index decided
            raise _group_name_taken() from None
    return await get_group(uow, group_id)


async def delete_group(uow: CustomerUnitOfWork, group_id: str, expected_version: int = 0) -> Group:
    """The group as it was. Its members leave it as RemoveGroupMembers makes them leave. With
    `expected_version`, a group at another version is refused (`version_mismatch`)."""
    group = await get_group(uow, group_id, lock="update")
    _stale_group(group, expected_version)
    # The group first, then its members in id order: the order change_members locks in.
    for customer_id in sorted(await uow.groups.member_ids(group_id)):
        await uow.customers.get(customer_id, for_update=True)
    await _groups_changed(uow, await uow.groups.remove(group_id))
    return group


async def groups_of(uow: CustomerUnitOfWork, customer_id: str) -> list[Group]:
    return [_group(r) for r in await uow.groups.of(customer_id)]


@dataclass(frozen=True)
class Export:
    customer: Customer
    groups: list[Group]
    entries: list[Any]
    purchases: list[Any]
    merged: list[str]


async def export_customer(uow: CustomerUnitOfWork, customer_id: str) -> Export:
    """Everything this service holds about one customer, for a data export request. The
    duplicates merged into it are the same person: their points history (kept under their
    ids, the move of their balance its last entry) is theirs too; their purchases and groups
    moved here with the merge."""
    customer = await active_customer(uow, customer_id)
    merged = await uow.customers.merged_into(customer.id)
    return Export(
        customer,
        await groups_of(uow, customer.id),
        await uow.loyalty.history_of_all([customer.id, *merged]),
        list(await uow.purchases.all_of(customer.id)),
        merged,
    )
