"""No breaking change to the protos within a version: buf breaking against the base commit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()


def _base() -> str | None:
    """The merge base with main on a branch; on main itself, the previous commit."""
    try:
        branch = _git("rev-parse", "--abbrev-ref", "HEAD")
        if branch != "main":
            return _git("merge-base", "HEAD", "main")
        return _git("rev-parse", "HEAD~1")
    except subprocess.CalledProcessError:
        return None


def test_protos_have_no_breaking_change_against_the_base() -> None:
    base = _base()
    if base is None:
        pytest.skip("no base commit to compare with (a fresh repository or a shallow clone)")
    listed = subprocess.run(
        ["git", "ls-tree", "-d", base, "proto/pos"], cwd=ROOT, capture_output=True, text=True
    )
    if not listed.stdout.strip():
        pytest.skip("the base commit has no protos yet")
    buf = Path(sys.executable).parent / "buf"
    result = subprocess.run(
        [str(buf), "breaking", "proto", "--against", f".git#ref={base},subdir=proto"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
