"""The inner-update grid (``t2bench seal tune``): training passages only, the defaults flagged,
never written over an earlier grid; its paragraph reads the best and the default honestly."""

from __future__ import annotations

import json

import pytest

from t2bench.errors import ConfigError


def test_grid_runs_on_training_passages_only_and_is_never_overwritten(
    tmp_path, char_llama_dir, monkeypatch, tiny_passages
):
    import t2bench.core.provenance as provenance
    import t2bench.seal.data as data
    import t2bench.seal.tune as tune
    from t2bench.core.tables import ADAPTER_KEY, DirtyCheckoutError
    from t2bench.seal.inner import ALL_LINEAR, DEFAULT_LR
    from t2bench.seal.tune import TuneConfig, write_tune

    # a clean commit: tables refuse a dirty checkout, and this shared one may be dirty
    monkeypatch.setattr(provenance, "git_commit", lambda repo=None: "a" * 40)
    splits = []

    def fake_load(source, split, n, seed):
        splits.append(split)
        return tiny_passages(n)

    monkeypatch.setattr(data, "load_passages", fake_load)
    grid = (
        ("lora", "q_proj,v_proj", 1e-2),
        ("lora", ALL_LINEAR, DEFAULT_LR["lora"]),
        ("svf", None, 5e-2),
    )
    cfg = TuneConfig(
        output_dir=str(tmp_path / "grid"),
        model=char_llama_dir,
        n=2,
        steps=1,
        grid=grid,
        progress=False,
    )
    out = write_tune(cfg)
    assert splits and set(splits) == {"train"}  # eval passages are never read
    payload = json.loads((out / "seal-inner-lr.json").read_text())
    rows = payload["rows"]
    assert [(r["inner update"], r["lr"]) for r in rows] == [
        ("lora", "0.01"),
        ("lora", "0.001"),
        ("svf", "0.05"),
    ]
    assert [r["default"] for r in rows] == ["", "yes", ""]
    assert all(r["n"] == 2 and 0 <= r["accuracy (contains)"] <= 1 for r in rows)
    # every setting really trained: trainable parameters differ between the LoRA target sets
    assert rows[0]["trainable parameters"] != rows[1]["trainable parameters"]
    assert "fictional train" in payload["provenance"]["split"]
    assert payload["provenance"]["model_fingerprint"]["sha256_weights"]
    # every row claims its inner update and the record shows it ran on both passages
    claims = [r[ADAPTER_KEY] for r in rows]
    assert [c["kind"] for c in claims] == ["lora", "lora", "svf"]
    assert all(c["applied"] and "update on 2 passages" in c["evidence"] for c in claims)
    # power: the grid has no base row, so p is the default LoRA setting's accuracy on the
    # training questions, whose n it states
    (power,) = payload["power"]
    assert power["n"] == rows[1]["n"] and "default lora setting" in power["label"]
    scores = payload["data"]["records"][1]["scores"]
    assert power["p_base"] == pytest.approx(sum(scores) / len(scores))
    # the other LoRA setting is compared with the default on the same questions, not the SVF one
    assert "Δ vs default (points) [95% CI]" in rows[0] and "diff" not in rows[2]
    with pytest.raises(ConfigError, match="never overwritten"):
        write_tune(cfg)
    monkeypatch.setattr(provenance, "git_commit", lambda repo=None: "a" * 40 + "+dirty")
    ran = []
    monkeypatch.setattr(tune, "tune_inner", lambda c: ran.append(c) or [])
    with pytest.raises(DirtyCheckoutError):  # `seal tune` publishes only from a commit
        write_tune(TuneConfig(**{**cfg.__dict__, "output_dir": str(tmp_path / "dirty")}))
    assert ran == []  # refused before the grid spent any time


def test_paragraph_says_when_the_default_is_not_the_best():
    from t2bench.core.stats import paired_difference
    from t2bench.seal.tune import paragraph

    def row(method, lr, acc, default="", diff=None):
        out = {
            "inner update": method,
            "lr": lr,
            "targets": "t",
            "accuracy (contains)": acc,
            "default": default,
        }
        return out | ({"diff": diff} if diff else {})

    # 10 questions: 2 right with the default, 5 with the other lr; 3 discordant pairs
    default, other = [1] * 2 + [0] * 8, [1] * 5 + [0] * 5
    small = paired_difference(default, other)
    text = paragraph(
        [
            row("lora", "0.001", 0.2, "yes"),
            row("lora", "0.003", 0.5, diff=small),
            row("svf", "0.02", 0.4, "yes"),
        ]
    )
    assert "lora: best 0.500 at lr 0.003" in text and "scores 0.200, below the best" in text
    # the paired CI of 3 changed answers in 10 includes zero: the grid does not rank them
    assert "includes zero: undetermined, this grid does not rank the two" in text
    assert "svf: best 0.400 at lr 0.02 (t); the default is a best setting" in text
    assert "not in this grid" in paragraph([row("svf", "0.05", 0.1)])
    # a difference whose interval excludes zero is stated as one
    big = paired_difference([0] * 40, [1] * 30 + [0] * 10)
    text = paragraph([row("lora", "0.001", 0.0, "yes"), row("lora", "0.003", 0.75, diff=big)])
    assert "an interval that excludes zero" in text and "undetermined" not in text
    # no paired interval at all: the order is not claimed
    text = paragraph([row("lora", "0.001", 0.2, "yes"), row("lora", "0.003", 0.5)])
    assert "the order is undetermined" in text


def test_empty_grid_and_no_passages_are_refused():
    from t2bench.seal.tune import TuneConfig

    with pytest.raises(ConfigError, match="grid is empty"):
        TuneConfig(grid=())
    with pytest.raises(ConfigError, match="n must be >= 1"):
        TuneConfig(n=0)
