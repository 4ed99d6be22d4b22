"""Kernels started before they are needed, so that a run triggered by an alert skips the kernel start and
the import of the runbook library.

Each kernel serves exactly one run and is shut down after it (`runner.run(..., kernel=...)` does that): nothing
a notebook leaves behind reaches the next run. `KernelPool.take` hands out a ready kernel and starts its
replacement in the background; the pool's kernels are forked by a fork server (runbooks.forkserver) that has
the imports done already, so each costs milliseconds and the memory it writes, not a second and ~115 MiB.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any

from jupyter_client import AsyncKernelClient, BlockingKernelClient, KernelManager
from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.kernelspec import KernelSpec
from jupyter_client.provisioning import LocalProvisioner
from traitlets import DottedObjectName

from . import forkserver, redact, registry

log = logging.getLogger(__name__)

# The modules the notebooks import (registry.warm_up_modules), loaded by `__import__` so that no name is bound in
# the namespace the notebook will run in.
WARM_UP = "\n".join(f"__import__({module!r})" for module in registry.warm_up_modules())
# As nbclient starts the kernels of a cold run: IPython's history in memory, never in a file.
ARGUMENTS = ["--HistoryManager.hist_file=:memory:"]
# How a kernel for a run starts: as `python -m ipykernel_launcher`, without the debugger (debugpy: ~0.3 s of every
# kernel's start, for stepping through cells no run is ever stepped through; JupyterLab's own kernels keep it).
# As ipykernel_launcher, `-c` puts the working directory first on sys.path: taken off (the kernel puts it back).
LAUNCH = """import sys
if sys.path[0] == "":
    del sys.path[0]
sys.modules["debugpy"] = None
from ipykernel import kernelapp
kernelapp.launch_new_instance()
"""
KERNEL = [sys.executable, "-c", LAUNCH]  # then the kernel's own arguments (-f CONNECTION_FILE ...)


class KernelUnavailable(Exception):
    """No kernel became ready in time, or starting one failed."""


class Client(AsyncKernelClient):
    """nbclient's client for these kernels, ready as soon as the kernel answers (wait_for_ready), and without the
    heartbeat channel: whether the kernel lives is asked of its process (the client's parent is its kernel manager:
    jupyter_client then never reads the heartbeat), and the heartbeat's thread, re-creating its socket after a beat
    missed on a loaded machine, could print a traceback of its own after the run's one-line error."""

    def start_channels(
        self, shell: bool = True, iopub: bool = True, stdin: bool = True, hb: bool = True, control: bool = True
    ) -> None:
        super().start_channels(shell=shell, iopub=iopub, stdin=stdin, hb=False, control=control)

    async def wait_for_ready(self, timeout: float | None = None) -> None:
        """Until the kernel answers kernel_info and IOPub is seen connected: that request's `idle` status arrived.
        jupyter_client's own wait then listens to IOPub until it has been silent for 0.2 s, on every run's path;
        what came before is of no cell (nbclient matches outputs to the request of their cell)."""
        limit = 60 if timeout is None else timeout
        deadline = time.monotonic() + limit
        while True:
            request = self.kernel_info()
            with contextlib.suppress(queue.Empty):
                reply = await self.shell_channel.get_msg(timeout=1)
                if reply["parent_header"].get("msg_id") == request:
                    await self._idle_after(request, deadline)  # queue.Empty: IOPub not joined yet, asked again
                    self._handle_kernel_info_reply(reply)
                    return
            if not await self._async_is_alive():
                raise RuntimeError("Kernel died before replying to kernel_info")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kernel didn't respond in {limit:g} s")

    async def _idle_after(self, request: str, deadline: float) -> None:
        """Until IOPub brings the `idle` status of `request`; queue.Empty after 0.2 s without a message, or once
        past `deadline` (other messages may keep coming)."""
        while time.monotonic() < deadline:
            message = await self.iopub_channel.get_msg(timeout=0.2)
            idle = message["msg_type"] == "status" and message["content"]["execution_state"] == "idle"
            if idle and message["parent_header"].get("msg_id") == request:
                return
        raise queue.Empty


