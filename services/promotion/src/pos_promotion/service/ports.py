"""What the handlers need from storage, as protocols: adapters and unit-test fakes provide it."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from pos_kit.paging import PageRequest
from pos_promotion.domain.coupons import Coupon, CouponStatus, Reservation
from pos_promotion.domain.model import Promotion, Schedule, Status


class PromotionRepository(Protocol):
    """Bound to one merchant when the unit of work builds it: it sees no other's promotions."""

    async def add(self, promotion: Promotion) -> None: ...
    async def get(self, promotion_id: str, lock: bool = False) -> Promotion | None: ...
    async def save(self, promotion: Promotion, seen_version: int) -> bool: ...
    async def remove(self, promotion_id: str) -> None: ...
    async def live(self) -> list[Promotion]:
        """Every promotion not ended (active or paused), whatever its window, by id."""
        ...

    async def mark_used(self, promotion_ids: set[str]) -> set[str]:
        """Marks them used: the ids that were not yet, each at a new version."""
        ...

    async def active(self) -> list[Promotion]:
        """Every active promotion, as this unit of work sees them."""
        ...

    async def list(
        self,
        page: PageRequest,
        status: Status | None = None,
        schedule: Schedule | None = None,
        at: datetime | None = None,
    ) -> list[Promotion]:
        """By id after `page.after`, or changed since `page.since`: up to `page.fetch`; only
        those in `status`, and whose window is in `schedule` at `at`, when given."""
        ...


class CouponRepository(Protocol):
    async def add(self, coupon: Coupon, code_hash: bytes) -> bool: ...
    async def by_hashes(self, hashes: list[bytes], lock: bool = False) -> dict[bytes, Coupon]: ...
    async def by_ids(self, coupon_ids: list[str], lock: bool = False) -> dict[str, Coupon]: ...
    async def get(self, coupon_id: str, lock: bool = False) -> Coupon | None: ...
    async def save_status(self, coupon: Coupon) -> None:
        """Writes its `status` and `deactivated_at`."""
        ...

    async def of_promotion(
        self, promotion_id: str, page: PageRequest, status: CouponStatus | None = None
    ) -> list[Coupon]: ...
    async def count(self, coupon: Coupon) -> None: ...
    async def lock_order(self, order_id: str) -> None:
        """Until the transaction ends, no other transaction reserves, redeems or releases
        this order's coupons."""
        ...

    async def reservations(self, order_id: str) -> list[Reservation]: ...
    async def uses_by(self, coupon_id: str, customer_id: str) -> int:
        """The person's uses: under the named id and every id merged with it."""
        ...

    async def save_reservation(self, r: Reservation) -> None: ...
    async def set_status(self, r: Reservation) -> None: ...


class CustomerMerges(Protocol):
    """The customer service's merges: each duplicate and the customer it is now."""

    async def lock(self) -> None: ...
    async def survivor_of(self, customer_id: str) -> str: ...
    async def record(self, duplicate_id: str, survivor_id: str) -> None: ...


class RetiredGroups(Protocol):
    """Customer groups retired for their deletion: no promotion may name one from then on."""

    async def lock(self, group_ids: set[str]) -> None:
        """Until the transaction ends, no other transaction retires these groups or writes a
        promotion naming them."""
        ...

    async def retired(self, group_ids: set[str]) -> set[str]:
        """Those of `group_ids` that a retirement stands for."""
        ...

    async def retire(self, group_id: str, retirement_id: str) -> None: ...
    async def reinstate(self, group_id: str, retirement_id: str) -> None:
        """Undoes that one retirement (none: nothing)."""
        ...


class PromotionUnitOfWork(Protocol):
    @property
    def merchant_id(self) -> str: ...
    @property
    def promotions(self) -> PromotionRepository: ...
    @property
    def coupons(self) -> CouponRepository: ...
    @property
    def merges(self) -> CustomerMerges: ...
    @property
    def retired_groups(self) -> RetiredGroups: ...

    def publish(self, event: object) -> None: ...


class ActivePromotions(Protocol):
    """The checkout's read of one merchant's active promotions (cached, see adapters/cache.py)."""

    async def active(self, merchant_id: str) -> list[Promotion]: ...


class CouponLookup(Protocol):
    """Coupons by the keyed hash of their code, outside any transaction: a preview's read."""

    async def coupons(self, merchant_id: str, hashes: list[bytes]) -> dict[bytes, Coupon]: ...

    async def uses_by(self, merchant_id: str, coupon_id: str, customer_id: str) -> int: ...

    async def is_active(self, merchant_id: str, promotion_id: str) -> bool:
        """Its status is active, whatever its window: the offers read leaves out those whose
        window closed, and a code of one is not applicable, not inactive."""
        ...


class CodeHasher(Protocol):
    def __call__(self, merchant_id: str, normalized_code: str) -> bytes: ...
