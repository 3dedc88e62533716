"""Run model-written Python against unit tests in a separate process, and pass@k.

This replaces HF ``evaluate``'s ``code_eval`` metric (which upstream ``humaneval`` / ``mbpp``
load from the hub) for the offline tasks. It runs only after an explicit opt-in, the same
two switches as upstream: the environment variable ``HF_ALLOW_CODE_EVAL=1`` (checked here)
and lm-eval's ``--confirm_run_unsafe_code`` (the task YAMLs declare ``unsafe_code: true``).

Each program (candidate + ``"\\n"`` + test code, as ``code_eval`` builds it) runs in a fresh
``python -I -S`` process (isolated mode: no ``PYTHON*`` variables, no user site, no current
directory on ``sys.path``; ``-S``: the bootstrap puts this interpreter's package folders on
``sys.path`` without running their ``.pth`` files) with stdin closed and a minimal environment
(no proxy variables, tokens or credentials), under one of two runners
(:mod:`t2bench.tasks.sandbox`; the ``runner`` argument, else ``T2BENCH_CODE_RUNNER``, else
``bwrap``):

* ``bwrap`` (default): OS-level isolation by bubblewrap. No network (own network namespace),
  own PID namespace (nothing the program starts outlives it), a read-only view of ``/usr``,
  the dynamic linker's ``/etc`` files and the Python installation only, a private
  ``/tmp`` tmpfs of ``Limits.scratch_bytes`` as the only writable place (also its working
  directory), an unprivileged uid, and at most ``Limits.max_processes`` processes and
  threads (``RLIMIT_NPROC``). If bubblewrap cannot run, code execution raises
  :class:`~t2bench.tasks.sandbox.SandboxUnavailable` (install it, or opt into ``unisolated``).
  Not guaranteed: the program can read every world-readable file it is shown (``/usr``, the
  Python installation); memory is limited per process (``max_processes`` × ``memory_bytes``
  in all); all system calls are allowed (no seccomp) and, started by root, the program may
  make user namespaces of its own, so a kernel bug can break out.
* ``unisolated`` (explicit opt-in only): a plain child process as the same user with the
  same file-system view and network, in a temporary working directory that is deleted
  afterwards and its own process group; the Python-level guards below are all it has. Not a
  security boundary: ``python -m t2bench.bench.sandbox_escapes`` records how it is escaped.

In both, a small trusted bootstrap sets limits before any candidate code runs:
``RLIMIT_AS`` (address space, 1 GiB by default, per process), ``RLIMIT_CPU``,
``RLIMIT_FSIZE`` (largest written file, which also caps captured output) and no core dumps
(plus ``RLIMIT_NPROC`` and the uid switch under ``bwrap``). It sets them rather than a
``preexec_fn``: ``preexec_fn`` is documented as unsafe when the parent has threads, and
lm-eval runs model threads. The bootstrap also applies ``code_eval``-style guards, kept under
both runners so that a program passes or fails the same way in each: ``socket`` /
``_socket`` constructors and name resolution raise, destructive helpers (``os.system``,
``os.kill``, ``os.fork``, ``os.remove``, ``shutil.rmtree``, ``subprocess.Popen``, ...) raise.
They are not what contains a program under ``bwrap``: aliases such as ``posix.fork`` or
``_socket.SocketType`` undo them.

The parent enforces a wall-time limit (10 s by default) and then kills the whole sandbox
(``bwrap``: its PID namespace; ``unisolated``: the process group only).

A program passes only if it runs to the end: exit status 0 *and* a random token written by
the bootstrap, after the program returned, to a file descriptor the parent opened (so
``exit()``, ``sys.exit(0)`` or ``os._exit(0)`` before the tests finish count as failures,
as in ``code_eval``). Output is captured to files and truncated. :class:`ExecResult` names
the runner; :func:`runners_used` lists the runners this process has used, for records.

Timing differs from ``code_eval``, whose default timeout is 3 s of in-process ``exec``;
here 10 s of wall time include start-up: a trivial program took a median 0.18-0.23 s
unisolated and 0.26-0.28 s under bwrap (10 runs each, a loaded 2-core machine).
"""

from __future__ import annotations

import json
import math
import os
import secrets
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from t2bench.errors import T2BenchError
from t2bench.tasks import sandbox
from t2bench.tasks.sandbox import RUNNER_ENV, RUNNERS, SandboxUnavailable

__all__ = [
    "ENV_FLAG",
    "RUNNERS",
    "RUNNER_ENV",
    "CodeExecutionNotAllowed",
    "ExecResult",
    "Limits",
    "SandboxUnavailable",
    "code_execution_allowed",
    "code_runner",
    "estimate_pass_at_k",
    "pass_at_k",
    "require_opt_in",
    "run_program",
    "runners_used",
]

