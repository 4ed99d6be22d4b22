"""The queue of `runbook serve`, both kinds, through their own calls: the SQLite file of one service and the
PostgreSQL table replicas share (on the tests' PostgreSQL). Each alert is claimed by exactly one claimer, also
when many claim at once; only the attempt that holds a row can finish it; a run cut short is claimed again with
the stem of its files; in PostgreSQL a lease that expired is taken over, with no heartbeat."""

from __future__ import annotations

import threading
import time
import uuid

import psycopg
import pytest

from runbooks.alerts.pgqueue import PgQueue
from runbooks.alerts.queue import Entry, Queue
from runbooks.alerts.workers import answered


def entry(fingerprint: str, incident: str = "inc") -> Entry:
    """An alert with parameters of its own: not alike any other (alike ones share a claim: the last test)."""
    parameters = {"alert": fingerprint}
    return Entry(
        fingerprint, "2026-11-26T10:00:00Z", "firing", "queued", "X", incident, "db-slow-queries", parameters, {}
    )


@pytest.fixture
def database(server):
    """A fresh database for one queue on the tests' PostgreSQL; its connection string."""
    name = f"queue_{uuid.uuid4().hex[:12]}"
    with server.connect("postgres", dbname="postgres") as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield server.dsn(dbname=name)


@pytest.fixture(params=["sqlite", "postgresql"])
def opened(request, tmp_path):
    """A factory of queues on one store: each call is another service (SQLite) or replica (PostgreSQL)."""
    made = []

    def open_queue(lease: float = 600.0):
        if request.param == "sqlite":
            queue = Queue(tmp_path / "q.sqlite3")
        else:
            queue = PgQueue(request.getfixturevalue("database"), lease)
        made.append(queue)
        return queue

    open_queue.kind = request.param
    yield open_queue
    for queue in made:
        queue.close()


def test_each_alert_is_recorded_once_claimed_once_and_finished_only_by_its_attempt(opened):
    queue = opened()
    assert queue.add([entry("1"), entry("2"), entry("1")]) == [True, True, False]
    assert queue.add([entry("2")]) == [False]  # re-sent: nothing changes
    first, second = queue.claim(), queue.claim()
    assert (first.id, second.id, first.attempts) == (1, 2, 1) and queue.claim() is None
    assert queue.started(first, "20261126T100000Z-db-slow-queries")
    assert queue.finish(first, "completed", "/x.evidence.json", None)
    assert not queue.finish(first, "failed", None, "again")  # finished: no attempt holds it now
    assert queue.depth() == {"queued": 0, "running": 1}
    runs = {r["id"]: r for r in queue.recent_runs(10)}
    assert (runs[1]["status"], runs[1]["evidence"], runs[2]["status"]) == ("completed", "/x.evidence.json", "running")
    assert runs[2]["replica"] == queue.owner
    queue.add([entry("3")])
    assert queue.claim().attempts == 1  # listing the runs leaves the queue's connections as they were


def test_a_run_released_or_cut_short_is_claimed_again_with_the_files_of_its_last_attempt(opened):
    queue = opened()
    queue.add([entry("1")])
    job = queue.claim()
    queue.started(job, "20261126T100000Z-db-slow-queries")
    assert queue.release(job)  # ended by a stop
    again = queue.claim()
    assert (again.id, again.attempts, again.files, again.retried) == (
        job.id,
        2,
        "20261126T100000Z-db-slow-queries",
        True,
    )
    assert not queue.finish(job, "completed", None, None)  # the earlier attempt cannot finish it any more
    assert queue.finish(again, "completed", None, None)


def test_a_restarted_sqlite_service_queues_again_what_the_last_stop_cut_short(tmp_path):
    queue = Queue(tmp_path / "q.sqlite3")
    queue.add([entry("1"), entry("2")])
    done, cut_short = queue.claim(), queue.claim()
    queue.finish(done, "completed", None, None)
    assert Queue(tmp_path / "q.sqlite3").recover() == 1  # the next start
    again = queue.claim()
    assert (again.id, again.attempts) == (cut_short.id, 2)


