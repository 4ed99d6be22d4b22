"""Time to evidence for db-connection-pool-exhausted against the demo server with the demo pools held, interleaved,
p50 and p95 of each way over RUNS rounds:

- alert -> evidence: `runbook serve` (a child process, one worker, its warm kernels) is sent a
  DatabaseConnectionPoolExhausted alert; timed from the POST until the run's evidence file is written;
- runner.run on a warm kernel from a KernelPool, and on a new kernel (cold), in this process;
- the plain `papermill` CLI on the same notebook and parameters.

    .venv/bin/python tests/bench_alert_to_evidence.py [RUNS]

Not a test (pytest does not collect it): it prints measured figures and asserts nothing about time.
"""

import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import yaml

from runbooks import catalog, runner
from runbooks.kernels import KernelPool
from runbooks_sandbox.incidents import hold_pools
from runbooks_sandbox.postgres import LocalPostgres
from serving import Service, alert, notification

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 20
PAUSE = 1.0  # seconds between runs
PAPERMILL = Path(sys.executable).parent / "papermill"


def measure(ways: dict[str, Callable[[], object]], runs: int, settle: Callable[[], None]) -> dict[str, list[float]]:
    """Wall time of each way, `runs` rounds, one call of each way per round; `settle` after each call waits
    until nothing started by it (a replacement kernel) still runs in the background."""
    times = {name: [] for name in ways}
    for _ in range(runs):
        for name, way in ways.items():
            start = time.perf_counter()
            measured = way()  # a way may time itself (from an alert sent to its evidence written)
            times[name].append(measured if measured is not None else time.perf_counter() - start)
            settle()
            time.sleep(PAUSE)
    return times


def report(times: dict[str, list[float]]) -> None:
    for name, runs in times.items():
        cuts = statistics.quantiles(runs, n=100, method="inclusive")
        print(f"{name:18s} p50 {cuts[49]:5.2f} s   p95 {cuts[94]:5.2f} s   ({len(runs)} runs, min {min(runs):.2f} s)")


def main() -> None:
    book = catalog.find("db-connection-pool-exhausted")
    with ExitStack() as stack:
        pg = stack.enter_context(LocalPostgres())
        stack.enter_context(hold_pools(pg))
        out = stack.enter_context(tempfile.TemporaryDirectory())
        pool = stack.enter_context(KernelPool(size=2))
        time.sleep(3.5)  # the pools age past idle_minutes 0.05, as in the demo
        parameters = book.resolve({"dsn": pg.dsn(), "idle_minutes": 0.05})

        def completed(kernel=None) -> None:
            run = runner.run(book, parameters, "bench", Path(out), kernel=kernel)
            assert run.status == "completed", run.error

        def papermill_cli() -> None:
            command = [
                PAPERMILL,
                "--no-progress-bar",
                "-p",
                "dsn",
                parameters["dsn"],
                "-p",
                "idle_minutes",
                "0.05",
                book.path,
                Path(out) / "papermill.ipynb",
            ]
            subprocess.run([str(c) for c in command], check=True, capture_output=True)

        params = Path(out) / "serve.yaml"
        params.write_text(yaml.safe_dump({"dsn": parameters["dsn"], "idle_minutes": 0.05}))
        service = stack.enter_context(Service(Path(out) / "serve", "-f", str(params), workers=1))
        alerts = iter(range(1, 1_000_000))

        def alert_to_evidence() -> float:
            number = next(alerts)
            sent = time.time()
            (outcome,) = service.post(
                notification(alert("DatabaseConnectionPoolExhausted", f"{number:016x}"), group_key=f"bench-{number}")
            ).json()["alerts"]
            assert outcome["outcome"] == "queued", outcome
            folder = Path(out) / "serve" / outcome["incident"]
            while not (evidence := list(folder.glob("*.evidence.json"))):
                time.sleep(0.01)
            time.sleep(0.05)  # the file is complete once its writer has closed it; its mtime is the time written
            return evidence[0].stat().st_mtime - sent

        ways = {
            "alert -> evidence": alert_to_evidence,
            "warm runner.run": lambda: completed(pool.take()),
            "cold runner.run": completed,
            "papermill CLI": papermill_cli,
        }

        def full() -> None:
            while pool.ready < 2:
                time.sleep(0.1)

        measure(ways, 1, full)  # untimed: the first run in a process loads and compiles what later runs reuse
        resources = _resources()
        times = measure(ways, RUNS, full)
        print(f"threads, open files of this process before and after the timed runs: {resources} -> {_resources()}")
    report(times)


def _resources() -> tuple[int, int]:
    return threading.active_count(), len(os.listdir("/proc/self/fd"))


if __name__ == "__main__":
    main()