ENV_FLAG = "HF_ALLOW_CODE_EVAL"
_STDOUT, _STDERR = ".stdout", ".stderr"
#: How long a killed sandbox may take to tear down before its process group is killed too.
_TEARDOWN_S = 30.0
#: The first line of every bootstrap: tests and the escape bench find leftover sandbox
#: processes by it on command lines.
BOOTSTRAP_SIGNATURE = "# t2bench code sandbox bootstrap"

_used: set[str] = set()
_used_lock = threading.Lock()


class CodeExecutionNotAllowed(T2BenchError, PermissionError):
    """Model-generated code would run, but the user has not opted in."""


def code_execution_allowed() -> bool:
    """True when ``HF_ALLOW_CODE_EVAL=1`` is set (the upstream opt-in variable)."""
    return os.environ.get(ENV_FLAG) == "1"


def require_opt_in(runner: str | None = None) -> str:
    """Raise :class:`CodeExecutionNotAllowed` unless ``HF_ALLOW_CODE_EVAL=1``, and
    :class:`SandboxUnavailable` when the chosen runner cannot run here; return the runner.

    Called before generation starts (task loaders, reward checks), so that neither problem
    surfaces only after the model has generated everything."""
    if not code_execution_allowed():
        raise CodeExecutionNotAllowed(
            "the humaneval/mbpp tasks execute code written by the model. Opt in explicitly, as "
            f"for upstream lm-eval: set the environment variable {ENV_FLAG}=1 and pass "
            "--confirm_run_unsafe_code to lm_eval. Each program runs in a separate `python -I` "
            "process with time, memory, process and output limits, by default inside a "
            "bubblewrap sandbox without network and with a read-only file system view (see "
            "t2bench/tasks/code_exec.py and the README's 'Running model-written code')."
        )
    return sandbox.check_runner(runner)


def code_runner(runner: str | None = None) -> str:
    """The runner programs would run under now (``runner``, else ``$T2BENCH_CODE_RUNNER``, else
    ``bwrap``), checked to work here; for records written before any program runs."""
    return sandbox.check_runner(runner)


def runners_used() -> list[str]:
    """The runners :func:`run_program` has used in this process so far (sorted)."""
    with _used_lock:
        return sorted(_used)


@dataclass(frozen=True)
class Limits:
    """Resource limits for one program. ``max_processes`` (processes and threads together,
    ``RLIMIT_NPROC``) and ``scratch_bytes`` (size of the private ``/tmp`` and of ``/dev/shm``,
    each) apply under the ``bwrap`` runner only."""

    timeout_s: float = 10.0
    memory_bytes: int = 1 << 30
    file_bytes: int = 16 << 20
    output_chars: int = 4000
    max_processes: int = 16
    scratch_bytes: int = 64 << 20


@dataclass(frozen=True)
class ExecResult:
    """Outcome of one program: ``status`` is ``passed``, ``failed`` or ``timeout``; ``runner``
    is the runner that ran it (``bwrap`` or ``unisolated``)."""

    status: str
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float
    runner: str

    @property
    def passed(self) -> bool:
        return self.status == "passed"


# Trusted code run in the child before the candidate; formatted with the token and limits.
_BOOTSTRAP = (
    BOOTSTRAP_SIGNATURE
    + """
import os, resource, sys

def _cap(which, value):
    soft, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(which, (value, value))

_cap(resource.RLIMIT_AS, {memory})
_cap(resource.RLIMIT_CPU, {cpu})
_cap(resource.RLIMIT_FSIZE, {fsize})
_cap(resource.RLIMIT_CORE, 0)
_nproc = {nproc}
if _nproc is not None:
    _cap(resource.RLIMIT_NPROC, _nproc)
{drop_privileges}
import site
for _dir in {site_dirs!r}:  # the parent's package folders, without running their .pth files
    if _dir not in sys.path:
        sys.path.append(_dir)
site.setquit(); site.setcopyright(); site.sethelper()  # exit(), quit(), help() as usual

import _socket, socket, runpy, shutil, subprocess, traceback

def _no_network(*args, **kwargs):
    raise OSError("network access is disabled in the t2bench code sandbox")

class _NoNetworkSocket(socket.socket):
    def __init__(self, *args, **kwargs):
        _no_network()

for _mod in (socket, _socket):
    _mod.socket = _NoNetworkSocket
    for _name in ("create_connection", "create_server", "socketpair", "fromfd",
                  "getaddrinfo", "gethostbyname", "gethostbyname_ex", "gethostbyaddr"):
        if hasattr(_mod, _name):
            setattr(_mod, _name, _no_network)

def _disabled(*args, **kwargs):
    raise OSError("this function is disabled in the t2bench code sandbox")

for _mod, _names in ((os, "system kill killpg fork forkpty remove unlink rmdir removedirs "
                          "rename renames replace truncate chown setuid"),
                     (shutil, "rmtree move chown"), (subprocess, "Popen")):
    for _name in _names.split():
        if hasattr(_mod, _name):
            setattr(_mod, _name, _disabled)

_exit, _write, _close = os._exit, os.write, os.close
sys.argv = ["candidate.py"]
try:
    runpy.run_path("candidate.py", run_name="__candidate__")
except SystemExit as exc:
    sys.stderr.write("SystemExit(%r) before the program finished\\n" % (exc.code,))
    sys.stderr.flush()
    _exit(3)
except BaseException:
    traceback.print_exc()
    sys.stderr.flush()
    _exit(1)
sys.stdout.flush()
sys.stderr.flush()
try:  # the parent's descriptor: the token says the program ran to its end
    _write({marker_fd}, {token!r}.encode())
    _close({marker_fd})
except OSError:
    _exit(4)
_exit(0)
"""
)


