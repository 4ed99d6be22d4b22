"""`runbook serve` runs each alert on a warm kernel of its own, started without the webhook token."""

import json
import os

from starlette.testclient import TestClient

from runbooks.alerts import routing, service
from serving import TOKEN, alert, notification, wait_for
from test_kernels import PROBE, notebook


def test_each_alert_runs_on_its_own_warm_kernel_which_never_sees_the_token(tmp_path, monkeypatch):
    monkeypatch.setenv(service.TOKEN_VARIABLE, TOKEN)
    probe = notebook(
        tmp_path,
        "probe",
        *PROBE,
        "record(Finding('token', 'is the webhook token in the kernel environment?"
        "', data={'present': 'RUNBOOK_WEBHOOK_TOKEN' in os.environ}))",
    )
    routes = routing.Routing(
        routes={"Probe": routing.Route("Probe", "probe", ())},
        books={"probe": probe},
        base={"probe": probe.resolve({})},
    )
    output = tmp_path / "output"
    app = service.create_app(routes, output, workers=1, token=TOKEN)

    with TestClient(app) as client:  # the lifespan starts the workers and their kernels
        for fingerprint in ("00000000000000a1", "00000000000000a2"):
            response = client.post(
                "/alerts",
                json=notification(alert("Probe", fingerprint), group_key="probe"),
                headers={"Authorization": f"Bearer {TOKEN}"},
            )
            assert response.json()["alerts"][0]["outcome"] == "queued"
        evidence = wait_for(
            lambda: len(files := sorted(output.glob("*/*.evidence.json"))) == 2 and files, what="two runs' evidence"
        )

    assert [json.loads(path.read_text())["status"] for path in evidence] == ["completed"] * 2
    kernels = [finding(path, "kernel") for path in evidence]
    assert all(k["library"] == ["runbooks.charts", "runbooks.kube", "runbooks.postgres"] for k in kernels)  # warm
    assert kernels[0]["pid"] != kernels[1]["pid"] != os.getpid()  # one kernel per run
    assert kernels[1]["leaked_env"] is None and "left_behind" not in kernels[1]["names"]
    assert {k["cwd"] for k in kernels} == {str(evidence[0].parent.resolve())}
    # The token reaches no kernel: a notebook could otherwise print it into the evidence.
    assert [finding(path, "token") for path in evidence] == [{"present": False}] * 2
    for path in output.rglob("*"):
        if path.is_file() and path.suffix != ".sqlite3":
            assert TOKEN not in path.read_text(errors="replace"), path


def finding(evidence, id):
    return next(f["data"] for f in json.loads(evidence.read_text())["findings"] if f["id"] == id)
