"""Typed settings read from the environment only, failing fast on anything missing or unsafe."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Values that mean "nobody set this": refused as secrets outside development.
PLACEHOLDERS = {"", "changeme", "change-me", "password", "secret", "postgres", "example", "test"}


class BaseServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False)

    omnitill_env: Literal["development", "test", "production"] = "development"
    database_url: str = Field(min_length=1)
    nats_url: str = Field(min_length=1)
    log_level: str = "INFO"
    otel_exporter_otlp_endpoint: str | None = None
    # Replicas of the stream this service owns when it has to create it (3 on a NATS cluster).
    stream_replicas: int = Field(1, ge=1, le=5)

    @field_validator("database_url")
    @classmethod
    def _postgres_only(cls, value: str) -> str:
        scheme = urlsplit(value).scheme
        if scheme not in {"postgresql", "postgres", "postgresql+psycopg"}:
            raise ValueError("DATABASE_URL must be a postgresql:// URL")
        return value

    @model_validator(mode="after")
    def _no_placeholder_secrets(self) -> BaseServiceSettings:
        if self.omnitill_env == "production":
            password = urlsplit(self.database_url).password or ""
            if password.lower() in PLACEHOLDERS:
                raise ValueError("DATABASE_URL has a missing or placeholder password in production")
            self._check_secrets()
        return self

    def _check_secrets(self) -> None:
        """Subclasses with secrets of their own refuse placeholders here."""

    @property
    def nats_servers(self) -> list[str]:
        return [s.strip() for s in self.nats_url.split(",") if s.strip()]


class GrpcServiceSettings(BaseServiceSettings):
    grpc_host: str = "0.0.0.0"
    grpc_port: int = 50051
    # How long a graceful shutdown waits for in-flight calls before cancelling them.
    shutdown_grace_seconds: float = 10.0


def refuse_placeholder(name: str, value: str, min_length: int = 32) -> None:
    if value.lower() in PLACEHOLDERS or len(value) < min_length:
        raise ValueError(f"{name} must be a real secret of at least {min_length} characters")
