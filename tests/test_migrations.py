"""Every service's migrations create exactly what its models describe."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from pos_devstack.testing import Infra
from pos_kit import migrate as kit_migrate

PACKAGES = ["inventory", "promotion", "customer", "payment", "order", "gateway"]


@pytest.mark.parametrize("name", PACKAGES)
def test_migrations_match_the_models(infra: Infra, name: str) -> None:
    package = importlib.import_module(f"pos_{name}")
    migrations = Path(package.__file__ or "").parent / "migrations"
    url = infra.create_database(name)
    kit_migrate.upgrade(migrations, url)
    # Raises when autogenerate would find a difference between models and database.
    kit_migrate.check(migrations, url)
