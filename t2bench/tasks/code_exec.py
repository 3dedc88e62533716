"""Run model-written Python against unit tests in a separate process, and pass@k.

This replaces HF ``evaluate``'s ``code_eval`` metric (which upstream ``humaneval`` / ``mbpp``
load from the hub) for the offline tasks. It runs only after an explicit opt-in, the same
two switches as upstream: the environment variable ``HF_ALLOW_CODE_EVAL=1`` (checked here)
and lm-eval's ``--confirm_run_unsafe_code`` (the task YAMLs declare ``unsafe_code: true``).

Each program (candidate + ``"\\n"`` + test code, as ``code_eval`` builds it) runs as:

* a fresh ``python -I`` process (isolated mode: no ``PYTHON*`` variables, no user site, no
  current directory on ``sys.path``), in its own session/process group, in a new temporary
  working directory that is deleted afterwards, with stdin closed and a minimal environment
  (no proxy variables, tokens or credentials; ``HOME`` and ``TMPDIR`` point to the temp dir);
* under limits set by a small trusted bootstrap before any candidate code runs:
  ``RLIMIT_AS`` (address space, 1 GiB by default), ``RLIMIT_CPU``, ``RLIMIT_FSIZE`` (largest
  written file, which also caps captured output) and no core dumps. The bootstrap sets them
  rather than a ``preexec_fn``: ``preexec_fn`` is documented as unsafe when the parent has
  threads, and lm-eval runs model threads;
* with a wall-time limit (10 s by default) enforced by the parent, which then kills the
  whole process group;
* with the network blocked *best effort*: ``socket.socket`` (and ``_socket.socket``) become a
  class whose constructor raises, and name resolution / connection helpers raise;
* with destructive helpers disabled best effort, like ``code_eval``'s ``reliability_guard``
  (``os.system``, ``os.kill``, ``os.remove``, ``shutil.rmtree``, ``subprocess.Popen``, ...).

A program passes only if it runs to the end: exit status 0 *and* a random token written by
the bootstrap after the program returned (so ``exit()``, ``sys.exit(0)`` or ``os._exit(0)``
before the tests finish count as failures, as in ``code_eval``). Output is captured to
files and truncated.

Limits, honestly: this is not a security boundary. The child runs as the same user with
the same file-system view, there is no kernel-level network or file-system isolation (no
namespaces, seccomp or containers), ``RLIMIT_NPROC`` is not used (it does not bind root),
and Python-level guards can be undone by determined code (e.g. through ``ctypes``). It is
meant for the non-adversarial output of a model under evaluation; run untrusted code in a
container or VM.

Timing differs from ``code_eval``, whose default timeout is 3 s of in-process ``exec``;
here 10 s of wall time include interpreter start-up (~50 ms).
"""

from __future__ import annotations

import math
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from t2bench.errors import T2BenchError

__all__ = [
    "ENV_FLAG",
    "CodeExecutionNotAllowed",
    "ExecResult",
    "Limits",
    "code_execution_allowed",
    "estimate_pass_at_k",
    "pass_at_k",
    "require_opt_in",
    "run_program",
]

ENV_FLAG = "HF_ALLOW_CODE_EVAL"
_OK_MARKER = ".t2bench_ok"
_STDOUT, _STDERR = ".stdout", ".stderr"


class CodeExecutionNotAllowed(T2BenchError, PermissionError):
    """Model-generated code would run, but the user has not opted in."""


def code_execution_allowed() -> bool:
    """True when ``HF_ALLOW_CODE_EVAL=1`` is set (the upstream opt-in variable)."""
    return os.environ.get(ENV_FLAG) == "1"


def require_opt_in() -> None:
    """Raise :class:`CodeExecutionNotAllowed` unless ``HF_ALLOW_CODE_EVAL=1``."""
    if not code_execution_allowed():
        raise CodeExecutionNotAllowed(
            "the humaneval/mbpp tasks execute code written by the model. Opt in explicitly, as "
            f"for upstream lm-eval: set the environment variable {ENV_FLAG}=1 and pass "
            "--confirm_run_unsafe_code to lm_eval. The code runs in a separate `python -I` "
            "process with time, memory and output limits and best-effort network blocking, "
            "which is not a security sandbox (see t2bench/tasks/code_exec.py)."
        )


