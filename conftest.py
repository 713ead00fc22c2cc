# Shared fixtures (real PostgreSQL and NATS) for every test folder in the repository.
import os
import signal
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

pytest_plugins = ["pos_devstack.testing", "pytester"]

# CI runs property tests derandomized: the same examples every run, so a submission never
# fails on a coin toss. A failure found on a developer's machine (random by default) becomes an
# explicit @example beside the test. No deadline in either: how long an example takes on a
# busy shared machine is not what a property test asserts (speed has its benchmarks), and
# hypothesis' 200 ms default turned a loaded run's slow example into a failure (its "input
# generation is slow" health check the same).
RELAXED = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}
settings.register_profile("ci", derandomize=True, database=None, print_blob=True, **RELAXED)
settings.register_profile("default", **RELAXED)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "default")
)

# Fixtures that start or reach a real server; a test using one (directly or through another
# fixture) is marked `server`, so `make unit` can run only the tests that need none.
SERVER_FIXTURES = frozenset({"infra", "platform"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.server)


ROOT = Path(__file__).parent
_BEFORE = pytest.StashKey[set[str] | None]()


def _untracked() -> set[str] | None:
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=all"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None  # not a git checkout (an sdist, say): nothing to compare
    return {line[3:] for line in out.splitlines() if line.startswith("??")}


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_BEFORE] = _untracked()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # A test run leaves the checkout as it found it: every file a test writes goes to a
    # temporary folder. New untracked files fail the run, named, so the test is found.
    before = session.config.stash.get(_BEFORE, None)
    after = _untracked()
    if before is None or after is None:
        return
    left = sorted(after - before)
    if left:
        print("\nthe tests left files in the checkout:\n  " + "\n  ".join(left[:20]))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


# A run stopped with SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C: pytest then tears down
# every fixture, so the servers the tests started are stopped instead of left orphaned.
signal.signal(signal.SIGTERM, _interrupt)
