"""A real Prometheus on loopback, loaded with series written as OpenMetrics text: the sandbox's and the tests'.

`PrometheusServer(text)` backfills `text` (OpenMetrics, `name{labels} value unix_seconds` lines ending
with `# EOF`) into a fresh TSDB with `promtool tsdb create-blocks-from openmetrics`, starts `prometheus`
on that TSDB at 127.0.0.1 on a free port, waits until it is ready, and on leaving the `with` block stops
it and removes its folder. Nothing is scraped: the backfilled series are all it knows. Both programs come
from Debian's `prometheus` package (`installed()` says whether they are on PATH).

`http_traffic(...)` writes the series a service with `http_requests_total{code}` and
`http_request_duration_seconds_bucket{le}` exposes, one `Traffic` per stretch of time, so that one can
say "12 % errors for the last 20 minutes, normal before, and normal one week earlier".
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import requests

BUCKETS = (0.05, 0.1, 0.2, 0.4, 0.8)  # seconds; +Inf added
STEP = 15  # seconds between samples, as a 15 s scrape interval
READY_TIMEOUT = 60
PROGRAMS = ("prometheus", "promtool")


@dataclass(frozen=True)
class Traffic:
    """From `start` to `end` (unix seconds): requests per second, the share answered 5xx, and the share of
    requests at or below each of BUCKETS (cumulative, non-decreasing, ending at 1)."""

    start: float
    end: float
    requests_per_second: float
    error_share: float
    latency: tuple[float, ...]  # cumulative share per bucket of BUCKETS


NORMAL_LATENCY = (0.5, 0.9, 1.0, 1.0, 1.0)  # p95 = 0.15 s (histogram_quantile interpolates in (0.1, 0.2])
SLOW_LATENCY = (0.0, 0.5, 0.9, 1.0, 1.0)  # every request twice as slow: p95 = 0.3 s


def http_traffic(stretches: list[Traffic], labels: str = 'job="api-gateway"') -> str:
    """OpenMetrics text of the counters a service's traffic leaves, stretch after stretch (no gaps between
    samples within a stretch; counters start at 0 at the first stretch and keep counting across gaps)."""
    requests_ok: list[tuple[float, float]] = []
    requests_5xx: list[tuple[float, float]] = []
    count: list[tuple[float, float]] = []
    buckets: dict[float | str, list[tuple[float, float]]] = {le: [] for le in (*BUCKETS, "+Inf")}
    totals: dict[float | str, float] = {"ok": 0.0, "5xx": 0.0, **{le: 0.0 for le in buckets}}
    for stretch in sorted(stretches, key=lambda s: s.start):
        at = stretch.start
        while at <= stretch.end:
            per_step = stretch.requests_per_second * STEP
            totals["5xx"] += per_step * stretch.error_share
            totals["ok"] += per_step * (1 - stretch.error_share)
            for bound, share in zip(BUCKETS, stretch.latency, strict=True):
                totals[bound] += per_step * share
            totals["+Inf"] += per_step
            requests_ok.append((totals["ok"], at))
            requests_5xx.append((totals["5xx"], at))
            for key in buckets:
                buckets[key].append((totals[key], at))
            count.append((totals["+Inf"], at))
            at += STEP
    lines = [f'http_requests_total{{{labels},code="200"}} {v:.0f} {t:.0f}' for v, t in requests_ok]
    lines += [f'http_requests_total{{{labels},code="503"}} {v:.0f} {t:.0f}' for v, t in requests_5xx]
    for bucket, samples in buckets.items():
        lines += [f'http_request_duration_seconds_bucket{{{labels},le="{bucket}"}} {v:.0f} {t:.0f}' for v, t in samples]
    lines += [f"http_request_duration_seconds_count{{{labels}}} {v:.0f} {t:.0f}" for v, t in count]
    return "\n".join(lines) + "\n# EOF\n"


def installed() -> bool:
    """Whether `prometheus` and `promtool` are on PATH."""
    return all(shutil.which(program) for program in PROGRAMS)


class PrometheusServer:
    """`with PrometheusServer(openmetrics_text) as prom:` ... `prom.url` ... stopped and removed on exit.

    With `tls` (certificate and key files) it serves HTTPS, and with `users` (name -> password) it asks for basic
    auth, through Prometheus's own web configuration (`--web.config.file`, passwords stored as bcrypt hashes):
    a Prometheus as it is often exposed. `ca_file` is then the CA to verify it with."""

    def __init__(
        self,
        openmetrics: str,
        tls: tuple[Path, Path] | None = None,
        users: dict[str, str] | None = None,
        ca_file: Path | None = None,
    ):
        self.openmetrics = openmetrics
        self.tls, self.users, self.ca_file = tls, users or {}, ca_file
        self.folder: Path | None = None
        self.process: subprocess.Popen | None = None
        self.url = ""

    def __enter__(self) -> PrometheusServer:
        self.folder = Path(tempfile.mkdtemp(prefix="runbooks-prometheus-"))
        try:
            self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

    def _start(self) -> None:
        assert self.folder is not None, "started by __enter__"
        folder = self.folder
        data, tsdb, config = folder / "data.om", folder / "tsdb", folder / "prometheus.yml"
        data.write_text(self.openmetrics)
        subprocess.run(
            ["promtool", "tsdb", "create-blocks-from", "openmetrics", str(data), str(tsdb)],
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )
        config.write_text("global:\n  scrape_interval: 1h\n")  # nothing to scrape
        port = free_port()
        web = self._web_config(folder)
        self.process = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={config}",
                f"--storage.tsdb.path={tsdb}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--storage.tsdb.retention.time=30d",
                *([f"--web.config.file={web}"] if web else []),
            ],
            stdout=subprocess.DEVNULL,
            stderr=(folder / "prometheus.log").open("w"),
            cwd=self.folder,
        )
        self.url = f"{'https' if self.tls else 'http'}://127.0.0.1:{port}"
        user = next(iter(self.users.items()), None)
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited: {(folder / 'prometheus.log').read_text()[-2000:]}")
            try:
                ready = requests.get(
                    f"{self.url}/-/ready", timeout=2, auth=user, verify=str(self.ca_file) if self.ca_file else True
                )
                if ready.status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"prometheus not ready within {READY_TIMEOUT} s")

    def _web_config(self, folder: Path) -> Path | None:
        if not self.tls and not self.users:
            return None
        import bcrypt  # a test dependency: only a Prometheus with users needs it

        lines = []
        if self.tls:
            lines += ["tls_server_config:", f"  cert_file: {self.tls[0]}", f"  key_file: {self.tls[1]}"]
        if self.users:
            lines.append("basic_auth_users:")
            for name, password in self.users.items():
                hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
                lines.append(f'  {name}: "{hashed}"')
        web = folder / "web.yml"
        web.write_text("\n".join(lines) + "\n")
        return web


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
