"""What each runbook takes: its notebook's title and `parameters` cell, merged from layers and type-checked.

Which runbooks exist is runbooks.registry.
"""

from __future__ import annotations

import ast
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from . import kinds, registry
from .errors import UsageError

ROOT = Path(os.environ.get("RUNBOOKS_HOME", Path(__file__).resolve().parents[2]))
NOTEBOOKS = ROOT / "notebooks"
PARAMETERS = ROOT / "parameters"
OUTPUT = ROOT / "output"

_OPTIONAL = re.compile(r"^Optional\[(\w+)\]$")
_PEP604_OPTIONAL = re.compile(r"^(\w+) \| None$")  # `float | None` reads as Optional[float]
_TYPES = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,), "list": (list,), "dict": (dict,)}
_WORDS = {
    "str": "text",
    "int": "a whole number",
    "float": "a number",
    "bool": "true or false",
    "list": "a list ([a, b])",
    "dict": "a mapping ({name: value})",
}


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str  # str | int | float | bool | list | dict, or Optional[one of those]
    default: Any
    help: str
    kind: str | None = None  # of runbooks.kinds.KINDS (Time, PromDuration, Memory): a str checked further

    def check(self, value: Any) -> None:
        """Raise UsageError unless `value` is of this parameter's type (and kind)."""
        if self.kind:
            if problem := kinds.problem(self.kind, value):
                raise UsageError(f"parameter {self.name!r} {problem}")
            return
        base, optional = self.type, False
        if match := _OPTIONAL.match(self.type):
            base, optional = match.group(1), True
        if value is None and optional:
            return
        accepted = _TYPES[base]
        if isinstance(value, bool) and bool not in accepted:
            accepted = ()
        if not isinstance(value, accepted):
            raise UsageError(f"parameter {self.name!r} takes {self.words}, got {value!r}")

    @property
    def words(self) -> str:
        """What it takes, as `runbook show` says it: `a number or empty`, `a time, ISO 8601 (...) or empty`."""
        if self.kind:
            return f"{kinds.KINDS[self.kind].words} or empty"
        if match := _OPTIONAL.match(self.type):
            return f"{_WORDS[match.group(1)]} or empty (null)"
        return _WORDS[self.type]

    def from_command_line(self, text: str) -> Any:
        """`-p NAME VALUE`: text parameters take VALUE as typed (`10:45` stays `10:45`), others read it as YAML."""
        return text if self.type == "str" else parse_cli_value(text)


@dataclass(frozen=True)
class Runbook:
    name: str
    path: Path
    title: str
    parameters: dict[str, Parameter]

    def command_line(self, pairs: tuple[tuple[str, str], ...]) -> dict[str, Any]:
        """The `-p NAME VALUE` pairs as a layer, each value read as its parameter takes it."""
        return {
            name: self.parameters[name].from_command_line(text) if name in self.parameters else text
            for name, text in pairs
        }

    def resolve(self, *layers: dict[str, Any]) -> dict[str, Any]:
        """Defaults overlaid with each layer in turn; unknown names and wrong types are rejected."""
        values = {name: p.default for name, p in self.parameters.items()}
        for layer in layers:
            for name, value in layer.items():
                parameter = self.parameters.get(name)
                if parameter is None:
                    known = ", ".join(self.parameters)
                    raise UsageError(f"runbook {self.name!r} has no parameter {name!r} (it takes: {known})")
                if parameter.type == "str" and not parameter.kind and not isinstance(value, (str, type(None))):
                    value = str(value)  # `-p incident 1234` stays the string the user typed
                if parameter.type in ("list", "dict") and isinstance(value, str):
                    value = _collection(value)  # `-p endpoints "[a:443, b:443]"`
                parameter.check(value)
                values[name] = value
        return values


def runbooks() -> list[Runbook]:
    return [find(name) for name in registry.names()]


