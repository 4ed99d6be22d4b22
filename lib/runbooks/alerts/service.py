"""`runbook serve`: the HTTP side (Starlette, served by uvicorn).

POST /alerts  Alertmanager's webhook (bearer token): 202 once every alert is committed to the queue,
              with what became of each; 401 no or wrong token, 413 body over MAX_BODY or more alerts than
              limits.alerts_per_notification, 400 not JSON, 422 not a version-4 payload (the message names
              the field), 503 the queue holds limits.queued runs or cannot be written (Alertmanager retries).
GET  /runs    recent runs (bearer token): alert, runbook, incident, status, evidence path.
GET  /healthz 200 while the workers can take work, with the queue depth; 503 saying why when a worker is gone,
              the queue cannot be read, or the service stops.
GET  /metrics Prometheus text: alerts received, deduplicated, not run; runs; run durations; queue depth.
Beside them, a thread escalates unresolved incidents on time (escalations.py).
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import os
import signal
from dataclasses import asdict
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .. import escape, notify, redact, storage
from ..errors import UsageError
from ..limits import STOP_GRACE_SECONDS, Limits
from ..notify import Integrations
from . import escalations, intake, webhook
from .queue import AlertQueue, Queue, Unusable
from .routing import Routing
from .telemetry import Telemetry
from .workers import Workers

log = logging.getLogger(__name__)
TOKEN_VARIABLE = redact.WEBHOOK_TOKEN
MAX_BODY = 1024 * 1024
QUEUE = Path(".serve") / "queue.sqlite3"  # under the output folder
LEASE_MARGIN_SECONDS = 60.0  # a PostgreSQL queue's lease: a run's time limit plus this, to write its evidence
MIN_LEASE_MARGIN_SECONDS = 15.0  # ... at least (a run past its limit: interrupted, killed 5 s later, evidence)


def open_queue(spec: str | None, output_dir: Path, limits: Limits, lease: float | None = None) -> AlertQueue:
    """`--queue`: the SQLite file of this replica (default: QUEUE under the output folder), or the PostgreSQL
    database of a postgresql:// URI that replicas share, whose leases last `lease` seconds (default: the run's time
    limit plus LEASE_MARGIN_SECONDS). UsageError for a lease a live run could outlast; Unusable (exit 4) for a
    queue that cannot be used."""
    from .pgqueue import PgQueue, is_dsn

    if spec is None or not is_dsn(spec):
        return Queue(Path(spec) if spec else output_dir / QUEUE)
    lease = lease if lease is not None else limits.run + LEASE_MARGIN_SECONDS
    if lease < limits.run + MIN_LEASE_MARGIN_SECONDS:
        raise UsageError(
            f"--lease {lease:g} s: a run may take --timeout {limits.run:g} s and then needs time to leave its "
            f"evidence; use at least {limits.run + MIN_LEASE_MARGIN_SECONDS:g} s"
        )
    queue = PgQueue(spec, lease)
    storage.set_incident_lock(queue.incident_lock)  # an output folder in an object store: one chain writer per incident
    return queue


class NoToken(UsageError):
    """`runbook serve` without a webhook token and without --insecure-no-auth. Exit 3."""

    exit_code = 3


def token_from_environment(insecure_no_auth: bool) -> str | None:
    """The bearer token Alertmanager must send; None only when the user chose to run without one."""
    token = os.environ.get(TOKEN_VARIABLE, "")
    if token or insecure_no_auth:
        return token or None
    raise NoToken(
        f"{TOKEN_VARIABLE} is not set: set it to the credentials Alertmanager sends "
        f"(http_config.authorization), or pass --insecure-no-auth"
    )


class Service:
    """The HTTP handlers, over one queue, one pool of workers, the escalations and the service's telemetry."""

    def __init__(
        self,
        routing: Routing,
        output_dir: Path,
        workers: int,
        token: str | None,
        integrations: Integrations | None = None,
        escalate_every: float = escalations.INTERVAL_SECONDS,
        limits: Limits | None = None,
        grace: float = STOP_GRACE_SECONDS,
        queue: AlertQueue | None = None,
    ):
        self.routing, self.output_dir, self.token, self.grace = routing, output_dir, token, grace
        self.queue = queue or Queue(output_dir / QUEUE)
        self.telemetry = Telemetry()
        self.failure: str | None = None  # why the service gave up, when it did
        self.on_failure = lambda: None  # told when it gives up: `serve` then stops uvicorn
        self.workers = Workers(workers, routing, self.queue, output_dir, self.telemetry, limits, self._fail)
        self.integrations = integrations or notify.load()
        self.escalator = escalations.Escalator(output_dir, self.integrations, escalate_every, self.queue.lead)

    def _fail(self, reason: str) -> None:
        if self.failure is None:
            self.failure = reason
            log.error("giving up: %s", reason)
            self.on_failure()

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/alerts", self.alerts, methods=["POST"]),
                Route("/runs", self.runs, methods=["GET"]),
                Route("/healthz", self.healthz, methods=["GET"]),
                Route("/metrics", self.metrics, methods=["GET"]),
            ],
            lifespan=self.lifespan,
        )

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette):
        """Recover the runs a previous stop cut short, start the workers; on the way out, stop them."""
        if requeued := self.workers.recover():
            log.info("%d run(s) cut short by the last stop are queued again", requeued)
        self.workers.start(self.kernel_environment())
        self.escalator.start()
        yield
        self.escalator.stop()
        await run_in_threadpool(self.workers.stop, self.grace)
        self.queue.close()

    def kernel_environment(self) -> dict[str, str]:
        """This process's environment less the tool's own secrets (webhook token, seal key) and the integrations':
        no notebook reads them."""
        hidden = set(self.integrations.secret_variables)
        return {k: v for k, v in redact.kernel_environment(os.environ).items() if k not in hidden}

    async def alerts(self, request: Request) -> Response:
        try:
            self._authorize(request)
            notification = webhook.parse(await _body(request))
        except webhook.Invalid as e:
            log.warning("POST /alerts refused (%d): %s", e.status, e)
            return _refusal(e)
        policy = self.routing.policy
        if len(notification.alerts) > policy.alerts_per_notification:
            message = (
                f"{len(notification.alerts)} alerts in one notification, over limits.alerts_per_notification "
                f"({policy.alerts_per_notification}): send fewer at once (Alertmanager's max_alerts)"
            )
            log.warning("POST /alerts refused (413): %s", message)
            return JSONResponse({"error": message}, 413)
        try:
            waiting = (await run_in_threadpool(self.queue.depth))["queued"]
        except self.queue.errors as e:
            return self._queue_failed(e)
        if waiting >= policy.queued:
            message = f"the queue is full: {waiting} runs wait (limits.queued {policy.queued}); send again later"
            log.warning("POST /alerts refused (503): %s", message)
            return JSONResponse({"error": message}, 503, headers={"Retry-After": "60"})
        if notification.truncated_alerts:
            log.warning(
                "group %r: Alertmanager left out %d alert(s) (its max_alerts)",
                notification.group_key,
                notification.truncated_alerts,
            )
        try:
            outcomes = await run_in_threadpool(intake.receive, notification, self.routing, self.queue, self.output_dir)
        except self.queue.errors as e:  # Alertmanager sends it again later
            return self._queue_failed(e)
        for o in outcomes:
            self.telemetry.count(o)
            log.info(
                "alert %r %s (%s): %s%s",
                o.alertname,
                o.fingerprint,
                o.status,
                o.outcome,
                f": {escape.line(o.reason)}" if o.reason else "",
            )
        self.workers.wake()
        return JSONResponse({"alerts": [asdict(o) for o in outcomes]}, 202)

    async def runs(self, request: Request) -> Response:
        try:
            self._authorize(request)
        except webhook.Invalid as e:
            return _refusal(e)
        limit = request.query_params.get("limit", "50")
        if not limit.isdigit() or not 1 <= int(limit) <= 1000:
            return JSONResponse({"error": "limit must be an integer from 1 to 1000"}, 400)
        return JSONResponse({"runs": await run_in_threadpool(self.queue.recent_runs, int(limit))})

    async def healthz(self, request: Request) -> Response:
        """200 while the workers can take work and the queue answers; 503 saying why otherwise."""
        try:
            depth = await run_in_threadpool(self.queue.depth)
        except self.queue.errors as e:
            reason = f"the queue cannot be read: {self.queue.describe(e)}"
            return JSONResponse({"status": "unavailable", "reason": reason}, 503)
        if problem := self.failure or self.workers.health():
            return JSONResponse({"status": "unavailable", "reason": problem, **depth}, 503)
        return JSONResponse({"status": "ok", **depth})

    async def metrics(self, request: Request) -> Response:
        text = self.telemetry.text(await run_in_threadpool(self.queue.depth))
        return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    def _queue_failed(self, error: Exception) -> JSONResponse:
        message = self.queue.describe(error)
        log.error("POST /alerts: the queue cannot take alerts now: %s", message)
        return JSONResponse({"error": f"the queue cannot take alerts now: {message}; send again later"}, 503)

    def _authorize(self, request: Request) -> None:
        """Invalid(401) unless the request carries the bearer token (or the service runs without one)."""
        if self.token is None:
            return
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        if not (scheme.lower() == "bearer" and hmac.compare_digest(credentials.encode(), self.token.encode())):
            raise webhook.Invalid(401, "missing or wrong bearer token")


