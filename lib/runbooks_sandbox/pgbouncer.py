"""A throwaway PgBouncer in front of a LocalPostgres, for the tests: the pooler most production PostgreSQL sits behind.

Debian's `pgbouncer` (the Makefile installs it). Like PostgreSQL it refuses to run as root, so when we are root
it runs as the `postgres` user, in a temporary folder that user owns. It listens on 127.0.0.1 at a free port,
trusts every role of the LocalPostgres (auth_type trust, the roles listed in its auth_file) and reaches the
server over its Unix socket.

`pool_mode` transaction (the common production setting) hands a server connection to a client for one
transaction only; `pool_size` 1 makes every client share the same server connection, so anything one client
leaves on it reaches the next. By default PgBouncer refuses the `options` startup parameter; with
`ignore_options` it is listed in `ignore_startup_parameters` and dropped without a word.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from psycopg.conninfo import make_conninfo

from .postgres import ADMIN, DATABASE, SERVICE_ROLES, LocalPostgres, _free_port, _server_user

BINARIES = ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer")


class LocalPgBouncer:
    """`with LocalPgBouncer(pg) as bouncer:` runs PgBouncer in front of `pg` until the block ends."""

    def __init__(self, pg: LocalPostgres, pool_mode: str = "transaction", pool_size: int = 1, ignore_options=False):
        self.pg, self.pool_mode, self.pool_size, self.ignore_options = pg, pool_mode, pool_size, ignore_options
        self.port = _free_port()
        self.folder: Path | None = None
        self._process: subprocess.Popen | None = None

    def __enter__(self) -> LocalPgBouncer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def dsn(self, user: str = ADMIN, dbname: str = DATABASE, **extra) -> str:
        """A libpq connection string to PgBouncer over TCP."""
        return make_conninfo(host="127.0.0.1", port=self.port, user=user, dbname=dbname, **extra)

    def start(self) -> None:
        binary = next((b for b in BINARIES if Path(b).exists()), None) or shutil.which("pgbouncer")
        if not binary:
            raise RuntimeError("pgbouncer not found: install it (apt-get install pgbouncer; `make setup` does)")
        self.folder = Path(tempfile.mkdtemp(prefix="runbooks-pgbouncer-"))
        owner = _server_user()
        users = self.folder / "userlist.txt"
        users.write_text("".join(f'"{role}" ""\n' for role in ("postgres", ADMIN, *SERVICE_ROLES)))
        ignored = "extra_float_digits" + (",options" if self.ignore_options else "")
        config = self.folder / "pgbouncer.ini"
        config.write_text(
            "[databases]\n"
            f"{DATABASE} = host={self.pg.socket_dir} port={self.pg.port} dbname={DATABASE}\n"
            f"postgres = host={self.pg.socket_dir} port={self.pg.port} dbname=postgres\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            f"unix_socket_dir = {self.folder}\n"
            "auth_type = trust\n"
            f"auth_file = {users}\n"
            f"pool_mode = {self.pool_mode}\n"
            f"default_pool_size = {self.pool_size}\n"
            "max_client_conn = 50\n"
            f"ignore_startup_parameters = {ignored}\n"
            f"logfile = {self.folder / 'pgbouncer.log'}\n"
            f"pidfile = {self.folder / 'pgbouncer.pid'}\n"
        )
        for path in (self.folder, users, config):
            if owner:
                shutil.chown(path, owner.pw_uid, owner.pw_gid)
        self._process = subprocess.Popen(
            [binary, str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=self.folder,
            user=owner.pw_uid if owner else None,
            group=owner.pw_gid if owner else None,
        )
        self._wait_listening()

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

    def log(self) -> str:
        path = self.folder / "pgbouncer.log" if self.folder else None
        return path.read_text(errors="replace") if path and path.exists() else ""

    def _wait_listening(self, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(f"pgbouncer exited ({self._process.returncode}): {self.log()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"pgbouncer did not listen on 127.0.0.1:{self.port}: {self.log()[-2000:]}")
