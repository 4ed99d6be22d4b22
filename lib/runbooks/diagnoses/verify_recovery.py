"""Phase 4 of the incident-response runbook, "Confirm Fix": are error rate and latency back to normal, and do they stay?

Runbook section: Incident Response Process → Phase 4: Resolution → 1. Confirm Fix ("Verify error rates returning
to normal; Verify functionality restored; Monitor for 15-30 minutes"), and the texts of 2. Close Incident (the
Slack Resolution Message and Status Page - Resolved), drafted when the fix holds.

Watching: the last `watch_minutes` of the error-rate and latency queries (triage's defaults), read from
Prometheus. With `wait`, the notebook first waits, showing progress, until `watch_minutes` have passed since the
mitigation (the `mitigated_at` parameter, else the last runbook run of the incident that applied an action, else
the moment watching began), then reads and decides.

The decision, one finding `recovery` whose `data.status` is:
- `recovered`: every reading of the watched window is below the lowest severity thresholds (severity.RULES'
  P3: error rate 1 %, latency 1.5x normal), the same ones triage declares an incident from: nothing measured
  would still rate as an incident.
- `not-recovered`: a reading of the window is at or above one of them; the finding names the last such reading
  and whether the latest reading is already below (recovering, not yet stable).
- `unknown`: no metrics (no `prometheus_url`, Prometheus not answering, or no reading in the window).
Latency is judged against normal latency: triage's (its baseline median) when the incident has one, else the
median of the same queries `baseline_offset` earlier. Without either, latency is not judged and the finding says so.
The queries' own rate window (e.g. `[5m]`) keeps errors from before the fix in the first minutes after it: watch
for longer than that window.

Incident context: the evidence of the incident folder the run writes to (`runbook run --incident INC`), or
`incident_dir`: the incident's start (for the chart over the incident window), the mitigation time, the severity
and the actions applied (for the drafts). By hand in Jupyter, outside an incident folder, there is none.
The finding records the error rate and latency per minute over the incident window (`series`), from which
`runbook report` draws its Impact chart and figures. Nothing is changed and nothing is posted.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .. import communication, escape, prometheus, severity, units
from ..errors import PrometheusUnreachable, UsageError
from ..evidence import Action, Finding
from ..incident import SERIES_COLUMNS, Incident, load, message_fields, percent

MAX_WATCH_MINUTES = 120.0
POLL_SECONDS = 30.0  # how often the wait looks at the metrics and shows progress
MAX_WINDOW = dt.timedelta(hours=24)  # the incident window read for the chart, at most
MAX_POINTS = 720  # readings per range query, at most
STATUSES = ("recovered", "not-recovered", "unknown")
FINDING_SEVERITY = {"recovered": "info", "not-recovered": "critical", "unknown": "warning"}
ERROR_THRESHOLD = severity.lowest_threshold("error_rate")  # 1 %: P3
LATENCY_THRESHOLD = severity.lowest_threshold("latency_ratio")  # 1.5x normal: P3


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def check_parameters(watch_minutes: float, baseline_offset: str, mitigated_at: str) -> None:
    """Fail at once, in one line, on a parameter that cannot work."""
    if not 0 < watch_minutes <= MAX_WATCH_MINUTES:
        raise ValueError(f"watch_minutes must be more than 0 and at most {MAX_WATCH_MINUTES:g}, got {watch_minutes}")
    prometheus.duration(baseline_offset)
    if mitigated_at:
        _parse_time(mitigated_at, "mitigated_at")


# --- step 1: the incident's context


@dataclass(frozen=True)
class Context:
    folder: Path
    incident: Incident | None  # None outside an incident folder
    mitigated_at: dt.datetime | None
    mitigated_basis: str

    @property
    def start(self) -> dt.datetime | None:
        return self.incident.start if self.incident else None

    def table(self) -> pd.DataFrame:
        incident = self.incident
        rows = [
            ("incident", incident.id if incident else None, str(self.folder)),
            ("severity", incident.severity if incident else None, "triage" if incident and incident.severity else ""),
            ("started", incident.start if incident else None, incident.start_basis if incident else ""),
            ("mitigated", self.mitigated_at, self.mitigated_basis),
            ("actions applied", "; ".join(incident.actions_taken()) if incident else None, ""),
        ]
        return pd.DataFrame(rows, columns=["what", "value", "from"])


def context(incident_dir: str, mitigated_at: str) -> Context:
    """The incident whose evidence is in `incident_dir` (empty: the run's own folder, the working directory), when
    there is any, and when it was mitigated (`mitigated_at` given, else the last run that applied an action)."""
    folder = Path(incident_dir or ".").resolve()
    try:
        incident: Incident | None = load(folder.parent, folder.name)
    except UsageError:
        incident = None
    if mitigated_at:
        return Context(folder, incident, _parse_time(mitigated_at, "mitigated_at"), "mitigated_at parameter")
    if incident and incident.mitigated_at:
        return Context(folder, incident, incident.mitigated_at, "the last runbook run that applied an action")
    return Context(folder, incident, None, "no action applied in the incident's evidence")


# --- step 2: watching


@dataclass(frozen=True)
class Watch:
    start: dt.datetime  # the window the decision reads
    end: dt.datetime
    waited_seconds: float
    since: str  # what the window counts from: "the last watch_minutes, up to now", "from the mitigation at ..."

    @property
    def minutes(self) -> float:
        return (self.end - self.start).total_seconds() / 60

    def _repr_markdown_(self) -> str:
        waited = f"; waited {self.waited_seconds:.0f} s" if self.waited_seconds else ""
        return f"*Watched {self.minutes:g} min ({self.since}): {_utc(self.start)} to {_utc(self.end)}{waited}.*"


def watch(
    prometheus_url: str,
    error_rate_query: str,
    watch_minutes: float,
    ctx: Context,
    wait: bool,
    show: Callable[[str], None] = print,
    clock: Callable[[], dt.datetime] = now,
) -> Watch:
    """The window to decide on: the last `watch_minutes`. With `wait`, first wait until `watch_minutes` have passed
    since the mitigation (or since now, when none is known), showing the error rate every POLL_SECONDS."""
    length = dt.timedelta(minutes=watch_minutes)
    began = clock()
    if not wait:
        return Watch(began - length, began, 0.0, "the last watch_minutes, up to now")
    since, basis = (ctx.mitigated_at, "the mitigation") if ctx.mitigated_at else (began, "the start of watching")
    until = since + length
    while (left := (until - clock()).total_seconds()) > 0:
        elapsed = (clock() - since).total_seconds() / 60
        latest = _latest(prometheus_url, error_rate_query)
        show(f"watching since {_utc(since)} ({basis}): {elapsed:.1f} of {watch_minutes:g} min; {latest}")
        time.sleep(min(POLL_SECONDS, left))
    end = clock()
    show(f"watched {watch_minutes:g} min since {_utc(since)} ({basis}): deciding")
    return Watch(end - length, end, (end - began).total_seconds(), f"from {basis} at {_utc(since)}")


def _latest(prometheus_url: str, error_rate_query: str) -> str:
    """`error rate now 0.21 %`, or why it could not be read: progress, never a failure."""
    try:
        frame = prometheus.query(prometheus.connect(prometheus_url), error_rate_query)
    except PrometheusUnreachable as e:
        return f"error rate not read: {e}"
    values = frame["value"].dropna()
    return f"error rate now {units.percent(values.max(), 2)}" if not values.empty else "no error-rate reading yet"


# --- step 3: the metrics over the incident window


@dataclass(frozen=True)
class Metrics:
    series: pd.DataFrame  # index: time (UTC); SERIES_COLUMNS, from the incident's start (or the window's) to now
    window: Watch
    normal_latency: float | None
    normal_basis: str
    unavailable: str | None = None  # why nothing was read

    @property
    def watched(self) -> pd.DataFrame:
        """The readings of the watched window."""
        index = self.series.index
        return self.series[(index >= self.window.start) & (index <= self.window.end)]


def read(
    prometheus_url: str,
    error_rate_query: str,
    latency_query: str,
    baseline_offset: str,
    ctx: Context,
    window: Watch,
) -> Metrics:
    """Both queries from the incident's start (at most MAX_WINDOW back; without a start, from the window's) to the
    window's end, every minute (coarser when that is more than MAX_POINTS minutes, finer when the window is short),
    ending on the window's end, and the same span `baseline_offset` earlier."""
    offset = prometheus.duration(baseline_offset)
    start = min(window.start, max(ctx.start or window.start, window.end - MAX_WINDOW))
    span = window.end - start
    step = max(
        dt.timedelta(seconds=15), min(dt.timedelta(minutes=1), (window.end - window.start) / 4), span / MAX_POINTS
    )
    step = dt.timedelta(seconds=round(step.total_seconds()))
    start = window.end - math.ceil(span / step) * step  # a reading falls on the window's end, however short
    triage_normal = ctx.incident.normal_latency if ctx.incident and ctx.incident.triage else None
    if not prometheus_url:
        return Metrics(_empty(), window, triage_normal, "", "no prometheus_url given")
    queries = {"error_rate": error_rate_query, "latency_seconds": latency_query}
    try:
        prom = prometheus.connect(prometheus_url)
        series = prometheus.against_baseline(prom, queries, start, window.end, step, offset)[SERIES_COLUMNS]
    except PrometheusUnreachable as e:
        return Metrics(_empty(), window, triage_normal, "", str(e))
    if triage_normal:
        return Metrics(series, window, triage_normal, "triage's normal latency (its baseline's median)")
    baseline = series["baseline_latency_seconds"].dropna()
    normal = float(baseline.median()) if not baseline.empty and baseline.median() > 0 else None
    return Metrics(series, window, normal, f"median latency {baseline_offset} earlier" if normal else "")


