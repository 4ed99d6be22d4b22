"""HTTP health probes: one GET of a URL, its status and latency, or why there was no answer."""

from __future__ import annotations

import base64
import http.client
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from . import __version__, redact

USER_AGENT = f"runbooks/{__version__} (health probe)"


@dataclass(frozen=True)
class Probe:
    url: str
    status: int | None  # HTTP status; None when no answer
    latency_ms: float | None  # until the answer's headers, or until the failure
    failure: str | None = None  # dns | refused | timeout | tls | other; None when the URL answered
    error: str | None = None

    @property
    def result(self) -> str:
        if not self.url:
            return "not probed"
        return "failing" if self.status is None or self.status >= 500 else "up"


def probe(url: str, timeout: float) -> Probe:
    """One GET of `url`: status and latency, or why there was no answer."""
    if not url:
        return Probe(url, None, None)
    address, headers = _with_credentials(redact.reveal(url))  # the Probe keeps `url`, as shown
    request = urllib.request.Request(
        address, method="GET", headers={**headers, "User-Agent": USER_AGENT, "Accept": "*/*"}
    )
    started = time.perf_counter()
    status, failure, error = None, None, None
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status = response.status
    except urllib.error.HTTPError as e:  # 4xx/5xx: the dependency answered
        status = e.code
        e.close()
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
        failure, error = _failure(e, timeout)
    latency = round((time.perf_counter() - started) * 1000, 1)
    return Probe(url, status, latency, failure, error)


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
