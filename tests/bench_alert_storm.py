"""A storm through `runbook serve`'s front door: N distinct alerts in one notification (one per pod, all of one
incident, or one incident each), POSTed to the service in-process; prints how long the answer took and how long
`runbook verify` takes over the incident log it left.

    .venv/bin/python tests/bench_alert_storm.py [N]

Not a test (pytest does not collect it): it prints measured figures and asserts nothing about time.
"""

import sys
import tempfile
import time
from pathlib import Path

from starlette.testclient import TestClient

from runbooks import chain
from runbooks.alerts import routing, service
from serving import TOKEN, alert, notification


def main(count: int) -> None:
    for incidents in (1, count):
        with tempfile.TemporaryDirectory() as out:
            output = Path(out)
            client = TestClient(service.create_app(routing.load(), output, workers=1, token=TOKEN))
            storm = [
                alert(
                    "PodOOMKilled",
                    f"{i:016x}",
                    namespace="autolytiq-prod",
                    pod=f"p-{i}",
                    incident=f"POD-{i % incidents}",
                )
                for i in range(count)
            ]
            started = time.perf_counter()
            response = client.post("/alerts", json=notification(*storm), headers={"Authorization": f"Bearer {TOKEN}"})
            answered = time.perf_counter() - started
            queued = sum(o["outcome"] == "queued" for o in response.json()["alerts"])
            folders = [p for p in output.iterdir() if not p.name.startswith(".")]
            started = time.perf_counter()
            intact = all(chain.verify(folder).intact for folder in folders)
            verified = time.perf_counter() - started
            print(
                f"{count} alerts, {len(folders)} incident(s): HTTP {response.status_code} in {answered:.2f} s, "
                f"{queued} queued; verify of every incident log {verified:.2f} s (intact: {intact})"
            )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
