"""Pod logs, streamed line by line and counted by pattern: never loaded whole.

The incident-response runbook's `kubectl logs -l app=X --since=30m | grep -i ...` for every container of every pod that
matches, its init containers and native sidecars included (an istio-proxy sidecar carries the access log), plus
the previous container of each one that restarted (where the crash is).
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field

import pandas as pd
from kubernetes.client.exceptions import ApiException

from ..evidence import parse_time
from ..redact import redact_line
from .cluster import Cluster
from .pods import list_pods

EXAMPLES_PER_PATTERN = 3
COLUMNS = ["pod", "container", "instance", "pattern", "minute", "count"]
LOG_TIMEOUT = (5, 120)


@dataclass
class LogScan:
    """Matches per pod, container, instance (current/previous), pattern and minute."""

    counts: pd.DataFrame
    examples: dict[str, list[str]] = field(default_factory=dict)  # redacted sample lines per pattern
    lines_read: int = 0

    def totals(self, *by: str) -> pd.DataFrame:
        """Counts summed over everything but `by` (default: per pattern), largest first."""
        keys = list(by or ("pattern",))
        if self.counts.empty:
            return pd.DataFrame(columns=[*keys, "count"])
        return (
            self.counts.groupby(keys, as_index=False)["count"]
            .sum()
            .sort_values("count", ascending=False, ignore_index=True)
        )

    def first_seen(self, pattern: str) -> dt.datetime | None:
        minutes = self.counts.loc[self.counts["pattern"] == pattern, "minute"]
        return None if minutes.empty else minutes.min().to_pydatetime()


def scan(
    cluster: Cluster,
    selector: str,
    patterns: dict[str, str],
    since_minutes: float | None = None,
    tail_lines: int | None = None,
) -> LogScan:
    """Count lines matching each regex of `patterns` (name -> regex, case-insensitive), per minute."""
    compiled = {name: re.compile(regex, re.IGNORECASE) for name, regex in patterns.items()}
    counter: Counter = Counter()
    examples: dict[str, list[str]] = {name: [] for name in patterns}
    lines_read = 0
    for pod, container, instance, when, text in every_line(cluster, selector, since_minutes, tail_lines):
        lines_read += 1
        for name, regex in compiled.items():
            if regex.search(text):
                minute = when.replace(second=0, microsecond=0) if when else None
                counter[(pod, container, instance, name, minute)] += 1
                if len(examples[name]) < EXAMPLES_PER_PATTERN:
                    examples[name].append(redact_line(text))
    counts = pd.DataFrame([(*key, n) for key, n in counter.items()], columns=COLUMNS)
    counts["minute"] = pd.to_datetime(counts["minute"], utc=True)
    return LogScan(counts, examples, lines_read)


def every_line(
    cluster: Cluster,
    selector: str,
    since_minutes: float | None = None,
    tail_lines: int | None = None,
) -> Iterator[tuple[str, str, str, dt.datetime | None, str]]:
    """(pod, container, instance, timestamp, text) for every container and init container of every pod matching
    `selector`, and for the previous instance ("previous") of each one that restarted."""
    for pod in list_pods(cluster, selector):
        statuses = [*(pod.status.init_container_statuses or []), *(pod.status.container_statuses or [])]
        restarted = {s.name for s in statuses if s.restart_count}
        for container in [*(pod.spec.init_containers or []), *pod.spec.containers]:
            for instance in ("current", "previous") if container.name in restarted else ("current",):
                for when, text in lines(
                    cluster, pod.metadata.name, container.name, instance == "previous", since_minutes, tail_lines
                ):
                    yield pod.metadata.name, container.name, instance, when, text


def lines(
    cluster: Cluster,
    pod: str,
    container: str,
    previous: bool = False,
    since_minutes: float | None = None,
    tail_lines: int | None = None,
) -> Generator[tuple[dt.datetime | None, str], None, None]:
    """(timestamp, text) for each log line of one container, streamed from the API server; closing the generator
    early releases the connection."""
    try:
        response = cluster.core.read_namespaced_pod_log(
            pod,
            cluster.namespace,
            container=container,
            previous=previous,
            timestamps=True,
            since_seconds=int(since_minutes * 60) if since_minutes else None,
            tail_lines=tail_lines,
            _preload_content=False,
            _request_timeout=LOG_TIMEOUT,
        )
    except ApiException as e:
        if e.status in (400, 404):  # no previous instance, container not started: nothing to read
            return
        raise
    try:
        pending = b""
        for chunk in response.stream(64 * 1024):
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for raw in complete:
                yield _split_timestamp(raw.decode("utf-8", "replace"))
        if pending:
            yield _split_timestamp(pending.decode("utf-8", "replace"))
    finally:
        response.release_conn()


def _split_timestamp(line: str) -> tuple[dt.datetime | None, str]:
    stamp, _, text = line.partition(" ")
    try:
        return parse_time(stamp), text  # RFC 3339 with nanoseconds, trailing zeros trimmed: any Python
    except ValueError:
        return None, line
