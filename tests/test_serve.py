"""`runbook serve` as a real process against the test PostgreSQL: runs land in the incident folder with
the alert in their evidence; killed with -9 mid-queue and restarted, it loses nothing and runs nothing
twice; concurrent runs get the dsn's password without it being written anywhere."""

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from runbooks import chain, incident, review
from runbooks.alerts import service
from runbooks.evidence import schema
from serving import LIB, TOKEN, Service, alert, notification, wait_for

FINGERPRINTS = ["00000000000000a1", "00000000000000a2", "00000000000000a3"]


def params_file(tmp_path, **values):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(values))
    return str(path)


def evidence_files(output):
    return sorted(output.glob("*/*.evidence.json"))


def states(runs):
    return {r["fingerprint"]: r["status"] for r in runs}


def test_killed_mid_queue_and_restarted_it_loses_nothing_and_runs_nothing_twice(server, tmp_path):
    output = tmp_path / "output"
    params = params_file(tmp_path, dsn=server.dsn())
    payload = notification(  # three thresholds: three runs (alike alerts would share one)
        *(
            alert("SlowDatabaseQueries", f, namespace="autolytiq-prod", threshold_seconds=str(i + 1))
            for i, f in enumerate(FINGERPRINTS)
        )
    )

    first = Service(output, "-f", params, workers=1)
    first.start()
    try:
        assert [o["outcome"] for o in first.post(payload).json()["alerts"]] == ["queued"] * 3
        # Killed while the second alert runs, its files named: one completed, one running, one still queued. (Claimed
        # but waiting for its kernel, the second run would have nothing to settle and leave no failed evidence.)
        wait_for(
            lambda: (
                (r := first.runs())
                and sorted(states(r).values()) == ["completed", "queued", "running"]
                and all(x["files"] for x in r if x["status"] == "running")
            ),
            what="one run completed and the next one under way",
        )
    finally:
        first.kill()
    (done,) = evidence_files(output)

    with Service(output, "-f", params, workers=1) as second:
        resent = second.post(payload).json()["alerts"]  # Alertmanager re-sends the group
        assert [o["outcome"] for o in resent] == ["duplicate"] * 3
        runs = wait_for(
            lambda: (r := second.runs()) and all(x["status"] == "completed" for x in r) and r, what="every alert run"
        )
        assert "queued again" in second.log()

    everything = [json.loads(p.read_text()) for p in evidence_files(output)]
    records = [r for r in everything if r["status"] == "completed"]
    assert sorted(r["alert"]["fingerprint"] for r in records) == FINGERPRINTS  # each ran to the end exactly once
    assert done in evidence_files(output)  # the run completed before the kill was not redone
    # The run the kill cut short is evidence too, as far as it got, and the incident's chain is whole.
    (cut_short,) = [r for r in everything if r["status"] == "failed"]
    assert cut_short["error"]["ename"] == "Interrupted" and cut_short["alert"]["fingerprint"] == FINGERPRINTS[1]
    assert chain.verify(done.parent).intact
    timeline = review.markdown(incident.load(output, done.parent.name), chain.verify(done.parent))
    assert "| Runbook `db-slow-queries` failed: Interrupted: the process running it stopped" in timeline
    assert {r["id"]: r["attempts"] for r in runs} == {1: 1, 2: 2, 3: 1}
    with sqlite3.connect(output / service.QUEUE) as conn:
        assert conn.execute("SELECT state, count(*) FROM alerts GROUP BY state").fetchall() == [("completed", 3)]
    (folder,) = {p.parent for p in evidence_files(output)}  # one group, one incident folder
    assert folder.name == resent[0]["incident"]
    for record in records:
        jsonschema.validate(record, schema())
        assert record["status"] == "completed" and record["parameters"]["dsn"] == server.dsn()
        threshold = record["alert"]["labels"]["threshold_seconds"]
        assert record["alert"]["labels"] == {
            "alertname": "SlowDatabaseQueries",
            "namespace": "autolytiq-prod",
            "threshold_seconds": threshold,
        }
        assert record["parameters"]["min_duration_seconds"] == float(threshold)
        assert record["alert"]["groupKey"] == payload["groupKey"] and "alike" not in record["alert"]
        assert record["findings"]
    log = [json.loads(line) for line in (folder / "alerts.jsonl").read_text().splitlines()]
    assert [line["alert"]["fingerprint"] for line in log] == FINGERPRINTS  # re-sent alerts are not logged again