class Kernel(KernelManager):
    """A python3 kernel over Unix sockets (not unencrypted loopback TCP), for one run.

    Its connection file and sockets live in a private folder of their own (by default they would go to the
    current directory, under names that kernels started at the same time would share). nbclient drives the
    kernel it is given through an asynchronous client and, since it did not start that kernel, leaves the
    client's channels (sockets and their threads) open: shutting the kernel down closes every client made
    for it.
    """

    client_class = DottedObjectName("runbooks.kernels.Client")

    def __init__(self, forks: ForkServer | None = None) -> None:
        """`forks`: the fork server that forks this kernel's process; None: started as a process of its own."""
        self.folder = tempfile.mkdtemp(prefix="runbook-kernel-")
        super().__init__(
            kernel_name="python3",
            transport="ipc",
            ip=os.path.join(self.folder, "ipc"),
            connection_file=os.path.join(self.folder, "kernel.json"),
        )
        spec = self.kernel_spec  # python3's, from the environment's kernel specs: started as KERNEL says
        self._kernel_spec = KernelSpec(
            argv=[*KERNEL, "-f", "{connection_file}"],
            display_name=spec.display_name if spec else "Python 3",
            language="python",
            env=spec.env if spec else {},
            metadata=spec.metadata if spec else {},
        )
        if forks is not None:
            self.kernel_id = str(uuid.uuid4())
            self.provisioner = ForkedProvisioner(
                kernel_id=self.kernel_id, kernel_spec=self.kernel_spec, parent=self, forks=forks
            )
        self._clients: list[Any] = []

    @property
    def pid(self) -> int | None:
        return getattr(self.provisioner, "pid", None)

    def client(self, **kwargs):
        client = super().client(**kwargs)
        self._clients.append(client)
        return client

    def shutdown_kernel(self, now: bool = False, restart: bool = False) -> None:
        for client in self._clients:
            client.stop_channels()
        self._clients.clear()
        super().shutdown_kernel(now=now, restart=restart)
        shutil.rmtree(self.folder, ignore_errors=True)


SERVE = "import runpy, sys; runpy.run_path(sys.argv[1], run_name='__main__')"


class ForkServer:
    """A runbooks.forkserver process, started with `environment` (no secret of the tool's: the kernels it forks
    inherit it), asked for one kernel process at a time. One that died (killed for memory) or stopped answering is
    replaced at the next request. `close()` ends it, and with it every kernel it forked that still runs (each
    exits when its parent goes): close it only once their runs are over."""

    def __init__(self, environment: Mapping[str, str], timeout: float = 60) -> None:
        self.timeout, self._environment = timeout, dict(environment)
        self._lock = threading.Lock()
        self._closed = False
        self.process = self._start()

    def fork(self, argv: list[str], env: Mapping[str, str], cwd: str | None) -> int:
        """The pid of a new kernel process run as `KERNEL + argv` would be; KernelUnavailable if the
        server does not answer within the time limit (its imports included, on the first call) or fails."""
        request = json.dumps({"argv": argv, "env": dict(env), "cwd": cwd}) + "\n"
        with self._lock:
            if self._closed:
                raise KernelUnavailable("the kernel fork server is closed")
            if self.process.poll() is not None:
                log.warning("the kernel fork server exited (%s): starting another", self.process.returncode)
                self._end()
                self.process = self._start()
            try:
                reply = json.loads(self._ask(request))
            except (KernelUnavailable, ValueError):
                self._end()  # a late answer would be read as the next request's: this server is done
                raise
        if "pid" not in reply:
            raise KernelUnavailable(f"the kernel fork server could not fork: {reply.get('error')}")
        return int(reply["pid"])

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._end()

    def _start(self) -> subprocess.Popen[str]:
        return subprocess.Popen(  # run as a file: a runbooks package that fails to import is then answered
            [sys.executable, "-c", SERVE, forkserver.__file__],  # (forkserver.main)
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=self._environment,
            cwd=tempfile.gettempdir(),
            text=True,
        )

    def _ask(self, request: str) -> str:
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None and stdout is not None
        try:
            stdin.write(request)
            stdin.flush()
        except (OSError, ValueError) as e:
            raise KernelUnavailable(f"the kernel fork server is gone: {e}") from None
        if not select.select([stdout], [], [], self.timeout)[0]:
            raise KernelUnavailable(f"the kernel fork server did not answer within {self.timeout:g} s")
        line = stdout.readline()
        if not line:
            raise KernelUnavailable(f"the kernel fork server exited ({self.process.wait()})")
        return line

    def _end(self) -> None:
        """The server's stdin closed (it exits), waited for; killed if it does not within 5 s."""
        if self.process.stdin is not None and not self.process.stdin.closed:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


class Forked:
    """A kernel process the fork server forked, as jupyter_client's provisioner handles a subprocess.Popen. It is
    not this process's child: it is watched through a pidfd, which a later process with the same pid is never
    mistaken for. Its exit status is the fork server's to collect: a kernel gone reports 0."""

    stdin = stdout = stderr = None

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        try:
            self._fd: int | None = os.pidfd_open(pid)
        except ProcessLookupError:
            self._fd, self.returncode = None, 0

    def poll(self) -> int | None:
        if self.returncode is None and self._fd is not None and select.select([self._fd], [], [], 0)[0]:
            self._gone()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None and self._fd is not None:
            if not select.select([self._fd], [], [], timeout)[0]:
                raise subprocess.TimeoutExpired(f"kernel {self.pid}", timeout or 0)
            self._gone()
        return self.returncode or 0

    def send_signal(self, number: int) -> None:
        if self.poll() is None and self._fd is not None:
            signal.pidfd_send_signal(self._fd, number)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def _gone(self) -> None:
        self.returncode = 0
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class ForkedProvisioner(LocalProvisioner):
    """jupyter_client's local provisioner, the kernel process forked by a ForkServer instead of started."""

    def __init__(self, forks: ForkServer, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.forks = forks

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> KernelConnectionInfo:
        if cmd[: len(KERNEL)] != KERNEL:
            raise KernelUnavailable(f"not a kernel command of runbooks.kernels: {cmd!r}")
        self.pid = self.forks.fork(cmd[len(KERNEL) :], kwargs.get("env") or {}, kwargs.get("cwd"))
        self.pgid = self.pid  # the forked kernel leads a session (and process group) of its own
        self.process = Forked(self.pid)  # type: ignore[assignment]
        self.cwd = kwargs.get("cwd") or os.getcwd()
        return self.connection_info


def start(
    environment: Mapping[str, str],
    timeout: float = 60,
    cwd: str | None = None,
    warm: bool = True,
    modules: tuple[str, ...] | None = None,
    forks: ForkServer | None = None,
) -> Kernel:
    """A started kernel (in `cwd`; forked by `forks` when given), with the runbook library (or only `modules`)
    imported if `warm`; shut down again if that fails."""
    kernel = Kernel(forks)
    try:
        kernel.start_kernel(env=dict(environment), extra_arguments=ARGUMENTS, cwd=cwd)
        if warm:
            code = WARM_UP if modules is None else "\n".join(f"__import__({module!r})" for module in modules)
            execute_silently(kernel, code, timeout)
    except BaseException:
        kernel.shutdown_kernel(now=True)
        raise
    return kernel


def execute_silently(kernel: KernelManager, code: str, timeout: float = 60) -> None:
    """Run `code` on `kernel` leaving no output, history entry or execution count; raise KernelUnavailable if
    it fails, dies or does not answer within `timeout`. The code is sent over the kernel's shell socket only, never
    written anywhere. A kernel still starting gets it once it listens (the socket queues it); no IOPub is needed."""
    if not kernel.is_alive():
        raise KernelUnavailable("the kernel is not running")
    client = BlockingKernelClient(parent=kernel)  # alive = its process runs: a slow start misses heartbeats
    client.load_connection_info(kernel.get_connection_info())
    client.start_channels(iopub=False, stdin=False, hb=False, control=False)
    deadline = time.monotonic() + timeout
    try:
        request = client.execute(code, silent=True, store_history=False)
        while True:
            try:
                reply = client.get_shell_msg(timeout=0.5)
            except queue.Empty:
                if not kernel.is_alive():
                    raise KernelUnavailable("the kernel died before it answered") from None
                if time.monotonic() > deadline:
                    raise KernelUnavailable(f"kernel did not answer in {timeout:g} s") from None
                continue
            if reply["parent_header"].get("msg_id") == request:
                break
    finally:
        client.stop_channels()
    content = reply["content"]
    if content["status"] != "ok":
        raise KernelUnavailable(f"kernel set-up failed: {content.get('ename')}: {content.get('evalue')}")


class Early:
    """One kernel starting in a background thread, e.g. while `runbook run` imports papermill and nbconvert.

    `take()` waits for it: None if it failed to start (the run then starts its own, and a failure there is in its
    evidence); `close()` shuts down a kernel never taken.
    """

    def __init__(self, modules: tuple[str, ...], timeout: float = 60) -> None:
        self._kernel: Kernel | None = None
        environment = redact.kernel_environment(os.environ)
        self._thread = threading.Thread(
            target=self._start, args=(environment, timeout, modules), name="kernel-early", daemon=True
        )
        self._thread.start()

    def _start(self, environment: Mapping[str, str], timeout: float, modules: tuple[str, ...]) -> None:
        try:
            self._kernel = start(environment, timeout, modules=modules)
        except Exception:
            self._kernel = None

    def take(self) -> Kernel | None:
        self._thread.join()
        kernel, self._kernel = self._kernel, None
        return kernel if kernel is not None and kernel.is_alive() else None

    def close(self) -> None:
        kernel = self.take()
        if kernel is not None:
            kernel.shutdown_kernel(now=True)


class KernelPool:
    """`size` kernels kept started and warmed up; `with KernelPool() as pool: runner.run(..., kernel=pool.take())`.

    Kernels start with `environment` (default: this process's environment when the pool is made), less the tool's
    own secrets (redact.kernel_environment); a run's own secrets reach only the kernel that runs it.
    """

    def __init__(self, size: int = 2, environment: Mapping[str, str] | None = None, timeout: float = 60) -> None:
        self.timeout = timeout
        self._environment = redact.kernel_environment(os.environ if environment is None else environment)
        self._ready: queue.Queue[Kernel | Exception] = queue.Queue()
        self._lock = threading.Lock()
        self._starting: list[threading.Thread] = []
        self._closed = False
        self._forks = ForkServer(self._environment, timeout)
        for _ in range(size):
            self._replace()

    def __enter__(self) -> KernelPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def ready(self) -> int:
        """How many kernels wait to be taken (a failed start counts too, until a take reports it)."""
        return self._ready.qsize()

    def take(self) -> Kernel:
        """A warm kernel for one run (the caller shuts it down); its replacement starts in the background.
        A kernel that died while it waited (e.g. killed for memory) is shut down and replaced, not handed out."""
        while True:
            if self._closed:
                raise KernelUnavailable("the kernel pool is closed")
            try:
                kernel = self._ready.get(timeout=self.timeout)
            except queue.Empty:
                raise KernelUnavailable(f"no kernel was ready within {self.timeout:g} s") from None
            self._replace()
            if isinstance(kernel, Exception):
                raise KernelUnavailable(f"a kernel failed to start: {kernel}") from kernel
            if kernel.is_alive():
                return kernel
            kernel.shutdown_kernel(now=True)

    def close(self, timeout: float | None = None) -> None:
        """Shut down every kernel not taken, including those still starting (waited for `timeout` seconds at most:
        one still starting after that shuts itself down when it is ready), and the fork server, which ends the
        kernels taken that still run: close the pool after their runs (runbook serve stops its workers first)."""
        with self._lock:
            self._closed = True
            starting, self._starting = self._starting, []
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in starting:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        while not self._ready.empty():
            kernel = self._ready.get_nowait()
            if isinstance(kernel, Kernel):
                kernel.shutdown_kernel(now=True)
        self._forks.close()

    def _replace(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._starting = [t for t in self._starting if t.is_alive()]
            thread = threading.Thread(target=self._start, name="kernel-pool", daemon=True)
            self._starting.append(thread)
            thread.start()

    def _start(self) -> None:
        try:
            kernel: Kernel | Exception = start(self._environment, self.timeout, forks=self._forks)
        except Exception as e:
            kernel = e
        with self._lock:
            if not self._closed:
                self._ready.put(kernel)
                return
        if isinstance(kernel, Kernel):
            kernel.shutdown_kernel(now=True)
