"""Autogenerate an Alembic revision for one service against a throwaway PostgreSQL.

Usage: python tools/new_migration.py <service> "what changed"
"""

from __future__ import annotations

import importlib
import sys
import tempfile
from pathlib import Path

from alembic import command

from pos_devstack.natsd import free_port
from pos_devstack.postgres import LocalPostgres
from pos_kit.migrate import alembic_config


def main(service: str, message: str) -> None:
    package = importlib.import_module(f"pos_{service}")
    migrations = Path(package.__file__ or "").parent / "migrations"
    versions = sorted((migrations / "versions").glob("[0-9][0-9][0-9][0-9]_*.py"))
    rev_id = f"{len(versions) + 1:04d}"
    with tempfile.TemporaryDirectory(prefix="omnitill-mig-") as tmp:
        pg = LocalPostgres(Path(tmp) / "pg", free_port())
        pg.start()
        try:
            url = pg.create_database(service, service, "migration")
            cfg = alembic_config(migrations, url)
            command.upgrade(cfg, "head")
            command.revision(cfg, message=message, autogenerate=True, rev_id=rev_id)
        finally:
            pg.stop()


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2])
