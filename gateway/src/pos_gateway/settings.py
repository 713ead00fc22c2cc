"""Gateway settings, from the environment only."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from pos_gateway import tokens
from pos_kit.settings import BaseServiceSettings, refuse_placeholder


class GatewaySettings(BaseServiceSettings):
    # A settings error must not print a secret it was given (pydantic shows inputs by default).
    model_config = SettingsConfigDict(
        extra="ignore", case_sensitive=False, hide_input_in_errors=True
    )

    # The gateway publishes register, staff and override events (pos_gateway.outbox): they wait
    # in its outbox while NATS is away, and requests never wait on it.
    nats_url: str = "nats://127.0.0.1:4222"
    http_host: str = "0.0.0.0"
    http_port: int = 8080
    # HTTPS served by the gateway itself (both or neither); the certificate is reloaded when
    # its files change. Unset: plain HTTP, as on the local platform.
    http_tls_cert: str | None = None
    http_tls_key: str | None = None
    # Strict-Transport-Security max-age on answers served over HTTPS (0: no header).
    hsts_max_age_seconds: int = Field(31_536_000, ge=0)
    # Keys the HMAC under which API keys are stored: a leaked table reveals no usable key.
    gateway_secret_key: str = Field(min_length=16)
    # Sign and check OAuth access tokens (JWT, HS256), comma-separated, newest first: the first
    # signs, every one verifies, so a key can be rotated without logging partners out (see the
    # README). Separate from GATEWAY_SECRET_KEY, which cannot change without voiding API keys.
    token_signing_keys: Annotated[list[str], NoDecode] = Field(min_length=1)
    inventory_addr: str
    promotion_addr: str
    customer_addr: str
    payment_addr: str
    order_addr: str
    # The dispatcher: the event feed and webhook subscriptions.
    dispatcher_addr: str
    request_timeout_seconds: float = 10.0
    max_body_bytes: int = 1_000_000
    # Requests worked on at once; past it a request is answered 503 with Retry-After at once
    # (admission.py). Sized above what one replica serves at its best (a few hundred in flight
    # at most), so it sheds only true overload.
    max_concurrent_requests: int = Field(default=512, ge=1)
    # How long an idle keep-alive connection stays open. Longer than the clients' own idle
    # expiry (httpx and others drop theirs at 5 s) and load balancers' (60 s), so the client
    # always closes first: when the server closes first, a request sent at that instant is lost
    # with no answer (uvicorn's 5 s default equals httpx's).
    http_keep_alive_seconds: int = Field(default=75, ge=1)
    # Per credential: a sustained rate and the burst a bucket holds.
    rate_limit_per_second: float = 100.0
    rate_limit_burst: int = 200
    # Where the buckets live: `memory` (this process; one replica, the local platform) or
    # `postgres` (the gateway's database, one budget per credential across all replicas).
    rate_limit_store: Literal["memory", "postgres"] = "memory"
    # Browser origins allowed to call the API (a JSON list); none by default.
    cors_origins: list[str] = []
    # The proxies in front of the gateway whose `X-Forwarded-For` is believed: addresses or
    # networks, comma separated. A request's address (what the limits on requests without a
    # credential, failed token requests and pairing attempts count by) is the last address in
    # that header that none of them is: the client as the outermost trusted proxy saw it.
    # In Kubernetes only the edge proxies may connect (the gateway's NetworkPolicy), so the
    # cluster's pod network is right there. `*` is refused: it would let a client name any
    # address and escape those limits.
    trusted_proxies: Annotated[list[str], NoDecode] = ["127.0.0.1"]
    # The platform operator's credential for /v1/admin; the admin API is off without it.
    platform_admin_token: str | None = None

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _proxy_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_addresses(cls, value: list[str]) -> list[str]:
        for entry in value:
            if entry == "*":
                raise ValueError("TRUSTED_PROXIES: `*` would let any client name its address")
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"TRUSTED_PROXIES: {entry!r} is no address or network") from None
        return value

    @field_validator("token_signing_keys", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("token_signing_keys")
    @classmethod
    def _usable_keys(cls, value: list[str]) -> list[str]:
        tokens.KeySet(value)  # raises ValueError (a settings error) naming what is wrong
        return value

    @model_validator(mode="after")
    def _https_files_together(self) -> GatewaySettings:
        if (self.http_tls_cert is None) != (self.http_tls_key is None):
            raise ValueError("HTTP_TLS_CERT and HTTP_TLS_KEY go together")
        return self

    def _check_secrets(self) -> None:
        refuse_placeholder("GATEWAY_SECRET_KEY", self.gateway_secret_key)
        for key in self.token_signing_keys:
            refuse_placeholder("TOKEN_SIGNING_KEYS", key)
        if self.platform_admin_token is not None:
            refuse_placeholder("PLATFORM_ADMIN_TOKEN", self.platform_admin_token)
