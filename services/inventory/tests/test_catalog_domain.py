"""Catalog rules in plain Python: barcodes, product descriptions, variants as sold."""

from __future__ import annotations

from pos_inventory.domain.barcodes import barcode_key, barcode_problem, gtin_check_digit
from pos_inventory.domain.catalog import (
    Product,
    ProductFields,
    Variant,
    normalized,
    product_violations,
)
from pos_kit.money import Money


def test_gtin_check_digits_of_every_length() -> None:
    for code in ("96385074", "036000291452", "4006381333931", "10012345678902"):
        assert gtin_check_digit(code[:-1]) == int(code[-1]), code
        assert barcode_problem(code) is None
    assert barcode_problem("4006381333932") == "the GTIN check digit is wrong"
    assert barcode_problem("123456789") is not None  # digits, but no GTIN length
    assert barcode_problem("SHOP-0042") is None  # a shop's own label
    assert barcode_problem("no spaces") is not None


def test_a_upc_and_its_ean13_are_one_barcode() -> None:
    assert barcode_key("036000291452") == barcode_key("0036000291452")
    assert barcode_key("SHOP-1") == "SHOP-1"


def test_every_problem_of_a_product_is_named_by_its_path() -> None:
    fields = ProductFields(
        "bad sku",
        "",
        Money(-1, "USD"),
        tax_category="Food!",
        barcodes=["4006381333932"],
        variants=[Variant("", "V-1", price=Money(100, "EUR")), Variant("", "V-1")],
    )
    assert {v.field for v in product_violations(normalized(fields))} == {
        "sku",
        "name",
        "price.amount",
        "tax_category",
        "barcodes[0]",
        "variants[0].price.currency",
        "variants",
        "variants[1].name",  # no options and no name, as variants[0]
    }


def test_variants_are_told_apart_by_their_options_and_an_option_has_a_value() -> None:
    """Options are what a till or a shop chooses a variant by: two variants with the same ones
    (after trimming) are refused on the later one, naming the first, and an option of nothing
    (or of spaces) is refused. Until 2026-12-05 both were accepted. Variants without options
    (told apart by name) stay allowed."""
    fields = ProductFields(
        "TEE",
        "Tee",
        Money(2000, "USD"),
        variants=[
            Variant("", "TEE-M", "M", {"size": "M", "colour": "black"}),
            Variant("", "TEE-L", "L", {"size": "L", "colour": "black"}),
            Variant("", "TEE-M2", "M again", {"colour": "black ", "size": " M"}),
            Variant("", "TEE-B", "Blank", {"size": "  "}),
            Variant("", "TEE-X", "Plain"),
            Variant("", "TEE-Y", "Plainer"),
        ],
    )
    problems = {v.field: v.description for v in product_violations(normalized(fields))}
    assert problems == {
        "variants[2].options": "must differ from the options of variants[0]",
        "variants[3].options.size": "must be 1 to 100 characters",
    }


def test_variants_without_options_are_told_apart_by_name() -> None:
    """Two variants with no options and the same name (after trimming) cannot be told apart
    at a till: the later one is refused on its name, naming the first. Until 2026-12-05 they
    were accepted, though the rule was documented."""
    fields = ProductFields(
        "MUG",
        "Mug",
        Money(900, "USD"),
        variants=[
            Variant("", "MUG-A", "Plain"),
            Variant("", "MUG-B", "Plain "),
            Variant("", "MUG-C", "Plain", {"glaze": "matte"}),  # told apart by its options
            Variant("", "MUG-D", "Gift box"),
        ],
    )
    problems = {v.field: v.description for v in product_violations(normalized(fields))}
    assert problems == {
        "variants[1].name": "must differ from the name of variants[0]: neither has options"
    }


def test_a_variant_is_sold_under_its_sku_name_and_price() -> None:
    fields = ProductFields(
        "TEE",
        "Tee",
        Money(2000, "USD"),
        variants=[Variant("v1", "TEE-XL", "XL", {}, Money(2400, "USD"))],
    )
    product = Product.new("prod_1", fields)
    xl = product.sold_as("TEE-XL")
    assert (xl.id, xl.sku, xl.name, xl.price) == (
        "prod_1",
        "TEE-XL",
        "Tee / XL",
        Money(2400, "USD"),
    )
    assert product.sold_as("TEE") is product


def test_describing_again_keeps_the_ids_of_variants_whose_sku_stays() -> None:
    product = Product.new(
        "prod_1", ProductFields("TEE", "Tee", Money(1, "USD"), variants=[Variant("var_a", "TEE-M")])
    )
    fields = product.fields()
    assert fields.variants[0].id == ""  # ids are not part of what a client describes
    fields.variants.append(Variant("", "TEE-L"))
    product.describe(fields)
    assert [v.id for v in product.variants] == ["var_a", ""]
