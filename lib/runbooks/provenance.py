"""Where a piece of evidence was made: the package version, the git commit of the runbooks, the host."""

from __future__ import annotations

import socket
import subprocess
from typing import Any

from . import __version__
from .catalog import ROOT


def environment() -> dict[str, Any]:
    """`environment` of an evidence file (evidence.schema.json): package_version, git_commit, host."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
        git_commit = commit.stdout.strip() if commit.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        git_commit = None
    return {"package_version": __version__, "git_commit": git_commit, "host": socket.gethostname()}
