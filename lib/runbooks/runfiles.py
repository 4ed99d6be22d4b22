"""Where a run's files go and what they are called: the one place that spells it.

output/<incident>/                      an incident's folder (`incident_folder`)
  <UTC start YYYYMMDDTHHMMSSZ>-<runbook>.ipynb          the executed notebook
  <UTC start YYYYMMDDTHHMMSSZ>-<runbook>.html           its HTML rendering
  <UTC start YYYYMMDDTHHMMSSZ>-<runbook>.evidence.json  the evidence file (runbooks.evidence.Record)
  <UTC time YYYYMMDDTHHMMSSZ>-<command>.evidence.json   what a command did (close, comms, escalate): no notebook
  alerts.jsonl                          the incident log `runbook serve` keeps (ALERT_LOG)
  <UTC open YYYYMMDDTHHMMSSZ>-<runbook>.ipynb           a working copy `runbook open` wrote (`is_working_copy`):
                                        named like a run's notebook, never listed in evidence; `runbook seal`
                                        copies it into the three files of a run

Files are written into an incident folder only by `write_new`, `replace` and `append`: never through a symbolic
link planted at a name, however predictable the name.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import UsageError

STAMP = "%Y%m%dT%H%M%SZ"
NOTEBOOK, HTML, EVIDENCE = ".ipynb", ".html", ".evidence.json"
ALERT_LOG = "alerts.jsonl"
SESSION = "runbooks-session"  # the notebook metadata key that marks a working copy (runbooks.sessions)
_STEM = re.compile(r"(?P<stamp>\d{8}T\d{6}Z)-(?P<runbook>[A-Za-z0-9][A-Za-z0-9_.-]*)")
_INCIDENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class RunFiles:
    """The three files of one run, named by its stem `<start>-<runbook>` in its incident's folder."""

    folder: Path
    stem: str

    @classmethod
    def claim(cls, folder: Path, runbook: str) -> RunFiles:
        """The files of a run starting now: its notebook and HTML are created here, empty, exclusively and never
        through a link, so two runs of one runbook starting in the same second (alert workers) never share names
        (the later waits for the next second) and a link planted at a name to come is never followed."""
        while True:
            files = cls(folder, f"{_now():{STAMP}}-{runbook}")
            try:
                write_new(files.notebook, b"")
            except FileExistsError:
                time.sleep(0.2)
                continue
            try:
                write_new(files.html, b"")
                if os.path.lexists(files.evidence):
                    raise FileExistsError(files.evidence)
            except FileExistsError:  # planted: this stem is taken
                files.notebook.unlink()
                files.html.unlink(missing_ok=True)
                time.sleep(0.2)
                continue
            return files

    @classmethod
    def of(cls, path: Path) -> RunFiles | None:
        """The run a file belongs to, from its name; None for a file no run writes."""
        name = path.name
        for suffix in (EVIDENCE, NOTEBOOK, HTML):
            if name.endswith(suffix) and _STEM.fullmatch(name.removesuffix(suffix)):
                return cls(path.parent, name.removesuffix(suffix))
        return None

    @property
    def notebook(self) -> Path:
        return self.folder / f"{self.stem}{NOTEBOOK}"

    @property
    def html(self) -> Path:
        return self.folder / f"{self.stem}{HTML}"

    @property
    def evidence(self) -> Path:
        return self.folder / f"{self.stem}{EVIDENCE}"

    @property
    def artifacts(self) -> tuple[Path, Path]:
        """What the evidence file lists and hashes."""
        return self.notebook, self.html

    @property
    def runbook(self) -> str:
        return self.stem.split("-", 1)[1]

    @property
    def started(self) -> dt.datetime:
        return dt.datetime.strptime(self.stem.split("-", 1)[0], STAMP).replace(tzinfo=dt.timezone.utc)


def record_path(folder: Path, command: str) -> Path:
    """The evidence file of a command acting now (runbooks.command_evidence writes it exclusively)."""
    return folder / f"{_now():{STAMP}}-{command}{EVIDENCE}"


def evidence_files(folder: Path) -> list[Path]:
    """The incident's evidence files, by name."""
    return sorted(folder.glob(f"*{EVIDENCE}"))


def is_working_copy(path: Path) -> bool:
    """A notebook `runbook open` wrote for an engineer to step through (its metadata holds SESSION)."""
    if path.suffix != NOTEBOOK or RunFiles.of(path) is None:
        return False
    try:
        metadata = json.loads(path.read_bytes()).get("metadata")
    except (OSError, ValueError, AttributeError):
        return False
    return isinstance(metadata, dict) and isinstance(metadata.get(SESSION), dict)


def working_copies(folder: Path) -> list[Path]:
    """The incident's working copies, by name (the time they were opened)."""
    return [path for path in sorted(folder.glob(f"*{NOTEBOOK}")) if is_working_copy(path)]


def incident_folder(output_dir: Path, incident: str) -> Path:
    """`output_dir/incident`; a usage error unless the id is a plain name (letters, digits, `.`, `_`, `-`)."""
    if not _INCIDENT.fullmatch(incident or ""):
        raise UsageError(f"incident id {incident!r} must be a plain name (letters, digits, dashes)")
    return output_dir / incident


def make_incident_folder(output_dir: Path, incident: str) -> Path:
    """`incident_folder`, created if missing; a usage error when a link or a file stands at its name."""
    folder = incident_folder(output_dir, incident)
    output_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):  # a file or a dangling link there: refused below
        folder.mkdir(exist_ok=True)
    if folder.is_symlink() or not folder.is_dir():
        raise UsageError(f"{folder} is not a folder (a link or a file stands there): nothing is written through it")
    return folder


# Every write into an incident folder: never through a symbolic link at the name written.
_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def write_new(path: Path, data: bytes) -> None:
    """Create `path` with `data`; FileExistsError if anything (a file, a link) is there."""
    fd = os.open(path, _NEW, 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def write_new_whole(path: Path, data: bytes) -> None:
    """`write_new`, and the file appears whole or not at all: written beside it, then linked into place (which,
    like creating it, fails on anything at `path`)."""
    aside = _aside(path)
    write_new(aside, data)
    try:
        os.link(aside, path, follow_symlinks=False)
    finally:
        aside.unlink()


def replace(path: Path, data: bytes) -> None:
    """Put `data` at `path` whole: written to a new file beside it, then renamed over it (a link there is replaced,
    never followed; a reader sees the old bytes or the new, never half)."""
    temporary = _aside(path)
    write_new(temporary, data)
    try:
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def read(path: Path) -> bytes:
    """The bytes of the regular file `path`; OSError if a link stands there."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        return f.read()


class PapermillFiles:
    """papermill's reading and writing of local files, registered for absolute paths (runbooks.runner): the
    executed notebook is written whole (`replace`), never through a link."""

    def read(self, path: str) -> str:
        return Path(path).read_text(encoding="utf-8")

    def write(self, buf: str, path: str) -> None:
        replace(Path(path), buf.encode())

    def listdir(self, path: str) -> list[str]:
        return [os.path.join(path, name) for name in os.listdir(path)]

    def pretty_path(self, path: str) -> str:
        return path


def append(path: Path, data: bytes) -> None:
    """Append `data` to the regular file `path`, created if missing; OSError if a link or anything else is there."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    with os.fdopen(fd, "ab") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise OSError(f"{path} is not a regular file")
        f.write(data)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def _aside(path: Path) -> Path:
    """A new name beside `path`, hidden and unique, for writing before moving into place."""
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.{time.monotonic_ns()}.tmp")
