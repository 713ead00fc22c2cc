"""CPU of one unit of work in the client process, with and without the kit's direct statements.

A unit of work as the services write them (a pooled connection, BEGIN, a read by key, an
update, a second read, COMMIT) run N times in a row on a PostgreSQL of the project's own
(started from the wheel in a temporary folder), through `pos_kit.db.make_engine` with
`SQL_DIRECT=0` (SQLAlchemy's own execution) and with `SQL_DIRECT=1` (pos_kit/direct.py),
alternated several times so a change in the machine's load touches both alike. Prints the
process's CPU (user + system) per unit of work for each run and the median ratio.

Run: `.venv/bin/python tools/bench_uow.py [--units 3000] [--rounds 3]`. Figures, not
assertions: the machine and its other load decide them (the load average is shown).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
from pathlib import Path

from sqlalchemy import Column, Integer, MetaData, String, Table, select

from pos_devstack.natsd import free_port
from pos_devstack.postgres import LocalPostgres
from pos_kit.db import make_engine

metadata = MetaData()
items = Table(
    "bench_items",
    metadata,
    Column("merchant_id", String, primary_key=True),
    Column("id", String, primary_key=True),
    Column("name", String),
    Column("qty", Integer),
)


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def one_run(url: str, direct: bool, units: int) -> float:
    os.environ["SQL_DIRECT"] = "1" if direct else "0"
    engine = make_engine(url, pool_size=4)

    async def unit(i: int) -> None:
        key = f"i{i % 100}"
        async with engine.connect() as conn:
            await conn.begin()
            (
                await conn.execute(
                    select(items).where(items.c.merchant_id == "m", items.c.id == key)
                )
            ).one()
            await conn.execute(
                items.update()
                .where(items.c.merchant_id == "m", items.c.id == key)
                .values(qty=items.c.qty + 1)
            )
            nxt = f"i{(i + 1) % 100}"
            await conn.execute(
                select(items.c.name).where(items.c.merchant_id == "m", items.c.id == nxt)
            )
            await conn.commit()

    for i in range(300):  # warm: the pool, the compiled cache, psycopg's prepared statements
        await unit(i)
    start = cpu()
    for i in range(units):
        await unit(i)
    spent = (cpu() - start) / units * 1000
    await engine.dispose()
    return spent


async def bench(url: str, units: int, rounds: int) -> None:
    engine = make_engine(url, pool_size=1)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        await conn.execute(
            items.insert(),
            [{"merchant_id": "m", "id": f"i{n}", "name": "x", "qty": 0} for n in range(100)],
        )
    await engine.dispose()
    figures: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(rounds):
        for direct in (False, True):
            figures[direct].append(await one_run(url, direct, units))
    print("load average: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    for direct, label in ((False, "SQLAlchemy's execution"), (True, "direct statements")):
        runs = " ".join(f"{f:.3f}" for f in figures[direct])
        print(f"  {label:24s} {runs}  ms of client CPU per unit of work (3 statements + commit)")
    ratio = statistics.median(figures[True]) / statistics.median(figures[False])
    print(f"  direct / SQLAlchemy (medians): {ratio:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="omnitill-bench-uow-"))
    pg = LocalPostgres(root / "pg", free_port(), disposable=True)
    pg.start()
    try:
        import uvloop

        uvloop.run(bench(pg.admin_url, args.units, args.rounds))
    finally:
        pg.stop()


if __name__ == "__main__":
    main()
