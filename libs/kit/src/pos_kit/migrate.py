"""Alembic, one history per service, shipped inside the service package.

The migrations live in `pos_<service>/migrations` (not beside the package) so that an installed
wheel, as in a container image, can run `python -m pos_<service> migrate` on its own.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command, context
from alembic.config import Config
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import MetaData, create_engine, pool

from pos_kit.db import async_url
from pos_kit.settings import SslMode
from pos_kit.tls import database_url_with_tls


def alembic_config(migrations_dir: Path, database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    # Alembic runs synchronously; psycopg 3 serves both modes with the same URL.
    config.set_main_option("sqlalchemy.url", async_url(database_url).replace("%", "%%"))
    return config


def upgrade(migrations_dir: Path, database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(migrations_dir, database_url), revision)


def check(migrations_dir: Path, database_url: str) -> None:
    """Raise if the models hold anything the migrations do not create."""
    command.check(alembic_config(migrations_dir, database_url))


def run_env(metadata: MetaData) -> None:
    """Body of every service's migrations/env.py."""
    url = context.config.get_main_option("sqlalchemy.url")
    assert url is not None
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=metadata, compare_type=True)
        with context.begin_transaction():
            context.run_migrations()


class MigrationSettings(BaseSettings):
    """A migration needs the database and nothing else."""

    model_config = SettingsConfigDict(extra="ignore")
    database_url: str
    # The same TLS settings as a service's (pos_kit.settings), for the same database.
    database_sslmode: SslMode | None = None
    database_sslrootcert: str | None = None

    @property
    def url(self) -> str:
        return database_url_with_tls(
            self.database_url, self.database_sslmode, self.database_sslrootcert
        )


def upgrade_from_env(migrations_dir: Path) -> None:
    """`python -m pos_<service> migrate`: upgrade the database named by DATABASE_URL."""
    upgrade(migrations_dir, MigrationSettings().url)  # type: ignore[call-arg]
