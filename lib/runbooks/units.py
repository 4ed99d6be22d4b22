"""Values as a person reads them: memory `247Mi`, shares `96.5 %`, durations `5 min`, times with their zone.

The one place that formats for people; the diagnoses, the notebooks' tables, the terminal and the messages use it.
Machine fields (evidence data, file names, API requests) stay as they are: UTC, bytes, fractions, seconds.

The zone of every time a person reads is one setting, the environment variable RUNBOOK_TIMEZONE (an IANA name:
`America/New_York`, `Europe/Berlin`, `UTC`); unset, the incident-response runbook's own zone, US Eastern (its
status-page templates and handoff say ET). Every time shown carries its zone's abbreviation (`09:05 EST`).
"""

from __future__ import annotations

import datetime as dt
import math
import os
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import UsageError

ZONE_VARIABLE = "RUNBOOK_TIMEZONE"
DEFAULT_ZONE = "America/New_York"
_BINARY = (("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10))


def zone() -> ZoneInfo:
    """The zone of every time a person reads (RUNBOOK_TIMEZONE); a usage error for a name no zone has."""
    return _zone(os.environ.get(ZONE_VARIABLE) or DEFAULT_ZONE)


@lru_cache(maxsize=8)
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(f"{ZONE_VARIABLE}={name!r} names no time zone (e.g. America/New_York, UTC)") from None


def local(when: dt.datetime) -> dt.datetime:
    """`when` (aware; naive is taken as UTC) in the reading zone."""
    return (when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)).astimezone(zone())


def when(at: dt.datetime | None, seconds: bool = False) -> str:
    """`2026-11-30 09:05 EST` (with `:07` seconds if asked); `none` for no time."""
    if at is None or missing(at):
        return "none"
    return f"{local(at):%Y-%m-%d %H:%M{':%S' if seconds else ''} %Z}"


def clock(at: dt.datetime | None, seconds: bool = False) -> str:
    """`09:05 EST`: a time of today's incident, without its date."""
    if at is None or missing(at):
        return "none"
    return f"{local(at):%H:%M{':%S' if seconds else ''} %Z}"


def day(at: dt.datetime) -> str:
    """`2026-11-30` in the reading zone."""
    return f"{local(at):%Y-%m-%d}"


def zone_name(at: dt.datetime | None = None) -> str:
    """The reading zone's abbreviation at `at` (now if None): `EST`, `CET`, `UTC`."""
    return local(at or dt.datetime.now(dt.timezone.utc)).strftime("%Z")


def duration(span: dt.timedelta | float | None) -> str:
    """`42 s`, `7 min`, `2 h 05 min`, `3 d 4 h` (a float: seconds); negative spans as their length."""
    if span is None or missing(span):
        return "none"
    seconds = abs(int(span.total_seconds() if isinstance(span, dt.timedelta) else span))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    return f"{seconds // 86400} d {seconds % 86400 // 3600} h"


def due(left: dt.timedelta | None) -> str:
    """A deadline from now: `in 12 min`, `5 min overdue`, `now`."""
    if left is None or missing(left):
        return "none"
    if abs(left.total_seconds()) < 30:
        return "now"
    return f"in {duration(left)}" if left > dt.timedelta(0) else f"{duration(left)} overdue"


def memory(size: float | None) -> str:
    """Bytes as Kubernetes writes memory: `512 B`, `12Ki`, `247Mi`, `1.0Gi`."""
    if size is None or missing(size):
        return "none"
    for suffix, unit in _BINARY:
        if abs(size) >= unit:
            value = size / unit
            return f"{value:.1f}{suffix}" if unit >= 2**30 else f"{value:.0f}{suffix}"
    return f"{size:.0f} B"


def percent(fraction: float | None, digits: int = 1) -> str:
    """A fraction as a share: 0.965 -> `96.5 %`."""
    if fraction is None or missing(fraction):
        return "none"
    return f"{fraction * 100:.{digits}f} %"


def count(n: int, noun: str, plural: str | None = None) -> str:
    """`1 restart`, `3 restarts`, `0 sessions`, `2 replies` (with `plural`)."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def number(value: float | None) -> str:
    """An integer as an integer (`137`, never `137.0`), other numbers with up to 3 significant decimals."""
    if value is None or missing(value):
        return "none"
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.3g}" if abs(value) < 1 else f"{value:.1f}"


def missing(value: object) -> bool:
    """NaN, NaT and pandas' NA: what a table leaves empty."""
    try:
        return value is None or bool(value != value) or (isinstance(value, float) and math.isnan(value))
    except (TypeError, ValueError):  # pandas.NA compares to NA
        return True
