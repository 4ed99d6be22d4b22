"""JupyterLab for `runbook open`: on loopback with a token, the output folder as its root, in this process until
Ctrl-C (or SIGTERM).

- The kernel of a working copy gets the password of its dsn as PGPASSWORD, and no other kernel does:
  `Sessions`, jupyter_server's session manager, adds it to the environment of the kernel it starts for that
  notebook. The password lives in this process's memory only.
- Each saved working copy is sealed (runbooks.sessions.seal) once its saves pause for `seal_after` seconds, and
  at the latest `Sealer.most` seconds after its first unsealed save: `Sealer`, a post-save hook of the contents
  manager and one thread, so a save storm adds one link to the chain, not hundreds. What is still pending when
  the lab stops is sealed then.
- Sealed files (a run's notebook, HTML and evidence file) cannot be saved over from the lab: `refuse_evidence`.
- A second `runbook open` on the same output folder finds this lab (`running`: jupyter_server's server info
  files, and this lab's endpoint answering to the token) and hands it the new working copy's password over
  loopback (`POST /runbooks/sessions`): several notebooks of one incident side by side in one lab.
"""

from __future__ import annotations

import json
import logging
import secrets
import signal
import tempfile
import threading
import time
import urllib.request
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jupyter_server.base.handlers import APIHandler
from jupyter_server.serverapp import ServerApp, list_running_servers
from jupyter_server.services.sessions.sessionmanager import SessionManager
from jupyter_server.utils import url_path_join
from tornado import web

from . import sessions
from .runfiles import RunFiles, is_working_copy
from .sessions import WorkingCopy

API = "runbooks/sessions"  # this lab's endpoint, under its base URL
TIMEOUT = 5  # seconds, for each call to a running lab


