"""`runbook run db-connection-pool-exhausted` against a server whose pool is really exhausted."""

import time

import jsonschema

from runbooks.chain import sha256
from runbooks.evidence import schema
from runbooks_sandbox.incidents import Pool, hold_pools, long_query

RUNBOOK = "db-connection-pool-exhausted"
IDLE = "0.02"  # minutes (1.2 s): induced sessions age past it within the test


def check_evidence(outcome):
    """The evidence file fits its schema and its hashes match the files beside it."""
    record = outcome.evidence
    jsonschema.validate(record, schema())
    for artifact in record["artifacts"]:
        assert sha256(outcome.evidence_path.parent / artifact["path"]) == artifact["sha256"]
    assert {a["path"].rsplit(".", 1)[-1] for a in record["artifacts"]} == {"ipynb", "html"}
    return record


def test_exhausted_pool_is_diagnosed_through_a_reserved_slot_and_nothing_is_terminated(
    server, run_runbook, client_pids
):
    with hold_pools(server) as held:
        time.sleep(1.5)
        outcome = run_runbook(RUNBOOK, "-p", "dsn", server.dsn(), "-p", "idle_minutes", IDLE, "--incident", "INC-42")
        assert set(held.pids()) <= client_pids()  # no apply: every targeted session is alive

    assert outcome.exit_code == 0, outcome.stderr
    record = check_evidence(outcome)
    assert outcome.evidence_path.parent.name == "INC-42"
    assert record["status"] == "completed" and record["error"] is None
    assert record["parameters"]["idle_minutes"] == 0.02 and record["parameters"]["apply"] is False
    findings = outcome.findings()
    assert findings["pool-usage"]["severity"] == "critical"
    assert findings["pool-usage"]["data"]["client_connections"] == 17
    assert findings["top-application"]["data"]["application"] == "deal-service"
    assert findings["top-idle-application"]["data"]["application"] == "deal-service"
    assert {a["mode"] for a in record["actions"]} == {"dry-run"}
    listed = {int(a["target"].split()[1]) for a in record["actions"]}
    assert listed == set(held.pids())


def test_apply_terminates_exactly_the_old_idle_sessions(server, run_runbook, client_pids):
    # Threshold 6 s: the old sessions are past it; the fresh ones stay under it while the kernel starts,
    # and the old but busy report is not idle at all.
    with (
        hold_pools(server, [Pool("deal-service", "deal_service", 4, in_transaction=1)]) as old,
        long_query(server, 60) as busy,
    ):
        time.sleep(6.5)
        with hold_pools(server, [Pool("tax-service", "tax_service", 3)]) as fresh:
            before = client_pids()
            outcome = run_runbook(
                RUNBOOK, "-p", "dsn", server.dsn(), "-p", "idle_minutes", "0.1", "-p", "apply", "true"
            )
            time.sleep(0.3)
            after = client_pids()

    assert outcome.exit_code == 0, outcome.stderr
    actions = check_evidence(outcome)["actions"]
    assert {(a["mode"], a["result"]) for a in actions} == {("applied", "done")}
    assert {int(a["target"].split()[1]) for a in actions} == set(old.pids())
    assert before - after == set(old.pids())
    assert set(fresh.pids() + busy.pids()) <= after


def test_when_every_slot_is_taken_the_run_fails_at_connect_and_says_why(server, run_runbook):
    with hold_pools(server):
        admins = [server.connect() for _ in range(server.superuser_reserved)]
        try:
            outcome = run_runbook(RUNBOOK, "-p", "dsn", server.dsn())
        finally:
            for conn in admins:
                conn.close()

    assert outcome.exit_code == 1
    assert "too many clients" in outcome.stderr and "Traceback" not in outcome.stderr
    record = check_evidence(outcome)
    assert record["status"] == "failed"
    assert record["error"]["ename"] == "DatabaseUnreachable"
    assert "too many clients" in record["error"]["evalue"] and "scale down" in record["error"]["evalue"]
    notebook = (outcome.evidence_path.parent / record["artifacts"][0]["path"]).read_text()
    assert "DatabaseUnreachable" in notebook  # the partial notebook shows where it stopped


