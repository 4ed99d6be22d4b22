"""Tamper-evident evidence: every record of an incident links to the one written before it, and is sealed.

The records are the evidence files (`*.evidence.json`) and the lines of the incident log (`alerts.jsonl`, kept by
`runbook serve`), in one sequence: the order they were written in. Each ends with its link, `chain`:
`{"sequence": n, "previous": {"path": name, "sha256": hex} | {"path": "alerts.jsonl", "line": k, "sha256": hex}
| null, ["key": id,] "seal": hex}`. Sequence 1 has no previous; every later record names the one with the highest
sequence when it was written, and the SHA-256 of its bytes (a log line's without its newline). The seal covers
the record's own bytes, written with the seal as 64 zeros: the last record, which no link covers yet, too.

The seal is keyed when a key is set (SEAL_KEY, or a file named by SEAL_KEY_FILE outside the output folder): an
HMAC-SHA256 with that key, and `key` names it (an HMAC of a fixed text, never the key). Without a key it is a
plain SHA-256, which whoever can write the folder can recompute. Finding the last record and writing the next one
happen under an exclusive `flock` on the incident folder itself, so concurrent writers never fork the chain; for an
output folder in an object store, also under the incident's lock across replicas (runbooks.storage.synced).

`verify` recomputes every hash: each artifact against the evidence that lists it, each seal (keyed ones with the
key, when given: a record sealed without it, or with another, is then a problem), each link against the record it
names, and, given a head kept elsewhere (`head`), that it is still in the chain. Whoever can write the folder can
still remove the last records: every write returns the new head (`Head`) to keep elsewhere, e.g. in the incident
channel, and `runbook run`, `runbook serve` and `runbook verify` print it.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import runfiles, storage
from .errors import UsageError
from .redact import SEAL_KEY
from .runfiles import ALERT_LOG, EVIDENCE, HTML, NOTEBOOK, RunFiles, is_working_copy

log = logging.getLogger(__name__)
UNSEALED = "0" * 64
SEAL_KEY_FILE = f"{SEAL_KEY}_FILE"
MIN_KEY_BYTES = 16
Record = dict[str, Any]  # a record as JSON (runbooks.evidence.Record is an evidence file's typed reading)


@dataclass(frozen=True)
class Problem:
    kind: str  # changed | removed | inserted
    path: str  # a file name in the incident folder, or `alerts.jsonl:<line>`
    reason: str

    def line(self) -> str:
        return f"{self.kind}: {self.path}: {self.reason}"


@dataclass(frozen=True)
class Head:
    """The chain's last record: its name (`alerts.jsonl:<line>` for a log line) and the SHA-256 of its bytes."""

    name: str
    sha256: str

    def line(self) -> str:
        return f"the chain ends at {self.name} (sha256 {self.sha256})"


@dataclass(frozen=True)
class Verification:
    evidence: tuple[str, ...]  # evidence file names
    artifacts: int  # artifacts listed by them
    last: tuple[str, str] | None  # (name, sha256) of the record no other links to
    problems: tuple[Problem, ...]
    log_lines: int = 0  # lines of the incident log
    key: str | None = None  # the id of the key the keyed seals were checked with
    keyed: int = 0  # records whose seal is keyed
    unchecked: int = 0  # keyed seals not checked: no key was given

    @property
    def intact(self) -> bool:
        return not self.problems

    def seals(self) -> str:
        """Whether the key was used, in one line."""
        total = len(self.evidence) + self.log_lines
        if self.key and not self.unchecked:
            return f"seals: checked with key {self.key} ({self.keyed} of {total} keyed)"
        if self.unchecked:
            return (
                f"seals: {self.unchecked} keyed, NOT checked: no key given (set {SEAL_KEY} or {SEAL_KEY_FILE}); "
                "only the hashes were"
            )
        return (
            f"seals: unkeyed SHA-256: whoever can write the folder can reseal it (set {SEAL_KEY} or "
            f"{SEAL_KEY_FILE} to key them)"
        )


@dataclass(frozen=True)
class _Entry:
    """A record of the chain as found: its name, bytes and parsed JSON."""

    name: str
    data: bytes
    record: Record

    @property
    def link(self) -> dict[str, Any]:
        link: dict[str, Any] = self.record["chain"]
        return link


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def seal_key(folder: Path) -> bytes | None:
    """The seal key from the environment (SEAL_KEY, or the file SEAL_KEY_FILE names); None when neither is set.
    UsageError for a key too short, or a key file inside the output folder that holds `folder`."""
    key = os.environ.get(SEAL_KEY, "").encode()
    if not key and (name := os.environ.get(SEAL_KEY_FILE)):
        path = Path(name).resolve()
        if path.is_relative_to(folder.resolve().parent):
            raise UsageError(f"{SEAL_KEY_FILE} {name} lies in the output folder: keep the key outside it")
        try:
            key = path.read_bytes().strip()
        except OSError as e:
            raise UsageError(f"cannot read {SEAL_KEY_FILE} {name}: {e.strerror}") from None
    if key and len(key) < MIN_KEY_BYTES:
        raise UsageError(f"the seal key is {len(key)} bytes: use at least {MIN_KEY_BYTES} (e.g. openssl rand -hex 32)")
    return key or None


