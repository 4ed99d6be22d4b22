"""A throwaway local PostgreSQL for the demo and the tests.

PostgreSQL refuses to run as root, so when we are root its programs run as the `postgres`
user, in a temporary folder that user owns (a root-owned 0700 temp dir would be unreachable).
It listens on 127.0.0.1 at a free port and on a Unix socket in that folder, trusts
connections over the socket, asks for a password (SCRAM) over TCP, preloads pg_stat_statements and allows
prepared transactions (PREPARE TRANSACTION).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

ADMIN = "autolytiq_admin"  # the incident-response runbook's admin role; a superuser, so it keeps the reserved slots
DATABASE = "autolytiq"
SERVICE_ROLES = ("deal_service", "customer_service", "tax_service", "email_worker", "reporting")

SCHEMA = [f"CREATE ROLE {role} LOGIN" for role in SERVICE_ROLES] + [
    "CREATE EXTENSION pg_stat_statements",
    "CREATE TABLE dealers (id serial PRIMARY KEY, name text NOT NULL)",
    "CREATE TABLE customers (id serial PRIMARY KEY, dealer_id int NOT NULL REFERENCES dealers, email text NOT NULL)",
    """CREATE TABLE deals (
         id serial PRIMARY KEY,
         customer_id int NOT NULL REFERENCES customers,
         status text NOT NULL,
         amount numeric(12, 2) NOT NULL,
         created_at timestamptz NOT NULL DEFAULT now())""",
    "INSERT INTO dealers (name) SELECT 'dealer ' || i FROM generate_series(1, 20) AS i",
    "INSERT INTO customers (dealer_id, email) "
    "SELECT 1 + i % 20, 'c' || i || '@example.com' FROM generate_series(1, 2000) AS i",
    """INSERT INTO deals (customer_id, status, amount)
         SELECT 1 + i % 2000, (ARRAY['open', 'won', 'lost'])[1 + i % 3], (i % 900) * 37.5
         FROM generate_series(1, 20000) AS i""",
    "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO " + ", ".join(SERVICE_ROLES),
    "ANALYZE",
    "SELECT pg_stat_statements_reset()",  # the set-up above is not the incident
]


class LocalPostgres:
    """`with LocalPostgres() as pg:` starts a fresh server with the `autolytiq` schema; exit removes it."""

    def __init__(self, max_connections: int = 20, superuser_reserved: int = 3):
        self.max_connections = max_connections
        self.superuser_reserved = superuser_reserved
        self.port = _free_port()
        self.folder: Path | None = None

    def __enter__(self) -> LocalPostgres:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def socket_dir(self) -> str:
        return str(self.folder)

    def dsn(self, user: str = ADMIN, dbname: str = DATABASE, **extra) -> str:
        """A libpq connection string over the Unix socket."""
        return make_conninfo(host=self.socket_dir, port=self.port, user=user, dbname=dbname, **extra)

    def tcp_dsn(self, user: str = ADMIN, password: str = "", dbname: str = DATABASE) -> str:
        """A libpq connection string over TCP, where the server asks for a password."""
        return make_conninfo(host="127.0.0.1", port=self.port, user=user, password=password, dbname=dbname)

    def connect(self, user: str = ADMIN, **extra) -> psycopg.Connection:
        return psycopg.connect(self.dsn(user, **extra), autocommit=True)

    def start(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="runbooks-pg-"))
        owner = _server_user()
        if owner:
            os.chown(self.folder, owner.pw_uid, owner.pw_gid)
        data = self.folder / "data"
        self._run(
            "initdb",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
            "-U",
            "postgres",
            "-D",
            str(data),
        )
        options = " ".join(
            [
                "-c listen_addresses=127.0.0.1",
                f"-c port={self.port}",
                f"-c unix_socket_directories={self.socket_dir}",
                f"-c max_connections={self.max_connections}",
                f"-c superuser_reserved_connections={self.superuser_reserved}",
                "-c shared_preload_libraries=pg_stat_statements",
                "-c max_prepared_transactions=10",  # two-phase commit, as XA-using applications need
                "-c fsync=off",
            ]
        )
        self._run("pg_ctl", "-D", str(data), "-l", str(self.folder / "server.log"), "-o", options, "-w", "start")
        with psycopg.connect(self.dsn("postgres", "postgres"), autocommit=True) as conn:
            conn.execute(f"CREATE ROLE {ADMIN} LOGIN SUPERUSER")
            conn.execute(f"CREATE DATABASE {DATABASE} OWNER {ADMIN}")
        with self.connect() as conn:
            for statement in SCHEMA:
                conn.execute(statement)

    def stop(self) -> None:
        if self.folder is None:
            return
        self._run("pg_ctl", "-D", str(self.folder / "data"), "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder = None

    def log(self) -> str:
        return (self.folder / "server.log").read_text(errors="replace") if self.folder else ""

    def _run(self, program: str, *args: str, check: bool = True) -> None:
        owner = _server_user()
        result = subprocess.run(
            [_binary(program), *args],
            capture_output=True,
            text=True,
            cwd=self.folder,
            user=owner.pw_uid if owner else None,
            group=owner.pw_gid if owner else None,
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"{program} failed ({result.returncode}): {result.stderr.strip() or result.stdout.strip()}"
            )


def _server_user():
    """The account the server runs as: `postgres` when we are root, ourselves otherwise."""
    return pwd.getpwnam("postgres") if os.geteuid() == 0 else None


def _binary(program: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{program}"))
    path = found[-1] if found else shutil.which(program)
    if not path:
        raise RuntimeError(f"{program} not found: install the PostgreSQL server (apt-get install postgresql)")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
