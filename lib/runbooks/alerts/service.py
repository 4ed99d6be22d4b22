"""`runbook serve`: the HTTP side (Starlette, served by uvicorn).

POST /alerts  Alertmanager's webhook (bearer token): 202 once every alert is committed to the queue,
              with what became of each; 401 no or wrong token, 413 body over MAX_BODY, 400 not JSON,
              422 not a version-4 payload (the message names the field).
GET  /runs    recent runs (bearer token): alert, runbook, incident, status, evidence path.
GET  /healthz 200 while the service runs, with the queue depth.
GET  /metrics Prometheus text: alerts received, deduplicated, not run; runs; run durations; queue depth.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import os
from dataclasses import asdict
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import UsageError
from . import intake, webhook
from .metrics import Metrics
from .queue import Queue
from .routing import Routing
from .workers import Workers

log = logging.getLogger(__name__)
TOKEN_VARIABLE = "RUNBOOK_WEBHOOK_TOKEN"
MAX_BODY = 1024 * 1024
QUEUE = Path(".serve") / "queue.sqlite3"  # under the output folder


class NoToken(UsageError):
    """`runbook serve` without a webhook token and without --insecure-no-auth. Exit 3."""

    exit_code = 3


def token_from_environment(insecure_no_auth: bool) -> str | None:
    """The bearer token Alertmanager must send; None only when the user chose to run without one."""
    token = os.environ.get(TOKEN_VARIABLE, "")
    if token or insecure_no_auth:
        return token or None
    raise NoToken(f"{TOKEN_VARIABLE} is not set: set it to the credentials Alertmanager sends "
                  f"(http_config.authorization), or pass --insecure-no-auth")


def create_app(routing: Routing, output_dir: Path, workers: int, token: str | None) -> Starlette:
    """The service; its lifespan recovers runs cut short by a previous stop and starts the workers."""
    queue = Queue(output_dir / QUEUE)
    metrics = Metrics()
    pool = Workers(workers, routing, queue, output_dir, metrics)

    def authorized(request: Request) -> bool:
        if token is None:
            return True
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(credentials.encode(), token.encode())

    async def alerts(request: Request) -> Response:
        try:
            if not authorized(request):
                raise webhook.Invalid(401, "missing or wrong bearer token")
            notification = webhook.parse(await _body(request))
        except webhook.Invalid as e:
            log.warning("POST /alerts refused (%d): %s", e.status, e)
            headers = {"WWW-Authenticate": "Bearer"} if e.status == 401 else None
            return JSONResponse({"error": str(e)}, e.status, headers=headers)
        if notification.truncated_alerts:
            log.warning("group %r: Alertmanager left out %d alert(s) (its max_alerts)", notification.group_key,
                        notification.truncated_alerts)
        outcomes = await run_in_threadpool(intake.receive, notification, routing, queue, output_dir)
        for o in outcomes:
            metrics.received.labels(o.status).inc()
            if o.outcome == "duplicate":
                metrics.deduplicated.inc()
            elif o.outcome in ("unrouted", "rejected"):
                metrics.not_run.labels(o.outcome).inc()
            log.info("alert %r %s (%s): %s%s", o.alertname, o.fingerprint, o.status, o.outcome,
                     f": {o.reason}" if o.reason else "")
        pool.wake()
        return JSONResponse({"alerts": [asdict(o) for o in outcomes]}, 202)

    async def runs(request: Request) -> Response:
        if not authorized(request):
            return JSONResponse({"error": "missing or wrong bearer token"}, 401, headers={"WWW-Authenticate": "Bearer"})
        limit = request.query_params.get("limit", "50")
        if not limit.isdigit() or not 1 <= int(limit) <= 1000:
            return JSONResponse({"error": "limit must be an integer from 1 to 1000"}, 400)
        return JSONResponse({"runs": await run_in_threadpool(queue.recent_runs, int(limit))})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", **await run_in_threadpool(queue.depth)})

    async def metrics_text(request: Request) -> Response:
        text = metrics.text(await run_in_threadpool(queue.depth))
        return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        if requeued := pool.recover():
            log.info("%d run(s) cut short by the last stop are queued again", requeued)
        # Kernels start without the webhook token: no notebook can read it.
        pool.start({k: v for k, v in os.environ.items() if k != TOKEN_VARIABLE})
        yield
        pool.stop()

    return Starlette(
        routes=[
            Route("/alerts", alerts, methods=["POST"]),
            Route("/runs", runs, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", metrics_text, methods=["GET"]),
        ],
        lifespan=lifespan,
    )


def serve(routing: Routing, output_dir: Path, workers: int, token: str | None, host: str, port: int) -> None:
    import uvicorn

    if routing.password:  # one PGPASSWORD for every run: libpq reads it, no notebook or file sees it
        os.environ["PGPASSWORD"] = routing.password
    if token is None:
        log.warning("--insecure-no-auth: anyone who can reach %s:%d can start runs", host, port)
    uvicorn.run(create_app(routing, output_dir, workers, token), host=host, port=port, log_level="info")


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