def key_id(key: bytes) -> str:
    """A name for the key that tells nothing of it."""
    return hmac.new(key, b"runbook seal key", hashlib.sha256).hexdigest()[:16]


def write(path: Path, text: str) -> Head:
    """Write evidence `text` (a JSON object) to `path` with its `chain` link to the incident's last record; the new
    head. The file is created, never overwritten (FileExistsError when anything, a link too, is at `path`), and
    appears whole or not at all: a reader never sees part of it."""
    record, folder = json.loads(text), path.parent
    key = seal_key(folder)
    with _locked(folder, exclusive=True):
        record["chain"] = _next_link(folder, key)
        data = _seal(json.dumps(record, indent=2) + "\n", key).encode()
        runfiles.write_new_whole(path, data)
    return _written(folder, Head(path.name, hashlib.sha256(data).hexdigest()))


def append(path: Path, record: Record) -> Head:
    """Append `record` as one line to the incident log `path` with its `chain` link; the new head."""
    folder = path.parent
    key = seal_key(folder)
    with _locked(folder, exclusive=True):
        number = len(_log_lines(path)) + 1
        line = _seal(json.dumps({**record, "chain": _next_link(folder, key)}), key)
        runfiles.append(path, f"{line}\n".encode())
    return _written(folder, Head(f"{path.name}:{number}", hashlib.sha256(line.encode()).hexdigest()))


def claim(folder: Path, runbook: str) -> RunFiles:
    """The files of a run of `runbook` starting now (runfiles.RunFiles.claim), their names taken under the incident's
    lock: in an object store, the names other replicas took are pulled first and ours pushed at once, so two
    replicas never write one name."""
    with _locked(folder, exclusive=True):
        return RunFiles.claim(folder, runbook)


def verify(folder: Path, head: str | None = None, key: bytes | None = None) -> Verification:
    """Every seal, artifact and chain link of the incident in `folder` checked against the files there now; the
    seals with `key` (default: seal_key), and that a head kept elsewhere (its sha256) is still in the chain."""
    key = key if key is not None else seal_key(folder)
    with _locked(folder, exclusive=False):
        entries, found = _entries(folder)
        names = sorted(name for name in found if name.endswith(EVIDENCE))
        unreadable = set(found) - set(entries)
        problems = [
            Problem(
                "changed",
                name,
                f"not {'an evidence record' if name in names else 'an incident log line'} with a chain link",
            )
            for name in sorted(unreadable)
        ]
        records = {e.name: e.record for e in entries.values()}
        seals = {name: _check_seal(e, key) for name, e in entries.items()}
        problems += [Problem("changed", name, reason) for name, reason in seals.items() if reason]
        # What a changed record says of its artifacts is not to be trusted; its links still place it in the chain.
        evidence = {name: r for name, r in records.items() if name.endswith(EVIDENCE) and not seals[name]}
        problems += _check_artifacts(folder, evidence) + _check_links(entries, found)
        removed = {p.path for p in problems if p.kind == "removed"}
        # A removed evidence file leaves its notebook and HTML unlisted: the removal is the one problem.
        problems = [p for p in problems if not (p.kind == "inserted" and f"{_stem(p.path)}{EVIDENCE}" in removed)]
        last, loose = _ends(records, removed | unreadable)
        problems += [Problem("inserted", name, f"no record links to it (the chain ends at {last})") for name in loose]
        if head and head not in {hashlib.sha256(data).hexdigest() for data in found.values()}:
            problems.append(Problem("removed", f"sha256 {head}", "the head kept elsewhere is no longer in the chain"))
        keyed = [e for e in entries.values() if "key" in e.link]
        return Verification(
            evidence=tuple(names),
            artifacts=sum(len(r["artifacts"]) for n, r in records.items() if n.endswith(EVIDENCE)),
            last=(last, hashlib.sha256(entries[last].data).hexdigest()) if last else None,
            problems=_merged(problems),
            log_lines=len(found) - len(names),
            key=key_id(key) if key else None,
            keyed=len(keyed),
            unchecked=0 if key else len(keyed),
        )


def _written(folder: Path, head: Head) -> Head:
    log.info("%s: %s", folder.name, head.line())
    return head


