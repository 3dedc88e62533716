"""Hostile programs against the code runners: which escapes each runner contains.

    python -m t2bench.bench.sandbox_escapes [--only NAME,...] [--runners bwrap,unisolated]
        [--out results/bench] [--no-write]

:data:`HOSTILE` holds one program per escape of issue #21 (a ``_socket.SocketType``
connection to a loopback listener, 50 ``posix.fork`` children, a ``posix.fork`` +
``os.setsid`` child that writes a file after the kill, ``os.posix_spawn``, writes outside the
temporary folder, reads of host files) plus a Unix-socket connection, a signal to a host
process, a fork bomb, a memory hog, a CPU hog whose children leave the process group and a
disk filler. Each runs through :func:`t2bench.tasks.code_exec.run_program` against an
:class:`Arena` that the host sets up outside the program (a folder, a TCP and a Unix listener,
a process to kill, a secret file), and each has a check that looks for the escape's *effect*
on the host: a connection accepted, a file written or read, a process killed, more processes
than the limit, a process still running after the runner returned. ``tests/test_sandbox.py``
runs the same programs under ``bwrap`` and asserts that none escapes.

The bench runs them under both runners and writes
``results/bench/sandbox-escapes-<UTC>.json`` and ``.md``: per program and runner, escaped or
contained, with the evidence line. Programs that would harm the host without OS isolation (the
fork bomb) are not run under ``unisolated`` and are listed as not run.

Process counts come from scanning ``/proc`` for command lines that carry the bootstrap's
signature line (or the program's tag): concurrent sandboxes of other processes on the machine
would be counted too, so run it on an otherwise quiet machine.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from t2bench.core.io import new_record, results_path
from t2bench.core.tables import markdown_rows
from t2bench.tasks import code_exec, sandbox
from t2bench.tasks.code_exec import BOOTSTRAP_SIGNATURE, ExecResult, Limits

#: Limits for the hostile programs: small, so that the suite is quick; the process limit is the
#: default's.
LIMITS = Limits(timeout_s=4.0, memory_bytes=512 << 20, file_bytes=16 << 20, output_chars=2000)
#: For the programs that never end by themselves (they are killed at the wall-time limit).
SHORT = Limits(timeout_s=2.0, memory_bytes=512 << 20, file_bytes=16 << 20, output_chars=2000)
#: How long the survivor of ``setsid_survivor`` waits before writing its file.
SURVIVOR_DELAY_S = 2.0


@dataclass
class Arena:
    """What a hostile program aims at, all on the host and outside any sandbox."""

    folder: Path  # a folder of the host (the "outside" that no program may write)
    tag: str  # random; names the program's files and marks its processes
    tcp: socket.socket  # a listener on 127.0.0.1 of the host's network namespace
    unix: socket.socket  # a listener on a Unix socket in ``folder``
    victim: subprocess.Popen  # a process that no program may signal
    before: set[int] = field(default_factory=set)  # sandbox processes before the program ran

    @property
    def port(self) -> int:
        return self.tcp.getsockname()[1]

    @property
    def unix_path(self) -> str:
        return str(self.folder / "listener.sock")

    @property
    def secret(self) -> Path:
        return self.folder / "secret.txt"

    def outside(self, name: str) -> Path:
        return self.folder / f"{name}-{self.tag}"

    @property
    def in_prefix(self) -> Path:
        """A file in the Python installation: a read-only place the sandbox does show."""
        return Path(sys.prefix) / f".t2bench-hostile-{self.tag}"


@contextlib.contextmanager
def arena() -> Iterator[Arena]:
    """Set up an :class:`Arena`; remove everything in it afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="t2bench-escapes-"))
    folder.chmod(0o755)
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    victim = subprocess.Popen(["sleep", "120"], stdin=subprocess.DEVNULL)
    a = Arena(folder, secrets.token_hex(8), tcp, unix, victim)
    try:
        tcp.bind(("127.0.0.1", 0))
        unix.bind(a.unix_path)
        os.chmod(a.unix_path, 0o777)  # reachable by any uid, were the path visible
        for listener in (tcp, unix):
            listener.listen(8)
            listener.setblocking(False)
        a.secret.write_text(f"secret-{a.tag}\n")
        a.secret.chmod(0o644)
        yield a
    finally:
        for listener in (tcp, unix):
            listener.close()
        victim.kill()
        victim.wait()
        a.in_prefix.unlink(missing_ok=True)
        shutil.rmtree(folder, ignore_errors=True)


