"""runbooks.logmatch: the same lines as Python's re matching each line's text alone, however it gets there."""

from __future__ import annotations

import re

import pytest

from runbooks.logmatch import LineMatcher

STAMP = "2026-11-30T03:14:07.409Z"


def block(*texts: str) -> bytes:
    return "\n".join(f"{STAMP} {text}" for text in texts).encode()


def matched(patterns: dict, *texts: str) -> list[tuple[str, tuple[str, ...]]]:
    return [(text.decode(), names) for _, text, names in LineMatcher(patterns).matching(block(*texts))]


def by_python(patterns: dict, *texts: str) -> list[tuple[str, tuple[str, ...]]]:
    """What matching each text alone with Python's re gives: the reference."""
    found = []
    for text in texts:
        names = tuple(
            name
            for name, spec in patterns.items()
            if all(re.search(part, text, re.IGNORECASE) for part in ((spec,) if isinstance(spec, str) else spec))
        )
        if names:
            found.append((text, names))
    return found


PATTERNS = {
    "tax lines": r"taxrates\.example",
    "tax errors": (r"taxrates\.example", r"time-?outs?\b|connection refused|status\W{0,3}5\d\d\b"),
    "refused": "connection refused",
    "at end": r"done$",
}
TEXTS = [
    'level=info url="https://api.TAXRATES.example/v2" status=200',
    'level=error url="https://api.taxrates.example/v2" error="connect: connection refused"',
    "level=error Connection Refused by the credit bureau",
    "status",  # with the next line, `status\W{0,3}5\d\d` matches across the newline: on no line
    "503 from nobody",
    "level=info job done",
    "level=info done twice: done",
    "nothing to see",
    "",
    "ünïcode taxrates.example TIMEOUT",
]


def test_every_line_matches_as_its_text_alone_would_with_python_re():
    assert matched(PATTERNS, *TEXTS) == by_python(PATTERNS, *TEXTS)


@pytest.mark.parametrize(
    "regex",
    [
        r"^level=error",  # anchored: line by line, against the text after the timestamp
        r"(?<!credit )bureau|refused",  # a lookbehind: RE2 refuses it, Python's re takes it
        r"^(?!.*taxrates).*?refused",  # a negative lookahead at the start, as jwt-validation-failures has
        r"don{,1}e",  # {,n}: 0 to n in Python, literal in RE2
    ],
)
def test_what_re2_cannot_search_whole_blocks_for_still_matches_like_python(regex):
    patterns = {**PATTERNS, "special": regex}
    assert matched(patterns, *TEXTS) == by_python(patterns, *TEXTS)
    assert any("special" in names for _, names in matched(patterns, *TEXTS))


def test_a_match_in_the_timestamp_only_is_no_match():
    assert matched({"digits": r"03:14|\.409"}, "level=info nothing") == []


def test_each_line_comes_with_its_timestamp_and_lines_without_one_with_none():
    lines = LineMatcher({"x": "refused"}).matching(f"{STAMP} refused\nrefused\n{STAMP} ok".encode())
    assert lines == [(STAMP.encode(), b"refused", ("x",)), (b"", b"refused", ("x",))]


def test_a_bad_regex_fails_with_pythons_message():
    with pytest.raises(re.error):
        LineMatcher({"bad": "(unclosed"})