def _child_env(workdir: str) -> dict[str, str]:
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": workdir,
        "TMPDIR": workdir,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
    }
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = "1"
    return env


def _site_dirs() -> list[str]:
    """This interpreter's package folders. Programs start with ``-S`` (no ``site``: the
    ``.pth`` files of editable installs would import t2bench from a checkout the sandbox
    does not show) and the bootstrap puts these folders on ``sys.path`` instead."""
    return [p for p in sys.path if os.path.basename(p) in ("site-packages", "dist-packages")]


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _read_head(fh: BinaryIO, chars: int) -> str:
    """Start of a captured stream, read through the parent's own handle (the program cannot
    swap the file for a link or pipe)."""
    fh.seek(0)
    text = fh.read(chars * 4 + 4).decode("utf-8", errors="replace")
    return text if len(text) <= chars else text[:chars] + "\n...[truncated]"


def _sandbox_init_pidfd(info_r: int, timeout_s: float) -> int | None:
    """A pidfd of the sandbox's PID 1, from bubblewrap's ``--info-fd`` JSON (``None`` if
    bubblewrap ended before starting it). Killing that process kills the whole namespace."""
    ready, _, _ = select.select([info_r], [], [], timeout_s)
    if not ready:
        return None
    data = b""
    while chunk := os.read(info_r, 4096):
        data += chunk
        if b"}" in data:
            break
    try:
        return os.pidfd_open(int(json.loads(data)["child-pid"]))
    except (ValueError, KeyError, OSError):
        return None


def _wait(proc: subprocess.Popen, timeout_s: float, pidfd: int | None) -> int | None:
    """Wait for ``proc``; ``None`` when it timed out and was killed.

    Under bubblewrap (``pidfd`` of the sandbox's PID 1 given) the kill goes to that PID 1:
    the kernel then kills every process of its namespace and lets PID 1 finish exiting only
    once they are all gone, and only then can the outer bubblewrap (``proc``) reap it and
    exit. Waiting for ``proc`` therefore means that nothing of the sandbox runs any more.
    (Killing the outer bubblewrap first would return at once while the namespace is still
    being torn down.) Its process group is killed only if that wait itself times out."""
    try:
        return proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        pass
    if pidfd is not None:
        try:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            proc.wait(timeout=_TEARDOWN_S)
            return None
        except (OSError, subprocess.TimeoutExpired):
            pass
    _kill_group(proc.pid)
    proc.wait()
    return None


def run_program(
    program: str, limits: Limits | None = None, runner: str | None = None
) -> ExecResult:
    """Run ``program`` in a fresh ``python -I -S`` process under ``runner`` (see the module
    docstring)."""
    runner = require_opt_in(runner)
    limits = limits or Limits()
    token = secrets.token_hex(16)
    with (
        tempfile.TemporaryDirectory(prefix="t2bench-exec-", ignore_cleanup_errors=True) as tmp,
        # the token's file has no name (the program cannot plant a link or file there); the
        # program only gets the descriptor, and only the token proves it ran to its end
        tempfile.TemporaryFile() as marker,
    ):
        work = Path(tmp)
        (work / "candidate.py").write_text(program, encoding="utf-8")
        os.chmod(work / "candidate.py", 0o644)  # readable by the sandbox's own uid
        with open(work / _STDOUT, "w+b") as out, open(work / _STDERR, "w+b") as err:
            returncode, seconds = _execute(runner, work, limits, token, marker.fileno(), out, err)
            stdout = _read_head(out, limits.output_chars)
            stderr = _read_head(err, limits.output_chars)
        os.lseek(marker.fileno(), 0, os.SEEK_SET)
        ok = os.read(marker.fileno(), 64).decode("ascii", errors="replace") == token
    with _used_lock:
        _used.add(runner)
    timed_out = returncode is None
    status = "timeout" if timed_out else ("passed" if returncode == 0 and ok else "failed")
    return ExecResult(status, returncode, stdout, stderr, seconds, runner)


