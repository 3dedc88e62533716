"""The training-step benchmark: its workers (next-token and RL steps, fp32 and bf16) on a tiny
local Llama, and its summary (pure)."""

from __future__ import annotations

import pytest
import torch

from t2bench.bench.train_step import (
    _format_table,
    jobs,
    make_batch,
    parser,
    rl_worker,
    run,
    schedule,
    summarize,
    worker,
)
from t2bench.svf.counts import lora_params, svf_params


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("T2BENCH_HOME", str(tmp_path / "home"))  # SVD cache stays in tmp


@pytest.mark.parametrize(
    "variant,dtype,logits",
    [
        ("svf", "float32", "full"),
        ("svf", "bfloat16", "selected"),
        ("svf-lp", "bfloat16", "selected"),
        ("lora", "float32", "selected"),
    ],
)
def test_worker_times_a_real_step(variant, dtype, logits, llama_dir, home):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(llama_dir)
    r = worker(
        variant,
        dtype=dtype,
        logits=logits,
        model=str(llama_dir),
        device="cpu",
        batch=2,
        seq=16,
        warmup=1,
        repeats=1,
    )
    assert (r["dtype"], r["logits"], r["mode"]) == (dtype, logits, "ntp")
    # the trainer's build: the frozen model in the compute dtype, the adapter in fp32
    assert r["frozen_dtypes"] == [f"torch.{dtype}"] and r["trainable_dtypes"] == ["torch.float32"]
    svf = variant.startswith("svf")
    expected = svf_params(config, "mlp") if svf else lora_params(config, 16, "q,v")
    assert r["trainable_parameters"] == expected
    if svf:  # svf-lp forms its change to W in the compute dtype, svf in fp32
        assert r["svf_delta_dtypes"] == [f"torch.{dtype if variant == 'svf-lp' else 'float32'}"]
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


def _items(tmp_path, n: int, target: str):
    """n tiny two-choice items the word-level tokenizer reads, all answered ``target``."""
    import json

    data = tmp_path / "items.jsonl"
    with open(data, "w") as fh:
        for i in range(n):
            fh.write(
                json.dumps({"prompt": f"w{i} w{i + 1}\nA. w1\nB. w2", "target": target}) + "\n"
            )
    return data


def test_rl_worker_times_a_trainer_step(llama_dir, home, tmp_path):

    data = _items(tmp_path, 3, "A")
    r = rl_worker(
        "svf",
        dtype="bfloat16",
        model=str(llama_dir),
        device="cpu",
        prompts=3,
        new_tokens=4,
        data=str(data),
        warmup=1,
        repeats=2,
    )
    assert r["mode"] == "rl" and r["samples_per_step"] == 3 and len(r["step_seconds"]) == 2
    ph = r["phases"]
    assert all(len(ph[k]) == 2 for k in ("generate_s", "logprob_s", "optimizer_s"))
    assert all(1 <= n <= 3 * 4 for n in ph["generated_tokens"])
    # the adapter is put back after each step: every repeat samples the same completions
    assert ph["generated_tokens"][0] == ph["generated_tokens"][1]
    assert ph["sequence_tokens"][0] == ph["sequence_tokens"][1]
    assert torch.isfinite(torch.tensor(r["losses"])).all()
    assert r["items_sha256"] and r["weights_sha256"]


@pytest.mark.parametrize("logits,shared", [("selected", True), ("full", False)])
def test_rl_worker_with_groups_shares_prompts_except_in_the_baseline(
    llama_dir, home, tmp_path, monkeypatch, logits, shared
):

    from t2bench.train import policy as pol

    data = _items(tmp_path, 2, "A")
    calls = []
    real = pol.grouped_logits
    monkeypatch.setattr(pol, "grouped_logits", lambda *a, **k: calls.append(1) or real(*a, **k))
    r = rl_worker(
        "svf",
        logits=logits,
        model=str(llama_dir),
        device="cpu",
        prompts=2,
        group=3,
        new_tokens=3,
        data=str(data),
        warmup=0,
        repeats=1,
    )
    assert r["samples_per_step"] == 6 and r["group"] == 3 and r["shared_prompts"] is shared
    assert bool(calls) is shared  # policy and reference forwards went through the groups
    assert torch.isfinite(torch.tensor(r["losses"])).all()


def test_run_measures_both_modes_in_subprocesses(llama_dir, home, tmp_path):
    """The CLI's jobs: the fp32 full-logits baseline and bf16 SVF, ntp and rl, each a subprocess."""

    data = _items(tmp_path, 2, "B")
    args = ["--model", str(llama_dir), "--device", "cpu", "--mode", "both", "--variants", "svf"]
    args += ["--dtypes", "bfloat16", "--batch", "2", "--seq", "8", "--repeats", "1"]
    args += ["--rl-prompts", "2", "--rl-new-tokens", "2", "--rl-data", str(data), "--no-write"]
    r = run(parser().parse_args(args))
    for mode in ("ntp", "rl"):
        rows = r[mode]["variants"]
        assert set(rows) == {"svf/float32/full-logits", "svf/bfloat16"}
        assert r[mode]["baseline"] == "svf/float32/full-logits"
        assert set(r[mode]["samples_per_s_over_baseline"]) == set(rows)
    assert {w["dtype"] for w in r["workers"] if w["mode"] == "rl"} == {"float32", "bfloat16"}
    assert set(r["rl"]["goal_svf_samples_per_s_ge_3x_baseline"]) == set(r["rl"]["variants"])
    assert r["provenance"]["weights_sha256"] and r["rl"]["items_sha256"]


