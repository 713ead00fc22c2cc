"""uvicorn, stopped the way every Omnitill process stops."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

import uvicorn

from pos_kit.tls import ReloadingServerContext

# uvicorn ticks every 0.1 s; look at the certificate files about once a minute.
_RELOAD_EVERY_TICKS = 600


class GracefulServer(uvicorn.Server):
    """uvicorn re-raises SIGTERM after its graceful shutdown, so the process would end "killed
    by signal"; a drained, clean stop exits 0, like the gRPC services.

    With `tls`, it serves HTTPS with that context and loads the certificate again when
    cert-manager's renewal replaces the mounted files."""

    def __init__(self, config: uvicorn.Config, tls: ReloadingServerContext | None = None) -> None:
        super().__init__(config)
        self.tls = tls
        if tls is not None:
            config.load()
            # uvicorn would build a context from file names once; this one can be reloaded.
            config.ssl = tls.context

    async def on_tick(self, counter: int) -> bool:
        if self.tls is not None and counter % _RELOAD_EVERY_TICKS == 0:
            self.tls.reload_if_changed()
        return await super().on_tick(counter)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        def stop(signum: int, frame: object) -> None:
            self.should_exit = True

        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
