"""A background loop asked to stop stops, even when a library swallowed the request.

A task cancelled while psycopg runs a query has the server cancel it, and psycopg then raises
QueryCanceled, an Exception: a loop that keeps going past its failures (`except Exception`, a
purge tried again next time) takes that for one and sleeps on, and whatever waits for the task
to end (an app's shutdown, an event loop closing) waits out the sleep.
"""

from __future__ import annotations

import asyncio


def stop_if_cancelled() -> None:
    """Raise CancelledError if the running task has been asked to stop."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
