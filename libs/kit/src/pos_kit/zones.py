"""IANA time zones: the names a location may keep, checked alike at the gateway, in the
inventory service and in the payment service's settlement report. The zone data is the
`tzdata` package's where the system has none (a dependency of the kit)."""

from __future__ import annotations

import functools
import zoneinfo

# Files of the tz database that open as zones but name none: the host's own zone (whatever
# it is set to), the rules template, the "zone not set" placeholder, and the `posix/` and
# `right/` copies of every zone (the latter counting leap seconds, which no clock here does).
_NOT_ZONES = frozenset({"localtime", "posixrules", "Factory"})
_NOT_ZONE_TREES = ("posix/", "right/")


@functools.cache
def iana_zones() -> frozenset[str]:
    return frozenset(
        name
        for name in zoneinfo.available_timezones()
        if name not in _NOT_ZONES and not name.startswith(_NOT_ZONE_TREES)
    )


def is_iana_zone(name: str) -> bool:
    """True for a zone of the IANA database (`Europe/Paris`, `UTC`), as the API promises;
    anything `ZoneInfo` merely opens (`localtime`, `right/UTC`) is not one."""
    return name in iana_zones()
