"""`runbook serve` replicas on one PostgreSQL queue, on this machine:

- throughput: ALERTS db-connection-pool-exhausted alerts (each its own incident) sent at once to one replica, then
  to two (alternating), each replica with one worker; timed from the first POST until every run is completed;
- take-over: two replicas with --timeout TIMEOUT and --lease LEASE, a burst, the replica running a run killed
  with SIGKILL; timed from the kill until the other replica claims that run again (attempt 2) and until it
  completes.

    .venv/bin/python tests/bench_replicas.py [ALERTS]

Not a test (pytest does not collect it): it prints measured figures and asserts nothing about time. On a machine
with two cores a second replica on the same machine competes for the same CPU as the first: the figure says what
a second replica adds here, not on a second node.
"""

from __future__ import annotations

import socket
import sys
import tempfile
import time
import uuid
from pathlib import Path

import yaml

from runbooks_sandbox.postgres import LocalPostgres
from serving import Service, alert, notification, wait_for

ALERTS = int(sys.argv[1]) if len(sys.argv) > 1 else 12
TIMEOUT, LEASE = 20, 35


def database(server: LocalPostgres) -> str:
    name = f"queue_{uuid.uuid4().hex[:12]}"
    with server.connect("postgres", dbname="postgres") as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return server.dsn(dbname=name)


def burst(replicas: list[Service], count: int, tag: str) -> None:
    for n in range(count):
        sent = alert("DatabaseConnectionPoolExhausted", f"{tag}{n:015x}", namespace="autolytiq-prod")
        answer = replicas[n % len(replicas)].post(notification(sent, group_key=f'{{}}:{{n="{tag}{n}"}}'))
        assert answer.status_code == 202, answer.text


def all_completed(replica: Service, count: int) -> bool:
    runs = replica.runs()
    return len(runs) == count and all(r["status"] == "completed" for r in runs)


def throughput(server: LocalPostgres, folder: Path, params: Path, count: int, replicas: int) -> float:
    dsn = database(server)
    output = folder / f"out-{replicas}-{uuid.uuid4().hex[:6]}"
    services = [Service(output, "-f", str(params), "--queue", dsn) for _ in range(replicas)]
    for s in services:
        s.start()
    try:
        time.sleep(5)  # warm kernels started
        start = time.perf_counter()
        burst(services, count, "a" if replicas == 1 else "b")
        wait_for(lambda: all_completed(services[0], count), timeout=60 * count, interval=0.2, what="every run")
        return time.perf_counter() - start
    finally:
        for s in services:
            s.stop()


def take_over(server: LocalPostgres, folder: Path, params: Path) -> tuple[float, float]:
    dsn = database(server)
    output = folder / f"out-kill-{uuid.uuid4().hex[:6]}"
    options = ("-f", str(params), "--queue", dsn, "--timeout", str(TIMEOUT), "--lease", str(LEASE))
    first, second = Service(output, *options), Service(output, *options)
    first.start()
    second.start()
    try:
        burst([first, second], 4, "c")
        killed = f"{socket.gethostname()}:{first.process.pid}"
        victim = wait_for(
            lambda: next((r for r in second.runs() if r["status"] == "running" and r["replica"] == killed), None),
            what="a run of the first replica",
            interval=0.05,
        )
        first.kill()
        killed_at = time.perf_counter()

        def run_of_victim():
            return next(r for r in second.runs() if r["id"] == victim["id"])

        wait_for(lambda: run_of_victim()["attempts"] == 2, timeout=LEASE + 120, interval=0.1, what="the take-over")
        claimed = time.perf_counter() - killed_at
        wait_for(lambda: run_of_victim()["status"] == "completed", timeout=120, interval=0.1, what="the rerun")
        return claimed, time.perf_counter() - killed_at
    finally:
        first.stop()
        second.stop()


def main() -> None:
    with LocalPostgres(max_connections=40) as server:
        folder = Path(tempfile.mkdtemp(prefix="bench-replicas-"))
        params = folder / "params.yaml"
        params.write_text(yaml.safe_dump({"dsn": server.dsn()}))
        one = throughput(server, folder, params, ALERTS, 1)
        two = throughput(server, folder, params, ALERTS, 2)
        print(f"{ALERTS} alerts, one worker per replica, on this machine:")
        print(f"  1 replica : {one:6.1f} s  ({ALERTS / one * 60:5.1f} runs/min)")
        print(f"  2 replicas: {two:6.1f} s  ({ALERTS / two * 60:5.1f} runs/min)  x{one / two:.2f}")
        claimed, completed = take_over(server, folder, params)
        print(f"take-over after SIGKILL (--timeout {TIMEOUT}, --lease {LEASE}):")
        print(f"  claimed again by the other replica {claimed:5.1f} s after the kill")
        print(f"  its rerun completed               {completed:5.1f} s after the kill")


if __name__ == "__main__":
    main()
