"""Statements sent on the driver's connection (pos_kit/direct.py) answer exactly what
SQLAlchemy's own execution answers, and commit or roll back with the unit of work: each case
runs on both engines and the answers are compared."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    bindparam,
    func,
    select,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError, MultipleResultsFound, NoResultFound
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from pos_devstack.testing import Infra
from pos_kit.db import async_url, make_engine
from pos_kit.direct import DirectConnection, DirectEngine, DirectResult, Prepared, bound, keyed

pytestmark = pytest.mark.asyncio(loop_scope="session")

NAME = f"direct_{uuid.uuid4().hex[:8]}"
metadata = MetaData()
items = Table(
    NAME,
    metadata,
    Column("merchant_id", String, primary_key=True),
    Column("id", String, primary_key=True),
    Column("name", String),
    Column("qty", Integer, nullable=False, server_default="0"),
    Column("data", JSONB),
    Column("at", DateTime(timezone=True)),
    Column("tags", ARRAY(String)),
    Column("price", Numeric(10, 2)),
    # A Python-side default: computed by SQLAlchemy's execution, so such an INSERT is not taken.
    Column("serial", BigInteger, default=lambda: 42),
)
AT = datetime(2026, 12, 2, 10, 30, tzinfo=UTC)


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def engines(infra: Infra) -> AsyncIterator[tuple[AsyncEngine, AsyncEngine]]:
    url = infra.service_database("customer")
    direct = DirectEngine(make_engine(url, pool_size=2).sync_engine)
    plain = create_async_engine(async_url(url), pool_size=2)
    async with plain.begin() as conn:
        await conn.run_sync(metadata.create_all)
    try:
        yield direct, plain
    finally:
        async with plain.begin() as conn:
            await conn.run_sync(metadata.drop_all)
        await direct.dispose()
        await plain.dispose()


def _seed(merchant: str) -> list[dict[str, Any]]:
    return [
        {
            "merchant_id": merchant,
            "id": f"i{n}",
            "name": f"item {n}",
            "qty": n,
            "data": {"n": n, "tags": ["a", "b"]} if n % 2 else None,
            "at": AT if n % 3 else None,
            "tags": ["x", str(n)],
            "price": Decimal("1.50") * n,
        }
        for n in range(1, 6)
    ]


async def _answers(engine: AsyncEngine, merchant: str) -> list[Any]:
    """The same statements, as the services write them; every answer as plain values."""
    out: list[Any] = []
    async with engine.begin() as conn:
        for row in _seed(merchant):
            result = await conn.execute(items.insert().values(**row))
            out.append(result.rowcount)
        by_id = select(items).where(items.c.merchant_id == merchant)
        out.append([tuple(r) for r in (await conn.execute(by_id.order_by(items.c.id))).all()])
        some = by_id.where(items.c.id.in_(["i1", "i3", "nope"])).order_by(items.c.id.desc())
        rows = (await conn.execute(some)).all()
        out.append([(r.id, r.data, r._mapping["qty"], r._mapping[items.c.price]) for r in rows])
        out.append((await conn.execute(by_id.where(items.c.id.in_([])))).all())
        out.append(dict((await conn.execute(by_id.where(items.c.id == "i2"))).one()._mapping))
        count = select(func.count()).select_from(items).where(items.c.merchant_id == merchant)
        out.append((await conn.execute(count)).scalar_one())
        named = select(items.c.id, (items.c.qty * 10).label("tenfold")).where(
            items.c.merchant_id == bindparam("m"), items.c.qty > bindparam("least")
        )
        result = await conn.execute(named, {"m": merchant, "least": 3})
        out.append([dict(m) for m in result.mappings().all()])
        out.append((await conn.execute(by_id.where(items.c.id == "none"))).first())
        out.append((await conn.execute(select(items.c.id).where(items.c.id == "i9"))).scalar())
        ids = select(items.c.id).where(items.c.merchant_id == merchant).order_by(items.c.id)
        out.append((await conn.execute(ids)).scalars().all())
        bump = (
            items.update()
            .where(items.c.merchant_id == merchant, items.c.qty >= 4)
            .values(qty=items.c.qty + 1, tags=["y"])
        )
        out.append((await conn.execute(bump)).rowcount)
        again = (
            pg_insert(items)
            .values(merchant_id=merchant, id="i1", name="again")
            .on_conflict_do_nothing()
            .returning(items.c.id)
        )
        out.append((await conn.execute(again)).first())
        back = (
            items.update()
            .where(items.c.merchant_id == merchant, items.c.id == "i5")
            .values(data={"k": "v"})
            .returning(items.c.qty, items.c.data, items.c.serial)
        )
        out.append(tuple((await conn.execute(back)).one()))
        gone = items.delete().where(items.c.merchant_id == merchant, items.c.id == "i4")
        out.append((await conn.execute(gone)).rowcount)
    return out


async def test_statements_answer_as_sqlalchemy_answers(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    direct, plain = engines
    async with direct.connect() as conn:
        assert isinstance(conn, DirectConnection)
        assert isinstance(await conn.execute(select(items.c.id)), DirectResult)
    merchant = uuid.uuid4().hex
    mine, theirs = await _answers(direct, f"d-{merchant}"), await _answers(plain, f"p-{merchant}")
    assert mine[5][0][0] == f"d-{merchant}"  # the rows were read, not an empty answer twice
    assert _unmerchant(mine, f"d-{merchant}") == _unmerchant(theirs, f"p-{merchant}")


def _unmerchant(value: Any, merchant: str) -> Any:
    if value == merchant:
        return "M"
    if isinstance(value, list | tuple):
        return type(value)(_unmerchant(v, merchant) for v in value)
    if isinstance(value, dict):
        return {k: _unmerchant(v, merchant) for k, v in value.items()}
    return value


async def test_the_python_side_default_is_applied(engines: tuple[AsyncEngine, AsyncEngine]) -> None:
    direct, _ = engines
    merchant = uuid.uuid4().hex
    async with direct.begin() as conn:
        await conn.execute(items.insert().values(merchant_id=merchant, id="a"))
        mine = items.c.merchant_id == merchant
        row = (await conn.execute(select(items.c.serial, items.c.qty).where(mine))).first()
    assert row is not None and (row.serial, row.qty) == (42, 0)


async def test_work_commits_and_rolls_back_with_the_connection(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    direct, plain = engines
    merchant = uuid.uuid4().hex
    mine = select(items.c.id).where(items.c.merchant_id == merchant).order_by(items.c.id)
    async with direct.connect() as conn:  # no begin(): the first statement begins, as in SQLAlchemy
        await conn.execute(items.insert().values(merchant_id=merchant, id="kept", name="k"))
        await conn.commit()
        await conn.execute(items.insert().values(merchant_id=merchant, id="dropped", name="d"))
        await conn.rollback()
        await conn.execute(items.insert().values(merchant_id=merchant, id="closed", name="c"))
    async with plain.connect() as conn:
        assert (await conn.execute(mine)).scalars().all() == ["kept"]


async def test_errors_are_sqlalchemys_and_the_connection_goes_on(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    direct, _ = engines
    merchant = uuid.uuid4().hex
    async with direct.connect() as conn:
        await conn.execute(items.insert().values(merchant_id=merchant, id="a"))
        with pytest.raises(IntegrityError):
            await conn.execute(items.insert().values(merchant_id=merchant, id="a"))
        await conn.rollback()
        await conn.execute(items.insert().values(merchant_id=merchant, id="b"))
        await conn.execute(items.insert().values(merchant_id=merchant, id="c"))
        ids = select(items.c.id).where(items.c.merchant_id == merchant)
        with pytest.raises(MultipleResultsFound):
            (await conn.execute(ids)).one()
        with pytest.raises(NoResultFound):
            (await conn.execute(ids.where(items.c.id == "z"))).one()
        assert sorted((await conn.execute(ids)).scalars()) == ["b", "c"]
        await conn.commit()


async def test_an_autocommit_engine_applies_each_statement_at_once(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    direct, plain = engines
    merchant = uuid.uuid4().hex
    autocommit = direct.execution_options(isolation_level="AUTOCOMMIT")
    async with autocommit.connect() as conn:
        assert isinstance(conn, DirectConnection)
        await conn.execute(items.insert().values(merchant_id=merchant, id="now"))
        async with plain.connect() as other:  # seen from another connection before any commit
            mine = select(items.c.id).where(items.c.merchant_id == merchant)
            assert (await other.execute(mine)).scalars().all() == ["now"]


def _prepared_upsert() -> Any:
    return (
        pg_insert(items)
        .values(
            merchant_id=bindparam("merchant_id"),
            id=bindparam("id"),
            name=bindparam("name"),
            data=bindparam("data", type_=JSONB),
            at=bindparam("at", type_=DateTime(timezone=True)),
            tags=bindparam("tags", type_=ARRAY(String)),
            price=bindparam("price", type_=Numeric(10, 2)),
            serial=bindparam("serial", type_=BigInteger),
        )
        .on_conflict_do_update(index_elements=["merchant_id", "id"], set_={"qty": items.c.qty + 1})
        .returning(items.c.id, items.c.qty, items.c.data, items.c.at, items.c.tags, items.c.price)
    )


UPSERT = Prepared(_prepared_upsert)


async def test_a_prepared_statement_answers_on_both_engines_alike(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    """Run on the driver by a direct connection, the usual way on a plain one: same rows, the
    JSON, the array, the time and the decimal converted alike, and a conflict an IntegrityError
    of SQLAlchemy's either way."""
    answers = []
    for engine in engines:
        merchant = uuid.uuid4().hex
        values = {"merchant_id": merchant, "name": "n", "data": {"a": [1, "x"]}, "at": AT,
                  "tags": ["t", "u"], "price": Decimal("9.50"), "serial": 7}  # fmt: skip
        async with engine.begin() as conn:
            first = (await UPSERT.execute(conn, {**values, "id": "p"})).one()
            again = (await UPSERT.execute(conn, {**values, "id": "p"})).one()
            answers.append((tuple(first), tuple(again)))
        async with engine.connect() as conn:
            with pytest.raises(IntegrityError):  # NOT NULL: an error from the server
                await UPSERT.execute(conn, {**values, "merchant_id": None, "id": "q"})
            await conn.rollback()
    direct, plain = answers
    assert UPSERT._compiled is not None  # the direct engine ran it compiled once
    assert direct == plain
    assert direct[0] == ("p", 0, {"a": [1, "x"]}, AT, ["t", "u"], Decimal("9.50"))
    assert direct[1][1] == 1


async def test_keyed_and_bound_name_a_prepared_statement_s_parameters() -> None:
    """WHERE parameters are named apart from the columns (`w_id`), values after them."""
    statement = (
        items.update().where(keyed(items, "merchant_id", "id")).values(bound(items, ["qty"]))
    )
    sql = str(statement.compile(dialect=postgresql.dialect()))
    assert "merchant_id = %(w_merchant_id)s" in sql and "id = %(w_id)s" in sql
    assert "qty=%(qty)s" in sql
