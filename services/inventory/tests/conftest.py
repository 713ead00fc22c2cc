"""A migrated inventory database shared by the use-case tests of this folder."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from pos_devstack.testing import Infra

# The tests here share inventory_db.py, a module beside this file.
sys.path.insert(0, str(Path(__file__).parent))

from inventory_db import Db


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def db(infra: Infra) -> AsyncIterator[Db]:
    database = Db(infra.service_database("inventory"))
    try:
        yield database
    finally:
        await database.engine.dispose()
