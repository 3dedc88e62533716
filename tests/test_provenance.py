"""Provenance records: lm-eval sidecars take only what lm-eval recorded, and never overwrite."""

from __future__ import annotations

import json

from t2bench.core.io import new_record
from t2bench.core.provenance import provenance, write_lm_eval_provenance


def test_provenance_has_commit_machine_time():
    p = provenance(seed=3)
    assert {"commit", "machine", "created_utc", "t2bench"} <= set(p) and p["seed"] == 3


def test_write_new_never_overwrites(tmp_path):
    a = new_record(tmp_path, "x", {"v": 1})
    b = new_record(tmp_path, "x", {"v": 2})
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
    assert "code_runners" not in got
    # what lm-eval does not record (t2bench eval adds the runners that executed code)
    (run / "results_2027.json").write_text(json.dumps(results))
    [side] = write_lm_eval_provenance(tmp_path / "run", extra={"code_runners": ["bwrap"]})
    assert json.loads(side.read_text())["code_runners"] == ["bwrap"]


def test_items_sha256_names_the_items_and_their_order():
    from t2bench.core.provenance import items_sha256

    assert items_sha256(["a", "b"]) == items_sha256(("a", "b"))
    assert items_sha256(["a", "b"]) != items_sha256(["b", "a"])
    assert items_sha256([1, 2]) == items_sha256(["1", "2"])  # lm-eval doc ids vs their text
    assert len(items_sha256([])) == 16


def test_weights_sha256_hashes_the_vision_side_apart():
    import torch

    from t2bench.core.provenance import weights_sha256

    class VLM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.vision_tower = torch.nn.Linear(2, 2)
            self.multi_modal_projector = torch.nn.Linear(2, 2)
            self.language_model = torch.nn.Linear(2, 2)

    model = VLM()
    before = weights_sha256(model)
    assert set(before) == {"model", "vision_tower", "multi_modal_projector"}
    with torch.no_grad():
        model.vision_tower.weight[0, 0] += 1
    after = weights_sha256(model)
    assert after["vision_tower"] != before["vision_tower"] and after["model"] != before["model"]
    assert after["multi_modal_projector"] == before["multi_modal_projector"]
    assert set(weights_sha256(torch.nn.Linear(2, 2))) == {"model"}  # a text model: one hash


def test_provenance_gaps_names_what_a_record_lacks():
    from t2bench.core.provenance import provenance_gaps

    full = {
        "provenance": provenance(
            weights_sha256={"model": "ab"}, seed=0, data_split="test", wall_seconds=1.0
        ),
        "item_uids": ["x"],
    }
    assert provenance_gaps(full) == []
    no_weights = {**full, "provenance": {**full["provenance"], "weights_sha256": {}}}
    assert provenance_gaps(no_weights) == ["weights sha256"]  # an empty value does not count
    assert provenance_gaps({"rows": []}) == [
        "commit",
        "weights sha256",
        "seed",
        "split",
        "item ids",
        "machine",
        "wall time",
    ]


def test_only_changes_outside_results_make_the_code_dirty(tmp_path):
    """A run's outputs under results/ (a rewritten sweep record) leave the commit clean; a
    changed source file marks it ``+dirty``."""
    import subprocess

    from t2bench.core.provenance import git_commit

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "sweep.json").write_text("{}")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", ".")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init")
    assert not git_commit(tmp_path).endswith("+dirty")
    (tmp_path / "results" / "sweep.json").write_text('{"rows": []}')
    assert not git_commit(tmp_path).endswith("+dirty")
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_commit(tmp_path).endswith("+dirty")
