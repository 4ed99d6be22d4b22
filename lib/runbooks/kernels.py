"""Kernels started before they are needed, so that a run triggered by an alert skips the kernel start and
the import of the runbook library.

Each kernel serves exactly one run and is shut down after it (`runner.run(..., kernel=...)` does that): nothing
a notebook leaves behind reaches the next run. `KernelPool.take` hands out a ready kernel and starts its
replacement in the background.
"""

from __future__ import annotations

import os
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Mapping
from typing import Any

from jupyter_client import BlockingKernelClient, KernelManager
from traitlets import DottedObjectName

from . import redact, registry

# The modules the notebooks import (registry.warm_up_modules), loaded by `__import__` so that no name is bound in
# the namespace the notebook will run in.
WARM_UP = "\n".join(f"__import__({module!r})" for module in registry.warm_up_modules())
# As nbclient starts the kernels of a cold run: IPython's history in memory, never in a file.
ARGUMENTS = ["--HistoryManager.hist_file=:memory:"]


class KernelUnavailable(Exception):
    """No kernel became ready in time, or starting one failed."""


class Kernel(KernelManager):
    """A python3 kernel over Unix sockets (not unencrypted loopback TCP), for one run.

    Its connection file and sockets live in a private folder of their own (by default they would go to the
    current directory, under names that kernels started at the same time would share). nbclient drives the
    kernel it is given through an asynchronous client and, since it did not start that kernel, leaves the
    client's channels (sockets and a heartbeat thread) open: shutting the kernel down closes every client made
    for it.
    """

    client_class = DottedObjectName("jupyter_client.asynchronous.AsyncKernelClient")

    def __init__(self) -> None:
        self.folder = tempfile.mkdtemp(prefix="runbook-kernel-")
        super().__init__(
            kernel_name="python3",
            transport="ipc",
            ip=os.path.join(self.folder, "ipc"),
            connection_file=os.path.join(self.folder, "kernel.json"),
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


def start(environment: Mapping[str, str], timeout: float = 60, cwd: str | None = None, warm: bool = True) -> Kernel:
    """A started kernel (in `cwd`), with the runbook library imported if `warm`; shut down again if that fails."""
    kernel = Kernel()
    try:
        kernel.start_kernel(env=dict(environment), extra_arguments=ARGUMENTS, cwd=cwd)
        if warm:
            execute_silently(kernel, WARM_UP, timeout, just_started=True)
    except BaseException:
        kernel.shutdown_kernel(now=True)
        raise
    return kernel


def execute_silently(kernel: KernelManager, code: str, timeout: float = 60, just_started: bool = False) -> None:
    """Run `code` on `kernel` leaving no output, history entry or execution count; raise KernelUnavailable if
    it fails. The code is sent over the kernel's socket only, never written anywhere. A kernel `just_started`
    is first waited for (a kernel_info round trip, then 0.2 s of draining its broadcasts)."""
    if not kernel.is_alive():
        raise KernelUnavailable("the kernel is not running")
    client = BlockingKernelClient(parent=kernel)  # alive = its process runs: a slow start misses heartbeats
    client.load_connection_info(kernel.get_connection_info())
    client.start_channels()
    try:
        if just_started:
            client.wait_for_ready(timeout=timeout)
        reply = client.execute(code, silent=True, store_history=False, reply=True, timeout=timeout)
    except (RuntimeError, TimeoutError) as e:
        raise KernelUnavailable(f"kernel did not answer: {e}") from e
    finally:
        client.stop_channels()
    content = reply["content"]
    if content["status"] != "ok":
        raise KernelUnavailable(f"kernel set-up failed: {content.get('ename')}: {content.get('evalue')}")


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
        one still starting after that shuts itself down when it is ready)."""
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
            kernel: Kernel | Exception = start(self._environment, self.timeout)
        except Exception as e:
            kernel = e
        with self._lock:
            if not self._closed:
                self._ready.put(kernel)
                return
        if isinstance(kernel, Kernel):
            kernel.shutdown_kernel(now=True)