@dataclass(frozen=True)
class Limits:
    """Resource limits for one program."""

    timeout_s: float = 10.0
    memory_bytes: int = 1 << 30
    file_bytes: int = 16 << 20
    output_chars: int = 4000


@dataclass(frozen=True)
class ExecResult:
    """Outcome of one program: ``status`` is ``passed``, ``failed`` or ``timeout``."""

    status: str
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float

    @property
    def passed(self) -> bool:
        return self.status == "passed"


# Trusted code run in the child before the candidate; formatted with the token and limits.
_BOOTSTRAP = """\
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

_exit, _open, _write, _close = os._exit, os.open, os.write, os.close
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
try:  # O_EXCL: never write through a file or link the program left at this name
    _fd = _open({marker!r}, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    _write(_fd, {token!r}.encode())
    _close(_fd)
except OSError:
    _exit(4)
_exit(0)
"""


def _child_env(workdir: str) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": workdir,
        "TMPDIR": workdir,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
    }
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = "1"
    return env


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _read_marker(path: Path) -> str:
    """The success token, read without following links and without reading much."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return ""
    try:
        return os.read(fd, 64).decode("ascii", errors="replace")
    except OSError:
        return ""
    finally:
        os.close(fd)


def _read_head(fh: BinaryIO, chars: int) -> str:
    """Start of a captured stream, read through the parent's own handle (the program cannot
    swap the file for a link or pipe)."""
    fh.seek(0)
    text = fh.read(chars * 4 + 4).decode("utf-8", errors="replace")
    return text if len(text) <= chars else text[:chars] + "\n...[truncated]"


def run_program(program: str, limits: Limits | None = None) -> ExecResult:
    """Run ``program`` in a fresh sandboxed ``python -I`` process (see module docstring)."""
    require_opt_in()
    limits = limits or Limits()
    token = secrets.token_hex(16)
    bootstrap = _BOOTSTRAP.format(
        memory=int(limits.memory_bytes),
        cpu=max(1, math.ceil(limits.timeout_s)) + 1,
        fsize=int(limits.file_bytes),
        marker=_OK_MARKER,
        token=token,
    )
    with tempfile.TemporaryDirectory(prefix="t2bench-exec-", ignore_cleanup_errors=True) as tmp:
        work = Path(tmp)
        (work / "candidate.py").write_text(program, encoding="utf-8")
        start = time.monotonic()
        with open(work / _STDOUT, "w+b") as out, open(work / _STDERR, "w+b") as err:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-c", bootstrap],
                cwd=tmp,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=_child_env(tmp),
                start_new_session=True,
                close_fds=True,
            )
            try:
                returncode: int | None = proc.wait(timeout=limits.timeout_s)
                timed_out = False
            except subprocess.TimeoutExpired:
                timed_out = True
                _kill_group(proc.pid)
                proc.wait()
                returncode = None
            _kill_group(proc.pid)  # anything the program left running in its group
            seconds = time.monotonic() - start
            stdout = _read_head(out, limits.output_chars)
            stderr = _read_head(err, limits.output_chars)
        ok = _read_marker(work / _OK_MARKER) == token
        status = "timeout" if timed_out else ("passed" if returncode == 0 and ok else "failed")
        return ExecResult(status, returncode, stdout, stderr, seconds)


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
) -> dict[str, float]:
    """Mean pass@k over problems, like ``code_eval``'s first return value.

    ``references[i]`` is the test code of problem ``i`` and ``predictions[i]`` its candidate
    programs (a single string counts as one). Returns ``{"pass@<k>": value}`` for each ``k``
    not larger than every problem's number of candidates (as ``code_eval`` does).
    """
    require_opt_in()
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
            outcomes = list(pool.map(lambda job: run_program(job[1], limits), jobs))
    else:
        outcomes = [run_program(program, limits) for _, program in jobs]
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