def _execute(
    runner: str,
    work: Path,
    limits: Limits,
    token: str,
    marker_fd: int,
    out: BinaryIO,
    err: BinaryIO,
) -> tuple[int | None, float]:
    """Start the bootstrap on ``work/candidate.py`` under ``runner`` and wait for it (see
    :func:`_wait`); the exit status (``None``: timed out) and the seconds it took."""
    isolated = runner == sandbox.BWRAP
    # bubblewrap reports the sandbox's PID 1 on this pipe (--info-fd)
    info_r, info_w = os.pipe() if isolated else (None, None)
    try:
        plan = None
        if isolated:
            plan = sandbox.plan_bwrap(
                sandbox.bwrap_path(), scratch_bytes=limits.scratch_bytes, info_fd=info_w
            )
        bootstrap = _BOOTSTRAP.format(
            memory=int(limits.memory_bytes),
            cpu=max(1, math.ceil(limits.timeout_s)) + 1,
            fsize=int(limits.file_bytes),
            nproc=int(limits.max_processes) if isolated else None,
            drop_privileges=sandbox.drop_privileges_code(plan.uid if plan else None),
            site_dirs=_site_dirs(),
            marker_fd=marker_fd,
            token=token,
        )
        python = [sys.executable, "-I", "-S", "-c", bootstrap]
        if plan is not None:
            # the candidate file, read-only, in the sandbox's private working directory
            bind = ["--ro-bind", str(work / "candidate.py"), f"{sandbox.SANDBOX_CWD}/candidate.py"]
            argv, pass_fds = [*plan.argv, *bind, *python], (marker_fd, info_w)
            env = _child_env(sandbox.SANDBOX_CWD)
        else:
            argv, pass_fds, env = python, (marker_fd,), _child_env(str(work))
        start = time.monotonic()
        proc = subprocess.Popen(
            argv,
            cwd=work,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=env,
            start_new_session=True,
            close_fds=True,
            pass_fds=pass_fds,
        )
        pidfd = None
        if info_r is not None:
            os.close(info_w)
            info_w = None
            pidfd = _sandbox_init_pidfd(info_r, limits.timeout_s)
        try:
            left = limits.timeout_s - (time.monotonic() - start)
            returncode = _wait(proc, max(left, 0.0), pidfd)
        finally:
            if pidfd is not None:
                os.close(pidfd)
        _kill_group(proc.pid)  # anything the program left running in its group
        return returncode, time.monotonic() - start
    finally:
        for fd in (info_r, info_w):
            if fd is not None:
                os.close(fd)


def estimate_pass_at_k(n: int, correct: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples of which ``correct`` pass (Chen et al. 2021)."""
    if not 0 <= correct <= n or k < 1:
        raise ValueError(f"invalid pass@k arguments n={n}, correct={correct}, k={k}")
    if n - correct < k:
        return 1.0
    return 1.0 - math.comb(n - correct, k) / math.comb(n, k)


def pass_at_k(
    references: Sequence[str],
    predictions: Sequence[Sequence[str] | str],
    k: int | Iterable[int] = (1,),
    limits: Limits | None = None,
    max_workers: int | None = None,
    runner: str | None = None,
) -> dict[str, float]:
    """Mean pass@k over problems, like ``code_eval``'s first return value.

    ``references[i]`` is the test code of problem ``i`` and ``predictions[i]`` its candidate
    programs (a single string counts as one). Returns ``{"pass@<k>": value}`` for each ``k``
    not larger than every problem's number of candidates (as ``code_eval`` does). ``runner``
    as in :func:`run_program`.
    """
    runner = require_opt_in(runner)
    if len(references) != len(predictions):
        raise ValueError(f"{len(references)} references but {len(predictions)} predictions")
    ks = [k] if isinstance(k, int) else list(k)
    candidates = [[p] if isinstance(p, str) else list(p) for p in predictions]
    jobs = [
        (i, c + "\n" + ref)
        for i, (ref, cs) in enumerate(zip(references, candidates, strict=True))
        for c in cs
    ]
    workers = max_workers or min(4, os.cpu_count() or 1)
    if len(jobs) > 1 and workers > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            outcomes = list(pool.map(lambda job: run_program(job[1], limits, runner), jobs))
    else:
        outcomes = [run_program(program, limits, runner) for _, program in jobs]
    passed = [0] * len(references)
    for (i, _), result in zip(jobs, outcomes, strict=True):
        passed[i] += result.passed
    totals = [len(cs) for cs in candidates]
    out: dict[str, float] = {}
    for kk in ks:
        if totals and all(n >= kk for n in totals):
            scores = [estimate_pass_at_k(n, c, kk) for n, c in zip(totals, passed, strict=True)]
            out[f"pass@{kk}"] = float(sum(scores) / len(scores))
    return out
