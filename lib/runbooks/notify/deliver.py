"""One message to one channel: the HTTP request, its retries, and what is recorded of it."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

import requests

from .. import __version__, units
from ..evidence import Action, Finding
from ..redact import scrub
from .config import Channel, Policy

RETRIED = frozenset({408, 420, 429})  # and every 5xx: the receiver may take it later (420: Statuspage's rate limit)
MAX_RETRY_AFTER = 30.0  # seconds: the longest a Retry-After header makes us wait
ANSWER_CHARS = 2000  # of the receiver's answer, recorded
USER_AGENT = f"runbooks/{__version__} (incident communication)"


@dataclass(frozen=True)
class Attempt:
    at: dt.datetime
    status: int | None  # HTTP status; None when there was no answer
    error: str | None  # why there was no answer (timeout, refused)


@dataclass(frozen=True)
class Delivery:
    channel: str
    kind: str  # the message kind (slack-resolved, status-identified, pagerduty-trigger, ...)
    target: str  # where it went, without any secret
    text: str  # what a person reads (Slack text, status-page body, PagerDuty summary)
    private: bool
    request: dict[str, Any]  # the JSON sent, secrets replaced by the names of their variables
    sent: bool
    status: int | None = None
    answer: str = ""  # the receiver's answer, truncated
    attempts: tuple[Attempt, ...] = ()
    reference: str | None = None  # what the receiver named it (a Statuspage incident id, PagerDuty's dedup_key)
    note: str = ""

    @property
    def result(self) -> str:
        """`sent: HTTP 202 (attempt 1 of 3)`, or `failed after 3 attempts: HTTP 503 ...`."""
        if self.sent:
            return f"sent: HTTP {self.status} (attempt {len(self.attempts)})"
        last = self.attempts[-1] if self.attempts else None
        why = f"HTTP {last.status}" if last and last.status else (last.error if last else "not sent")
        answer = f": {' '.join(self.answer.split())[:200]}" if self.answer and last and last.status else ""
        return f"failed after {units.count(len(self.attempts), 'attempt')}: {why}{answer}"

    @classmethod
    def of(
        cls,
        channel: Channel,
        kind: str,
        target: str,
        text: str,
        request: dict[str, Any],
        reply: Reply,
        reference: str | None = None,
    ) -> Delivery:
        """The message as `send` delivered it (or did not)."""
        return cls(
            channel.name, kind, target, text, channel.private, request, reply.ok, reply.status, reply.body,
            reply.attempts, reference,
        )  # fmt: skip

    def line(self) -> str:
        return f"{self.channel}: {self.kind} {self.result}" + (f" ({self.note})" if self.note else "")

    def action(self) -> Action:
        """`applied`, id the message kind (`slack-resolved`, `pagerduty-acknowledge`): the world was asked to change."""
        return Action(self.kind, "applied", self.target, self.result)

    def finding(self) -> Finding:
        """The message as evidence: its text (or, for a private channel, the text's SHA-256), the request as sent
        with secrets replaced, the answer and every attempt."""
        data: dict[str, Any] = {
            "channel": self.channel,
            "kind": self.kind,
            "target": self.target,
            "sent": self.sent,
            "status": self.status,
            "answer": self.answer,
            "reference": self.reference,
            "sha256": hashlib.sha256(self.text.encode()).hexdigest(),
            "attempts": [{"at": a.at, "status": a.status, "error": a.error} for a in self.attempts],
        }
        if not self.private:
            data |= {"text": self.text, "request": self.request}
        return Finding(
            f"message-{self.channel}",
            f"{self.kind} to {self.target}: {self.result}",
            "info" if self.sent else "warning",
            data,
        )


@dataclass(frozen=True)
class Reply:
    status: int | None
    body: str
    attempts: tuple[Attempt, ...]
    json: Any = field(default=None)

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def send(
    method: str, url: str, body: dict[str, Any], headers: dict[str, str], policy: Policy, secrets: list[str]
) -> Reply:
    """`method url` with the JSON `body`, retried per the module's rule; the last answer and every attempt. Nothing
    raised: a failure is a Reply whose status is not 2xx. `secrets` are scrubbed from the answer kept."""
    attempts: list[Attempt] = []
    wait = policy.backoff_seconds
    status, text, parsed = None, "", None
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, **headers}
    for attempt in range(1, policy.attempts + 1):
        retry_after = None
        try:
            response = requests.request(
                method, url, data=json.dumps(body), headers=headers, timeout=(5, policy.timeout_seconds)
            )
            status, text = response.status_code, scrub(response.text[:ANSWER_CHARS], secrets)
            attempts.append(Attempt(_now(), status, None))
            if 200 <= status < 300:
                try:
                    parsed = response.json()
                except ValueError:
                    parsed = None
                break
            if status not in RETRIED and status < 500:
                break
            retry_after = _retry_after(response.headers.get("Retry-After"))
        except requests.RequestException as e:
            status, text = None, ""
            attempts.append(Attempt(_now(), None, _reason(e, policy.timeout_seconds, secrets)))
        if attempt < policy.attempts:
            time.sleep(retry_after if retry_after is not None else wait)
            wait *= 2
    return Reply(status, text, tuple(attempts), parsed)


def _retry_after(value: str | None) -> float | None:
    try:
        return min(max(float(value), 0.0), MAX_RETRY_AFTER) if value else None
    except ValueError:
        return None


def _reason(error: Exception, timeout: float, secrets: list[str]) -> str:
    if isinstance(error, requests.Timeout):
        return f"no answer within {timeout:g} s"
    if isinstance(error, requests.ConnectionError):
        return "connection refused or host unreachable"
    return scrub(" ".join(str(error).split())[:300], secrets)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
