"""What the inventory handlers need from storage, as protocols: adapters and test fakes provide
it. Every repository is bound to one merchant when the unit of work builds it and sees no
other's rows; the expiry sweep's repository is the one exception (see ExpiryRepository)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from pos_inventory.domain.catalog import Product, ProductStatus
from pos_inventory.domain.ledger import ItemState, LedgerEntry, NewEntry
from pos_inventory.domain.model import Location, LocationStatus, StockLevel, Threshold
from pos_inventory.domain.reservations import Reservation, ReservationStatus
from pos_inventory.domain.search import ProductQuery
from pos_kit.paging import PageRequest


@dataclass(frozen=True)
class HistoryFilters:
    """What narrows the stock ledger; each one set must hold."""

    sku: str = ""
    location_id: str = ""
    kind: str = ""
    reason: str = ""
    # Recorded in [recorded_since, recorded_before).
    recorded_since: datetime | None = None
    recorded_before: datetime | None = None


class LocationRepository(Protocol):
    async def add(self, location: Location) -> None: ...
    async def count_for_add(self) -> int: ...
    async def get(self, location_id: str, lock: bool = False) -> Location | None: ...
    async def save(self, location: Location) -> None:
        """Write back a changed location (its version already bumped)."""
        ...

    async def many(self, location_ids: list[str]) -> list[Location]: ...
    async def all(self) -> list[Location]: ...
    async def list(
        self, page: PageRequest, status: LocationStatus | None = None
    ) -> list[Location]: ...


class ProductRepository(Protocol):
    async def add(self, product: Product) -> bool: ...  # False when the sku is taken
    async def get(self, product_id: str, lock: bool = False) -> Product | None: ...
    async def by_skus(self, skus: list[str]) -> list[Product]: ...
    async def known_skus(self, skus: list[str], hold: bool = False) -> set[str]:
        """Which of `skus` are in the catalog: a product's own SKU or a variant's. `hold`: the
        ones found stay in it until the transaction ends (a change taking one away waits)."""
        ...

    async def lock_skus(self, skus: list[str]) -> None:
        """Before a change takes `skus` away: waits for the stock writes holding them, and
        makes later ones wait for the change (then not finding them)."""
        ...

    # The catalog's own (service/catalog.py, service/upsert.py):
    async def add_many(self, new: list[Product]) -> bool: ...  # False when a key is taken
    async def save(self, product: Product, seen_version: int) -> bool: ...  # False: stale
    async def replace_many(self, changed: list[Product]) -> None: ...
    async def by_barcodes(self, keys: list[str]) -> list[Product]: ...
    async def by_external_ids(self, ids: list[str], lock: bool = False) -> list[Product]: ...
    async def search(self, query: ProductQuery, page: PageRequest) -> list[Product]: ...
    async def list(self, page: PageRequest, status: ProductStatus | None = None) -> list[Product]:
        """By id, or with `page.since` the change feed (oldest change first)."""
        ...


class StockRepository(Protocol):
    async def lock(self, sku: str, location_id: str) -> ItemState: ...
    async def lock_all(self, location_id: str, skus: list[str]) -> dict[str, ItemState]: ...
    async def record_all(
        self,
        location_id: str,
        entries: list[tuple[str, NewEntry]],
        reserved_deltas: list[int] | None = None,
    ) -> list[tuple[StockLevel, LedgerEntry, int | None]]: ...
    async def changed_after(self, sku: str, location_id: str, occurred_at: datetime) -> int: ...
    async def record(
        self,
        sku: str,
        location_id: str,
        entry: NewEntry,
        reserved_delta: int = 0,
        count_key: str | None = None,
    ) -> tuple[StockLevel, LedgerEntry, int | None]: ...
    async def hold(
        self, location_id: str, lines: list[tuple[str, int]]
    ) -> tuple[list[tuple[StockLevel, int | None]], str | None]: ...
    async def unhold(self, location_id: str, lines: list[tuple[str, int]]) -> list[StockLevel]: ...
    async def levels(self, skus: list[str], location_ids: list[str] | None) -> list[StockLevel]: ...
    async def levels_at(self, location_id: str, after: str | None, fetch: int) -> list[StockLevel]:
        """Up to `fetch` levels at the location by SKU, those after the SKU `after` only."""
        ...

    async def history(self, f: HistoryFilters, page: PageRequest) -> list[LedgerEntry]:
        """Newest first; `page.after` is the id of the last entry already seen."""
        ...

    async def set_threshold(self, sku: str, threshold: int | None) -> int | None:
        """Set (or with None remove) the SKU's threshold; answers the one it replaced."""
        ...

    async def thresholds(self, skus: list[str], page: PageRequest) -> list[Threshold]:
        """The thresholds set, by SKU, of `skus` only if any; `page.after` is the SKU the last
        page ended with."""
        ...


class ReservationRepository(Protocol):
    async def add(self, reservation: Reservation, ttl_seconds: int) -> None: ...
    async def get(self, reservation_id: str, lock: bool = False) -> Reservation | None: ...
    async def finish(
        self, reservation_id: str, status: ReservationStatus, unless_due: bool
    ) -> Reservation | None: ...
    async def expire_if_due(self, reservation_id: str) -> Reservation | None: ...
    async def due_holding(self, location_id: str, skus: list[str], limit: int) -> list[str]: ...
    async def list(
        self, page: PageRequest, status: ReservationStatus | None, location_id: str, sku: str
    ) -> list[Reservation]:
        """By id after `page.after`, each as read; only those in `status` (as read), at
        `location_id` and holding `sku` when given."""
        ...


class ExpiryRepository(Protocol):
    """Not bound to a merchant: the sweep expires due holds of every merchant in one
    transaction, and each row it returns or takes names its merchant."""

    async def expire_due(
        self, limit: int, as_of: datetime | None
    ) -> list[tuple[str, Reservation]]: ...
    async def unhold(
        self, holds: list[tuple[str, str, list[tuple[str, int]]]]
    ) -> list[list[StockLevel]]:
        """Each hold's (merchant, location, lines) given back in turn: its lines' levels after."""
        ...


class InventoryUnitOfWork(Protocol):
    @property
    def locations(self) -> LocationRepository: ...

    @property
    def products(self) -> ProductRepository: ...

    @property
    def stock(self) -> StockRepository: ...

    @property
    def reservations(self) -> ReservationRepository: ...

    @property
    def expiry(self) -> ExpiryRepository: ...

    def publish(self, event: object) -> None: ...

    def publish_for(self, merchant_id: str, event: object) -> None:
        """For the sweep only: publish an event of the merchant a swept row belongs to."""
        ...
