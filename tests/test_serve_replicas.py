"""Two `runbook serve` replicas, real processes, on one PostgreSQL queue: a burst of alerts spread over both, one
replica killed with SIGKILL mid-run. The other takes its run over once the lease expires; every alert ends with
exactly one completed evidence file, and `runbook verify` finds every incident intact."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import uuid
from collections import Counter

import psycopg
import yaml

from serving import LIB, Service, alert, notification, wait_for

TIMEOUT, LEASE = 20, 35  # the lease must outlast a run's time limit (serve checks it)


def test_two_replicas_share_the_burst_and_the_survivor_takes_over_the_run_of_the_one_killed(server, tmp_path):
    name = f"queue_{uuid.uuid4().hex[:12]}"
    with server.connect("postgres", dbname="postgres") as conn:
        conn.execute(f"CREATE DATABASE {name}")
    dsn = server.dsn(dbname=name)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"dsn": server.dsn()}))
    output = tmp_path / "output"
    options = ("-f", str(params), "--queue", dsn, "--timeout", str(TIMEOUT), "--lease", str(LEASE))
    groups = {  # two alert groups: two incidents, three alerts each
        group: [
            alert("DatabaseConnectionPoolExhausted", f"{group}{n:015x}", namespace="autolytiq-prod", pod=f"p{n}")
            for n in range(3)
        ]
        for group in "ab"
    }

    first, second = Service(output, *options), Service(output, *options)
    first.start()
    second.start()
    try:
        for group, alerts in groups.items():  # each alert reaches one replica or the other
            for n, sent in enumerate(alerts):
                replica = (first, second)[n % 2]
                answer = replica.post(notification(sent, group_key=f'{{}}:{{group="{group}"}}'))
                assert answer.status_code == 202 and answer.json()["alerts"][0]["outcome"] == "queued"
        killed = f"{socket.gethostname()}:{first.process.pid}"
        victim = wait_for(  # under way and its files named: claimed alone (its kernel not yet taken), there is
            # nothing of it to settle, and the attempt after it simply runs
            lambda: next(
                (r for r in second.runs() if r["status"] == "running" and r["replica"] == killed and r["files"]), None
            ),
            what="a run of the first replica under way",
        )
        first.kill()  # SIGKILL mid-run: no stop, no evidence written, its lease still held

        runs = wait_for(
            lambda: (r := second.runs()) and len(r) == 6 and all(x["status"] == "completed" for x in r) and r,
            timeout=LEASE + 6 * TIMEOUT,
            what="every alert run to the end",
        )
        log = second.log()
    finally:
        first.stop()
        second.stop()

    by_id = {r["id"]: r for r in runs}
    assert by_id[victim["id"]]["attempts"] == 2 and by_id[victim["id"]]["replica"] != killed  # taken over
    assert f"run {victim['id']}: attempt 2 (the one before was cut short)" in log
    assert {r["replica"] for r in runs} >= {killed.rsplit(":", 1)[0] + f":{second.process.pid}"}
    records = [json.loads(p.read_text()) for p in output.glob("*/*.evidence.json")]
    completed = Counter(  # a run answers its alert and the alike ones it claimed with it
        a["fingerprint"]
        for r in records
        if r["status"] == "completed"
        for a in (r["alert"], *r["alert"].get("alike", []))
    )
    assert completed == Counter(a["fingerprint"] for alerts in groups.values() for a in alerts)  # each exactly once
    (cut_short,) = [r for r in records if r["status"] == "failed"]  # the killed run, as far as it got
    assert cut_short["alert"]["fingerprint"] == victim["fingerprint"]
    assert cut_short["artifacts"][0]["path"] == f"{victim['files']}.ipynb"  # its own partial notebook
    assert cut_short["error"]["ename"] == "Interrupted"
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT state, count(*) FROM runbook_alerts GROUP BY state").fetchall() == [
            ("completed", 6)
        ]
    folders = sorted({p.parent for p in output.glob("*/*.evidence.json")})
    assert len(folders) == 2
    for folder in folders:
        verify = subprocess.run(
            [sys.executable, "-m", "runbooks.cli", "verify", folder.name, "--output-dir", str(output)],
            env={"PYTHONPATH": LIB, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert verify.returncode == 0, verify.stdout + verify.stderr
