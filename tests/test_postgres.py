"""The diagnostic session and every named query, against the real server with induced incidents."""

import time

import psycopg
import pytest

from runbooks import postgres
from runbooks.diagnoses import db_connection_pool_exhausted, db_slow_queries
from runbooks.errors import DatabaseUnreachable
from runbooks.postgres import connections, kill, queries
from runbooks_sandbox.incidents import (
    DEMO_POOLS,
    SLOW_STATEMENT,
    Pool,
    blocking_chain,
    hold_pools,
    long_query,
    parallel_query_blocking,
    prepared_transaction_blocking,
    run_slow_statements,
    shared_lock_holders,
)


@pytest.fixture
def db(server):
    conn = postgres.connect(server.dsn(), runbook="test")
    yield conn
    conn.close()


def test_session_is_read_only_named_and_time_boxed(db):
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        db.execute("UPDATE deals SET status = 'won' WHERE id = 1")
    assert db.execute("SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()").fetchone() == (
        "runbook:test",
    )
    assert db.execute("SHOW statement_timeout").fetchone() == ("10s",)
    assert db.execute("SHOW lock_timeout").fetchone() == ("2s",)


def test_session_keeps_options_given_in_the_dsn(server):
    with postgres.connect(server.dsn(options="-c search_path=pg_catalog"), runbook="test") as conn:
        assert conn.execute("SHOW search_path").fetchone() == ("pg_catalog",)
        assert conn.execute("SHOW default_transaction_read_only").fetchone() == ("on",)


def test_refusal_for_lack_of_ordinary_slots_says_how_to_get_in(server):
    with hold_pools(server):
        with pytest.raises(DatabaseUnreachable, match=r"reserved.*superuser role in dsn"):
            postgres.connect(server.dsn("reporting"), runbook="test")
        postgres.connect(server.dsn(), runbook="test").close()  # a superuser still gets in


def test_refusal_when_every_slot_is_taken_says_why(server):
    with hold_pools(server):
        admins = [server.connect() for _ in range(server.superuser_reserved)]
        try:
            with pytest.raises(DatabaseUnreachable, match=r"too many clients.*scale down"):
                postgres.connect(server.dsn(), runbook="test")
        finally:
            for conn in admins:
                conn.close()


def test_unreachable_server_message_hides_the_password():
    with pytest.raises(DatabaseUnreachable) as caught:
        postgres.connect("host=127.0.0.1 port=1 user=x password=hunter2 connect_timeout=2", runbook="test")
    assert "hunter2" not in str(caught.value) and "Connection refused" in str(caught.value)


def test_pool_usage_counts_everyone_but_the_runbook(server, db):
    with hold_pools(server, [Pool("deal-service", "deal_service", 4), Pool("tax-service", "tax_service", 2)]):
        usage = connections.pool_usage(db)
    assert (usage.max_connections, usage.superuser_reserved, usage.client_connections) == (20, 3, 6)
    assert usage.ordinary_limit == 17 and usage.status == "ok"


def test_exhausted_pool_is_found_with_its_biggest_holder(server):
    # The pools take every ordinary slot first; the superuser session then takes a reserved one.
    with hold_pools(server) as held, postgres.connect(server.dsn(), runbook="test") as db:
        usage = connections.pool_usage(db)
        by_app = connections.by_application(db)
        idle = connections.idle_sessions(db, idle_minutes=0)
    assert usage.client_connections == 17 and usage.status == "exhausted"
    per_app = by_app.groupby("application")["connections"].sum().to_dict()
    assert per_app == {p.application: p.size for p in DEMO_POOLS}
    in_transaction = (
        by_app[by_app["state"] == "idle in transaction"].groupby("application")["connections"].sum().to_dict()
    )
    assert in_transaction == {"deal-service": 2, "tax-service": 1}
    assert set(idle["pid"]) == set(held.pids())
    findings = {f.id: f for f in db_connection_pool_exhausted.assess(usage, by_app, idle, 0)}
    assert findings["pool-usage"].severity == "critical"
    assert findings["top-application"].data["application"] == "deal-service"
    assert findings["top-idle-application"].data["application"] == "deal-service"


def test_idle_threshold_separates_old_sessions_from_fresh_ones(server, db):
    with hold_pools(server, [Pool("old", "deal_service", 2)]) as old:
        time.sleep(1.2)
        with hold_pools(server, [Pool("fresh", "tax_service", 2)]):
            idle = connections.idle_sessions(db, idle_minutes=1 / 60)
    assert set(idle["pid"]) == set(old.pids())


