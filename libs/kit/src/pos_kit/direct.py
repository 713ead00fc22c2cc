"""Core statements run on the driver's connection, compiled by SQLAlchemy and nothing more.

Why: a unit of work of three statements and a commit cost its process 1.0-1.3 ms of CPU through
SQLAlchemy's async execution and 0.3-0.4 ms on the bare psycopg connection (same statements,
same machine; docs/performance.md). Most of the difference is per statement: the greenlet
bridge into the sync engine, the execution context, the cursor result's metadata and row
processing. The platform runs ~65 statements a sale, so that layer was the largest single cost
of a checkout.

`DirectConnection` is the `AsyncConnection` every engine of the kit hands out. Its `execute`
keeps SQLAlchemy for what it is good at (building and compiling the statement, with its own
compiled cache) and sends the compiled SQL on the psycopg connection underneath, in the same
transaction, returning a buffered result with the part of SQLAlchemy's result API the services
use. Anything it does not handle the same way (several parameter sets, Python-side column
defaults, implicit RETURNING, execution options, event listeners such as tracing's) goes the
usual way, so a statement either runs here with the same outcome or is not taken here at all.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import Any

import psycopg
from sqlalchemy import ColumnElement, Table, and_, bindparam
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql import compiler
from sqlalchemy.sql.dml import Delete, Insert, Update
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.selectable import Select

_TAKEN = (Select, Insert, Update, Delete)


# Opens a transaction with a statement (see `pos_kit.uow`): the cursor of that statement.
Opener = Callable[[psycopg.AsyncConnection[Any], str, Mapping[str, Any]], Awaitable[Any]]


class DirectConnection(AsyncConnection):
    # Set by a unit of work for its connection: a transaction's first statement then travels
    # with its BEGIN (one round trip, where psycopg would send the BEGIN and wait for it first).
    opener: Opener | None = None

    async def execute(
        self,
        statement: Any,
        parameters: Any = None,
        *,
        execution_options: Any = None,
    ) -> Any:
        if (
            execution_options is None
            and isinstance(statement, _TAKEN)
            and not statement._execution_options  # stream_results, yield_per, ...
            and (parameters is None or isinstance(parameters, Mapping))
        ):
            sync = self.sync_connection
            if sync is not None and _can_take(sync):
                plan = _plan(sync, statement, parameters)
                if plan is not None:
                    try:
                        return await _run(sync, plan, self.opener)
                    except psycopg.Error as exc:
                        error = _as_sqlalchemy_error(sync, plan.sql, exc)
                        if error.connection_invalidated:
                            await self.invalidate(exc)  # as SQLAlchemy does with a lost one
                        raise error from exc
        return await super().execute(statement, parameters, execution_options=execution_options)


class DirectEngine(AsyncEngine):
    """An async engine whose connections are `DirectConnection`s."""

    _connection_cls = DirectConnection

    def execution_options(self, **opt: Any) -> AsyncEngine:
        # The engine with other options (an AUTOCOMMIT one, say) keeps the direct connections.
        return DirectEngine(self.sync_engine.execution_options(**opt))


class Prepared:
    """A statement built and compiled once, every value in it a named `bindparam`, run on the
    driver's connection with only its parameters converted.

    Why: for a wide INSERT or UPDATE (an order's two dozen columns) building the statement and
    its cache key on every call costs its process 0.1-0.25 ms before the driver sees it; a hot
    path writes several a request. Where `DirectConnection.execute` would not take a statement
    (event listeners, a transaction already ended), the statement is built and run the usual
    way, with the same parameters. Name parameters of WHERE clauses apart from the columns
    (`w_id`, not `id`): SQLAlchemy's own execution would take a column's name as a value to set.
    """

    def __init__(self, build: Callable[[], Any]) -> None:
        self._build = build
        self._compiled: Any = None
        self._dialect: Any = None
        self._theirs = False  # compiled into something only SQLAlchemy's execution runs
        self._literals: dict[str, Any] = {}

    async def execute(self, conn: AsyncConnection, params: Mapping[str, Any]) -> Any:
        sync = conn.sync_connection
        direct = isinstance(conn, DirectConnection) and not self._theirs
        if direct and sync is not None and _can_take(sync):
            compiled = self._compiled
            if compiled is None or self._dialect is not sync.dialect:
                compiled = self._compile(sync)
            if compiled is not None:
                procs = compiled._bind_processors
                given = {**self._literals, **params}
                values = {k: (procs[k](v) if k in procs else v) for k, v in given.items()}
                plan = _Plan(compiled.string, values, compiled, procs)
                try:
                    assert isinstance(conn, DirectConnection)
                    return await _run(sync, plan, conn.opener)
                except psycopg.Error as exc:
                    error = _as_sqlalchemy_error(sync, plan.sql, exc)
                    if error.connection_invalidated:
                        await conn.invalidate(exc)
                    raise error from exc
        return await conn.execute(self._build(), dict(params))

    def _compile(self, sync: Connection) -> Any:
        compiled = self._build().compile(dialect=sync.dialect)
        if (
            compiled.insert_prefetch
            or compiled.update_prefetch
            or compiled.positional
            or compiled.literal_execute_params
            or compiled.post_compile_params
            or compiled.escaped_bind_names
        ):
            self._theirs = True  # values SQLAlchemy computes or expands per call
            return None
        # The values written into the statement itself (`qty + 1`): bound once, sent each time.
        self._literals = {
            name: bind.effective_value
            for bind, name in compiled.bind_names.items()
            if not bind.required
        }
        self._compiled, self._dialect = compiled, sync.dialect
        return compiled


def keyed(table: Table, *columns: str) -> ColumnElement[bool]:
    """`column = :w_<column>` for each column, all of them: the WHERE of a `Prepared`
    statement, its parameters named apart from the columns it may set."""
    return and_(*(table.c[c] == bindparam(f"w_{c}", type_=table.c[c].type) for c in columns))


def bound(table: Table, columns: Iterable[str]) -> dict[str, BindParameter[Any]]:
    """`{column: :column}` for each column, typed as the column: the values of a `Prepared`
    INSERT or UPDATE, sent by name."""
    return {c: bindparam(c, type_=table.c[c].type) for c in columns}


def _can_take(sync: Connection) -> bool:
    if sync.invalidated or sync._has_events or sync.engine._has_events:
        return False
    tx = sync._transaction
    if tx is None:
        sync.begin()  # what SQLAlchemy's autobegin does: the later commit() commits this work
        return True
    return tx.is_active


class _Plan:
    __slots__ = ("compiled", "params", "processors", "sql")

    def __init__(
        self, sql: str, params: dict[str, Any], compiled: Any, processors: Mapping[str, Any]
    ) -> None:
        self.sql = sql
        self.params = params
        self.compiled = compiled
        self.processors = processors


def _plan(sync: Connection, statement: Any, parameters: Mapping[str, Any] | None) -> _Plan | None:
    dialect = sync.dialect
    compiled, extracted, collected, _ = statement._compile_w_cache(
        dialect=dialect,
        compiled_cache=sync.engine._compiled_cache,
        column_keys=sorted(parameters) if parameters else [],
        for_executemany=False,
        schema_translate_map=None,
        linting=dialect.compiler_linting | compiler.WARN_LINTING,
    )
    if (
        compiled.insert_prefetch
        or compiled.update_prefetch
        or compiled.implicit_returning
        or compiled.schema_translate_map
        or compiled.positional
    ):
        return None
    params = compiled.construct_params(
        parameters, escape_names=False, extracted_parameters=extracted, _collected_params=collected
    )
    sql = compiled.string
    processors: Mapping[str, Any] = compiled._bind_processors
    if compiled.literal_execute_params or compiled.post_compile_params:
        expanded = compiled._process_parameters_for_postcompile(params)
        sql = expanded.statement
        params = expanded.parameters
        processors = {**processors, **expanded.processors}
    escaped = compiled.escaped_bind_names
    if processors or escaped:
        params = {
            escaped.get(k, k): (processors[k](v) if k in processors else v)
            for k, v in params.items()
        }
    return _Plan(sql, params, compiled, processors)


async def _run(sync: Connection, plan: _Plan, opener: Opener | None = None) -> DirectResult:
    driver = sync.connection.driver_connection
    assert isinstance(driver, psycopg.AsyncConnection)
    if (
        opener is not None
        and not driver.autocommit
        and driver.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    ):
        cursor = await opener(driver, plan.sql, plan.params)
    else:
        cursor = driver.cursor()
        await cursor.execute(plan.sql, plan.params)
    rows = await cursor.fetchall() if cursor.description is not None else []
    return DirectResult(plan.compiled, cursor.description, rows, cursor.rowcount)


def _as_sqlalchemy_error(sync: Connection, sql: str, exc: psycopg.Error) -> sa_exc.StatementError:
    """What SQLAlchemy would raise (IntegrityError, OperationalError, ...), parameters left out
    (they may hold a stored answer)."""
    error = sa_exc.DBAPIError.instance(
        sql, None, exc, psycopg.Error, hide_parameters=True, dialect=sync.dialect, ismulti=False
    )
    dbapi = sync.connection.dbapi_connection
    error.connection_invalidated = sync.dialect.is_disconnect(exc, dbapi, None)  # type: ignore[arg-type]
    return error


# --- results ---------------------------------------------------------------------------------


class DirectResult:
    """A buffered result: rows, `rowcount`, and the methods of SQLAlchemy's `Result` that the
    services call (`all`, `first`, `one`, `one_or_none`, `scalar*`, `scalars`, `mappings`)."""

    def __init__(self, compiled: Any, description: Any, raw: list[Any], rowcount: int) -> None:
        self.rowcount = rowcount
        if description is None:
            self._keys: list[str] = []
            self._rows: list[Row] = []
            return
        row, keys, procs = _shape(compiled, description)
        self._keys = keys
        if any(p is not None for p in procs):
            raw = [
                tuple(v if p is None else p(v) for p, v in zip(procs, r, strict=True)) for r in raw
            ]
        self._rows = [row(r) for r in raw]

    def keys(self) -> list[str]:
        return list(self._keys)

    def __iter__(self) -> Iterator[Row]:
        return iter(self._rows)

    def all(self) -> list[Row]:
        return list(self._rows)

    fetchall = all

    def fetchone(self) -> Row | None:
        return self._rows.pop(0) if self._rows else None

    def first(self) -> Row | None:
        return self._rows[0] if self._rows else None

    def one_or_none(self) -> Row | None:
        if len(self._rows) > 1:
            raise sa_exc.MultipleResultsFound(
                "Multiple rows were found when one or none was required"
            )
        return self.first()

    def one(self) -> Row:
        row = self.one_or_none()
        if row is None:
            raise sa_exc.NoResultFound("No row was found when one was required")
        return row

    def scalar(self) -> Any:
        return self._rows[0][0] if self._rows else None

    def scalar_one(self) -> Any:
        return self.one()[0]

    def scalar_one_or_none(self) -> Any:
        row = self.one_or_none()
        return None if row is None else row[0]

    def scalars(self) -> _Values:
        return _Values([r[0] for r in self._rows])

    def mappings(self) -> _Values:
        return _Values([r._mapping for r in self._rows])

    def tuples(self) -> DirectResult:
        return self


class _Values:
    def __init__(self, values: list[Any]) -> None:
        self._values = values

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def all(self) -> list[Any]:
        return list(self._values)

    def first(self) -> Any:
        return self._values[0] if self._values else None

    def one_or_none(self) -> Any:
        if len(self._values) > 1:
            raise sa_exc.MultipleResultsFound(
                "Multiple rows were found when one or none was required"
            )
        return self.first()

    def one(self) -> Any:
        if not self._values:
            raise sa_exc.NoResultFound("No row was found when one was required")
        return self.one_or_none()


_Shape = tuple[type["Row"], list[str], list[Any]]
_SHAPES: dict[tuple[int, tuple[str, ...]], tuple[Any, _Shape]] = {}


def _shape(compiled: Any, description: Any) -> _Shape:
    """The row class (its keys: names, and the column objects SQLAlchemy would accept), the
    key names and the result processors of a statement's columns, worked out once per compiled
    statement (kept beside it: an id is only unique while its object lives)."""
    names = tuple(d.name for d in description)
    key = (id(compiled), names)
    found = _SHAPES.get(key)
    if found is not None and found[0] is compiled:
        return found[1]
    columns = compiled._result_columns or []
    dialect = compiled.dialect
    keymap: dict[Any, int] = {}
    procs: list[Any] = []
    keys: list[str] = []
    by_position = len(columns) == len(names)
    for i, name in enumerate(names):
        entry = columns[i] if by_position else None
        keyname = entry[0] if entry is not None else name
        keys.append(keyname)
        keymap.setdefault(keyname, i)
        if entry is not None:
            for obj in entry[2]:
                keymap.setdefault(obj, i)
            procs.append(entry[3]._cached_result_processor(dialect, description[i].type_code))
        else:
            procs.append(None)
    row = type("Row", (Row,), {"__slots__": (), "_keymap": keymap})
    shape = (row, keys, procs)
    if len(_SHAPES) > 4096:
        _SHAPES.clear()
    _SHAPES[key] = (compiled, shape)
    return shape


class Row(tuple[Any, ...]):
    """A row read by position, by name as an attribute, and through `_mapping`; each
    statement's rows are of a subclass that carries its keys."""

    __slots__ = ()
    _keymap: dict[Any, int] = {}

    def __getattr__(self, name: str) -> Any:
        try:
            return self[self._keymap[name]]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def _mapping(self) -> RowMapping:
        return RowMapping(self)

    def _asdict(self) -> dict[str, Any]:
        return dict(self._mapping)

    @property
    def _fields(self) -> tuple[str, ...]:
        return tuple(self._mapping)

    @property
    def _t(self) -> tuple[Any, ...]:
        return tuple(self)

    def _tuple(self) -> tuple[Any, ...]:
        return tuple(self)


class RowMapping(Mapping[Any, Any]):
    __slots__ = ("_row",)

    def __init__(self, row: Row) -> None:
        self._row = row

    def __getitem__(self, key: Any) -> Any:
        return tuple.__getitem__(self._row, self._row._keymap[key])

    def __iter__(self) -> Iterator[str]:
        seen: set[int] = set()
        for k, i in self._row._keymap.items():
            if isinstance(k, str) and i not in seen:
                seen.add(i)
                yield k

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __contains__(self, key: object) -> bool:
        return key in self._row._keymap

    def __repr__(self) -> str:
        return repr(dict(self))
