"""The held-out comparison: paired statistics, run discovery and the table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from t2bench.errors import ConfigError
from t2bench.train.heldout import discover, heldout_items, markdown, paired_difference


def test_paired_difference_counts_and_interval():
    base = [True, False, False, True, False, True]
    other = [True, True, True, True, False, False]
    r = paired_difference(base, other)
    assert r["n"] == 6 and r["wins"] == 2 and r["losses"] == 1
    assert r["diff"] == pytest.approx(1 / 6)
    assert r["ci_low"] < r["diff"] < r["ci_high"]
    assert r["method"] == "newcombe-paired-score" and r["p_method"] == "mcnemar-exact"
    assert r["p"] == r["mcnemar_p"] == pytest.approx(1.0)  # 2 vs 1 discordant pairs
    many = paired_difference([False] * 40, [True] * 30 + [False] * 10)
    assert many["p"] < 1e-6 and many["ci_low"] > 0.5
    with pytest.raises(ValueError, match="paired"):
        paired_difference([True], [True, False])


def test_paired_difference_is_not_zero_width_when_no_item_changed():
    # a t-interval over all-zero differences has no width and claims certainty from n = 8
    same = paired_difference([False] * 8, [False] * 8)
    assert same["diff"] == 0.0 and same["p"] == 1.0
    assert same["ci_low"] < 0.0 < same["ci_high"]


def test_heldout_items_come_from_the_test_split_only():
    from t2bench.data.splits import load_splits

    items, desc = heldout_items("reasoning", 20, seed=0)
    splits = load_splits("reasoning")
    test_uids = {it.uid for it in splits.test}
    train_uids = {it.uid for it in splits.train} | {it.uid for it in splits.valid}
    assert len(items) == 20 and {it.uid for it in items} <= test_uids
    assert not {it.uid for it in items} & train_uids
    assert desc["split"] == "test" and desc["n"] == 20
    assert [it.uid for it in heldout_items("reasoning", 20, seed=0)[0]] == [it.uid for it in items]


def test_discover_orders_runs_after_the_base(tmp_path):
    for name, art in [
        ("math-lora-ntp", "math-lora-ntp"),
        ("math-svf-pg", "math-svf-pg.safetensors"),
    ]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text(
            json.dumps({"run": name, "artifact": f"{tmp_path}/{name}/{art}"})
        )
    found = discover("math", tmp_path)
    assert [v.name for v in found] == ["base", "math-svf-pg", "math-lora-ntp"]
    assert [v.kind for v in found] == ["base", "svf", "peft"]


def test_discover_records_a_linked_run_folder_where_it_really_is(tmp_path):
    """A sweep point linked into a runs folder as ``<task>-...`` is scored from, and recorded
    with, its real path."""
    real = tmp_path / "sweeps" / "lr0.01-kl0-s2"
    real.mkdir(parents=True)
    (real / "x.safetensors").write_bytes(b"")
    (real / "summary.json").write_text(
        json.dumps({"run": "classifier-svf-ntp-lr0.01", "artifact": "elsewhere/x.safetensors"})
    )
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "classifier-svf-ntp").symlink_to(real, target_is_directory=True)
    found = discover("classifier", tmp_path / "runs")
    assert [v.name for v in found] == ["base", "classifier-svf-ntp-lr0.01"]
    assert found[1].path == (real / "x.safetensors").resolve()


def test_markdown_table_has_one_row_per_variant():
    payload = {
        "table": [
            {"variant": "base", "kind": "base", "accuracy": 0.5},
            {"variant": "x-svf-pg", "kind": "svf", "accuracy": 0.6}
            | paired_difference([True, False] * 5, [True, True] * 5),
        ],
        "item_uids": ["a"] * 10,
        "max_new_tokens": 8,
        "provenance": {"commit": "abc", "base_model": "m", "created_utc": "t", "wall_seconds": 1},
    }
    text = markdown("math", payload)
    assert "| base | 0.500 |" in text and "| x-svf-pg | 0.600 | +50.0 |" in text


def test_math_mix_heldout_has_1000_test_items_disjoint_from_training():
    from t2bench.data.splits import load_splits

    items, desc = heldout_items("math", 1000, seed=0, difficulty="mix")
    mix = load_splits("math", difficulty="mix")
    assert len(items) == 1000 and desc["difficulty"] == "mix" and desc["test_items"] == 1200
    assert {it.uid for it in items} <= {it.uid for it in mix.test}
    assert not {it.uid for it in items} & {it.uid for it in mix.train + mix.valid}


def _fake_runs(monkeypatch, tmp_path, answers: dict, seen_dtypes: set | None = None):
    """A runs folder with one finished run per non-base name of ``answers`` (SVF for names
    with "svf", a peft folder otherwise), scored by a fake that returns ``answers``."""
    from t2bench.train import heldout

    runs = tmp_path / "runs"
    for name in answers:
        if name != "base":
            art = "e.safetensors" if "-svf-" in name else "adapter"
            (runs / name).mkdir(parents=True)
            (runs / name / "summary.json").write_text(json.dumps({"run": name, "artifact": art}))

    def fake_score(variant, model_name, items, task, new_tokens, batch, applied=None, **kw):
        if seen_dtypes is not None:
            seen_dtypes.add(kw["compute_dtype"])
        applied.update({"applied": True, "applied_evidence": "fake"})
        return answers[variant.name]

    monkeypatch.setattr(heldout, "score_variant", fake_score)
    return runs


def test_compare_reports_svf_minus_each_other_variant(tmp_path, monkeypatch):
    from t2bench.train import heldout

    answers = {
        "base": [False] * 6 + [True] * 4,
        "reasoning-svf-pg": [True] * 8 + [False] * 2,
        "reasoning-lora-pg": [False] * 5 + [True] * 5,
    }
    seen_dtypes = set()
    runs = _fake_runs(monkeypatch, tmp_path, answers, seen_dtypes)
    payload = heldout.compare("reasoning", n=10, runs=runs, compute_dtype="bfloat16")
    assert seen_dtypes == {"bfloat16"} and payload["compute_dtype"] == "bfloat16"
    vs = payload["versus_svf"]
    assert list(vs) == ["reasoning-lora-pg"]
    assert vs["reasoning-lora-pg"]["diff"] == pytest.approx(0.3)  # 0.8 - 0.5
    text = heldout.markdown("reasoning", payload)
    assert "SVF − other" in text and "| reasoning-lora-pg | +30.0 |" in text
    assert "compute bfloat16" in text
    # --only: base and the named runs, on the same items
    only = heldout.compare("reasoning", n=10, runs=runs, only=["reasoning-lora-pg"])
    assert [r["variant"] for r in only["table"]] == ["base", "reasoning-lora-pg"]
    assert only["item_uids"] == payload["item_uids"] and only["versus_svf"] == {}
    with pytest.raises(ConfigError, match="--only reasoning-ia3-ntp: no finished reasoning run"):
        heldout.compare("reasoning", n=10, runs=runs, only=["reasoning-ia3-ntp"])


def test_svf_minus_other_uses_the_fallback_trained_in_place_of_svf_pg(tmp_path, monkeypatch):
    from t2bench.train import heldout

    answers = {
        "base": [False] * 10,
        "code-svf-ntp": [True] * 2 + [False] * 8,
        "code-lora-ntp": [True] * 4 + [False] * 6,
    }
    runs = _fake_runs(monkeypatch, tmp_path, answers)
    monkeypatch.setenv("HF_ALLOW_CODE_EVAL", "1")  # the code task's opt-in (nothing runs here)
    payload = heldout.compare("code", n=10, runs=runs)
    assert payload["svf_variant"] == "code-svf-ntp"
    assert payload["versus_svf"]["code-lora-ntp"]["diff"] == pytest.approx(-0.2)
    assert "(code-svf-ntp minus the row's variant)" in heldout.markdown("code", payload)


def test_bf16_scoring_composes_the_expert_in_fp32_then_casts(llama_dir, tmp_path, monkeypatch):
    from t2bench.data.splits import TrainItem
    from t2bench.models import load_model
    from t2bench.svf import TargetSpec, decompose, identity_expert, save_expert
    from t2bench.train import heldout

    lm = load_model(str(llama_dir))
    d = decompose(lm.model, TargetSpec("mlp"), model_id=lm.model_id, progress=False)
    expert = identity_expert(d, name="reasoning-svf-pg")
    expert.params = {k: v * 1.5 for k, v in expert.params.items()}
    path = save_expert(expert, tmp_path / "e")
    dtypes = []

    def fake_greedy(model, tok, items, task, **kw):
        dtypes.append(next(model.parameters()).dtype)
        return [False] * len(items)

    monkeypatch.setattr(heldout, "greedy_correct", fake_greedy)
    items = [TrainItem(uid="u", task="reasoning", prompt="w1 w2", target="A", reference="w3")]
    applied = {}
    variant = heldout.Variant("reasoning-svf-pg", "svf", path)
    heldout.score_variant(variant, str(llama_dir), items, "reasoning", 4, 1, applied, "bfloat16")
    assert dtypes == [torch.bfloat16] and applied["applied"] is True
    assert "composed into" in applied["applied_evidence"]


def test_merge_joins_records_of_the_same_items_into_one_comparison(tmp_path, monkeypatch):
    """Records that each scored base and one run are joined without scoring again: every
    row, SVF − other, and the source of each row."""
    from t2bench.core.io import file_sha256
    from t2bench.train import heldout

    answers = {
        "base": [False] * 6 + [True] * 4,
        "reasoning-svf-pg": [True] * 8 + [False] * 2,
        "reasoning-lora-ntp": [False] * 5 + [True] * 5,
    }
    runs = _fake_runs(monkeypatch, tmp_path, answers)
    out = tmp_path / "out"
    paths = [
        heldout.compare("reasoning", n=10, runs=runs, out=out, only=[name])["path"]
        for name in ("reasoning-lora-ntp", "reasoning-svf-pg")
    ]
    merged = heldout.merge(paths, runs=runs, out=out)
    assert [r["variant"] for r in merged["table"]] == [
        "base",
        "reasoning-svf-pg",
        "reasoning-lora-ntp",
    ]
    assert merged["table"][2]["source_record"] == paths[0]
    assert merged["table"][1]["diff"] == pytest.approx(0.4)
    assert merged["versus_svf"]["reasoning-lora-ntp"]["diff"] == pytest.approx(0.3)
    sources = merged["provenance"]["merged_from"]
    assert [m["path"] for m in sources] == paths
    assert sources[0]["sha256"] == file_sha256(paths[0])
    assert merged["path"] not in paths and "Merged from" in heldout.markdown("reasoning", merged)


def test_merge_refuses_records_that_are_not_paired(tmp_path, monkeypatch):
    from t2bench.train import heldout

    answers = {"base": [False] * 10, "reasoning-svf-pg": [True] * 10}
    runs = _fake_runs(monkeypatch, tmp_path, answers)
    a = heldout.compare("reasoning", n=10, runs=runs, out=tmp_path)["path"]
    rec = json.loads(Path(a).read_text())
    # the base answered one item differently: not the same conditions
    rec["per_item"]["base"][0] = 1
    (tmp_path / "b.json").write_text(json.dumps(rec))
    with pytest.raises(ConfigError, match="base answered 1 of 10 items differently"):
        heldout.merge([a, tmp_path / "b.json"])
    rec["per_item"]["base"][0] = 0
    rec["compute_dtype"] = "bfloat16"
    (tmp_path / "c.json").write_text(json.dumps(rec))
    with pytest.raises(ConfigError, match="differ in compute dtype"):
        heldout.merge([a, tmp_path / "c.json"])
    (tmp_path / "d.json").write_text(json.dumps({"table": []}))
    with pytest.raises(ConfigError, match="not a held-out record with per-item results"):
        heldout.merge([a, tmp_path / "d.json"])
    with pytest.raises(ConfigError, match="at least two"):
        heldout.merge([a])


def test_heldout_merge_command(tmp_path, monkeypatch, capsys):
    from t2bench.cli import main
    from t2bench.train import heldout

    answers = {
        "base": [False] * 10,
        "reasoning-svf-pg": [True] * 10,
        "reasoning-lora-ntp": [True] * 10,
    }
    runs = _fake_runs(monkeypatch, tmp_path, answers)
    paths = [
        heldout.compare("reasoning", n=10, runs=runs, out=tmp_path, only=[name])["path"]
        for name in ("reasoning-svf-pg", "reasoning-lora-ntp")
    ]
    args = ["heldout", "--runs", str(runs), "--out", str(tmp_path / "m"), "--merge", *paths]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "| reasoning-lora-ntp | +0.0 |" in out and "written:" in out
    assert len(list((tmp_path / "m").glob("heldout-reasoning-*.json"))) == 1
    assert main(["heldout", "--merge", paths[0]]) == 2
    assert "at least two" in capsys.readouterr().err


def test_compare_records_its_batch_size(tmp_path, monkeypatch):
    from t2bench.train import heldout

    runs = _fake_runs(
        monkeypatch, tmp_path, {"base": [False] * 10, "reasoning-svf-pg": [True] * 10}
    )
    assert heldout.compare("reasoning", n=10, runs=runs, batch=7)["batch_size"] == 7
