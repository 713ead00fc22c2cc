"""The catalog: products, their variants and barcodes, and their rules.

Plain Python: no storage or transport here. A product is sold under its own SKU and under the SKU
of each of its variants (Shopify's product -> variants, with the product's own SKU kept so a
simple product needs no variant at all). SKUs are unique per merchant across products and
variants, because stock, prices and orders refer to SKUs only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import Enum

from pos_inventory.domain.barcodes import barcode_key, barcode_problem
from pos_inventory.domain.model import SKU, TAX_CATEGORY
from pos_kit.errors import DomainError, ErrorKind, FieldViolation, raise_if, require
from pos_kit.money import MINOR_UNITS, Money

# A SKU's words, as text search splits a query into words (letters, digits, '_').
SKU_WORD = re.compile(r"[A-Za-z0-9_]+")

MAX_VARIANTS = 100
MAX_BARCODES = 20
MAX_OPTIONS = 10
DEFAULT_TAX_CATEGORY = "standard"
# Fields a partial update may name.
UPDATABLE = frozenset(
    {"sku", "name", "price", "description", "category", "tax_category", "external_id"}
    | {"barcodes", "variants", "open_price", "unit_cost"}
)


class ProductStatus(Enum):
    ACTIVE = "active"
    ARCHIVED = "archived"


@dataclass
class Variant:
    id: str
    sku: str
    name: str = ""
    options: dict[str, str] = field(default_factory=dict)
    price: Money | None = None  # None: the product's price
    barcodes: list[str] = field(default_factory=list)
    unit_cost: Money | None = None  # None: the product's unit cost


@dataclass
class ProductFields:
    """A product as a client describes it; what create, update and upsert take."""

    sku: str
    name: str
    price: Money
    description: str = ""
    category: str = ""
    tax_category: str = DEFAULT_TAX_CATEGORY
    external_id: str = ""
    barcodes: list[str] = field(default_factory=list)
    variants: list[Variant] = field(default_factory=list)
    # The price is entered at the sale; `price` is a suggestion.
    open_price: bool = False
    # What a unit costs the merchant (None: not known): the floor below which a register sells
    # only with the `sell_below_cost` permission.
    unit_cost: Money | None = None


@dataclass
class Product:
    id: str
    sku: str
    name: str
    price: Money
    version: int = 1
    created_at: datetime | None = None
    updated_at: datetime | None = None
    description: str = ""
    category: str = ""
    tax_category: str = DEFAULT_TAX_CATEGORY
    status: ProductStatus = ProductStatus.ACTIVE
    external_id: str = ""
    barcodes: list[str] = field(default_factory=list)
    variants: list[Variant] = field(default_factory=list)
    open_price: bool = False
    unit_cost: Money | None = None

    @classmethod
    def new(cls, product_id: str, fields: ProductFields) -> Product:
        product = cls(product_id, fields.sku, fields.name, fields.price)
        product.describe(fields)
        return product

    def fields(self) -> ProductFields:
        return ProductFields(
            self.sku,
            self.name,
            self.price,
            self.description,
            self.category,
            self.tax_category,
            self.external_id,
            list(self.barcodes),
            [replace(v, id="") for v in self.variants],
            self.open_price,
            self.unit_cost,
        )

    def describe(self, fields: ProductFields) -> None:
        """Take every field of `fields`; a variant whose SKU stays keeps its id."""
        ids = {v.sku: v.id for v in self.variants}
        self.sku, self.name, self.price = fields.sku, fields.name, fields.price
        self.description, self.category = fields.description, fields.category
        self.tax_category, self.external_id = fields.tax_category, fields.external_id
        self.barcodes = list(fields.barcodes)
        self.variants = [replace(v, id=ids.get(v.sku) or v.id) for v in fields.variants]
        self.open_price = fields.open_price
        self.unit_cost = fields.unit_cost

    @property
    def archived(self) -> bool:
        return self.status is ProductStatus.ARCHIVED

    def skus(self) -> list[str]:
        return [self.sku, *(v.sku for v in self.variants)]

    def barcode_skus(self) -> dict[str, str]:
        """Every barcode's key -> the SKU it scans as."""
        found = {barcode_key(b): self.sku for b in self.barcodes}
        for v in self.variants:
            found.update({barcode_key(b): v.sku for b in v.barcodes})
        return found

    def sold_as(self, sku: str) -> Product:
        """This product as a till sells `sku`: a variant's SKU, name and price replace its own."""
        for v in self.variants:
            if v.sku == sku:
                name = f"{self.name} / {v.name}" if v.name else self.name
                return replace(
                    self,
                    sku=v.sku,
                    name=name,
                    price=v.price or self.price,
                    unit_cost=v.unit_cost or self.unit_cost,
                )
        return self

    def search_text(self) -> str:
        """What text search matches: names, description and every SKU, each SKU also as its
        words. PostgreSQL's parser reads `MUG-042` as `mug` and the integer `-042`, so a
        search for the SKU (`mug 042`, its words) or its number alone would miss it."""
        parts = [self.name, self.description, self.category, *self.skus()]
        parts += [v.name for v in self.variants]
        parts += [" ".join(SKU_WORD.findall(sku)) for sku in self.skus()]
        return " ".join(p for p in parts if p)


def concurrent_change() -> DomainError:
    """Another request took a key this one checked as free: retrying sees the new state."""
    return DomainError(
        "the catalog changed while this request ran; retry it",
        "concurrent_change",
        kind=ErrorKind.RETRY,
    )


