"""Barcodes: GTIN check digits and the key under which a barcode is unique."""

from __future__ import annotations

import re

GTIN_LENGTHS = (8, 12, 13, 14)
# Codes a shop prints itself (Code 128 labels and the like); all-digit codes must be GTINs.
SHOP_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,47}$")


def gtin_check_digit(body: str) -> int:
    """The GS1 mod-10 check digit: weights 3,1,3,... from the rightmost digit of the body."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10


def barcode_problem(code: str) -> str | None:
    """Why `code` is not an acceptable barcode, or None when it is."""
    if code.isdigit():
        if len(code) not in GTIN_LENGTHS:
            return "a numeric barcode must be a GTIN-8, -12, -13 or -14"
        if gtin_check_digit(code[:-1]) != int(code[-1]):
            return "the GTIN check digit is wrong"
        return None
    if not SHOP_CODE.match(code):
        return "must be a GTIN or 1 to 48 letters, digits, '.', '_' or '-'"
    return None


def barcode_key(code: str) -> str:
    """UPC-A 012345678905 and EAN-13 0012345678905 are one product: GTINs compare as 14 digits."""
    return code.zfill(14) if code.isdigit() else code
