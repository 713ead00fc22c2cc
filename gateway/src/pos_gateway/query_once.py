"""A query parameter that takes one value is given once.

Starlette keeps every value of a repeated parameter and FastAPI hands a single-valued one the
last: `?location_id=a&location_id=b` would read the stock of `b` and answer as if nothing were
odd. Which one the client meant is not ours to guess, so it is a 400 naming the parameter. The
parameters that take a list (`sku`, `types`) are left alone.
"""

from __future__ import annotations

import types
from collections.abc import Sequence
from typing import Annotated, Any, Union, get_args, get_origin

from fastapi import Request

from pos_gateway.problems import Problem

ONCE = "is given more than once; send it once"


def takes_many(annotation: Any) -> bool:
    """Whether a parameter of this type takes several values (a list, through Optional or
    Annotated)."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType, Annotated):
        return any(takes_many(arg) for arg in get_args(annotation))
    return isinstance(origin, type) and issubclass(origin, Sequence) and origin is not str


def single_valued(dependant: Any) -> tuple[str, ...]:
    """The names of the query parameters of a route (its dependencies' too) that take one
    value."""
    names: list[str] = []
    todo = [dependant]
    while todo:
        each = todo.pop()
        todo.extend(each.dependencies)
        names += [
            field.alias
            for field in each.query_params
            if not takes_many(field.field_info.annotation)
        ]
    return tuple(dict.fromkeys(names))


async def one_value_each(request: Request) -> None:
    """Refuse a single-valued query parameter given more than once (every route's
    dependency)."""
    query = request.query_params
    given = query.multi_items()
    if len(given) == len({name for name, _ in given}):
        return  # nothing repeated: the usual case, at no cost
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    names: tuple[str, ...] | None = getattr(route, "_single_valued_query", None)
    if names is None:
        names = single_valued(dependant)
        route._single_valued_query = names  # type: ignore[union-attr]
    repeated = [name for name in names if len(query.getlist(name)) > 1]
    if repeated:
        raise Problem(
            400,
            "invalid_request",
            "the request is not valid",
            [{"field": name, "reason": ONCE} for name in repeated],
        )
