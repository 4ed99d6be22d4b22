"""A bounded pool of threads, each taking the oldest queued alert and running its runbook on a warm kernel."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

from .. import runner
from ..kernels import KernelPool
from .metrics import Metrics
from .queue import Job, Queue
from .routing import Routing

log = logging.getLogger(__name__)
IDLE_POLL_SECONDS = 1.0  # a worker with nothing to do looks again this often, or when woken


class Workers:
    def __init__(self, count: int, routing: Routing, queue: Queue, output_dir: Path, metrics: Metrics):
        self.routing, self.queue, self.output_dir, self.metrics = routing, queue, output_dir, metrics
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
            if evidence := evidence_of(folder, job.alert):
                self.queue.finish(job.id, json.loads(evidence.read_text())["status"], str(evidence), None)
                log.info("run %d: its evidence was written before the last stop: %s", job.id, evidence)
            elif notebook := next((n for n in without_evidence(folder, job.runbook) if n not in partial), None):
                partial.add(notebook)
                try:
                    parameters = self.routing.parameters(job.runbook, job.parameters)
                    run = runner.finish_interrupted(self.routing.books[job.runbook], parameters, job.incident,
                                                    notebook, alert=job.alert)
                    log.info("run %d: cut short by the last stop; its partial notebook is evidence: %s",
                             job.id, run.evidence_path)
                except Exception:  # the routing changed since: the notebook stays for `runbook verify` to report
                    log.exception("run %d: could not leave evidence of the partial run %s", job.id, notebook)
        return self.queue.recover()

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
            result = runner.run(self.routing.books[job.runbook], parameters, job.incident, self.output_dir,
                                alert=job.alert, kernel=self._kernels.take())
        except Exception as e:  # the routing changed since it was queued, or no kernel could be started
            log.exception("run %d: %s could not run", job.id, job.runbook)
            self.queue.finish(job.id, "failed", None, f"{type(e).__name__}: {e}")
            self.metrics.runs.labels(job.runbook, "failed").inc()
            return
        error = result.error and f"cell {result.error['cell']}: {result.error['ename']}: {result.error['evalue']}"
        self.queue.finish(job.id, result.status, str(result.evidence_path), error)
        self.metrics.runs.labels(job.runbook, result.status).inc()
        self.metrics.duration.labels(job.runbook).observe(time.monotonic() - started)
        log.info("run %d: %s %s: %s", job.id, job.runbook, result.status, result.evidence_path)


def evidence_of(folder: Path, alert: dict) -> Path | None:
    """The evidence file in `folder` of a run started by `alert` (same fingerprint and startsAt) that was not
    cut short, if any."""
    for path in sorted(folder.glob("*.evidence.json")):
        try:
            record = json.loads(path.read_text())
            recorded, error = record.get("alert") or {}, record.get("error") or {}
        except (OSError, ValueError, AttributeError):
            continue  # unreadable evidence is for `runbook verify` to report
        if error.get("ename") == runner.INTERRUPTED:
            continue
        if (recorded.get("fingerprint"), recorded.get("startsAt")) == (alert["fingerprint"], alert["startsAt"]):
            return path
    return None


def without_evidence(folder: Path, runbook: str) -> list[Path]:
    """The notebooks of `runbook` in `folder` that no evidence file stands beside: runs cut short, oldest first."""
    return [path for path in sorted(folder.glob(f"*-{runbook}.ipynb"))
            if path.name[len("YYYYMMDDTHHMMSSZ-"):] == f"{runbook}.ipynb"
            and not path.with_name(path.name.removesuffix(".ipynb") + ".evidence.json").exists()]
