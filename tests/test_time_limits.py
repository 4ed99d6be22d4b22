"""Every run has a time limit, every database session gives up on a silent server, and stopping is bounded:
against a PostgreSQL that stops answering mid-run (tests/stalling.py), a run ends at its limit, Ctrl-C ends it,
SIGTERM ends `runbook serve`, and each still leaves failed evidence that `runbook verify` finds whole."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from psycopg.conninfo import make_conninfo

from runbooks.postgres import session
from serving import LIB, Service, alert, notification, wait_for
from stalling import StallingProxy

RUNBOOK = "db-slow-queries"


def runbook(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "runbooks.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": LIB},
        timeout=timeout,
    )


@pytest.fixture
def silent_dsn(server, admin_password):
    """A dsn to the test PostgreSQL through a proxy that goes silent at each connection's first query."""
    with StallingProxy(server.port) as proxy:
        yield make_conninfo(server.tcp_dsn(password=admin_password), port=proxy.port), proxy


def evidence_of(stdout: str) -> dict:
    return json.loads(Path(stdout.strip().splitlines()[-1]).read_text())


@pytest.mark.parametrize(
    "limits,ename,message",
    [
        (["--timeout", "12"], "Timeout", "the run passed its time limit of 12 s"),
        (["--timeout", "120", "--cell-timeout", "6"], "CellTimeout", "a cell ran longer than its limit of 6 s"),
    ],
)
def test_a_run_against_a_server_gone_silent_ends_at_its_limit_and_leaves_evidence(
    silent_dsn, tmp_path, limits, ename, message
):
    dsn, proxy = silent_dsn
    result = runbook("run", RUNBOOK, "-p", "dsn", dsn, "--output-dir", str(tmp_path), "--incident", "INC-5", *limits)

    assert result.returncode == 1, result.stderr
    assert proxy.stalled >= 1  # the server did go silent under the run
    record = evidence_of(result.stdout)
    assert record["status"] == "failed" and record["error"]["ename"] == ename
    assert message in record["error"]["evalue"] and record["error"]["cell"] is not None
    assert f"{ename}: {message}" in result.stderr
    assert runbook("verify", "INC-5", "--output-dir", str(tmp_path)).returncode == 0


def test_ctrl_c_ends_a_run_and_its_evidence_is_written_as_serve_recovery_would(silent_dsn, tmp_path):
    dsn, proxy = silent_dsn
    process = subprocess.Popen(
        [sys.executable, "-m", "runbooks.cli", "run", RUNBOOK, "-p", "dsn", dsn, "--output-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": LIB},
    )
    try:
        wait_for(lambda: proxy.stalled >= 1, timeout=120, what="the run waiting on a silent server")
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        process.kill()

    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    record = evidence_of(stdout)
    assert record["status"] == "failed" and record["error"]["ename"] == "Interrupted"
    assert len(list((tmp_path / "adhoc").glob("*.ipynb"))) == 1
    verified = runbook("verify", "adhoc", "--output-dir", str(tmp_path))
    assert verified.returncode == 0, verified.stdout  # no notebook left without its evidence


def test_every_database_session_has_client_side_keepalives_and_a_user_timeout(server, admin_password):
    with session.connect(server.tcp_dsn(password=admin_password), "keepalive-probe") as conn:
        s = socket.socket(fileno=os.dup(conn.pgconn.socket))
        try:
            assert s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 10
            assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 5
            assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 3
            assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 30000
        finally:
            s.detach()


def test_sigterm_stops_serve_within_its_grace_and_the_run_cut_short_runs_again_after_a_restart(
    server, silent_dsn, tmp_path
):
    dsn, proxy = silent_dsn
    output = tmp_path / "output"
    silent = tmp_path / "silent.yaml"
    silent.write_text(yaml.safe_dump({"dsn": dsn}))
    serve = Service(output, "-f", str(silent), "--grace", "2", "--timeout", "600")
    serve.start()
    try:
        serve.post(notification(alert("SlowDatabaseQueries", "00000000000000c1")))
        wait_for(lambda: proxy.stalled >= 1 and serve.runs()[0]["status"] == "running", what="a run stuck")
        serve.process.send_signal(signal.SIGTERM)
        serve.process.wait(timeout=120)
    finally:
        serve.kill() if serve.process.poll() is None else None

    assert serve.process.returncode == 0
    log = serve.log()
    assert "given 2 s to finish" in log and "ending 1 run(s) still under way" in log
    assert "queued again" in log and "workers stopped" in log and "runbook serve stopped" in log
    (cut,) = [json.loads(p.read_text()) for p in output.glob("*/*.evidence.json")]
    assert cut["status"] == "failed" and cut["error"]["ename"] == "Interrupted"

    working = tmp_path / "working.yaml"
    working.write_text(yaml.safe_dump({"dsn": server.dsn()}))
    with Service(output, "-f", str(working)) as again:
        (run,) = wait_for(
            lambda: (r := again.runs()) and r[0]["status"] == "completed" and r, what="the alert run again"
        )
    assert run["attempts"] == 2
    assert runbook("verify", run["incident"], "--output-dir", str(output)).returncode == 0
