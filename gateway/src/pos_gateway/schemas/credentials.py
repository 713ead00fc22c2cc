"""API keys, OAuth clients, access tokens and merchants."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field

from pos_gateway import keys, tokens
from pos_gateway.routes.common import INT32
from pos_gateway.schemas.base import Answer, Id, Page, Timestamp

# Enums, not Literals, where several models share one: the document names them once (`Scope`,
# `KeyMode`), and a generated SDK has one type for each, not one per model.
Scope = StrEnum("Scope", {s.replace(":", "_").upper(): s for s in keys.ALL_SCOPES})  # type: ignore[misc]
Scope.__doc__ = "What a credential may do: an area and `read`, `write` or `manage`"


class KeyMode(StrEnum):
    """The mode a key was made for, as its prefix says: `pos_test_...` or `pos_live_...`"""

    TEST = "test"
    LIVE = "live"


SCOPES = len(keys.ALL_SCOPES)
API_KEY = r"^pos_(test|live)_[A-Za-z0-9]{38}$"


class ApiKey(Answer):
    id: Id
    name: str = Field(min_length=1, max_length=100)
    key_hint: str = Field(max_length=16, description="The key's first characters")
    mode: KeyMode
    scopes: list[Scope] = Field(min_length=1, max_length=SCOPES)
    created_at: Timestamp
    last_used_at: Timestamp | None
    revoked_at: Timestamp | None
    expires_at: Timestamp | None = Field(
        description="A rolled key's end: refused from then on. Null for a key never rolled"
    )


class NewApiKey(ApiKey):
    key: Annotated[str, Field(pattern=API_KEY, max_length=47)] | None = Field(
        description="Shown in this answer only; null in a replay"
    )
    secret_redacted: bool = Field(description="true in a replay: the key is not kept")


class RolledApiKey(NewApiKey):
    rolled_from: ApiKey = Field(
        description="The key it replaces, as it is now: working until its `expires_at`"
    )


class OAuthClient(Answer):
    id: Id
    client_id: Id = Field(description="The same as id: what the token exchange takes")
    name: str = Field(min_length=1, max_length=100)
    scopes: list[Scope] = Field(min_length=1, max_length=SCOPES)
    created_at: Timestamp
    revoked_at: Timestamp | None


class NewOAuthClient(OAuthClient):
    client_secret: (
        Annotated[str, Field(pattern=r"^pos_cs_[A-Za-z0-9_-]{43}$", max_length=50)] | None
    ) = Field(description="Shown in this answer only; null in a replay")
    secret_redacted: bool = Field(description="true in a replay: the secret is not kept")


class AccessToken(Answer):
    access_token: str = Field(
        pattern=r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$",
        max_length=4096,
        description="A signed JWT (header.claims.signature)",
    )
    token_type: Literal["Bearer"]
    expires_in: int = Field(
        ge=1, le=tokens.TOKEN_SECONDS, json_schema_extra=INT32, description="Seconds"
    )
    scope: str = Field(max_length=1000, description="The granted scopes, space separated")


class Merchant(Answer):
    id: Id
    name: str = Field(min_length=1, max_length=200)
    api_key: Annotated[str, Field(pattern=API_KEY, max_length=47)] | None = Field(
        description="The merchant's first key, with every scope: shown in this answer only; "
        "null in a replay"
    )
    secret_redacted: bool = Field(description="true in a replay: the key is not kept")


class ApiKeyList(Page[ApiKey]):
    pass


class OAuthClientList(Page[OAuthClient]):
    pass
