"""Keep secrets out of everything a run writes: notebooks, HTML, evidence, logs."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

from psycopg import ProgrammingError
from psycopg.conninfo import conninfo_to_dict, make_conninfo

REDACTED = "[REDACTED]"
# Fallback for strings libpq cannot parse: `password=...` pairs and `scheme://user:password@` URLs.
_LOOSE = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)|(://[^:/@\s]*:)([^@\s]*)(@)", re.IGNORECASE)


def split_password(dsn: str) -> tuple[str, str | None]:
    """The connection string without its password, and that password (None when it had none)."""
    if not dsn:
        return dsn, None
    try:
        parts = conninfo_to_dict(dsn)
    except ProgrammingError:
        match = _LOOSE.search(dsn)
        return (dsn, None) if not match else (redact_dsn(dsn), (match.group(2) or match.group(4)).strip("'"))
    password = parts.pop("password", None)
    return (dsn, None) if password is None else (make_conninfo(**parts), str(password))  # type: ignore[arg-type]


def redact_dsn(dsn: str) -> str:
    """A connection string fit to print: the password, if any, replaced."""
    return _LOOSE.sub(lambda m: f"{m.group(1)}{REDACTED}" if m.group(1) else f"{m.group(3)}{REDACTED}@", dsn)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with every occurrence of each secret replaced."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


# Credentials that log lines carry: JWTs, passwords in URLs, bearer and basic credentials,
# password/secret/token assignments, and JSON keys naming them.
_IN_LINES = [
    (re.compile(r"eyJ[\w-]{5,}\.[\w-]{5,}\.[\w-]*"), REDACTED),
    (re.compile(r"(://[^:/@\s]*:)[^@\s]*(@)"), rf"\g<1>{REDACTED}\g<2>"),
    (re.compile(r"(?i)(bearer\s+)[^\s\"',]+"), rf"\g<1>{REDACTED}"),
    (re.compile(r"(?i)(\bbasic\s+)[A-Za-z0-9+/=]{8,}"), rf"\g<1>{REDACTED}"),
    (
        re.compile(r'(?i)("[\w.-]*(?:password|passwd|secret|token|api[_-]?key|authorization)[\w.-]*"\s*:\s*")[^"]*"'),
        rf'\g<1>{REDACTED}"',
    ),
    (re.compile(r"(?i)((?:password|passwd|secret|token|api[_-]?key)\s*[=:]\s*\"?)[^\s\",]+"), rf"\g<1>{REDACTED}"),
]


def redact_line(line: str) -> str:
    """A log line fit to quote in evidence: tokens and credential assignments replaced."""
    for pattern, replacement in _IN_LINES:
        line = pattern.sub(replacement, line)
    return line


def fingerprint(value: bytes) -> str:
    """`sha256:` and the first 12 hex digits of the value's SHA-256: secrets compared without being shown.

    Safe for random, high-entropy keys (JWT signing keys, tokens); a short password could be guessed from it.
    """
    return "sha256:" + hashlib.sha256(value).hexdigest()[:12]