def _empty() -> pd.DataFrame:
    return pd.DataFrame(columns=SERIES_COLUMNS, index=pd.DatetimeIndex([], tz="UTC", name="time"), dtype=float)


# --- step 4: the decision


@dataclass(frozen=True)
class Recovery:
    status: str  # one of STATUSES
    summary: str
    data: dict

    def finding(self) -> Finding:
        return Finding("recovery", self.summary, FINDING_SEVERITY[self.status], self.data)

    def table(self) -> pd.DataFrame:
        d = self.data
        rows = [
            ("status", d["status"], ""),
            ("watched", f"{_utc(d['watched_from'])} to {_utc(d['watched_to'])}", d["watched_since"]),
            ("readings", d["readings"], ""),
            (
                "error rate (max / last)",
                f"{_pct(d['max_error_rate'])} / {_pct(d['last_error_rate'])}",
                f"below {units.percent(ERROR_THRESHOLD, 0)}",
            ),
            ("baseline error rate", _pct(d["baseline_error_rate"]), d["baseline_offset"] + " earlier"),
            (
                "latency (max / last)",
                f"{_sec(d['max_latency_seconds'])} / {_sec(d['last_latency_seconds'])}",
                f"below {LATENCY_THRESHOLD:g}x normal "
                f"({_sec(d['normal_latency_seconds'])}: {d['normal_latency_basis'] or 'unknown'})",
            ),
            (
                "last reading over a threshold",
                d["last_over"] and f"{_utc(d['last_over']['time'])}: {d['last_over']['what']}",
                "",
            ),
        ]
        return pd.DataFrame(rows, columns=["measure", "value", "against"])


