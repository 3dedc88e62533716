"""The inner-update grid (``t2bench seal tune``): training passages only, the defaults flagged,
never written over an earlier grid; its paragraph reads the best and the default honestly."""

from __future__ import annotations

import json

import pytest

from t2bench.errors import ConfigError


def test_grid_runs_on_training_passages_only_and_is_never_overwritten(
    tmp_path, char_llama_dir, monkeypatch, tiny_passages
):
    import t2bench.seal.data as data
    from t2bench.seal.inner import ALL_LINEAR, DEFAULT_LR
    from t2bench.seal.tune import TuneConfig, write_tune

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
    with pytest.raises(ConfigError, match="never overwritten"):
        write_tune(cfg)


def test_paragraph_says_when_the_default_is_not_the_best():
    from t2bench.seal.tune import paragraph

    def row(method, lr, acc, default=""):
        return {
            "inner update": method,
            "lr": lr,
            "targets": "t",
            "accuracy (contains)": acc,
            "default": default,
        }

    text = paragraph(
        [
            row("lora", "0.001", 0.2, "yes"),
            row("lora", "0.003", 0.5),
            row("svf", "0.02", 0.4, "yes"),
        ]
    )
    assert "lora: best 0.500 at lr 0.003" in text and "scores 0.200, below the best" in text
    assert "svf: best 0.400 at lr 0.02 (t); the default is a best setting" in text
    assert "not in this grid" in paragraph([row("svf", "0.05", 0.1)])


def test_empty_grid_and_no_passages_are_refused():
    from t2bench.seal.tune import TuneConfig

    with pytest.raises(ConfigError, match="grid is empty"):
        TuneConfig(grid=())
    with pytest.raises(ConfigError, match="n must be >= 1"):
        TuneConfig(n=0)