@dataclass(frozen=True)
class Lab:
    """A running lab that `runbook open` started."""

    url: str  # http://127.0.0.1:PORT/ (with the base URL)
    token: str
    root: Path  # resolved

    def link(self, notebook: Path) -> str:
        """The address that opens `notebook` (under the root) in this lab."""
        path = notebook.resolve().relative_to(self.root).as_posix()
        return f"{self.url}lab/tree/{quote(path)}?token={self.token}"

    def register(self, copy: WorkingCopy) -> None:
        """Hand the lab the working copy's password, for the kernel it will start for it."""
        if copy.secrets:
            path = copy.path.resolve().relative_to(self.root).as_posix()
            self._call("POST", {"path": path, "password": copy.secrets[0]})

    def answers(self) -> bool:
        """Whether this is a lab `runbook open` started on `root`, and it answers."""
        try:
            return Path(self._call("GET")["root_dir"]).resolve() == self.root
        except (OSError, ValueError, KeyError, TypeError):
            return False

    def _call(self, method: str, body: dict | None = None) -> Any:
        request = urllib.request.Request(
            url_path_join(self.url, API),
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            text = response.read()
        return json.loads(text) if text else None


def open_in_lab(
    copy: WorkingCopy, output_dir: Path, port: int, browser: bool, seal_after: float, show: Callable[[str], Any]
) -> None:
    """Show (and with `browser`, open) the address of `copy` in the lab running on `output_dir`; without one,
    start it here and serve until Ctrl-C."""
    lab = running(output_dir)
    if lab is not None:
        try:
            lab.register(copy)
        except OSError as e:  # it stopped, or no longer answers: this process serves the copy instead
            logging.getLogger(__name__).warning("runbook: the lab at %s did not take the working copy: %s", lab.url, e)
        else:
            _announce(lab.link(copy.path), browser, show)
            return
    serve(copy, output_dir, port, browser, seal_after, show)


def running(output_dir: Path) -> Lab | None:
    """The lab `runbook open` started on `output_dir` that is still running, if any."""
    root = output_dir.resolve()
    for info in list_running_servers():
        if Path(info.get("root_dir", "")).resolve() == root and info.get("token"):
            lab = Lab(info["url"], info["token"], root)
            if lab.answers():
                return lab
    return None


def serve(
    copy: WorkingCopy, output_dir: Path, port: int, browser: bool, seal_after: float, show: Callable[[str], Any]
) -> None:
    """Run the lab in this process until Ctrl-C or SIGTERM, then seal what is pending."""
    root = output_dir.resolve()
    token = secrets.token_hex(24)
    # Its own JupyterLab workspace (the open tabs), gone when it stops: not the tabs of the user's other labs.
    workspaces = tempfile.TemporaryDirectory(prefix="runbook-lab-")
    app = ServerApp.instance()
    app.initialize(
        argv=[
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            "--ServerApp.open_browser=False",
            f"--ServerApp.root_dir={root}",
            "--ServerApp.default_url=/lab",
            "--ServerApp.allow_root=True",  # the lab runs as whoever runs `runbook open`, as `runbook run` does
            f"--ServerApp.session_manager_class={Sessions.__module__}.{Sessions.__name__}",
            f"--IdentityProvider.token={token}",  # an argument of this call, not of the process: `ps` never shows it
            f"--LabApp.workspaces_dir={workspaces.name}",
        ]
    )
    if copy.secrets:
        app.session_manager.passwords[str(copy.path.resolve())] = copy.secrets[0]
    sealer = Sealer(seal_after, app.session_manager.secrets_of, app.log)
    app.contents_manager.register_pre_save_hook(refuse_evidence)
    app.contents_manager.register_post_save_hook(sealer.saved)
    app.web_app.add_handlers(".*$", [(url_path_join(app.base_url, API), _SessionsHandler)])
    # Ctrl-C stops at once (Jupyter would ask to confirm, and only on a terminal): the pending seals follow.
    signal.signal(signal.SIGINT, lambda *_: app.stop(from_signal=True))
    lab = Lab(f"http://127.0.0.1:{app.port}{app.base_url}", token, root)
    app.io_loop.add_callback(lambda: _announce(lab.link(copy.path), browser, show))  # once it listens
    sealer.start()
    try:
        app.start()
    finally:
        sealer.close()
        workspaces.cleanup()


def refuse_evidence(model: dict, path: str, contents_manager: Any, **_: Any) -> None:
    """The pre-save hook: a file of a run whose evidence is written is never saved over (`runbook verify` would
    report it changed); the working copies, and everything else, save as usual."""
    run = RunFiles.of(Path(contents_manager.root_dir, path))
    if run is not None and run.evidence.exists():
        raise web.HTTPError(403, f"{run.stem} is sealed evidence: save your changes in the working copy")


class Sessions(SessionManager):
    """jupyter_server's session manager; the kernel started for a registered working copy gets its password."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.passwords: dict[str, str] = {}  # resolved path of a working copy -> the password of its dsn

    def get_kernel_env(self, path: str | None, name: Any = None) -> dict[str, str]:
        environment = super().get_kernel_env(path, name)
        notebook = Path(self.kernel_manager.root_dir, environment["JPY_SESSION_NAME"])  # its path, or under root
        password = self.passwords.get(str(notebook.resolve()))
        return {**environment, "PGPASSWORD": password} if password else environment

    def secrets_of(self, notebook: Path) -> tuple[str, ...]:
        """What to scrub from the seals of `notebook`: the password its kernel was given, if any."""
        password = self.passwords.get(str(notebook.resolve()))
        return (password,) if password else ()


class Sealer:
    """Seals each saved working copy once its saves pause for `quiet` seconds, or `most` seconds after its first
    unsealed save, whichever comes first; on one thread, so the save itself never waits for a seal."""

    most = 60.0

    def __init__(self, quiet: float, passwords: Callable[[Path], tuple[str, ...]], log: logging.Logger) -> None:
        self.quiet = quiet
        self._passwords = passwords
        self._log = log
        self._due: dict[Path, tuple[float, float]] = {}  # notebook -> (first unsealed save, last save), monotonic
        self._changed = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name="runbook-sealer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def saved(self, model: dict, os_path: str, **_: Any) -> None:
        """The post-save hook: note the save of a notebook; the thread decides whether it is a working copy."""
        if model.get("type") != "notebook":
            return
        now = time.monotonic()
        with self._changed:
            first, _last = self._due.get(Path(os_path), (now, now))
            self._due[Path(os_path)] = (first, now)
            self._changed.notify()

    def close(self) -> None:
        """Seal whatever is pending, then stop the thread."""
        with self._changed:
            self._closing = True
            self._changed.notify()
        self._thread.join()

    def _loop(self) -> None:
        while True:
            due, last_round = self._next()
            for notebook in due:
                self._seal(notebook)
            if last_round:
                return

    def _next(self) -> tuple[list[Path], bool]:
        """Wait for the notebooks due for sealing; once closing, everything pending, as the last round."""
        with self._changed:
            while True:
                if self._closing:
                    pending = list(self._due)
                    self._due.clear()
                    return pending, True
                now = time.monotonic()
                at = {path: min(last + self.quiet, first + self.most) for path, (first, last) in self._due.items()}
                due = [path for path, when in at.items() if when <= now]
                if due:
                    for path in due:
                        del self._due[path]
                    return due, False
                self._changed.wait(min(at.values()) - now if at else None)

    def _seal(self, notebook: Path) -> None:
        if not is_working_copy(notebook):
            return
        try:
            sealed = sessions.seal(notebook, self._passwords(notebook))
        except Exception:  # the lab goes on; the next save, or `runbook seal`, tries again
            self._log.exception("runbook: could not seal %s", notebook)
            return
        self._log.info(
            "runbook: sealed %s: %s%s",
            notebook.name,
            sealed.evidence_path,
            f" ({sealed.reason})" if sealed.reason else "",
        )


class _SessionsHandler(APIHandler):
    """GET: the root of this lab (how `running` knows it). POST {"path": a working copy under the root,
    "password": its dsn's password}: the kernel started for that notebook gets it."""

    @web.authenticated
    def get(self) -> None:
        self.finish({"root_dir": str(Path(self.settings["server_root_dir"]).resolve())})

    @web.authenticated
    def post(self) -> None:
        body = self.get_json_body() or {}
        root = Path(self.settings["server_root_dir"]).resolve()
        notebook = (root / str(body.get("path", ""))).resolve()
        if not notebook.is_relative_to(root) or not is_working_copy(notebook):
            raise web.HTTPError(400, "not a working copy under this lab's root")
        if not isinstance(body.get("password"), str):
            raise web.HTTPError(400, "password must be a string")
        self.settings["session_manager"].passwords[str(notebook)] = body["password"]
        self.set_status(204)
        self.finish()


def _announce(url: str, browser: bool, show: Callable[[str], Any]) -> None:
    show(url)
    if browser:
        webbrowser.open(url)