def decide(metrics: Metrics, ctx: Context, baseline_offset: str) -> Recovery:
    """recovered, not-recovered or unknown (see the module docstring), with what it was decided on."""
    window, watched, normal = metrics.window, metrics.watched, metrics.normal_latency
    errors = watched["error_rate"].dropna()
    latency = watched["latency_seconds"].dropna()
    over = _over(metrics.series, normal)
    over_in_window = over[(over.index >= window.start) & (over.index <= window.end)]
    last_over = None if over.empty else {"time": over.index[-1], "what": over.iloc[-1]}
    max_error, max_latency = _max(errors), _max(latency)
    ratio = max_latency / normal if normal and max_latency is not None else None
    data: dict[str, Any] = {
        "status": None,
        "watched_from": window.start,
        "watched_to": window.end,
        "watch_minutes": round(window.minutes, 2),
        "watched_since": window.since,
        "waited_seconds": round(window.waited_seconds, 1),
        "readings": len(errors),
        "max_error_rate": max_error,
        "last_error_rate": float(errors.iloc[-1]) if not errors.empty else None,
        "baseline_error_rate": _median(watched["baseline_error_rate"]),
        "baseline_offset": baseline_offset,
        "max_latency_seconds": max_latency,
        "last_latency_seconds": float(latency.iloc[-1]) if not latency.empty else None,
        "normal_latency_seconds": normal,
        "normal_latency_basis": metrics.normal_basis,
        "max_latency_ratio": ratio,
        "thresholds": {"error_rate": ERROR_THRESHOLD, "latency_ratio": LATENCY_THRESHOLD},
        "latency_judged": normal is not None,
        "last_over": last_over,
        "mitigated_at": ctx.mitigated_at,
        "incident": ctx.incident.id if ctx.incident else None,
        "reason": metrics.unavailable,
        "series": [{"time": t, **row} for t, row in metrics.series.iterrows()],
    }
    span = f"the last {window.minutes:g} min ({_utc(window.start)} to {_utc(window.end)})"
    if errors.empty:
        why = metrics.unavailable or f"Prometheus has no error-rate reading in {span}"
        return Recovery(
            "unknown", f"Recovery unknown: no metrics ({why})", {**data, "status": "unknown", "reason": why}
        )
    latency_note = "" if normal else "; latency not judged (no normal latency known)"
    if over_in_window.empty:
        summary = (
            f"Recovered: over {span}, error rate at most {_pct(max_error)} (below {units.percent(ERROR_THRESHOLD, 0)})"
            + (f", latency at most {ratio:.2f}x normal (below {LATENCY_THRESHOLD:g}x)" if ratio is not None else "")
            + latency_note
        )
        return Recovery("recovered", summary, {**data, "status": "recovered"})
    latest_ok = over_in_window.index[-1] < watched.index[-1]
    summary = (
        f"Not recovered: in {span} the {over_in_window.iloc[-1]} at {_utc(over_in_window.index[-1])}"
        + (
            "; the latest reading is below the thresholds: recovering, not yet stable for the whole window"
            if latest_ok
            else "; still at the latest reading"
        )
        + latency_note
    )
    return Recovery("not-recovered", summary, {**data, "status": "not-recovered", "recovering": bool(latest_ok)})


