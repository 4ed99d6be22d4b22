"""Test helpers for `runbook serve`: webhook payloads, the service as a real process, a real Alertmanager."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

import runbooks
from runbooks_sandbox.alertmanager import AlertmanagerServer as Alertmanager  # noqa: F401 (for the tests)

TOKEN = "test-webhook-token-7f3a"
LIB = str(Path(runbooks.__file__).resolve().parents[1])  # the package under test, for child processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition, timeout: float = 60, interval: float = 0.2, what: str = "condition"):
    """Poll `condition` until it returns something truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def alert(
    name: str, fingerprint: str, status: str = "firing", starts_at: str = "2026-11-26T10:00:00Z", **labels: str
) -> dict:
    return {
        "status": status,
        "labels": {"alertname": name, **labels},
        "annotations": {"summary": f"{name} fired"},
        "startsAt": starts_at,
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-11-26T10:30:00Z",
        "generatorURL": "http://prometheus.example/graph?g0.expr=up",
        "fingerprint": fingerprint,
    }


def notification(*alerts: dict, group_key: str | None = None, status: str = "firing") -> dict:
    name = alerts[0]["labels"]["alertname"]
    return {
        "version": "4",
        "groupKey": group_key or f'{{}}:{{alertname="{name}"}}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "runbooks",
        "groupLabels": {"alertname": name},
        "commonLabels": {"alertname": name},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example:9093",
        "alerts": list(alerts),
    }


class Service:
    """`runbook serve` as a child process on a free loopback port; `kill()` is kill -9."""

    def __init__(self, output_dir: Path, *args: str, workers: int = 1, token: str | None = TOKEN):
        self.output_dir = output_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [
            "serve",
            "--port",
            str(self.port),
            "--output-dir",
            str(output_dir),
            "--workers",
            str(workers),
            *args,
        ]
        self.env = {**os.environ, "PYTHONPATH": LIB}
        self.env.pop("RUNBOOK_WEBHOOK_TOKEN", None)
        if token:
            self.env["RUNBOOK_WEBHOOK_TOKEN"] = token
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.log_path = output_dir.parent / f"serve-{self.port}.log"
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> Service:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "runbooks.cli", *self.args], env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        wait_for(self._ready, timeout=60, what=f"runbook serve on {self.url} (log: {self.log_path})")

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"runbook serve exited {self.process.returncode}:\n{self.log()}")
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def post(self, payload: dict) -> httpx.Response:
        return httpx.post(f"{self.url}/alerts", json=payload, headers=self.headers, timeout=30)

    def runs(self) -> list[dict]:
        return httpx.get(f"{self.url}/runs", headers=self.headers, timeout=10).json()["runs"]
