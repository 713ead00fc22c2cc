"""Typed settings read from the environment only, failing fast on anything missing or unsafe."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pos_kit.tls import GrpcTls, database_url_with_tls

SslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]

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
    # PostgreSQL over TLS (libpq's sslmode; verify-full with the server's CA on Kubernetes).
    # Folded into database_url, so every connection the process makes uses them.
    database_sslmode: SslMode | None = None
    # The process's connection pool: up to this many, opened as needed and kept; more at a peak
    # only with an overflow, closed after each use (a new PostgreSQL connection costs the
    # server ~3 ms of CPU, so a busy process churning overflow pays it again and again:
    # docs/performance.md); and how long a unit of work waits for one before failing (a long
    # wait means overload, not patience).
    database_pool_size: int = Field(20, ge=1)
    database_pool_overflow: int = Field(0, ge=0)
    database_pool_timeout_seconds: float = Field(10.0, gt=0)
    database_sslrootcert: str | None = None
    # NATS over TLS: tls:// URLs, verified against this CA (the system's roots without one).
    nats_tls_ca: str | None = None
    # gRPC over TLS: a server serves this certificate and key; a client verifies its callees
    # against the CA. Unset: plaintext, as on the local platform.
    grpc_tls_cert: str | None = None
    grpc_tls_key: str | None = None
    grpc_tls_ca: str | None = None

    @field_validator("database_url")
    @classmethod
    def _postgres_only(cls, value: str) -> str:
        scheme = urlsplit(value).scheme
        if scheme not in {"postgresql", "postgres", "postgresql+psycopg"}:
            raise ValueError("DATABASE_URL must be a postgresql:// URL")
        return value

    @model_validator(mode="after")
    def _tls_settings_agree(self) -> BaseServiceSettings:
        if (self.grpc_tls_cert is None) != (self.grpc_tls_key is None):
            raise ValueError("GRPC_TLS_CERT and GRPC_TLS_KEY go together")
        if self.nats_tls_ca is not None and any(
            not s.startswith("tls://") for s in self.nats_servers
        ):
            raise ValueError("NATS_TLS_CA is set: every NATS_URL server must be tls://")
        self.database_url = database_url_with_tls(
            self.database_url, self.database_sslmode, self.database_sslrootcert
        )
        return self

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

    @property
    def nats_tls(self) -> bool:
        return any(s.startswith("tls://") for s in self.nats_servers)

    @property
    def grpc_tls(self) -> GrpcTls | None:
        """The gRPC TLS files, or None for plaintext (nothing set)."""
        if self.grpc_tls_cert is None and self.grpc_tls_ca is None:
            return None
        return GrpcTls(self.grpc_tls_cert, self.grpc_tls_key, self.grpc_tls_ca)


class GrpcServiceSettings(BaseServiceSettings):
    grpc_host: str = "0.0.0.0"
    grpc_port: int = 50051
    # How long a graceful shutdown waits for in-flight calls before cancelling them.
    shutdown_grace_seconds: float = 10.0
    # With TLS on, the kubelet's native gRPC probe cannot speak it: grpc.health.v1 alone is
    # also served in plaintext on this port (0: not at all). Nothing else answers there.
    grpc_health_port: int = 0


def refuse_placeholder(name: str, value: str, min_length: int = 32) -> None:
    if value.lower() in PLACEHOLDERS or len(value) < min_length:
        raise ValueError(f"{name} must be a real secret of at least {min_length} characters")
