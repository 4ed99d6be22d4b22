"""Figures for the notebooks. Each returns a closed matplotlib Figure: shown once, where the
notebook puts it as a cell's last expression, and never again by pyplot's end-of-cell flush."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

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
    table = connections.pivot_table(index="application", columns="state", values="connections",
                                    aggfunc="sum", fill_value=0)
    table = table.loc[table.sum(axis=1).sort_values().index]
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(table) + 1.5))
    left = pd.Series(0, index=table.index)
    for state in table.columns:
        ax.barh(table.index, table[state], left=left, label=state, color=STATE_COLOURS.get(state))
        left += table[state]
    ax.set_xlabel("connections")
    ax.set_title("Connections by application and state")
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    plt.close(fig)
    return fig


def query_durations(running: pd.DataFrame) -> Figure:
    """Horizontal bars: how long each long-running query has been running."""
    if running.empty:
        return _empty("Long-running queries", "no query above the threshold")
    frame = running.assign(seconds=running["duration"].dt.total_seconds()).sort_values("seconds")
    labels = [f"pid {r.pid} · {r.application}" for r in frame.itertuples()]
    fig, ax = plt.subplots(figsize=(8, 0.4 * len(frame) + 1.5))
    ax.barh(labels, frame["seconds"], color=[STATE_COLOURS.get(s, "#756bb1") for s in frame["state"]])
    ax.set_xlabel("seconds since the query started")
    ax.set_title("Long-running queries")
    fig.tight_layout()
    plt.close(fig)
    return fig


def _empty(title: str, message: str) -> Figure:
    fig, ax = plt.subplots(figsize=(8, 1.5))
    ax.text(0.5, 0.5, message, ha="center", va="center")
    ax.set_title(title)
    ax.axis("off")
    plt.close(fig)
    return fig


def dependency_errors_per_minute(per_minute: pd.DataFrame) -> Figure:
    """Lines: error lines per minute about each third-party dependency (columns), over the window (index, UTC)."""
    from matplotlib.dates import DateFormatter
    from matplotlib.ticker import MaxNLocator

    title = "Errors per minute by third-party dependency (UTC)"
    if per_minute.empty or not per_minute.to_numpy().any():
        return _empty(title, "no errors about any dependency in the window")
    fig, ax = plt.subplots(figsize=(9, 3.5))
    times = per_minute.index.tz_convert("UTC").tz_localize(None)  # matplotlib's date axis, labelled UTC
    for dependency in per_minute.columns:
        ax.plot(times, per_minute[dependency], drawstyle="steps-mid", marker=".", label=dependency)
    ax.set_ylabel("error lines per minute")
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.xaxis.set_major_formatter(DateFormatter("%H:%M"))
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    plt.close(fig)
    return fig
