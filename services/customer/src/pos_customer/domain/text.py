"""Text as search compares it: case and accents ignored ("Zoë" finds "zoe" and "ZOE")."""

from __future__ import annotations

import re
import unicodedata

_WORD = re.compile(r"[^\W_]+")


def fold(value: str) -> str:
    """Lower case without accents: NFKD splits "ë" into "e" and a combining mark we drop."""
    decomposed = unicodedata.normalize("NFKD", value.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def words(value: str) -> list[str]:
    return _WORD.findall(fold(value))