@dataclass(frozen=True)
class Verdict:
    escaped: bool
    evidence: str


@dataclass(frozen=True)
class Hostile:
    """One hostile program: ``source(arena)`` is its text, ``check(arena, result)`` looks
    for its effect on the host after the runner returned."""

    name: str
    tries: str  # the escape, as the issue describes it
    source: Callable[[Arena], str]
    check: Callable[[Arena, ExecResult], Verdict]
    limits: Limits = LIMITS
    host_safe: bool = True  # may run under the unisolated runner without harming the host
    watch_processes: bool = False  # sample the number of sandbox processes while it runs


# --------------------------------------------------------------------------- host-side probes


def tagged_processes(*needles: str) -> set[int]:
    """Processes of this machine whose command line contains one of ``needles``."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmdline = fh.read()
        except OSError:
            continue
        if any(n.encode() in cmdline for n in needles):
            found.add(int(entry))
    return found


def _accepted(listener: socket.socket) -> list[bytes]:
    """What each connection the listener has queued sent (non-blocking)."""
    got = []
    while True:
        try:
            conn, _ = listener.accept()
        except (BlockingIOError, OSError):
            return got
        with conn:
            conn.settimeout(1.0)
            try:
                got.append(conn.recv(100))
            except OSError:
                got.append(b"")


def _last_line(result: ExecResult) -> str:
    lines = [ln for ln in (result.stderr or result.stdout).strip().splitlines() if ln.strip()]
    return lines[-1].strip()[:160] if lines else f"status {result.status}, no output"


def _lines(result: ExecResult, prefix: str) -> list[str]:
    return [ln for ln in result.stdout.splitlines() if ln.startswith(prefix)]


# --------------------------------------------------------------------------- the programs


def _connect(kind: str) -> Callable[[Arena], str]:
    def source(a: Arena) -> str:
        family, address = (
            ("AF_INET", repr(("127.0.0.1", a.port)))
            if kind == "tcp"
            else ("AF_UNIX", repr(a.unix_path))
        )
        return (
            "import _socket\n"
            f"s = _socket.SocketType(_socket.{family}, _socket.SOCK_STREAM)\n"
            "s.settimeout(2)\n"
            f"s.connect({address})\n"
            f"s.send({a.tag!r}.encode())\n"
            "print('connected')\n"
        )

    return source


def _check_connect(kind: str) -> Callable[[Arena, ExecResult], Verdict]:
    def check(a: Arena, r: ExecResult) -> Verdict:
        got = _accepted(a.tcp if kind == "tcp" else a.unix)
        if got:
            return Verdict(True, f"the host's listener accepted {len(got)} connection(s): {got}")
        return Verdict(False, f"no connection reached the host's listener; {_last_line(r)}")

    return check


def _fork_50(a: Arena) -> str:
    return (
        "import posix, time\n"
        "n = 0\n"
        "try:\n"
        "    for _ in range(50):\n"
        "        if posix.fork() == 0:\n"
        "            time.sleep(30)\n"
        "            posix._exit(0)\n"
        "        n += 1\n"
        "finally:\n"
        "    print('forked', n, flush=True)\n"
    )


def _check_fork_50(a: Arena, r: ExecResult) -> Verdict:
    counts = [int(ln.split()[1]) for ln in _lines(r, "forked")]
    n = counts[0] if counts else 0
    if n >= 50:
        return Verdict(True, "posix.fork made all 50 children: no process limit")
    return Verdict(False, f"posix.fork stopped after {n} children; {_last_line(r)}")


def _setsid(a: Arena) -> str:
    late = (
        f"import time\ntime.sleep({SURVIVOR_DELAY_S})\n"
        f"open({str(a.outside('survivor'))!r}, 'w').write('written after the runner returned')\n"
    )
    return (
        "import os, posix, sys, time\n"
        "if posix.fork() == 0:\n"
        "    os.setsid()  # leave the process group that the runner kills\n"
        f"    os.execv(sys.executable, [sys.executable, '-I', '-S', '-c', {late!r}, {a.tag!r}])\n"
        "time.sleep(0.3)\n"
        "print('child started')\n"
    )


def _check_setsid(a: Arena, r: ExecResult) -> Verdict:
    # run_one has looked for survivors already; wait long enough for one to write its file
    time.sleep(SURVIVOR_DELAY_S + 1.0)
    if a.outside("survivor").exists():
        return Verdict(
            True, f"the setsid child wrote {a.outside('survivor').name} after the runner returned"
        )
    return Verdict(False, f"no file written after the runner returned; {_last_line(r)}")


def _spawn(a: Arena) -> str:
    target = str(a.outside("spawned"))
    return (
        "import os\n"
        "pid = os.posix_spawn('/bin/echo', ['echo', 'echo ran'], {})\n"
        "os.waitpid(pid, 0)\n"
        f"pid = os.posix_spawn('/bin/sh', ['sh', '-c', 'echo escaped > {target}'], {{}})\n"
        "print('sh exit', os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))\n"
    )


def _check_spawn(a: Arena, r: ExecResult) -> Verdict:
    ran = "echo ran" in r.stdout
    if a.outside("spawned").exists():
        return Verdict(True, f"a posix_spawn'ed shell wrote {a.outside('spawned')}")
    return Verdict(
        False,
        ("/bin/echo ran inside the sandbox; " if ran else "/bin/echo did not run; ")
        + "the spawned shell could not write outside: "
        + (_lines(r, "sh exit") or [_last_line(r)])[0],
    )


def _write(a: Arena) -> str:
    return (
        "import os\n"
        f"for t in ({str(a.outside('written'))!r}, {str(a.in_prefix)!r}):\n"
        "    try:\n"
        "        with open(t, 'w') as f:\n"
        "            f.write('escaped')\n"
        "        print('WROTE', t)\n"
        "    except OSError as e:\n"
        "        print('DENIED', t, type(e).__name__)\n"
    )


def _check_write(a: Arena, r: ExecResult) -> Verdict:
    written = [str(p) for p in (a.outside("written"), a.in_prefix) if p.exists()]
    if written:
        return Verdict(True, f"wrote {', '.join(written)}")
    return Verdict(False, "; ".join(_lines(r, "DENIED")) or _last_line(r))


def _read(a: Arena) -> str:
    return (
        f"for t in ('/etc/passwd', '/etc/shadow', {str(a.secret)!r}):\n"
        "    try:\n"
        "        print('READ', t, repr(open(t).read(40)))\n"
        "    except OSError as e:\n"
        "        print('DENIED', t, type(e).__name__)\n"
    )


def _check_read(a: Arena, r: ExecResult) -> Verdict:
    read = _lines(r, "READ")
    if read:
        return Verdict(True, "read " + ", ".join(ln.split()[1] for ln in read))
    return Verdict(False, "; ".join(_lines(r, "DENIED")) or _last_line(r))


def _kill(a: Arena) -> str:
    return f"import posix, signal\nposix.kill({a.victim.pid}, signal.SIGKILL)\nprint('signalled')\n"


def _check_kill(a: Arena, r: ExecResult) -> Verdict:
    time.sleep(0.2)
    if a.victim.poll() is not None:
        return Verdict(True, f"killed host process {a.victim.pid} (exit {a.victim.returncode})")
    return Verdict(False, f"host process {a.victim.pid} still runs; {_last_line(r)}")


def _fork_bomb(a: Arena) -> str:
    return "import posix\nwhile True:\n    try:\n        posix.fork()\n    except OSError:\n        pass\n"


def _check_bomb(a: Arena, r: ExecResult) -> Verdict:
    return Verdict(False, f"status {r.status} after {r.seconds:.1f} s")  # see run_one


def _memory(a: Arena) -> str:
    return (
        "chunks, total = [], 0\n"
        "try:\n"
        "    while total < (3 << 30):\n"
        "        chunks.append(bytearray(64 << 20))\n"
        "        total += 64 << 20\n"
        "finally:\n"
        "    print('allocated_mib', total >> 20, flush=True)\n"
    )


def _check_memory(a: Arena, r: ExecResult) -> Verdict:
    got = [int(ln.split()[1]) for ln in _lines(r, "allocated_mib")]
    mib = got[0] if got else 0
    limit = LIMITS.memory_bytes >> 20
    if mib > limit:
        return Verdict(True, f"allocated {mib} MiB, over the {limit} MiB limit")
    return Verdict(False, f"stopped at {mib} MiB of a {limit} MiB address space; {_last_line(r)}")


def _cpu(a: Arena) -> str:
    return (
        "import os, posix\n"
        "for _ in range(2):\n"
        "    if posix.fork() == 0:\n"
        "        os.setsid()  # leave the process group that the runner kills\n"
        "        while True:\n"
        "            pass\n"
        "while True:\n"
        "    pass\n"
    )


def _check_cpu(a: Arena, r: ExecResult) -> Verdict:
    if r.status != "timeout":
        return Verdict(True, f"ended as {r.status}, not by the wall-time limit")
    return Verdict(False, f"killed at the {SHORT.timeout_s:g} s wall-time limit")  # + survivors


def _disk(a: Arena) -> str:
    return (
        "chunk = b'x' * (1 << 20)\n"
        "big = total = 0\n"
        "try:\n"
        "    with open('big.bin', 'wb') as f:\n"
        "        for _ in range(256):\n"
        "            f.write(chunk)\n"
        "            big += 1\n"
        "except OSError as e:\n"
        "    print('one file stopped:', type(e).__name__)\n"
        "try:\n"
        "    for i in range(24):  # 24 files of 12 MiB: each under the per-file limit\n"
        "        with open(f'f{i}.bin', 'wb') as f:\n"
        "            for _ in range(12):\n"
        "                f.write(chunk)\n"
        "                total += 1\n"
        "except OSError as e:\n"
        "    print('many files stopped:', type(e).__name__)\n"
        "print('mib', big, total)\n"
    )


def _check_disk(a: Arena, r: ExecResult) -> Verdict:
    got = [ln.split()[1:] for ln in _lines(r, "mib")]
    big, total = (int(x) for x in got[0]) if got else (0, 0)
    one, scratch = LIMITS.file_bytes >> 20, LIMITS.scratch_bytes >> 20
    if big > one or total > scratch:
        return Verdict(True, f"wrote a {big} MiB file and {total} MiB in 24 files")
    return Verdict(
        False, f"one file stopped at {big} MiB (limit {one}), 24 files at {total} MiB in all"
    )


HOSTILE: tuple[Hostile, ...] = (
    Hostile(
        "socket_type_loopback",
        "connect to a loopback listener through _socket.SocketType",
        _connect("tcp"),
        _check_connect("tcp"),
    ),
    Hostile(
        "unix_socket",
        "connect to a host Unix socket through _socket.SocketType",
        _connect("unix"),
        _check_connect("unix"),
    ),
    Hostile(
        "posix_fork_50",
        "50 children through posix.fork (os.fork is guarded)",
        _fork_50,
        _check_fork_50,
    ),
    Hostile(
        "setsid_survivor",
        "a posix.fork + os.setsid child that writes a file after the kill",
        _setsid,
        _check_setsid,
    ),
    Hostile(
        "posix_spawn",
        "os.posix_spawn('/bin/echo'), and a shell that writes outside",
        _spawn,
        _check_spawn,
    ),
    Hostile(
        "write_outside",
        "write outside the temporary folder (a host folder, the Python prefix)",
        _write,
        _check_write,
    ),
    Hostile("read_host_files", "read /etc/passwd, /etc/shadow and a host file", _read, _check_read),
    Hostile(
        "kill_host_process", "posix.kill a host process (os.kill is guarded)", _kill, _check_kill
    ),
    Hostile(
        "fork_bomb",
        "fork bomb (posix.fork in a loop)",
        _fork_bomb,
        _check_bomb,
        SHORT,
        host_safe=False,
        watch_processes=True,
    ),
    Hostile("memory_hog", "allocate 3 GiB in 64 MiB steps", _memory, _check_memory),
    Hostile(
        "cpu_hog", "spin, with two children that leave the process group", _cpu, _check_cpu, SHORT
    ),
    Hostile("disk_filler", "one 256 MiB file, then 24 files of 12 MiB", _disk, _check_disk),
)
BY_NAME = {h.name: h for h in HOSTILE}


# --------------------------------------------------------------------------- running them


class _Watch:
    """Samples the number of sandbox processes (bootstrap signature on the command line,
    not there before) every 20 ms while a program runs; ``peak`` is the largest count."""

    def __init__(self, before: set[int]):
        self.before, self.peak = before, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            now = tagged_processes(BOOTSTRAP_SIGNATURE) - self.before
            self.peak = max(self.peak, len(now))
            self._stop.wait(0.02)

    def __enter__(self) -> _Watch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _survivors(a: Arena, before: set[int]) -> set[int]:
    """Processes of the program (bootstrap signature or its tag on the command line, not there
    before it ran) that still run: seen now and again 0.5 s later, so that processes the
    runner has just killed, which take a moment to disappear, do not count."""
    first = tagged_processes(BOOTSTRAP_SIGNATURE, a.tag) - before
    if not first:
        return set()
    time.sleep(0.5)
    return first & tagged_processes(BOOTSTRAP_SIGNATURE, a.tag)


def run_one(h: Hostile, runner: str, a: Arena) -> dict:
    """Run ``h`` under ``runner`` against ``a``: the verdict, plus the survivor check that
    every program gets (a process of the program still running after the runner returned,
    then killed here) and, for the fork bomb, the process limit check."""
    before = tagged_processes(BOOTSTRAP_SIGNATURE, a.tag)
    watch = _Watch(before) if h.watch_processes else contextlib.nullcontext()
    with watch:
        result = code_exec.run_program(h.source(a), h.limits, runner)
    survivors = _survivors(a, before)
    verdict = h.check(a, result)
    notes = [verdict.evidence]
    escaped = verdict.escaped
    if h.watch_processes:
        # the program's processes, plus bubblewrap's two (outside and PID 1 inside)
        allowed = h.limits.max_processes + (2 if runner == sandbox.BWRAP else 0)
        peak = watch.peak
        notes.append(f"at most {peak} sandbox processes at once (limit {allowed})")
        escaped |= peak > allowed
    survivors |= _survivors(a, before)
    if survivors:
        escaped = True
        notes.append(f"{len(survivors)} process(es) outlived the runner (killed now)")
        for pid in survivors:  # ours: they carry the bootstrap signature or this run's tag
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    elif not verdict.escaped:
        notes.append("nothing outlived the runner")
    return {
        "program": h.name,
        "tries": h.tries,
        "runner": result.runner,
        "escaped": escaped,
        "evidence": "; ".join(notes),
        "status": result.status,
        "seconds": round(result.seconds, 2),
    }


def run_suite(runners: tuple[str, ...], names: list[str] | None = None) -> list[dict]:
    """Every program (or ``names``) under every runner, each in a fresh arena."""
    rows = []
    for h in [BY_NAME[n] for n in names] if names else HOSTILE:
        for runner in runners:
            if runner == sandbox.UNISOLATED and not h.host_safe:
                rows.append(
                    {
                        "program": h.name,
                        "tries": h.tries,
                        "runner": runner,
                        "escaped": None,
                        "evidence": "not run: without OS isolation it would endanger this "
                        "machine (no process-count limit)",
                        "status": "not run",
                        "seconds": None,
                    }
                )
                continue
            with arena() as a:
                rows.append(run_one(h, runner, a))
    return rows


def summary(rows: list[dict]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for r in rows:
        s = out.setdefault(r["runner"], {"tried": 0, "contained": 0, "escaped": 0, "not_run": 0})
        if r["escaped"] is None:
            s["not_run"] += 1
        else:
            s["tried"] += 1
            s["escaped" if r["escaped"] else "contained"] += 1
    return out


def _limits_text(limits: dict) -> str:
    mib = 1 << 20
    return (
        f"{limits['timeout_s']:g} s wall time, {limits['memory_bytes'] // mib} MiB address space, "
        f"{limits['file_bytes'] // mib} MiB per file, {limits['max_processes']} processes, "
        f"{limits['scratch_bytes'] // mib} MiB /tmp (the last two under bwrap only)"
    )


def markdown(payload: dict) -> str:
    prov = payload["provenance"]
    lines = [
        "# Hostile programs against the code runners",
        "",
        f"commit `{prov['commit']}`, {prov['created_utc']}, {payload['sandbox']['kernel']}, "
        f"{payload['sandbox']['bwrap_version']}, started as "
        f"{'root' if payload['sandbox']['started_as_root'] else 'a non-root user'}; "
        "`python -m t2bench.bench.sandbox_escapes`. Limits per program: "
        + _limits_text(payload["limits"]["default"])
        + f"; the fork bomb and the CPU hog {payload['limits']['never_ending_programs']['timeout_s']:g} s.",
        "",
    ]
    for runner, s in payload["summary"].items():
        lines.append(
            f"- **{runner}**: {s['tried']} escapes tried, {s['contained']} contained, "
            f"{s['escaped']} escaped" + (f", {s['not_run']} not run" if s["not_run"] else "")
        )
    lines.append("")
    cell = {True: "**escaped**", False: "contained", None: "not run"}
    rows = [
        (r["program"], r["tries"], r["runner"], cell[r["escaped"]], r["evidence"])
        for r in payload["rows"]
    ]
    lines += markdown_rows(["program", "tries", "runner", "result", "evidence"], rows)
    return "\n".join(lines) + "\n"


def sandbox_facts() -> dict:
    """bubblewrap's version, the kernel, the uid strategy and what the sandbox shows."""
    bwrap = shutil.which("bwrap")
    version = "bwrap not found"
    if bwrap:
        done = subprocess.run([bwrap, "--version"], capture_output=True, text=True)
        version = done.stdout.strip() or done.stderr.strip()
        plan = sandbox.plan_bwrap(bwrap, scratch_bytes=LIMITS.scratch_bytes)
    return {
        "bwrap_version": version,
        "kernel": os.uname().release,
        "started_as_root": os.geteuid() == 0,
        "visible_host_paths": list(sandbox.host_paths_visible(plan)) if bwrap else [],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m t2bench.bench.sandbox_escapes", description=__doc__)
    p.add_argument("--only", default=None, help="comma-separated program names")
    p.add_argument("--runners", default=",".join(sandbox.RUNNERS))
    p.add_argument("--out", default=str(results_path("bench")))
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    runners = tuple(args.runners.split(","))
    names = args.only.split(",") if args.only else None
    os.environ[code_exec.ENV_FLAG] = "1"  # this bench exists to run hostile code
    for runner in runners:
        code_exec.require_opt_in(runner)
    from t2bench.core.provenance import git_commit, items_sha256, provenance

    commit = git_commit()
    t0 = time.perf_counter()
    rows = run_suite(runners, names)
    wall = time.perf_counter() - t0
    programs = [h.name for h in HOSTILE if not names or h.name in names]
    payload = {
        "summary": summary(rows),
        "rows": rows,
        "limits": {"default": asdict(LIMITS), "never_ending_programs": asdict(SHORT)},
        "sandbox": sandbox_facts(),
        "provenance": provenance(
            commit=commit,
            item_ids=programs,
            # the program texts depend on the arena (ports, paths, tag): hashed by name
            items_sha256=items_sha256(programs),
            wall_seconds=round(wall, 1),
        ),
    }
    for r in rows:
        print(
            f"{r['program']:22} {r['runner']:11} {'ESCAPED' if r['escaped'] else 'contained' if r['escaped'] is False else 'not run':9} {r['evidence']}"
        )
    for runner, s in payload["summary"].items():
        print(f"{runner}: {s}")
    if not args.no_write:
        path = new_record(Path(args.out), "sandbox-escapes", payload)
        path.with_suffix(".md").write_text(markdown(payload))
        print(f"written: {path} and {path.with_suffix('.md').name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
