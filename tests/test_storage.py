"""`--output-dir s3://BUCKET/PREFIX` against an S3-compatible server on loopback (moto's standalone server) through
the real client over HTTP: `run`, `open`/`seal`, `verify`, `report` and `comms` work through a local spool and the
store; what cannot be uploaded stays in the spool and goes up with the next push; two replicas appending to one
incident at once, each through its own spool, never fork its chain (the incident's advisory lock)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import uuid

import pytest
import yaml

from objectstore import S3Server, with_store
from runbooks import chain, storage
from runbooks.alerts.pgqueue import PgQueue
from serving import LIB, Service, alert, free_port, notification, wait_for

INCIDENT = "INC-4242"


@pytest.fixture
def s3(tmp_path):
    with S3Server(tmp_path) as server:
        yield server


@pytest.fixture
def mounts(monkeypatch):
    """This test's stores only: none left mounted for the next test."""
    monkeypatch.setattr(storage, "_mounted", {})
    monkeypatch.setattr(storage, "_incident_lock", None)


def runbook(s3: S3Server, spool, *args: str) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": LIB, "PATH": "/usr/bin:/bin", "HOME": str(spool), **s3.environment}
    env["RUNBOOK_SPOOL"] = str(spool)
    return subprocess.run(
        [sys.executable, "-m", "runbooks.cli", *args], env=env, capture_output=True, text=True, timeout=300
    )


def test_run_seal_verify_report_and_comms_work_on_an_object_store(s3, server, tmp_path):
    bucket = s3.bucket()
    store = f"s3://{bucket}/prod/evidence"
    ran = runbook(
        s3, tmp_path / "spool-a", "run", "db-slow-queries", "-p", "dsn", server.dsn(), "--incident", INCIDENT,
        "--output-dir", store,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    objects = s3.objects(bucket)
    stem = ran.stdout.strip().splitlines()[-1].rsplit("/", 1)[1].removesuffix(".evidence.json")
    for suffix in (".ipynb", ".html", ".evidence.json"):  # the run's three files, in the store
        assert f"prod/evidence/{INCIDENT}/{stem}{suffix}" in objects
    assert json.loads(objects[f"prod/evidence/{INCIDENT}/{stem}.evidence.json"])["status"] == "completed"

    # Another machine (another spool): a working copy opened there is sealed from a third one.
    opened = runbook(s3, tmp_path / "spool-b", "open", "db-slow-queries", "--incident", INCIDENT, "--no-lab",
                     "-p", "dsn", server.dsn(), "--output-dir", store)  # fmt: skip
    assert opened.returncode == 0, opened.stderr
    sealed = runbook(s3, tmp_path / "spool-c", "seal", INCIDENT, "--output-dir", store)
    assert sealed.returncode == 0, sealed.stderr
    assert sealed.stdout.strip().endswith(".evidence.json")

    # verify reads what the store holds: from a fresh spool, the chain of both machines' records is whole.
    verified = runbook(s3, tmp_path / "spool-d", "verify", INCIDENT, "--output-dir", store)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"{INCIDENT}: intact: 2 evidence files" in verified.stdout
    reported = runbook(s3, tmp_path / "spool-d", "report", INCIDENT, "--output-dir", store)
    assert reported.returncode == 0, reported.stderr
    assert f"prod/evidence/{INCIDENT}/review.md" in s3.objects(bucket)  # uploaded when the command ended
    said = runbook(s3, tmp_path / "spool-e", "comms", INCIDENT, "--kind", "slack-update", "--output-dir", store)
    assert said.returncode == 0, said.stderr
    assert INCIDENT in said.stdout

    # A change made in the store is caught by verify, which reads the store.
    import s3fs

    credentials = {"key": s3.environment["AWS_ACCESS_KEY_ID"], "secret": s3.environment["AWS_SECRET_ACCESS_KEY"]}
    fs = s3fs.S3FileSystem(endpoint_url=s3.url, **credentials)
    fs.pipe_file(f"{bucket}/prod/evidence/{INCIDENT}/{stem}.html", b"<p>edited</p>")
    tampered = runbook(s3, tmp_path / "spool-f", "verify", INCIDENT, "--output-dir", store)
    assert tampered.returncode == 3 and f"{stem}.html" in tampered.stdout


def test_a_bucket_that_is_not_there_or_a_bad_url_is_one_line_exit_2(s3, tmp_path):
    missing = runbook(s3, tmp_path / "spool", "verify", INCIDENT, "--output-dir", "s3://no-such-bucket/x")
    assert (
        missing.returncode == 2 and missing.stderr.count("\n") == 1 and "no bucket 'no-such-bucket'" in missing.stderr
    )
    bad = runbook(s3, tmp_path / "spool", "verify", INCIDENT, "--output-dir", "s3://Bad_Bucket/../x")
    assert bad.returncode == 2 and "expected s3://BUCKET/PREFIX" in bad.stderr


def test_files_written_while_the_store_is_unreachable_stay_in_the_spool_and_go_up_with_the_next_push(
    s3, tmp_path, monkeypatch, mounts
):
    bucket = s3.bucket()
    with_store(monkeypatch, s3, tmp_path / "spool")
    spool = storage.mount(f"s3://{bucket}/p")
    folder = spool / INCIDENT
    folder.mkdir()
    store = storage.store_of(folder)
    monkeypatch.setattr(storage, "BACKOFF_SECONDS", 0.01)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    store._fs = None
    head = chain.append(folder / "alerts.jsonl", {"event": "queued"})  # the write itself succeeds
    assert (folder / "alerts.jsonl").exists() and storage.push(folder) == [INCIDENT]  # left to upload
    assert s3.objects(bucket) == {}

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.url)  # the store answers again
    store._fs = None
    chain.append(folder / "alerts.jsonl", {"event": "resolved"})  # the next write pushes both lines
    lines = s3.objects(bucket)[f"p/{INCIDENT}/alerts.jsonl"].decode().splitlines()
    assert len(lines) == 2 and json.loads(lines[1])["chain"]["previous"]["sha256"] == head.sha256


