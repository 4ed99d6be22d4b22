"""`runbook demo`: a simulated pool-exhaustion incident on a throwaway PostgreSQL, diagnosed headlessly."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg

from runbooks import catalog, chain, evidence, review, summary
from runbooks.incident import load
from runbooks.runner import run

from .incidents import DEMO_POOLS, hold_pools
from .postgres import LocalPostgres

RUNBOOK = "db-connection-pool-exhausted"
IDLE_MINUTES = 0.05  # 3 s: the demo's sessions cannot wait the incident-response runbook's 10 minutes


def main(output_dir: Path = catalog.OUTPUT) -> int:
    print("Starting a throwaway PostgreSQL (max_connections 20, 3 reserved for superusers)...")
    with LocalPostgres() as pg, hold_pools(pg) as held:
        pools = ", ".join(f"{p.application} {p.size}" for p in DEMO_POOLS)
        print(f"Incident: application pools hold {len(held.pids())} sessions ({pools}), some idle in transaction.")
        try:
            psycopg.connect(pg.dsn("reporting"), connect_timeout=5).close()
        except psycopg.OperationalError as e:
            print(f"An ordinary client is now refused: {' '.join(str(e).split()[-8:])}")
        time.sleep(IDLE_MINUTES * 60 + 0.5)

        book = catalog.find(RUNBOOK)
        parameters = book.resolve({"dsn": pg.dsn(), "idle_minutes": IDLE_MINUTES})
        print(f"Running: runbook run {RUNBOOK} -p dsn '{pg.dsn()}' -p idle_minutes {IDLE_MINUTES} --incident demo")
        result = run(book, parameters, "demo", output_dir, progress=True)

        print()
        summary.echo(summary.run_lines(evidence.read(result.evidence_path), result.evidence_path))
        print("Stopping PostgreSQL.")
    folder = result.evidence_path.parent
    verification = chain.verify(folder)
    markdown, _ = review.write(load(output_dir, "demo"), verification)
    count = len(verification.evidence)
    print(
        f"Evidence chain of incident demo: {'intact' if verification.intact else 'NOT intact'}, "
        f"{count} evidence file{'s' * (count != 1)} (`runbook verify demo` says more)"
    )
    print(f"Post-incident review draft: {markdown}")
    print("Evidence (notebook, HTML, evidence file):")
    print(result.evidence_path)
    return 0 if result.status == "completed" else 1
