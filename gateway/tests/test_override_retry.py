"""A manager's override is granted once per request: the request's Idempotency-Key is its
request id, and a retry of a grant that committed (the gateway died before it stored the
answer) gets the same override back, never a second one to spend.

The gateway's own stores against its real database; no service is called.
"""

from __future__ import annotations

import uuid

import psycopg
import pytest

from pos.gateway.v1 import events_pb2 as pb
from pos_devstack.testing import Infra
from pos_gateway import audit, registers, staff
from pos_gateway.admin import create_merchant
from pos_kit.db import make_engine

pytestmark = pytest.mark.asyncio(loop_scope="session")

SECRET = "override-retry-secret-0123456789abcdef"
HERE = "loc_override_retry"


async def test_a_retried_grant_answers_the_same_override_and_grants_no_second(
    infra: Infra,
) -> None:
    url = infra.service_database("gateway")
    engine = make_engine(url, pool_size=1)
    try:
        merchant = await create_merchant(engine, f"Override Retry {uuid.uuid4().hex[:6]}")
        till = await registers.create(
            engine, merchant, HERE, "Till", audit.Actor(), str(uuid.uuid4())
        )
        issued = await registers.new_pairing_code(
            engine, SECRET, merchant, till.id, audit.Actor(), str(uuid.uuid4())
        )
        assert issued is not None and issued[0] is not None
        await registers.pair(engine, SECRET, issued[0])
        people = {}
        for role, pin in (("cashier", "1357"), ("manager", "8642")):
            made = await staff.create(
                engine, SECRET, merchant, {"name": role, "role": role, "location_ids": [HERE]},
                pin, audit.Actor(), str(uuid.uuid4()),
            )  # fmt: skip
            people[role] = made.id
        session = await staff.sign_in(
            engine, SECRET, merchant, till.id, HERE, people["cashier"], "1357"
        )
        key = str(uuid.uuid4())
        first = await staff.grant_override(
            engine, SECRET, merchant, till.id, HERE, session, people["manager"], "8642",
            "refund", key,
        )  # fmt: skip
        again = await staff.grant_override(
            engine, SECRET, merchant, till.id, HERE, session, people["manager"], "8642",
            "refund", key,
        )  # fmt: skip
        assert again == first
        with psycopg.connect(url.replace("+psycopg", "")) as conn:
            granted = conn.execute(
                "SELECT id FROM overrides WHERE session_id = %s", (session.id,)
            ).fetchall()
            announced = [
                pb.OverrideGranted.FromString(bytes(payload)).override.id
                for event_type, payload in conn.execute(
                    "SELECT event_type, payload FROM outbox WHERE merchant_id = %s", (merchant,)
                )
                if event_type == pb.OverrideGranted.DESCRIPTOR.full_name
            ]
        assert [row[0] for row in granted] == [first.id]
        assert announced == [first.id]
        # One use, as the manager gave one PIN for one action.
        assert await staff.use_override(engine, session.id, "refund", "a-refund") is not None
        assert await staff.use_override(engine, session.id, "refund", "another") is None
    finally:
        await engine.dispose()
