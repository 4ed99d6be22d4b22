"""Runs on warm kernels from a KernelPool: the same evidence as a cold run, one kernel per run, nothing left over."""

import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jsonschema
import nbformat
import psutil
import pytest

from runbooks import catalog, chain, kernels, runner
from runbooks.chain import sha256
from runbooks.evidence import schema
from runbooks.kernels import KernelPool, KernelUnavailable
from runbooks.runfiles import RunFiles
from runbooks_sandbox.incidents import hold_pools

IDLE = 0.02  # minutes: the held sessions age past it within the test

# A tiny runbook that reports, as a finding, what its kernel looked like when its first cell ran.
PROBE = [
    "marker = 'default'  # what this run is called",
    "import os, sys\n"
    "first_cell = {\n"
    "    'library': sorted(m for m in ('runbooks.charts', 'runbooks.kube', 'runbooks.postgres') if m in sys.modules),\n"
    "    'names': sorted(n for n in globals() if not n.startswith('_')\n"
    "                    and n not in ('In', 'Out', 'exit', 'quit', 'get_ipython', 'os', 'sys', 'marker')),\n"
    "    'leaked_env': os.environ.get('LEFT_BY_A_RUN'),\n"
    "}",
    "from runbooks import Finding, record\n"
    "left_behind = marker\n"
    "os.environ['LEFT_BY_A_RUN'] = marker\n"
    "record(Finding('kernel', 'what the kernel looked like',\n"
    "               data={**first_cell, 'pid': os.getpid(), 'cwd': os.getcwd(),\n"
    "       'pgpassword': os.environ.get('PGPASSWORD')}))",
]


def notebook(folder: Path, name: str, *sources: str) -> catalog.Runbook:
    """A throwaway runbook: the first source is its parameters cell."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {name}")]
    nb.cells += [nbformat.v4.new_code_cell(sources[0], metadata={"tags": ["parameters"]})]
    nb.cells += [nbformat.v4.new_code_cell(source) for source in sources[1:]]
    path = folder / f"{name}.ipynb"
    nbformat.write(nb, path)
    return catalog.load(path)


def kernel_pids() -> set[int]:
    """Kernel processes this process started, or had a fork server fork, still running."""
    pids = set()
    for process in psutil.Process().children(recursive=True):
        try:
            command = " ".join(process.cmdline())
            forked = process.ppid() != os.getpid() and "runbooks/forkserver.py" in command
        except psutil.Error:
            continue
        if "ipykernel" in command or forked:
            pids.add(process.pid)
    return pids


def fork_servers() -> set[int]:
    return {p.pid for p in psutil.Process().children() if "runbooks/forkserver.py" in " ".join(p.cmdline())}


def until(condition, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def dead(pid: int) -> bool:
    """Gone (a fork server reaps its kernels), or a zombie with no thread left: its parent can reap it."""
    try:
        return (
            Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
            and len(os.listdir(f"/proc/{pid}/task")) == 1
        )
    except FileNotFoundError:
        return True


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def read(run: runner.RunResult) -> tuple[dict, dict]:
    """The evidence of a run, checked against its schema and its artifacts' hashes, and its notebook."""
    record = json.loads(run.evidence_path.read_text())
    jsonschema.validate(record, schema())
    for artifact in record["artifacts"]:
        assert sha256(run.evidence_path.parent / artifact["path"]) == artifact["sha256"]
    return record, json.loads((run.evidence_path.parent / record["artifacts"][0]["path"]).read_text())


def outputs_shape(nb: dict) -> list:
    """Per code cell: execution count and each output's type and MIME types (values differ between runs)."""
    return [
        (c["execution_count"], [(o["output_type"], sorted(o.get("data", {}))) for o in c["outputs"]])
        for c in nb["cells"]
        if c["cell_type"] == "code"
    ]


@pytest.fixture(scope="module")
def pool():
    with KernelPool(size=2) as kernels:
        yield kernels


@pytest.fixture
def probe(tmp_path):
    return notebook(tmp_path, "probe", *PROBE)