def test_a_failed_job_is_recorded_and_the_rest_summarised(monkeypatch):
    """A worker killed mid-run (exit -15 on a shared machine) costs its job, not the record."""
    import t2bench.bench.train_step as ts

    def fake(job, args):
        mode, variant, dtype, logits = job
        if dtype == "bfloat16":
            raise RuntimeError(f"worker {'/'.join(job)} failed (exit -15):")
        r = _fake(variant, [2.0 if logits == "full" else 1.0], 1000, dtype=dtype, logits=logits)
        extra = {"model": "m", "device": "cpu", "weights_sha256": "w", "median_step_seconds": 1}
        return r | extra | {"mode": mode, "label": ts.label(variant, dtype, logits)}

    monkeypatch.setattr(ts, "_run_subprocess", fake)
    args = parser().parse_args(["--variants", "svf", "--dtypes", "float32,bfloat16", "--no-write"])
    r = run(args)
    assert [f["job"] for f in r["failed_jobs"]] == ["ntp/svf/bfloat16/selected"]
    assert set(r["ntp"]["variants"]) == {"svf/float32/full-logits", "svf/float32"}
    assert r["ntp"]["samples_per_s_over_baseline"]["svf/float32"] == 2.0


def test_schedule_interleaves():
    assert schedule(["svf", "lora"], 1) == ["svf", "lora"]
    assert schedule(["svf", "lora"], 2) == ["svf", "lora", "lora", "svf"]


def test_jobs_put_the_baseline_first_in_each_mode():
    js = jobs(["svf", "lora"], ["float32", "bfloat16"], ["ntp", "rl"], baseline=True)
    assert js[0] == ("ntp", "svf", "float32", "full") and js[5] == ("rl", "svf", "float32", "full")
    assert ("rl", "lora", "bfloat16", "selected") in js and len(js) == 10
    assert all(j[3] == "selected" for j in jobs(["svf"], ["float32"], ["ntp"], baseline=False))


def _fake(variant, times, peak, build=1000, trainable=10, dtype=None, logits=None):
    r = {
        "variant": variant,
        "step_seconds": times,
        "batch": 8,
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
    # records of the older benchmark have neither key: fp32, selected logits by default
    return r | ({"dtype": dtype} if dtype else {}) | ({"logits": logits} if logits else {})


def test_summarize_ratios_and_memory():
    results = [
        _fake("svf", [1.0, 2.0, 3.0], 1500, trainable=5),
        _fake("lora", [4.0, 4.0, 5.0], 1800),
        _fake("svf", [2.0, 2.5, 9.0], 1600, trainable=5),
        _fake("svf", [8.0], 1700, trainable=5, logits="full"),
        _fake("svf", [1.0], 900, trainable=5, dtype="bfloat16"),
        _fake("lora", [0.5], 900, dtype="bfloat16"),
    ]
    s = summarize(results)
    rows = s["variants"]
    svf, lora = rows["svf/float32"], rows["lora/float32"]
    assert svf["median_step_seconds"] == 2.25 and svf["rounds"] == 2
    assert lora["median_step_seconds"] == 4.0
    assert svf["samples_per_s"] == pytest.approx(8 / 2.25)
    # the baseline is fp32 SVF with full logits (8 s a step): everything is compared to it
    assert s["baseline"] == "svf/float32/full-logits"
    over = s["samples_per_s_over_baseline"]
    assert over["svf/float32/full-logits"] == 1.0
    assert over["svf/float32"] == pytest.approx(8.0 / 2.25)
    assert over["svf/bfloat16"] == pytest.approx(8.0)
    assert s["svf_over_lora_step_time"] == {
        "float32": pytest.approx(2.25 / 4.0),
        "bfloat16": pytest.approx(2.0),
    }
    assert s["goal_svf_over_lora_le_1"] == {"float32": True, "bfloat16": False}
    assert svf["peak_rss_kib"] == 1600 and svf["step_overhead_kib"] == 600
    assert svf["trainable_parameters"] == 5 and svf["optimizer_state_bytes"] == 40
    table = _format_table(s)
    assert "svf/float32" in table and "lora/bfloat16" in table and "full-logits" in table


def test_summarize_states_svf_lp_over_lora_in_the_lower_dtype_only():
    results = [
        _fake("lora", [4.0], 1800, dtype="bfloat16"),
        _fake("svf", [5.0], 1800, dtype="bfloat16"),
        _fake("svf-lp", [3.0], 1800, dtype="bfloat16"),
        _fake("svf-lp", [6.0], 1800),
        _fake("lora", [4.0], 1800),
    ]
    s = summarize(results)
    assert s["svf_over_lora_step_time"] == {
        "bfloat16": pytest.approx(1.25),
        "bfloat16, svf-lp": pytest.approx(0.75),
    }
    assert s["goal_svf_over_lora_le_1"] == {"bfloat16": False, "bfloat16, svf-lp": True}


def test_summarize_without_lora_or_baseline_has_no_ratio():
    s = summarize([_fake("ia3", [1.0], 1100)])
    assert "svf_over_lora_step_time" not in s and "samples_per_s_over_baseline" not in s
    assert s["variants"]["ia3/float32"]["rounds"] == 1


def test_parity_difference_is_the_largest_entry_gap():
    import torch

    from t2bench.bench.train_parity import max_abs_difference

    a = {"x": torch.tensor([1.0, 2.0]), "y": torch.tensor([0.5])}
    b = {"x": torch.tensor([1.0, 2.5]), "y": torch.tensor([0.25])}
    assert max_abs_difference(a, b) == 0.5
    assert max_abs_difference(a, a) == 0.0
    with pytest.raises(ValueError, match="different matrices"):
        max_abs_difference(a, {"x": a["x"]})
