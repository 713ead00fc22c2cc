"""Platform administration over HTTP: merchants, guarded by the platform credential.

Disabled (404, like any unknown route) unless PLATFORM_ADMIN_TOKEN is configured. The same
operation is `python -m pos_gateway create-merchant NAME` on the command line.
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request
from pydantic import Field

from pos_gateway import admin
from pos_gateway import examples as ex
from pos_gateway.problems import Problem
from pos_gateway.routes.common import Body, example, problems, success
from pos_gateway.schemas.credentials import Merchant

router = APIRouter(prefix="/v1/admin", tags=["platform administration"])


class MerchantIn(Body):
    model_config = example({"name": "Corner Coffee"})

    name: str = Field(min_length=1, max_length=200)


def _check(request: Request) -> None:
    expected: str | None = request.app.state.admin_token
    if not expected:
        raise Problem(404, "route_not_found", "no such route")
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip(), expected):
        raise Problem(
            401,
            "unauthorized",
            "the platform credential is required",
            headers={"WWW-Authenticate": 'Bearer realm="omnitill-admin"'},
        )


@router.post(
    "/merchants",
    status_code=201,
    summary="Create a merchant with its first (test) API key",
    description="Requires the platform credential. The key is shown in this answer only. "
    "Answers 404 like an unknown route when the deployment has no platform credential.",
    responses={201: success(ex.MERCHANT), **problems(400, 401, 404, 413)},
)
async def create_merchant(body: MerchantIn, request: Request) -> Merchant:
    _check(request)
    state = request.app.state
    merchant_id = await admin.create_merchant(state.engine, body.name)
    issued = await admin.issue_key(state.engine, state.secret, merchant_id, "default")
    return Merchant(id=merchant_id, name=body.name, api_key=issued.key)
