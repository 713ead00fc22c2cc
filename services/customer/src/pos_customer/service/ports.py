"""What the handlers need from storage.

The unit of work's repositories are the PostgreSQL ones: loyalty's guarantees (a balance equal
to its ledger, no double credit) rest on row locks and unique indexes, which only a real
database shows, so the handlers are tested against it rather than against fakes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pos_customer.adapters.repository import CustomerUow as CustomerUnitOfWork
else:
    CustomerUnitOfWork = object

__all__ = ["CustomerUnitOfWork"]
