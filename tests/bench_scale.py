"""Cost against the size of the work: the third-party-api-down log scan on 10 MB, 100 MB and 1 GB of one pod's log
(a busy deal-service: one line in ten a call to the tax-rate API, the calls failing in the last 12 minutes), served
by the test API server (a child process, as a real one is) from a file, next to what `grep -c` and a plain Python
loop with one compiled regex take to read the same file; best of ROUNDS, MB/s and peak resident memory of this
process for each size.

    .venv/bin/python tests/bench_scale.py [MB ...]       (default: 10 100 1000)
    .venv/bin/python tests/bench_scale.py pods [N ...]   (default: 100 1000 5000)

`pods`: the whole pod-oomkilled runbook (runner.run, a new kernel) on autolytiq-prod plus N pods of one Deployment,
one in ten OOMKilled two minutes ago: wall time of the run, and time per pod.

Not a test (pytest does not collect it): it prints measured figures and asserts nothing about time.
"""

import datetime as dt
import multiprocessing
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from runbooks.diagnoses import third_party_api_down as third_party
from runbooks.kube.cluster import connect
from runbooks_sandbox.kubeapi.kubeconfig import write_kubeconfig
from runbooks_sandbox.kubeapi.scenario import load_scenario, rfc3339nano, utcnow
from runbooks_sandbox.kubeapi.server import KubeApiServer

NS = "autolytiq-prod"
POD, CONTAINER = "deal-service-7f6b5c9d8-m4n7q", "deal-service"
DEPENDENCIES = third_party.parse(
    {
        "tax-rates": {"match": r"taxrates\.example"},
        "credit-bureau": {"match": r"creditbureau\.example"},
        "email": {"match": r"mailrelay\.example"},
    }
)
ROUNDS = 3
WINDOW_MINUTES = 55  # the log spans this much time, inside the scan's 60 minutes
OK = 'level=info msg="tax rate lookup" client=taxrates url="https://api.taxrates.example/v2/rates?zip={n}" status=200'
FAILED = (
    'level=error msg="tax rate lookup failed" client=taxrates url="https://api.taxrates.example/v2/rates?zip={n}" '
    'error="dial tcp 203.0.113.41:443: connect: connection refused"'
)
OTHER = "level=info method=GET path=/api/v1/deals/{n} status=200 latency_ms={ms} user=u{user} trace={n:016x}"


def write_log(path: Path, megabytes: int) -> int:
    """A time-ordered log of about `megabytes` MB; returns its number of lines."""
    size, n, batch = megabytes * 1_000_000, 0, []
    start = utcnow() - dt.timedelta(minutes=WINDOW_MINUTES)
    per_line = dt.timedelta(minutes=WINDOW_MINUTES) / (size / 150)
    failing_from = utcnow() - dt.timedelta(minutes=12)
    written = 0
    with path.open("w") as log:
        while written < size:
            when = start + per_line * n
            if n % 10:
                text = OTHER.format(n=n, ms=n % 300, user=n % 977)
            else:
                text = (FAILED if when >= failing_from else OK).format(n=n)
            batch.append(f"{rfc3339nano(when)} {text}\n")
            n += 1
            if len(batch) == 10_000:
                chunk = "".join(batch)
                log.write(chunk)
                written += len(chunk)
                batch = []
        log.write("".join(batch))
    return n


class PeakMemory:
    """Peak resident memory of this process while inside the `with`, sampled every 10 ms."""

    def __enter__(self):
        self.peak, self._done = rss(), threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._done.wait(0.01):
            self.peak = max(self.peak, rss())

    def __exit__(self, *exc):
        self._done.set()
        self._thread.join()


def rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def serve(log: Path, urls: multiprocessing.Queue, stop) -> None:
    """The test API server with autolytiq-prod and the third-party-api-down scenario, POD's log read from `log`."""
    with KubeApiServer() as server:
        server.load("autolytiq-prod")
        server.load(load_scenario("third-party-api-down"))
        server.set_log_file(NS, POD, CONTAINER, log)
        urls.put(server.url)
        stop.wait()


