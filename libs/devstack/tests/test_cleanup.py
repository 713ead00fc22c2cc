"""Tests leave nothing running: a server a test starts is stopped when the test ends."""

from __future__ import annotations

import os
import textwrap

import pytest

from pos_devstack.testing import Infra

INNER = """
import os
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def shared(infra):
    return infra.new_nats()


def test_uses_a_module_server(shared):
    assert shared.process.poll() is None


def test_uses_it_again(shared):
    # A wider-scoped fixture's server lives as long as its fixture, not one test.
    assert shared.process.poll() is None


def test_starts_a_nats_server_then_fails(infra):
    server = infra.new_nats()
    Path(os.environ["PID_FILE"]).write_text(str(server.process.pid))
    assert False, "this test fails on purpose"


def test_after_it(infra):
    pid = int(Path(os.environ["PID_FILE"]).read_text())
    # Already gone when the next test starts, not only at the end of the session.
    Path(os.environ["PID_FILE"] + ".next").write_text(str(_alive(pid)))


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_server_started_by_a_failing_test_is_stopped(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, infra: Infra
) -> None:
    pytester.makepyfile(test_inner=textwrap.dedent(INNER))
    pid_file = pytester.path / "nats.pid"
    # The inner run uses this run's PostgreSQL and NATS, so it starts only the server under test.
    monkeypatch.setenv("OMNITILL_TEST_DATABASE_URL", infra.admin_url)
    monkeypatch.setenv("OMNITILL_TEST_NATS_URL", infra.nats_url)
    monkeypatch.setenv("PID_FILE", str(pid_file))
    result = pytester.runpytest_subprocess("-p", "pos_devstack.testing", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, failed=1)
    assert (pytester.path / "nats.pid.next").read_text() == "False"
    assert not alive(int(pid_file.read_text()))
