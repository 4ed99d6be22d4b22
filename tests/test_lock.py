"""The lock (requirements.lock, what `make` installs) agrees with pyproject.toml's ranges and pins everything it
needs with hashes; environment.yml installs from it. Installing it on a clean venv is `make check-lock` (CI)."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)(?:\s*;\s*([^\\]+?))?\s*\\?$")


def pins() -> dict[str, list[tuple[str, str]]]:
    """Package -> (version, environment marker) of each pin in the lock; a pin without a hash fails."""
    found: dict[str, list[tuple[str, str]]] = {}
    lines = (ROOT / "requirements.lock").read_text().splitlines()
    for i, line in enumerate(lines):
        if match := PIN.match(line):
            name, version, marker = match.groups()
            assert i + 1 < len(lines) and lines[i + 1].strip().startswith("--hash=sha256:"), f"{name} has no hash"
            found.setdefault(canonicalize_name(name), []).append((version, (marker or "").strip()))
    return found


def test_every_dependency_is_pinned_within_its_range():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    locked = pins()
    for text in [*project["dependencies"], *project["optional-dependencies"]["test"]]:
        requirement = Requirement(text)
        versions = locked.get(canonicalize_name(requirement.name))
        assert versions, f"{requirement.name} is not in requirements.lock: run `make lock`"
        for version, _ in versions:
            assert requirement.specifier.contains(version, prereleases=True), f"{requirement.name}=={version} {text}"


def test_the_lock_covers_every_python_the_package_supports():
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"] == ">=3.10"
    assert "--python-version 3.10" in (ROOT / "requirements.lock").read_text().splitlines()[1]


def test_environment_yml_installs_the_lock():
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    (pip,) = [d["pip"] for d in environment["dependencies"] if isinstance(d, dict)]
    assert pip == ["--require-hashes", "-r requirements.lock"]
    python = next(d for d in environment["dependencies"] if isinstance(d, str) and d.startswith("python="))
    assert tuple(map(int, python.removeprefix("python=").split("."))) >= (3, 10)
