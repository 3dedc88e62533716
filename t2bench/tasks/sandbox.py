"""OS-level isolation for model-written programs: which runner runs them, and bubblewrap's
command line for the isolated one.

Two runners (:data:`RUNNERS`), chosen by the ``runner`` argument of
:func:`t2bench.tasks.code_exec.run_program` / ``pass_at_k`` or else by the environment variable
``T2BENCH_CODE_RUNNER`` (:data:`RUNNER_ENV`):

* ``bwrap`` (the default): each program runs under bubblewrap (Debian package ``bubblewrap``)
  in its own network, PID, IPC and UTS namespaces, with a read-only view of ``/usr``, the
  dynamic linker's files in ``/etc`` and the Python installation, a private size-limited
  ``/tmp`` as its only writable place, a fresh ``/proc`` and a minimal ``/dev``. When the
  sandbox's first process ends or is killed, the kernel kills everything else in its PID
  namespace. Started by root, the program runs as an unused unprivileged uid (a fresh one per
  program), so ``RLIMIT_NPROC`` binds (it never binds a process whose real uid is root, even
  one mapped to another uid inside a user namespace); started by another user, bubblewrap
  makes a user namespace and ``RLIMIT_NPROC`` counts the processes of that namespace only.
  (Only in that second case can bubblewrap forbid further user namespaces: ``--disable-userns``
  needs a user namespace of the sandbox's own, and as root that would map the program's uid
  back to root. A program started by root may therefore make user namespaces, as any
  unprivileged user may; they show it nothing more of the host.)
* ``unisolated``: the program runs as a plain child process with the Python-level guards of
  the bootstrap only; it must be chosen explicitly. It is no security boundary: it exists for
  machines without bubblewrap and for comparison (``python -m t2bench.bench.sandbox_escapes``).

When ``bwrap`` is chosen but cannot run (not installed, or the kernel refuses namespaces),
:func:`check_runner` raises :class:`SandboxUnavailable` naming the problem and both fixes;
there is no silent fallback.
"""

from __future__ import annotations

import functools
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from t2bench.errors import ConfigError, T2BenchError

__all__ = [
    "BWRAP",
    "RUNNERS",
    "RUNNER_ENV",
    "SANDBOX_CWD",
    "UNISOLATED",
    "BwrapPlan",
    "SandboxUnavailable",
    "bwrap_path",
    "check_runner",
    "clear_probe_cache",
    "drop_privileges_code",
    "host_paths_visible",
    "plan_bwrap",
    "runner_name",
]

RUNNER_ENV = "T2BENCH_CODE_RUNNER"
BWRAP, UNISOLATED = "bwrap", "unisolated"
RUNNERS = (BWRAP, UNISOLATED)
#: Where the program runs inside the sandbox: the private tmpfs, its only writable place.
SANDBOX_CWD = "/tmp"
#: System paths seen read-only: each is bound if it is a folder and re-created if it is a link
#: (``/bin -> usr/bin`` on merged-/usr systems). Nothing else of the host is visible except the
#: Python installation: not /home, /root, /run (sockets), /var, /srv, /opt, the repository or
#: the results.
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
#: Files of /etc that programs may need (the dynamic linker's cache, the time zone, the
#: alternatives links behind /usr/bin commands); not /etc/passwd, /etc/shadow or keys.
ETC_PATHS = (
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/alternatives",
)
#: Unprivileged uids for programs started by root: a fresh one per program from this range,
#: far above the ranges Debian gives users (1000-59999), nobody (65534) and the usual
#: /etc/subuid ranges (from 100000, 65536 per user).
UID_RANGE = (1_500_000_000, 2_000_000_000)


class SandboxUnavailable(T2BenchError, RuntimeError):
    """The isolated runner was chosen but cannot run on this machine."""


def runner_name(runner: str | None = None) -> str:
    """The chosen runner: ``runner``, else ``$T2BENCH_CODE_RUNNER``, else ``bwrap``."""
    name = runner or os.environ.get(RUNNER_ENV) or BWRAP
    if name not in RUNNERS:
        raise ConfigError(
            f"unknown code runner {name!r} (from "
            f"{'the runner argument' if runner else RUNNER_ENV}); valid: {', '.join(RUNNERS)}"
        )
    return name


def bwrap_path() -> str:
    """The ``bwrap`` executable on PATH (:func:`check_runner` has said it works)."""
    path = shutil.which("bwrap")
    if path is None:
        check_runner(BWRAP)  # raises, naming the problem and the fix
    return str(path)


def check_runner(runner: str | None = None) -> str:
    """:func:`runner_name`, after checking (once per process) that ``bwrap`` works here."""
    name = runner_name(runner)
    if name == BWRAP:
        problem = _bwrap_problem(shutil.which("bwrap"), os.geteuid() == 0)
        if problem:
            raise SandboxUnavailable(
                f"model-written code would run, but the bubblewrap sandbox cannot: {problem}. "
                "Fix: install bubblewrap (Debian/Ubuntu: `apt-get install bubblewrap`; the nox "
                "sessions install it when run as root) where the kernel, or the container, "
                "allows namespaces (Docker's default seccomp profile does not), or "
                f"opt into the runner without OS isolation explicitly with {RUNNER_ENV}="
                f"{UNISOLATED} (Python-level guards only, not a security boundary)."
            )
    return name


