"""``t2bench.core.run.RunFolder``: the one run folder of RL training, vision pre-training and
ReST-EM (checkpoints written whole and rotated, settings checked on resume, a finished run never
overwritten, a stop on non-finite values that names the checkpoint kept)."""

import json

import pytest
import torch

from t2bench.core.run import NonFiniteError, RunFolder
from t2bench.errors import ConfigError


def _steps(tmp_path):
    return RunFolder(
        tmp_path / "run",
        "test run",
        checkpoint_ok=lambda name: name.startswith("step-"),
        checkpoint_order=lambda p: int(p.name[5:]),
    )


def _write(value: float):
    def write(folder):
        (folder / "weights.txt").write_text(str(value))

    return write


def test_checkpoints_are_complete_ordered_and_rotated(tmp_path):
    run = _steps(tmp_path)
    for step in (1, 2, 10):
        run.save_checkpoint(f"step-{step}", {"step": step}, _write(step), keep=2)
    # numeric order (10 after 2), only the newest two kept
    assert [p.name for p in run.checkpoints()] == ["step-2", "step-10"]
    newest = run.checkpoints()[-1]
    assert run.read_state(newest) == {"step": 10}
    assert (newest / "weights.txt").read_text() == "10"


def test_a_checkpoint_cut_by_a_kill_is_ignored(tmp_path):
    run = _steps(tmp_path)
    run.save_checkpoint("step-1", {"step": 1}, _write(1), keep=0)
    # a folder without its state file (the writer died before the rename) is not complete
    (run.checkpoint_dir / "step-2").mkdir()
    (run.checkpoint_dir / "step-2" / "weights.txt").write_text("half")

    def dies(folder):
        (folder / "weights.txt").write_text("3")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run.save_checkpoint("step-3", {"step": 3}, dies, keep=0)
    assert [p.name for p in run.checkpoints()] == ["step-1"]
    assert not (run.checkpoint_dir / "step-3").exists()


def test_a_finished_run_is_never_overwritten(tmp_path):
    run = _steps(tmp_path)
    run.refuse_finished()  # nothing there yet
    run.write_summary({"done": True})
    assert json.loads(run.summary_path.read_text()) == {"done": True}
    with pytest.raises(ConfigError, match="already holds a finished test run"):
        run.refuse_finished()


def test_resuming_with_other_settings_is_refused(tmp_path):
    run = _steps(tmp_path)
    run.check_settings({"lr": 1, "out": "a"}, {"lr": 1, "out": "b"}, free=["out"])
    with pytest.raises(ConfigError, match=r"test run started with other settings \(lr: now 2"):
        run.check_settings({"lr": 2}, {"lr": 1})


def test_the_pinned_config_is_written_once_then_checked(tmp_path):
    run = _steps(tmp_path)
    run.pin_config({"seed": 0, "progress": True})
    run.pin_config({"seed": 0, "progress": False}, free=["progress"])
    assert json.loads((run.path / RunFolder.CONFIG).read_text()) == {"seed": 0, "progress": True}
    with pytest.raises(ConfigError, match="seed: now 1, checkpoint 0"):
        run.pin_config({"seed": 1, "progress": True})


def test_a_non_finite_value_stops_the_run_naming_the_checkpoint_kept(tmp_path):
    run = _steps(tmp_path)
    run.check_finite(torch.ones(3), "loss", where="step 1", fix="lower lr")
    with pytest.raises(NonFiniteError, match="no checkpoint was written yet"):
        run.check_finite(torch.tensor([1.0, float("nan")]), "loss", where="step 1", fix="x")
    run.save_checkpoint("step-4", {"step": 4}, _write(4), keep=0)
    with pytest.raises(NonFiniteError, match=r"step 5: the loss is not finite.*step-4 is kept"):
        run.check_finite(torch.tensor(float("inf")), "loss", where="step 5", fix="lower lr")


def test_the_log_drops_a_line_cut_by_a_kill(tmp_path):
    run = RunFolder(tmp_path / "r", "test run", log="records.jsonl")
    run.log.append({"step": 1})
    with run.log.path.open("a") as fh:
        fh.write('{"step": 2, "cut')
    assert run.log.records() == [{"step": 1}]
    assert run.log.path.name == "records.jsonl"


def test_training_pretraining_and_restem_share_the_run_folder(tmp_path):
    """The three resumable runs build their folders from the one class, not their own copies."""
    from t2bench.seal import restem
    from t2bench.train import checkpoint
    from t2bench.vlm import pretrain

    folders = {
        "training run": checkpoint.run_folder(tmp_path),
        "pre-training run": pretrain._run_folder(tmp_path),
        "SEAL run": restem._run_folder(tmp_path),
    }
    for what, folder in folders.items():
        assert type(folder) is RunFolder and folder.what == what
    # each names and orders its own checkpoints
    for name in ("step-000002", "step-000010", "a-0000004", "b-0000001"):
        (tmp_path / "checkpoints" / name).mkdir(parents=True)
        (tmp_path / "checkpoints" / name / RunFolder.STATE).write_text("{}")
    assert [p.name for p in folders["training run"].checkpoints()] == [
        "step-000002",
        "step-000010",
    ]
    assert [p.name for p in folders["pre-training run"].checkpoints()] == [
        "a-0000004",
        "b-0000001",
    ]
