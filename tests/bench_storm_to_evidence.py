"""A storm to evidence: N distinct alerts of one incident in one notification (an outage: the pool-exhausted rule
fires for every pod of deal-service, the slow-queries rule for every pod at two thresholds) sent to `runbook serve
--workers 2` (a child process, against the demo PostgreSQL with its pools held), timed until every alert's row is
completed with its evidence; the summed memory of the service and its kernels (RSS, and PSS, which counts the
pages the kernels share with their fork server once), idle and at its peak; and what the fork server and each
ready kernel hold (their own pages, USS, and their RSS).

    .venv/bin/python tests/bench_storm_to_evidence.py [N]      (default 200)

Not a test (pytest does not collect it): it prints measured figures and asserts nothing about time.
"""

import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import yaml

from runbooks_sandbox.incidents import hold_pools
from runbooks_sandbox.postgres import LocalPostgres
from serving import Service, alert, notification

PAGE = 4096
TIMEOUT = 300


def storm(count: int) -> list[dict]:
    """`count` distinct alerts: half pool-exhausted (one per pod), the rest slow queries at 5 s and 30 s."""
    alerts = []
    for i in range(count):
        pod = {"pod": f"deal-service-7f6b5c9d8-{i:05d}", "namespace": "autolytiq-prod"}
        if i % 2 == 0:
            alerts.append(alert("DatabaseConnectionPoolExhausted", f"{i:016x}", **pod))
        else:
            alerts.append(alert("SlowDatabaseQueries", f"{i:016x}", threshold_seconds=("5", "30")[i % 4 // 2], **pod))
    return alerts


def tree(pid: int) -> list[int]:
    """`pid` and every process under it."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        todo += [int(c) for c in children]
    return found


def rss(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    except OSError:
        return 0


def rollup(pid: int, *fields: str) -> int:
    """The sum of `fields` of the process's smaps_rollup, in bytes."""
    try:
        lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    except OSError:
        return 0
    return sum(int(line.split()[1]) * 1024 for line in lines if line.split(":")[0] in fields)


def uss(pid: int) -> int:
    """The pages only this process holds."""
    return rollup(pid, "Private_Clean", "Private_Dirty")


def pss(pid: int) -> int:
    """Its share of the memory it maps (a page shared by n processes counts 1/n): summed, the real total."""
    return rollup(pid, "Pss")


def command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def fork_servers(pid: int) -> list[int]:
    """The kernel fork servers among the children of `pid` (the kernels they fork run the same command)."""
    try:
        children = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []
    return [c for c in children if "runbooks/forkserver.py" in command(c)]


def kernels(pid: int) -> list[int]:
    """The ready kernels: forked by the fork server (or started as ipykernel processes of their own)."""
    forked = [k for server in fork_servers(pid) for k in tree(server)[1:]]
    return forked + [p for p in tree(pid) if "ipykernel" in command(p)]


def main(count: int) -> None:
    with LocalPostgres() as pg, hold_pools(pg), tempfile.TemporaryDirectory() as tmp:
        params = Path(tmp) / "params.yaml"
        params.write_text(yaml.safe_dump({"dsn": pg.dsn(), "idle_minutes": 0.05}))
        with Service(Path(tmp) / "output", "-f", str(params), workers=2) as serve:
            assert serve.process is not None
            pid = serve.process.pid
            time.sleep(8)  # the three warm kernels ready
            idle, idle_pss = sum(rss(p) for p in tree(pid)), sum(pss(p) for p in tree(pid))
            per_kernel = [(uss(k), rss(k)) for k in kernels(pid)]
            server = [(uss(p), rss(p)) for p in fork_servers(pid)]
            peak, peak_pss, done = idle, idle_pss, threading.Event()

            def sample() -> None:
                nonlocal peak, peak_pss
                while not done.wait(0.05):
                    processes = tree(pid)
                    peak = max(peak, sum(rss(p) for p in processes))
                    peak_pss = max(peak_pss, sum(pss(p) for p in processes))

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            started = time.perf_counter()
            outcomes = serve.post(notification(*storm(count))).json()["alerts"]
            answered = time.perf_counter() - started
            while True:
                runs = httpx.get(f"{serve.url}/runs?limit=1000", headers=serve.headers, timeout=10).json()["runs"]
                if len(runs) == count and all(r["status"] in ("completed", "failed") for r in runs):
                    break
                if time.perf_counter() - started > TIMEOUT:
                    raise SystemExit(f"not every alert had evidence after {TIMEOUT} s: {len(runs)} rows")
                time.sleep(0.05)
            took = time.perf_counter() - started
            done.set()
            sampler.join()
    queued = sum(o["outcome"] == "queued" for o in outcomes)
    completed = sum(r["status"] == "completed" and bool(r["evidence"]) for r in runs)
    evidence = {r["evidence"] for r in runs}
    print(f"{count} distinct alerts, one incident, --workers 2: HTTP answer {answered:.2f} s, {queued} queued")
    print(
        f"  every alert with evidence after {took:.2f} s = {count / took:.1f} alerts/s "
        f"({completed} completed, {len(evidence)} runs answered them)"
    )
    print(
        f"  service + kernels, summed RSS: {idle / 2**20:.0f} MiB idle (3 ready kernels), {peak / 2**20:.0f} MiB peak"
    )
    print(
        f"  the same, summed PSS (shared pages counted once): {idle_pss / 2**20:.0f} MiB idle, "
        f"{peak_pss / 2**20:.0f} MiB peak"
    )
    for own, resident in server:
        print(f"  the kernel fork server: {own / 2**20:.0f} MiB of its own (USS), {resident / 2**20:.0f} MiB RSS")
    for own, resident in per_kernel:
        print(f"  a ready kernel: {own / 2**20:.0f} MiB of its own (USS), {resident / 2**20:.0f} MiB RSS")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
