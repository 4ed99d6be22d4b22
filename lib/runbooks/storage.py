"""Where the output folder lives: a local folder, or `s3://BUCKET/PREFIX` in an S3-compatible object store.

An object store is worked through a local copy, the spool (RUNBOOK_SPOOL/BUCKET/PREFIX, default under
~/.cache/runbooks/spool): every command reads and writes files there as in a local output folder, `pull` brings
an incident folder up to date from the store first, and `push` uploads what changed, with retries. Nothing is
lost when the store is briefly unreachable: the files stay in the spool and the next push (the next write to that
incident, the end of the next command on that store, the stop of `runbook serve`) uploads them.

The store is reached through fsspec's s3fs (the way papermill and pandas read `s3://`), its endpoint and
credentials from the standard AWS variables (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_DEFAULT_REGION, or a profile), so AWS S3, MinIO, Ceph and the like all work; every call has a time limit.

Each file has one writer (the process that claimed its name, under the incident's lock: runbooks.chain.claim), and
the incident log is appended to under that lock; so a pull takes the store's copy of a file unless it was written
here since the two were last in step, and a push uploads only what was written here (a name given up here is
removed from the store too). A file whose history this process does not know (written before a restart) is taken
from the store, or uploaded, only when one copy extends the other; otherwise it is kept and reported. Writing an
incident's chain (runbooks.chain) happens under `synced`: pull, write, push, while holding the incident's lock
across replicas when one is set (`runbook serve` on a PostgreSQL queue sets an advisory lock of that database:
set_incident_lock), so two replicas never fork a chain.
Keys from the store become local names only when they are plain names (`<incident>/<file>`); others are skipped.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import runfiles
from .errors import UsageError

log = logging.getLogger(__name__)

SCHEME = "s3://"
SPOOL = "RUNBOOK_SPOOL"
ATTEMPTS = 4  # tries of one upload or download; then the file waits in the spool for the next push
BACKOFF_SECONDS = 0.5  # doubled after each failed try
CONNECT_SECONDS, READ_SECONDS = 10, 60
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")  # a folder or file name taken from a key


class StoreError(UsageError):
    """The object store cannot be used (exit 2): a bad URL, no credentials, no such bucket."""


@dataclass
class Store:
    """`s3://bucket/prefix` and its spool."""

    url: str
    bucket: str
    prefix: str
    spool: Path
    _fs: Any = field(default=None, repr=False)
    _synced: dict[str, str] = field(default_factory=dict, repr=False)  # name -> MD5 last in step with the store
    _uploaded: set[str] = field(default_factory=set, repr=False)  # names this process wrote to the store

    @property
    def fs(self) -> Any:
        if self._fs is None:
            import s3fs  # only when an object store is used: botocore is slow to import

            endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
            self._fs = s3fs.S3FileSystem(
                endpoint_url=endpoint or None,
                use_listings_cache=False,
                skip_instance_cache=True,
                config_kwargs={
                    "connect_timeout": CONNECT_SECONDS,
                    "read_timeout": READ_SECONDS,
                    "retries": {"max_attempts": 2, "mode": "standard"},
                },
            )
        return self._fs

    def key(self, relative: str) -> str:
        return "/".join(part for part in (self.bucket, self.prefix, relative) if part)

    def listing(self, relative: str) -> dict[str, str]:
        """Each file under `relative` in the store: its path relative to the prefix -> its ETag (MD5 of a whole
        upload)."""
        base = self.key(relative)
        found = _retried(f"list {SCHEME}{base}", self.fs.find, base, detail=True)
        root = self.key("")
        return {
            name[len(root) :].lstrip("/"): str(info.get("ETag", "")).strip('"')
            for name, info in found.items()
            if info.get("type") != "directory"
        }

    def pull(self, folder: Path) -> None:
        relative = folder.relative_to(self.spool).as_posix()
        if not _NAME.fullmatch(relative):
            return
        for name, etag in sorted(self.listing(relative).items()):
            parts = name.split("/")
            if len(parts) != 2 or parts[0] != relative or not _NAME.fullmatch(parts[1]):
                log.warning("%s: %s skipped: not a plain file name of the incident", self.url, name)
                continue
            path = folder / parts[1]
            here = runfiles.read(path) if path.is_file() else None
            mine = _md5(here) if here is not None else None
            if mine == etag:
                self._synced[name] = etag
                continue
            if here is not None and name in self._synced and self._synced[name] != mine:
                continue  # written here since: this process's to upload
            data = _retried(f"download {self.url}/{name}", self.fs.cat_file, self.key(name))
            if here is not None and name not in self._synced and not data.startswith(here):
                if not here.startswith(data):  # neither extends the other: the store's copy is not taken
                    log.warning("%s: %s differs from the store's copy: kept as it is here", folder, parts[1])
                continue
            folder.mkdir(parents=True, exist_ok=True)
            runfiles.replace(path, data)
            self._synced[name] = _md5(data)

    def push(self, folder: Path) -> list[str]:
        """Upload what was written in `folder` (or in every incident folder, for the spool itself) since it was
        last in step with the store; the names that could not be uploaded (kept here for the next push). A file
        this process only downloaded is never uploaded (the store may hold a newer one from its writer); one whose
        history this process does not know (written before a restart) only when it extends the store's copy."""
        folders = [folder] if folder != self.spool else [f for f in sorted(self.spool.iterdir()) if f.is_dir()]
        failed = []
        for each in folders:
            if not _NAME.fullmatch(each.name) or each.is_symlink():
                continue
            try:
                there = self.listing(each.name)
            except OSError as e:
                log.warning("%s: %s not uploaded, kept in %s: %s", self.url, each.name, each, e)
                failed.append(each.name)
                continue
            for path in sorted(each.iterdir()):
                if not _NAME.fullmatch(path.name) or path.is_symlink() or not path.is_file():
                    continue
                name = f"{each.name}/{path.name}"
                data = runfiles.read(path)
                mine = _md5(data)
                if there.get(name) == mine or self._synced.get(name) == mine:
                    self._synced[name] = self._synced.get(name) or mine
                    continue
                try:
                    if name in there and name not in self._synced:
                        stored = _retried(f"download {self.url}/{name}", self.fs.cat_file, self.key(name))
                        if not data.startswith(stored):
                            log.warning("%s: %s differs from the store's copy: not uploaded", each, path.name)
                            continue
                    _retried(f"upload {self.url}/{name}", self.fs.pipe_file, self.key(name), data)
                    self._synced[name] = mine
                    self._uploaded.add(name)
                except OSError as e:
                    log.warning("%s: %s not uploaded, kept in %s: %s", self.url, name, path, e)
                    failed.append(name)
            for name in sorted(n for n in there if n in self._uploaded and not (self.spool / n).exists()):
                if there[name] == self._synced.get(name):  # uploaded here, removed here since (a name given up)
                    with contextlib.suppress(OSError):
                        _retried(f"remove {self.url}/{name}", self.fs.rm_file, self.key(name))
                        self._uploaded.discard(name)
        return failed


