"""Secrets: what counts as one, how a run gets its own without any file holding them, and how they are kept out
of everything written (notebooks, HTML, evidence, the queue, logs, error messages).

A secret is
- the password of a PostgreSQL connection string (a `dsn`), as libpq reads it (key=value or URI);
- in any string of any parameter (lists and mappings too), the password of a URL (`scheme://user:PASSWORD@`)
  and the value of a URL query parameter named like a credential (`?api_key=...`);
- the tool's own: the webhook token, the seal key, the queue's connection string and its password, the object
  store's secret key and session token, and the PGPASSWORD of the environment (ENVIRONMENT);
- in text quoted from outside (log lines, error messages): JWTs, bearer and basic credentials, and values given
  to a name like a credential (`password=`, `secret_key=`, `aws_secret_access_key=`, `DB_PASS=`, `"apiToken":`).

One path: `take(parameters)` returns the parameters as a notebook may show them and the run's `Secrets`: their
values, scrubbed from what the run writes in every form they may take there (`scrub`, over the parsed structure,
never over JSON text), and the environment that hands them back to the run's kernel alone (libpq's PGPASSWORD;
RUNBOOK_CREDENTIALS, which `reveal` reads where an access layer opens a URL). No secret goes on the command
line of a process the tool starts. A secret shorter than MIN_LENGTH cannot be scrubbed without mangling the
text around it (`a` in every word): it is refused. So is a connection string libpq would read otherwise than
it looks (a raw `/`, `@`, `?` or `#` in a URI's password, a space in a password): put the password in
~/.pgpass or PGPASSWORD instead.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, quote_plus, unquote

from psycopg import ProgrammingError
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from .errors import UsageError

REDACTED = "[REDACTED]"
MIN_LENGTH = 8
CREDENTIALS_VARIABLE = "RUNBOOK_CREDENTIALS"  # the kernel's: redacted parameter text -> the text with its secrets
WEBHOOK_TOKEN = "RUNBOOK_WEBHOOK_TOKEN"  # what Alertmanager must send to `runbook serve`
SEAL_KEY = "RUNBOOK_SEAL_KEY"  # the key of the evidence seals (runbooks.chain)
QUEUE = "RUNBOOK_QUEUE"  # the PostgreSQL queue `runbook serve` replicas share (`--queue`), password and all
STORE_SECRETS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")  # the object store's (runbooks.storage)
# The tool's own secrets, which no kernel gets (PGPASSWORD excepted: libpq in the kernel reads it).
TOOL_SECRETS = (WEBHOOK_TOKEN, SEAL_KEY, QUEUE, *STORE_SECRETS)
ENVIRONMENT = (*TOOL_SECRETS, "PGPASSWORD")
# Output data that is base64 of a picture or a document: no secret can be read there as text.
BINARY_DATA = ("image/png", "image/jpeg", "image/gif", "application/pdf")

# A name like a credential's: these words anywhere in it, or pass / pwd / key as a word of their own.
CREDENTIAL_NAME = (
    r"[\w.-]*(?:passw|passphrase|secret|token|credential|api[_-]?key|access[_-]?key|private[_-]?key"
    r"|(?<![a-z])(?:pass|pwd|key)(?![a-z]))[\w.-]*"
)
_CREDENTIAL_NAME = re.compile(CREDENTIAL_NAME, re.IGNORECASE)
# A URL: scheme, then user-info up to the `@` that ends it (a user-info may hold no `/`, `?`, `#` or `@`).
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>]*")
_URL_PASSWORD = re.compile(r"(?P<head>^[A-Za-z][A-Za-z0-9+.-]*://[^:/?#@]*:)(?P<password>[^/?#@]*)(?=@)")
_QUERY_CREDENTIAL = re.compile(rf"(?P<head>[?&]{CREDENTIAL_NAME}=)(?P<value>[^&#]*)", re.IGNORECASE)
# A postgresql:// URI as RFC 3986 has it: user-info of its own characters, no `@` past the authority.
_PG_URI = re.compile(r"postgres(?:ql)?://(?:[A-Za-z0-9._~!$&'()*+,;=:%-]*@)?[^@/?#]*(?:/[^@?#]*)?(?:\?[^@#]*)?")

_IN_LINES = [
    (re.compile(r"eyJ[\w-]{5,}\.[\w-]{5,}\.[\w-]*"), REDACTED),
    (re.compile(r"(://[^:/@\s]*:)[^@\s]*(@)"), rf"\g<1>{REDACTED}\g<2>"),
    (re.compile(r"(?i)(bearer\s+)[^\s\"',]+"), rf"\g<1>{REDACTED}"),
    (re.compile(r"(?i)(\bbasic\s+)[A-Za-z0-9+/=]{8,}"), rf"\g<1>{REDACTED}"),
    (re.compile(rf'(?i)("{CREDENTIAL_NAME}"\s*:\s*")(?:[^"\\]|\\.)*"'), rf'\g<1>{REDACTED}"'),
    (re.compile(rf"(?i)(\b{CREDENTIAL_NAME}\s*[=:]\s*\"?)[^\s\",]+"), rf"\g<1>{REDACTED}"),
]
_LOOSE_DSN = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)|(://[^:/@\s]*:)([^@\s]*)(@)", re.IGNORECASE)


@dataclass(frozen=True)
class Secrets:
    """A run's secrets: their values, and what its kernel's environment gets to use them."""

    values: tuple[str, ...] = ()
    environment: dict[str, str] = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        return f"Secrets({len(self.values)} values)"

    def forms(self) -> list[str]:
        """Each value as given and as it may appear in written text: URL-, JSON-, HTML- or repr-escaped; with
        the tool's own secrets from this process's environment."""
        values = {*self.values, *environment_secrets()}
        forms = set()
        for v in values:
            forms |= {v, quote(v, safe=""), quote_plus(v), json.dumps(v)[1:-1], html.escape(v), repr(v)[1:-1]}
        return sorted(forms, key=len, reverse=True)


def environment_secrets() -> set[str]:
    """The tool's own secrets in this process's environment: each variable's value, and the password of the queue's
    connection string."""
    found = {v for name in ENVIRONMENT if len(v := os.environ.get(name, "")) >= MIN_LENGTH}
    queue = os.environ.get(QUEUE, "")
    password = _URL_PASSWORD.search(queue) if queue else None
    if password and len(password.group("password")) >= MIN_LENGTH:
        found |= {password.group("password"), unquote(password.group("password"))}
    return found


def take(parameters: Mapping[str, Any]) -> tuple[dict[str, Any], Secrets]:
    """The parameters with every secret taken out, and the secrets (UsageError for a dsn that cannot be read
    safely or a secret too short to scrub). `dsn` loses its password (libpq gets it as PGPASSWORD); a URL
    keeps its shape with REDACTED in place of each secret (the kernel maps it back: `reveal`)."""
    clean: dict[str, Any] = {}
    values: list[str] = []
    credentials: dict[str, str] = {}
    password = None
    for name, value in parameters.items():
        if name == "dsn" and isinstance(value, str):
            value, password = split_password(value)
            values += [password] if password else []
        clean[name] = _take_from_urls(value, name, values, credentials)
    for value in values:
        if len(value) < MIN_LENGTH:
            raise UsageError(
                f"a secret in the parameters is {len(value)} characters long: too short to be scrubbed from what "
                f"the run writes without mangling the text around it (at least {MIN_LENGTH}); use a longer one"
            )
    environment = {**({"PGPASSWORD": password} if password else {})}
    if credentials:
        environment[CREDENTIALS_VARIABLE] = json.dumps(credentials)
    return clean, Secrets(tuple(dict.fromkeys(values)), environment)


def reveal(text: str) -> str:
    """In a kernel started by a run: the parameter text (e.g. a URL) with the secrets `take` took out of it put
    back; any other text as it is."""
    known = json.loads(os.environ.get(CREDENTIALS_VARIABLE) or "{}")
    return known.get(text, text)


def kernel_environment(environment: Mapping[str, str]) -> dict[str, str]:
    """`environment` without the tool's own secrets (and no run's credentials): what a kernel starts with."""
    return {k: v for k, v in environment.items() if k not in (*TOOL_SECRETS, CREDENTIALS_VARIABLE)}


def split_password(dsn: str) -> tuple[str, str | None]:
    """The connection string without its password, and that password (None when it had none). UsageError when
    libpq cannot read it, or would read a postgresql:// URI otherwise than its RFC 3986 structure says: the
    password could then not be told from the rest, and the string is never written."""
    if not dsn:
        return dsn, None
    try:
        parts = conninfo_to_dict(dsn)
    except ProgrammingError:
        raise UsageError(_UNREADABLE) from None
    if re.match(r"postgres(?:ql)?://", dsn) and (
        not _PG_URI.fullmatch(dsn) or (_URL_PASSWORD.search(dsn) and "password=" in dsn.partition("?")[2])
    ):
        raise UsageError(_UNREADABLE)
    password = parts.pop("password", None)
    return (dsn, None) if password is None else (make_conninfo(**parts), str(password))  # type: ignore[arg-type]


_UNREADABLE = (
    "parameter 'dsn': this connection string cannot be read safely, so its password could not be taken out (in a "
    "postgresql:// URI, '/', '?', '#', '@' and spaces in the password must be percent-encoded, e.g. %2F; a "
    "key=value password with spaces must be quoted). It was not written anywhere. Better: leave the password out "
    "of dsn; libpq reads it from PGPASSWORD or ~/.pgpass"
)


def redact_dsn(dsn: str) -> str:
    """A connection string fit to print: the password, if any, replaced."""
    return _LOOSE_DSN.sub(lambda m: f"{m.group(1)}{REDACTED}" if m.group(1) else f"{m.group(3)}{REDACTED}@", dsn)


def scrub(value: Any, secrets: Secrets | Iterable[str], skip: tuple[str, ...] = BINARY_DATA) -> Any:
    """`value` (a str, or JSON-like data: every key and string in it) with each form of each secret replaced; the
    values under a key in `skip` are left as they are."""
    forms = secrets.forms() if isinstance(secrets, Secrets) else sorted({s for s in secrets if s}, key=len)[::-1]
    return _scrub(value, forms, skip) if forms else value


def text(message: str, secrets: Secrets | Iterable[str] = ()) -> str:
    """A message fit to print or store (an error, a reason): the secrets and anything shaped like a credential
    replaced."""
    return redact_line(scrub(message, secrets if isinstance(secrets, Secrets) else Secrets(tuple(secrets))))


def is_credential_name(name: str) -> bool:
    """Whether `name` (an environment variable, a key) names a credential."""
    return bool(_CREDENTIAL_NAME.fullmatch(name))


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


def _take_from_urls(value: Any, where: str, values: list[str], credentials: dict[str, str]) -> Any:
    """`value` with the secrets of each URL in its strings replaced; those strings recorded in `credentials`."""
    if isinstance(value, dict):
        return {k: _take_from_urls(v, f"{where}.{k}", values, credentials) for k, v in value.items()}
    if isinstance(value, list):
        return [_take_from_urls(v, f"{where}[{i}]", values, credentials) for i, v in enumerate(value)]
    if not isinstance(value, str) or "://" not in value:
        return value
    found: list[str] = []

    def url(match: re.Match) -> str:
        text = match.group()
        if "@" in text.partition("?")[0].split("://", 1)[1].partition("/")[2]:
            raise UsageError(
                f"parameter {where!r}: a URL with '@' in its path: if that is a password, percent-encode its "
                "'/', '?', '#' and '@' (e.g. %2F)"
            )
        text = _URL_PASSWORD.sub(lambda m: m.group("head") + _taken(m.group("password"), found), text, count=1)
        return _QUERY_CREDENTIAL.sub(lambda m: m.group("head") + _taken(m.group("value"), found), text)

    redacted = _URL.sub(url, value)
    if found:
        values += found
        credentials[redacted] = value
    return redacted


def _taken(secret: str, found: list[str]) -> str:
    if secret and secret != REDACTED:
        found.append(secret)
        return REDACTED
    return secret


def _scrub(value: Any, forms: list[str], skip: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        for form in forms:
            value = value.replace(form, REDACTED)
        return value
    if isinstance(value, Mapping):
        return {_scrub(k, forms, skip): (v if k in skip else _scrub(v, forms, skip)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub(v, forms, skip) for v in value]
    return value