@dataclass(frozen=True)
class BwrapPlan:
    """One sandbox: the bubblewrap command line (before the program's own argv) and the uid
    the bootstrap switches to (``None``: bubblewrap's user namespace keeps the caller's uid)."""

    argv: tuple[str, ...]
    uid: int | None


def _python_paths() -> list[tuple[str, str]]:
    """(source, destination) binds that make this interpreter and its packages work inside:
    the real path of each prefix, and the prefix's own path where it is a link."""
    out: list[tuple[str, str]] = []
    exe_prefix = os.path.dirname(os.path.dirname(os.path.realpath(sys.executable)))
    for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, exe_prefix):
        real = os.path.realpath(p)
        if real in ("/", "/usr") or real.startswith("/usr/"):
            continue  # already seen through /usr; never bind the whole root
        for src, dest in ((real, real), (real, os.path.abspath(p))):
            if (src, dest) not in out:
                out.append((src, dest))
    return out


def plan_bwrap(
    bwrap: str, *, scratch_bytes: int, info_fd: int | None = None, root: bool | None = None
) -> BwrapPlan:
    """The bubblewrap command line for one program (see the module docstring).

    ``root`` (default: whether this process runs as root) picks the uid strategy: as root, no
    user namespace and a fresh unprivileged uid that the bootstrap switches to with the only
    two capabilities kept (CAP_SETUID, CAP_SETGID); otherwise a user namespace (unprivileged
    bubblewrap) in which no further user namespace may be made.
    """
    root = os.geteuid() == 0 if root is None else root
    argv = [bwrap, "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts"]
    argv += ["--unshare-cgroup-try", "--die-with-parent", "--new-session"]
    if root:
        uid: int | None = UID_RANGE[0] + secrets.randbelow(UID_RANGE[1] - UID_RANGE[0])
        argv += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        uid = None
        argv += ["--unshare-user", "--disable-userns"]
    for path in SYSTEM_PATHS:
        if os.path.islink(path):
            argv += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            argv += ["--ro-bind", path, path]
    argv += ["--perms", "0755", "--dir", "/etc"]  # else a 0700 root folder (see below)
    for path in ETC_PATHS:
        argv += ["--ro-bind-try", path, path]
    made: set[str] = set()
    for src, dest in _python_paths():
        # bubblewrap would create the missing parents of ``dest`` as 0700 root folders that
        # the sandbox's own uid cannot enter; create them world-searchable first
        for parent in reversed(Path(dest).parents[:-1]):
            if str(parent) not in made:
                made.add(str(parent))
                argv += ["--perms", "0755", "--dir", str(parent)]
        argv += ["--ro-bind", src, dest]
    argv += ["--proc", "/proc", "--dev", "/dev"]
    size = str(int(scratch_bytes))
    argv += ["--perms", "1777", "--size", size, "--tmpfs", SANDBOX_CWD]
    argv += ["--perms", "1777", "--size", size, "--tmpfs", "/dev/shm"]
    if info_fd is not None:
        argv += ["--info-fd", str(info_fd)]
    argv += ["--chdir", SANDBOX_CWD]
    return BwrapPlan(tuple(argv), uid)


def drop_privileges_code(uid: int | None) -> str:
    """Python lines that switch a root process to ``uid`` (and its gid) for good, or exit 5;
    nothing when ``uid`` is ``None``. Shared by the bootstrap and the probe."""
    if uid is None:
        return ""
    return (
        f"os.setgroups([]); os.setresgid({uid}, {uid}, {uid}); os.setresuid({uid}, {uid}, {uid})\n"
        f"if os.getresuid() != ({uid},) * 3 or os.getresgid() != ({uid},) * 3:\n"
        "    os._exit(5)\n"
    )


@functools.cache
def _bwrap_problem(bwrap: str | None, root: bool) -> str | None:
    """Why bubblewrap cannot run a program here, or ``None``: runs ``print('ok')`` through the
    same command line as real programs (cached: once per process)."""
    if bwrap is None:
        return "the `bwrap` executable is not on PATH"
    plan = plan_bwrap(bwrap, scratch_bytes=1 << 20, root=root)
    code = "import os\n" + drop_privileges_code(plan.uid) + "print('ok', os.getuid())\n"
    try:
        done = subprocess.run(
            [*plan.argv, sys.executable, "-I", "-S", "-c", code],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"running {bwrap} failed ({exc})"
    if done.returncode != 0 or not done.stdout.startswith("ok"):
        detail = (done.stderr or done.stdout).strip().splitlines()
        last = detail[-1].rstrip(".") if detail else "no output"
        return f"{bwrap} exited with {done.returncode}: {last}"
    if plan.uid is not None and done.stdout.split()[1:] != [str(plan.uid)]:
        return f"the program inside {bwrap} did not run as uid {plan.uid}: {done.stdout.strip()}"
    return None


def clear_probe_cache() -> None:
    """Forget the cached probe (tests that change PATH or what is installed)."""
    _bwrap_problem.cache_clear()


def host_paths_visible(plan: BwrapPlan) -> Sequence[str]:
    """The host paths a program under ``plan`` can read (for records and the README)."""
    argv = list(plan.argv)
    return [argv[i + 2] for i, a in enumerate(argv) if a in ("--ro-bind", "--ro-bind-try")]