def test_terminate_dry_run_changes_nothing_and_apply_ends_exactly_the_listed(server, db, client_pids):
    with hold_pools(server, [Pool("old", "deal_service", 3, in_transaction=1)]) as old:
        time.sleep(1.2)
        with hold_pools(server, [Pool("fresh", "tax_service", 2)]) as fresh:
            idle = connections.idle_sessions(db, idle_minutes=1 / 60)
            dry = kill.terminate_idle(db, idle, 1 / 60, apply=False)
            assert {a.mode for a in dry} == {"dry-run"} and len(dry) == 3
            assert set(old.pids()) <= client_pids()

            applied = kill.terminate_idle(db, idle, 1 / 60, apply=True)
            assert [a.result for a in applied] == ["done"] * 3
            time.sleep(0.2)
            remaining = client_pids()
            assert not set(old.pids()) & remaining
            assert set(fresh.pids()) <= remaining
    assert db.execute("SELECT 1").fetchone() == (1,)  # never its own session


def test_terminate_skips_a_session_that_became_busy(server, db):
    with hold_pools(server, [Pool("old", "deal_service", 1)]) as old:
        time.sleep(1.2)
        idle = connections.idle_sessions(db, idle_minutes=1 / 60)
        old.sessions["old"][0].execute("SELECT 1")  # busy again: its idle clock restarts
        [action] = kill.terminate_idle(db, idle, 1 / 60, apply=True)
        assert action.result.startswith("skipped")
        assert old.sessions["old"][0].execute("SELECT 2").fetchone() == (2,)


def test_blocking_chain_names_the_root_blocker(server, db):
    with blocking_chain(server) as held:
        chains = queries.blocking(db)
        roots = queries.root_blockers(chains)
    holder = held.pids("deal-service")[0]
    assert {tuple(r) for r in chains["root_blockers"]} == {(f"pid {holder}",)}
    assert set(chains["blocked_pid"]) == set(held.pids("customer-service") + held.pids("reporting"))
    assert list(roots["pid"]) == [holder]
    assert roots.loc[0, "state"] == "idle in transaction" and roots.loc[0, "sessions_blocked"] == 2


def test_long_running_threshold_and_cancel(server, db):
    with long_query(server, 30) as held:
        time.sleep(1.2)
        running = queries.long_running(db, min_duration_seconds=1, limit=10)
        assert list(running["pid"]) == held.pids()
        assert queries.long_running(db, min_duration_seconds=60, limit=10).empty

        assert kill.cancel_long_running(db, running, None, apply=True) == []
        dry = kill.cancel_long_running(db, running, 1, apply=False)
        assert [a.mode for a in dry] == ["dry-run"] and not held.errors
        [applied] = kill.cancel_long_running(db, running, 1, apply=True)
        held.threads[0].join(timeout=5)
    assert applied.result == "done"
    assert isinstance(held.errors[0], psycopg.errors.QueryCanceled)


def test_top_statements_rank_the_slow_statement_first(server, db):
    run_slow_statements(server, times=3)
    top = queries.top_statements(db, limit=5)
    assert top.note is None
    assert top.frame.loc[0, "query"] == SLOW_STATEMENT.replace("%s", "$1", 1).replace("%s", "$2", 1)
    assert top.frame.loc[0, "calls"] == 3 and top.frame.loc[0, "mean_ms"] >= 50


def test_top_statements_rank_by_total_time_since_the_reset_they_show(server, db):
    """Cumulative counters: 40 calls of 10 ms load the server more than 1 call of 200 ms, and say since when."""
    with server.connect() as admin:
        reset_at = admin.execute("SELECT now()").fetchone()[0]
    run_slow_statements(server, times=1, sleep_seconds=0.2)
    with server.connect("reporting") as conn:
        for _ in range(40):
            conn.execute("SELECT pg_sleep(0.01), count(*) FROM dealers")
    top = queries.top_statements(db, limit=5)
    assert "FROM dealers" in top.frame.loc[0, "query"] and top.frame.loc[0, "calls"] == 40
    assert top.frame.loc[1, "mean_ms"] > top.frame.loc[0, "mean_ms"]  # slower on average, less time in all
    assert top.stats_reset is not None and top.stats_reset <= reset_at
    assert "since pg_stat_statements was last reset" in top.counted


def test_two_snapshots_show_what_ran_between_them_only(server, db):
    run_slow_statements(server, times=4)  # before the first snapshot: not "right now"
    before = postgres.session.fetch_frame(db, queries.STATEMENTS_SNAPSHOT)
    with server.connect("reporting") as conn:
        for _ in range(3):
            conn.execute("SELECT pg_sleep(0.02), count(*) FROM dealers")
        conn.execute(SLOW_STATEMENT, (0.01, 1))  # the old statement, once more
    after = postgres.session.fetch_frame(db, queries.STATEMENTS_SNAPSHOT)
    delta = queries.difference(before, after).set_index("query")
    slow = SLOW_STATEMENT.replace("%s", "$1", 1).replace("%s", "$2", 1)
    assert delta.loc[slow, "calls"] == 1  # 5 in all, 1 of them between the snapshots
    dealers = next(q for q in delta.index if "FROM dealers" in q)
    assert delta.loc[dealers, "calls"] == 3 and delta.loc[dealers, "mean_ms"] >= 20


