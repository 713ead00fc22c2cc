"""What the handlers need from storage, as protocols: adapters and unit-test fakes provide it."""

from __future__ import annotations

from typing import Protocol

from pos_promotion.domain.model import Promotion


class PromotionRepository(Protocol):
    async def add(self, promotion: Promotion) -> None: ...
    async def get(self, merchant_id: str, promotion_id: str) -> Promotion | None: ...
    async def list(self, merchant_id: str, limit: int, after_id: str | None) -> list[Promotion]: ...


class PromotionUnitOfWork(Protocol):
    merchant_id: str

    @property
    def promotions(self) -> PromotionRepository: ...

    def publish(self, event: object) -> None: ...


class ActivePromotions(Protocol):
    """The checkout's read: a merchant's active promotions in one query, outside any
    transaction, because a discount quote changes nothing."""

    async def active(self, merchant_id: str) -> list[Promotion]: ...