def test_warm_run_finds_what_a_cold_run_finds(server, pool, tmp_path):
    book = catalog.find("db-connection-pool-exhausted")
    parameters = book.resolve({"dsn": server.dsn(), "idle_minutes": IDLE})
    with hold_pools(server) as held:
        time.sleep(1.5)
        cold = runner.run(book, parameters, "cold", tmp_path)
        kernel = pool.take()
        warm = runner.run(book, parameters, "warm", tmp_path, kernel=kernel)

    assert (cold.status, warm.status) == ("completed", "completed"), (cold.error, warm.error)
    (cold_record, cold_nb), (warm_record, warm_nb) = read(cold), read(warm)
    assert warm_record["parameters"] == cold_record["parameters"]
    assert [(f["id"], f["severity"]) for f in warm_record["findings"]] == [
        (f["id"], f["severity"]) for f in cold_record["findings"]
    ]
    warm_findings = {f["id"]: f["data"] for f in warm_record["findings"]}
    assert warm_findings["pool-usage"]["client_connections"] == 17
    assert warm_findings["top-application"]["application"] == "deal-service"
    assert {int(a["target"].split()[1]) for a in warm_record["actions"]} == set(held.pids())
    assert [(a["id"], a["mode"], a["result"]) for a in warm_record["actions"]] == [
        (a["id"], a["mode"], a["result"]) for a in cold_record["actions"]
    ]  # targets say how long each was idle
    assert outputs_shape(warm_nb) == outputs_shape(cold_nb)  # same cells, counts, figures and tables
    assert not alive(kernel.pid)


def test_library_is_imported_before_the_first_cell_and_each_kernel_serves_one_run(pool, probe, tmp_path):
    first_kernel, second_kernel = pool.take(), pool.take()
    assert first_kernel.pid != second_kernel.pid
    first = runner.run(probe, probe.resolve({"marker": "first"}), "probe", tmp_path, kernel=first_kernel)
    second = runner.run(probe, probe.resolve({"marker": "second"}), "probe", tmp_path, kernel=second_kernel)
    cold = runner.run(probe, probe.resolve({"marker": "cold"}), "probe", tmp_path)

    seen = []
    for run, kernel in ((first, first_kernel), (second, second_kernel)):
        assert run.status == "completed", run.error
        record, _nb = read(run)
        data = record["findings"][0]["data"]
        seen.append(data)
        assert data["pid"] == kernel.pid and not alive(kernel.pid)
        assert data["library"] == ["runbooks.charts", "runbooks.kube", "runbooks.postgres"]
        assert data["cwd"] == str((tmp_path / "probe").resolve())
    cold_record, cold_nb = read(cold)
    assert cold_record["findings"][0]["data"]["library"] == []
    # The warm-up bound no name and left no execution count; nothing of the first run (a variable, an
    # environment variable) reached the second: each first cell saw what a cold kernel's first cell sees.
    for data in seen:
        assert data["names"] == cold_record["findings"][0]["data"]["names"]
        assert "left_behind" not in data["names"] and data["leaked_env"] is None
    assert outputs_shape(read(first)[1]) == outputs_shape(cold_nb)


def test_runs_of_one_runbook_at_once_in_one_incident_keep_their_own_files_and_one_chain(pool, probe, tmp_path):
    # Alert workers run in threads: the same runbook for the same incident may start in the same second.
    kernels = [pool.take(), pool.take()]
    with ThreadPoolExecutor(2) as workers:
        runs = list(workers.map(lambda k: runner.run(probe, probe.resolve({}), "same", tmp_path, kernel=k), kernels))

    assert [r.status for r in runs] == ["completed", "completed"]
    assert len({r.evidence_path for r in runs}) == 2
    assert len(list((tmp_path / "same").glob("*.ipynb"))) == 2
    assert chain.verify(tmp_path / "same").intact


def test_password_in_dsn_works_on_a_warm_kernel_and_is_written_nowhere(server, pool, probe, tmp_path, admin_password):
    password = admin_password
    book = catalog.find("db-connection-pool-exhausted")
    # Over TCP the server asks for the password (SCRAM): the run only completes if libpq got it.
    run = runner.run(
        book, book.resolve({"dsn": server.tcp_dsn(password=password)}), "secret", tmp_path, kernel=pool.take()
    )
    assert run.status == "completed", run.error
    record, _ = read(run)
    assert "password" not in record["parameters"]["dsn"]
    written = list(run.evidence_path.parent.iterdir())
    assert len(written) == 3
    for path in written:
        assert password not in path.read_text(), path.name
    # The next kernel never had it.
    kernel = pool.take()
    assert b"PGPASSWORD=" + password.encode() not in Path(f"/proc/{kernel.pid}/environ").read_bytes()
    after = runner.run(probe, probe.resolve({}), "secret", tmp_path, kernel=kernel)
    assert read(after)[0]["findings"][0]["data"]["pgpassword"] != password


