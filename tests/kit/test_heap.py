"""A server freezes its start-up heap, so the collector's oldest pass no longer walks it."""

from __future__ import annotations

import os
import subprocess
import sys

PROBE = """
import gc, sys
import sqlalchemy, grpc  # a server's kind of start-up heap
from pos_kit import heap

class Cycle:
    pass

before = gc.get_freeze_count()
heap.settle()
frozen = gc.get_freeze_count()
# A cycle made after the freeze is still collected.
a = Cycle(); a.self = a; del a
collected = gc.collect()
print(before, frozen, collected)
"""


def _run(env: dict[str, str]) -> tuple[int, int, int]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        env={**os.environ, **env},
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    before, frozen, collected = (int(x) for x in out)
    return before, frozen, collected


def test_settle_freezes_what_start_up_built_and_later_cycles_are_still_collected() -> None:
    before, frozen, collected = _run({"GC_FREEZE": "1"})
    assert before == 0
    assert frozen > 10_000  # the imported modules' objects, out of the collector's walk
    assert collected >= 1


def test_gc_freeze_0_leaves_the_collector_as_it_was() -> None:
    before, frozen, _ = _run({"GC_FREEZE": "0"})
    assert (before, frozen) == (0, 0)
