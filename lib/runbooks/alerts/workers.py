"""A bounded pool of threads, each taking the oldest queued alert and running its runbook on a warm kernel."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from .. import escape, evidence, redact, runner
from ..evidence import Record
from ..kernels import KernelPool
from ..runfiles import evidence_files, without_evidence
from .queue import Job, Queue
from .routing import Routing
from .telemetry import Telemetry

log = logging.getLogger(__name__)
IDLE_POLL_SECONDS = 1.0  # a worker with nothing to do looks again this often, or when woken


class Workers:
    def __init__(self, count: int, routing: Routing, queue: Queue, output_dir: Path, telemetry: Telemetry):
        self.routing, self.queue, self.output_dir, self.telemetry = routing, queue, output_dir, telemetry
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._threads = [threading.Thread(target=self._loop, name=f"worker-{i}") for i in range(count)]
        self._kernels: KernelPool | None = None

    def start(self, environment: dict[str, str]) -> None:
        """Start the kernels (one spare beyond the workers, started with `environment`) and the workers."""
        self._kernels = KernelPool(size=len(self._threads) + 1, environment=environment)
        for thread in self._threads:
            thread.start()

    def recover(self) -> int:
        """After a restart: a run cut short after its evidence was written is finished as its evidence says (not
        run again); the others get failed evidence from their partial notebook (runner.finish_interrupted, so the
        incident's chain stays whole) and are queued again. How many were queued again."""
        partial = set()
        for job in self.queue.running():
            folder = self.output_dir / job.incident
            if found := evidence_of(folder, job.alert):
                path, record = found
                self.queue.finish(job.id, record.status, str(path), None)
                log.info("run %d: its evidence was written before the last stop: %s", job.id, path)
            elif files := next((f for f in without_evidence(folder, job.runbook) if f not in partial), None):
                partial.add(files)
                try:
                    parameters = self.routing.parameters(job.runbook, job.parameters)
                    run = runner.finish_interrupted(
                        self.routing.books[job.runbook], parameters, job.incident, files, alert=job.alert
                    )
                    log.info(
                        "run %d: cut short by the last stop; its partial notebook is evidence: %s",
                        job.id,
                        run.evidence_path,
                    )
                except Exception:  # the routing changed since: the notebook stays for `runbook verify` to report
                    log.exception("run %d: could not leave evidence of the partial run %s", job.id, files.notebook)
        return self.queue.recover()

    def _pool(self) -> KernelPool:
        if self._kernels is None:
            raise RuntimeError("the workers run only after start()")
        return self._kernels

    def wake(self) -> None:
        """Something was queued."""
        self._wake.set()

    def stop(self) -> None:
        """Take nothing more; wait for the runs under way (a kill instead leaves them to `Queue.recover`)."""
        self._stopping.set()
        self._wake.set()
        for thread in self._threads:
            thread.join()
        if self._kernels is not None:
            self._kernels.close()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            job = self.queue.claim()
            if job is None:
                self._wake.wait(IDLE_POLL_SECONDS)
                self._wake.clear()
                continue
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
                alert=job.alert,
                kernel=self._pool().take(),
            )
        except Exception as e:  # the routing changed since it was queued, or no kernel could be started
            reason = redact.text(f"{type(e).__name__}: {e}")
            log.error("run %d: %s could not run: %s", job.id, job.runbook, escape.line(reason))
            self.queue.finish(job.id, "failed", None, reason)
            self.telemetry.runs.labels(job.runbook, "failed").inc()
            return
        error = result.error.line() if result.error else None
        self.queue.finish(job.id, result.status, str(result.evidence_path), error)
        self.telemetry.runs.labels(job.runbook, result.status).inc()
        self.telemetry.duration.labels(job.runbook).observe(time.monotonic() - started)
        log.info("run %d: %s %s: %s", job.id, job.runbook, result.status, result.evidence_path)


def evidence_of(folder: Path, alert: dict) -> tuple[Path, Record] | None:
    """The evidence file in `folder` (and its record) of a run started by `alert` (same fingerprint and startsAt)
    that was not cut short, if any."""
    for path in evidence_files(folder):
        try:
            record = evidence.read(path)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue  # unreadable evidence is for `runbook verify` to report
        if record.error and record.error.ename == runner.INTERRUPTED:
            continue
        recorded = record.alert or {}
        if (recorded.get("fingerprint"), recorded.get("startsAt")) == (alert["fingerprint"], alert["startsAt"]):
            return path, record
    return None
