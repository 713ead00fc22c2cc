"""The garbage collector and a long-running server.

A server imports hundreds of thousands of objects that live as long as the process (modules,
protobuf descriptors, SQLAlchemy's tables and compiled statements). CPython's oldest-generation
collection walks every one of them: measured under checkout load, one such pass took 80-110 ms
of CPU and up to 380 ms of wall time on a loaded machine, a pause every request and event in
flight waits out (the dispatcher's commit -> webhook p99 spikes). Freezing the heap once the
process is built moves those objects out of the collector's sight: later passes walk only what
was made since, and reference cycles among new objects are still collected.
"""

from __future__ import annotations

import gc
import os


def settle() -> None:
    """Call once start-up is done (imports, the app and its pools built). `GC_FREEZE=0`
    leaves the collector as CPython sets it (to compare)."""
    if os.environ.get("GC_FREEZE", "1") == "0":
        return
    # Collect what start-up left behind first, so garbage is not frozen for good.
    gc.collect()
    gc.freeze()