def _entries(folder: Path) -> tuple[dict[str, _Entry], dict[str, bytes]]:
    """Every record of the chain in `folder` by name, and the bytes of every evidence file and log line by name
    (those that are no record too)."""
    found = {path.name: path.read_bytes() for path in sorted(folder.glob(f"*{EVIDENCE}"))}
    found |= {f"{ALERT_LOG}:{n}": line for n, line in enumerate(_log_lines(folder / ALERT_LOG), 1)}
    entries = {
        name: _Entry(name, data, record)
        for name, data in found.items()
        if (record := _record(data, evidence=name.endswith(EVIDENCE))) is not None
    }
    return entries, found


def _log_lines(path: Path) -> list[bytes]:
    try:
        return path.read_bytes().splitlines()
    except FileNotFoundError:
        return []


def _next_link(folder: Path, key: bytes | None) -> dict[str, Any]:
    """Sequence and previous record for the next record of `folder` (called under the lock); unsealed. Of the
    incident log only its last record is read: lines are appended in sequence (a storm's thousand lines stay a
    thousand appends, not a million reads)."""
    entries = [
        _Entry(p.name, data, record)
        for p in folder.glob(f"*{EVIDENCE}")
        if (record := _record(data := p.read_bytes(), evidence=True)) is not None
    ]
    lines = _log_lines(folder / ALERT_LOG)
    for number in range(len(lines), 0, -1):
        if (record := _record(lines[number - 1], evidence=False)) is not None:
            entries.append(_Entry(f"{ALERT_LOG}:{number}", lines[number - 1], record))
            break
    keyed = {"key": key_id(key)} if key else {}
    if not entries:
        return {"sequence": 1, "previous": None, **keyed, "seal": UNSEALED}
    last = max(entries, key=lambda e: (e.link["sequence"], e.name))
    path, _, line = last.name.partition(":")
    previous = {"path": path, **({"line": int(line)} if line else {}), "sha256": hashlib.sha256(last.data).hexdigest()}
    return {"sequence": last.link["sequence"] + 1, "previous": previous, **keyed, "seal": UNSEALED}


def _seal(unsealed: str, key: bytes | None) -> str:
    """`unsealed` (its seal UNSEALED) with its seal computed: HMAC-SHA256 with `key`, or SHA-256."""
    return _with_seal(unsealed, UNSEALED, _digest(unsealed.encode(), key))


def _digest(data: bytes, key: bytes | None) -> str:
    return hmac.new(key, data, hashlib.sha256).hexdigest() if key else hashlib.sha256(data).hexdigest()


def _check_seal(entry: _Entry, key: bytes | None) -> str | None:
    """Why the record's seal does not hold (None when it does, or is keyed and no key was given)."""
    seal, keyed = entry.link["seal"], entry.link.get("key")
    if keyed and key is None:
        return None  # counted as unchecked
    if keyed and keyed != key_id(key):  # type: ignore[arg-type]
        return f"sealed with another key ({keyed})"
    if key is not None and not keyed:
        return "sealed without the key: anyone who can write the folder could have written it"
    text = entry.data.decode(errors="replace")
    unsealed = _with_seal(text, seal, UNSEALED)
    if unsealed == text or not hmac.compare_digest(_digest(unsealed.encode(), key), seal):
        return "its bytes differ from its seal"
    return None


def _ends(records: dict[str, Record], unknown: set[str]) -> tuple[str | None, list[str]]:
    """The chain's last record, and the other records no record links to.

    The record before a removed or unreadable one has lost its link with it: that record is no problem of its own.
    """
    links = {name: r["chain"]["previous"] for name, r in records.items() if r["chain"]["previous"]}
    linked = {_name(link) for link in links.values()}
    before_unknown = {records[name]["chain"]["sequence"] - 2 for name, link in links.items() if _name(link) in unknown}
    unlinked = [
        name for name in records if name not in linked and records[name]["chain"]["sequence"] not in before_unknown
    ]
    last = max(
        unlinked,
        default=None,
        key=lambda name: (records[name]["chain"]["sequence"], _names_its_own_artifacts(name, records[name]), name),
    )
    return last, [name for name in unlinked if name != last]


def _check_artifacts(folder: Path, records: dict[str, Record]) -> list[Problem]:
    problems, listed = [], set()
    for name, record in records.items():
        if not _names_its_own_artifacts(name, record):
            problems.append(Problem("inserted", name, "lists the notebook and HTML of another run"))
        for artifact in record["artifacts"]:
            listed.add(artifact["path"])
            problems += _check_file(folder, artifact["path"], artifact["sha256"], f"listed in {name}")
    problems += [
        Problem("inserted", p.name, "not listed in any evidence file")
        for p in sorted(folder.iterdir())
        if _is_artifact(p)
        and p.name not in listed
        and not (folder / f"{_stem(p.name)}{EVIDENCE}").exists()
        and not is_working_copy(p)  # an interactive session's live notebook: its seals are the evidence
    ]
    return problems


