"""``t2bench.bench.refactor_equivalence``: the comparison it reports and the kill-then-resume it
drives (the real-model runs themselves are the benchmark, not a unit test)."""

import json
import sys

import pytest
import torch

from t2bench.bench import refactor_equivalence as eq


def test_max_abs_difference_is_exact_and_refuses_other_matrices():
    a = {"w": torch.zeros(3)}
    assert eq._max_abs(a, {"w": torch.zeros(3)}) == 0.0
    assert eq._max_abs(a, {"w": torch.tensor([0.0, 0.5, 0.0])}) == 0.5
    assert eq._max_abs(a, {"v": torch.zeros(3)}) is None


def test_logs_compare_without_their_timings(tmp_path):
    for name, secs in (("a", 1.0), ("b", 9.0)):
        (tmp_path / name).mkdir()
        rec = {"step": 1, "loss": 0.25, "seconds": secs, "tokens_per_s": 10 * secs}
        (tmp_path / name / "log.jsonl").write_text(json.dumps(rec) + "\n")
    assert eq._log(tmp_path / "a") == eq._log(tmp_path / "b") == [{"step": 1, "loss": 0.25}]


def test_a_run_is_killed_at_its_marker_then_run_to_the_end(tmp_path):
    marker = tmp_path / "ckpt" / "state.json"
    done = tmp_path / "done"
    # first session: writes the marker, then hangs (it must be killed); second: finishes
    script = (
        "import pathlib, sys, time\n"
        f"m, d = pathlib.Path({str(marker)!r}), pathlib.Path({str(done)!r})\n"
        "if m.exists():\n    d.write_text('resumed'); sys.exit(0)\n"
        "m.parent.mkdir(parents=True); m.write_text('{}'); time.sleep(120)\n"
    )
    info = eq._run_killed([sys.executable, "-c", script], tmp_path, tmp_path / "log", marker)
    assert info["killed_after"] == "ckpt" and info["seconds"] < 120
    assert done.read_text() == "resumed"


def test_a_run_that_ends_before_its_marker_is_an_error(tmp_path):
    with pytest.raises(RuntimeError, match="nothing was killed"):
        eq._run_killed(
            [sys.executable, "-c", "pass"], tmp_path, tmp_path / "log", tmp_path / "never"
        )
