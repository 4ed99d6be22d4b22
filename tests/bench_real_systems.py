"""What reading real systems costs: gateway log lines parsed per second in each format (the onset scan reads a
busy gateway's whole window), and the per-query price of the diagnostic session's per-transaction limits
(BEGIN READ ONLY + SET LOCAL timeouts + COMMIT), directly and through PgBouncer in transaction pooling.

    .venv/bin/python tests/bench_real_systems.py

Not a test (pytest does not collect it): it prints measured figures and asserts nothing about time.
"""

import statistics
import time

import psycopg

from runbooks import postgres
from runbooks.gateway_log import parse_line
from runbooks.postgres import connections
from runbooks_sandbox.pgbouncer import LocalPgBouncer
from runbooks_sandbox.postgres import LocalPostgres

LINES = 50_000
QUERIES = 500
SAMPLES = {
    "ours (key=value)": "level=error method=POST path=/api/v1/auth/token status=502 upstream=auth-service latency_ms=3",
    "ingress-nginx": '10.0.0.23 - - [26/Nov/2026:03:14:08 +0000] "POST /api/v1/payments HTTP/1.1" 502 150 "-" '
    '"okhttp/4.12.0" 812 0.004 [autolytiq-prod-payments-8080] [] 10.244.2.17:8080 0 0.003 502 1a2b3c4d5e6f',
    "envoy (istio text)": '[2026-11-26T03:14:07.409Z] "GET /v HTTP/1.1" 503 UF upstream_reset_before_response_started'
    '{connection_failure} - "-" 0 91 4 - "-" "curl/8" "84961386" "payments:8080" "10.244.2.17:8080" '
    "outbound|8080||payments.autolytiq-prod.svc.cluster.local 10.244.1.23:37652 10.96.45.184:8080 - default",
    "traefik (json)": '{"DownstreamStatus": 502, "ServiceName": "autolytiq-prod-payments-8080@kubernetes", '
    '"ServiceAddr": "10.244.2.17:8080", "RouterName": "api@kubernetes"}',
}


def parsing() -> None:
    print(f"gateway log lines parsed per second (log_format auto, {LINES} lines each):")
    for name, line in SAMPLES.items():
        started = time.perf_counter()
        for _ in range(LINES):
            parse_line(line)
        elapsed = time.perf_counter() - started
        print(f"  {name:20s} {LINES / elapsed:>10,.0f} lines/s")


def per_query(conn: psycopg.Connection) -> float:
    """Median milliseconds of pool_usage (one named query) on this session."""
    times = []
    for _ in range(QUERIES):
        started = time.perf_counter()
        connections.pool_usage(conn)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def plain(conn: psycopg.Connection) -> float:
    """Median milliseconds of the same query executed bare (no transaction, no SET LOCAL)."""
    times = []
    for _ in range(QUERIES):
        started = time.perf_counter()
        conn.execute(connections.LIMITS).fetchone()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def sessions() -> None:
    with LocalPostgres() as pg:
        with postgres.connect(pg.dsn(), runbook="bench") as direct:
            print(f"pool_usage, median of {QUERIES}:")
            print(f"  direct, bare query                     {plain(direct):.3f} ms")
            print(f"  direct, read-only transaction + limits {per_query(direct):.3f} ms")
        with LocalPgBouncer(pg) as bouncer, postgres.connect(bouncer.dsn(), runbook="bench") as pooled:
            print(f"  PgBouncer (transaction pooling)        {per_query(pooled):.3f} ms")


if __name__ == "__main__":
    parsing()
    sessions()
