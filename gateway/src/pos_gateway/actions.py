"""Sensitive actions made through the API: who may make them, and their audit entry.

A register's request is made by the member signed in at it: with no one signed in, it is
refused; a permission the member's role lacks is taken from an override a manager granted at
that register (staff.grant_override) for this one action, else refused. Any other credential
(an API key, an OAuth client) acts for the merchant and is recorded as itself. The entry is
written once the action succeeded, naming the member, the approving manager and the register.
An override taken by a request that failed is given back only when the request was refused
(nothing was or will be done); one whose outcome is not known yet (a 5xx: a card's answer
lost, a service unavailable once the sale may have been saved) stays the request's, so its
retry under the same Idempotency-Key uses it again and records the entry once it answers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
from fastapi import Request

from pos_gateway import audit, staff
from pos_gateway.auth import Principal, not_for_a_register
from pos_gateway.problems import Problem, from_rpc_error
from pos_kit.context import request_id_var


@dataclass
class Done:
    """What the action did, filled in by the route for its audit entry."""

    resource: tuple[str, str] | None = None
    details: dict[str, Any] = field(default_factory=dict)
    # False when the action turned out to change nothing (settings set to what they were):
    # no entry is written.
    changed: bool = True
    # False when the signed-in member lacks the permission and no override was waiting, for
    # an action guarded with `required=False`: the route refuses what needs it.
    permitted: bool = True
    # False when the action turned out not to need the permission after all (an exchange
    # that gave nothing back): a manager's override taken for it is given back.
    needed: bool = True


def settings_changed(
    done: Done, before: dict[str, Any], after: dict[str, Any], version: int
) -> None:
    """A settings change's audit entry: each changed field's new value, what it was
    (`from`), and the settings' new version; none when nothing changed."""
    changed = sorted(k for k, v in after.items() if before.get(k) != v)
    done.changed = bool(changed)
    done.details = {
        **{k: after[k] for k in changed},
        "from": {k: before.get(k) for k in changed},
        "version": version,
    }


# A refusal that says the same request is still being carried out (its first attempt,
# elsewhere): what it does is not known yet.
_STILL_RUNNING = frozenset({"request_in_progress"})


def nothing_done(exc: BaseException) -> bool:
    """Whether an action that failed with `exc` did nothing and never will: a refusal (a 4xx,
    a declined card's 402). A 5xx or any other failure (a service unavailable once the order
    may have been saved, a card's answer lost, the request cut off) leaves its outcome to be
    learnt: the retry under the same Idempotency-Key finishes or cancels that same action."""
    if isinstance(exc, grpc.aio.AioRpcError):
        exc = from_rpc_error(exc)
    return isinstance(exc, Problem) and exc.status < 500 and exc.code not in _STILL_RUNNING


def permission_refused(permission: str) -> Problem:
    return Problem(
        403,
        "permission_required",
        f"the signed-in member may not {permission.replace('_', ' ')} alone: a "
        "manager's override is needed for this action",
        extra={"permission": permission},
    )


def principal_of(request: Request) -> Principal:
    principal: Principal = request.state.principal
    return principal


def back_office_only(request: Request, what: str) -> None:
    """Merchant-wide settings are the back office's (an API key, an OAuth client): a till's
    credential carries the scopes their routes ask for (it sells), but what they change is
    every store's, so a register's is refused whoever is signed in at it, as it is for
    managing registers and staff (`auth.not_for_a_register`: with the scope challenge)."""
    if principal_of(request).register_id is not None:
        raise not_for_a_register(request, f"a register's credential cannot change {what}")


def signed_in(principal: Principal) -> Principal:
    if principal.register_id is not None and principal.staff_id is None:
        raise Problem(
            403, "staff_sign_in_required", "no staff member is signed in at this register"
        )
    return principal


@asynccontextmanager
async def guarded(
    request: Request,
    action: str,
    permission: str | None = None,
    always: bool = True,
    entry_key: str | None = None,
    required: bool = True,
    settings: str | None = None,
) -> AsyncIterator[Done]:
    """Around a sensitive action: the permission check before, the audit entry after (for a
    register's request always; for any other credential only when `always`). The entry is
    written once per request and action; `entry_key` in place of the request's id tells a
    second action of the same kind in one request from a retry of the first. `required`
    False: a member without the permission (and no override) is not refused here, but
    `done.permitted` is False, for an action that needs it only in some cases. `settings`:
    the merchant-wide settings the action changes, refused to a register (`back_office_only`)."""
    if settings is not None:
        back_office_only(request, settings)
    principal = signed_in(principal_of(request))
    engine = request.app.state.engine
    request_id = request_id_var.get() or ""
    override: staff.Override | None = None
    permitted = True
    if permission is not None and principal.staff_id is not None:
        assert principal.session_id is not None
        merchant = principal.merchant_id
        if not await staff.may(engine, merchant, principal.staff_id, permission):
            override = await staff.use_override(
                engine, principal.session_id, permission, request_id
            )
            if override is None:
                if required:
                    raise permission_refused(permission)
                permitted = False
    done = Done(permitted=permitted)
    try:
        yield done
    except BaseException as exc:
        if override is not None and nothing_done(exc):
            await staff.give_back_override(engine, override.id, request_id)
        raise
    if override is not None and not done.needed:
        # The override waits for the action the manager gave it for, and this entry names
        # no approval that was not used.
        await staff.give_back_override(engine, override.id, request_id)
        override = None
    if (principal.register_id is None and not always) or not done.changed:
        return
    details = dict(done.details)
    if override is not None:
        details["override_id"] = override.id
    actor = audit.actor_of(principal, override.approved_by if override else None)
    async with engine.begin() as conn:
        await audit.record(
            conn, principal.merchant_id, action, actor, done.resource, details,
            entry_key or request_id,
        )  # fmt: skip