def test_statements_during_samples_for_the_given_seconds(server, db):
    sampled = queries.statements_during(db, 0.3, limit=5)
    assert sampled.sampled_seconds == 0.3 and sampled.counted == "during the last 0.3 s"
    assert queries.statements_during(db, 0, limit=5).frame is None


def test_top_statements_read_the_pre_13_column_names(server, db):
    run_slow_statements(server, times=2)
    with server.connect() as admin:  # the columns as PostgreSQL 12 named them
        admin.execute("CREATE SCHEMA IF NOT EXISTS pg12")
        admin.execute("""CREATE OR REPLACE VIEW pg12.pg_stat_statements AS
                         SELECT dbid, query, calls, mean_exec_time AS mean_time, total_exec_time AS total_time, rows
                         FROM public.pg_stat_statements""")
    try:
        with postgres.connect(server.dsn(options="-c search_path=pg12,public"), runbook="test") as old:
            top = queries.top_statements(old, limit=5)
        assert "customer_id" in top.frame.loc[0, "query"] and top.frame.loc[0, "mean_ms"] >= 50
    finally:
        with server.connect() as admin:
            admin.execute("DROP SCHEMA pg12 CASCADE")


def test_missing_pg_stat_statements_gives_a_note_not_an_error(server):
    with postgres.connect(server.dsn(dbname="postgres"), runbook="test") as conn:
        top = queries.top_statements(conn, limit=5)
    assert top.frame is None and "CREATE EXTENSION pg_stat_statements" in top.note


def test_seq_scans_hint_at_the_table_without_index(server, db):
    run_slow_statements(server, times=3, sleep_seconds=0)
    scans = queries.seq_scans(db, limit=10).set_index("table")
    assert scans.loc["deals", "index_hint"]
    assert not scans.loc["dealers", "index_hint"]  # 20 rows: not worth an index


# --- what a role without pg_read_all_stats sees


@pytest.fixture
def ordinary_role(server):
    """A connection string for `tax_service`: neither superuser nor a member of pg_read_all_stats."""
    with server.connect() as admin:
        admin.execute("REVOKE pg_read_all_stats FROM tax_service")
    return server.dsn("tax_service")


def test_other_roles_sessions_are_counted_though_their_state_is_hidden(server, ordinary_role):
    """PostgreSQL shows other roles' sessions with backend_type and state NULL to such a role: counted anyway."""
    pools = [Pool("deal-service", "deal_service", 9, in_transaction=2), Pool("customer-service", "customer_service", 7)]
    with hold_pools(server, pools), postgres.connect(ordinary_role, runbook="test") as db:
        usage = connections.pool_usage(db)
        by_app = connections.by_application(db)
        idle = connections.idle_sessions(db, idle_minutes=0)
        seen = connections.visibility(db)
    assert usage.client_connections == 16 and usage.hidden_sessions == 16
    assert usage.status == "near exhaustion" and not usage.reads_all_stats and usage.role == "tax_service"
    assert set(by_app["state"]) == {"(not visible)"}
    assert by_app.groupby("application")["connections"].sum().to_dict() == {"deal-service": 9, "customer-service": 7}
    assert idle.empty  # their state is hidden: none can be called idle
    assert seen == usage.visibility and "GRANT pg_read_all_stats TO tax_service" in seen.note
    findings = {f.id: f for f in db_connection_pool_exhausted.assess(usage, by_app, idle, 0)}
    assert findings["pool-usage"].severity == "warning" and "pg_read_all_stats" in findings["pool-usage"].summary
    assert findings["stale-idle-sessions"].data["not_visible"] == 16


def test_granting_pg_read_all_stats_shows_every_session(server, ordinary_role):
    with server.connect() as admin:
        admin.execute("GRANT pg_read_all_stats TO tax_service")
    try:
        with hold_pools(server, [Pool("deal-service", "deal_service", 3)]), postgres.connect(ordinary_role, "t") as db:
            usage = connections.pool_usage(db)
        assert (usage.client_connections, usage.hidden_sessions, usage.reads_all_stats) == (3, 0, True)
        assert usage.visibility.note is None
    finally:
        with server.connect() as admin:
            admin.execute("REVOKE pg_read_all_stats FROM tax_service")


# --- blocking as PostgreSQL reports it: several holders, prepared transactions, parallel queries


