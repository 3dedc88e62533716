"""The training-step benchmark: its worker on a tiny local Llama, and its summary (pure)."""

from __future__ import annotations

import pytest
import torch

from t2bench.bench.train_step import _format_table, make_batch, schedule, summarize, worker
from t2bench.svf.counts import lora_params, svf_params


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("T2BENCH_HOME", str(tmp_path / "home"))  # SVD cache stays in tmp


@pytest.mark.parametrize("variant", ["svf", "lora"])
def test_worker_times_a_real_step(variant, llama_dir, home):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(llama_dir)
    r = worker(variant, model=str(llama_dir), device="cpu", batch=2, seq=16, warmup=1, repeats=1)
    expected = svf_params(config, "mlp") if variant == "svf" else lora_params(config, 16, "q,v")
    assert r["trainable_parameters"] == expected
    assert len(r["step_seconds"]) == 1 and r["median_step_seconds"] > 0
    assert all(t > 0 for t in r["warmup_seconds"])
    # AdamW keeps two moments per trainable value (plus a scalar step per tensor)
    assert r["optimizer_state_bytes"] >= 2 * 4 * expected
    assert r["max_abs_update"] > 0  # the step really moved the adapter
    assert torch.isfinite(torch.tensor(r["losses"])).all()
    mem = r["memory"]
    assert mem["device"] == "cpu" and mem["rss_after_build_kib"] > 0
    # VmRSS and ru_maxrss come from counters the kernel syncs per thread in batches of up to
    # 64 pages, so a peak read later can trail an RSS read earlier by a few hundred KiB
    assert mem["peak_rss_kib"] >= mem["rss_after_build_kib"] - 2048


def test_make_batch_targets_last_half():
    ids, attn, target = make_batch(64, 2, 10, 0, "cpu")
    again, _, _ = make_batch(64, 2, 10, 0, "cpu")
    assert torch.equal(ids, again) and int(ids.max()) < 64
    assert attn.all() and target[:, :5].sum() == 0 and target[:, 5:].all()


def test_schedule_interleaves():
    assert schedule(["svf", "lora"], 1) == ["svf", "lora"]
    assert schedule(["svf", "lora"], 2) == ["svf", "lora", "lora", "svf"]


def _fake(variant, times, peak, build=1000, trainable=10):
    return {
        "variant": variant,
        "step_seconds": times,
        "trainable_parameters": trainable,
        "optimizer_state_bytes": 8 * trainable,
        "memory": {
            "device": "cpu",
            "rss_after_build_kib": build,
            "peak_rss_kib": peak,
            "peak_rss_steps_kib": peak,
            "step_overhead_kib": peak - build,
        },
    }


def test_summarize_ratio_and_memory():
    results = [
        _fake("svf", [1.0, 2.0, 3.0], 1500, trainable=5),
        _fake("lora", [4.0, 4.0, 5.0], 1800),
        _fake("svf", [2.0, 2.5, 9.0], 1600, trainable=5),
    ]
    s = summarize(results)
    svf, lora = s["variants"]["svf"], s["variants"]["lora"]
    assert svf["median_step_seconds"] == 2.25 and svf["rounds"] == 2
    assert lora["median_step_seconds"] == 4.0
    assert s["svf_over_lora_step_time"] == pytest.approx(2.25 / 4.0)
    assert s["goal_svf_over_lora_le_1"] is True
    assert s["step_time_over_lora"]["lora"] == 1.0
    assert svf["peak_rss_kib"] == 1600 and svf["step_overhead_kib"] == 600
    assert svf["trainable_parameters"] == 5 and svf["optimizer_state_bytes"] == 40
    assert "svf" in _format_table(s) and "lora" in _format_table(s)


def test_summarize_without_lora_has_no_ratio():
    s = summarize([_fake("svf", [1.0], 1100)])
    assert "svf_over_lora_step_time" not in s and s["variants"]["svf"]["rounds"] == 1


def test_parity_difference_is_the_largest_entry_gap():
    import torch

    from t2bench.bench.train_parity import max_abs_difference

    a = {"x": torch.tensor([1.0, 2.0]), "y": torch.tensor([0.5])}
    b = {"x": torch.tensor([1.0, 2.5]), "y": torch.tensor([0.25])}
    assert max_abs_difference(a, b) == 0.5
    assert max_abs_difference(a, a) == 0.0
    with pytest.raises(ValueError, match="different matrices"):
        max_abs_difference(a, {"x": a["x"]})