_mounted: dict[Path, Store] = {}
_incident_lock: Callable[[str], AbstractContextManager[object]] | None = None


def is_store(text: str) -> bool:
    return text.startswith(SCHEME)


def mount(url: str) -> Path:
    """The spool of the object store `url` (created), through which this process reads and writes it; StoreError
    for a URL that names no bucket."""
    bucket, _, prefix = url[len(SCHEME) :].partition("/")
    prefix = prefix.strip("/")
    if not _BUCKET.fullmatch(bucket) or not all(_NAME.fullmatch(part) for part in prefix.split("/") if prefix):
        raise StoreError(f"--output-dir {url}: expected s3://BUCKET/PREFIX with plain names")
    root = Path(os.environ.get(SPOOL) or Path.home() / ".cache" / "runbooks" / "spool")
    spool = root / bucket / prefix if prefix else root / bucket
    spool.mkdir(parents=True, exist_ok=True)
    store = Store(f"{SCHEME}{bucket}/{prefix}".rstrip("/"), bucket, prefix, spool.resolve())
    try:
        exists = _retried(f"reach {SCHEME}{bucket}", store.fs.exists, bucket)
    except OSError as e:
        raise StoreError(f"the object store {store.url} cannot be reached: {e}") from None
    if not exists:
        raise StoreError(f"the object store has no bucket {bucket!r} (or these credentials may not see it)")
    _mounted[store.spool] = store
    return store.spool


def store_of(path: Path) -> Store | None:
    """The store whose spool holds `path`; None for a local output folder."""
    path = path.resolve()
    return next((s for root, s in _mounted.items() if path == root or root in path.parents), None)


def pull(folder: Path) -> None:
    """Bring the incident folder `folder` up to date from its store (nothing for a local folder). A store out of
    reach is logged: the command goes on with what the spool holds."""
    if (store := store_of(folder)) is not None:
        try:
            store.pull(folder.resolve())
        except OSError as e:
            log.warning("%s: not brought up to date from %s: %s", folder, store.url, e)


def pull_all(output_dir: Path) -> None:
    """Bring every incident of the store at `output_dir` into its spool (nothing for a local folder): for the
    replica that escalates, which must see the incidents the others received."""
    if (store := store_of(output_dir)) is None:
        return
    try:
        names = {name.split("/", 1)[0] for name in store.listing("")}
    except OSError as e:
        log.warning("%s: incidents not brought up to date from %s: %s", output_dir, store.url, e)
        return
    for name in sorted(n for n in names if _NAME.fullmatch(n)):
        pull(store.spool / name)


def push(folder: Path) -> list[str]:
    """Upload what changed in the incident folder `folder`, or in the whole spool; what is left to upload."""
    store = store_of(folder)
    return store.push(folder.resolve()) if store else []


def push_all() -> list[str]:
    """At the end of a command: upload what changed in every spool it used."""
    return [name for store in list(_mounted.values()) for name in store.push(store.spool)]


def set_incident_lock(lock: Callable[[str], AbstractContextManager[object]] | None) -> None:
    """Who gives one writer at a time per incident across processes that share the store (None: nobody; flock
    serialises the writers of one machine)."""
    global _incident_lock
    _incident_lock = lock


@contextlib.contextmanager
def synced(folder: Path, exclusive: bool) -> Iterator[None]:
    """Around a write (exclusive) or a read of the incident's chain: for an incident in a store, under the lock
    across replicas when writing: pull, the body, then push."""
    store = store_of(folder)
    if store is None:
        yield
        return
    lock = _incident_lock(f"{store.url}/{folder.name}") if exclusive and _incident_lock else contextlib.nullcontext()
    with lock:
        pull(folder)
        yield
        if exclusive:
            push(folder)


def _retried(what: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """`call(*args, **kwargs)`, tried ATTEMPTS times with backoff; OSError saying `what` failed, in one line."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return call(*args, **kwargs)
        except FileNotFoundError:
            raise
        except Exception as e:  # botocore's and aiohttp's errors, whatever their class
            if attempt == ATTEMPTS:
                raise OSError(f"cannot {what}: {type(e).__name__}: {e}") from None
            log.info("cannot %s (try %d of %d): %s", what, attempt, ATTEMPTS, e)
            time.sleep(BACKOFF_SECONDS * 2 ** (attempt - 1))


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()