def test_two_replicas_appending_to_one_incident_at_once_never_fork_its_chain(s3, server, tmp_path, monkeypatch, mounts):
    name = f"queue_{uuid.uuid4().hex[:12]}"
    with server.connect("postgres", dbname="postgres") as conn:
        conn.execute(f"CREATE DATABASE {name}")
    queue = PgQueue(server.dsn(dbname=name), lease=60)
    bucket = s3.bucket()
    with_store(monkeypatch, s3, tmp_path / "spool")
    url = f"s3://{bucket}/p"
    spools = []
    for replica in "ab":  # two machines: two spools of one store, no flock in common
        monkeypatch.setenv("RUNBOOK_SPOOL", str(tmp_path / f"spool-{replica}"))
        spools.append(storage.mount(url))
    storage.set_incident_lock(queue.incident_lock)
    errors = []

    def replica(spool, count):
        folder = spool / INCIDENT
        folder.mkdir(exist_ok=True)
        try:
            for n in range(count):
                chain.append(folder / "alerts.jsonl", {"event": "queued", "replica": spool.name, "n": n})
        except Exception as e:  # reported below
            errors.append(e)

    try:
        threads = [threading.Thread(target=replica, args=(spool, 8)) for spool in spools]
        for t in threads:
            t.start()
        for t in threads:
            t.join(240)
    finally:
        queue.close()
    assert errors == []
    monkeypatch.setenv("RUNBOOK_SPOOL", str(tmp_path / "spool-reader"))
    reader = storage.mount(url)
    storage.pull_all(reader)  # as the replica that escalates does: every incident of the store
    result = chain.verify(reader / INCIDENT)
    assert result.intact, result.problems
    assert result.log_lines == 16  # every line of both replicas, one chain


def test_two_serve_replicas_with_their_own_spools_keep_one_incident_in_the_store(s3, server, tmp_path):
    name = f"queue_{uuid.uuid4().hex[:12]}"
    with server.connect("postgres", dbname="postgres") as conn:
        conn.execute(f"CREATE DATABASE {name}")
    bucket = s3.bucket()
    store = f"s3://{bucket}/alerts"
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"dsn": server.dsn()}))
    replicas = []
    for n in range(2):  # two pods: nothing on disk in common
        replica = Service(tmp_path / f"unused-{n}", "-f", str(params), "--queue", server.dsn(dbname=name))
        replica.args[replica.args.index("--output-dir") + 1] = store
        replica.env |= {**s3.environment, "RUNBOOK_SPOOL": str(tmp_path / f"spool-{n}")}
        replicas.append(replica)
    fingerprints = [f"{n:016x}" for n in range(1, 5)]
    try:
        for replica in replicas:
            replica.start()
        for n, fingerprint in enumerate(fingerprints):  # one alert group: one incident, its alerts on both replicas
            # each at a threshold of its own: a run each (alike alerts would share one)
            sent = alert("SlowDatabaseQueries", fingerprint, namespace="autolytiq-prod", threshold_seconds=str(n + 1))
            assert replicas[n % 2].post(notification(sent)).status_code == 202
        wait_for(
            lambda: (r := replicas[0].runs()) and len(r) == 4 and all(x["status"] == "completed" for x in r),
            timeout=300,
            what="every run",
        )
    finally:
        for replica in replicas:
            replica.stop()
    objects = s3.objects(bucket)
    evidence = [json.loads(data) for key, data in objects.items() if key.endswith(".evidence.json")]
    assert sorted(e["alert"]["fingerprint"] for e in evidence) == fingerprints
    (incident,) = {key.split("/")[1] for key in objects}
    assert len(objects[f"alerts/{incident}/alerts.jsonl"].splitlines()) == 4  # each replica's lines, one log
    verified = runbook(s3, tmp_path / "spool-reader", "verify", incident, "--output-dir", store)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "intact: 4 evidence files, 4 incident log lines" in verified.stdout
