"""What a severity asks for, and when: the incident-response runbook's targets, cadence and escalation matrix.

From "Incident Severity Levels" (response time, resolution target, communication), "Escalation
Procedures" (the escalation matrix and contacts), "On-Call Responsibilities" and Phase 4's "Schedule
Post-Incident Review" (review_due). Times count from the incident's start. Boundaries are read escalating, as
the runbook asks: at exactly 30 minutes the 30-60 min column of the matrix applies; a target is due at
start + target, and overdue from then on.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import pandas as pd

from . import display, escape, units
from .severity import LEVELS

EASTERN = ZoneInfo("America/New_York")  # the runbook's on-call times (handoff Monday 9:00 AM ET) are Eastern

MINUTE, HOUR = dt.timedelta(minutes=1), dt.timedelta(hours=1)


@dataclass(frozen=True)
class Targets:
    response: dt.timedelta
    resolution: dt.timedelta
    update_every: dt.timedelta | None  # None: no fixed cadence
    communication: str  # the incident-response runbook's words
    response_note: str = ""


TARGETS = {
    "P1": Targets(5 * MINUTE, HOUR, 15 * MINUTE, "Every 15 minutes until resolved"),
    "P2": Targets(15 * MINUTE, 4 * HOUR, 30 * MINUTE, "Every 30 minutes until resolved"),
    "P3": Targets(HOUR, 24 * HOUR, None, "At start, major updates, and resolution"),
    "P4": Targets(4 * HOUR, 7 * 24 * HOUR, None, "Internal only", "business hours"),
}

# The escalation matrix's columns: from this long after the start.
COLUMNS = (dt.timedelta(0), 30 * MINUTE, HOUR, 2 * HOUR)
COLUMN_NAMES = ("0-30 min", "30-60 min", "1-2 hours", "2+ hours")


@dataclass(frozen=True)
class Step:
    engage: tuple[str, ...]  # roles added in this column ("+ Engineering Manager")
    note: str = ""  # the incident-response runbook's words when the column adds nobody


MATRIX = {
    "P1": (
        Step(("Primary On-Call", "Secondary On-Call")),
        Step(("Engineering Manager",)),
        Step(("VP Engineering",)),
        Step(("CTO",)),
    ),
    "P2": (
        Step(("Primary On-Call",)),
        Step(("Secondary On-Call",)),
        Step(("Engineering Manager",)),
        Step(("VP Engineering",)),
    ),
    "P3": (
        Step(("Primary On-Call",)),
        Step((), "Continue investigation"),
        Step(("Secondary On-Call",)),
        Step(("Engineering Manager",)),
    ),
    "P4": (
        Step(("Primary On-Call",)),
        Step((), "Normal business hours"),
        Step((), "Normal process"),
        Step((), "Normal process"),
    ),
}

# Escalation Contacts for the matrix's roles: role -> (primary contact, backup contact). On-call roles are
# paged through PagerDuty. (The runbook's Security Lead, Database Admin and Platform Team are in no matrix row.)
CONTACTS: dict[str | None, tuple[str | None, str | None]] = {
    "Primary On-Call": ("PagerDuty (on-call schedule)", None),
    "Secondary On-Call": ("PagerDuty (on-call schedule)", None),
    "Engineering Manager": ("@eng-manager", "@backup-manager"),
    "VP Engineering": ("@vp-eng", "PagerDuty"),
    "CTO": ("@cto", "PagerDuty"),
}


@dataclass(frozen=True)
class Cadence:
    communication: str  # the incident-response runbook's words
    update_every: dt.timedelta | None
    next_update: dt.datetime | None  # the first multiple of update_every after the start that is later than now

    def _repr_markdown_(self) -> str:
        every = f" (every {units.duration(self.update_every)})" if self.update_every else ""
        next_update = f"; next update due {units.when(self.next_update)}" if self.next_update else ""
        return f"**Updates**: {escape.markdown(f'{self.communication}{every}{next_update}')}"


def targets(severity: str, started: dt.datetime, now: dt.datetime) -> pd.DataFrame:
    """Response and resolution targets: within, due at, time left (negative: overdue)."""
    plan = TARGETS[_level(severity)]
    _check(started, now)
    rows = []
    for target, within, note in (("response", plan.response, plan.response_note), ("resolution", plan.resolution, "")):
        due = started + within
        rows.append(
            {"target": target, "within": within, "note": note, "due": due, "left": due - now, "overdue": now >= due}
        )
    frame = pd.DataFrame(rows, columns=["target", "within", "note", "due", "left", "overdue"])
    return display.table(frame, left="due")


def cadence(severity: str, started: dt.datetime, now: dt.datetime) -> Cadence:
    """How often to update, and when the next update is due (None without a fixed cadence: P3, P4)."""
    plan = TARGETS[_level(severity)]
    elapsed = _check(started, now)
    if plan.update_every is None:
        return Cadence(plan.communication, None, None)
    periods = math.floor(elapsed / plan.update_every) + 1
    return Cadence(plan.communication, plan.update_every, started + periods * plan.update_every)


def engagement(severity: str, started: dt.datetime, now: dt.datetime) -> pd.DataFrame:
    """Every role of the severity's row of the matrix: from when, whether to engage now, and whom to reach.

    Roles of columns already reached are `engaged` (the matrix is cumulative: "+ Engineering Manager");
    later columns are listed with the time they become due. Columns that add nobody keep the runbook's note.
    """
    steps = MATRIX[_level(severity)]
    elapsed = _check(started, now)
    rows = []
    for column, name, step in zip(COLUMNS, COLUMN_NAMES, steps, strict=True):
        reached = elapsed >= column
        for role in step.engage or (None,):
            contact, backup = CONTACTS.get(role, (None, None))
            rows.append(
                {
                    "column": name,
                    "role": role,
                    "note": step.note,
                    "engage_now": reached,
                    "from": started + column,
                    "contact": contact,
                    "backup": backup,
                }
            )
    return pd.DataFrame(rows, columns=["column", "role", "note", "engage_now", "from", "contact", "backup"])


@dataclass(frozen=True)
class ReviewRule:
    days: int
    business_days: bool  # count Monday to Friday only
    words: str  # the incident-response runbook's


# Phase 4, "Schedule Post-Incident Review"; P4 has none.
REVIEW_WITHIN: dict[str, ReviewRule | None] = {
    "P1": ReviewRule(3, True, "within 3 business days"),
    "P2": ReviewRule(3, True, "within 3 business days"),
    "P3": ReviewRule(7, False, "within 1 week"),
    "P4": None,
}


@dataclass(frozen=True)
class ReviewDue:
    severity: str
    rule: str  # the runbook's words for this severity
    due: dt.date | None  # the last day (US Eastern) the review may be held on; None: no review asked for

    def line(self) -> str:
        if self.due is None:
            return f"no post-incident review asked for ({self.severity})"
        return f"post-incident review due by {self.due:%a %Y-%m-%d} ET ({self.severity}: {self.rule})"


def review_due(severity: str, resolved_at: dt.datetime) -> ReviewDue:
    """When the post-incident review must be held: P1/P2 within 3 business days of the resolution, P3 within
    one week, P4 none. Days are US Eastern calendar days; a business day is Monday to Friday (public
    holidays are not known here: move the meeting by hand). Resolved on Friday, a P2's review is due by
    Wednesday; resolved on Saturday, also by Wednesday."""
    rule = REVIEW_WITHIN[_level(severity)]
    if resolved_at.tzinfo is None:
        raise ValueError("times must carry a time zone (UTC)")
    if rule is None:
        return ReviewDue(severity, "none", None)
    day, left = resolved_at.astimezone(EASTERN).date(), rule.days
    while left:
        day += dt.timedelta(days=1)
        left -= not rule.business_days or day.weekday() < 5
    return ReviewDue(severity, rule.words, day)


def _level(severity: str) -> str:
    if severity not in LEVELS:
        raise ValueError(f"severity must be one of {', '.join(LEVELS)}, got {severity!r}")
    return severity


def _check(started: dt.datetime, now: dt.datetime) -> dt.timedelta:
    if started.tzinfo is None or now.tzinfo is None:
        raise ValueError("times must carry a time zone (UTC)")
    elapsed = now - started
    if elapsed < dt.timedelta(0):
        raise ValueError(f"the incident start {started.isoformat()} is after now ({now.isoformat()})")
    return elapsed
