"""The catalog: products and their rules. Plain Python: no storage or transport here."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pos_inventory.domain.model import SKU
from pos_kit.errors import FieldViolation, raise_if, require
from pos_kit.money import Money


@dataclass
class Product:
    id: str
    sku: str
    name: str
    price: Money
    version: int = 1
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class ProductCreated:
    product: Product


def validate_product(sku: str, name: str, price: Money) -> None:
    violations: list[FieldViolation] = []
    violations += require(
        bool(SKU.match(sku)), "sku", "must be 1 to 64 letters, digits, '.', '_', '-' or '/'"
    )
    violations += require(0 < len(name.strip()) <= 200, "name", "must be 1 to 200 characters")
    violations += require(price.amount >= 0, "price.amount", "must not be negative")
    raise_if(violations)
