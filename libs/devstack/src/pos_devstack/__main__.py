"""`python -m pos_devstack up [--fresh]`: what `make up` runs."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from pos_devstack.platform import Platform, Ports, fresh
from pos_devstack.procs import Interrupted


def main() -> None:
    parser = argparse.ArgumentParser(prog="pos_devstack")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the whole platform and wait for Ctrl-C")
    up.add_argument("--fresh", action="store_true", help="delete all local data first")
    args = parser.parse_args()

    home = Path(os.environ.get("OMNITILL_HOME", ".omnitill"))
    try:
        ports = Ports.from_env(os.environ)
    except ValueError as exc:
        print(f"!! {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    if args.fresh:
        print(f"==> removing {home} (fresh start)")
        fresh(home)
    platform = Platform(home, ports, say=lambda line: print(line, flush=True))
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        # Start-up, if still under way, stops at its next step or wait (Interrupted).
        platform.stop_requested = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    print("==> starting Omnitill", flush=True)
    try:
        platform.start_infrastructure()
        platform.start_services()
        key = platform.sandbox_key()
        print(
            f"""
==> Omnitill is up
    API          {platform.gateway_url}/v1
    API docs     {platform.gateway_url}/docs
    sandbox key  {key}   (also in {home}/sandbox-key)
    logs         {home}/logs/
    try:  curl -H "Authorization: Bearer $(cat {home}/sandbox-key)" \\
            {platform.gateway_url}/v1/products

Press Ctrl-C to stop.""",
            flush=True,
        )
        while not stopping:
            for line in platform.supervise():
                print(line, flush=True)
            time.sleep(0.5)
    except Exception as exc:
        if isinstance(exc, Interrupted) or stopping:
            # Ctrl-C during start-up (a tool it ran, in our process group, may have failed of
            # the same signal first): stop what was started, as after start-up.
            print("\n==> start-up interrupted; stopping …", flush=True)
            platform.stop()
            print("==> stopped; data kept in", home, flush=True)
            raise SystemExit(130) from None
        print(f"!! {exc}", file=sys.stderr, flush=True)
        platform.stop()
        raise SystemExit(1) from None
    print("\n==> stopping …", flush=True)
    platform.stop()
    print("==> stopped; data kept in", home, flush=True)


if __name__ == "__main__":
    main()