def test_password_in_dsn_is_used_but_written_nowhere(server, run_runbook, admin_password):
    # Over TCP the server asks for the password: the run only completes if libpq got it.
    outcome = run_runbook(RUNBOOK, "-p", "dsn", server.tcp_dsn(password=admin_password))
    assert outcome.exit_code == 0, outcome.stderr
    assert check_evidence(outcome)["parameters"]["dsn"].count("password") == 0
    written = list(outcome.evidence_path.parent.iterdir())
    assert len(written) == 3
    for path in written:
        assert admin_password not in path.read_text(), path.name
    assert admin_password not in outcome.stdout + outcome.stderr


def test_run_as_a_role_without_pg_read_all_stats_counts_the_sessions_it_cannot_see(server, run_runbook):
    """Other roles' sessions read backend_type and state NULL to this role: the pool is still seen full."""
    with server.connect() as admin:
        admin.execute("REVOKE pg_read_all_stats FROM reporting")
    pools = [Pool("deal-service", "deal_service", 10), Pool("customer-service", "customer_service", 6)]
    with hold_pools(server, pools):  # 16 of 17 ordinary slots, the runbook's session takes the 17th
        outcome = run_runbook(RUNBOOK, "-p", "dsn", server.dsn("reporting"))
    assert outcome.exit_code == 0, outcome.stderr
    usage = outcome.findings()["pool-usage"]
    assert usage["data"]["client_connections"] == 16 and usage["data"]["hidden_sessions"] == 16
    assert usage["severity"] == "warning"  # 16 of 17: near exhaustion, not "ok" with 0 visible
    assert "GRANT pg_read_all_stats TO reporting" in usage["summary"]
    assert outcome.findings()["top-application"]["data"]["application"] == "deal-service"


def test_refusals_get_advice_that_fits_the_server(server):
    """The words of PostgreSQL 15 and 16 and of a managed service (RDS names its own reserved role)."""
    from runbooks.postgres.session import _explain

    class Refused(Exception):
        pass

    def advice(dsn, message):
        return _explain(dsn, Refused(f"connection failed: FATAL:  {message}"))  # type: ignore[arg-type]

    pg16 = "remaining connection slots are reserved for roles with the SUPERUSER attribute"
    assert "superuser role in dsn" in advice("host=db.internal", pg16)
    reserved = (
        'remaining connection slots are reserved for roles with privileges of the "pg_use_reserved_connections" role'
    )
    assert "GRANT pg_use_reserved_connections" in advice("host=db.internal", reserved)
    rds = 'remaining connection slots are reserved for roles with privileges of the "rds_reserved" role'
    assert "provider's own administrative role" in advice("host=prod.abc.eu-west-1.rds.amazonaws.com", rds)
    managed = advice("host=prod.abc.eu-west-1.rds.amazonaws.com", pg16)
    assert (
        "Amazon RDS gives no customer role the SUPERUSER attribute" in managed
        and "superuser role in dsn" not in managed
    )
    assert "scale down" in advice("host=/cloudsql/proj:region:db", "sorry, too many clients already")


def test_a_full_pool_with_no_session_idle_long_enough_says_so_and_what_to_try():
    import pandas as pd

    from runbooks.diagnoses import db_connection_pool_exhausted
    from runbooks.postgres.connections import PoolUsage

    usage = PoolUsage(max_connections=20, superuser_reserved=3, role_reserved=0, client_connections=16)
    by_app = pd.DataFrame(
        {"application": ["deal-service", "tax-service"], "user": ["d", "t"], "state": ["active", "idle"]}
        | {"connections": [10, 6]}
    )
    idle = pd.DataFrame(columns=["pid", "application", "user", "client_addr", "state", "idle_for"])
    found = {f.id: f for f in db_connection_pool_exhausted.assess(usage, by_app, idle, 10)}
    assert "94 %" in found["pool-usage"].summary
    stale = found["stale-idle-sessions"]
    assert stale.severity == "warning"
    assert stale.summary.startswith("0 sessions idle for more than 10 min (0 of them idle in transaction): the ")
    assert "would end none" in stale.summary and "-p idle_minutes 2" in stale.summary
    assert "deal-service (it holds 10)" in stale.summary and "PgBouncer" in stale.summary
