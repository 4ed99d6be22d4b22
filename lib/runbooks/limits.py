"""A run's time limits, and ending a run early.

`Limits`: the whole run (`--timeout`, default RUN_SECONDS) and each cell (papermill's `execution_timeout`, default
CELL_SECONDS, never more than the run's). `Watch` ends a run whose kernel is still busy at the run's deadline, or
when told to stop (`runbook serve` shutting down): SIGINT to the kernel (the running cell fails with
KeyboardInterrupt, papermill saves the notebook), then SIGKILL if it is still busy GRACE_SECONDS later (a call
stuck in C code; papermill then reports the kernel dead). Either way the run goes on to leave its evidence.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from dataclasses import dataclass

RUN_SECONDS = 300.0
CELL_SECONDS = 120.0
GRACE_SECONDS = 5.0
STOP_GRACE_SECONDS = 20.0  # `runbook serve` on SIGTERM: for the runs under way to finish before they are ended
_POLL_SECONDS = 0.25


@dataclass(frozen=True)
class Limits:
    run: float = RUN_SECONDS  # seconds for the whole run, kernel start to the last cell
    cell: float = CELL_SECONDS  # seconds for any one cell

    def __post_init__(self) -> None:
        if not (self.run > 0 and self.cell > 0):
            raise ValueError(f"time limits must be positive, got run {self.run} s, cell {self.cell} s")

    @property
    def per_cell(self) -> float:
        return min(self.cell, self.run)


class Watch:
    """Watches one run from a thread of its own until `done()`; `attach` names the run's kernel process once it
    has one (a run that passed its deadline before then is ended as soon as it does)."""

    def __init__(self, deadline: float, stop: threading.Event | None = None):
        self.deadline, self.stop = deadline, stop
        self.why: str | None = None  # "timeout" | "stopped": why the run was ended early, if it was
        self._pid: int | None = None
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="run-watch", daemon=True)
        self._thread.start()

    def attach(self, pid: int | None) -> None:
        with self._lock:
            self._pid = pid
            fired = self.why is not None
        if fired:
            self._end()

    def done(self) -> str | None:
        """The run is over: stop watching; why it was ended early, if it was."""
        self._done.set()
        self._thread.join()
        return self.why

    def _watch(self) -> None:
        while not self._done.wait(min(_POLL_SECONDS, max(0.0, self.deadline - time.monotonic()))):
            if self.stop is not None and self.stop.is_set():
                why = "stopped"
            elif time.monotonic() >= self.deadline:
                why = "timeout"
            else:
                continue
            with self._lock:
                self.why = why
            self._end()
            return

    def _end(self) -> None:
        """SIGINT to the kernel, SIGKILL if it is still busy GRACE_SECONDS later."""
        self._signal(signal.SIGINT)
        if not self._done.wait(GRACE_SECONDS):
            self._signal(signal.SIGKILL)

    def _signal(self, number: int) -> None:
        with self._lock:
            pid = self._pid
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, number)
