"""The committed generated code is exactly what the protos produce, and the protos lint clean."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "libs" / "contracts" / "src" / "pos"


def _files(root: Path) -> set[str]:
    return {
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_generated_code_matches_the_protos(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gen_protos.py"), str(tmp_path)],
        check=True,
        capture_output=True,
    )
    fresh = tmp_path / "pos"
    assert _files(fresh) == _files(COMMITTED), "run `make gen` and commit the result"
    differing = [
        name
        for name in sorted(_files(fresh))
        if not filecmp.cmp(fresh / name, COMMITTED / name, shallow=False)
    ]
    assert differing == [], f"generated code drifted from the protos: {differing}; run `make gen`"


def test_protos_pass_buf_lint_and_format() -> None:
    buf = Path(sys.executable).parent / "buf"
    lint = subprocess.run([str(buf), "lint"], cwd=ROOT / "proto", capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    fmt = subprocess.run(
        [str(buf), "format", "--diff", "--exit-code"],
        cwd=ROOT / "proto",
        capture_output=True,
        text=True,
    )
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr
