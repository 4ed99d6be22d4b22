"""An engineer's session: `runbook open` as a real process serving JupyterLab until it is stopped (its working copy
and address read from its output), the lab's REST and kernel websocket API as JupyterLab itself calls it; and,
without a lab, a working copy's cells run on a real kernel in any order (`step_through`)."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import nbformat
import websocket
from nbclient import NotebookClient

RUNBOOK = str(Path(sys.executable).parent / "runbook")  # the console script of the environment under test


@dataclass
class OpenLab:
    process: subprocess.Popen
    copy: Path  # the working copy it opened
    url: str  # the address it printed: the copy in the lab, with the token

    @property
    def base(self) -> str:
        """http://127.0.0.1:PORT"""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def token(self) -> str:
        return self.url.rsplit("token=", 1)[1]

    def api(self, method: str, path: str, body: dict | None = None, token: bool = True) -> httpx.Response:
        headers = {"Authorization": f"token {self.token}"} if token else {}
        return httpx.request(method, f"{self.base}/api/{path}", json=body, headers=headers, timeout=30)

    def api_path(self, notebook: Path, root: Path) -> str:
        return notebook.resolve().relative_to(root.resolve()).as_posix()

    def save(self, notebook: Path, root: Path) -> None:
        """Save `notebook` through the lab, as JupyterLab does on Ctrl-S: its post-save hooks run."""
        content = json.loads(notebook.read_text())
        response = self.api(
            "PUT", f"contents/{self.api_path(notebook, root)}", {"type": "notebook", "content": content}
        )
        assert response.status_code == 200, response.text

    def kernel_for(self, notebook: Path, root: Path) -> str:
        """Start the kernel JupyterLab starts on opening `notebook` (a session); its id."""
        path = self.api_path(notebook, root)
        body = {"path": path, "name": notebook.name, "type": "notebook", "kernel": {"name": "python3"}}
        response = self.api("POST", "sessions", body)
        assert response.status_code == 201, response.text
        return response.json()["kernel"]["id"]

    def wait_for_browser_kernel(self, notebook: Path, timeout: float = 90) -> None:
        """Until the browser holds a websocket to the kernel of `notebook` (JupyterLab shows a kernel as idle from the
        start, before it is connected: only then is it ready, once it shows idle again)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for session in self.api("GET", "sessions").json():
                if session["name"] == notebook.name and session["kernel"]["connections"] > 0:
                    return
            time.sleep(0.2)
        raise AssertionError(f"no browser connected to the kernel of {notebook.name} within {timeout} s")

    def execute(self, kernel: str, code: str, timeout: float = 60) -> str:
        """Run `code` on `kernel` over the lab's websocket; what it printed."""
        ws = websocket.create_connection(
            f"ws{self.base[4:]}/api/kernels/{kernel}/channels?session_id={uuid.uuid4().hex}&token={self.token}",
            timeout=timeout,
        )
        message_id = uuid.uuid4().hex
        ws.send(
            json.dumps(
                {
                    "header": {
                        "msg_id": message_id,
                        "msg_type": "execute_request",
                        "username": "test",
                        "session": uuid.uuid4().hex,
                        "version": "5.3",
                    },
                    "parent_header": {},
                    "metadata": {},
                    "content": {"code": code, "silent": False, "store_history": True, "allow_stdin": False},
                    "channel": "shell",
                    "buffers": [],
                }
            )
        )
        printed = []
        try:
            while True:
                message = json.loads(ws.recv())
                if message.get("parent_header", {}).get("msg_id") != message_id:
                    continue
                if message["msg_type"] == "stream":
                    printed.append(message["content"]["text"])
                if message["msg_type"] == "error":
                    raise AssertionError(f"{message['content']['ename']}: {message['content']['evalue']}")
                if message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
                    return "".join(printed)
        finally:
            ws.close()

    def stop(self, how: signal.Signals = signal.SIGTERM) -> int:
        """SIGTERM (what a process in the background gets), or SIGINT (Ctrl-C); then its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(how)
        return self.process.wait(timeout=120)


def start(*args: str, log: Path, timeout: float = 120) -> OpenLab:
    """`runbook open ARGS...` in the background until the lab's address is printed; its stderr goes to `log`."""
    with log.open("w") as errors:
        process = subprocess.Popen([RUNBOOK, "open", *args], stdout=subprocess.PIPE, stderr=errors, text=True)
    lines = _lines(process)
    try:
        copy = Path(lines.get(timeout=timeout))
        url = lines.get(timeout=timeout)
    except queue.Empty:
        process.kill()
        process.wait()
        raise AssertionError(f"runbook open printed no address within {timeout} s:\n{log.read_text()}") from None
    return OpenLab(process, copy, url)


def _lines(process: subprocess.Popen) -> queue.Queue[str]:
    """The process's stdout lines as they come (a thread reads them)."""
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.strip())

    threading.Thread(target=read, daemon=True).start()
    return lines


def code_cells(copy: Path) -> list[int]:
    return [i for i, cell in enumerate(nbformat.read(copy, as_version=4).cells) if cell.cell_type == "code"]


def step_through(copy: Path, order: list[int], env: dict | None = None) -> None:
    """Run the working copy's cells `order` on one fresh kernel in the incident folder, as an engineer would in
    JupyterLab (errors kept as outputs), and save it."""
    notebook = nbformat.read(copy, as_version=4)
    client = NotebookClient(notebook, timeout=60, allow_errors=True, resources={"metadata": {"path": str(copy.parent)}})
    with client.setup_kernel(**({"env": env} if env else {})):
        for index in order:
            client.execute_cell(notebook.cells[index], index)
    nbformat.write(notebook, copy)
