"""Wall time of `runbook run db-connection-pool-exhausted` next to a plain `papermill` run of the same notebook
with the same parameters, against the demo server with the demo pools held (7 alternating pairs: the median of
each, and the median of the pairs' ratios).

    .venv/bin/python tests/bench_runbook_vs_papermill.py

Not a test (pytest does not collect it): it prints measured figures and asserts nothing about time.
"""

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from runbooks import catalog
from runbooks_sandbox.incidents import hold_pools
from runbooks_sandbox.postgres import LocalPostgres

RUNS = 7
BIN = Path(sys.executable).parent
NOTEBOOK = catalog.NOTEBOOKS / "db-connection-pool-exhausted.ipynb"


def main() -> None:
    with LocalPostgres() as pg, hold_pools(pg), tempfile.TemporaryDirectory() as out:
        time.sleep(3.5)  # the pools age past idle_minutes 0.05, as in the demo
        parameters = ["-p", "dsn", pg.dsn(), "-p", "idle_minutes", "0.05"]
        commands = {
            "runbook run": [BIN / "runbook", "run", NOTEBOOK.stem, *parameters, "--output-dir", out],
            "papermill": [BIN / "papermill", "--no-progress-bar", *parameters, NOTEBOOK, f"{out}/papermill.ipynb"],
        }
        times = {name: [] for name in commands}
        for _ in range(RUNS):
            for name, command in commands.items():
                start = time.perf_counter()
                subprocess.run([str(c) for c in command], check=True, capture_output=True)
                times[name].append(time.perf_counter() - start)
    for name, runs in times.items():
        print(f"{name:12s} median {statistics.median(runs):.2f} s  (runs: {', '.join(f'{t:.2f}' for t in runs)})")
    ratios = [ours / theirs for ours, theirs in zip(times["runbook run"], times["papermill"], strict=True)]
    print(f"runbook run / papermill: median ratio of the pairs {statistics.median(ratios):.2f} (goal: at most 0.7)")


if __name__ == "__main__":
    main()
