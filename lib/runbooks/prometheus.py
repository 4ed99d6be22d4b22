"""Prometheus's HTTP API: instant and range queries as DataFrames.

The incident-response runbook's "Check metrics in Prometheus"
(`kubectl port-forward svc/prometheus 9090:9090 -n monitoring`),
read through `/api/v1/query` and `/api/v1/query_range`. A series comes back as rows of
(time, series, value): `time` in UTC, `series` the label set as PromQL writes it (`{code="503"}`, empty
for an aggregate), `value` a float (NaN where Prometheus answers NaN, e.g. 0/0 without traffic).

Errors: Prometheus not answering, or something else answering, is PrometheusUnreachable; a query it
refuses (HTTP 400/422 with its reason) is PrometheusQueryError. An empty result is an empty frame.

Behind authentication or a private CA (a reverse proxy, kube-rbac-proxy, Prometheus's own web config), `Auth`
says how to get in: `ca_file` (PEM) to verify its certificate, and credentials read from `credentials_file` (a
path, as Prometheus's and Alertmanager's own `credentials_file`/`password_file`, e.g. a mounted Secret or the
pod's service-account token), sent as a bearer token, or as the basic-auth password of `username`. The
credentials are read from the file when connecting and kept in the HTTP session only: never in a parameter, a
notebook or the evidence.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import requests

from .errors import PrometheusQueryError, PrometheusUnreachable

TIMEOUT = (5, 30)  # seconds: connect, read
COLUMNS = ["time", "series", "value"]
_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}


@dataclass(frozen=True)
class Auth:
    """How to reach a Prometheus behind authentication or a private CA; empty fields: not used."""

    ca_file: str = ""  # PEM file of the CA that signed its certificate
    username: str = ""  # with credentials_file: basic auth; without a username the credentials are a bearer token
    credentials_file: str = ""  # file holding the bearer token, or the password of `username`


@dataclass(frozen=True)
class Prometheus:
    url: str  # base URL, e.g. http://127.0.0.1:9090 (no /api/v1)
    session: requests.Session = field(default_factory=requests.Session, repr=False, compare=False)
    verify: bool | str = (
        True  # a CA file, else the system's (per request: REQUESTS_CA_BUNDLE would override a session's)
    )


def connect(url: str, auth: Auth | None = None) -> Prometheus:
    """A Prometheus at `url` that answers its API (`/api/v1/status/buildinfo`), or PrometheusUnreachable saying why."""
    if not re.match(r"https?://[^/\s]+", url or ""):
        raise PrometheusUnreachable(f"not a Prometheus URL: {url!r} (expected http://host:port)")
    if re.match(r"https?://[^/\s]*@", url):
        raise PrometheusUnreachable(
            "the Prometheus URL carries credentials: give them in prometheus_credentials_file (and prometheus_username)"
        )
    auth = auth or Auth()
    if auth.ca_file and not Path(auth.ca_file).is_file():
        raise PrometheusUnreachable(f"prometheus CA file {auth.ca_file!r} does not exist")
    prometheus = Prometheus(url.rstrip("/"), _session(auth), auth.ca_file or True)
    _get(prometheus, "status/buildinfo", {})
    return prometheus


def query(prometheus: Prometheus, promql: str, at: dt.datetime | None = None) -> pd.DataFrame:
    """The instant query `promql` at `at` (default: Prometheus's now)."""
    params: dict[str, str | float] = {"query": promql}
    if at is not None:
        params["time"] = at.timestamp()
    return _frame(_get(prometheus, "query", params, promql))


def query_range(
    prometheus: Prometheus, promql: str, start: dt.datetime, end: dt.datetime, step: dt.timedelta
) -> pd.DataFrame:
    """The range query `promql` from `start` to `end` every `step`."""
    params = {"query": promql, "start": start.timestamp(), "end": end.timestamp(), "step": step.total_seconds()}
    return _frame(_get(prometheus, "query_range", params, promql))


def shifted_range(
    prometheus: Prometheus, promql: str, start: dt.datetime, end: dt.datetime, step: dt.timedelta, offset: dt.timedelta
) -> pd.DataFrame:
    """The range query over [start - offset, end - offset], its times moved forward by `offset`: the same
    window `offset` earlier (a baseline), laid over the current one. Works for any query, unlike
    PromQL's `offset` modifier, which each selector needs of its own."""
    frame = query_range(prometheus, promql, start - offset, end - offset, step)
    frame["time"] = frame["time"] + offset
    return frame


def against_baseline(
    prometheus: Prometheus,
    queries: dict[str, str],
    start: dt.datetime,
    end: dt.datetime,
    step: dt.timedelta,
    offset: dt.timedelta,
) -> pd.DataFrame:
    """Each query (name -> PromQL) over [start, end] every `step`, and the same window `offset` earlier laid over
    it: one row per time (index, UTC), a column per name and one per `baseline_<name>`. A query giving several
    series counts by its worst (highest) series at each time; a time no query answered for is left out."""
    frames = {}
    for name, promql in queries.items():
        frames[name] = query_range(prometheus, promql, start, end, step)
        frames[f"baseline_{name}"] = shifted_range(prometheus, promql, start, end, step, offset)
    columns = [*queries, *(f"baseline_{name}" for name in queries)]
    series = pd.DataFrame({name: frame.groupby("time")["value"].max() for name, frame in frames.items()})
    series = series.reindex(columns=columns).astype(float)
    series.index.name = "time"
    return series


def duration(text: str) -> dt.timedelta:
    """A Prometheus duration (`1w`, `1d`, `90m`, `1h30m`) as a timedelta, or ValueError."""
    parts = _DURATION.findall(text or "")
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a Prometheus duration: {text!r} (e.g. 1w, 1d, 24h, 90m)")
    return dt.timedelta(seconds=sum(int(n) * _UNITS[u] for n, u in parts))


def _session(auth: Auth) -> requests.Session:
    session = requests.Session()
    if auth.credentials_file:
        try:
            secret = Path(auth.credentials_file).read_text().strip()
        except OSError as e:
            raise PrometheusUnreachable(
                f"cannot read prometheus credentials file {auth.credentials_file!r}: {e.strerror}"
            ) from None
        if auth.username:
            session.auth = (auth.username, secret)
        else:
            session.headers["Authorization"] = f"Bearer {secret}"
    elif auth.username:
        raise PrometheusUnreachable("a prometheus username needs a credentials file holding its password")
    return session


def _get(prometheus: Prometheus, endpoint: str, params: dict, promql: str | None = None) -> dict:
    url = f"{prometheus.url}/api/v1/{endpoint}"
    try:
        response = prometheus.session.get(url, params=params, timeout=TIMEOUT, verify=prometheus.verify)
    except requests.RequestException as e:
        raise PrometheusUnreachable(f"Prometheus at {prometheus.url} does not answer: {_reason(e)}") from None
    if response.status_code in (401, 403):
        raise PrometheusUnreachable(
            f"Prometheus at {prometheus.url} answered HTTP {response.status_code}: not allowed in "
            "(set prometheus_credentials_file, and prometheus_username for basic auth)"
        )
    try:
        body = response.json()
    except ValueError:
        raise PrometheusUnreachable(
            f"{url} answered HTTP {response.status_code}, not Prometheus's API "
            f"(no JSON): is {prometheus.url} Prometheus?"
        ) from None
    if not isinstance(body, dict) or body.get("status") not in ("success", "error"):
        raise PrometheusUnreachable(
            f"{url} answered JSON that is not Prometheus's API: is {prometheus.url} Prometheus?"
        )
    if body["status"] != "success":
        reason = f"{body.get('errorType', 'error')}: {body.get('error', 'no reason given')}"
        if response.status_code in (400, 422) and promql is not None:
            raise PrometheusQueryError(f"Prometheus refused the query {promql!r}: {reason}")
        raise PrometheusUnreachable(f"Prometheus at {prometheus.url} answered HTTP {response.status_code}: {reason}")
    return body["data"]


def _frame(data: dict) -> pd.DataFrame:
    kind, result = data["resultType"], data["result"]
    if kind == "matrix":
        rows = [(t, _labels(s["metric"]), v) for s in result for t, v in s["values"]]
    elif kind == "vector":
        rows = [(s["value"][0], _labels(s["metric"]), s["value"][1]) for s in result]
    elif kind == "scalar":
        rows = [(result[0], "", result[1])]
    else:
        raise PrometheusQueryError(f"the query gives a {kind}, not numbers")
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame["time"] = pd.to_datetime(frame["time"].astype(float), unit="s", utc=True)
    frame["value"] = frame["value"].astype(float)  # Prometheus writes "NaN", "+Inf" as strings: float() reads them
    return frame


def _labels(metric: dict) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(metric.items())) + "}" if metric else ""


def _reason(error: Exception) -> str:
    if isinstance(error, requests.exceptions.SSLError):
        return "TLS verification failed (a private CA? set prometheus_ca_file): " + " ".join(str(error).split())[:200]
    if isinstance(error, requests.Timeout):
        return f"no answer within {TIMEOUT[1]} s"
    if isinstance(error, requests.ConnectionError):
        return "connection refused or host unreachable: " + " ".join(str(error).split())[:200]
    return " ".join(str(error).split())[:300]
