"""`runbook run db-slow-queries` against real lock chains, long queries and pg_stat_statements."""

import time

import pytest

from runbooks_sandbox.incidents import blocking_chain, long_query, run_slow_statements

RUNBOOK = "db-slow-queries"


@pytest.fixture
def incident(server):
    """A lock chain rooted at deal-service, a 60 s report, and a slow statement run 5 times."""
    run_slow_statements(server, times=5)
    with blocking_chain(server) as chain, long_query(server, 60, application="monthly-report") as report:
        time.sleep(1.2)
        yield chain, report


def test_findings_name_the_root_blocker_the_long_query_and_the_slow_statement(
    server, incident, run_runbook, client_pids
):
    chain, report = incident
    outcome = run_runbook(
        RUNBOOK, "-p", "dsn", server.dsn(), "-p", "min_duration_seconds", "1", "-p", "cancel_longer_than_seconds", "1"
    )
    assert outcome.exit_code == 0, outcome.stderr
    findings = outcome.findings()
    assert findings["root-blocker"]["data"]["pid"] == chain.pids("deal-service")[0]
    assert findings["root-blocker"]["data"]["state"] == "idle in transaction"
    assert findings["root-blocker"]["data"]["sessions_blocked"] == 2
    assert set(report.pids()) <= set(findings["long-running-queries"]["data"]["pids"])
    assert "FROM deals WHERE customer_id" in findings["top-statements"]["summary"]
    assert "public.deals" in findings["missing-index-hints"]["summary"]
    # Without apply: the cancellations are listed, none happened.
    actions = outcome.evidence["actions"]
    assert {a["mode"] for a in actions} == {"dry-run"}
    assert set(report.pids()) <= {int(a["target"].split()[1]) for a in actions}
    assert not report.errors and not chain.errors
    assert set(report.pids() + chain.pids()) <= client_pids()


def test_apply_cancels_exactly_the_listed_active_queries(server, incident, run_runbook, client_pids):
    chain, report = incident
    outcome = run_runbook(
        RUNBOOK,
        "-p",
        "dsn",
        server.dsn(),
        "-p",
        "min_duration_seconds",
        "1",
        "-p",
        "cancel_longer_than_seconds",
        "1",
        "-p",
        "apply",
        "true",
    )
    assert outcome.exit_code == 0, outcome.stderr
    actions = outcome.evidence["actions"]
    assert {(a["mode"], a["result"]) for a in actions} == {("applied", "done")}
    cancelled = {int(a["target"].split()[1]) for a in actions}
    # The report and the two waiting sessions were active; the idle-in-transaction holder runs nothing.
    assert cancelled == set(report.pids() + chain.pids("customer-service") + chain.pids("reporting"))
    report.threads[0].join(timeout=5)
    assert type(report.errors[0]).__name__ == "QueryCanceled"
    assert chain.pids("deal-service")[0] in client_pids()  # cancel never terminates a session


def test_without_pg_stat_statements_the_rest_still_runs(server, run_runbook):
    with long_query(server, 30):
        time.sleep(1.2)
        outcome = run_runbook(RUNBOOK, "-p", "dsn", server.dsn(dbname="postgres"), "-p", "min_duration_seconds", "1")
    assert outcome.exit_code == 0, outcome.stderr
    findings = outcome.findings()
    assert "CREATE EXTENSION pg_stat_statements" in findings["top-statements"]["summary"]
    assert findings["long-running-queries"]["severity"] == "warning"
    assert outcome.evidence["actions"] == []
