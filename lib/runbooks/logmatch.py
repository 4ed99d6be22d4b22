"""Which of many patterns each log line matches, at the speed of the bytes: a gigabyte of logs in seconds.

A pattern is a regex, or a tuple of regexes that must all match the same line (a line about a dependency AND
carrying an error signature), case-insensitive, matched against a line's text: what follows its timestamp (lines
come as the API server sends them with timestamps=true, `<time> <text>`). Python's re backtracks through each
alternative at each character (~1 µs per character on the alternation of error signatures); RE2 runs all the
regexes at once as an automaton, a few ns per byte. So a block of lines is searched as a whole for any regex; only
the lines found that way are then matched one by one, by an RE2 set that says which regexes each one matches.

A regex RE2 refuses (lookarounds, backreferences; `{,n}`, which RE2 reads literally) or anchored at a line's start
(`^`, which the whole-block search would look for before the timestamp) is matched line by line, by Python's re
for the former: correct, slower.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

import re2

RE2_MEMORY = 64 << 20  # the automata's budget
UNANCHORED = re2._Anchor.UNANCHORED


class LineMatcher:
    """Patterns (name -> regex or tuple of regexes) compiled once, for many blocks of log lines."""

    def __init__(self, patterns: Mapping[str, str | tuple[str, ...]]):
        regexes: list[str] = []
        needs: list[tuple[str, frozenset[int]]] = []
        for name, spec in patterns.items():
            parts = (spec,) if isinstance(spec, str) else tuple(spec)
            for part in parts:
                re.compile(part)  # a bad regex fails here, with Python's message
                if part not in regexes:
                    regexes.append(part)
            needs.append((name, frozenset(regexes.index(part) for part in parts)))
        self._needs = needs
        self._names: dict[tuple[int, ...], tuple[str, ...]] = {}
        options = re2.Options()
        options.case_sensitive = False
        options.max_mem = RE2_MEMORY
        options.log_errors = False
        self._set = re2.Set.SearchSet(options)
        self._set_ids: list[int] = []
        self._python: list[tuple[int, re.Pattern]] = []
        for index, regex in enumerate(regexes):
            try:
                if re.search(r"\{,", regex):
                    raise re2.error("{,n}: RE2 reads it literally, Python as {0,n}")
                self._set.Add(regex)
                self._set_ids.append(index)
            except re2.error:
                self._python.append((index, re.compile(regex, re.IGNORECASE)))
        if self._set_ids:
            self._set.Compile()
        self._remap = self._set_ids != list(range(len(self._set_ids)))  # the set's numbers are not the regexes'

        self._locate: Callable | None = (
            None  # the whole-block search, when every regex is in the set and none is anchored
        )
        if not self._python and self._set_ids and not any(_anchored(regex) for regex in regexes):
            # RE2's own Match (what re2.search wraps, less a generator and a match object per line: half the time)
            self._locate = re2.compile("(?m)" + "|".join(f"(?:{regex})" for regex in regexes), options)._regexp.Match

    def matching(self, block: bytes) -> list[tuple[bytes, bytes, tuple[str, ...]]]:
        """(timestamp, text, names of the patterns it matches) for each line of `block` (lines joined by newlines)
        whose text matches at least one pattern."""
        lines = block.split(b"\n") if self._locate is None else _located(block, self._locate)
        cuts = [line.find(b" ") + 1 for line in lines]
        texts = [line[cut:] for line, cut in zip(lines, cuts, strict=True)]
        found = list(map(self._found, texts))
        return [
            (line[: max(cut - 1, 0)], text, names)
            for line, cut, text, ids in zip(lines, cuts, texts, found, strict=True)
            if ids and (names := self._names_of(ids))
        ]

    def _found(self, text: bytes) -> tuple[int, ...]:
        """The indexes of the regexes `text` matches."""
        found = tuple(self._set.Match(text) or ()) if self._set_ids else ()
        if self._remap:
            found = tuple(self._set_ids[k] for k in found)
        if self._python:
            decoded = text.decode("utf-8", "replace")
            found += tuple(k for k, regex in self._python if regex.search(decoded))
        return found

    def _names_of(self, found: tuple[int, ...]) -> tuple[str, ...]:
        names = self._names.get(found)
        if names is None:
            names = self._names[found] = tuple(name for name, need in self._needs if need <= set(found))
        return names


def _located(block: bytes, locate: Callable) -> list[bytes]:
    """The lines of `block` on which `locate` (an RE2 Match) finds a match (maybe only in the timestamp)."""
    found = []
    pos, end = 0, len(block)
    while pos < end:
        (at, _), *_ = locate(UNANCHORED, block, pos, end)
        if at < 0:
            break
        stop = block.find(b"\n", at)
        stop = end if stop < 0 else stop
        found.append(block[block.rfind(b"\n", 0, at) + 1 : stop])
        pos = stop + 1
    return found


def _anchored(regex: str) -> bool:
    """Whether `regex` may anchor at the start or end of a text (`^`, `\\A`, `\\z`), escapes and classes aside."""
    bare = re.sub(r"\[\^?\]?[^\]]*\]", "", re.sub(r"\\[^Az]", "", regex))
    return "^" in bare or "\\A" in bare or "\\z" in bare