# As on a cold kernel: a cell's error is pinned to that cell (papermill adds its error banners before it); a
# kernel that dies leaves the cells run before it.
@pytest.mark.parametrize(
    "cell, ename", [("raise ValueError('boom')", "ValueError"), ("import os\nos._exit(1)", "DeadKernelError")]
)
def test_a_failing_cell_or_dead_kernel_still_leaves_failed_evidence(pool, tmp_path, cell, ename):
    book = notebook(tmp_path, "fails", "marker = ''", "before = 1", cell, "after = 1")
    kernel = pool.take()
    run = runner.run(book, {"marker": ""}, "fails", tmp_path, kernel=kernel)

    assert run.status == "failed" and run.error.ename == ename
    record, nb = read(run)
    assert record["status"] == "failed" and record["error"] == dataclasses.asdict(run.error)
    assert len(list(run.evidence_path.parent.iterdir())) == 3
    executed = {"".join(c["source"]): c.get("execution_count") for c in nb["cells"] if c["cell_type"] == "code"}
    assert executed["before = 1"] == 3 and executed["after = 1"] is None
    if ename == "ValueError":
        assert "".join(nb["cells"][run.error.cell]["source"]) == cell
    else:
        assert run.error.cell is None
    assert not alive(kernel.pid)


def test_kernels_start_with_the_environment_of_the_pool_not_a_later_one(monkeypatch):
    with KernelPool(size=1, environment={**os.environ, "KEPT": "yes"}) as pool:
        monkeypatch.setenv("PGPASSWORD", "set-by-a-cold-run")
        kernel = pool.take()
        environ = Path(f"/proc/{kernel.pid}/environ").read_bytes().split(b"\0")
        kernel.shutdown_kernel(now=True)
    assert b"KEPT=yes" in environ
    assert not any(v.startswith(b"PGPASSWORD=set-by") for v in environ)


def test_take_starts_a_replacement_and_close_leaves_no_kernel_processes():
    before, servers = kernel_pids(), fork_servers()
    pool = KernelPool(size=1)
    first = pool.take()
    second = pool.take()  # only the replacement started by the first take can serve this one
    assert first.pid != second.pid and {first.pid, second.pid} <= kernel_pids()
    for kernel in (first, second):
        kernel.shutdown_kernel(now=True)
    pool.close()  # the replacement started by the second take may still be starting
    assert kernel_pids() == before and fork_servers() == servers
    with pytest.raises(KernelUnavailable, match="closed"):
        pool.take()


def test_a_kernel_that_died_while_waiting_is_not_handed_out():
    before = kernel_pids()
    with KernelPool(size=1) as pool:
        until(lambda: pool.ready == 1)
        (waiting,) = kernel_pids() - before
        os.kill(waiting, signal.SIGKILL)
        until(lambda: dead(waiting))
        kernel = pool.take()
        assert kernel.pid != waiting and kernel.is_alive()
        kernel.shutdown_kernel(now=True)


def test_close_also_on_errors_and_failed_warm_ups_leave_no_kernel_processes(tmp_path):
    before, servers = kernel_pids(), fork_servers()
    broken = tmp_path / "runbooks"
    broken.mkdir()
    (broken / "__init__.py").write_text("raise ImportError('broken on purpose')\n")
    with (
        pytest.raises(KernelUnavailable, match="broken on purpose"),
        KernelPool(size=2, environment={**os.environ, "PYTHONPATH": str(tmp_path)}) as pool,
    ):
        pool.take()
    assert kernel_pids() == before

    with pytest.raises(RuntimeError), KernelPool(size=2):
        raise RuntimeError("the service failed")
    assert kernel_pids() == before and fork_servers() == servers


def test_a_kernel_slow_to_answer_at_start_is_waited_for_not_declared_dead():
    # On a loaded machine a starting kernel can miss heartbeats for over a second; it is alive while its process is.
    kernel = kernels.Kernel()
    kernel.start_kernel(env=dict(os.environ), extra_arguments=kernels.ARGUMENTS)
    pid = kernel.provisioner.process.pid
    os.kill(pid, signal.SIGSTOP)
    resume = threading.Timer(2.5, os.kill, (pid, signal.SIGCONT))
    resume.start()
    try:
        kernels.execute_silently(kernel, kernels.WARM_UP)
    finally:
        resume.join()
        kernel.shutdown_kernel(now=True)


def test_a_kernel_that_dies_while_starting_is_reported_as_dead_not_waited_for_until_the_limit():
    kernel = kernels.Kernel()
    kernel.start_kernel(env=dict(os.environ), extra_arguments=kernels.ARGUMENTS)
    process = kernel.provisioner.process
    process.send_signal(signal.SIGSTOP)  # it cannot answer: the request waits for it
    killing = threading.Timer(1.0, process.kill)
    killing.start()
    try:
        with pytest.raises(KernelUnavailable, match="the kernel died before it answered"):
            kernels.execute_silently(kernel, kernels.WARM_UP, timeout=600)
        client = kernel.client()
        client.start_channels()
        with pytest.raises(RuntimeError, match="Kernel died"):
            asyncio.run(client.wait_for_ready(timeout=600))
    finally:
        killing.join()
        kernel.shutdown_kernel(now=True)