def test_every_holder_of_a_shared_lock_is_a_root_and_each_waiter_counts_once(server, db):
    with shared_lock_holders(server) as held:
        chains = queries.blocking(db)
        roots = queries.root_blockers(chains)
    holders = sorted(held.pids("deal-service") + held.pids("tax-service"))
    assert sorted(roots["pid"]) == holders
    assert list(roots["sessions_blocked"]) == [2, 2]  # the exclusive locker and the one queued behind it
    behind = chains[chains["blocked_application"] == "reporting"]
    assert {tuple(r) for r in behind["root_blockers"]} == {tuple(f"pid {p}" for p in holders)}


def test_a_prepared_transaction_blocking_is_kept_as_pid_0_with_its_gid(server, db):
    with prepared_transaction_blocking(server, "xa-deal-7"):
        chains = queries.blocking(db)
        roots = queries.root_blockers(chains)
    assert list(chains["blocking_pid"]) == [0] and list(chains["blocking_gid"]) == ["xa-deal-7"]
    [root] = roots.itertuples()
    assert (root.pid, root.gid, root.state, root.sessions_blocked) == (0, "xa-deal-7", "prepared", 1)
    assert "ROLLBACK PREPARED 'xa-deal-7'" in root.query and "owner deal_service" in root.application
    findings = {
        f.id: f
        for f in db_slow_queries.assess(
            chains.iloc[:0], roots, queries.TopStatements(None, "-"), queries.seq_scans(db, 5), 1
        )
    }
    assert findings["root-blocker"].summary.startswith("prepared transaction xa-deal-7")
    assert findings["root-blocker"].data["gid"] == "xa-deal-7" and findings["root-blocker"].data["pid"] == 0


def test_a_parallel_query_blocking_is_one_root_however_many_workers_hold_the_lock(server, db):
    with parallel_query_blocking(server) as held:
        chains = queries.blocking(db)
        roots = queries.root_blockers(chains)
        with server.connect() as admin:
            named = admin.execute(
                "SELECT pg_blocking_pids(pid) FROM pg_stat_activity WHERE application_name = 'migration'"
            ).fetchone()[0]
    [leader] = held.pids("parallel-report")
    assert set(named) == {leader}  # PostgreSQL names the leader for its workers' locks
    assert list(chains["blocking_pid"]) == [leader]  # one row, however often it was named
    assert list(roots["pid"]) == [leader] and list(roots["sessions_blocked"]) == [1]


# --- behind PgBouncer


def test_runbook_runs_through_pgbouncer(server, run_runbook):
    from runbooks_sandbox.pgbouncer import LocalPgBouncer

    with (
        hold_pools(server, [Pool("deal-service", "deal_service", 4, in_transaction=1)]),
        LocalPgBouncer(server) as bouncer,
    ):
        outcome = run_runbook("db-connection-pool-exhausted", "-p", "dsn", bouncer.dsn(), "-p", "idle_minutes", "0")
    assert outcome.exit_code == 0, outcome.stderr
    findings = outcome.findings()
    assert findings["top-application"]["data"]["application"] == "deal-service"


@pytest.mark.parametrize("ignore_options", [False, True], ids=["options-refused", "options-ignored"])
def test_behind_pgbouncer_queries_are_read_only_and_time_boxed_and_leave_nothing_behind(server, ignore_options):
    """PgBouncer refuses `options` (or drops it silently); in transaction pooling, with one server connection
    for every client, a session-level SET would reach the application's next transaction."""
    from runbooks_sandbox.pgbouncer import LocalPgBouncer

    with LocalPgBouncer(server, pool_mode="transaction", pool_size=1, ignore_options=ignore_options) as bouncer:
        if ignore_options:  # accepted, and without effect
            with psycopg.connect(bouncer.dsn(options="-c statement_timeout=1s"), autocommit=True) as plain:
                assert plain.execute("SHOW statement_timeout").fetchone() == ("0",)
        else:
            with pytest.raises(psycopg.OperationalError, match="unsupported startup parameter: options"):
                psycopg.connect(bouncer.dsn(options="-c statement_timeout=1s"))
        with postgres.connect(bouncer.dsn(), runbook="test") as db:
            assert postgres.session.limits(db) == {"read_only": "on", "statement_timeout": "10s", "lock_timeout": "2s"}
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                postgres.session.fetch_one(db, "UPDATE deals SET status = 'won' WHERE id = 1 RETURNING id")
            for _ in range(8):  # past psycopg's prepare threshold: nothing is prepared server-side
                usage = connections.pool_usage(db)
            assert usage.max_connections == 20
        with psycopg.connect(bouncer.dsn("deal_service"), autocommit=True) as app:  # the same server connection
            assert app.execute("SHOW default_transaction_read_only").fetchone() == ("off",)
            assert app.execute("SHOW statement_timeout").fetchone() == ("0",)
            app.execute("UPDATE deals SET status = status WHERE id = 1")
