"""Gateway access-log lines: the HTTP status, the upstream (as named and as the address connected to), and
whether the line says error. Used by every runbook that counts the gateway's responses.

Formats, by `log_format`:
- "ours": `key=value` text (`status=502 upstream=auth-service`, `status: 502`, but not `upstream_status=...`)
  or a JSON object per line (`status`, `upstream`);
- "ingress-nginx": its default `upstreaminfo` format, `... "GET /p HTTP/1.1" 502 150 "-" "ua" 512 0.003
  [ns-svc-8080] [] 10.244.2.17:8080 0 0.002 502 <req_id>`: the status bare after the request, the upstream as
  `<namespace>-<service>-<port>`, the address(es) it tried (the last one answered);
- "envoy": Envoy's default format and Istio's, `[time] "GET /p HTTP/1.1" 503 UF ... "10.244.2.17:8080"
  outbound|8080||svc.ns.svc.cluster.local ...`, and Istio's JSON (`response_code`, `upstream_cluster`,
  `upstream_host`); a response code 0 (no response sent) is no status;
- "traefik": its Common Log Format, `... "GET /p HTTP/1.1" 502 21 "-" "ua" 7 "router@kubernetes"
  "http://10.244.2.17:8080" 3ms` (a router's name, not the service's: only the address tells the upstream), and
  its JSON (`DownstreamStatus`, `ServiceName`, `ServiceAddr`/`ServiceURL`);
- "auto" (the default): each of those in turn; the first that finds a status wins;
- anything else: a regular expression with a named group `status`, and optionally `upstream` and `address`.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass

FORMATS = ("auto", "ours", "ingress-nginx", "envoy", "traefik")
ERROR = re.compile(
    r"\berror\b", re.IGNORECASE
)  # the incident-response runbook's grep -E "(error|5[0-9]{2})", as a word

STATUS = re.compile(r"(?<![\w.])status\s*[=:]\s*\"?(\d{3})\b")
UPSTREAM = re.compile(r"(?<![\w.])upstream\s*[=:]\s*\"?([^\s\",}]+)")
_CLF = r'^\S+ \S+ \S+ \[[^\]]*\] "[^"]*" (?P<status>\d{3}) '
INGRESS_NGINX = re.compile(
    _CLF + r'\S+ "[^"]*" "[^"]*" \S+ \S+ \[(?P<upstream>[^\]]*)\] \[[^\]]*\] (?P<address>[^\s,]+(?:, [^\s,]+)*) '
)
# Traefik's text names the router (not the service) and the server URL: the address is what tells the upstream.
TRAEFIK = re.compile(_CLF + r'\S+ "[^"]*" "[^"]*" \d+ "(?P<router>[^"]*)" "(?P<address>[^"]*)" \d+ms')
ENVOY = re.compile(r'^\[[^\]]+\] "[^"]*" (?P<status>\d{1,3}) ')
ENVOY_CLUSTER = re.compile(r"\b(?:outbound|inbound)\|\d*\|[^|\s]*\|(?P<upstream>\S+)")
ENVOY_HOST = re.compile(r'"(?P<address>\d{1,3}(?:\.\d{1,3}){3}:\d+|\[[0-9a-fA-F:]+\]:\d+)"')
JSON_KEYS = {  # format -> (status keys, upstream name keys, address keys)
    "ours": (("status",), ("upstream",), ()),
    "ingress-nginx": (("status",), ("proxy_upstream_name",), ("upstream_addr",)),
    "envoy": (("response_code",), ("upstream_cluster",), ("upstream_host",)),
    "traefik": (("DownstreamStatus",), ("ServiceName",), ("ServiceAddr", "ServiceURL")),
}


@dataclass(frozen=True)
class LogLine:
    status: int | None
    upstream: str | None  # as the gateway names it
    error: bool
    address: str | None = None  # host:port the gateway connected to, when logged


def check_format(log_format: str) -> None:
    """One of FORMATS, or a regex with a named group `status`; ValueError saying which otherwise."""
    _parser(log_format)


def parse_line(text: str, log_format: str = "auto") -> LogLine:
    """Status, upstream, address and error flag of one log line in `log_format` (see the module docstring)."""
    found, upstream, address = _parser(log_format)(text)
    status = _status(found)
    return LogLine(status, _plain(upstream), bool(ERROR.search(text)), _address(address))


def upstream_service(upstream: str | None, namespace: str = "") -> str | None:
    """The Service a logged upstream name points to: `auth-service`, `auth-service:8080`,
    `http://auth-service.ns.svc:8080`, Envoy's `outbound|8080||auth-service.ns.svc.cluster.local`,
    ingress-nginx's `ns-auth-service-8080` and Traefik's `ns-auth-service-8080@kubernetes` (their namespace
    prefix is known only given `namespace`)."""
    if not upstream:
        return None
    text = upstream.strip()
    if "|" in text:  # Envoy cluster: direction|port|subset|host
        text = text.split("|")[-1]
    text = re.sub(r"^[a-z]+://", "", text).split("/")[0].split("@")[0]
    text = re.sub(r":\d+$", "", text)
    text = re.sub(r"^upstream-", "", text)  # as ingress-nginx's documentation writes the name
    if "." in text:
        return text.split(".")[0] or None
    if namespace and text.startswith(f"{namespace}-"):  # <namespace>-<service>-<port>
        text = text[len(namespace) + 1 :].rsplit("-", 1)[0]
    return text or None


Parser = Callable[[str], tuple[object, object, object]]


@functools.lru_cache(maxsize=16)
def _parser(log_format: str) -> Parser:
    if log_format == "auto":
        return _auto
    if log_format in FORMATS:
        return functools.partial(_one, log_format)
    if not log_format:
        raise ValueError(f"log_format is empty: one of {', '.join(FORMATS)} or a regex")
    try:
        pattern = re.compile(log_format)
    except re.error as e:
        raise ValueError(f"log_format {log_format!r}: one of {', '.join(FORMATS)} or a regex ({e})") from None
    if "status" not in pattern.groupindex:
        raise ValueError(f"log_format {log_format!r}: a regex needs a named group (?P<status>...)")
    return functools.partial(_custom, pattern)


def _auto(text: str) -> tuple[object, object, object]:
    record = _json_object(text)
    order = ("ours", "envoy", "traefik", "ingress-nginx") if record else ("ingress-nginx", "traefik", "envoy", "ours")
    for name in order:
        found = _fields(name, text, record)
        if found[0] not in (None, "", "-"):
            return found
    return None, _fields("ours", text, record)[1], None


def _one(name: str, text: str) -> tuple[object, object, object]:
    return _fields(name, text, _json_object(text))


def _fields(name: str, text: str, record: dict | None) -> tuple[object, object, object]:
    if record is not None:
        statuses, upstreams, addresses = JSON_KEYS[name]
        return _first(record, statuses), _first(record, upstreams), _first(record, addresses)
    if name == "ours":
        status, upstream = STATUS.search(text), UPSTREAM.search(text)
        return status.group(1) if status else None, upstream.group(1) if upstream else None, None
    if name == "envoy":
        match = ENVOY.search(text)
        if not match:
            return None, None, None
        cluster, host = ENVOY_CLUSTER.search(text, match.end()), ENVOY_HOST.search(text, match.end())
        return match["status"], cluster["upstream"] if cluster else None, host["address"] if host else None
    match = (INGRESS_NGINX if name == "ingress-nginx" else TRAEFIK).search(text)
    if not match:
        return None, None, None
    return match["status"], match.groupdict().get("upstream"), match["address"]


def _custom(pattern: re.Pattern, text: str) -> tuple[object, object, object]:
    match = pattern.search(text)
    if not match:
        return None, None, None
    groups = match.groupdict()
    return groups.get("status"), groups.get("upstream"), groups.get("address")


def _status(value: object) -> int | None:
    """An HTTP status, None for anything else (Envoy's 0: no response was sent)."""
    try:
        status = int(str(value))
    except ValueError:
        return None
    return status if 100 <= status <= 599 else None


def _first(record: dict, keys: tuple[str, ...]) -> object:
    return next((record[k] for k in keys if record.get(k) not in (None, "", "-")), None)


def _plain(value: object) -> str | None:
    text = str(value).strip() if value is not None else ""
    return text if text and text not in ("-", "[]") else None


def _address(value: object) -> str | None:
    """The last address tried (ingress-nginx lists retries as `a:80, b:80`), without a URL's scheme or path."""
    text = _plain(value)
    if text is None:
        return None
    last = re.split(r"\s*[,]\s*|\s+:\s+", text)[-1]
    return re.sub(r"^[a-z]+://", "", last).split("/")[0] or None


def _json_object(text: str) -> dict | None:
    stripped = text.strip()
    if not stripped.startswith("{"):
        return None
    try:
        value = json.loads(stripped)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
