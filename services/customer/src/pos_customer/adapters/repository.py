"""PostgreSQL repositories and the unit of work of the customer service.

Every repository is bound to the merchant of the unit of work: no method takes a merchant id.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Row,
    Text,
    and_,
    bindparam,
    delete,
    func,
    insert,
    literal,
    select,
    tuple_,
    update,
)
from sqlalchemy import text as sql_text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from pos_customer.adapters import events, messages
from pos_customer.adapters.tables import (
    customer_groups,
    customer_terms,
    customers,
    erasures,
    group_members,
    loyalty_program_versions,
    loyalty_programs,
    order_reversals,
    points_holds,
    points_ledger,
    purchases,
)
from pos_customer.domain import loyalty
from pos_customer.domain.model import ACTIVE, Address, Consent, Customer, KeyTaken
from pos_kit.changes import list_page
from pos_kit.direct import Prepared, bound, keyed
from pos_kit.errors import AnswerWithdrawn
from pos_kit.paging import PageRequest
from pos_kit.uow import UnitOfWork

# The unique indexes on customers and the field each one keeps unique.
_KEY_FIELDS = {"customers_email": "email", "customers_external_id": "external_id"}

PROFILE_OPERATIONS = (
    "CreateCustomer",
    "UpdateCustomer",
    "UpsertCustomer",
    "BatchUpsertCustomers",
    "MergeCustomers",
)
# A points adjustment's answer holds its `reason`, free text (a name, an email): withdrawn on
# the customer's erasure as a profile's is (the entry itself stays, its reason blanked).
POINTS_OPERATIONS = ("AdjustPoints",)
# What a stored answer that held an erased customer becomes (a batch's whole answer, if it
# held one): a retry under its request id gets this, NOT_FOUND `customer_erased`.
ERASED_ANSWER = AnswerWithdrawn(
    "customer_erased",
    "the answer to this request held a customer who has since been erased; it is no longer"
    " kept and the request is not run again (use a new request_id for a new request)",
)


def _addresses(value: Any) -> tuple[Address, ...]:
    return tuple(Address(**a) for a in value or [])


def _customer(row: Row[Any], group_ids: Sequence[str] = ()) -> Customer:
    m = row._mapping
    return Customer(
        id=m["id"],
        email=m["email"],
        given_name=m["given_name"],
        family_name=m["family_name"],
        loyalty_points=m["loyalty_points"],
        version=m["version"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        phone=m["phone"],
        external_id=m["external_id"],
        addresses=_addresses(m["addresses"]),
        birthday=m["birthday"],
        notes=m["notes"],
        consent=Consent(m["consent_granted"], m["consent_at"], m["consent_channel"]),
        tags=tuple(m["tags"]),
        group_ids=tuple(group_ids),
        status=m["status"],
        merged_into=m["merged_into"],
        points_held=m["points_held"],
        tier=m["tier"],
    )


def _profile_values(c: Customer) -> dict[str, Any]:
    return {
        "email": c.email,
        "phone": c.phone,
        "given_name": c.given_name,
        "family_name": c.family_name,
        "external_id": c.external_id,
        "addresses": [a.__dict__ for a in c.addresses],
        "birthday": c.birthday,
        "notes": c.notes,
        "consent_granted": c.consent.granted,
        "consent_at": c.consent.given_at,
        "consent_channel": c.consent.channel,
        "tags": list(c.tags),
        "status": c.status,
        "merged_into": c.merged_into,
        "version": c.version,
    }


def customer_row(merchant_id: str, c: Customer) -> dict[str, Any]:
    """The `customers` row of a new customer (the stamps and balance are the defaults; the
    tier is the one every customer holds from the start, if any)."""
    return {"merchant_id": merchant_id, "id": c.id, **_profile_values(c), "tier": c.tier}


def term_rows(merchant_id: str, batch: Sequence[Customer]) -> list[dict[str, Any]]:
    """The `customer_terms` rows a text search finds these customers by (none once they are
    merged or erased)."""
    return [
        {"merchant_id": merchant_id, "term": term, "customer_id": c.id}
        for c in batch
        if c.status == ACTIVE
        for term in sorted(c.search_terms())
    ]


def _starts(term: Any, prefix: str) -> tuple[Any, Any]:
    """`term` starts with `prefix`, as a range of the "C"-collated terms: the index answers it
    in any plan (a LIKE with a bound pattern cannot use it in a generic, prepared plan) and in
    its own order, so the first page needs no sort. Byte order of UTF-8 is code point order:
    the range ends at the prefix with its last character raised by one."""
    after = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    return term >= prefix, term < after


def _get(lock: bool) -> Callable[[], Any]:
    """A customer with their groups' ids, in one round trip (a sale's points read it locked)."""

    def build() -> Any:
        merchant = bindparam("w_merchant_id", type_=Text)
        groups = (
            select(group_members.c.group_id)
            .where(
                group_members.c.merchant_id == merchant,
                group_members.c.customer_id == customers.c.id,
            )
            .order_by(group_members.c.group_id)
        )
        query = select(customers, func.array(groups.scalar_subquery()).label("group_ids")).where(
            customers.c.merchant_id == merchant, customers.c.id == bindparam("w_id", type_=Text)
        )
        return query.with_for_update(of=customers) if lock else query

    return build


def _record_purchase() -> Any:
    names = ("merchant_id", "order_id", "customer_id", "location_id", "total_amount",
             "currency", "points_earned", "earning_lines")  # fmt: skip
    values: dict[str, Any] = bound(purchases, names)
    values["ordered_at"] = func.coalesce(
        bindparam("ordered_at", type_=purchases.c.ordered_at.type), func.now()
    )
    return (
        pg_insert(purchases).values(values).on_conflict_do_nothing().returning(purchases.c.order_id)
    )


def _append_points() -> Any:
    names = ("merchant_id", "id", "customer_id", "kind", "points", "balance_after", "order_id",
             "reason", "tier_points", "return_id")  # fmt: skip
    return (
        insert(points_ledger)
        .values(bound(points_ledger, names))
        .returning(points_ledger.c.created_at)
    )


def _save_points() -> Any:
    names = ("loyalty_points", "points_held", "tier")
    return (
        update(customers)
        .where(keyed(customers, "merchant_id", "id"))
        .values(bound(customers, names))
        .returning(customers.c.updated_at)
    )


def _new_version() -> Any:
    groups = (
        select(group_members.c.group_id)
        .where(
            group_members.c.merchant_id == customers.c.merchant_id,
            group_members.c.customer_id == customers.c.id,
        )
        .order_by(group_members.c.group_id)
        .correlate(customers)
    )
    return (
        update(customers)
        .where(keyed(customers, "merchant_id", "id"))
        .values(version=customers.c.version + 1)
        .returning(*customers.c, func.array(groups.scalar_subquery()).label("group_ids"))
    )


# Written for every sale a customer earns points on: built once (pos_kit.direct.Prepared).
RECORD_PURCHASE = Prepared(_record_purchase)
APPEND_POINTS = Prepared(_append_points)
SAVE_POINTS = Prepared(_save_points)
NEW_VERSION = Prepared(_new_version)
GET = Prepared(_get(lock=False))
GET_LOCKED = Prepared(_get(lock=True))


def lineage(merchant_id: str, customer_id: str) -> Any:
    """The customer and every customer merged into it, directly or through an earlier merge
    (a recursive CTE of their ids)."""
    merged = (
        select(customers.c.id)
        .where(customers.c.merchant_id == merchant_id, customers.c.id == customer_id)
        .cte("merged", recursive=True)
    )
    return merged.union(
        select(customers.c.id).where(
            customers.c.merchant_id == merchant_id,
            customers.c.merged_into == merged.c.id,
        )
    )


class SqlCustomerRepository:
    def __init__(self, conn: AsyncConnection, merchant_id: str) -> None:
        self._conn = conn
        self._merchant = merchant_id

    def _mine(self) -> Any:
        return customers.c.merchant_id == self._merchant

    async def _with_groups(self, rows: Sequence[Row[Any]]) -> list[Customer]:
        if not rows:
            return []
        ids = [r.id for r in rows]
        found = await self._conn.execute(
            select(group_members.c.customer_id, group_members.c.group_id)
            .where(group_members.c.merchant_id == self._merchant)
            .where(group_members.c.customer_id.in_(ids))
            .order_by(group_members.c.group_id)
        )
        groups: dict[str, list[str]] = {}
        for customer_id, group_id in found:
            groups.setdefault(customer_id, []).append(group_id)
        return [_customer(r, groups.get(r.id, ())) for r in rows]

    @asynccontextmanager
    async def claiming_keys(self) -> AsyncIterator[None]:
        """Writes that may take an email or external_id another request took after it was
        looked for: the unique index refuses it, and KeyTaken names the field, the writes
        undone and the transaction still usable (a savepoint), so an upsert can read the
        winner and update it."""
        await self._conn.execute(sql_text("SAVEPOINT claiming_keys"))
        try:
            yield
        except IntegrityError as exc:
            field = _KEY_FIELDS.get(getattr(getattr(exc.orig, "diag", None), "constraint_name", ""))
            if field is None:
                raise
            await self._conn.execute(sql_text("ROLLBACK TO SAVEPOINT claiming_keys"))
            raise KeyTaken(field) from None
        await self._conn.execute(sql_text("RELEASE SAVEPOINT claiming_keys"))

    async def add(self, customer: Customer) -> None:
        row = (
            await self._conn.execute(
                insert(customers)
                .values(customer_row(self._merchant, customer))
                .returning(customers.c.created_at, customers.c.updated_at)
            )
        ).one()
        customer.created_at, customer.updated_at = row.created_at, row.updated_at
        await self._index(customer)

    async def add_many(self, batch: Sequence[Customer]) -> None:
        if not batch:
            return
        rows = (
            await self._conn.execute(
                insert(customers).returning(
                    customers.c.id, customers.c.created_at, customers.c.updated_at
                ),
                [customer_row(self._merchant, c) for c in batch],
            )
        ).all()
        stamps = {r.id: (r.created_at, r.updated_at) for r in rows}
        for c in batch:
            c.created_at, c.updated_at = stamps[c.id]
        await self._index_many(batch)

    async def _index(self, customer: Customer) -> None:
        await self._index_many([customer])

    async def _index_many(self, batch: Sequence[Customer]) -> None:
        ids = [c.id for c in batch]
        await self._conn.execute(
            delete(customer_terms).where(
                customer_terms.c.merchant_id == self._merchant,
                customer_terms.c.customer_id.in_(ids),
            )
        )
        rows = term_rows(self._merchant, batch)
        if rows:
            await self._conn.execute(insert(customer_terms), rows)

    async def get(self, customer_id: str, *, for_update: bool = False) -> Customer | None:
        statement = GET_LOCKED if for_update else GET
        params = {"w_merchant_id": self._merchant, "w_id": customer_id}
        row = (await statement.execute(self._conn, params)).first()
        return _customer(row, row.group_ids) if row else None

    async def get_by_email(self, email: str) -> Customer | None:
        row = (
            await self._conn.execute(
                select(customers).where(self._mine(), customers.c.email == email)
            )
        ).first()
        return _customer(row) if row else None

    async def get_by_external_ids(
        self, external_ids: Sequence[str]
    ) -> builtins.dict[str, Customer]:
        rows = (
            await self._conn.execute(
                select(customers)
                .where(self._mine(), customers.c.external_id.in_(list(external_ids)))
                .with_for_update()
            )
        ).all()
        return {c.external_id or "": c for c in await self._with_groups(rows)}

    async def taken_emails(self, emails: Sequence[str]) -> builtins.dict[str, str]:
        """email -> the id of the customer holding it."""
        rows = await self._conn.execute(
            select(customers.c.email, customers.c.id).where(
                self._mine(), customers.c.email.in_(list(emails))
            )
        )
        return {e: i for e, i in rows}

    async def merged_into(self, customer_id: str) -> list[str]:
        """Every customer merged into this one, directly or through an earlier merge."""
        merged = lineage(self._merchant, customer_id)
        rows = await self._conn.execute(
            select(merged.c.id).where(merged.c.id != customer_id).order_by(merged.c.id)
        )
        return [r[0] for r in rows]

    async def save(self, customer: Customer, seen_version: int) -> bool:
        """Write the profile if the stored version is still seen_version; False if not."""
        result = await self._conn.execute(
            update(customers)
            .where(
                self._mine(),
                customers.c.id == customer.id,
                customers.c.version == seen_version,
            )
            .values(**_profile_values(customer))
            .returning(customers.c.updated_at)
        )
        row = result.first()
        if row is None:
            return False
        customer.updated_at = row.updated_at
        await self._index(customer)
        return True

    async def save_many(self, batch: Sequence[Customer]) -> None:
        for c in batch:
            row = (
                await self._conn.execute(
                    update(customers)
                    .where(self._mine(), customers.c.id == c.id)
                    .values(**_profile_values(c))
                    .returning(customers.c.updated_at)
                )
            ).one()
            c.updated_at = row.updated_at
        await self._index_many(batch)

    async def save_points(self, customer: Customer) -> None:
        """The balance, the held points and the tier (the ledger entry is written beside)."""
        values = {
            "w_merchant_id": self._merchant,
            "w_id": customer.id,
            "loyalty_points": customer.loyalty_points,
            "points_held": customer.points_held,
            "tier": customer.tier,
        }
        row = (await SAVE_POINTS.execute(self._conn, values)).one()
        customer.updated_at = row.updated_at

    async def new_version(self, customer_id: str) -> Customer:
        """The next version of a customer whose row this transaction locked and changed, as
        it now stands (groups included), in one round trip."""
        params = {"w_merchant_id": self._merchant, "w_id": customer_id}
        row = (await NEW_VERSION.execute(self._conn, params)).one()
        return _customer(row, row.group_ids)

    async def tier_candidates(self, *, everyone: bool, after: str = "", limit: int) -> list[str]:
        """The active customers whose tier a new program can move, by id, the first `limit`
        past `after`: every one (`everyone`: a tier at threshold 0 is every customer's), else
        those holding a tier, those whose ledger has an earn or reversal, and those another
        customer was merged into (whose earns count towards theirs)."""
        query = select(customers.c.id).where(
            self._mine(), customers.c.status == ACTIVE, customers.c.id > after
        )
        if not everyone:
            earned = select(points_ledger.c.customer_id).where(
                points_ledger.c.merchant_id == self._merchant,
                points_ledger.c.kind.in_([loyalty.EARNED, loyalty.REVERSED]),
            )
            merged = select(customers.c.merged_into).where(
                self._mine(), customers.c.merged_into.is_not(None)
            )
            query = query.where(
                (customers.c.tier != "") | customers.c.id.in_(earned) | customers.c.id.in_(merged)
            )
        query = query.order_by(customers.c.id).limit(limit)
        return [r[0] for r in await self._conn.execute(query)]

    async def list(self, page: PageRequest, group_id: str = "") -> list[Customer]:
        """Active customers by id; with `page.since` (the change feed) the merged and erased
        ones changed since too, so a poller learns where a customer went (the caller answers
        them as tombstones)."""
        query = select(customers).where(self._mine())
        if page.since is None:
            query = query.where(customers.c.status == ACTIVE)
        if group_id:
            query = query.where(
                customers.c.id.in_(
                    select(group_members.c.customer_id).where(
                        group_members.c.merchant_id == self._merchant,
                        group_members.c.group_id == group_id,
                    )
                )
            )
        rows = await list_page(self._conn, query, customers.c.updated_at, customers.c.id, page)
        return await self._with_groups(rows)

    async def search(
        self,
        email: str | None,
        phone: str | None,
        external_id: str | None,
        words: Sequence[str],
        limit: int,
        after: str | None = None,
    ) -> tuple[builtins.list[Customer], str]:
        """A page of the customers found, and the key of the page after it ("" at the end):
        by id for exact keys, in term order for words."""
        query = select(customers).where(self._mine(), customers.c.status == ACTIVE)
        if email is not None:
            query = query.where(customers.c.email == email)
        if phone is not None:
            query = query.where(customers.c.phone == phone)
        if external_id is not None:
            query = query.where(customers.c.external_id == external_id)
        if not words:
            if after is not None:
                query = query.where(customers.c.id > after)
            query = query.order_by(customers.c.id).limit(limit + 1)
            rows = (await self._conn.execute(query)).all()
            more = len(rows) > limit
            rows = rows[:limit]
            return await self._with_groups(rows), rows[-1].id if more else ""
        # The longest word drives the range scan (fewest rows); each other word must start a
        # term of the same customer. Term order is a stable, index-ordered answer, and the key
        # of a page is its last (term, customer).
        first, *rest = sorted(words, key=len, reverse=True)
        terms, earlier = customer_terms, customer_terms.alias()
        candidates = (
            select(terms.c.term, terms.c.customer_id)
            .where(
                terms.c.merchant_id == self._merchant,
                *_starts(terms.c.term, first),
                # A customer once, by the first term the word starts ("ann" starts "anna" and
                # "annie"): under the second it would come again on a later page.
                ~select(literal(1))
                .where(
                    earlier.c.merchant_id == self._merchant,
                    earlier.c.customer_id == terms.c.customer_id,
                    *_starts(earlier.c.term, first),
                    earlier.c.term < terms.c.term,
                )
                .exists(),
            )
            .order_by(terms.c.term, terms.c.customer_id)
            .limit(limit + 1)
        )
        if after is not None:
            term, _, customer_id = after.rpartition("|")
            candidates = candidates.where(
                tuple_(terms.c.term, terms.c.customer_id) > tuple_(literal(term), customer_id)
            )
        for word in rest:
            other = customer_terms.alias()
            candidates = candidates.where(
                select(literal(1))
                .where(
                    other.c.merchant_id == self._merchant,
                    other.c.customer_id == terms.c.customer_id,
                    *_starts(other.c.term, word),
                )
                .exists()
            )
        keys = (await self._conn.execute(candidates)).all()
        more = len(keys) > limit
        keys = keys[:limit]
        if not keys:
            return [], ""
        ids = [k.customer_id for k in keys]
        rows = (await self._conn.execute(query.where(customers.c.id.in_(ids)))).all()
        order = {cid: i for i, cid in enumerate(ids)}
        found = sorted(await self._with_groups(rows), key=lambda c: order[c.id])
        return found, f"{keys[-1].term}|{keys[-1].customer_id}" if more else ""

    async def erase(self, erased: Customer, requested_by: str) -> None:
        await self._conn.execute(
            update(customers)
            .where(self._mine(), customers.c.id == erased.id)
            .values(**_profile_values(erased))
        )
        await self._index(erased)
        await self._conn.execute(
            insert(erasures).values(
                merchant_id=self._merchant, customer_id=erased.id, requested_by=requested_by
            )
        )

    async def purge_copies(self, customer_id: str) -> None:
        """Stored answers and outbox rows that hold the customer (their snapshots name its id)
        lose it: an erased customer's data must not wait out the replay window or the relay.

        A stored answer is withdrawn, not deleted: its request id stays spent, so a retry
        under it (a partner's queued one) is refused with `customer_erased` instead of running
        again and bringing the customer back. The request's fingerprint (a plain hash of a
        request that held the personal data) goes with the answer. A merge's answer naming the
        customer as the duplicate merged away holds the survivor, not the customer's profile:
        it is kept, the duplicate's snapshot emptied, and a retry of the merge replays it
        (until 2026-12-04 it was withdrawn, and the retry refused `customer_erased`)."""
        # Only answers and events that carry a profile, and a points adjustment's answer (its
        # free-text reason): the loyalty events must still reach their readers, so their
        # reasons are blanked instead (SqlLoyaltyRepository.forget_reasons).
        params = {
            "m": self._merchant,
            "c": customer_id,
            "ops": [*PROFILE_OPERATIONS, *POINTS_OPERATIONS],
            "types": list(events.PROFILE_EVENT_TYPES),
            "withdrawn": ERASED_ANSWER.stored(),
        }
        merges = await self._conn.execute(
            sql_text(
                "SELECT request_id, response FROM processed_requests"
                " WHERE merchant_id = :m AND operation = 'MergeCustomers'"
                " AND position(convert_to(:c, 'UTF8') IN response) > 0 FOR UPDATE"
            ),
            params,
        )
        kept = []
        for request_id, response in merges.all():
            rewritten = messages.erased_in_merge_answer(bytes(response), customer_id)
            if rewritten is None:
                continue
            kept.append(request_id)
            await self._conn.execute(
                sql_text(
                    "UPDATE processed_requests SET response = :r"
                    " WHERE merchant_id = :m AND request_id = :i"
                ),
                {"r": rewritten, "m": self._merchant, "i": request_id},
            )
        await self._conn.execute(
            sql_text(
                "UPDATE processed_requests SET response = :withdrawn, fingerprint = ''::bytea"
                " WHERE merchant_id = :m AND operation = ANY(:ops)"
                " AND position(convert_to(:c, 'UTF8') IN response) > 0"
                " AND NOT (request_id = ANY(:kept))"
            ),
            {**params, "kept": kept},
        )
        holding = (
            " FROM outbox WHERE merchant_id = :m AND event_type = ANY(:types)"
            " AND position(convert_to(:c, 'UTF8') IN payload) > 0"
        )
        # Published events are out (the stream's erasure takes their copies there); one not
        # yet published is still sent, with the erased customer's snapshot: deleting it would
        # leave its readers (the feed, the order service) without the customer's creation,
        # or without a merge that moved another customer's points.
        # Every such row locked first, whether published or not: a row the relay is
        # publishing is waited for and read as it left it (filtered on `published_at` in the
        # same statement, a row published meanwhile would drop out of both the delete and the
        # rewrite, and keep the profile).
        held = await self._conn.execute(
            sql_text(
                "SELECT seq, event_type, payload, published_at IS NULL" + holding
                + " ORDER BY seq FOR UPDATE"
            ),
            params,
        )  # fmt: skip
        published = []
        for seq, event_type, payload, pending in held.all():
            if not pending:
                published.append(seq)
                continue
            await self._conn.execute(
                sql_text("UPDATE outbox SET payload = :p WHERE seq = :s"),
                {"p": events.erased_in_event(event_type, payload, customer_id), "s": seq},
            )
        if published:
            await self._conn.execute(
                sql_text("DELETE FROM outbox WHERE seq = ANY(:seqs)"), {"seqs": published}
            )

    async def erased_at(self, customer_id: str) -> datetime | None:
        found: datetime | None = (
            await self._conn.execute(
                select(erasures.c.erased_at).where(
                    erasures.c.merchant_id == self._merchant,
                    erasures.c.customer_id == customer_id,
                )
            )
        ).scalar()
        return found


class SqlGroupRepository:
    def __init__(self, conn: AsyncConnection, merchant_id: str) -> None:
        self._conn = conn
        self._merchant = merchant_id

    def _query(self, deleted_too: bool = False) -> Any:
        """The groups there, with their member counts; `deleted_too`: and the tombstones of
        those deleted (no members), which only the change feed shows."""
        count = (
            select(func.count())
            .where(
                group_members.c.merchant_id == customer_groups.c.merchant_id,
                group_members.c.group_id == customer_groups.c.id,
            )
            .scalar_subquery()
        )
        query = select(customer_groups, count.label("member_count")).where(
            customer_groups.c.merchant_id == self._merchant
        )
        return query if deleted_too else query.where(customer_groups.c.deleted_at.is_(None))

    @asynccontextmanager
    async def _claiming_name(self) -> AsyncIterator[None]:
        """A write of a name another group took after it was looked for: the unique index
        (any case, outer spaces aside) refuses it, and KeyTaken names `name`, the write undone
        in its savepoint."""
        await self._conn.execute(sql_text("SAVEPOINT claiming_group_name"))
        try:
            yield
        except IntegrityError as exc:
            constraint = getattr(getattr(exc.orig, "diag", None), "constraint_name", "")
            if constraint != "customer_groups_name":
                raise
            await self._conn.execute(sql_text("ROLLBACK TO SAVEPOINT claiming_group_name"))
            raise KeyTaken("name") from None
        await self._conn.execute(sql_text("RELEASE SAVEPOINT claiming_group_name"))

    async def add(self, group_id: str, name: str, description: str) -> None:
        async with self._claiming_name():
            await self._conn.execute(
                insert(customer_groups).values(
                    merchant_id=self._merchant, id=group_id, name=name, description=description
                )
            )

    async def get(self, group_id: str, lock: str = "") -> Row[Any] | None:
        """The group; `lock` "share" (its members change) or "update" (it changes)."""
        query = self._query().where(customer_groups.c.id == group_id)
        if lock:
            query = query.with_for_update(read=lock == "share", of=customer_groups)
        return (await self._conn.execute(query)).first()

    async def member_ids(self, group_id: str) -> list[str]:
        found = await self._conn.execute(
            select(group_members.c.customer_id).where(
                group_members.c.merchant_id == self._merchant,
                group_members.c.group_id == group_id,
            )
        )
        return list(found.scalars())

    async def get_by_name(self, name: str) -> Row[Any] | None:
        """The group holding `name` in any case, outer spaces aside (the unique index's key)."""
        key = func.lower(func.btrim(customer_groups.c.name))
        return (
            await self._conn.execute(self._query().where(key == func.lower(func.btrim(name))))
        ).first()

    async def list(self, page: PageRequest) -> Sequence[Row[Any]]:
        # With `updated_since` (in `page.since`): the kit's change feed, oldest change first,
        # resumed from the (updated_at, id) cursor, deleted groups too; otherwise by id.
        query = self._query(deleted_too=page.since is not None)
        return await list_page(
            self._conn, query, customer_groups.c.updated_at, customer_groups.c.id, page
        )

    async def change(self, group_id: str, name: str, description: str) -> None:
        async with self._claiming_name():
            await self._conn.execute(
                update(customer_groups)
                .where(
                    customer_groups.c.merchant_id == self._merchant,
                    customer_groups.c.id == group_id,
                )
                .values(name=name, description=description, version=customer_groups.c.version + 1)
            )

    async def remove(self, group_id: str) -> Sequence[str]:
        """The group deleted (kept as a tombstone); the customers who were its members."""
        members = await self._conn.execute(
            delete(group_members)
            .where(
                group_members.c.merchant_id == self._merchant, group_members.c.group_id == group_id
            )
            .returning(group_members.c.customer_id)
        )
        gone = list(members.scalars())
        # A tombstone for the change feed: a new version, so the trigger stamps its deletion.
        await self._conn.execute(
            update(customer_groups)
            .where(
                customer_groups.c.merchant_id == self._merchant, customer_groups.c.id == group_id
            )
            .values(deleted_at=func.now(), version=customer_groups.c.version + 1)
        )
        return gone

    async def add_members(self, group_id: str, customer_ids: Sequence[str]) -> Sequence[str]:
        """The customers who were not members yet."""
        if not customer_ids:
            return []
        added = await self._conn.execute(
            pg_insert(group_members)
            .values(
                [
                    {"merchant_id": self._merchant, "group_id": group_id, "customer_id": c}
                    for c in customer_ids
                ]
            )
            .on_conflict_do_nothing()
            .returning(group_members.c.customer_id)
        )
        return list(added.scalars())

    async def remove_members(self, group_id: str, customer_ids: Sequence[str]) -> Sequence[str]:
        """The customers who were members."""
        removed = await self._conn.execute(
            delete(group_members)
            .where(
                group_members.c.merchant_id == self._merchant,
                group_members.c.group_id == group_id,
                group_members.c.customer_id.in_(list(customer_ids)),
            )
            .returning(group_members.c.customer_id)
        )
        return list(removed.scalars())

    async def of(self, customer_id: str) -> Sequence[Row[Any]]:
        member = select(group_members.c.group_id).where(
            group_members.c.merchant_id == self._merchant,
            group_members.c.customer_id == customer_id,
        )
        return (
            await self._conn.execute(
                self._query().where(customer_groups.c.id.in_(member)).order_by(customer_groups.c.id)
            )
        ).all()

    async def move_members(self, loser_id: str, winner_id: str) -> None:
        await self._conn.execute(
            pg_insert(group_members)
            .from_select(
                ["merchant_id", "group_id", "customer_id"],
                select(
                    group_members.c.merchant_id, group_members.c.group_id, literal(winner_id)
                ).where(
                    group_members.c.merchant_id == self._merchant,
                    group_members.c.customer_id == loser_id,
                ),
            )
            .on_conflict_do_nothing()
        )
        await self.forget(loser_id)

    async def forget(self, customer_id: str) -> None:
        await self._conn.execute(
            delete(group_members).where(
                group_members.c.merchant_id == self._merchant,
                group_members.c.customer_id == customer_id,
            )
        )


def _entry(row: Row[Any]) -> loyalty.Entry:
    m = row._mapping
    return loyalty.Entry(
        id=m["id"],
        customer_id=m["customer_id"],
        kind=m["kind"],
        points=m["points"],
        balance_after=m["balance_after"],
        order_id=m["order_id"] or "",
        reason=m["reason"],
        created_at=m["created_at"],
        tier_points=m["tier_points"],
        return_id=m["return_id"] or "",
    )


def _hold(row: Row[Any]) -> loyalty.Hold:
    m = row._mapping
    return loyalty.Hold(
        order_id=m["order_id"],
        customer_id=m["customer_id"],
        points=m["points"],
        status=m["status"],
        currency=m["currency"],
        point_value_minor=m["point_value_minor"],
    )


def _program(value: dict[str, Any], version: int) -> loyalty.Program:
    tiers = tuple(loyalty.Tier(**t) for t in value.get("tiers", []))
    fields = {k: v for k, v in value.items() if k != "tiers"}
    for name in ("earning_tenders", "excluded_skus"):
        fields[name] = tuple(fields.get(name, ()))
    return loyalty.Program(**fields, tiers=tiers, version=version)


class SqlLoyaltyRepository:
    def __init__(self, conn: AsyncConnection, merchant_id: str) -> None:
        self._conn = conn
        self._merchant = merchant_id

    async def program(self, lock: bool = False) -> loyalty.Program:
        query = select(loyalty_programs).where(loyalty_programs.c.merchant_id == self._merchant)
        if lock:
            query = query.with_for_update()
        row = (await self._conn.execute(query)).first()
        return loyalty.DEFAULT_PROGRAM if row is None else _program(row.program, row.version)

    async def retier_after(self) -> str | None:
        """Where the re-tiering of the last tier change has got to (the last customer id done,
        '' for none yet); None when nothing is left to do. Read under the program's lock."""
        row = (
            await self._conn.execute(
                select(loyalty_programs.c.retier_after).where(
                    loyalty_programs.c.merchant_id == self._merchant
                )
            )
        ).first()
        return None if row is None else row[0]

    async def set_retier_after(self, after: str | None) -> None:
        await self._conn.execute(
            update(loyalty_programs)
            .where(loyalty_programs.c.merchant_id == self._merchant)
            .values(retier_after=after)
        )

    async def program_at(self, when: datetime) -> loyalty.Program:
        """The program in force at `when`: the last version that took effect by then, or the one
        every merchant starts with before the merchant's first change."""
        t = loyalty_program_versions
        row = (
            await self._conn.execute(
                select(t.c.program, t.c.version)
                .where(t.c.merchant_id == self._merchant, t.c.effective_at <= when)
                .order_by(t.c.effective_at.desc(), t.c.version.desc())
                .limit(1)
            )
        ).first()
        return loyalty.DEFAULT_PROGRAM if row is None else _program(row.program, row.version)

    async def save_program(self, program: loyalty.Program, seen_version: int) -> bool:
        body = {
            k: v
            for k, v in program.__dict__.items()
            if k not in ("version", "tiers", "earning_tenders", "excluded_skus")
        }
        body["tiers"] = [t.__dict__ for t in program.tiers]
        body["earning_tenders"] = list(program.earning_tenders)
        body["excluded_skus"] = list(program.excluded_skus)
        if await self._replace_program(body, program.version, seen_version):
            # In force from now on. The clock when it is written, not the transaction's start:
            # the program's row is locked by then, so each version takes effect after the one
            # before it, however the transactions that changed them began.
            await self._conn.execute(
                insert(loyalty_program_versions).values(
                    merchant_id=self._merchant,
                    version=program.version,
                    program=body,
                    effective_at=func.clock_timestamp(),
                )
            )
            return True
        return False

    async def _replace_program(self, body: dict[str, Any], version: int, seen_version: int) -> bool:
        result = await self._conn.execute(
            update(loyalty_programs)
            .where(
                loyalty_programs.c.merchant_id == self._merchant,
                loyalty_programs.c.version == seen_version,
            )
            .values(program=body, version=version)
            .returning(loyalty_programs.c.version)
        )
        if result.first() is not None:
            return True
        if seen_version != loyalty.DEFAULT_PROGRAM.version:
            return False
        # The first change of the program every merchant starts with: nothing stored yet.
        result = await self._conn.execute(
            pg_insert(loyalty_programs)
            .values(merchant_id=self._merchant, program=body, version=version)
            .on_conflict_do_nothing()
            .returning(loyalty_programs.c.version)
        )
        # rowcount is not reliable here through the driver's pipeline: ask for the row.
        return result.first() is not None

    async def forget_reasons(self, customer_id: str) -> None:
        """What an erasure leaves of the customer's points history: every entry, its points and
        balance, with its `reason` blank (free text: an adjustment's may name the person),
        and the same in the points events of the outbox that carry its entries, sent already
        or not (one not yet sent still is, without the reason). In the erasure's transaction."""
        await self._conn.execute(
            update(points_ledger)
            .where(
                points_ledger.c.merchant_id == self._merchant,
                points_ledger.c.customer_id == customer_id,
                points_ledger.c.reason != "",
            )
            .values(reason="")
        )
        # Locked first: a row the relay is publishing is waited for and rewritten after.
        held = await self._conn.execute(
            sql_text(
                "SELECT seq, event_type, payload FROM outbox WHERE merchant_id = :m"
                " AND event_type = ANY(:types) AND position(convert_to(:c, 'UTF8') IN payload) > 0"
                " ORDER BY seq FOR UPDATE"
            ),
            {"m": self._merchant, "c": customer_id, "types": list(events.ENTRY_EVENT_TYPES)},
        )
        for seq, event_type, payload in held.all():
            rewritten = events.reason_erased_in_event(event_type, bytes(payload), customer_id)
            if rewritten is not None:
                await self._conn.execute(
                    sql_text("UPDATE outbox SET payload = :p WHERE seq = :s"),
                    {"p": rewritten, "s": seq},
                )

    async def append(self, entry: loyalty.Entry) -> loyalty.Entry:
        values = {
            "merchant_id": self._merchant,
            "id": entry.id,
            "customer_id": entry.customer_id,
            "kind": entry.kind,
            "points": entry.points,
            "balance_after": entry.balance_after,
            "order_id": entry.order_id or None,
            "reason": entry.reason,
            "tier_points": entry.tier_points,
            "return_id": entry.return_id or None,
        }
        row = (await APPEND_POINTS.execute(self._conn, values)).one()
        return loyalty.Entry(**{**entry.__dict__, "created_at": row.created_at})

    async def returned_points(self, order_id: str) -> int:
        """What the order's returns have taken back so far, as a negative number or 0."""
        total = await self._conn.scalar(
            select(func.coalesce(func.sum(points_ledger.c.points), 0)).where(
                points_ledger.c.merchant_id == self._merchant,
                points_ledger.c.kind == loyalty.REVERSED,
                points_ledger.c.order_id == order_id,
                points_ledger.c.return_id.is_not(None),
            )
        )
        return int(total or 0)

    async def lock_order(self, order_id: str) -> None:
        """Until the transaction ends, nothing else earns or takes back this order's points: an
        earn and a cancellation arriving at once would otherwise each miss the other's rows."""
        key = func.hashtext(f"order-points:{self._merchant}:{order_id}")
        await self._conn.execute(select(func.pg_advisory_xact_lock(key)))

    async def record_reversal(
        self,
        order_id: str,
        return_id: str = "",
        total: int = 0,
        refunded: int = 0,
        lines: Mapping[str, int] | None = None,
    ) -> None:
        """That the order was cancelled (no return id) or had a return; once each. `lines`: the
        units the return took back, by line id, when its event said."""
        await self._conn.execute(
            pg_insert(order_reversals)
            .values(
                merchant_id=self._merchant,
                order_id=order_id,
                return_id=return_id,
                order_total=total,
                refunded=refunded,
                lines=dict(lines) if lines is not None else None,
            )
            .on_conflict_do_nothing()
        )

    async def reversals(self, order_id: str) -> list[loyalty.Reversal]:
        """The order's recorded cancellation and returns, the cancellation ('') first, then the
        returns in the order of what they refunded."""
        t = order_reversals
        rows = await self._conn.execute(
            select(t.c.return_id, t.c.order_total, t.c.refunded, t.c.lines)
            .where(t.c.merchant_id == self._merchant, t.c.order_id == order_id)
            .order_by(t.c.refunded, t.c.return_id)
        )
        return [
            loyalty.Reversal(
                r.return_id,
                int(r.order_total),
                int(r.refunded),
                None if r.lines is None else {k: int(v) for k, v in r.lines.items()},
            )
            for r in rows
        ]

    async def entry_for_order(
        self, kind: str, order_id: str, return_id: str = ""
    ) -> loyalty.Entry | None:
        """The order's own entry of that kind, or with `return_id` that return's."""
        t = points_ledger
        row = (
            await self._conn.execute(
                select(t).where(
                    t.c.merchant_id == self._merchant,
                    t.c.kind == kind,
                    t.c.order_id == order_id,
                    t.c.return_id == return_id if return_id else t.c.return_id.is_(None),
                )
            )
        ).first()
        return _entry(row) if row else None

    async def history(self, customer_id: str, page: PageRequest) -> list[loyalty.Entry]:
        """Newest first; the page token is the last entry's sequence number."""
        query = select(points_ledger).where(
            points_ledger.c.merchant_id == self._merchant,
            points_ledger.c.customer_id == customer_id,
        )
        if page.after:
            query = query.where(points_ledger.c.seq < int(page.after))
        rows = (
            await self._conn.execute(query.order_by(points_ledger.c.seq.desc()).limit(page.fetch))
        ).all()
        return [_entry(r) for r in rows]

    async def history_of_all(self, customer_ids: Sequence[str]) -> list[loyalty.Entry]:
        """Every entry of these customers (a person and the duplicates merged into them),
        newest first across them all."""
        query = select(points_ledger).where(
            points_ledger.c.merchant_id == self._merchant,
            points_ledger.c.customer_id.in_(list(customer_ids)),
        )
        rows = (await self._conn.execute(query.order_by(points_ledger.c.seq.desc()))).all()
        return [_entry(r) for r in rows]

    async def seq_of(self, entry_id: str) -> int:
        found: int = (
            await self._conn.execute(
                select(points_ledger.c.seq).where(
                    points_ledger.c.merchant_id == self._merchant, points_ledger.c.id == entry_id
                )
            )
        ).scalar_one()
        return found

    async def ledger_sum(self, customer_id: str) -> int:
        total: int = (
            await self._conn.execute(
                select(func.coalesce(func.sum(points_ledger.c.points), 0)).where(
                    points_ledger.c.merchant_id == self._merchant,
                    points_ledger.c.customer_id == customer_id,
                )
            )
        ).scalar_one()
        return int(total)

    async def expiry_figures(self, customer_id: str, cutoff: datetime) -> tuple[int, int]:
        """(credits before the cutoff, every debit ever as a positive number).

        A reversal takes back its own order's earn, not the oldest credits: what it takes back
        of the earn (`tier_points` of a cancellation, which also gives back what was redeemed)
        comes off the credits when that earn is older than the cutoff, and off nothing when it
        is newer (a debit would spend old points a recent order earned and had taken back).

        The customers merged into this one count with their entries, each at its own time, and
        the moves of a merge (`merged_out`, `merged_in`, which cancel out) do not: a merge
        moves points, it does not renew them."""
        merged = lineage(self._merchant, customer_id)
        mine = and_(
            points_ledger.c.merchant_id == self._merchant,
            points_ledger.c.customer_id.in_(select(merged.c.id)),
            points_ledger.c.kind.not_in([loyalty.MERGED_IN, loyalty.MERGED_OUT]),
        )
        earn = points_ledger.alias("earn")
        old_earn = (
            select(earn.c.id)
            .where(
                earn.c.merchant_id == points_ledger.c.merchant_id,
                earn.c.order_id == points_ledger.c.order_id,
                earn.c.kind == loyalty.EARNED,
                earn.c.created_at < cutoff,
            )
            .exists()
        )
        reversed_ = points_ledger.c.kind == loyalty.REVERSED
        # A debit by hand is an adjustment too: a debit, not a credit.
        credit = and_(points_ledger.c.kind.in_(sorted(loyalty.CREDITS)), points_ledger.c.points > 0)
        old_credits = func.coalesce(
            func.sum(points_ledger.c.points).filter(credit, points_ledger.c.created_at < cutoff),
            0,
        ) + func.coalesce(
            func.sum(func.coalesce(points_ledger.c.tier_points, points_ledger.c.points)).filter(
                reversed_, points_ledger.c.order_id != "", old_earn
            ),
            0,
        )
        debits = func.coalesce(
            func.sum(-points_ledger.c.points).filter(points_ledger.c.points < 0, ~reversed_), 0
        )
        row = (await self._conn.execute(select(old_credits, debits).where(mine))).one()
        return int(row[0]), int(row[1])

    async def customers_with_credits_before(self, cutoff: datetime) -> list[str]:
        rows = await self._conn.execute(
            select(points_ledger.c.customer_id)
            .where(
                points_ledger.c.merchant_id == self._merchant,
                points_ledger.c.kind.in_(sorted(loyalty.CREDITS)),
                points_ledger.c.points > 0,
                points_ledger.c.created_at < cutoff,
            )
            .distinct()
            .order_by(points_ledger.c.customer_id)
        )
        return [r[0] for r in rows]

    async def earned_since(self, customer_id: str, since: datetime | None) -> int:
        """What counts towards the customer's tier: its earns and reversals, and those of every
        customer merged into it (directly or through an earlier merge), each at its own time
        (a `merged_in` entry moves a balance, not what was earned, nor when)."""
        merged = lineage(self._merchant, customer_id)
        counted = func.coalesce(points_ledger.c.tier_points, points_ledger.c.points)
        query = select(func.coalesce(func.sum(counted), 0)).where(
            points_ledger.c.merchant_id == self._merchant,
            points_ledger.c.customer_id.in_(select(merged.c.id)),
            points_ledger.c.kind.in_([loyalty.EARNED, loyalty.REVERSED]),
        )
        if since is not None:
            query = query.where(points_ledger.c.created_at >= since)
        return int((await self._conn.execute(query)).scalar_one())

    async def hold(self, order_id: str, *, for_update: bool = False) -> loyalty.Hold | None:
        query = select(points_holds).where(
            points_holds.c.merchant_id == self._merchant, points_holds.c.order_id == order_id
        )
        if for_update:
            query = query.with_for_update()
        row = (await self._conn.execute(query)).first()
        return _hold(row) if row else None

    async def save_hold(self, hold: loyalty.Hold) -> None:
        values = {
            "customer_id": hold.customer_id,
            "points": hold.points,
            "status": hold.status,
            "currency": hold.currency,
            "point_value_minor": hold.point_value_minor,
        }
        await self._conn.execute(
            pg_insert(points_holds)
            .values(merchant_id=self._merchant, order_id=hold.order_id, **values)
            .on_conflict_do_update(index_elements=["merchant_id", "order_id"], set_=values)
        )

    async def open_holds(self, customer_id: str) -> list[str]:
        """The orders holding this customer's points, oldest first."""
        rows = await self._conn.execute(
            select(points_holds.c.order_id)
            .where(
                points_holds.c.merchant_id == self._merchant,
                points_holds.c.customer_id == customer_id,
                points_holds.c.status == loyalty.HELD,
            )
            .order_by(points_holds.c.created_at, points_holds.c.order_id)
        )
        return list(rows.scalars())

    async def move_holds(self, loser_id: str, winner_id: str) -> None:
        await self._conn.execute(
            update(points_holds)
            .where(
                points_holds.c.merchant_id == self._merchant,
                points_holds.c.customer_id == loser_id,
            )
            .values(customer_id=winner_id)
        )


class SqlPurchaseRepository:
    def __init__(self, conn: AsyncConnection, merchant_id: str) -> None:
        self._conn = conn
        self._merchant = merchant_id

    def _mine(self) -> Any:
        return purchases.c.merchant_id == self._merchant

    def _returned(self) -> Any:
        """What the purchase's completed returns took back: each return records the running
        total of the order's goods returned so far, so the largest is all of them (never more
        than the purchase's total)."""
        taken = (
            select(func.coalesce(func.max(order_reversals.c.refunded), 0))
            .where(
                order_reversals.c.merchant_id == self._merchant,
                order_reversals.c.order_id == purchases.c.order_id,
                order_reversals.c.return_id != "",
            )
            .scalar_subquery()
        )
        return func.least(func.greatest(taken, 0), purchases.c.total_amount)

    async def record(
        self,
        sale: loyalty.Sale,
        points: int,
        lines: Mapping[str, loyalty.EarningLine] | None = None,
    ) -> bool:
        """False when the order is already recorded. `lines`: each line's part in what it
        earned (what its returns take back)."""
        values = {
            "merchant_id": self._merchant,
            "order_id": sale.order_id,
            "customer_id": sale.customer_id,
            "location_id": sale.location_id,
            "total_amount": sale.total_minor,
            "currency": sale.currency,
            "points_earned": points,
            "ordered_at": sale.ordered_at,
            "earning_lines": None
            if lines is None
            else {k: [v.quantity, v.eligible_minor] for k, v in lines.items()},
        }
        result = await RECORD_PURCHASE.execute(self._conn, values)
        return result.first() is not None

    async def earning_lines(self, order_id: str) -> dict[str, loyalty.EarningLine] | None:
        """What each line of the order earned on, as recorded at its earn; None when it was not
        (no purchase yet, one recorded before lines were kept, or lines without ids)."""
        found = await self._conn.scalar(
            select(purchases.c.earning_lines).where(self._mine(), purchases.c.order_id == order_id)
        )
        if found is None:
            return None
        return {k: loyalty.EarningLine(int(q), int(v)) for k, (q, v) in found.items()}

    async def mark_reversed(self, order_id: str) -> None:
        await self._conn.execute(
            update(purchases)
            .where(self._mine(), purchases.c.order_id == order_id)
            .values(status="reversed")
        )

    async def list(
        self, customer_id: str, page: PageRequest, location_id: str = ""
    ) -> Sequence[Row[Any]]:
        """Newest first; the page token is the last order's id within the same time order.
        `location_id`: only the purchases made there."""
        query = select(purchases, self._returned().label("returned")).where(
            self._mine(), purchases.c.customer_id == customer_id
        )
        if location_id:
            query = query.where(purchases.c.location_id == location_id)
        if page.after:
            at, _, order_id = page.after.partition("|")
            query = query.where(
                (purchases.c.ordered_at < datetime.fromisoformat(at))
                | (
                    (purchases.c.ordered_at == datetime.fromisoformat(at))
                    & (purchases.c.order_id < order_id)
                )
            )
        return (
            await self._conn.execute(
                query.order_by(purchases.c.ordered_at.desc(), purchases.c.order_id.desc()).limit(
                    page.fetch
                )
            )
        ).all()

    async def summary(
        self, customer_id: str, location_id: str = ""
    ) -> tuple[dict[str, int], int, Any, str]:
        """(lifetime spend per currency, net of returns; visits, last visit, favourite
        location). `location_id`: of the purchases made there only."""
        mine = and_(
            self._mine(), purchases.c.customer_id == customer_id, purchases.c.status == "confirmed"
        )
        if location_id:
            mine = and_(mine, purchases.c.location_id == location_id)
        spend = {
            c: int(t)
            for c, t in await self._conn.execute(
                select(purchases.c.currency, func.sum(purchases.c.total_amount - self._returned()))
                .where(mine)
                .group_by(purchases.c.currency)
            )
        }
        visits, last = (
            await self._conn.execute(
                select(func.count(), func.max(purchases.c.ordered_at)).where(mine)
            )
        ).one()
        favourite = (
            await self._conn.execute(
                select(purchases.c.location_id)
                .where(mine)
                .group_by(purchases.c.location_id)
                .order_by(func.count().desc(), func.max(purchases.c.ordered_at).desc())
                .limit(1)
            )
        ).scalar()
        return spend, int(visits), last, favourite or ""

    async def move(self, loser_id: str, winner_id: str) -> None:
        await self._conn.execute(
            update(purchases)
            .where(self._mine(), purchases.c.customer_id == loser_id)
            .values(customer_id=winner_id)
        )

    async def all_of(self, customer_id: str) -> Sequence[Row[Any]]:
        return (
            await self._conn.execute(
                select(purchases, self._returned().label("returned"))
                .where(self._mine(), purchases.c.customer_id == customer_id)
                .order_by(purchases.c.ordered_at, purchases.c.order_id)
            )
        ).all()


async def merchants_retiering(conn: AsyncConnection) -> list[str]:
    """The merchants with a tier change's re-tiering left to do (the background pass's only
    unbound read)."""
    rows = await conn.execute(
        select(loyalty_programs.c.merchant_id)
        .where(loyalty_programs.c.retier_after.is_not(None))
        .order_by(loyalty_programs.c.merchant_id)
    )
    return [r[0] for r in rows]


async def merchants_with_expiry(conn: AsyncConnection) -> list[str]:
    """The merchants whose program expires points (the expiry sweep's only unbound read)."""
    rows = await conn.execute(
        select(loyalty_programs.c.merchant_id)
        .where(loyalty_programs.c.program["expiry_days"].as_integer() > 0)
        .order_by(loyalty_programs.c.merchant_id)
    )
    return [r[0] for r in rows]


class CustomerUow(UnitOfWork):
    """The kit's unit of work plus this service's repositories and event mapping."""

    events = events.REGISTRY

    @property
    def customers(self) -> SqlCustomerRepository:
        return SqlCustomerRepository(self.conn, self.merchant_id)

    @property
    def groups(self) -> SqlGroupRepository:
        return SqlGroupRepository(self.conn, self.merchant_id)

    @property
    def loyalty(self) -> SqlLoyaltyRepository:
        return SqlLoyaltyRepository(self.conn, self.merchant_id)

    @property
    def purchases(self) -> SqlPurchaseRepository:
        return SqlPurchaseRepository(self.conn, self.merchant_id)
