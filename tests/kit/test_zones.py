"""The kit's time zones: the IANA database it checks names against is a dependency of its
own, so a machine without the system's zone data knows every zone all the same."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement

from pos_kit.zones import is_iana_zone

KIT = Path(__file__).resolve().parents[2] / "libs" / "kit" / "pyproject.toml"


def test_the_kit_declares_the_zone_data_it_reads() -> None:
    """`pos_kit.zones` reads zoneinfo, which finds no zone where the system has no zone data
    unless the `tzdata` package is installed: the kit declares it, not only the services that
    happen to."""
    declared = tomllib.loads(KIT.read_text())["project"]["dependencies"]
    assert "tzdata" in {Requirement(d).name for d in declared}
    assert is_iana_zone("Europe/Paris") and not is_iana_zone("right/UTC")
