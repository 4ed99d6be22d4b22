"""What each runbook takes: its notebook's title and `parameters` cell, merged from layers and type-checked.

Which runbooks exist is runbooks.registry.
"""

from __future__ import annotations

import ast
import json
import math
import os
import re
from collections.abc import Iterable
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
_ENVIRONMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")  # a file name under parameters/, never a path
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

    @property
    def base_type(self) -> str:
        """`str` of `Optional[str]`; the type itself otherwise."""
        match = _OPTIONAL.match(self.type)
        return match.group(1) if match else self.type

    def check(self, value: Any) -> None:
        """Raise UsageError unless `value` is plain JSON data (checked all the way down: papermill writes anything
        else into the notebook as code) of this parameter's type."""
        plain_json(value, self.name)
        if self.kind:
            if problem := kinds.problem(self.kind, value):
                raise UsageError(f"parameter {self.name!r} {problem}")
            return
        base, optional = self.base_type, self.base_type != self.type
        if value is None and optional:
            return
        accepted = _TYPES[base]
        if isinstance(value, bool) and bool not in accepted:
            accepted = ()
        if not isinstance(value, accepted):
            raise UsageError(f"parameter {self.name!r} takes {self.words}, got {value!r}")

    @property
    def words(self) -> str:
        """What it takes, as `runbook show` says it: `a number or empty (null)`, `a time, ISO 8601 (...) or empty`."""
        if self.kind:
            return f"{kinds.KINDS[self.kind].words} or empty"
        if self.base_type != self.type:
            return f"{_WORDS[self.base_type]} or empty (null)"
        return _WORDS[self.type]


@dataclass(frozen=True)
class Runbook:
    name: str
    path: Path
    title: str
    parameters: dict[str, Parameter]

    def resolve(self, *layers: dict[str, Any]) -> dict[str, Any]:
        """Defaults overlaid with each layer in turn; unknown names and wrong types are rejected."""
        values = {name: p.default for name, p in self.parameters.items()}
        for layer in layers:
            for name, value in layer.items():
                parameter = self.parameters.get(name)
                if parameter is None:
                    known = ", ".join(self.parameters)
                    raise UsageError(f"runbook {self.name!r} has no parameter {name!r} (it takes: {known})")
                if (
                    parameter.base_type == "str"
                    and not parameter.kind  # a kind says what a number is not: `10:45` read by YAML as 645
                    and isinstance(value, (int, float))
                    and not isinstance(value, bool)
                ):
                    value = str(value)  # `namespace: 8` in a file; quote it to keep `010` as written
                if parameter.type in ("list", "dict") and isinstance(value, str):
                    value = _collection(value)  # `-p endpoints "[a:443, b:443]"`
                parameter.check(value)
                values[name] = value
        return values

    def from_cli(self, pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
        """`-p KEY VALUE` pairs: a text parameter keeps VALUE as typed (`010`, `yes`; `null` is None where None is
        allowed); any other VALUE is read as YAML (`true`, `2.5`, `[a, b]`)."""
        values: dict[str, Any] = {}
        for key, text in pairs:
            parameter = self.parameters.get(key)
            if parameter is not None and parameter.base_type == "str":
                values[key] = None if text in ("null", "~") and parameter.type != "str" else text
            else:
                values[key] = parse_cli_value(text)
        return values


def plain_json(value: Any, where: str) -> None:
    """UsageError unless `value` is str, int, finite float, bool, None, or a list or str-keyed dict of those."""
    if value is None or isinstance(value, (str, bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise UsageError(f"parameter {where!r}: {value!r} is not a JSON number")
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            plain_json(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise UsageError(f"parameter {where!r}: key {key!r} is {type(key).__name__}, not text")
            plain_json(item, f"{where}.{key}")
        return
    raise UsageError(
        f"parameter {where!r}: a {type(value).__name__} is not plain JSON data "
        "(text, number, true/false, null, list or mapping); a YAML tag such as !!binary or a date is not taken"
    )


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
    data = environment(env)
    shared = {k: v for k, v in (data.get("defaults") or {}).items() if k in runbook.parameters}
    return {**shared, **((data.get("runbooks") or {}).get(runbook.name) or {})}


def environment(env: str) -> dict[str, Any]:
    """The parameters file `parameters/<env>.yaml`: a plain name, and a file of `defaults` and `runbooks` only (not
    the alert routing, not a path elsewhere); UsageError naming the environments there are otherwise."""
    path = PARAMETERS / f"{env}.yaml"
    if not _ENVIRONMENT.fullmatch(env or "") or not path.is_file():
        raise UsageError(f"unknown environment {env!r} (known: {', '.join(environments())})")
    data = read_yaml(path)
    if not _is_environment(data):
        raise UsageError(
            f"{path} is not a parameters file (only `defaults` and `runbooks` mappings): "
            f"not an environment (known: {', '.join(environments())})"
        )
    return data


def environments() -> list[str]:
    """The names `--env` takes: the parameters files under parameters/."""
    names = []
    for path in sorted(PARAMETERS.glob("*.yaml")):
        try:
            if _ENVIRONMENT.fullmatch(path.stem) and _is_environment(read_yaml(path)):
                names.append(path.stem)
        except UsageError:
            continue
    return names


def _is_environment(data: dict[str, Any]) -> bool:
    """`defaults` and/or `runbooks` mappings, and nothing else (an empty or all-comment file is none)."""
    return (
        bool(data) and set(data) <= {"defaults", "runbooks"} and all(isinstance(v or {}, dict) for v in data.values())
    )


def _source(cell: dict) -> str:
    source = cell["source"]
    return source if isinstance(source, str) else "".join(source)
