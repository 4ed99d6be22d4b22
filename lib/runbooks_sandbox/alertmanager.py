"""A real Alertmanager on loopback (Debian's `prometheus-alertmanager`): the sandbox's and the tests'.

`AlertmanagerServer(folder)` routes every alert to one receiver: a webhook (`webhook_url`, with `token` sent as
a bearer token, as `runbook serve` wants it), or none at all (alerts are only held, to be read through the API).
It listens on 127.0.0.1 on a free port, single node (no cluster), and stops on leaving the `with` block.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import requests
import yaml

from .prometheus import free_port

BINARY = "prometheus-alertmanager"
READY_TIMEOUT = 30


def installed() -> bool:
    return shutil.which(BINARY) is not None


class AlertmanagerServer:
    def __init__(self, folder: Path, webhook_url: str | None = None, token: str | None = None):
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        receiver: dict = {"name": "runbooks"}
        if webhook_url:
            webhook: dict = {"url": webhook_url, "send_resolved": True}
            if token:
                webhook["http_config"] = {"authorization": {"credentials": token}}
            receiver["webhook_configs"] = [webhook]
        config = {
            "route": {
                "receiver": "runbooks",
                "group_by": ["alertname"],
                "group_wait": "1s",
                "group_interval": "1s",
                "repeat_interval": "4h",
            },
            "receivers": [receiver],
        }
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "alertmanager.yml").write_text(yaml.safe_dump(config))
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> AlertmanagerServer:
        with open(self.folder / "alertmanager.log", "ab") as log:
            self.process = subprocess.Popen(
                [
                    BINARY,
                    f"--config.file={self.folder / 'alertmanager.yml'}",
                    f"--storage.path={self.folder / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--cluster.listen-address=",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + READY_TIMEOUT
        while not self._ready():
            if time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise RuntimeError(f"alertmanager not ready within {READY_TIMEOUT} s")
            time.sleep(0.2)
        return self

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            log = (self.folder / "alertmanager.log").read_text()
            raise RuntimeError(f"alertmanager exited {self.process.returncode}: {log[-2000:]}")
        try:
            return requests.get(f"{self.url}/-/ready", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def __exit__(self, *exc) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def post_alerts(self, *alerts: dict) -> None:
        """Alerts as Prometheus sends them: labels, annotations, startsAt (endsAt, generatorURL)."""
        response = requests.post(
            f"{self.url}/api/v2/alerts",
            data=json.dumps(list(alerts)),
            headers={"Content-Type": "application/json"},
            timeout=10,
        )
        response.raise_for_status()