def test_ready_means_the_first_cell_output_reaches_the_client():
    # The wait ends on the `idle` status of its kernel_info on IOPub, not after 0.2 s of silence there: IOPub is
    # joined by then, so nothing the first cell prints is lost to a subscription still being set up.
    async def first_output(kernel: kernels.Kernel) -> str:
        client = kernel.client()
        client.start_channels()
        await client.wait_for_ready(timeout=60)
        request = client.execute("print('first words')")
        while True:
            message = await client.get_iopub_msg(timeout=60)
            if message["parent_header"].get("msg_id") == request and message["msg_type"] == "stream":
                return message["content"]["text"]

    for _ in range(5):
        kernel = kernels.Kernel()
        kernel.start_kernel(env=dict(os.environ), extra_arguments=kernels.ARGUMENTS)
        try:
            assert asyncio.run(first_output(kernel)) == "first words\n"
        finally:
            kernel.shutdown_kernel(now=True)


def test_a_run_cut_off_mid_write_still_gets_failed_evidence_and_a_whole_chain(probe, tmp_path):
    folder = tmp_path / "cut"
    folder.mkdir()
    partial = folder / "20261126T100000Z-probe.ipynb"
    partial.write_text('{"cells": [{"cell_type": "code", "sou')  # the process died while papermill wrote it

    alert = {
        "labels": {"alertname": "X"},
        "annotations": {},
        "startsAt": "2026-11-26T09:59:00Z",
        "generatorURL": "",
        "fingerprint": "f" * 16,
        "groupKey": "{}",
    }
    run = runner.finish_interrupted(probe, probe.resolve({}), "cut", RunFiles.of(partial), alert=alert)

    record, notebook = read(run)
    assert record["status"] == "failed" and record["error"]["ename"] == runner.INTERRUPTED
    assert record["started_at"] == "2026-11-26T10:00:00Z" and record["alert"] == alert
    assert len(notebook["cells"]) == 4  # the input notebook stands in for the unreadable one
    assert chain.verify(folder).intact


def test_a_run_refused_before_it_starts_shuts_down_the_kernel_it_was_given(tmp_path):
    """`runbook run` hands its early kernel to runner.run; a run refused at once (a bad incident name) must not
    leave that kernel running (nor a warm kernel of `runbook serve`)."""
    from runbooks.errors import UsageError

    kernel = kernels.start(os.environ, warm=False)
    with pytest.raises(UsageError):
        runner.run(catalog.find("db-slow-queries"), {}, "../elsewhere", tmp_path, kernel=kernel)
    assert not kernel.is_alive()


def test_runbook_run_refused_leaves_no_kernel_behind(tmp_path):
    """The whole command: its kernel starts before the imports, and goes when the run is refused."""
    import psutil
    from click.testing import CliRunner

    from runbooks import cli

    before = {p.pid for p in psutil.Process().children(recursive=True)}
    result = CliRunner().invoke(
        cli.main, ["run", "db-slow-queries", "--incident", "../elsewhere", "--output-dir", str(tmp_path)]
    )
    assert result.exit_code != 0
    time.sleep(0.5)
    left = [p for p in psutil.Process().children(recursive=True) if p.pid not in before and p.is_running()]
    assert [p for p in left if p.status() != psutil.STATUS_ZOMBIE] == []


def test_pool_kernels_are_forked_each_in_a_session_of_its_own_go_with_their_fork_server_and_it_comes_back(
    tmp_path,
):
    with KernelPool(size=2) as pool:
        first, second = pool.take(), pool.take()
        (server,) = {psutil.Process(k.pid).ppid() for k in (first, second)}
        assert server in fork_servers() and first.pid != second.pid
        for n, kernel in enumerate((first, second)):
            assert os.getpgid(kernel.pid) == os.getsid(kernel.pid) == kernel.pid  # signals reach it, not the server
            kernels.execute_silently(
                kernel, f"open({str(tmp_path / str(n))!r}, 'w').write(repr(__import__('numpy').random.random()))"
            )
        assert (tmp_path / "0").read_text() != (tmp_path / "1").read_text()  # each its own random stream
        os.kill(server, signal.SIGKILL)  # as if the service died: its kernels do not linger
        until(lambda: not alive(first.pid) and not alive(second.pid), timeout=30)
        for kernel in (first, second):
            kernel.shutdown_kernel(now=True)
        # The service lives on (the server was killed for memory, say): another server forks its kernels. The
        # starts that were under way with the killed server fail, each reported once (a run then starts its own).
        for _ in range(4):
            with contextlib.suppress(KernelUnavailable):
                kernel = pool.take()
                break
        assert kernel.is_alive() and psutil.Process(kernel.pid).ppid() in fork_servers() - {server}
        kernel.shutdown_kernel(now=True)
