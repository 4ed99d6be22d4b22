"""An S3-compatible server on loopback for the tests: moto's standalone server (PyPI, `moto[server]`), a real HTTP
server that the real client (s3fs over botocore) talks to, reached through the standard AWS variables."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import httpx

from serving import free_port, wait_for


class S3Server:
    """`moto_server` on a free loopback port; `environment` holds the AWS variables that reach it."""

    def __init__(self, log_dir: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"moto-{self.port}.log"
        self.process: subprocess.Popen | None = None
        self.environment = {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": "testing-access-key",
            "AWS_SECRET_ACCESS_KEY": "testing-secret-key-5b2c",
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def __enter__(self) -> S3Server:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for(self._ready, timeout=60, what=f"moto's S3 server on {self.url}")
        return self

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"moto_server exited {self.process.returncode}: {self.log_path.read_text()}")
        try:
            return httpx.get(f"{self.url}/moto-api/", timeout=1).status_code < 500
        except httpx.HTTPError:
            return False

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def bucket(self) -> str:
        """A new, empty bucket."""
        import s3fs

        name = f"evidence-{uuid.uuid4().hex[:12]}"
        s3fs.S3FileSystem(endpoint_url=self.url, skip_instance_cache=True, **self._credentials()).mkdir(name)
        return name

    def objects(self, bucket: str) -> dict[str, bytes]:
        """Every object of `bucket`, by key."""
        import s3fs

        fs = s3fs.S3FileSystem(endpoint_url=self.url, skip_instance_cache=True, **self._credentials())
        return {name.split("/", 1)[1]: fs.cat_file(name) for name in fs.find(bucket)}

    def _credentials(self) -> dict:
        return {"key": self.environment["AWS_ACCESS_KEY_ID"], "secret": self.environment["AWS_SECRET_ACCESS_KEY"]}


def with_store(monkeypatch, server: S3Server, spool: Path) -> None:
    """This process reaches `server` through the AWS variables, its spool at `spool`."""
    for name, value in server.environment.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("RUNBOOK_SPOOL", str(spool))
    monkeypatch.delenv("AWS_PROFILE", raising=False)
