"""HTTP health probes: one GET of a URL, its status and latency, or why there was no answer, and what it means.

A status page says how a provider is in its body, not its status: an Atlassian Statuspage `status.json`
(`/api/v2/status.json`, `summary.json`) answers 200 during an outage, with `status.indicator` none, minor, major
or critical (some pages also maintenance). A JSON answer with that field is read for it. The result:
- up: a 2xx or 3xx (a status page saying none);
- degraded: 429 Too Many Requests (the provider refuses some calls), or a status page saying minor or maintenance;
- failing: no answer, a 5xx, or a status page saying major or critical;
- unknown: 401 or 403 (the probe is not let in: that says nothing of the service's health) and other 4xx (the
  URL is wrong);
- not probed: no URL.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from . import __version__, redact

USER_AGENT = f"runbooks/{__version__} (health probe)"
BODY_LIMIT = 64 * 1024  # bytes of an answer read for a status page's indicator
INDICATORS = {"none": "up", "minor": "degraded", "maintenance": "degraded", "major": "failing", "critical": "failing"}


@dataclass(frozen=True)
class Probe:
    url: str
    status: int | None  # HTTP status; None when no answer
    latency_ms: float | None  # until the answer's headers, or until the failure
    failure: str | None = None  # dns | refused | timeout | tls | other; None when the URL answered
    error: str | None = None
    indicator: str | None = None  # a status page's status.indicator (none, minor, major, critical, maintenance)
    description: str | None = None  # and its status.description ("Major Service Outage")

    @property
    def result(self) -> str:
        """up, degraded, failing, unknown or not probed (see the module docstring)."""
        if not self.url:
            return "not probed"
        if self.status is None or self.status >= 500:
            return "failing"
        if self.status == 429:
            return "degraded"
        if self.status >= 400:
            return "unknown"
        return INDICATORS.get(self.indicator or "none", "unknown")


def probe(url: str, timeout: float) -> Probe:
    """One GET of `url`: status and latency, or why there was no answer."""
    if not url:
        return Probe(url, None, None)
    address, headers = _with_credentials(redact.reveal(url))  # the Probe keeps `url`, as shown
    request = urllib.request.Request(
        address, method="GET", headers={**headers, "User-Agent": USER_AGENT, "Accept": "*/*"}
    )
    started = time.perf_counter()
    status, failure, error, latency, page = None, None, None, None, {}
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status = response.status
            latency = round((time.perf_counter() - started) * 1000, 1)
            if "json" in (response.headers.get("Content-Type") or ""):
                page = _status_page(response.read(BODY_LIMIT))
    except urllib.error.HTTPError as e:  # 4xx/5xx: the dependency answered
        status = e.code
        e.close()
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
        failure, error = _failure(e, timeout)
    latency = latency if latency is not None else round((time.perf_counter() - started) * 1000, 1)
    return Probe(url, status, latency, failure, error, page.get("indicator"), page.get("description"))


def _status_page(body: bytes) -> dict[str, str]:
    """A Statuspage answer's status.indicator and status.description; nothing for any other body."""
    try:
        document = json.loads(body)
    except ValueError:
        return {}
    state = document.get("status") if isinstance(document, dict) else None
    if not isinstance(state, dict) or not isinstance(state.get("indicator"), str):
        return {}
    return {"indicator": state["indicator"], "description": str(state.get("description") or "")}


def _with_credentials(url: str) -> tuple[str, dict[str, str]]:
    """`url` without its user-info, and the Basic authorization header the user-info stood for (urllib sends none)."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None:
        return url, {}
    netloc = parts.netloc.rpartition("@")[2]
    user, password = (urllib.parse.unquote(p or "") for p in (parts.username, parts.password))
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc)), {"Authorization": f"Basic {token}"}


def _failure(error: Exception, timeout: float) -> tuple[str, str]:
    reason = error.reason if isinstance(error, urllib.error.URLError) else error
    text = " ".join(str(reason).split())[:300]
    if isinstance(reason, socket.gaierror):
        return "dns", f"cannot resolve host: {text}"
    if isinstance(reason, ConnectionRefusedError):
        return "refused", f"connection refused: {text}"
    if isinstance(reason, TimeoutError):
        return "timeout", f"no answer within {timeout:g} s"
    if isinstance(reason, (ssl.SSLError, ssl.CertificateError)):
        return "tls", f"TLS error: {text}"
    return "other", f"{type(reason).__name__}: {text}"
