"""`runbook serve` outlives a stuck queue and missing kernels, and says so: workers retry a locked queue with
backoff while /healthz answers 503 with the reason, a queue file that is no database ends the service in one
line (exit 4) whether found at start or while serving, and a run that finds no warm kernel starts its own."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import pytest
import yaml
from starlette.testclient import TestClient

from runbooks import kernels
from runbooks.alerts import queue, routing, service, workers
from serving import LIB, TOKEN, Service, alert, notification, wait_for

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def app(server, tmp_path, monkeypatch):
    """The service in-process (its lifespan starts real workers and kernels), routed to the test PostgreSQL."""
    monkeypatch.setattr(queue, "BUSY_TIMEOUT_SECONDS", 0.2)  # a lock shows within 0.2 s, not 30 s
    monkeypatch.setattr(workers, "BACKOFF_SECONDS", (0.2,))
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"dsn": server.dsn()}))
    return service.create_app(routing.load(files=(params,)), tmp_path / "output", workers=1, token=TOKEN)


def completed(client) -> list[dict]:
    runs = client.get("/runs", headers=AUTH).json()["runs"]
    return [r for r in runs if r["status"] == "completed"]


def test_a_locked_queue_is_waited_out_and_reported_not_fatal(app, tmp_path):
    with TestClient(app) as client:
        locker = sqlite3.connect(tmp_path / "output" / service.QUEUE, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        try:
            health = wait_for(
                lambda: (r := client.get("/healthz")).status_code == 503 and r.json(), what="/healthz 503"
            )
            assert "database is locked" in health["reason"]
            refused = client.post(
                "/alerts", json=notification(alert("SlowDatabaseQueries", "00000000000000d1")), headers=AUTH
            )
            assert refused.status_code == 503 and "send again later" in refused.json()["error"]
        finally:
            locker.execute("ROLLBACK")
            locker.close()

        accepted = client.post(
            "/alerts", json=notification(alert("SlowDatabaseQueries", "00000000000000d1")), headers=AUTH
        )
        assert accepted.json()["alerts"][0]["outcome"] == "queued"
        wait_for(lambda: completed(client), what="the alert run after the lock")
        assert client.get("/healthz").json()["status"] == "ok"


def test_a_run_that_finds_no_warm_kernel_starts_its_own_and_leaves_evidence(app, tmp_path, monkeypatch):
    monkeypatch.setattr(kernels, "WARM_UP", "raise SystemExit('warm-up broken')")  # every warm kernel fails
    with TestClient(app) as client:
        client.post("/alerts", json=notification(alert("SlowDatabaseQueries", "00000000000000d2")), headers=AUTH)
        (run,) = wait_for(lambda: completed(client), timeout=120, what="the run on a kernel of its own")
    assert run["evidence"] and os.path.exists(run["evidence"])


def serve(output, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "runbooks.cli", "serve", "--output-dir", str(output), "--port", "1", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": LIB, "RUNBOOK_WEBHOOK_TOKEN": TOKEN},
        timeout=timeout,
    )


def test_a_queue_file_that_is_no_database_stops_serve_in_one_line_with_exit_4(tmp_path):
    path = tmp_path / "output" / service.QUEUE
    path.parent.mkdir(parents=True)
    path.write_bytes(b"this is not an SQLite database, it was overwritten\n" * 100)
    result = serve(tmp_path / "output")
    assert result.returncode == 4, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"runbook: the queue {path} cannot be used: file is not a database. Move it aside")


def test_a_queue_that_breaks_while_serving_ends_the_service_with_exit_4(server, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"dsn": server.dsn()}))
    serving = Service(tmp_path / "output", "-f", str(params), "--grace", "1")
    serving.start()
    try:
        for suffix in ("", "-wal", "-shm"):
            target = tmp_path / "output" / f"{service.QUEUE}{suffix}"
            if target.exists():
                target.write_bytes(b"\0garbage" * 512)
        serving.process.wait(timeout=120)
    finally:
        if serving.process.poll() is None:
            serving.kill()
    assert serving.process.returncode == 4
    log = serving.log()
    assert "giving up: cannot claim the next alert from the queue" in log
    assert log.strip().splitlines()[-1].startswith("runbook: runbook serve gave up: cannot claim the next alert")
