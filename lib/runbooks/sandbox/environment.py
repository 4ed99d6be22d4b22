"""`runbook sandbox`: every runbook's target, local and mid-incident, for stepping through notebooks.

Starts a throwaway PostgreSQL with induced incidents (pools near exhaustion, a lock chain, a long
query, slow statements) and the Kubernetes API test server loaded with the sandbox scenarios. It
writes `parameters/sandbox.yaml` (for `runbook run NAME --env sandbox`) and `output/sandbox/env.sh`
(for Jupyter: the notebooks' empty defaults then read PG* and $KUBECONFIG), and runs until Ctrl-C.
"""

from __future__ import annotations

import signal
import threading
from contextlib import ExitStack
from pathlib import Path

import yaml

from .. import catalog
from .incidents import Pool, blocking_chain, hold_pools, long_query, run_slow_statements
from .kubeapi.kubeconfig import write_kubeconfig
from .kubeapi.server import KubeApiServer
from .postgres import ADMIN, DATABASE, LocalPostgres

NAMESPACE = "autolytiq-prod"
SCENARIOS = ["autolytiq-prod"]
# 12 pooled sessions + a 3-session lock chain + a long report = 16 of 17 ordinary slots: near exhaustion.
POOLS = (
    Pool("deal-service", "deal_service", 5, in_transaction=1),
    Pool("customer-service", "customer_service", 4),
    Pool("tax-service", "tax_service", 2, in_transaction=1),
    Pool("email-worker", "email_worker", 1),
)


def main() -> int:
    folder = catalog.OUTPUT / "sandbox"
    folder.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        pg = stack.enter_context(LocalPostgres())
        stack.enter_context(hold_pools(pg, POOLS))
        stack.enter_context(blocking_chain(pg))
        stack.enter_context(long_query(pg, 24 * 3600, application="monthly-report"))
        run_slow_statements(pg, times=5)
        kube = stack.enter_context(KubeApiServer())
        for scenario in SCENARIOS:
            kube.load(scenario)
        kubeconfig = write_kubeconfig(folder / "kubeconfig", kube.url, context="sandbox", namespace=NAMESPACE)
        parameters = write_parameters(pg.dsn(), kubeconfig)
        env = folder / "env.sh"
        env.write_text(
            f"export PGHOST={pg.socket_dir} PGPORT={pg.port} PGUSER={ADMIN} PGDATABASE={DATABASE}\n"
            f"export KUBECONFIG={kubeconfig}\n"
        )
        stack.callback(parameters.unlink, missing_ok=True)
        print(f"Sandbox up: PostgreSQL on {pg.socket_dir} port {pg.port}, Kubernetes API at {kube.url} "
              f"(namespace {NAMESPACE}).")
        print(f"  headless:    runbook run NAME --env sandbox          (parameters: {parameters})")
        print(f"  interactive: . {env} && jupyter lab notebooks/")
        print("Ctrl-C stops everything.", flush=True)
        wait_for_interrupt()
    return 0


def write_parameters(dsn: str, kubeconfig: Path) -> Path:
    path = catalog.PARAMETERS / "sandbox.yaml"
    defaults = {"dsn": dsn, "kubeconfig": str(kubeconfig), "context": "sandbox", "namespace": NAMESPACE}
    path.write_text("# Written by `runbook sandbox` while it runs; removed when it stops.\n"
                    + yaml.safe_dump({"defaults": defaults}, sort_keys=False))
    return path


def wait_for_interrupt() -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
