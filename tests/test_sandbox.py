"""The fault suite of issue #21: hostile programs under the bubblewrap runner must all be
contained, and the checks that say so must see an escape where there is one.

The programs and their checks live in :mod:`t2bench.bench.sandbox_escapes` (one place for
this suite and the bench that records it). Each check looks for the escape's effect on the
host (a connection accepted by a listener of the test, a file written or read outside, a host
process killed, more processes than the limit, a process still running after the runner
returned), never for what the program says about itself alone. Tests that need bubblewrap
skip with the reason where it cannot run.
"""

from __future__ import annotations

import ast

import pytest

from t2bench.bench import sandbox_escapes as se
from t2bench.errors import ConfigError
from t2bench.tasks import code_exec, sandbox
from t2bench.tasks.code_exec import ENV_FLAG, RUNNER_ENV, ExecResult


@pytest.fixture
def opted_in(monkeypatch):
    monkeypatch.setenv(ENV_FLAG, "1")
    monkeypatch.delenv(RUNNER_ENV, raising=False)


@pytest.fixture
def bwrap(opted_in) -> str:
    try:
        return sandbox.check_runner(sandbox.BWRAP)
    except sandbox.SandboxUnavailable as exc:
        pytest.skip(f"bubblewrap cannot run here, so the isolated runner is not tested: {exc}")


@pytest.mark.parametrize("name", [h.name for h in se.HOSTILE])
def test_hostile_program_is_contained_by_bwrap(bwrap, name):
    with se.arena() as a:
        row = se.run_one(se.BY_NAME[name], sandbox.BWRAP, a)
    assert row["runner"] == "bwrap"
    assert row["escaped"] is False, row["evidence"]
    assert "process(es) outlived the runner" not in row["evidence"]


# the programs that do escape the unisolated runner (all but the memory hog, which RLIMIT_AS
# stops in both, and the fork bomb, which is never run without isolation)
ESCAPE_UNISOLATED = [h.name for h in se.HOSTILE if h.host_safe and h.name != "memory_hog"]


@pytest.mark.parametrize("name", ESCAPE_UNISOLATED)
def test_the_checks_see_the_escapes_of_the_unisolated_runner(opted_in, name):
    """The same programs and checks under the runner without OS isolation: every check
    reports the escape, so a 'contained' above is not a check that cannot fail. Each effect
    stays inside the test's arena (its own listeners, folder and victim process) and the
    file written into the Python prefix is removed."""
    with se.arena() as a:
        row = se.run_one(se.BY_NAME[name], sandbox.UNISOLATED, a)
    assert row["runner"] == "unisolated"
    assert row["escaped"] is True, row["evidence"]


def _result(stdout: str = "", status: str = "failed") -> ExecResult:
    return ExecResult(status, 1, stdout, "", 1.0, "bwrap")


def test_the_limit_checks_report_what_exceeds_the_limits():
    """The memory, disk and process-count checks (whose escapes are not run for real)."""
    with se.arena() as a:
        assert se._check_memory(a, _result("allocated_mib 3072\n")).escaped
        assert not se._check_memory(a, _result("allocated_mib 448\n")).escaped
        assert se._check_disk(a, _result("mib 16 288\n")).escaped
        assert se._check_disk(a, _result("mib 256 0\n")).escaped
        assert not se._check_disk(a, _result("mib 16 48\n")).escaped
        assert se._check_fork_50(a, _result("forked 50\n")).escaped
        assert se._check_cpu(a, _result(status="passed")).escaped


def test_fork_bomb_peak_is_within_the_process_limit(bwrap):
    """The fork bomb's process count, sampled while it runs, never passes ``max_processes``
    (plus bubblewrap's own two processes), and the wall-time kill leaves nothing behind."""
    h = se.BY_NAME["fork_bomb"]
    with se.arena() as a:
        row = se.run_one(h, sandbox.BWRAP, a)
    assert row["status"] == "timeout" and not row["escaped"], row["evidence"]
    peak = int(row["evidence"].split("at most ")[1].split()[0])
    assert 2 < peak <= h.limits.max_processes + 2


# --------------------------------------------------------------------------- runner choice


def test_runner_is_chosen_by_argument_then_environment_then_bwrap(monkeypatch):
    monkeypatch.delenv(RUNNER_ENV, raising=False)
    assert sandbox.runner_name() == "bwrap"
    monkeypatch.setenv(RUNNER_ENV, "unisolated")
    assert sandbox.runner_name() == "unisolated"
    assert sandbox.runner_name("bwrap") == "bwrap"
    with pytest.raises(ConfigError, match="valid: bwrap, unisolated"):
        sandbox.runner_name("docker")
    monkeypatch.setenv(RUNNER_ENV, "none")
    with pytest.raises(ConfigError, match="T2BENCH_CODE_RUNNER"):
        sandbox.runner_name()


def test_unavailable_bwrap_refuses_and_names_both_fixes(opted_in, monkeypatch, tmp_path):
    """No silent fallback: a bwrap that cannot make namespaces (here a stand-in that fails as
    bubblewrap does on such kernels) stops code execution with the problem and the fixes."""
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    sandbox.clear_probe_cache()
    try:
        for call in (
            lambda: code_exec.run_program("print(1)"),
            lambda: code_exec.pass_at_k(["assert True"], ["x = 1"]),
            lambda: code_exec.require_opt_in(),
        ):
            with pytest.raises(sandbox.SandboxUnavailable) as err:
                call()
            message = str(err.value)
            assert "No permissions to create new namespace" in message
            assert "apt-get install bubblewrap" in message
            assert "T2BENCH_CODE_RUNNER=unisolated" in message
        # the explicit opt-in runs it, and says so in the result
        result = code_exec.run_program("print(1)", runner="unisolated")
        assert result.passed and result.runner == "unisolated"
        assert "unisolated" in code_exec.runners_used()
    finally:
        sandbox.clear_probe_cache()


def test_results_name_the_runner(bwrap):
    result = code_exec.run_program("import os\nprint(os.getuid(), os.getcwd())")
    assert result.passed and result.runner == "bwrap"
    uid, cwd = result.stdout.split()
    assert int(uid) != 0 and cwd == sandbox.SANDBOX_CWD
    assert "bwrap" in code_exec.runners_used()


def test_bwrap_sandbox_shows_only_the_system_and_python(bwrap):
    """What a program sees of the host: /usr, the linker's /etc files and the Python
    installation; no home folders, no /run (sockets), no repository or results."""
    probe = (
        "import os, sys\n"
        "print(sorted(os.listdir('/')))\n"
        "print(sorted(os.listdir('/etc')))\n"
        "print(os.path.exists(sys.prefix), os.access(sys.prefix, os.W_OK))\n"
    )
    result = code_exec.run_program(probe)
    assert result.passed, result.stderr
    top, etc, prefix = result.stdout.splitlines()
    shown = set(ast.literal_eval(top))
    assert not shown & {"home", "root", "run", "var", "srv", "opt", "mnt", "work"} - {
        p.split("/")[1]
        for p in sandbox.host_paths_visible(sandbox.plan_bwrap("bwrap", scratch_bytes=1))
    }
    assert not {"passwd", "shadow"} & set(ast.literal_eval(etc))
    assert prefix == "True False"  # the interpreter is there, read-only