def find(name: str) -> Runbook:
    """The registered runbook `name`, read from its notebook; a usage error for any other name."""
    entry = registry.get(name)
    return load(NOTEBOOKS / f"{entry.name}.ipynb")


def load(path: Path) -> Runbook:
    cells = json.loads(path.read_text())["cells"]
    title = next(
        (
            line.lstrip("# ").strip()
            for c in cells
            if c["cell_type"] == "markdown"
            for line in _source(c).splitlines()
            if line.startswith("# ")
        ),
        path.stem,
    )
    return Runbook(path.stem, path, title, parameters(path))


def parameters(path: Path) -> dict[str, Parameter]:
    """The notebook's `parameters` cell: one `name[: type] = literal  # help` per line."""
    cells = json.loads(path.read_text())["cells"]
    cell = next((c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])), None)
    return parse_parameters(_source(cell), path.name) if cell else {}


def parse_parameters(source: str, where: str = "parameters cell") -> dict[str, Parameter]:
    """Each assignment of the cell, read by Python's own parser: name, annotation (else the default's type),
    literal default, and the comment after it as help.

    Not papermill.inspect_notebook: its line pattern drops every line whose value or comment holds `=`
    (`gateway_selector = "app=api-gateway"`, a PromQL `=~`), silently.
    """
    lines = source.splitlines()
    found = {}
    for node in ast.parse(source).body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):  # `from typing import Optional`
            continue
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            name, annotation, value = node.target.id, ast.unparse(node.annotation), node.value
        elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name, annotation, value = node.targets[0].id, None, node.value
        else:
            raise ValueError(f"{where}: line {node.lineno} is not `name[: type] = literal  # help`")
        default = ast.literal_eval(value)
        kind = annotation if annotation in kinds.KINDS else None
        annotation = "str" if kind else _PEP604_OPTIONAL.sub(r"Optional[\1]", annotation or type(default).__name__)
        base = _OPTIONAL.match(annotation)
        if (base.group(1) if base else annotation) not in _TYPES:
            raise ValueError(f"{where}: parameter {name!r}: unsupported type {annotation!r}")
        rest = lines[(node.end_lineno or node.lineno) - 1][node.end_col_offset :].strip()
        found[name] = Parameter(name, annotation, default, rest.removeprefix("#").strip(), kind)
    return found


def parse_cli_value(text: str) -> Any:
    """`-p KEY VALUE`: VALUE is read as a YAML scalar, so `true`, `2.5` and `null` arrive typed."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, (str, int, float, bool)) or value is None else text


def _collection(text: str) -> Any:
    """A YAML flow list or mapping given as text, or the text itself when it is none."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, (list, dict)) else text


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as e:
        raise UsageError(f"cannot read parameter file {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise UsageError(f"parameter file {path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise UsageError(f"parameter file {path} must be a mapping of parameter names to values")
    return data


def environment_layer(env: str, runbook: Runbook) -> dict[str, Any]:
    """`parameters/<env>.yaml`: `defaults` apply where the runbook takes them, `runbooks.<name>` must fit."""
    if env not in environments():
        raise UsageError(f"unknown environment {env!r} (known: {', '.join(environments())})")
    data = read_yaml(PARAMETERS / f"{env}.yaml")
    shared = {k: v for k, v in (data.get("defaults") or {}).items() if k in runbook.parameters}
    return {**shared, **((data.get("runbooks") or {}).get(runbook.name) or {})}


def environments() -> list[str]:
    """The environments: `parameters/<env>.yaml` files holding `defaults` and/or `runbooks`, nothing else (not
    alerts.yaml, which is routing, nor integrations.yaml)."""
    found = []
    for path in sorted(PARAMETERS.glob("*.yaml")):
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(data, dict) and data and data.keys() <= {"defaults", "runbooks"}:
            found.append(path.stem)
    return found


def _source(cell: dict) -> str:
    source = cell["source"]
    return source if isinstance(source, str) else "".join(source)
