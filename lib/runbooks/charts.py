"""Figures for the notebooks. Each returns a matplotlib Figure made without pyplot, shown as a PNG where the
notebook puts it as a cell's last expression (as matplotlib's inline backend shows one), once: no pyplot state,
nothing to close, no end-of-cell flush. Not importing pyplot (and through it the inline backend) spares every
kernel ~0.5 s of its start."""

from __future__ import annotations

from typing import Any

import matplotlib
import pandas as pd
from matplotlib.dates import DateFormatter, MinuteLocator
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from . import units

# Labels hold names from outside (applications, dependencies, series): a `$` in them is text, never mathtext.
matplotlib.rcParams["text.parse_math"] = False


def _figure(figsize: tuple[float, float], rows: int = 1, sharex: bool = False) -> tuple[Figure, Any]:
    """A new figure and its axes: one, or `rows` of them in a column."""
    fig = Figure(figsize=figsize)
    _shown_as_png()
    return fig, fig.subplots(rows, 1, sharex=sharex)


def _shown_as_png() -> None:
    """In a notebook's kernel: a Figure that ends a cell is shown as a PNG, as the inline backend would render it
    (bounding box tight). Registered at the first figure: the kernel's shell may not exist when this is imported."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:
        return
    from IPython.core.pylabtools import print_figure

    png = shell.display_formatter.formatters["image/png"]
    if Figure not in png.type_printers:
        png.for_type(Figure, lambda fig: print_figure(fig, "png", bbox_inches="tight"))


STATE_COLOURS = {
    "active": "#2b8cbe",
    "idle": "#bdbdbd",
    "idle in transaction": "#e6550d",
    "idle in transaction (aborted)": "#a63603",
}


def connections_by_application(connections: pd.DataFrame) -> Figure:
    """Stacked bars: connections per application, split by state."""
    if connections.empty:
        return _empty("Connections by application and state", "no client connections")
    table = connections.pivot_table(
        index="application", columns="state", values="connections", aggfunc="sum", fill_value=0
    )
    table = table.loc[table.sum(axis=1).sort_values().index]
    fig, ax = _figure((8, 0.5 * len(table) + 1.5))
    left = pd.Series(0, index=table.index)
    for state in table.columns:
        ax.barh(table.index, table[state], left=left, label=state, color=STATE_COLOURS.get(state))
        left += table[state]
    ax.set_xlabel("connections")
    ax.set_title("Connections by application and state")
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    return fig


def query_durations(running: pd.DataFrame) -> Figure:
    """Horizontal bars: how long each long-running query has been running."""
    if running.empty:
        return _empty("Long-running queries", "no query above the threshold")
    frame = running.assign(seconds=running["duration"].dt.total_seconds()).sort_values("seconds")
    labels = [f"pid {r.pid} · {r.application}" for r in frame.itertuples()]
    fig, ax = _figure((8, 0.4 * len(frame) + 1.5))
    ax.barh(labels, frame["seconds"], color=[STATE_COLOURS.get(s, "#756bb1") for s in frame["state"]])
    ax.set_xlabel("seconds since the query started")
    ax.set_title("Long-running queries")
    fig.tight_layout()
    return fig


def _empty(title: str, message: str) -> Figure:
    fig, ax = _figure((8, 1.5))
    ax.text(0.5, 0.5, message, ha="center", va="center")
    ax.set_title(title)
    ax.axis("off")
    return fig


def certificate_days_left(endpoints: pd.DataFrame, certificates: pd.DataFrame, warn_days: float) -> Figure:
    """Horizontal bars: days until each endpoint's and each cert-manager Certificate's notAfter."""
    rows = [
        (label, int(days))
        for label, days in zip(endpoints["endpoint"], endpoints["days_left"], strict=True)
        if pd.notna(days)
    ]
    rows += [
        (f"certificate/{name}", int(days))
        for name, days in zip(certificates["ref"], certificates["days_left"], strict=True)
        if pd.notna(days)
    ]
    title = "Days until the certificates expire"
    if not rows:
        return _empty(title, "no certificate read")
    rows.sort(key=lambda r: r[1], reverse=True)
    labels, days = zip(*rows, strict=True)
    colours = ["#de2d26" if d < 0 else "#fd8d3c" if d < warn_days else "#31a354" for d in days]
    fig, ax = _figure((8, 0.4 * len(rows) + 1.5))
    ax.barh(labels, days, color=colours)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.axvline(warn_days, color="#fd8d3c", linestyle="--", linewidth=0.8, label=f"warn_days ({warn_days:g})")
    ax.set_xlabel("days left (negative: expired)")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    return fig


REASON_COLOURS = {
    "expired": "#fdae6b",
    "bad-signature": "#de2d26",
    "not-yet-valid": "#756bb1",
    "malformed": "#969696",
    "other": "#bdbdbd",
}


def auth_failures_by_reason(reasons: pd.DataFrame) -> Figure:
    """Horizontal bars: auth-failure log lines per reason (columns reason, count)."""
    if reasons.empty or not reasons["count"].sum():
        return _empty("Auth failures by reason", "no auth failures in the logs read")
    frame = reasons.iloc[::-1]
    fig, ax = _figure((8, 0.4 * len(frame) + 1.5))
    ax.barh(frame["reason"], frame["count"], color=[REASON_COLOURS.get(r, "#756bb1") for r in frame["reason"]])
    for y, count in enumerate(frame["count"]):
        ax.text(count, y, f" {count}", va="center", fontsize="small")
    ax.set_xlabel("log lines")
    ax.set_title("Auth failures by reason")
    fig.tight_layout()
    return fig


def dependency_errors_per_minute(per_minute: pd.DataFrame) -> Figure:
    """Lines: error lines per minute about each third-party dependency (columns), over the window (index, UTC)."""
    return lines_per_minute(
        per_minute,
        f"Errors per minute by third-party dependency ({units.zone_name()})",
        "no errors about any dependency in the window",
    )


def lines_per_minute(
    per_minute: pd.DataFrame, title: str, nothing: str, ylabel: str = "error lines per minute"
) -> Figure:
    """Lines: a count per minute for each column of `per_minute` (index: minutes, UTC); `nothing` when all are 0."""
    if per_minute.empty or not per_minute.to_numpy().any():
        return _empty(title, nothing)
    fig, ax = _figure((9, 3.5))
    times = per_minute.index.tz_convert(units.zone()).tz_localize(None)  # matplotlib's date axis, reading zone
    for column in per_minute.columns:
        ax.plot(times, per_minute[column], drawstyle="steps-mid", marker=".", label=column)
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.xaxis.set_major_formatter(DateFormatter("%H:%M"))
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    return fig


def memory_of_limit(usage: pd.DataFrame, near_limit_pct: float = 90) -> Figure:
    """Horizontal bars: each container's memory usage as % of its limit; OOMKilled containers in red.

    Takes kube.usage.memory_usage(...): pod, container, memory_pct_of_limit, oomkilled.
    Containers without a limit or without usage (no metrics) are left out.
    """
    title = "Memory usage as % of the limit"
    frame = usage.dropna(subset=["memory_pct_of_limit"]).sort_values("memory_pct_of_limit")
    if frame.empty:
        return _empty(title, "no usage to show (no metrics API, or no memory limits)")
    colours = [
        "#de2d26" if r.oomkilled else "#fd8d3c" if r.memory_pct_of_limit >= near_limit_pct else "#2b8cbe"
        for r in frame.itertuples()
    ]
    labels = [f"{r.pod} / {r.container}" + (" (OOMKilled)" if r.oomkilled else "") for r in frame.itertuples()]
    fig, ax = _figure((9, 0.4 * len(frame) + 1.5))
    ax.barh(labels, frame["memory_pct_of_limit"], color=colours)
    ax.axvline(100, color="#de2d26", linewidth=1)
    ax.axvline(near_limit_pct, color="#fd8d3c", linewidth=1, linestyle="--")
    ax.set_xlim(0, max(110, float(frame["memory_pct_of_limit"].max()) + 5))
    ax.set_xlabel("memory used, % of limit (dashed: memory pressure; solid: the limit)")
    ax.set_title(title)
    fig.tight_layout()
    return fig


STATUS_COLOURS = {500: "#fdae6b", 502: "#e6550d", 503: "#a63603", 504: "#756bb1"}


def errors_over_time(per_minute: pd.DataFrame) -> Figure:
    """Stacked bars: gateway 5xx responses per minute, split by status.

    Takes diagnoses.api_gateway_high_error_rate.errors_per_minute(...): minute, status, count.
    """
    title = "Gateway 5xx responses per minute"
    if per_minute.empty:
        return _empty(title, "no 5xx in the gateway logs")
    table = per_minute.pivot_table(index="minute", columns="status", values="count", aggfunc="sum", fill_value=0)
    table = table.reindex(pd.date_range(table.index.min(), table.index.max(), freq="min"), fill_value=0)
    fig, ax = _figure((9, 3.5))
    bottom = pd.Series(0, index=table.index)
    width = 1 / 24 / 60 * 0.8  # 80% of a minute, in days
    for status in table.columns:
        ax.bar(
            table.index,
            table[status],
            bottom=bottom,
            width=width,
            align="edge",
            label=str(status),
            color=STATUS_COLOURS.get(int(status)),
        )
        bottom += table[status]
    ax.xaxis.set_major_locator(MinuteLocator(interval=max(1, len(table) // 10)))
    ax.xaxis.set_major_formatter(DateFormatter("%H:%M", tz=units.zone()))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(f"minute ({units.zone_name()})")
    ax.set_ylabel("responses")
    ax.set_title(title)
    ax.legend(title="status", loc="upper left", fontsize="small")
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig


def error_rate_and_latency(
    series: pd.DataFrame,
    normal_latency: float | None,
    incident_start=None,
    baseline_label: str = "baseline",
    title: str = "Error rate and latency, last hour, against the baseline",
    shaded: tuple | None = None,
) -> Figure:
    """Two panels over the window (UTC): error rate (%) and latency (s), each against its baseline, with the
    incident-response runbook's severity thresholds (error rate 1 % and 10 %; latency 1.5x and 3x normal) and the
    incident start; `shaded`, a (from, to) pair of times, is drawn as a grey band (e.g. the span watched).

    Takes a frame with the columns error_rate, baseline_error_rate, latency_seconds, baseline_latency_seconds
    (diagnoses.triage.read_metrics(...).series, prometheus.against_baseline, incident.Incident.series).
    """
    if series.empty or series.isna().all().all():
        return _empty(title, "no metrics (see the metrics-unavailable finding)")
    times = series.index.tz_convert(units.zone()).tz_localize(None)
    fig, (errors, latency) = _figure((9, 6), rows=2, sharex=True)
    errors.plot(times, 100 * series["error_rate"], color="#de2d26", label="error rate")
    errors.plot(times, 100 * series["baseline_error_rate"], color="#969696", linestyle="--", label=baseline_label)
    for pct, level in ((1, "P3"), (10, "P2")):
        errors.axhline(pct, color="#fd8d3c" if level == "P3" else "#e6550d", linewidth=0.8, linestyle=":")
        errors.annotate(
            f"{level} {pct} %",
            (1, pct),
            xycoords=("axes fraction", "data"),
            fontsize="x-small",
            va="bottom",
            ha="right",
        )
    errors.set_ylabel("% of requests failing")
    errors.set_ylim(0, max(11, 110 * float(series["error_rate"].max())))
    errors.legend(loc="upper left", fontsize="small")
    latency.plot(times, series["latency_seconds"], color="#2b8cbe", label="latency")
    latency.plot(times, series["baseline_latency_seconds"], color="#969696", linestyle="--", label=baseline_label)
    if normal_latency:
        for ratio, level in ((1.5, "P3"), (3, "P2")):
            latency.axhline(
                ratio * normal_latency, color="#fd8d3c" if level == "P3" else "#e6550d", linewidth=0.8, linestyle=":"
            )
            latency.annotate(
                f"{level} {ratio:g}x normal",
                (1, ratio * normal_latency),
                xycoords=("axes fraction", "data"),
                fontsize="x-small",
                va="bottom",
                ha="right",
            )
        latency.set_ylim(top=max(3.3 * normal_latency, float(series["latency_seconds"].max()) * 1.1))
    latency.set_ylabel("seconds")
    latency.set_ylim(bottom=0)
    latency.legend(loc="upper left", fontsize="small")
    if incident_start is not None:
        start = pd.Timestamp(incident_start).tz_convert(units.zone()).tz_localize(None)
        if times.min() <= start <= times.max():
            for ax in (errors, latency):
                ax.axvline(start, color="black", linewidth=0.8)
            errors.annotate(
                "incident start",
                (start, 1),
                xycoords=("data", "axes fraction"),
                fontsize="x-small",
                va="top",
                ha="right",
                rotation=90,
            )
    if shaded is not None:
        left, right = (pd.Timestamp(t).tz_convert(units.zone()).tz_localize(None) for t in shaded)
        for ax in (errors, latency):
            ax.axvspan(left, right, color="#d9d9d9", alpha=0.5, linewidth=0)
    latency.xaxis.set_major_formatter(DateFormatter("%H:%M"))
    errors.set_title(f"{title} ({units.zone_name()})")
    fig.tight_layout()
    return fig


SEVERITY_COLOURS = {"P1": "#a50f15", "P2": "#de2d26", "P3": "#fd8d3c", "P4": "#fdd0a2", "unclassified": "#bdbdbd"}


def incidents_per_day(per_day: pd.DataFrame) -> Figure:
    """Stacked bars: incidents started per day (index: dates), a column per severity.

    Takes diagnoses.oncall_handoff.Incidents.per_day().
    """
    title = f"Incidents per day by severity ({units.zone_name()})"
    if per_day.empty or not per_day.to_numpy().any():
        return _empty(title, "no incidents in the period")
    fig, ax = _figure((9, 3.5))
    labels = [f"{day:%a %m-%d}" for day in per_day.index]
    bottom = pd.Series(0, index=per_day.index)
    for severity in per_day.columns:
        ax.bar(labels, per_day[severity], bottom=bottom, label=severity, color=SEVERITY_COLOURS.get(severity))
        bottom += per_day[severity]
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("incidents started")
    ax.set_title(title)
    ax.legend(title="severity", loc="upper left", fontsize="small")
    fig.tight_layout()
    return fig
