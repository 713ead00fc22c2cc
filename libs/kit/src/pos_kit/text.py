"""The rules every text value obeys on its way in, at the gateway and in every service.

- No NUL character: PostgreSQL cannot store it, and no name or id needs it.
- No card number: PCI DSS wants the platform never to become a place where card data lands,
  so a value holding one is refused before it reaches a table, a log, an outbox or a stream.

A card number here is a whole run of 13 to 19 digits, written contiguously or in groups split
by one or two separators (any whitespace, Unicode spaces such as NBSP included, `-`, `.`, `/`,
`_`, the Unicode dashes such as en and em dash, and the fullwidth forms of `-./_`), whose first
digit is 2 to 6 (the networks' ranges: Mastercard 2/5, Amex/Diners/JCB 3, Visa 4,
Discover/UnionPay 6) and which passes the Luhn check. A digit is any Unicode decimal digit
(fullwidth, Arabic-Indic, …), read as its value. "Whole" means the run is not part of a
longer one: a 20-digit number is not a card number, and three separators in a row end a run.
Refusals never repeat the value.

Grouped, the run must be laid out as a card number is written or read out: groups of one size
from 1 to 6 digits with a last group no longer than the others (4-4-4-4, 4-4-4-4-3, 3-3-3-3-3,
…), or the 4-6-… of Amex (4-6-5) and Diners (4-6-4) cards. Other groupings are how dates,
counters and references are written (`pos-20261202-000123`, 8-6): one in ten of those passes
Luhn by chance, and refusing them would refuse ordinary Idempotency-Keys and order references.

Some values have a type of their own and follow its rules rather than this one:
- UUIDs (with their dashes or as 32 hex digits, `uuid4().hex`, a common request id) and our own
  ids (`ord_01j…`) anywhere in a value are set aside before runs are looked for: their digits
  are random, and a generated id must never be refused as a card (about one UUID in a few
  hundred holds a run that passes for one).
- In fields that hold GTINs (barcodes, and SKUs, which shops often set to the product's GTIN)
  a contiguous run that is a valid GTIN-8/12/13/14 is a barcode, not a card number.
- A URL (a `url` field, a webhook's) is read with its percent-escapes decoded too:
  `%34111111111111111` is 4111111111111111.
- A phone number (a `phone` field) is stored without its separators (E.164): written in
  groups, `+37 8282 2463 10005`, it passes the rule for free text, and stored it would be
  `+378282246310005`, a card number. So it is held to the rule as it will be stored.
"""

from __future__ import annotations

import re
import urllib.parse

NUL = "\x00"
NUL_REASON = "must not contain the NUL character"

CARD_NUMBER_NOT_ALLOWED = "card_number_not_allowed"
CARD_NUMBER_REASON = (
    "must not hold a card number: card data is never accepted (send the processor's token)"
)

# Field names whose values may be GTINs, the same in the REST API and the protos.
GTIN_FIELDS = frozenset({"sku", "skus", "barcode", "barcodes"})
# Field names whose values are phone numbers, checked as they are stored (compact_phone).
PHONE_FIELDS = frozenset({"phone"})
# What people write between a phone number's digits: "+1 (415) 555-0100", "+33 6.12.34.56.78".
PHONE_SEPARATORS = re.compile(r"[\s\-.()/]")

# Field names whose values are URLs, read with their percent-escapes decoded as well.
URL_FIELDS = frozenset({"url"})

# What may stand between the groups of a card number's digits, one or two of them: whitespace
# (Unicode spaces too), hyphen-minus, full stop, solidus, low line, the Unicode dashes (hyphen,
# non-breaking hyphen, figure, en and em dash, horizontal bar, minus sign, small and fullwidth
# forms) and the fullwidth full stop, solidus and low line.
_SEP = r"[\s\-./_\u2010-\u2015\u2212\ufe58\ufe63\uff0d\uff0e\uff0f\uff3f]"
# Unicode decimal digits (\d) joined by at most two separators; greedy, so each match is a
# whole (maximal) run.
_RUN = re.compile(rf"\d(?:{_SEP}{{0,2}}\d){{12,}}")
_SEPS = re.compile(f"{_SEP}+")
_IDS = re.compile(
    r"(?<![0-9A-Za-z])(?:"
    r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
    r"|[0-9A-Fa-f]{32}"
    r"|[a-z]+_[0-9a-hjkmnp-tv-z]{26}"
    r")(?![0-9A-Za-z])"
)
_GTIN_LENGTHS = (8, 12, 13, 14)


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, char in enumerate(reversed(digits)):
        d = ord(char) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def is_gtin(value: str) -> bool:
    """A GTIN-8, -12, -13 or -14 with its GS1 check digit (weights 3,1,3,… from the right)."""
    if len(value) not in _GTIN_LENGTHS or not value.isascii() or not value.isdigit():
        return False
    body = value[:-1]
    total = sum((ord(c) - 48) * (3 if i % 2 == 0 else 1) for i, c in enumerate(reversed(body)))
    return (10 - total % 10) % 10 == ord(value[-1]) - 48


def _is_card_run(run: str, gtins_allowed: bool) -> bool:
    digits = "".join(str(int(char)) for char in run if char.isdecimal())  # ASCII, in order
    if not 13 <= len(digits) <= 19 or digits[0] not in "23456":
        return False
    contiguous = len(digits) == len(run)
    if not contiguous and not card_layout(run):
        return False
    if gtins_allowed and contiguous and is_gtin(digits):
        return False
    return luhn_ok(digits)


def card_layout(run: str) -> bool:
    """Whether the groups of a separated run are laid out as a card number is written."""
    sizes = tuple(len(group) for group in _SEPS.split(run))
    if sizes[:2] == (4, 6) and len(sizes) == 3:
        return True  # Amex's 4-6-5, Diners' 4-6-4, and the same cut of longer numbers
    size = sizes[0]
    return size <= 6 and all(s == size for s in sizes[:-1]) and sizes[-1] <= size


def holds_card_number(value: str, *, gtins_allowed: bool = False) -> bool:
    """True when `value` holds a card number (see the module's docstring for the rule)."""
    if len(value) < 13:
        return False
    if "_" in value or "-" in value or len(value) >= 32:
        value = _IDS.sub("#", value)
    return any(_is_card_run(m.group(), gtins_allowed) for m in _RUN.finditer(value))


def compact_phone(value: str) -> str:
    """A phone number as it is stored: its separators gone, a leading `00` read as `+`
    ("0044 20 7946 0958" is "+442079460958")."""
    digits = PHONE_SEPARATORS.sub("", value.strip())
    return "+" + digits[2:] if digits.startswith("00") else digits


def text_problem(field: str, value: str) -> str | None:
    """Why `value`, sent as the field `field`, is refused (NUL_REASON or CARD_NUMBER_REASON), or
    None. `field` may be a path (`variants[0].barcodes[1]`); its last name says whether GTINs
    are at home in it."""
    if NUL in value:
        return NUL_REASON
    name = field.rsplit(".", 1)[-1].split("[", 1)[0]
    if holds_card_number(value, gtins_allowed=name in GTIN_FIELDS):
        return CARD_NUMBER_REASON
    if name in PHONE_FIELDS and holds_card_number(compact_phone(value)):
        return CARD_NUMBER_REASON
    if name in URL_FIELDS and "%" in value and holds_card_number(urllib.parse.unquote(value)):
        return CARD_NUMBER_REASON
    return None
