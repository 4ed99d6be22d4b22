"""A kernel fork server: one process that has done the kernel's imports and the runbook library's, and forks a
fresh kernel process for each run.

A kernel started from scratch costs about a second of CPU (Python, IPython, pandas, matplotlib, the library) and
~115 MiB of memory of its own. A forked one shares the server's pages copy-on-write: it is ready in tens of
milliseconds and costs only the pages it writes. Each forked kernel is still a process of its own, serving one
run and shut down after it, so nothing one run leaves behind reaches the next: the server itself never runs a
cell, starts no thread and opens no socket before it forks.

Protocol, one JSON line each way over the server's stdin/stdout: the parent sends {"argv": [...], "env": {...},
"cwd": "..."} (argv as given to the kernel: runbooks.kernels.KERNEL); the server answers {"pid": N} once the child
leads a session of its own (so its process group is its own to signal), or {"error": "..."}. The first answer
comes only after the imports, so the first request also waits for the server to be ready. The server exits when
its stdin closes, and each kernel it forked exits when it does. Forked kernels are reaped as they exit (SIGCHLD
ignored): none is left a zombie; the parent watches each through a pidfd (kernels.Forked).
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import signal
import sys
import threading

# What a kernel imports as it starts (IPython, zmq, tornado, its history's sqlite3): loaded once here,
# shared by every kernel forked, instead of copied into each. Not matplotlib's inline backend: imported where no
# IPython shell runs, it would never register its figure formatter (figures would lose their images).
KERNEL_MODULES = (
    "ipykernel.kernelapp",
    "ipykernel.ipkernel",
    "ipykernel.zmqshell",
    "ipykernel.debugger",
    "IPython.core.history",
    "sqlite3",
)
INLINE = "module://matplotlib_inline.backend_inline"  # what ipykernel would set before the notebook's imports


def main() -> None:
    if sys.path and sys.path[0] in ("", os.getcwd()):
        del sys.path[0]  # as ipykernel_launcher does: the kernel adds its working directory back (init_path)
    sys.argv = sys.argv[:1]
    os.environ.setdefault("MPLBACKEND", INLINE)  # before matplotlib is imported, as in a kernel
    sys.modules["debugpy"] = None  # type: ignore[assignment]  # kernels for runs have no debugger (kernels.LAUNCH)
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # whatever an import prints goes to stderr, never into the replies
    broken = None
    try:
        from runbooks import registry

        for module in (*KERNEL_MODULES, *registry.warm_up_modules()):
            importlib.import_module(module)
    except Exception as e:  # every request is answered with why (as a kernel whose warm-up failed would say)
        broken = f"{type(e).__name__}: {e}"
    gc.collect()
    gc.freeze()  # what is loaded stays out of the collector: a child's collections do not copy its pages
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # forked kernels are reaped as they exit
    for line in sys.stdin:
        reply: dict[str, int | str]
        try:
            if broken:
                raise RuntimeError(f"the kernel's imports failed: {broken}")
            request = json.loads(line)
            reply = {"pid": _fork(request["argv"], request["env"], request["cwd"], replies.fileno())}
        except Exception as e:  # a bad request or a failed fork: said, and the server goes on
            reply = {"error": f"{type(e).__name__}: {e}"}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


def _fork(argv: list[str], env: dict[str, str], cwd: str | None, replies: int) -> int:
    if threading.active_count() != 1:
        raise RuntimeError("the fork server runs a thread: forking now is not safe")
    ready, told = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(ready)
            _become_kernel(argv, env, cwd, told, replies)
        finally:
            os._exit(1)  # the kernel returned or failed: this process never goes back to serving
    os.close(told)
    try:
        if os.read(ready, 1) != b"1":
            raise RuntimeError(f"the forked kernel {pid} died before it was ready")
    finally:
        os.close(ready)
    return pid


def _become_kernel(argv: list[str], env: dict[str, str], cwd: str | None, told: int, replies: int) -> None:
    os.setsid()  # its own process group: signals for the kernel reach its subprocesses, never the server
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # its own subprocesses are waited for as usual
    os.write(told, b"1")
    os.close(told)
    os.close(replies)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    sys.stdin = open(os.devnull)  # noqa: SIM115  the kernel's stdin: not the requests
    os.environ.clear()
    os.environ.update(env)
    os.environ.setdefault("MPLBACKEND", INLINE)
    if cwd:
        os.chdir(cwd)
    if "numpy" in sys.modules:  # Python's own `random` reseeds itself in a forked child; numpy's does not
        sys.modules["numpy"].random.seed()
    from ipykernel import kernelapp

    # Its parent is the server (the trait's default was read from the server's environment at import): when the
    # server goes (it does when the service that started it dies) the kernel exits rather than linger.
    argv = [*argv, f"--IPKernelApp.parent_handle={os.getppid()}"]
    sys.argv = [sys.argv[0], *argv]
    kernelapp.launch_new_instance(argv=argv)
    os._exit(0)


if __name__ == "__main__":
    main()
