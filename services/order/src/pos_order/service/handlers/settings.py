"""The merchant's order settings."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TypeVar

from pos_kit.errors import Conflict, FieldViolation, raise_if
from pos_order.domain.returns import ReceiptlessLimit, receiptless_limit_violations
from pos_order.service.ports import OrderSettings, OrderUnitOfWork
from pos_order.service.saga import Policy


async def get_settings(uow: OrderUnitOfWork, policy: Policy) -> OrderSettings:
    return await uow.settings.get() or policy.defaults


@dataclass(frozen=True)
class SettingsChange:
    capture_pickup_at_order: bool | None = None
    pickup_expiry_seconds: int | None = None
    hold_seconds: int | None = None
    return_window_days: int | None = None
    return_policy_text: str | None = None
    # A new limit on returns without a receipt; `clear_receiptless_limit`: none any more.
    receiptless_limit: ReceiptlessLimit | None = None
    clear_receiptless_limit: bool = False


MAX_POLICY_TEXT = 1_000


def _settings_changed(current_version: int) -> Conflict:
    return Conflict(
        "the settings changed since the version you sent",
        "version_mismatch",
        {"current_version": str(current_version)},
    )


MAX_LEASE_SECONDS = 300


async def lease_settings(
    uow: OrderUnitOfWork, policy: Policy, holder: str, seconds: float
) -> tuple[bool, OrderSettings]:
    """Whether `holder` now holds the settings' lease, and the settings as they are: read under
    their row's lock, so a change being written is in them (or waited for)."""
    violations = []
    if not holder:
        violations.append(FieldViolation("holder", "is required"))
    if not 1 <= seconds <= MAX_LEASE_SECONDS:
        violations.append(
            FieldViolation("lease_seconds", f"must be between 1 and {MAX_LEASE_SECONDS}")
        )
    raise_if(violations)
    current = await uow.settings.get(lock=True) or policy.defaults
    return await uow.settings.lease(holder, seconds), current


async def update_settings(
    uow: OrderUnitOfWork,
    policy: Policy,
    change_: SettingsChange,
    expected_version: int = 0,
    lease: str = "",
) -> tuple[OrderSettings, OrderSettings]:
    """The settings before and after the change. With `expected_version`, a stale version
    changes nothing (`version_mismatch`); a change to what they already are is none (no new
    version). With `lease`, made only while that lease is still its holder's (else
    `version_mismatch`, nothing changed)."""
    violations: list[FieldViolation] = []
    if change_.pickup_expiry_seconds is not None and not (
        3600 <= change_.pickup_expiry_seconds <= 90 * 86400
    ):
        violations.append(
            FieldViolation("pickup_expiry_seconds", "must be between 3600 and 7776000 (90 days)")
        )
    if change_.hold_seconds is not None and not (60 <= change_.hold_seconds <= 7 * 86400):
        violations.append(FieldViolation("hold_seconds", "must be between 60 and 604800"))
    if change_.return_window_days is not None and not (0 <= change_.return_window_days <= 365):
        violations.append(FieldViolation("return_window_days", "must be between 0 and 365"))
    if change_.return_policy_text is not None and len(change_.return_policy_text) > (
        MAX_POLICY_TEXT
    ):
        violations.append(
            FieldViolation("return_policy_text", f"must be at most {MAX_POLICY_TEXT} characters")
        )
    if change_.receiptless_limit is not None:
        if change_.clear_receiptless_limit:
            violations.append(
                FieldViolation("receiptless_limit", "cannot be set and cleared at once")
            )
        violations += receiptless_limit_violations(change_.receiptless_limit, "receiptless_limit")
    raise_if(violations)
    # Twice at most: a merchant's first change can lose the race to create the row to another
    # first change; without If-Match it is then applied on top of the winner's, as any later.
    for attempt in (1, 2):
        current, updated = await _settings_after(uow, policy, change_)
        if lease and not await uow.settings.holds_lease(lease):
            raise _settings_changed(current.version)
        if expected_version and expected_version != current.version:
            raise _settings_changed(current.version)
        if updated == current:
            return current, current
        updated = replace(updated, version=current.version + 1)
        if await uow.settings.put(updated):
            return current, updated
        if expected_version or attempt == 2:
            found = await uow.settings.get()
            raise _settings_changed(found.version if found else current.version)
    raise AssertionError("unreachable")


async def _settings_after(
    uow: OrderUnitOfWork, policy: Policy, change_: SettingsChange
) -> tuple[OrderSettings, OrderSettings]:
    """The settings now (locked) and as the change would leave them, before its version."""
    current = await uow.settings.get(lock=True) or policy.defaults
    updated = OrderSettings(
        capture_pickup_at_order=_or(
            change_.capture_pickup_at_order, current.capture_pickup_at_order
        ),
        pickup_expiry_seconds=_or(change_.pickup_expiry_seconds, current.pickup_expiry_seconds),
        hold_seconds=_or(change_.hold_seconds, current.hold_seconds),
        return_window_days=_or(change_.return_window_days, current.return_window_days),
        return_policy_text=_or(change_.return_policy_text, current.return_policy_text),
        version=current.version,
        receiptless_limit=None
        if change_.clear_receiptless_limit
        else _or(change_.receiptless_limit, current.receiptless_limit),
    )
    return current, updated


T = TypeVar("T")


def _or(value: T | None, default: T) -> T:
    return default if value is None else value
