"""Time to evidence for db-connection-pool-exhausted against the demo server with the demo pools held: runner.run
on warm kernels from a KernelPool, runner.run on a new kernel (cold), and the plain `papermill` CLI on the same
notebook and parameters; interleaved, p50 and p95 of each over RUNS runs.

    PYTHONPATH=lib .venv/bin/python tests/bench_warm_kernels.py [RUNS]

Not a test (pytest does not collect it): it prints measured figures and asserts nothing about time. `measure`
takes any callable, so another way to get from an alert to evidence can be put next to these.
"""

import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from runbooks import catalog, runner
from runbooks.kernels import KernelPool
from runbooks.sandbox.incidents import hold_pools
from runbooks.sandbox.postgres import LocalPostgres

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
            way()
            times[name].append(time.perf_counter() - start)
            settle()
            time.sleep(PAUSE)
    return times


def report(times: dict[str, list[float]]) -> None:
    for name, runs in times.items():
        cuts = statistics.quantiles(runs, n=100, method="inclusive")
        print(f"{name:18s} p50 {cuts[49]:5.2f} s   p95 {cuts[94]:5.2f} s   ({len(runs)} runs, min {min(runs):.2f} s)")


def main() -> None:
    book = catalog.find("db-connection-pool-exhausted")
    with LocalPostgres() as pg, hold_pools(pg), tempfile.TemporaryDirectory() as out, KernelPool(size=2) as pool:
        time.sleep(3.5)  # the pools age past idle_minutes 0.05, as in the demo
        parameters = book.resolve({"dsn": pg.dsn(), "idle_minutes": 0.05})

        def completed(kernel=None) -> None:
            run = runner.run(book, parameters, "bench", Path(out), kernel=kernel)
            assert run.status == "completed", run.error

        def papermill_cli() -> None:
            command = [PAPERMILL, "--no-progress-bar", "-p", "dsn", parameters["dsn"], "-p", "idle_minutes", "0.05",
                       book.path, Path(out) / "papermill.ipynb"]
            subprocess.run([str(c) for c in command], check=True, capture_output=True)

        ways = {
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
