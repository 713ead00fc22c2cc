"""Every tool under tools/ at least imports: the benchmarks, soaks and profilers are not run by
CI, so a helper renamed in one of them would otherwise break the others unseen."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parent.parent / "tools"


@pytest.mark.parametrize("name", sorted(p.stem for p in TOOLS.glob("*.py")))
def test_the_tool_imports(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The tools import each other by module name, as `python tools/x.py` lets them.
    monkeypatch.syspath_prepend(str(TOOLS))
    module = importlib.import_module(name)
    assert module.__file__ is not None and Path(module.__file__).parent == TOOLS
    sys.modules.pop(name, None)
