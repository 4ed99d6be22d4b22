"""Times as Alertmanager and Kubernetes write them parse alike on every Python the package supports (3.10 too,
whose datetime.fromisoformat takes only 3 or 6 digits of a second's fraction)."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from pathlib import Path

import pytest

from runbooks.evidence import parse_time
from serving import LIB

UTC = dt.timezone.utc
CASES = {
    "2026-11-26T10:00:00.123456789Z": dt.datetime(2026, 11, 26, 10, 0, 0, 123456, UTC),  # Alertmanager's startsAt
    "2026-11-26T10:00:00.5Z": dt.datetime(2026, 11, 26, 10, 0, 0, 500000, UTC),  # trailing zeros trimmed
    "2026-11-26T10:00:00Z": dt.datetime(2026, 11, 26, 10, 0, 0, tzinfo=UTC),
    "2026-11-26T05:00:00.1234567-05:00": dt.datetime(2026, 11, 26, 10, 0, 0, 123456, UTC),
    "2026-11-26T10:00:00": dt.datetime(2026, 11, 26, 10, 0, 0, tzinfo=UTC),  # no offset: UTC
    "2026-11-26T15:30:00+0530": dt.datetime(2026, 11, 26, 10, 0, 0, tzinfo=UTC),
}


@pytest.mark.parametrize("text,expected", CASES.items())
def test_times_with_any_fraction_parse(text, expected):
    assert parse_time(text) == expected


@pytest.mark.parametrize("text", ["", "yesterday", "2026-11-26T10:00:00.Z", "2026-13-01T00:00:00Z"])
def test_what_is_no_time_is_a_value_error(text):
    with pytest.raises(ValueError):
        parse_time(text)


def python_3_10() -> str | None:
    """A Python 3.10 of this machine: on the PATH, or one pyenv installed."""
    candidates = [shutil.which("python3.10"), *map(str, Path.home().glob(".pyenv/versions/3.10*/bin/python3.10"))]
    for python in filter(None, candidates):
        if subprocess.run([python, "--version"], capture_output=True).returncode == 0:
            return python
    return None


def test_on_python_3_10_as_well():
    python = python_3_10()
    if python is None:
        pytest.skip("no python3.10 on this machine")
    code = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "from runbooks.evidence import parse_time\n"
        "import datetime as dt\n"
        "for text in sys.argv[2:]: print(parse_time(text).astimezone(dt.timezone.utc).isoformat())"
    )
    result = subprocess.run([python, "-c", code, LIB, *CASES], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [when.isoformat() for when in CASES.values()]