def main(sizes: list[int]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "deal-service.log"
        urls: multiprocessing.Queue = multiprocessing.Queue()
        stop = multiprocessing.Event()
        server = multiprocessing.Process(target=serve, args=(path, urls, stop), daemon=True)
        server.start()
        cluster = connect(str(write_kubeconfig(Path(tmp) / "kubeconfig", urls.get(timeout=60))), "test", NS)
        print(f"{'log':>7} {'lines':>10} | {'scan':>7} {'MB/s':>6} {'peak RSS':>9} | {'grep -c':>7} {'py loop':>7}")
        for megabytes in sizes:
            count = write_log(path, megabytes)
            mb = path.stat().st_size / 1e6
            took = []
            with PeakMemory() as memory:
                for _ in range(ROUNDS):
                    started = time.perf_counter()
                    errors = third_party.log_errors(cluster, DEPENDENCIES, "app=deal-service", since_minutes=60)
                    took.append(time.perf_counter() - started)
                    assert errors.lines_read >= count, (errors.lines_read, count)
            started = time.perf_counter()
            subprocess.run(["grep", "-c", "-i", "taxrates.example", str(path)], capture_output=True, check=False)
            grep = time.perf_counter() - started
            started = time.perf_counter()
            regex = re.compile(r"connection refused")
            with path.open("rb") as log:
                sum(1 for line in log if regex.search(line.decode()))
            loop = time.perf_counter() - started
            print(
                f"{mb:>5.0f}MB {count:>10} | {min(took):>6.2f}s {mb / min(took):>6.0f} {memory.peak / 2**20:>6.0f}MiB"
                f" | {grep:>6.2f}s {loop:>6.2f}s"
            )
        stop.set()
        server.join()


def crowd(count: int) -> dict:
    """A scenario of `count` pods of deal-service, one in ten OOMKilled two minutes ago."""
    pods = []
    for i in range(count):
        status = {"name": "deal-service", "restartCount": 0, "state": {"running": {"startedAt": {"ago": "2d"}}}}
        if i % 10 == 0:
            status["restartCount"] = 1
            status["lastState"] = {
                "terminated": {
                    "exitCode": 137,
                    "reason": "OOMKilled",
                    "startedAt": {"ago": "9m"},
                    "finishedAt": {"ago": "2m"},
                }
            }
        pods.append(
            {
                "kind": "Pod",
                "metadata": {
                    "name": f"deal-service-7f6b5c9d8-{i:05d}",
                    "labels": {"app": "deal-service", "pod-template-hash": "7f6b5c9d8"},
                    "ownerReferences": [{"kind": "ReplicaSet", "name": "deal-service-7f6b5c9d8"}],
                    "creationTimestamp": {"ago": "2d"},
                },
                "spec": {
                    "nodeName": f"worker-{1 + i % 2}",
                    "containers": [
                        {
                            "name": "deal-service",
                            "image": "registry.autolytiq.io/deal-service:4.8.1",
                            "resources": {"requests": {"memory": "256Mi"}, "limits": {"memory": "512Mi"}},
                        }
                    ],
                },
                "status": {"containerStatuses": [status]},
            }
        )
    return {"namespace": NS, "objects": pods}


def pods(counts: list[int]) -> None:
    from runbooks import catalog, runner

    book = catalog.find("pod-oomkilled")
    print(f"{'pods':>6} | {'run':>7} {'per pod':>9}")
    for count in counts:
        with tempfile.TemporaryDirectory() as tmp, KubeApiServer() as server:
            server.load("autolytiq-prod")
            server.load(crowd(count))
            kubeconfig = str(write_kubeconfig(Path(tmp) / "kubeconfig", server.url))
            parameters = book.resolve({"kubeconfig": kubeconfig, "context": "test", "namespace": NS})
            started = time.perf_counter()
            result = runner.run(book, parameters, "bench", Path(tmp))
            took = time.perf_counter() - started
            assert result.status == "completed", result.error
            print(f"{count:>6} | {took:>6.2f}s {took / count * 1000:>7.2f}ms")


if __name__ == "__main__":
    if sys.argv[1:2] == ["pods"]:
        pods([int(a) for a in sys.argv[2:]] or [100, 1000, 5000])
    else:
        main([int(a) for a in sys.argv[1:]] or [10, 100, 1000])