def _over(series: pd.DataFrame, normal: float | None) -> pd.Series:
    """For each reading at or above a P3 threshold, what was over: `error rate 12.00 % >= 1 %`."""
    found = {}
    for at, row in series.iterrows():
        reasons = []
        if pd.notna(row["error_rate"]) and round(row["error_rate"], 9) >= ERROR_THRESHOLD:
            reasons.append(f"error rate {units.percent(row['error_rate'], 2)} >= {units.percent(ERROR_THRESHOLD, 0)}")
        if (
            normal
            and pd.notna(row["latency_seconds"])
            and round(row["latency_seconds"] / normal, 9) >= LATENCY_THRESHOLD
        ):
            reasons.append(f"latency {row['latency_seconds'] / normal:.2f}x normal >= {LATENCY_THRESHOLD:g}x")
        if reasons:
            found[at] = " and ".join(reasons)
    return pd.Series(found, dtype=object)


# --- resolution: the drafts


@dataclass(frozen=True)
class Drafts:
    slack_resolved: str | None  # the runbook's "Slack Resolution Message"; None unless recovered
    status_resolved: str | None  # "Status Page - Resolved"; None unless recovered, and for P4 (internal only)
    status: str

    @property
    def actions(self) -> list[Action]:
        if self.slack_resolved is None:
            return []
        return [Action("resolve-messages", "dry-run", "#incidents / status page", "drafted (not posted)")]

    def _repr_markdown_(self) -> str:
        if self.slack_resolved is None:
            return f"*No resolution messages: recovery is {escape.markdown(self.status)}. Mitigate, then watch again.*"
        page = (
            escape.code_block(self.status_resolved)
            if self.status_resolved
            else "*No status page: P4 is internal only.*"
        )
        return (
            "### Slack #incidents — INCIDENT RESOLVED (draft, not posted)\n\n"
            f"{escape.code_block(self.slack_resolved)}\n\n### Status page — Resolved (draft, not posted)\n\n{page}\n"
        )

    def _repr_html_(self) -> str:
        if self.slack_resolved is None:
            return (
                f"<p><em>No resolution messages: recovery is {escape.html(self.status)}. "
                "Mitigate, then watch again.</em></p>"
            )
        page = (
            escape.html_block(self.status_resolved)
            if self.status_resolved
            else "<p><em>No status page: P4 is internal only.</em></p>"
        )
        return (
            "<h3>Slack #incidents — INCIDENT RESOLVED (draft, not posted)</h3>\n"
            f"{escape.html_block(self.slack_resolved)}\n<h3>Status page — Resolved (draft, not posted)</h3>\n{page}\n"
        )


def drafts(recovery: Recovery, ctx: Context, at: dt.datetime) -> Drafts:
    """When recovered: the Slack Resolution Message and the Status Page - Resolved text, filled from the incident's
    evidence where there is one; what it does not know stays a placeholder."""
    if recovery.status != "recovered":
        return Drafts(None, None, recovery.status)
    if ctx.incident is None:
        slack = communication.render("slack-resolved", error_rate=None)
        return Drafts(slack, communication.render("status-resolved", resolved=units.when(at)), recovery.status)
    incident = ctx.incident
    duration = units.duration(at - incident.start)
    fields = {**message_fields(incident, "slack-resolved", at), "duration": duration}
    fields["error_rate"] = fields["error_rate"] or percent(recovery.data["max_error_rate"])
    slack = communication.render("slack-resolved", **fields)
    page = None
    if incident.severity != "P4":
        page = communication.render("status-resolved", duration=duration, resolved=units.when(at))
    return Drafts(slack, page, recovery.status)


# --- helpers


def _parse_time(text: str, name: str) -> dt.datetime:
    try:
        at = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{name} must be an ISO 8601 time such as 2024-11-26T14:05:00Z, got {text!r}") from None
    return (at if at.tzinfo else at.replace(tzinfo=dt.timezone.utc)).astimezone(dt.timezone.utc)


def _max(values: pd.Series) -> float | None:
    return float(values.max()) if not values.empty else None


def _median(values: pd.Series) -> float | None:
    values = values.dropna()
    return float(values.median()) if not values.empty else None


def _pct(value: float | None) -> str:
    return f"{units.percent(value, 2)}" if value is not None else "n/a"


def _sec(value: float | None) -> str:
    return f"{value:.3f} s" if value is not None else "n/a"


def _utc(when) -> str:
    return units.when(pd.Timestamp(when).to_pydatetime(), seconds=True)
