"""Tamper-evident evidence: each evidence file of an incident links to the one written before it.

The link is the record's last key, `chain`: `{"sequence": n, "previous": {"path": name, "sha256": hex} | null,
"seal": hex}`. Sequence 1 has no previous; every later file names the evidence file with the highest
sequence when it was written, and the SHA-256 of that file's bytes. Write order, not file names, orders
the chain: names carry start times, and runs that start together finish in any order. The seal is the
SHA-256 of the file's own bytes with the seal written as 64 zeros: it covers the last file, which no
link covers yet. Finding the last file and writing the next one happen under an exclusive `flock` on
the incident folder itself, so concurrent runs of one incident never fork the chain, and no lock file
joins the evidence.

`verify` recomputes every hash: each artifact against the evidence that lists it, each seal, each link
against the file it names. Hashes show change, not authorship: whoever can write the folder can also
recompute a whole chain, or remove the last run with its notebook and HTML. Keep the last file's hash
(`Verification.last`, printed by `runbook verify`) somewhere else, e.g. in the incident channel.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .runfiles import EVIDENCE, HTML, NOTEBOOK, RunFiles, is_working_copy

UNSEALED = "0" * 64
Record = dict[str, Any]  # an evidence file as JSON (runbooks.evidence.Record is its typed reading)


@dataclass(frozen=True)
class Problem:
    kind: str  # changed | removed | inserted
    path: str  # a file name in the incident folder
    reason: str

    def line(self) -> str:
        return f"{self.kind}: {self.path}: {self.reason}"


@dataclass(frozen=True)
class Verification:
    evidence: tuple[str, ...]  # evidence file names
    artifacts: int  # artifacts listed by them
    last: tuple[str, str] | None  # (name, sha256) of the evidence file no other links to
    problems: tuple[Problem, ...]

    @property
    def intact(self) -> bool:
        return not self.problems


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write(path: Path, text: str, exclusive: bool = False) -> None:
    """Write evidence `text` (a JSON object) to `path` with its `chain` link to the incident's last evidence file.

    The file appears whole or not at all (written aside, then renamed into place): a reader never sees part of
    it. `exclusive`: FileExistsError when `path` exists already (for a name chosen without claiming it first).
    """
    record = json.loads(text)
    with _locked(path.parent, exclusive=True):
        if exclusive and path.exists():
            raise FileExistsError(path)
        record["chain"] = {**_next_link(path.parent), "seal": UNSEALED}
        unsealed = json.dumps(record, indent=2) + "\n"
        aside = path.with_name(f".{path.name}.tmp")
        aside.write_bytes(_with_seal(unsealed, UNSEALED, hashlib.sha256(unsealed.encode()).hexdigest()).encode())
        os.replace(aside, path)


def verify(folder: Path) -> Verification:
    """Every seal, artifact and chain link of the incident in `folder` checked against the files there now."""
    with _locked(folder, exclusive=False):
        names = sorted(p.name for p in folder.glob(f"*{EVIDENCE}"))
        records = {name: record for name in names if (record := _read(folder / name)) is not None}
        sealed = {name: r for name, r in records.items() if _sealed(folder / name, r["chain"]["seal"])}
        problems = [
            Problem("changed", name, "not an evidence record with a chain link")
            for name in names
            if name not in records
        ]
        problems += [
            Problem("changed", name, "its bytes differ from its seal") for name in records if name not in sealed
        ]
        # What a changed record says of its artifacts is not to be trusted; its links still place it in the chain.
        problems += _check_artifacts(folder, sealed) + _check_links(folder, records)
        removed = {p.path for p in problems if p.kind == "removed"}
        # A removed evidence file leaves its notebook and HTML unlisted: the removal is the one problem.
        problems = [p for p in problems if not (p.kind == "inserted" and f"{_stem(p.path)}{EVIDENCE}" in removed)]
        last, loose = _ends(records, removed | (set(names) - set(records)))
        problems += [Problem("inserted", name, f"no evidence links to it (the chain ends at {last})") for name in loose]
        return Verification(
            evidence=tuple(names),
            artifacts=sum(len(r["artifacts"]) for r in records.values()),
            last=(last, sha256(folder / last)) if last else None,
            problems=_merged(problems),
        )


def _ends(records: dict[str, Record], unknown: set[str]) -> tuple[str | None, list[str]]:
    """The chain's last file, and the other files no evidence links to.

    The file before a removed or unreadable one has lost its link with it: that file is no problem of its own.
    """
    links = {name: r["chain"]["previous"] for name, r in records.items() if r["chain"]["previous"]}
    linked = {link["path"] for link in links.values()}
    before_unknown = {records[name]["chain"]["sequence"] - 2 for name, link in links.items() if link["path"] in unknown}
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
            problems += _check_hash(folder, artifact["path"], artifact["sha256"], f"listed in {name}")
    problems += [
        Problem("inserted", p.name, "not listed in any evidence file")
        for p in sorted(folder.iterdir())
        if _is_artifact(p)
        and p.name not in listed
        and not (folder / f"{_stem(p.name)}{EVIDENCE}").exists()
        and not is_working_copy(p)  # an interactive session's live notebook: its seals are the evidence
    ]
    return problems


def _check_links(folder: Path, records: dict[str, Record]) -> list[Problem]:
    problems = []
    for name, record in records.items():
        sequence, previous = record["chain"]["sequence"], record["chain"]["previous"]
        if previous is None:
            if sequence != 1:
                problems.append(Problem("changed", name, f"sequence {sequence} but no previous evidence"))
            continue
        found = _check_hash(folder, previous["path"], previous["sha256"], f"linked from {name}")
        problems += found
        before = records.get(previous["path"])
        if not found and before and before["chain"]["sequence"] != sequence - 1:
            problems.append(
                Problem(
                    "changed",
                    name,
                    f"sequence {sequence} does not follow {before['chain']['sequence']} of {previous['path']}",
                )
            )
    return problems


def _check_hash(folder: Path, name: str, expected: str, where: str) -> list[Problem]:
    if Path(name).name != name or name.startswith("."):
        return [Problem("changed", name, f"{where}, names a file outside the incident folder")]
    path = folder / name
    if not path.is_file():
        return [Problem("removed", name, where)]
    if sha256(path) != expected:
        return [Problem("changed", name, f"SHA-256 differs from the one {where}")]
    return []


def _names_its_own_artifacts(name: str, record: Record) -> bool:
    """A run's evidence lists its own notebook and HTML; a command's (runbooks.command_evidence) lists none."""
    stem = _stem(name)
    listed = {a["path"] for a in record["artifacts"]}
    return listed == {f"{stem}{NOTEBOOK}", f"{stem}{HTML}"} or not listed


def _next_link(folder: Path) -> dict[str, Any]:
    """Sequence and previous file for the next evidence file of `folder` (called under the lock)."""
    links = {p.name: record["chain"] for p in folder.glob(f"*{EVIDENCE}") if (record := _read(p)) is not None}
    if not links:
        return {"sequence": 1, "previous": None}
    last = max(links, key=lambda name: (links[name]["sequence"], name))
    return {"sequence": links[last]["sequence"] + 1, "previous": {"path": last, "sha256": sha256(folder / last)}}


def _sealed(path: Path, seal: str) -> bool:
    text = path.read_bytes().decode(errors="replace")
    return hashlib.sha256(_with_seal(text, seal, UNSEALED).encode()).hexdigest() == seal


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


def _read(path: Path) -> Record | None:
    """The record, or None unless it is JSON with a well-formed chain link and artifact list."""
    try:
        record = json.loads(path.read_bytes())
        chain, artifacts = record["chain"], record["artifacts"]
        previous = chain["previous"]
        well_formed = (
            isinstance(chain["sequence"], int)
            and isinstance(chain["seal"], str)
            and (previous is None or (isinstance(previous["path"], str) and isinstance(previous["sha256"], str)))
            and all(isinstance(a["path"], str) and isinstance(a["sha256"], str) for a in artifacts)
        )
    except (OSError, ValueError, KeyError, TypeError):
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
        yield
    finally:
        os.close(fd)
