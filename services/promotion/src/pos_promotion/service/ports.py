"""What the promotion handlers need from storage."""

from __future__ import annotations

from typing import Protocol

from pos_promotion.domain.model import Promotion


class PromotionRepository(Protocol):
    async def add(self, promotion: Promotion) -> None: ...
    async def active(self, merchant_id: str) -> list[Promotion]: ...
    async def list(self, merchant_id: str, limit: int, after_id: str | None) -> list[Promotion]: ...


class PromotionUnitOfWork(Protocol):
    merchant_id: str

    @property
    def promotions(self) -> PromotionRepository: ...

    def publish(self, event: object) -> None: ...