def test_many_claimers_at_once_claim_each_alert_exactly_once(opened):
    queues = [opened() for _ in range(4)]
    queues[0].add([entry(f"{n:04d}") for n in range(60)])
    claimed: list[int] = []
    lock = threading.Lock()

    def claimer(queue):
        while (job := queue.claim()) is not None:
            with lock:
                claimed.append(job.id)
            queue.finish(job, "completed", None, None)

    threads = [threading.Thread(target=claimer, args=(q,)) for q in queues for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(claimed) == list(range(1, 61))  # every alert, none twice
    assert queues[0].depth() == {"queued": 0, "running": 0}


def test_postgresql_takes_over_a_run_whose_lease_expired_and_only_then(database):
    dead, alive = PgQueue(database, lease=2), PgQueue(database, lease=2)
    try:
        dead.add([entry("1")])
        job = dead.claim()
        dead.started(job, "20261126T100000Z-db-slow-queries")
        assert alive.claim() is None  # leased: not claimable while the lease runs
        time.sleep(2.2)  # the replica died: no heartbeat, the lease just runs out
        taken = alive.claim()
        assert (taken.id, taken.attempts, taken.files) == (job.id, 2, "20261126T100000Z-db-slow-queries")
        assert not dead.finish(job, "completed", None, None)  # the slow replica cannot overwrite its successor
        assert alive.finish(taken, "completed", None, None)
        runs = alive.recent_runs(5)
        assert runs[0]["replica"] == alive.owner and runs[0]["attempts"] == 2
    finally:
        dead.close()
        alive.close()


def test_one_replica_leads_until_its_connection_ends(database):
    first, second = PgQueue(database, lease=60), PgQueue(database, lease=60)
    try:
        assert first.lead() and first.lead() and not second.lead()
        first.close()  # its session ends: the advisory lock goes with it
        assert second.lead()
    finally:
        second.close()


def test_the_queue_password_is_never_shown(server, database, admin_password):
    name = psycopg.conninfo.conninfo_to_dict(database)["dbname"]
    dsn = f"postgresql://autolytiq_admin:{admin_password}@127.0.0.1:{server.port}/{name}"
    queue = PgQueue(dsn, lease=60)
    try:
        assert admin_password not in queue.where and queue.where.startswith("postgresql://autolytiq_admin:")
        assert admin_password not in queue.describe(psycopg.OperationalError(f"failed for {dsn}"))
        queue.add([entry("1")])
        assert queue.claim().id == 1
    finally:
        queue.close()


def test_alike_alerts_are_claimed_together_and_each_row_gets_the_runs_evidence(opened):
    queue = opened()
    alerts = [
        {"fingerprint": f"{n:016x}", "startsAt": "2026-11-26T10:00:00Z", "labels": {"pod": f"p-{n}"}} for n in range(5)
    ]

    def entry(alert, incident="inc", parameters=None):
        fingerprint = alert["fingerprint"]
        params = parameters or {"min_duration_seconds": 1}
        return Entry(
            fingerprint, alert["startsAt"], "firing", "queued", "X", incident, "db-slow-queries", params, alert
        )

    queue.add(
        [
            entry(alerts[0]),
            entry(alerts[1]),
            entry(alerts[2], parameters={"min_duration_seconds": 2}),  # other parameters: a run of its own
            entry({**alerts[3], "fingerprint": "f" * 16}, incident="other"),  # another incident: a run of its own
            entry(alerts[4]),
        ]
    )
    first = queue.claim()
    assert (first.id, [job.id for job in first.alike]) == (1, [2, 5])
    assert {job.attempts for job in (first, *first.alike)} == {1}
    assert [(job.id, job.alike) for job in (queue.claim(), queue.claim())] == [(3, ()), (4, ())]
    assert queue.claim() is None
    assert [a["fingerprint"] for a in answered(first)["alike"]] == [alerts[1]["fingerprint"], alerts[4]["fingerprint"]]
    for job in (first, *first.alike):
        assert queue.finish(job, "completed", "/x.evidence.json", None)
    states = {r["id"]: (r["status"], r["evidence"]) for r in queue.recent_runs(10)}
    assert [states[i] for i in (1, 2, 5)] == [("completed", "/x.evidence.json")] * 3
    assert states[3][0] == states[4][0] == "running"
