"""A query parameter an operation does not take is refused, never ignored.

Ignored, a typo reads as no filter at all: `GET /v1/products?updated_sinse=...` would answer
every product as if the client had asked for them. As Stripe answers an unknown parameter, it
is a 400 `unknown_parameter` naming each one (`errors[]`), from the parameters the route
declares (its dependencies' too), so a route added later is held to it with no code of its own.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request

from pos_gateway.problems import Problem
from pos_kit.text import CARD_NUMBER_NOT_ALLOWED, CARD_NUMBER_REASON, text_problem

UNKNOWN_PARAMETER = "unknown_parameter"
NOT_TAKEN = "is not a parameter of this operation"


def declared(dependant: Any) -> frozenset[str]:
    """The names of the query parameters of a route and of its dependencies."""
    names: set[str] = set()
    todo = [dependant]
    while todo:
        each = todo.pop()
        todo.extend(each.dependencies)
        names.update(field.alias for field in each.query_params)
    return frozenset(names)


async def only_declared(request: Request) -> None:
    """Refuse the query parameters the route does not declare (a dependency of every route;
    the public API's only: the docs page and the probes are not partners' operations)."""
    given = request.query_params
    if not given or not request.url.path.startswith("/v1/"):
        return
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    names: frozenset[str] | None = getattr(route, "_declared_query", None)
    if names is None:
        names = declared(dependant)
        route._declared_query = names  # type: ignore[union-attr]
    unknown = [name for name in dict.fromkeys(given.keys()) if name not in names]
    if any(text_problem(name, name) == CARD_NUMBER_REASON for name in unknown):
        # The edge checks the values; a name is echoed in `errors[]` below, and a card number
        # is never repeated back (nor is there a field to name it by).
        raise Problem(400, CARD_NUMBER_NOT_ALLOWED, "card numbers are never accepted")
    if unknown:
        raise Problem(
            400,
            UNKNOWN_PARAMETER,
            "the request has query parameters this operation does not take (errors[])",
            [{"field": name, "reason": NOT_TAKEN} for name in unknown],
        )
