"""A bounded pool of threads, each taking the oldest queued alert and running its runbook on a warm kernel.

The workers outlive trouble with the queue: an error of the queue (an SQLite lock held too long, a full disk, a
PostgreSQL server restarting) is logged and retried with backoff (`health()` says why nothing runs meanwhile); a
queue that is no database any more, or that stays unusable for QUEUE_GIVE_UP_SECONDS, is fatal: `on_fatal` is
told, and `runbook serve` exits. A worker that no kernel is ready for runs on a kernel of its own. `stop(grace)` is
bounded: the runs under way get `grace` seconds, then are ended (each leaves failed evidence and is queued again).

An alert claimed again after its run was cut short (its replica killed, or stopped mid-run) is settled first
(`settle`): the evidence that run wrote before it stopped counts (the alert is not run again); a partial notebook
it left becomes failed evidence (runner.finish_interrupted), so the incident's chain stays whole; then it runs.
Past MAX_ATTEMPTS claims it fails instead.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TypeVar

from .. import escape, evidence, redact, runner, storage
from ..evidence import Record
from ..kernels import Kernel, KernelPool, KernelUnavailable
from ..limits import GRACE_SECONDS, Limits
from ..runfiles import RunFiles, evidence_files
from .queue import MAX_ATTEMPTS, AlertQueue, Job
from .routing import Routing
from .telemetry import Telemetry

log = logging.getLogger(__name__)
IDLE_POLL_SECONDS = 1.0  # a worker with nothing to do looks again this often, or when woken
BACKOFF_SECONDS = (0.5, 1, 2, 5, 10, 30)  # between attempts at a queue that failed, the last one repeated
QUEUE_GIVE_UP_SECONDS = 600.0  # a queue unusable this long: the service gives up (exits non-zero)
EVIDENCE_SECONDS = 30.0  # for runs ended at a stop to write their evidence
T = TypeVar("T")


class QueueFailed(Exception):
    """The queue cannot be used and will not be: fatal to the service."""


class Workers:
    def __init__(
        self,
        count: int,
        routing: Routing,
        queue: AlertQueue,
        output_dir: Path,
        telemetry: Telemetry,
        limits: Limits | None = None,
        on_fatal: Callable[[str], None] | None = None,
    ):
        self.routing, self.queue, self.output_dir, self.telemetry = routing, queue, output_dir, telemetry
        self.limits = limits or Limits()
        self.on_fatal = on_fatal or (lambda reason: None)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._end_runs = threading.Event()  # set when the grace of a stop is over: runs under way are ended
        self._threads = [threading.Thread(target=self._loop, name=f"worker-{i}", daemon=True) for i in range(count)]
        self._troubles: dict[str, str] = {}  # worker name -> why it cannot work now
        self._running: dict[str, int] = {}  # worker name -> the id of the job it runs
        self._kernels: KernelPool | None = None

    def start(self, environment: dict[str, str]) -> None:
        """Start the kernels (one spare beyond the workers, started with `environment`) and the workers."""
        self._kernels = KernelPool(size=len(self._threads) + 1, environment=environment)
        for thread in self._threads:
            thread.start()

    def health(self) -> str | None:
        """Why the workers cannot take work now (a worker gone, a queue failing), or None when they can."""
        if self._stopping.is_set():
            return "stopping"
        gone = [t.name for t in self._threads if t.ident is not None and not t.is_alive()]
        problems = [f"{name} is not running" for name in gone] + sorted(set(self._troubles.values()))
        return "; ".join(problems) or None

    def recover(self) -> int:
        """At start: the runs the last stop cut short, queued again (SQLite; in PostgreSQL their leases expire);
        how many. Each is settled by the worker that claims it."""
        return self.queue.recover()

    def settle(self, job: Job) -> bool:
        """Before running a job claimed again: whether its earlier run had finished (its evidence, not cut short,
        names the alert: the job is finished as that evidence says). Otherwise the partial notebook that run left,
        if any, gets failed evidence, and the job runs again."""
        folder = self.output_dir / job.incident
        storage.pull(folder)  # what the replica that ran it uploaded, when the output folder is an object store
        if found := evidence_of(folder, job.alert):
            path, record = found
            self._with_queue(lambda: self.queue.finish(job, record.status, str(path), None), "record a run")
            log.info("run %d: its evidence was written before its last attempt stopped: %s", job.id, path)
            return True
        files = RunFiles(folder, job.files) if job.files else None
        if files is None or not files.notebook.exists() or files.evidence.exists():
            return False
        try:
            parameters = self.routing.parameters(job.runbook, job.parameters)
            run = runner.finish_interrupted(
                self.routing.books[job.runbook], parameters, job.incident, files, alert=job.alert
            )
            log.info("run %d: cut short; its partial notebook is evidence: %s", job.id, run.evidence_path)
        except Exception:  # the routing changed since: the notebook stays for `runbook verify` to report
            log.exception("run %d: could not leave evidence of the partial run %s", job.id, files.notebook)
        return False

    def wake(self) -> None:
        """Something was queued."""
        self._wake.set()

    def stop(self, grace: float = 0.0) -> None:
        """Take nothing more; give the runs under way `grace` seconds, then end them (each still leaves failed
        evidence, and its alert runs again after a restart) and wait at most GRACE_SECONDS + EVIDENCE_SECONDS
        more for their evidence. Bounded whatever the runs do; every step logged."""
        self._stopping.set()
        self._wake.set()
        if self._running:
            log.info("stopping: %d run(s) under way, given %g s to finish", len(self._running), grace)
        self._join(grace)
        if self._running:
            log.warning("stopping: ending %d run(s) still under way: %s", len(self._running), self._running)
            self._end_runs.set()
            self._join(GRACE_SECONDS + EVIDENCE_SECONDS)
        if self._running:
            log.error("stopping without %d run(s) that did not end: %s", len(self._running), self._running)
        if self._kernels is not None:
            self._kernels.close(timeout=GRACE_SECONDS)
        log.info("workers stopped")

    def _join(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        for thread in self._threads:
            if thread.ident is not None:
                thread.join(max(0.0, deadline - time.monotonic()))

    def _loop(self) -> None:
        name = threading.current_thread().name
        try:
            while not self._stopping.is_set():
                job = self._with_queue(self.queue.claim, "claim the next alert")
                if job is None:
                    self._wake.wait(IDLE_POLL_SECONDS)
                    self._wake.clear()
                    continue
                self._running[name] = job.id
                try:
                    self._take(job)
                finally:
                    del self._running[name]
        except QueueFailed as e:
            self.on_fatal(str(e))
        except Exception:  # a bug: logged, and /healthz says this worker is gone
            log.exception("%s stopped", name)
            raise

    def _with_queue(self, action: Callable[[], T], what: str) -> T | None:
        """`action` on the queue, retried with backoff while SQLite fails (None once the workers stop); QueueFailed
        when the queue is no database any more or stays unusable for QUEUE_GIVE_UP_SECONDS."""
        name, first_failure, attempt = threading.current_thread().name, None, 0
        while True:
            try:
                result = action()
            except self.queue.errors as e:
                reason = f"cannot {what} from the queue {self.queue.where}: {self.queue.describe(e)}"
                if self.queue.fatal(e):
                    raise QueueFailed(reason) from e  # "file is not a database", "disk image is malformed"
                first_failure = first_failure or time.monotonic()
                if time.monotonic() - first_failure > QUEUE_GIVE_UP_SECONDS:
                    raise QueueFailed(f"{reason} (for {QUEUE_GIVE_UP_SECONDS:g} s)") from e
                if name not in self._troubles:
                    log.warning("%s: %s; trying again", name, reason)
                self._troubles[name] = reason
                if self._stopping.wait(BACKOFF_SECONDS[min(attempt, len(BACKOFF_SECONDS) - 1)]):
                    return None
                attempt += 1
                continue
            if self._troubles.pop(name, None):
                log.info("%s: the queue answers again", name)
            return result

    def _take(self, job: Job) -> None:
        """Settle a job claimed again, give it up past MAX_ATTEMPTS, else run it."""
        if job.retried:
            log.info("run %d: attempt %d (the one before was cut short)", job.id, job.attempts)
            if self.settle(job):
                return
        if job.attempts > MAX_ATTEMPTS:
            reason = f"interrupted {job.attempts - 1} times"
            log.error("run %d: %s for incident %s not run again: %s", job.id, job.runbook, job.incident, reason)
            self._with_queue(lambda: self.queue.finish(job, "failed", None, reason), "record a run")
            self.telemetry.runs.labels(job.runbook, "failed").inc()
            return
        self._run(job)

    def _run(self, job: Job) -> None:
        log.info("run %d: %s for incident %s", job.id, job.runbook, job.incident)
        started = time.monotonic()
        try:
            parameters = self.routing.parameters(job.runbook, job.parameters)
            result = runner.run(
                self.routing.books[job.runbook],
                parameters,
                job.incident,
                self.output_dir,
                alert=answered(job),
                kernel=self._kernel(),
                limits=self.limits,
                stop=self._end_runs,
                claimed=lambda files: self._each(job, lambda j: self.queue.started(j, files.stem), "record a run"),
            )
        except Exception as e:  # the routing changed since it was queued: no run
            reason = redact.text(f"{type(e).__name__}: {e}")
            log.error("run %d: %s could not run: %s", job.id, job.runbook, escape.line(reason))
            self._each(job, lambda j: self.queue.finish(j, "failed", None, reason), "record a run")
            self.telemetry.runs.labels(job.runbook, "failed").inc()
            return
        if self._end_runs.is_set() and result.error and result.error.ename == runner.INTERRUPTED:
            log.warning("run %d: ended by the stop (evidence %s); queued again", job.id, result.evidence_path)
            self._each(job, self.queue.release, "queue a run again")
            return
        error = result.error.line() if result.error else None
        if not self._each(
            job, lambda j: self.queue.finish(j, result.status, str(result.evidence_path), error), "record a run"
        ):
            log.warning("run %d: another attempt holds it now (this one outlived its lease)", job.id)
        self.telemetry.runs.labels(job.runbook, result.status).inc()
        self.telemetry.duration.labels(job.runbook).observe(time.monotonic() - started)
        log.info("run %d: %s %s: %s", job.id, job.runbook, result.status, result.evidence_path)

    def _each(self, job: Job, action: Callable[[Job], bool], what: str) -> bool:
        """`action` on the job and on each alike job it answers; whether it held for the job itself."""
        held = [bool(self._with_queue(partial(action, each), what)) for each in (job, *job.alike)]
        return held[0]

    def _kernel(self) -> Kernel | None:
        """A warm kernel; None (the run starts one of its own, or leaves evidence of why it could not) when none
        is ready."""
        if self._kernels is None:
            raise RuntimeError("the workers run only after start()")
        try:
            return self._kernels.take()
        except KernelUnavailable as e:
            log.warning("no warm kernel (%s): the run starts its own", e)
            return None


def answered(job: Job) -> dict:
    """What the evidence records under "alert": the alert that started the run, and the others it answers."""
    also = [{k: other.alert[k] for k in ("fingerprint", "startsAt", "labels")} for other in job.alike]
    return {**job.alert, "alike": also} if also else job.alert


def evidence_of(folder: Path, alert: dict) -> tuple[Path, Record] | None:
    """The evidence file in `folder` (and its record) of a run started by `alert`, or answering it (same
    fingerprint and startsAt), that was not cut short, if any."""
    for path in evidence_files(folder):
        try:
            record = evidence.read(path)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue  # unreadable evidence is for `runbook verify` to report
        if record.error and record.error.ename == runner.INTERRUPTED:
            continue
        recorded = record.alert or {}
        answered = [recorded, *recorded.get("alike", [])]
        if (alert["fingerprint"], alert["startsAt"]) in {(a.get("fingerprint"), a.get("startsAt")) for a in answered}:
            return path, record
    return None
