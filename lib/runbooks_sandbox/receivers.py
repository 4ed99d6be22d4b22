"""Local stand-ins for Slack, Statuspage and PagerDuty that accept only each API's documented request shape.

One HTTP server on loopback, three receivers, each answering as its service documents it:

- Slack incoming webhook: `POST /services/<T>/<B>/<secret>` (the webhook URL is the secret), `Content-Type:
  application/json`, a JSON object with a non-empty `text` and only fields a webhook takes. `200 ok`; a wrong path
  `404 no_service`; anything else `400 invalid_payload` (text/plain, as Slack answers).
- Statuspage: `POST /v1/pages/<page_id>/incidents` and `PATCH /v1/pages/<page_id>/incidents/<id>`, `Authorization:
  OAuth <api key>`, JSON `{"incident": {...}}` with only documented fields and a valid `status` (a creation also
  needs `name`). `201`/`200` with the incident (its `id`, `status`, `incident_updates`); `401` wrong key; `404`
  unknown page or incident; `422` invalid incident.
- PagerDuty Events API v2: `POST /v2/enqueue`, JSON with the configured `routing_key`, `event_action` trigger,
  acknowledge or resolve, a `dedup_key` of at most 255 characters, and for a trigger a `payload` with `summary`
  (at most 1024 characters), `source` and `severity` (critical, error, warning, info). `202 {"status": "success",
  "message": "Event processed", "dedup_key": ...}`; otherwise `400 {"status": "invalid event", "errors": [...]}`.

`Receivers.requests` holds every request as received; `accepted(channel)` the ones answered 2xx. `fail_next`
makes a receiver answer the next requests with an error status (or not at all within `delay` seconds), for the
retry paths. The sandbox serves them, with an integrations file pointing at them; the tests check what arrived.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

SLACK_FIELDS = {"text", "blocks", "attachments", "thread_ts", "mrkdwn", "username", "icon_emoji", "icon_url", "channel"}
STATUSPAGE_FIELDS = {
    "name",
    "status",
    "impact_override",
    "scheduled_for",
    "scheduled_until",
    "scheduled_remind_prior",
    "scheduled_auto_in_progress",
    "scheduled_auto_completed",
    "metadata",
    "deliver_notifications",
    "auto_transition_deliver_notifications_at_end",
    "auto_transition_deliver_notifications_at_start",
    "auto_transition_to_maintenance_state",
    "auto_transition_to_operational_state",
    "auto_tweet_at_beginning",
    "auto_tweet_on_completion",
    "auto_tweet_on_creation",
    "auto_tweet_one_hour_before",
    "backfill_date",
    "backfilled",
    "body",
    "components",
    "component_ids",
    "scheduled_auto_transition",
}
STATUSPAGE_STATUSES = {
    "investigating",
    "identified",
    "monitoring",
    "resolved",
    "scheduled",
    "in_progress",
    "verifying",
    "completed",
}
PAGERDUTY_FIELDS = {"routing_key", "event_action", "dedup_key", "payload", "images", "links", "client", "client_url"}
PAGERDUTY_PAYLOAD = {"summary", "source", "severity", "timestamp", "component", "group", "class", "custom_details"}


@dataclass(frozen=True)
class Received:
    channel: str  # slack | statuspage | pagerduty | unknown
    method: str
    path: str
    headers: dict[str, str]
    body: Any  # parsed JSON, or the raw text when it is none
    status: int  # what the receiver answered


@dataclass
class Receivers:
    """`with Receivers() as r:` ... `r.url`, `r.slack_webhook`, `r.statuspage_key`, `r.pagerduty_key`."""

    slack_webhook_path: str = field(default_factory=lambda: f"/services/T{_token(8)}/B{_token(8)}/{_token(24)}")
    statuspage_page: str = "kctbh9vrtdwd"
    statuspage_key: str = field(default_factory=lambda: _token(32))
    pagerduty_key: str = field(default_factory=lambda: _token(32))
    requests: list[Received] = field(default_factory=list)
    incidents: dict[str, dict] = field(default_factory=dict)  # the status page's incidents by id
    _failures: dict[str, list[tuple[int | None, float]]] = field(default_factory=dict)
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        assert self._server is not None, "started by __enter__"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def slack_webhook(self) -> str:
        return f"{self.url}{self.slack_webhook_path}"

    def environment(self) -> dict[str, str]:
        """The secrets, as the variables integrations_yaml() names them."""
        return {
            "SLACK_WEBHOOK_URL": self.slack_webhook,
            "STATUSPAGE_API_KEY": self.statuspage_key,
            "PAGERDUTY_ROUTING_KEY": self.pagerduty_key,
        }

    def integrations_yaml(self, attempts: int = 3, backoff_seconds: float = 0.2, timeout_seconds: float = 5) -> str:
        """An integrations file (parameters/integrations.yaml's shape) pointing at these receivers."""
        return (
            "slack:\n  webhook_url_env: SLACK_WEBHOOK_URL\n"
            f"statuspage:\n  page_id: {self.statuspage_page}\n  api_key_env: STATUSPAGE_API_KEY\n"
            f"  url: {self.url}/v1\n"
            f"pagerduty:\n  routing_key_env: PAGERDUTY_ROUTING_KEY\n  url: {self.url}/v2/enqueue\n"
            "  source: autolytiq-sandbox\n"
            f"delivery: {{attempts: {attempts}, backoff_seconds: {backoff_seconds}, "
            f"timeout_seconds: {timeout_seconds}}}\n"
        )

    def write_integrations(self, path: Path, **policy: Any) -> Path:
        path.write_text(self.integrations_yaml(**policy))
        return path

    def accepted(self, channel: str) -> list[Received]:
        return [r for r in self.requests if r.channel == channel and 200 <= r.status < 300]

    def fail_next(self, channel: str, times: int, status: int | None = 503, delay: float = 0.0) -> None:
        """Answer the next `times` requests to `channel` with `status` (None: hold the connection `delay` seconds and
        close it unanswered)."""
        with self._lock:
            self._failures.setdefault(channel, []).extend([(status, delay)] * times)

    def __enter__(self) -> Receivers:
        receivers = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receivers._handle(self)

            def do_PATCH(self) -> None:
                receivers._handle(self)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, name="receivers", daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # --- the receivers

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(length).decode("utf-8", "replace") if length else ""
        channel = self._channel(request.path)
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw
        with self._lock:
            failure = self._failures.get(channel, [None]).pop(0) if self._failures.get(channel) else None
        if failure is not None:
            status, delay = failure
            if status is None:
                time.sleep(delay)
                self._record(channel, request, headers, body, 0)
                request.close_connection = True
                return
            self._record(channel, request, headers, body, status)
            self._answer(request, status, "text/plain", "upstream trouble")
            return
        handler = {"slack": self._slack, "statuspage": self._statuspage, "pagerduty": self._pagerduty}.get(channel)
        status, content_type, answer = handler(request, headers, body) if handler else (404, "text/plain", "not found")
        self._record(channel, request, headers, body, status)
        self._answer(request, status, content_type, answer)

    def _slack(self, request: BaseHTTPRequestHandler, headers: dict, body: Any) -> tuple[int, str, str]:
        if request.command != "POST" or request.path != self.slack_webhook_path:
            return 404, "text/plain", "no_service"
        if not headers.get("content-type", "").startswith("application/json"):
            return 400, "text/plain", "invalid_payload"
        if not isinstance(body, dict) or not isinstance(body.get("text"), str) or not body["text"].strip():
            return 400, "text/plain", "invalid_payload"
        if set(body) - SLACK_FIELDS:
            return 400, "text/plain", "invalid_payload"
        return 200, "text/plain", "ok"

    def _statuspage(self, request: BaseHTTPRequestHandler, headers: dict, body: Any) -> tuple[int, str, str]:
        match = re.fullmatch(r"/v1/pages/([^/]+)/incidents(?:/([^/]+))?", request.path)
        if headers.get("authorization") != f"OAuth {self.statuspage_key}":
            return 401, "application/json", json.dumps({"error": "Could not authenticate"})
        if not match or match.group(1) != self.statuspage_page:
            return 404, "application/json", json.dumps({"error": "Not found"})
        if not headers.get("content-type", "").startswith("application/json"):
            return 415, "application/json", json.dumps({"error": "Content-Type must be application/json"})
        incident = body.get("incident") if isinstance(body, dict) and set(body) == {"incident"} else None
        if not isinstance(incident, dict) or set(incident) - STATUSPAGE_FIELDS:
            return 422, "application/json", json.dumps({"error": "incident: unknown or missing fields"})
        if incident.get("status") not in STATUSPAGE_STATUSES or not isinstance(incident.get("body", ""), str):
            return 422, "application/json", json.dumps({"error": "incident.status is invalid"})
        existing = match.group(2)
        if request.command == "POST" and existing is None:
            if not isinstance(incident.get("name"), str) or not incident["name"].strip():
                return 422, "application/json", json.dumps({"error": "incident.name can't be blank"})
            new_id = _token(12)
            with self._lock:
                self.incidents[new_id] = {"id": new_id, "name": incident["name"], "incident_updates": []}
            existing, status = new_id, 201
        elif request.command == "PATCH" and existing is not None:
            if existing not in self.incidents:
                return 404, "application/json", json.dumps({"error": "Not found"})
            status = 200
        else:
            return 405, "application/json", json.dumps({"error": "Method not allowed"})
        with self._lock:
            stored = self.incidents[existing]
            stored["status"] = incident["status"]
            stored["incident_updates"].append({"status": incident["status"], "body": incident.get("body", "")})
            answer = {**stored, "shortlink": f"https://stspg.io/{existing}", "page_id": self.statuspage_page}
        return status, "application/json", json.dumps(answer)

    def _pagerduty(self, request: BaseHTTPRequestHandler, headers: dict, body: Any) -> tuple[int, str, str]:
        if request.command != "POST" or request.path != "/v2/enqueue":
            return 404, "application/json", json.dumps({"status": "not found"})
        errors = []
        if not headers.get("content-type", "").startswith("application/json") or not isinstance(body, dict):
            errors.append("the body must be a JSON object (Content-Type: application/json)")
            body = {}
        if set(body) - PAGERDUTY_FIELDS:
            errors.append(f"unknown fields: {sorted(set(body) - PAGERDUTY_FIELDS)}")
        if body.get("routing_key") != self.pagerduty_key:
            errors.append("'routing_key' is invalid")
        if body.get("event_action") not in ("trigger", "acknowledge", "resolve"):
            errors.append("'event_action' must be trigger, acknowledge or resolve")
        dedup = body.get("dedup_key")
        if dedup is not None and (not isinstance(dedup, str) or not 0 < len(dedup) <= 255):
            errors.append("'dedup_key' must be a string of at most 255 characters")
        if body.get("event_action") in ("acknowledge", "resolve") and not dedup:
            errors.append("'dedup_key' is required for acknowledge and resolve")
        if body.get("event_action") == "trigger":
            payload = body.get("payload")
            if not isinstance(payload, dict):
                errors.append("'payload' is required for trigger")
            else:
                if set(payload) - PAGERDUTY_PAYLOAD:
                    errors.append(f"unknown payload fields: {sorted(set(payload) - PAGERDUTY_PAYLOAD)}")
                summary = payload.get("summary")
                if not isinstance(summary, str) or not 0 < len(summary) <= 1024:
                    errors.append("'payload.summary' must be 1 to 1024 characters")
                if not isinstance(payload.get("source"), str) or not payload["source"]:
                    errors.append("'payload.source' is required")
                if payload.get("severity") not in ("critical", "error", "warning", "info"):
                    errors.append("'payload.severity' must be critical, error, warning or info")
        if errors:
            answer = {"status": "invalid event", "message": "Event object is invalid", "errors": errors}
            return 400, "application/json", json.dumps(answer)
        answer = {"status": "success", "message": "Event processed", "dedup_key": dedup or _token(32)}
        return 202, "application/json", json.dumps(answer)

    # --- helpers

    def _channel(self, path: str) -> str:
        if path.startswith("/services/"):
            return "slack"
        if path.startswith("/v1/pages/"):
            return "statuspage"
        if path.startswith("/v2/"):
            return "pagerduty"
        return "unknown"

    def _record(self, channel: str, request: BaseHTTPRequestHandler, headers: dict, body: Any, status: int) -> None:
        with self._lock:
            self.requests.append(Received(channel, request.command, request.path, headers, body, status))

    @staticmethod
    def _answer(request: BaseHTTPRequestHandler, status: int, content_type: str, text: str) -> None:
        data = text.encode()
        request.send_response(status)
        request.send_header("Content-Type", content_type)
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)


def _token(length: int) -> str:
    return secrets.token_hex(length)[:length]