def _check_links(entries: dict[str, _Entry], found: dict[str, bytes]) -> list[Problem]:
    problems = []
    for name, entry in entries.items():
        sequence, previous = entry.link["sequence"], entry.link["previous"]
        if previous is None:
            if sequence != 1:
                problems.append(Problem("changed", name, f"sequence {sequence} but no previous record"))
            continue
        target, where = _name(previous), f"linked from {name}"
        data, before = found.get(target), entries.get(target)
        if "line" not in previous and (Path(previous["path"]).name != previous["path"] or target.startswith(".")):
            broken = [Problem("changed", target, f"{where}, names a file outside the incident folder")]
        elif data is None:
            broken = [Problem("removed", target, where)]
        elif hashlib.sha256(data).hexdigest() != previous["sha256"]:
            broken = [Problem("changed", target, f"SHA-256 differs from the one {where}")]
        else:
            broken = []
        problems += broken
        if not broken and before and before.link["sequence"] != sequence - 1:
            problems.append(
                Problem("changed", name, f"sequence {sequence} does not follow {before.link['sequence']} of {target}")
            )
    return problems


def _check_file(folder: Path, name: str, expected: str, where: str) -> list[Problem]:
    if Path(name).name != name or name.startswith("."):
        return [Problem("changed", name, f"{where}, names a file outside the incident folder")]
    path = folder / name
    if not path.is_file():
        return [Problem("removed", name, where)]
    if sha256(path) != expected:
        return [Problem("changed", name, f"SHA-256 differs from the one {where}")]
    return []


def _name(link: dict[str, Any]) -> str:
    """The record a `previous` link names: a file name, or `alerts.jsonl:<line>`."""
    return f"{link['path']}:{link['line']}" if "line" in link else link["path"]


def _names_its_own_artifacts(name: str, record: Record) -> bool:
    """A run's evidence lists its own notebook and HTML; a command's (runbooks.command_evidence) lists none; a log
    line lists nothing to check."""
    if not name.endswith(EVIDENCE):
        return True
    stem = _stem(name)
    listed = {a["path"] for a in record["artifacts"]}
    return listed == {f"{stem}{NOTEBOOK}", f"{stem}{HTML}"} or not listed


def _with_seal(text: str, old: str, new: str) -> str:
    """`text` with its last `"seal": "<old>"` (the chain is the record's last key) made `"seal": "<new>"`."""
    head, found, tail = text.rpartition(f'"seal": "{old}"')
    return f'{head}"seal": "{new}"{tail}' if found else text


def _stem(name: str) -> str:
    """`20261126T031500Z-runbook` of any file the runner writes."""
    return name.removesuffix(EVIDENCE) if name.endswith(EVIDENCE) else name.rsplit(".", 1)[0]


def _is_artifact(path: Path) -> bool:
    """A notebook or HTML file named as the runner names them."""
    return path.suffix in (NOTEBOOK, HTML) and RunFiles.of(path) is not None


def _record(data: bytes, evidence: bool) -> Record | None:
    """The record, or None unless it is a JSON object with a well-formed chain link (and, for evidence, artifact
    list)."""
    try:
        record = json.loads(data)
        chain = record["chain"]
        previous = chain["previous"]
        artifacts = record["artifacts"] if evidence else []
        well_formed = (
            isinstance(chain["sequence"], int)
            and isinstance(chain["seal"], str)
            and isinstance(chain.get("key", ""), str)
            and (
                previous is None
                or (
                    isinstance(previous["path"], str)
                    and isinstance(previous["sha256"], str)
                    and isinstance(previous.get("line", 0), int)
                )
            )
            and all(isinstance(a["path"], str) and isinstance(a["sha256"], str) for a in artifacts)
        )
    except (ValueError, KeyError, TypeError):
        return None
    return record if well_formed else None


def _merged(problems: list[Problem]) -> tuple[Problem, ...]:
    """One problem per file and kind, its reasons joined, ordered by file."""
    reasons: dict[tuple[str, str], list[str]] = {}
    for p in problems:
        reasons.setdefault((p.path, p.kind), [])
        if p.reason not in reasons[p.path, p.kind]:
            reasons[p.path, p.kind].append(p.reason)
    return tuple(Problem(kind, path, "; ".join(r)) for (path, kind), r in sorted(reasons.items()))


@contextmanager
def _locked(folder: Path, exclusive: bool) -> Iterator[None]:
    """flock on the folder itself: writers exclusive, verifiers shared. Closing the descriptor unlocks."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        with storage.synced(folder, exclusive):  # an incident in an object store: across replicas, too
            yield
    finally:
        os.close(fd)
