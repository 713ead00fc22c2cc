"""What the handlers need from storage, as protocols: adapters and unit-test fakes provide it."""

from __future__ import annotations

from typing import Protocol

from pos_kit.paging import PageRequest
from pos_promotion.domain.model import Promotion


class PromotionRepository(Protocol):
    """Bound to one merchant when the unit of work builds it: it sees no other's promotions."""

    async def add(self, promotion: Promotion) -> None: ...
    async def get(self, promotion_id: str) -> Promotion | None: ...
    async def list(self, page: PageRequest) -> list[Promotion]:
        """By id, after `page.after`: up to `page.fetch` promotions."""
        ...


class PromotionUnitOfWork(Protocol):
    @property
    def promotions(self) -> PromotionRepository: ...

    def publish(self, event: object) -> None: ...


class ActivePromotions(Protocol):
    """The checkout's read, bound to one merchant: its active promotions in one query, outside
    any transaction, because a discount quote changes nothing."""

    async def active(self) -> list[Promotion]: ...