def test_alike_alerts_of_a_storm_share_one_run_that_answers_each(server, tmp_path):
    """Alerts of one incident waiting for the same runbook with the same parameters are one run; its evidence lists
    the others, and every alert's row points to it."""
    output = tmp_path / "output"
    pools = [alert("DatabaseConnectionPoolExhausted", f"{i:016x}", pod=f"deal-service-{i}") for i in range(6)]
    slow = alert("SlowDatabaseQueries", "00000000000000ff", threshold_seconds="2")
    with Service(output, "-f", params_file(tmp_path, dsn=server.dsn()), workers=1) as serve:
        assert [o["outcome"] for o in serve.post(notification(*pools, slow)).json()["alerts"]] == ["queued"] * 7
        runs = wait_for(
            lambda: (r := serve.runs()) and all(x["status"] == "completed" for x in r) and r, what="every alert run"
        )
    assert len(runs) == 7
    evidence = {r["fingerprint"]: r["evidence"] for r in runs}
    assert len(set(evidence.values())) == 2 == len(evidence_files(output))  # two runs answered seven alerts
    record = json.loads(Path(evidence[pools[0]["fingerprint"]]).read_text())
    jsonschema.validate(record, schema())
    assert record["alert"]["fingerprint"] == pools[0]["fingerprint"]
    assert [(a["fingerprint"], a["labels"]["pod"]) for a in record["alert"]["alike"]] == [
        (a["fingerprint"], a["labels"]["pod"]) for a in pools[1:]
    ]
    assert {evidence[a["fingerprint"]] for a in pools} == {evidence[pools[0]["fingerprint"]]}
    assert "alike" not in json.loads(Path(evidence[slow["fingerprint"]]).read_text())["alert"]
    folder = evidence_files(output)[0].parent
    timeline = review.markdown(incident.load(output, folder.name), chain.verify(folder))
    assert "(answering 5 more alerts of the incident asking for the same run)" in timeline


def test_two_workers_run_at_once_and_the_dsn_password_is_used_but_shown_nowhere(server, tmp_path, admin_password):
    # Over TCP the server asks for the password: a run completes only if libpq got it.
    output = tmp_path / "output"
    params = params_file(tmp_path, dsn=server.tcp_dsn(password=admin_password))
    with Service(output, "-f", params, workers=2) as serve:
        serve.post(notification(alert("DatabaseConnectionPoolExhausted", "00000000000000b1")))
        serve.post(notification(alert("SlowDatabaseQueries", "00000000000000b2", threshold_seconds="0.5")))
        wait_for(lambda: list(states(serve.runs()).values()).count("running") == 2, what="both runs at once")
        runs = wait_for(
            lambda: (r := serve.runs()) and all(x["status"] == "completed" for x in r) and r, what="both runs completed"
        )
        listed = json.dumps(runs)

    assert len(runs) == 2 and len(evidence_files(output)) == 2
    slow = json.loads(next(p for p in evidence_files(output) if "slow" in p.name).read_text())
    assert slow["parameters"]["min_duration_seconds"] == 0.5  # from the alert's label
    assert admin_password not in listed + serve.log()
    for path in [*output.rglob("*"), *tmp_path.glob("serve-*.log")]:
        if path.is_file() and path.name != "params.yaml":
            assert admin_password.encode() not in path.read_bytes(), path


def serve_command(*args, token=None):
    env = {"PYTHONPATH": LIB, "PATH": "/usr/bin:/bin"}
    if token:
        env["RUNBOOK_WEBHOOK_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "runbooks.cli", "serve", *args], capture_output=True, text=True, env=env, timeout=60
    )


def test_without_a_token_it_refuses_to_start_in_one_line_with_exit_3():
    result = serve_command()
    assert result.returncode == 3
    assert result.stderr.strip().splitlines() == [
        "runbook: RUNBOOK_WEBHOOK_TOKEN is not set: set it to the credentials Alertmanager sends "
        "(http_config.authorization), or pass --insecure-no-auth"
    ]


@pytest.mark.parametrize(
    "content,message",
    [
        ({"dns": "host=x"}, "no routed runbook takes 'dns'"),
        ({"apply": True}, "runs started by alerts only preview"),
    ],
)
def test_a_wrong_parameter_file_is_refused_before_listening_with_exit_2(tmp_path, content, message):
    result = serve_command("-f", params_file(tmp_path, **content), token=TOKEN)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
