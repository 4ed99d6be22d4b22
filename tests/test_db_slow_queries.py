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


def test_a_role_without_pg_read_all_stats_is_told_what_it_cannot_see(server, run_runbook):
    with server.connect() as admin:
        admin.execute("REVOKE pg_read_all_stats FROM tax_service")
    with long_query(server, 30, application="monthly-report"):
        time.sleep(1.2)
        outcome = run_runbook(RUNBOOK, "-p", "dsn", server.dsn("tax_service"), "-p", "min_duration_seconds", "1")
    assert outcome.exit_code == 0, outcome.stderr
    findings = outcome.findings()
    hidden = findings["sessions-not-visible"]
    assert hidden["severity"] == "warning" and hidden["data"]["missing"] == "pg_read_all_stats"
    assert hidden["data"]["hidden_sessions"] >= 1
    assert "among the sessions this role can see" in findings["long-running-queries"]["summary"]


def test_prepared_transaction_is_named_as_root_blocker_and_sampling_shows_what_runs_now(server, run_runbook):
    from runbooks_sandbox.incidents import prepared_transaction_blocking

    run_slow_statements(server, times=3)  # before the sample: counted since the reset, not "right now"
    with prepared_transaction_blocking(server, "xa-invoice-42"):
        outcome = run_runbook(RUNBOOK, "-p", "dsn", server.dsn(), "-p", "sample_seconds", "0.5")
    assert outcome.exit_code == 0, outcome.stderr
    findings = outcome.findings()
    root = findings["root-blocker"]
    assert root["data"]["pid"] == 0 and root["data"]["gid"] == "xa-invoice-42"
    assert root["summary"].startswith("prepared transaction xa-invoice-42")
    assert "since pg_stat_statements was last reset" in findings["top-statements"]["summary"]
    assert findings["slow-right-now"]["data"]["sampled_seconds"] == 0.5
    assert "customer_id" not in str(findings["slow-right-now"]["data"]["statements"])
