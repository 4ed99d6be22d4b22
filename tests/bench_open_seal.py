"""How long `runbook open` takes to a usable lab, and what a seal costs: db-connection-pool-exhausted against a
throwaway PostgreSQL with the demo pools held, RUNS rounds, p50 and p95.

- open -> address: from starting `runbook open` (a child process) until it prints the lab's address;
- open -> usable lab: until the working copy is open in chromium (already running, as an engineer's browser is)
  with its kernel connected and idle: the first cell can run;
- seal, in process: sessions.seal of a working copy stepped through top to bottom (HTML, evidence, chain);
- `runbook seal`: the command, from start to exit (the Python start and imports included);
- save -> sealed: a save through the lab's API until the lab's sealer has written the evidence (the sealer
  waits for `--seal-after` seconds of quiet, here 0.5 s, first).

    .venv/bin/python tests/bench_open_seal.py [RUNS]

Not a test (pytest does not collect it): it prints measured figures and asserts nothing about time.
"""

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

from labs import RUNBOOK as RUNBOOK_COMMAND
from labs import code_cells, start, step_through
from runbooks import catalog, runfiles, sessions
from runbooks_sandbox.incidents import hold_pools
from runbooks_sandbox.postgres import LocalPostgres

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 10
NAME = "db-connection-pool-exhausted"


def report(times: dict[str, list[float]]) -> None:
    for name, runs in times.items():
        cuts = statistics.quantiles(runs, n=100, method="inclusive")
        print(f"{name:22s} p50 {cuts[49]:5.2f} s   p95 {cuts[94]:5.2f} s   ({len(runs)} runs, min {min(runs):.2f} s)")


def open_to_usable(browser, dsn: str, output: Path, round_: int) -> tuple[float, float]:
    began = time.perf_counter()
    args = [NAME, "--incident", f"INC-{round_}", "-p", "dsn", dsn, "--port", "0", "--output-dir", str(output)]
    lab = start(*args, log=output / f"lab-{round_}.log")
    try:
        address = time.perf_counter() - began
        page = browser.new_page()
        page.goto(lab.url)
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=90_000)
        lab.wait_for_browser_kernel(lab.copy)
        page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=90_000)
        usable = time.perf_counter() - began
        page.close()
    finally:
        lab.stop()
    return address, usable


def save_to_sealed(dsn: str, output: Path, rounds: int) -> list[float]:
    args = [NAME, "--incident", "INC-save", "-p", "dsn", dsn, "--port", "0", "--seal-after", "0.5"]
    lab = start(*args, "--output-dir", str(output), log=output / "lab-save.log")
    folder, times = lab.copy.parent, []
    try:
        step_through(lab.copy, code_cells(lab.copy))
        for _ in range(rounds):
            before = len(runfiles.evidence_files(folder))
            began = time.perf_counter()
            lab.save(lab.copy, output)
            while len(runfiles.evidence_files(folder)) == before:
                time.sleep(0.01)
            times.append(time.perf_counter() - began)
            time.sleep(0.5)
    finally:
        lab.stop()
    return times


def main() -> None:
    with LocalPostgres() as pg, hold_pools(pg), sync_playwright() as playwright, tempfile.TemporaryDirectory() as tmp:
        output = Path(tmp)
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        times: dict[str, list[float]] = {"open -> address": [], "open -> usable lab": []}
        for round_ in range(RUNS):
            address, usable = open_to_usable(browser, pg.dsn(), output, round_)
            times["open -> address"].append(address)
            times["open -> usable lab"].append(usable)
        browser.close()

        copy = sessions.open_copy(catalog.find(NAME), {"dsn": pg.dsn()}, "INC-seal", output, "bench").path
        step_through(copy, code_cells(copy))
        times["seal, in process"] = []
        times["`runbook seal`"] = []
        for _ in range(RUNS):
            began = time.perf_counter()
            sessions.seal(copy)
            times["seal, in process"].append(time.perf_counter() - began)
            began = time.perf_counter()
            command = [RUNBOOK_COMMAND, "seal", "INC-seal", str(copy), "--output-dir", str(output)]
            subprocess.run(command, check=True, capture_output=True)
            times["`runbook seal`"].append(time.perf_counter() - began)
        times["save -> sealed (0.5 s)"] = save_to_sealed(pg.dsn(), output, RUNS)
    report(times)


if __name__ == "__main__":
    main()
