"""The notebooks as committed, and each one run under nbval against the test server."""

import ast
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runbooks import catalog, registry
from runbooks_sandbox.kubeapi.kubeconfig import write_kubeconfig

NOTEBOOKS = [catalog.NOTEBOOKS / f"{name}.ipynb" for name in registry.names()]
LIB = Path(catalog.__file__).parent


def test_every_notebook_is_registered_and_every_registered_runbook_has_its_parts():
    assert {p.stem for p in catalog.NOTEBOOKS.glob("*.ipynb")} == set(registry.names())
    for entry in registry.RUNBOOKS:
        importlib.import_module(entry.diagnosis)
        assert set(entry.access) <= set(registry.ACCESS_LAYERS), entry.name
        assert (Path(__file__).parent / f"test_{entry.name.replace('-', '_')}.py").is_file(), entry.name


def _imports(path: Path) -> set[str]:
    """The runbooks modules a module of the package imports, as absolute names."""
    package = ".".join(["runbooks", *path.relative_to(LIB).parent.parts])
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found |= {f"{base}.{alias.name}" for alias in node.names} | {base}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return {name for name in found if name.startswith("runbooks")}


def test_a_diagnosis_never_imports_another_and_access_layers_import_no_diagnosis():
    diagnoses = {entry.diagnosis for entry in registry.RUNBOOKS}
    for path in LIB.rglob("*.py"):
        imported = {name for name in _imports(path) if any(name.startswith(d) for d in diagnoses)}
        own = ".".join(["runbooks", *path.relative_to(LIB).with_suffix("").parts])
        assert imported <= {own}, f"{path.relative_to(LIB)} imports {sorted(imported)}"


def test_the_product_never_imports_the_sandbox_but_for_the_demo_and_sandbox_commands():
    for path in LIB.rglob("*.py"):
        tree = ast.parse(path.read_text())
        sandbox = [
            node
            for node in ast.walk(tree)
            if isinstance(node, (ast.Import, ast.ImportFrom)) and "runbooks_sandbox" in ast.unparse(node)
        ]
        if path.name == "cli.py":
            assert all(node not in tree.body for node in sandbox), "cli.py imports the sandbox only inside its commands"
        else:
            assert not sandbox, path


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(path):
    for index, cell in enumerate(json.loads(path.read_text())["cells"]):
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [], f"cell {index} has outputs"
            assert cell["execution_count"] is None, f"cell {index} has an execution count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_reads_like_the_runbook(path):
    cells = json.loads(path.read_text())["cells"]
    assert cells[0]["cell_type"] == "markdown" and "".join(cells[0]["source"]).startswith("# ")
    assert "parameters" in cells[1]["metadata"].get("tags", [])
    changes = registry.get(path.stem).changes
    parameters = catalog.load(path).parameters
    assert ("apply" in parameters) == bool(changes), "a runbook takes `apply` exactly when it can change something"
    if changes:
        assert parameters["apply"].default is False
    code = "".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    module = registry.get(path.stem).diagnosis.rsplit(".", 1)[1]
    assert f"from runbooks.diagnoses import {module} as diagnosis" in code


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_runs_under_nbval_against_the_test_servers(path, server, kube_api, tmp_path):
    # Run with their defaults: an empty dsn makes libpq read PG* variables, an empty kubeconfig
    # makes the client read $KUBECONFIG, whose context namespace holds the autolytiq-prod scenario.
    kube_api.load("autolytiq-prod")
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", kube_api.url, context="sandbox", namespace="autolytiq-prod")
    env = {
        **os.environ,
        "PGHOST": server.socket_dir,
        "PGPORT": str(server.port),
        "PGUSER": "autolytiq_admin",
        "PGDATABASE": "autolytiq",
        "KUBECONFIG": str(kubeconfig),
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--nbval-lax",
            "-q",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(tmp_path),
            str(path),
        ],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout
