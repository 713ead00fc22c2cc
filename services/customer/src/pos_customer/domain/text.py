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


def search_words(query: str) -> list[str]:
    """The words of a search: each word of the query, but a word holding an @ whole (folded),
    as the email is a term of its own ("ada@example.com" would split into "ada", "example"
    and "com", and the domain's words are no terms)."""
    found: list[str] = []
    for part in query.split():
        found += [fold(part)] if "@" in part else words(part)
    return found