def normalized(fields: ProductFields) -> ProductFields:
    """Trimmed text and the default tax category, so equal input compares equal."""
    return replace(
        fields,
        name=fields.name.strip(),
        description=fields.description.strip(),
        category=fields.category.strip(),
        tax_category=fields.tax_category.strip() or DEFAULT_TAX_CATEGORY,
        external_id=fields.external_id.strip(),
        variants=[
            replace(
                v, name=v.name.strip(), options={k.strip(): x.strip() for k, x in v.options.items()}
            )
            for v in fields.variants
        ],
    )


def _sku(sku: str, path: str) -> list[FieldViolation]:
    return require(
        bool(SKU.match(sku)), path, "must be 1 to 64 letters, digits, '.', '_', '-' or '/'"
    )


def _barcodes(codes: list[str], path: str) -> list[FieldViolation]:
    found = require(len(codes) <= MAX_BARCODES, path, f"must be at most {MAX_BARCODES}")
    for i, code in enumerate(codes):
        problem = barcode_problem(code)
        if problem:
            found.append(FieldViolation(f"{path}[{i}]", problem))
    return found


def _variant(v: Variant, currency: str, path: str) -> list[FieldViolation]:
    found = _sku(v.sku, f"{path}.sku")
    found += require(len(v.name) <= 200, f"{path}.name", "must be at most 200 characters")
    found += require(
        len(v.options) <= MAX_OPTIONS, f"{path}.options", f"must be at most {MAX_OPTIONS}"
    )
    for key, value in v.options.items():
        found += require(0 < len(key) <= 50, f"{path}.options", "names must be 1 to 50 characters")
        found += require(
            0 < len(value) <= 100, f"{path}.options.{key}", "must be 1 to 100 characters"
        )
    if v.price is not None:
        found += require(v.price.amount >= 0, f"{path}.price.amount", "must not be negative")
        # One product, one currency: a till never mixes currencies in a line's alternatives.
        found += require(
            v.price.currency == currency, f"{path}.price.currency", "must be the product's currency"
        )
    found += _cost(v.unit_cost, currency, f"{path}.unit_cost")
    return found + _barcodes(v.barcodes, f"{path}.barcodes")


def _cost(cost: Money | None, currency: str, path: str) -> list[FieldViolation]:
    if cost is None:
        return []
    found = require(cost.amount >= 0, f"{path}.amount", "must not be negative")
    # Compared with the price a line sells at: in the same currency, or it compares nothing.
    return found + require(
        cost.currency == currency, f"{path}.currency", "must be the product's price currency"
    )


def product_violations(fields: ProductFields) -> list[FieldViolation]:
    """Every problem of a (normalized) product description, field by field."""
    f = fields
    found = _sku(f.sku, "sku")
    found += require(0 < len(f.name) <= 200, "name", "must be 1 to 200 characters")
    found += require(f.price.amount >= 0, "price.amount", "must not be negative")
    found += require(
        f.price.currency in MINOR_UNITS, "price.currency", "must be a supported ISO 4217 code"
    )
    found += require(len(f.description) <= 5000, "description", "must be at most 5000 characters")
    found += require(len(f.category) <= 100, "category", "must be at most 100 characters")
    found += require(
        bool(TAX_CATEGORY.match(f.tax_category)),
        "tax_category",
        "must be a short lower-case code, e.g. standard, food, exempt",
    )
    found += require(len(f.external_id) <= 255, "external_id", "must be at most 255 characters")
    found += _barcodes(f.barcodes, "barcodes")
    found += _cost(f.unit_cost, f.price.currency, "unit_cost")
    found += require(len(f.variants) <= MAX_VARIANTS, "variants", f"must be at most {MAX_VARIANTS}")
    first_with: dict[frozenset[tuple[str, str]], int] = {}
    first_named: dict[str, int] = {}
    for i, v in enumerate(f.variants):
        found += _variant(v, f.price.currency, f"variants[{i}]")
        # Options are what a till or a shop shows to choose a variant by: two with the same
        # ones could not be told apart. Variants without options are told apart by name, so
        # two of them with one name could not be either (accepted until 2026-12-05).
        chosen_by = frozenset(v.options.items())
        if chosen_by and chosen_by in first_with:
            found.append(
                FieldViolation(
                    f"variants[{i}].options",
                    f"must differ from the options of variants[{first_with[chosen_by]}]",
                )
            )
        elif not chosen_by and v.name.strip() in first_named:
            found.append(
                FieldViolation(
                    f"variants[{i}].name",
                    f"must differ from the name of variants[{first_named[v.name.strip()]}]: "
                    "neither has options",
                )
            )
        first_with.setdefault(chosen_by, i)
        if not chosen_by:
            first_named.setdefault(v.name.strip(), i)
    skus = [f.sku, *(v.sku for v in f.variants)]
    found += require(
        len(set(skus)) == len(skus), "variants", "every SKU must differ from the others"
    )
    keys = [barcode_key(b) for b in [*f.barcodes, *(b for v in f.variants for b in v.barcodes)]]
    found += require(
        len(set(keys)) == len(keys), "barcodes", "every barcode must differ from the others"
    )
    return found


def validate_product_fields(fields: ProductFields) -> None:
    raise_if(product_violations(fields))


def validate_product(sku: str, name: str, price: Money) -> None:
    validate_product_fields(ProductFields(sku, name, price))
