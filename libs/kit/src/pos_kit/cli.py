"""`python -m pos_<service> serve|migrate`: the same entry point in every service."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Coroutine
from typing import Any


def run(
    prog: str,
    serve: Callable[[], Coroutine[Any, Any, None]],
    migrate: Callable[[], None],
) -> None:
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("command", choices=["serve", "migrate"])
    args = parser.parse_args()
    if args.command == "migrate":
        migrate()
        return
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is an optional speed-up
        asyncio.run(serve())
    else:
        uvloop.run(serve())
