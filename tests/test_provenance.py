"""Provenance records: lm-eval sidecars take only what lm-eval recorded, and never overwrite."""

from __future__ import annotations

import json

from t2bench.report.provenance import provenance, write_lm_eval_provenance, write_new


def test_provenance_has_commit_machine_time():
    p = provenance(seed=3)
    assert {"commit", "machine", "created_utc", "t2bench"} <= set(p) and p["seed"] == 3


def test_write_new_never_overwrites(tmp_path):
    a = write_new(tmp_path, "x", {"v": 1})
    b = write_new(tmp_path, "x", {"v": 2})
    assert a != b and json.loads(a.read_text()) == {"v": 1}


def test_lm_eval_sidecar(tmp_path):
    run = tmp_path / "run" / "model"
    run.mkdir(parents=True)
    results = {
        "git_hash": "abc1234",
        "date": 1.0,
        "total_evaluation_time_seconds": "12.5",
        "config": {
            "model": "t2",
            "model_args": "",
            "limit": 5.0,
            "random_seed": 0,
            "t2": {"groups": 1},
        },
        "configs": {"gsm8k": {"test_split": "test", "fewshot_split": None, "num_fewshot": 5}},
        "n-samples": {"gsm8k": {"effective": 5}},
    }
    (run / "results_2026.json").write_text(json.dumps(results))
    [side] = write_lm_eval_provenance(tmp_path / "run")
    got = json.loads(side.read_text())
    assert side.name == "provenance_2026.json"
    assert (
        got["commit"] == "abc1234" and got["wall_s"] == "12.5" and got["seed"]["random_seed"] == 0
    )
    assert got["data_split"]["gsm8k"]["test_split"] == "test" and got["t2"] == {"groups": 1}
    assert write_lm_eval_provenance(tmp_path / "run") == []  # an existing sidecar is kept
