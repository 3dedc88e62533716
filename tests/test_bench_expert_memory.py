"""The expert-memory benchmark: its jobs, synthetic experts, /proc parsing, and one worker job
end to end on a tiny model (no thresholds: memory figures depend on the machine)."""

from __future__ import annotations

import pytest
import torch

from t2bench.bench import expert_memory as em
from t2bench.models import load_model
from t2bench.svf import TargetSpec, decompose, identity_expert, load_expert, save_expert

pytest.importorskip("lm_eval")


@pytest.fixture
def tiny_expert(llama_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("T2BENCH_HOME", str(tmp_path / "home"))
    lm = load_model(str(llama_dir))
    d = decompose(lm.model, TargetSpec("mlp"), model_id=lm.model_id, progress=False)
    e = identity_expert(d, name="real")
    e.params = {k: v * 1.3 for k, v in e.params.items()}
    return save_expert(e, tmp_path / "real")


def test_jobs_cover_base_loaded_and_every_snapshot_per_count():
    assert em.jobs([1, 4], ["device", "disk"]) == [
        ("base", 0, "device"),
        ("loaded", 1, "device"),
        ("applied", 1, "device"),
        ("applied", 1, "disk"),
        ("loaded", 4, "device"),
        ("applied", 4, "device"),
        ("applied", 4, "disk"),
    ]


def test_synthetic_experts_are_labelled_and_differ_only_in_values(tiny_expert, tmp_path):
    made = em.synthetic_experts(tiny_expert, 3, tmp_path / "synth", seed=0)
    real = load_expert(tiny_expert)
    experts = [load_expert(m["path"]) for m in made]
    assert [e.meta.name for e in experts] == ["real-synth01", "real-synth02", "real-synth03"]
    for e in experts:
        assert e.meta.provenance["kind"].startswith("synthetic")
        assert e.meta.shapes == real.meta.shapes
        assert not all(torch.equal(e.params[k], real.params[k]) for k in real.params)
    assert not torch.equal(*(experts[i].params["layers.0.up"] for i in (0, 1)))


def test_rss_by_mapping_sorts_resident_pages_by_what_is_mapped():
    smaps = "\n".join(
        [
            "7f00-7f10 r--p 00000000 08:01 12 /cache/models/m/model.safetensors",
            "Rss:                2048 kB",
            "Anonymous:          1024 kB",
            "VmFlags: rd mr mw me",
            "7f10-7f20 r--p 00000000 08:01 13 /home/.cache/t2bench/svd/svd-v1/ab/ab.safetensors",
            "Rss:                1024 kB",
            "Anonymous:             0 kB",
            "5500-5600 rw-p 00000000 00:00 0                          [heap]",
            "Rss:                3072 kB",
            "Anonymous:          3072 kB",
            "7f30-7f40 rw-p 00000000 00:00 0 ",
            "Rss:                1024 kB",
            "Anonymous:          1024 kB",
            "7f40-7f50 r-xp 00000000 08:01 14 /usr/lib/libtorch.so",
            "Rss:                 512 kB",
            "Anonymous:             0 kB",
        ]
    )
    assert em.rss_by_mapping(smaps) == {
        "model files": {"rss_mib": 2.0, "anon_mib": 1.0},
        "svd cache files": {"rss_mib": 1.0, "anon_mib": 0.0},
        "anonymous": {"rss_mib": 4.0, "anon_mib": 4.0},
        "libraries and other files": {"rss_mib": 0.5, "anon_mib": 0.0},
    }


@pytest.mark.parametrize("snapshot", ["device", "disk"])
def test_a_worker_job_applies_restores_and_accounts_the_snapshot(
    llama_dir, tiny_expert, tmp_path, snapshot
):
    synth = [m["path"] for m in em.synthetic_experts(tiny_expert, 1, tmp_path / "s", seed=0)]
    spec = {
        "model": str(llama_dir),
        "device": "cpu",
        "batch_size": 2,
        "requests": 4,
        "job": "applied",
        "experts": [str(tiny_expert), *synth],
        "snapshot": snapshot,
    }
    r = em.worker(spec)
    assert r["restored_bit_exact"] and r["weight_compositions"] == 2  # both experts, in turn
    assert set(r["phases"]) == {"start", "build", "requests", "restore"}
    adapted = r["held_mib"]["adapted_matrices"]
    assert r["held_mib"]["snapshot"] == (adapted if snapshot == "device" else {})
    loaded = em.worker({**spec, "job": "loaded"})
    assert loaded["weight_compositions"] == 0 and loaded["held_mib"]["snapshot"] == {}
    base = em.worker({**spec, "job": "base", "experts": []})
    assert base["scores_sha256"] == loaded["scores_sha256"] != r["scores_sha256"]
    rows = [base, loaded, r]
    summary = em.summarize(rows)
    assert summary["all_restores_bit_exact"] and summary["loaded_scores_equal_base"]
    assert set(summary["peak_rss_mib"]) == {
        "base model",
        "2 loaded",
        f"2 applied, snapshot={snapshot}",
    }


def test_summary_flags_scores_that_differ_between_snapshot_options():
    def row(job, n, snapshot, scores, restored=True):
        phase = {"peak_rss_mib": 100.0 + n}
        return {
            "job": job,
            "experts": n,
            "snapshot": snapshot,
            "phases": {"start": {}, "build": phase, "requests": phase},
            "scores_sha256": scores,
            "restored_bit_exact": restored,
        }

    rows = [
        row("base", 0, None, "b"),
        row("applied", 4, "device", "x"),
        row("applied", 4, "disk", "y", restored=False),
    ]
    s = em.summarize(rows)
    assert s["applied_scores_identical_across_snapshots"] == {"4": False}
    assert not s["all_restores_bit_exact"]
    assert s["peak_over_base_mib"]["4 applied, snapshot=disk"] == 4.0