def create_app(
    routing: Routing,
    output_dir: Path,
    workers: int,
    token: str | None,
    integrations: Integrations | None = None,
    escalate_every: float = escalations.INTERVAL_SECONDS,
    limits: Limits | None = None,
    grace: float = STOP_GRACE_SECONDS,
    queue: AlertQueue | None = None,
) -> Starlette:
    """The service; its lifespan recovers runs cut short by a previous stop, starts the workers and escalations."""
    return Service(routing, output_dir, workers, token, integrations, escalate_every, limits, grace, queue).app()


class Stopped(Exception):
    """SIGTERM or SIGINT stopped the service, which then shut down in order."""


def serve(
    routing: Routing,
    output_dir: Path,
    workers: int,
    token: str | None,
    host: str,
    port: int,
    integrations: Integrations | None = None,
    escalate_every: float = escalations.INTERVAL_SECONDS,
    limits: Limits | None = None,
    grace: float = STOP_GRACE_SECONDS,
    queue: AlertQueue | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT: then take no more requests, give the runs under way `grace` seconds, end the
    others (each leaves failed evidence) and return. Unusable (exit 4) when the queue fails for good."""
    import uvicorn

    if token is None:
        log.warning("--insecure-no-auth: anyone who can reach %s:%d can start runs", host, port)
    service = Service(routing, output_dir, workers, token, integrations, escalate_every, limits, grace, queue)
    log.info("queue: %s", service.queue.where)
    server = uvicorn.Server(
        uvicorn.Config(service.app(), host=host, port=port, log_level="info", timeout_graceful_shutdown=int(grace))
    )
    service.on_failure = lambda: setattr(server, "should_exit", True)

    def stopped(signum, frame) -> None:  # uvicorn raises the signal it stopped for again once it has stopped
        raise Stopped(signal.Signals(signum).name)

    before = {number: signal.signal(number, stopped) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run()
    except Stopped as e:
        log.info("runbook serve stopped (%s)", e)
    finally:
        for number, handler in before.items():
            signal.signal(number, handler)
    if service.failure:
        raise Unusable(f"runbook serve gave up: {service.failure}")


def _refusal(error: webhook.Invalid) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
    return JSONResponse({"error": str(error)}, error.status, headers=headers)


async def _body(request: Request) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed MAX_BODY."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise webhook.Invalid(413, f"body over {MAX_BODY} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise webhook.Invalid(413, f"body over {MAX_BODY} bytes")
    return bytes(body)
