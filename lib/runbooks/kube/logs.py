"""Pod logs, streamed in blocks and counted by pattern: never loaded whole.

The incident-response runbook's `kubectl logs -l app=X --since=30m | grep -i ...` for every container of every pod that
matches, its init containers and native sidecars included (an istio-proxy sidecar carries the access log), plus
the previous container of each one that restarted (where the crash is).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass, field

import pandas as pd
from kubernetes.client.exceptions import ApiException

from ..evidence import parse_time
from ..logmatch import LineMatcher
from ..redact import redact_line
from .cluster import Cluster
from .pods import list_pods

EXAMPLES_PER_PATTERN = 3
COLUMNS = ["pod", "container", "instance", "pattern", "minute", "count"]
LOG_TIMEOUT = (5, 120)
CHUNK = 1 << 20  # bytes read from the API server at once


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
    patterns: Mapping[str, str | tuple[str, ...]],
    since_minutes: float | None = None,
    tail_lines: int | None = None,
) -> LogScan:
    """Count lines matching each pattern per minute: name -> a regex, or a tuple of regexes that must all match the
    line (case-insensitive, on the text after the timestamp; runbooks.logmatch says how, fast).

    Each container's log is read in blocks of CHUNK bytes and matched a block at a time: what is held in memory is
    a block, the counts per minute and a few examples, whatever the size of the log.
    """
    matcher = LineMatcher(patterns)
    counter: Counter = Counter()  # (pod, container, instance, pattern names, minute key) -> lines
    examples: dict[str, list[str]] = {name: [] for name in patterns}
    wanting = set(patterns)  # patterns with fewer than EXAMPLES_PER_PATTERN examples
    lines_read = 0
    for pod, container, instance in containers(cluster, selector):
        for block in blocks(cluster, pod, container, instance == "previous", since_minutes, tail_lines):
            lines_read += block.count(b"\n") + 1
            matched = matcher.matching(block)
            for (names, key), n in Counter((names, _minute_key(stamp)) for stamp, _, names in matched).items():
                counter[(pod, container, instance, names, key)] += n
            for _, text, names in matched if wanting else ():
                if not wanting.isdisjoint(names):
                    line = redact_line(text.decode("utf-8", "replace"))
                    for name in wanting.intersection(names):
                        examples[name].append(line)
                        if len(examples[name]) == EXAMPLES_PER_PATTERN:
                            wanting.discard(name)
    minutes = {key: _minute(key) for *_, key in counter}
    per_pattern: Counter = Counter()
    for (pod, container, instance, names, key), n in counter.items():
        for name in names:
            per_pattern[(pod, container, instance, name, minutes[key])] += n
    counts = pd.DataFrame([(*key, n) for key, n in per_pattern.items()], columns=COLUMNS)
    counts["minute"] = pd.to_datetime(counts["minute"], utc=True)
    return LogScan(counts, examples, lines_read)


def containers(cluster: Cluster, selector: str) -> Iterator[tuple[str, str, str]]:
    """(pod, container, instance) for every container and init container of every pod matching `selector`, and
    for the previous instance ("previous") of each one that restarted; "current" otherwise."""
    for pod in list_pods(cluster, selector):
        statuses = [*(pod.status.init_container_statuses or []), *(pod.status.container_statuses or [])]
        restarted = {s.name for s in statuses if s.restart_count}
        for container in [*(pod.spec.init_containers or []), *pod.spec.containers]:
            for instance in ("current", "previous") if container.name in restarted else ("current",):
                yield pod.metadata.name, container.name, instance


def every_line(
    cluster: Cluster,
    selector: str,
    since_minutes: float | None = None,
    tail_lines: int | None = None,
) -> Iterator[tuple[str, str, str, dt.datetime | None, str]]:
    """(pod, container, instance, timestamp, text) for every line of every container of `containers`."""
    for pod, container, instance in containers(cluster, selector):
        for when, text in lines(cluster, pod, container, instance == "previous", since_minutes, tail_lines):
            yield pod, container, instance, when, text


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
    for block in blocks(cluster, pod, container, previous, since_minutes, tail_lines):
        for raw in block.split(b"\n"):
            yield _split_timestamp(raw.decode("utf-8", "replace"))


def blocks(
    cluster: Cluster,
    pod: str,
    container: str,
    previous: bool = False,
    since_minutes: float | None = None,
    tail_lines: int | None = None,
) -> Generator[bytes, None, None]:
    """One container's log as blocks of whole lines (joined by newlines, none at the end), about CHUNK bytes each,
    streamed from the API server; a line longer than CHUNK comes cut in pieces. Closing the generator early
    releases the connection."""
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
        for chunk in response.stream(CHUNK):
            pending += chunk
            end = pending.rfind(b"\n")
            if end >= 0:
                yield pending[:end]
                pending = pending[end + 1 :]
            elif len(pending) >= CHUNK:
                yield pending
                pending = b""
        if pending:
            yield pending
    finally:
        response.release_conn()


def _minute_key(stamp: bytes) -> bytes:
    """A line's minute, UTC, as `YYYY-MM-DDTHH:MM`: cut from an RFC 3339 UTC stamp (what the API server sends), else
    parsed; empty when the line has no time."""
    if stamp[16:17] == b":" and stamp[-1:] == b"Z":
        return stamp[:16]
    try:
        return parse_time(stamp.decode("ascii")).astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M").encode()
    except (ValueError, UnicodeDecodeError):
        return b""


def _minute(key: bytes) -> dt.datetime | None:
    try:
        return parse_time(key.decode("ascii") + ":00Z") if key else None
    except ValueError:
        return None


def _split_timestamp(line: str) -> tuple[dt.datetime | None, str]:
    stamp, _, text = line.partition(" ")
    try:
        return parse_time(stamp), text  # RFC 3339 with nanoseconds, trailing zeros trimmed: any Python
    except ValueError:
        return None, line
