"""The performance table reads the newest benchmark record of each kind and lists its ratios."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from t2bench.ablations import performance as perf
from t2bench.ablations import performance_rows as prow

REPO = Path(__file__).resolve().parents[1]
REAL = REPO / "results" / "bench"


def _prov(commit="a" * 40, created="2026-11-24T05:00:00Z", cpus=2, torch="2.13.0+cpu", **extra):
    return {
        "commit": commit,
        "t2bench": "0.1.0",
        "created_utc": created,
        "machine": {
            "platform": "Linux-x86_64",
            "python": "3.11.7",
            "cpu_count": cpus,
            "torch": torch,
            "torch_threads": cpus,
            "transformers": "5.23.0",
        },
        **extra,
    }


def svf_record(cold=15.0, cached=0.4, compose=0.7, forward=7.0, **prov):
    return {
        "model": "smollm2-135m-instruct",
        "modules": "mlp",
        "matrices": 90,
        "svf_parameters": 51840,
        "svd_modules": "all",
        "svd_matrices": 210,
        "seconds": {
            "svd_cold_all": cold,
            "svd_cached_load_all": cached,
            "compose_all_mlp": compose,
            "restore": 0.02,
            "forward_8x256": forward,
        },
        "ratios": {
            "svd_cold_over_cached": cold / cached,
            "compose_over_forward_8x256": compose / forward,
        },
        "provenance": _prov(**prov),
    }


def _t2_summary(experts, groups, compositions, compose_s):
    return {
        "model_id": "smollm2-135m-instruct",
        "experts": experts,
        "dispatch": {"strategy": "fixed"},
        "dispatch_counts": {e: 10 for e in experts},
        "groups": groups,
        "weight_compositions": compositions,
        "matrices_composed": 90 * compositions,
        "compose_seconds": compose_s,
        "dispatch_seconds": 0.002,
    }


def backend_record(identical=True, hf=100.0, t2=80.0, **prov):
    scores = {"arc_challenge": {"sample_len": 50, "acc,none": 0.26}}
    other = scores if identical else {"arc_challenge": {"sample_len": 50, "acc,none": 0.30}}
    return {
        "model": "smollm2-135m-instruct",
        "batch_size": 8,
        "parity": {
            "tasks": ["arc_challenge"],
            "limit": 50,
            "hf": scores,
            "t2_no_experts": other,
            "identical": identical,
            "seconds": {"hf": 450.0, "t2": 400.0},
        },
        "throughput": {
            "tasks": ["arc_challenge"],
            "limit": 200,
            "repeats": 2,
            "seconds": {"hf": [hf, hf], "t2_fixed": [t2, t2]},
            "median_seconds": {"hf": hf, "t2_fixed": t2},
            "t2_fixed_over_hf_throughput": hf / t2,
            "t2_fixed_scores": scores,
            "t2": _t2_summary(["bench0"], 2, 1, 1.6),
        },
        "alternating_4_experts": {
            "tasks": ["arc_challenge"],
            "limit": 200,
            "seconds": 96.0,
            "t2": _t2_summary(["bench0", "bench1", "bench2", "bench3"], 4, 4, 5.4),
            "one_composition_per_group": True,
        },
        "provenance": _prov(**prov),
    }


def _variant(step, params, optim, peak, overhead):
    return {
        "median_step_seconds": step,
        "step_seconds": [step, step, step],
        "trainable_parameters": params,
        "optimizer_state_bytes": optim,
        "rounds": 1,
        "rss_after_build_kib": 480000,
        "peak_rss_kib": peak,
        "peak_rss_steps_kib": peak,
        "step_overhead_kib": overhead,
    }


def train_step_record(svf=12.0, lora=10.0, **prov):
    return {
        "model": "smollm2-135m-instruct",
        "device": "cpu",
        "batch_shape": [8, 256],
        "adapters": {
            "svf": "one vector per mlp matrix (gate, up, down), z parameterisation",
            "lora": "r16, alpha 32, dropout 0.05 on q_proj, v_proj",
            "ia3": "k_proj, v_proj, down_proj",
        },
        "order": ["svf", "lora", "ia3"],
        "variants": {
            "svf": _variant(svf, 51840, 415080, 6 * 1024 * 1024, 5 * 1024 * 1024),
            "lora": _variant(lora, 921600, 7373280, 4 * 1024 * 1024, 4 * 1024 * 1024),
            "ia3": _variant(9.0, 57600, 461160, 5 * 1024 * 1024, 4 * 1024 * 1024),
        },
        "step_time_over_lora": {"svf": svf / lora, "lora": 1.0, "ia3": 9.0 / lora},
        "svf_over_lora_step_time": svf / lora,
        "goal_svf_over_lora_le_1": svf / lora <= 1,
        "workers": [],
        "provenance": _prov(**prov),
    }


def train_parity_record(dz=0.0, moved=0.003, **prov):
    return {
        "max_abs_dz_1proc_vs_2proc": dz,
        "max_abs_z_minus_1": moved,
        "processes": [1, 2],
        "losses": [[0.1, -0.03], [0.1, -0.03]],
        "rewards": [[0.0, 0.0], [0.0, 0.0]],
        "seconds": {"1proc": 50.0, "2proc": 40.0},
        "provenance": _prov(steps=2, global_batch=4, **prov),
    }


def _dispatch_row(task, strategy, first, second, search=None):
    return {
        "task": task,
        "n": 20,
        "strategy": strategy,
        "score": 0.15,
        "first_pass_s": first,
        "second_pass_s": second,
        "fraction": round(first / second, 4) if strategy != "none" else 0.0,
        "cem_search_s": search,
        "fraction_without_search": round((first - search) / second, 4)
        if search is not None
        else None,
        "dispatch_counts": {"base": 80},
        "wall_seconds": first + second,
        "dispatch": {"strategy": strategy},
    }


def dispatch_record(**prov):
    return {
        "kind": "dispatch-cost",
        "rows": [
            _dispatch_row("arc_challenge", "none", 0.0, 60.0),
            _dispatch_row("arc_challenge", "prompt", 300.0, 40.0),
            _dispatch_row("arc_challenge", "router", 1.0, 50.0),
            _dispatch_row("arc_challenge", "cem", 30.0, 50.0, search=20.0),
        ],
        "args": {"what": "cost"},
        "wall_seconds": 600.0,
        "provenance": _prov(**prov),
    }


def write(folder: Path, name: str, record) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(record if isinstance(record, str) else json.dumps(record))
    return path


def full_dir(tmp_path: Path, **prov) -> Path:
    d = tmp_path / "bench"
    write(d, "svf-20261124T054451Z.json", svf_record(**prov))
    write(d, "backend-20261124T050119Z.json", backend_record(**prov))
    write(d, "train-step-20261124T075441Z.json", train_step_record(**prov))
    write(d, "train-parity-20261124T074734Z.json", train_parity_record(**prov))
    write(d, "dispatch-cost-20261124T105412Z.json", dispatch_record(**prov))
    write(d, "dispatch-cost-20261124T105412Z.md", "| not | json |\n")
    return d


def by_key(table) -> dict[str, dict]:
    return {r["key"]: r for r in table.rows}


# ---------------------------------------------------------------------- extraction


def test_every_kind_gives_its_ratios_with_context(tmp_path):
    t = perf.build(full_dir(tmp_path, commit="0123456789abcdef" * 2 + "01234567"))
    rows = by_key(t)
    assert rows["svf.svd_cold_over_cached"]["ratio"] == pytest.approx(15.0 / 0.4)
    assert rows["svf.svd_cold_over_cached"]["value"] == "15.0 s vs 0.400 s"
    assert rows["svf.svd_cold_over_cached"]["ratio_source"] == "record"
    assert rows["svf.compose_over_forward"]["ratio"] == pytest.approx(0.1)
    assert "8 × 256" in rows["svf.compose_over_forward"]["baseline"]
    assert rows["backend.throughput"]["ratio"] == pytest.approx(100 / 80)
    assert rows["backend.parity_identical"]["value"] == "identical"
    assert rows["backend.compositions_per_group"]["ratio"] == pytest.approx(1.0)
    assert rows["backend.compositions_per_group"]["ratio_source"] == "quotient of recorded values"
    assert rows["backend.compose_share"]["ratio"] == pytest.approx(1.6 / 160)
    assert rows["backend.alternating_over_fixed"]["ratio"] == pytest.approx(96 / 80)
    assert rows["train-step.svf_over_lora"]["ratio"] == pytest.approx(1.2)
    assert rows["train-step.svf_over_lora"]["value"] == "12.0 s vs 10.0 s"
    assert "r16" in rows["train-step.svf_over_lora"]["baseline"]
    assert rows["train-step.ia3_over_lora"]["ratio"] == pytest.approx(0.9)
    assert rows["train-step.params_over_lora"]["ratio"] == pytest.approx(51840 / 921600)
    assert rows["train-step.peak_memory_over_lora"]["ratio"] == pytest.approx(1.5)
    assert rows["train-step.peak_memory_over_lora"]["value"] == "6,144 MiB vs 4,096 MiB"
    assert rows["train-step.step_overhead_over_lora"]["ratio"] == pytest.approx(1.25)
    assert rows["train-parity.max_abs_dz"]["ratio"] == 0.0
    assert "steps 2, global batch 4" in rows["train-parity.max_abs_dz"]["measure"]
    assert rows["train-parity.seconds"]["ratio"] == pytest.approx(0.8)
    # dispatch-cost: one row per strategy with a first pass; the "none" reference run is left out
    assert rows["dispatch-cost.arc_challenge.prompt"]["ratio"] == pytest.approx(7.5)
    assert rows["dispatch-cost.arc_challenge.router"]["ratio"] == pytest.approx(0.02)
    assert rows["dispatch-cost.arc_challenge.cem"]["ratio"] == pytest.approx(0.6)
    assert rows["dispatch-cost.arc_challenge.cem.without_search"]["ratio"] == pytest.approx(0.2)
    assert "dispatch-cost.arc_challenge.none" not in rows
    # provenance columns
    r = rows["svf.svd_cold_over_cached"]
    assert r["commit"] == "0123456789ab"
    assert r["machine"] == "2 CPUs, torch 2.13.0+cpu"
    assert r["created"] == "2026-11-24T05:00:00Z"
    assert r["record"].endswith("svf-20261124T054451Z.json")
    assert r["benchmark"] == "svf"
    # every record used is listed, none with skipped measures, none missing
    assert [u["kind"] for u in t.data["records"]] == list(perf.KINDS)
    assert all(u["skipped"] == {} for u in t.data["records"])
    assert t.data["missing"] == {}


def test_dirty_commit_stays_marked(tmp_path):
    d = tmp_path / "b"
    write(
        d,
        "svf-20261124T054451Z.json",
        svf_record(commit="f88df56851201a5889ff" + "0" * 20 + "+dirty"),
    )
    t = perf.build(d)
    assert by_key(t)["svf.svd_cold_over_cached"]["commit"] == "f88df5685120+dirty"
    assert "uncommitted changes" in t.paragraph


# ---------------------------------------------------------------------- selection


def test_newest_record_of_a_kind_wins(tmp_path):
    d = tmp_path / "b"
    write(d, "train-step-20261124T063926Z.json", train_step_record(svf=20.0, lora=10.0))
    write(d, "train-step-20261124T075441Z.json", train_step_record(svf=11.0, lora=10.0))
    write(d, "train-step-20261123T235959Z.json", train_step_record(svf=30.0, lora=10.0))
    t = perf.build(d)
    r = by_key(t)["train-step.svf_over_lora"]
    assert r["ratio"] == pytest.approx(1.1)
    assert r["record"].endswith("train-step-20261124T075441Z.json")
    entry = next(u for u in t.data["records"] if u["kind"] == "train-step")
    assert sorted(entry["older"]) == [
        "train-step-20261123T235959Z.json",
        "train-step-20261124T063926Z.json",
    ]


def test_same_second_suffix_is_newer_than_the_plain_name(tmp_path):
    # new_record names a second record in the same second "<stem>-<stamp>-1.json"
    d = tmp_path / "b"
    write(d, "svf-20261124T054451Z.json", svf_record(cold=10.0))
    write(d, "svf-20261124T054451Z-1.json", svf_record(cold=20.0))
    assert perf.newest(d, "svf").name == "svf-20261124T054451Z-1.json"
    assert by_key(perf.build(d))["svf.svd_cold_over_cached"]["ratio"] == pytest.approx(50.0)


def test_train_step_prefix_does_not_match_train_parity(tmp_path):
    d = tmp_path / "b"
    # the parity record is newer and its name sorts after any train-step name of the same day
    write(d, "train-step-20261124T063926Z.json", train_step_record(svf=15.0, lora=10.0))
    write(d, "train-parity-20261124T235959Z.json", train_parity_record(dz=1e-6))
    assert [p.name for p in perf.records_of(d, "train-step")] == [
        "train-step-20261124T063926Z.json"
    ]
    t = perf.build(d)
    rows = by_key(t)
    assert rows["train-step.svf_over_lora"]["ratio"] == pytest.approx(1.5)
    assert rows["train-step.svf_over_lora"]["record"].endswith("train-step-20261124T063926Z.json")
    assert rows["train-parity.max_abs_dz"]["record"].endswith("train-parity-20261124T235959Z.json")
    assert rows["train-parity.max_abs_dz"]["ratio"] == pytest.approx(1e-6 / 0.003)
    assert "changes the expert by max |Δz| = 1e-06, 0.000333 of its largest move" in t.paragraph


def test_only_parity_record_leaves_train_step_missing(tmp_path):
    d = tmp_path / "b"
    write(d, "train-parity-20261124T074734Z.json", train_parity_record())
    rows = by_key(perf.build(d))
    assert "train-step.missing" in rows
    assert "train-parity.max_abs_dz" in rows


def test_dispatch_cost_markdown_file_is_ignored(tmp_path):
    d = tmp_path / "b"
    write(d, "dispatch-cost-20261124T105412Z.md", "| task | n |\n|---|---|\n")
    write(d, "other-thing.json", "{}")
    t = perf.build(d)
    assert "dispatch-cost.missing" in by_key(t)
    assert t.data["unrecognised_files"] == ["other-thing.json"]


# ---------------------------------------------------------------------- robustness


def test_missing_kinds_give_a_row_naming_the_command(tmp_path):
    t = perf.build(tmp_path / "does-not-exist")
    assert [r["benchmark"] for r in t.rows] == list(perf.KINDS)
    values = {r["benchmark"]: r["value"] for r in t.rows}
    assert values["svf"] == "no record; run `python -m t2bench.bench.svf (nox -s bench)`"
    assert values["dispatch-cost"] == "no record; run `python -m t2bench.bench.dispatch cost`"
    assert "python -m t2bench.bench.train_parity" in values["train-parity"]
    assert set(t.data["missing"]) == set(perf.KINDS)
    assert "No record yet for" in t.paragraph


def test_missing_keys_skip_only_their_measure(tmp_path):
    d = tmp_path / "b"
    rec = svf_record()
    del rec["ratios"]  # both recorded-ratio rows need it; the restore row does not
    write(d, "svf-20261124T054451Z.json", rec)
    bt = train_step_record()
    del bt["variants"]["ia3"]  # step_time_over_lora still names ia3
    write(d, "train-step-20261124T075441Z.json", bt)
    t = perf.build(d)
    rows = by_key(t)
    assert "svf.svd_cold_over_cached" not in rows
    assert "svf.compose_over_forward" not in rows
    assert rows["svf.restore_over_forward"]["ratio"] == pytest.approx(0.02 / 7.0)
    assert rows["train-step.svf_over_lora"]["ratio"] == pytest.approx(1.2)
    assert "train-step.ia3_over_lora" not in rows
    skipped = {u["kind"]: u["skipped"] for u in t.data["records"]}
    assert set(skipped["svf"]) == {"svd cold vs cached", "compose vs forward"}
    assert "KeyError" in skipped["svf"]["svd cold vs cached"]
    assert set(skipped["train-step"]) == {"other variants' step time"}


def test_record_with_nothing_readable_says_so(tmp_path):
    d = tmp_path / "b"
    write(d, "backend-20261124T050119Z.json", {"provenance": _prov(), "unrelated": 1})
    write(d, "dispatch-cost-20261124T105412Z.json", {"kind": "dispatch-cost"})
    write(d, "svf-20261124T054451Z.json", "{not json")
    write(d, "train-parity-20261124T074734Z.json", "[1, 2]")
    rows = by_key(perf.build(d))
    assert rows["backend.empty"]["measure"] == "no measure could be read"
    assert "parity scores (KeyError" in rows["backend.empty"]["value"]
    assert rows["backend.empty"]["commit"] == "aaaaaaaaaaaa"
    assert rows["dispatch-cost.empty"]["value"].startswith("skipped: (all) (KeyError")
    assert rows["svf.unreadable"]["value"].startswith("JSONDecodeError")
    assert rows["train-parity.unreadable"]["value"] == "ValueError: not a JSON object"


def test_parity_difference_is_reported(tmp_path):
    d = tmp_path / "b"
    write(d, "backend-20261124T050119Z.json", backend_record(identical=False, hf=80.0, t2=100.0))
    t = perf.build(d)
    assert by_key(t)["backend.parity_identical"]["value"] == "differ on arc_challenge"
    assert "not identical to hf's" in t.paragraph
    assert "20.0% slower" in t.paragraph


# ---------------------------------------------------------------------- presentation


def test_markdown_has_one_well_formed_line_per_row(tmp_path):
    t = perf.build(full_dir(tmp_path))
    md = t.markdown()
    lines = [ln for ln in md.splitlines() if ln.startswith("| ")]
    assert len(lines) == 1 + len(t.rows)  # header + rows
    assert all(ln.count("|") == len(perf.COLUMNS) + 1 for ln in lines)
    assert "| svf | SVD of 210 matrices (all): cold vs cached load | 15.0 s vs 0.400 s |" in md
    assert "| 37.500 |" in md
    assert "| train-step | train step, SVF vs LoRA: median seconds" in md
    assert "| 1.200 |" in md


def test_pipes_from_record_names_cannot_break_the_table(tmp_path):
    d = tmp_path / "b"
    rec = dispatch_record()
    rec["rows"][1]["strategy"] = "prompt|odd"
    write(d, "dispatch-cost-20261124T105412Z.json", rec)
    lines = [ln for ln in perf.build(d).markdown().splitlines() if ln.startswith("| ")]
    assert all(ln.count("|") == len(perf.COLUMNS) + 1 for ln in lines)


def test_paragraph_follows_the_numbers_and_provenance(tmp_path):
    t = perf.build(full_dir(tmp_path))  # one commit, one machine
    p = t.paragraph
    assert "SVF's train step takes 1.20× LoRA's" in p
    assert "LoRA is faster per step here" in p
    assert "A cold SVD takes 38× as long as loading the cached one (15.0 s vs 0.400 s)" in p
    assert "1.250× hf's throughput (as fast or faster)" in p
    assert "once per expert group" in p
    assert "max |Δz| = 0" in p
    assert "from 2.0% (router on arc_challenge) to 750.0% (prompt on arc_challenge)" in p
    assert "All records come from commit aaaaaaaaaaaa on one machine" in p
    assert "not comparable" not in p and "absolute times across records are not" not in p

    d = tmp_path / "mixed"
    write(d, "svf-20261124T054451Z.json", svf_record(commit="b" * 40))
    write(d, "train-step-20261124T075441Z.json", train_step_record(svf=9.0, cpus=16))
    p = perf.build(d).paragraph
    assert "at or under LoRA's" in p
    assert "2 commits (aaaaaaaaaaaa, bbbbbbbbbbbb)" in p
    assert "2 machine configurations (16 CPUs, torch 2.13.0+cpu; 2 CPUs, torch 2.13.0+cpu)" in p
    assert "absolute times across records are not" in p

    d = tmp_path / "same-commit-other-machine"
    write(d, "svf-20261124T054451Z.json", svf_record())
    write(d, "backend-20261124T050119Z.json", backend_record(torch="2.13.0+cu128"))
    p = perf.build(d).paragraph
    assert "1 commit (aaaaaaaaaaaa) and 2 machine configurations" in p
    assert "absolute times across records are not" in p


def test_run_reads_results_bench_under_the_working_directory(tmp_path, monkeypatch):
    full_dir(tmp_path)
    (tmp_path / "results").mkdir()
    (tmp_path / "bench").rename(tmp_path / "results" / "bench")
    monkeypatch.chdir(tmp_path)
    t = perf.run(SimpleNamespace(profile=None, folder=tmp_path / "run"))
    assert t.name == perf.NAME == "performance"
    r = by_key(t)["train-step.svf_over_lora"]
    assert r["record"] == "results/bench/train-step-20261124T075441Z.json"
    paths = t.write(tmp_path / "run", {"commit": "x"})
    payload = json.loads(paths[-1].read_text())
    assert [u["record"] for u in payload["data"]["records"]] == [
        f"results/bench/{n}"
        for n in (
            "svf-20261124T054451Z.json",
            "backend-20261124T050119Z.json",
            "train-step-20261124T075441Z.json",
            "train-parity-20261124T074734Z.json",
            "dispatch-cost-20261124T105412Z.json",
        )
    ]


def test_a_train_step_record_with_mode_sections_reads_its_fp32_rl_jobs():
    """Records written since the bench has --mode/--dtypes: a section per mode, jobs per dtype."""
    job = {"median_step_seconds": 4.0, "trainable_parameters": 10, "optimizer_state_bytes": 80}
    rec = {
        "device": "cpu",
        "rl": {
            "step": "8 prompts x 4 samples x up to 12 sampled tokens, group-whitened",
            "variants": {
                "svf/float32/full-logits": job | {"median_step_seconds": 9.0},
                "svf/float32": job | {"median_step_seconds": 6.0},
                "lora/float32": job | {"median_step_seconds": 5.0},
                "ia3/float32": job,
                "svf/bfloat16": job | {"median_step_seconds": 60.0},
            },
        },
    }
    view = prow._step_view(rec)
    assert set(view["variants"]) == {"svf", "lora", "ia3"} and view["dtype"] == "float32"
    assert view["svf_over_lora_step_time"] == pytest.approx(1.2)
    rows, skipped = prow.extract("train-step", rec)
    ratio = next(r for r in rows if r["key"] == "train-step.svf_over_lora")
    assert ratio["ratio"] == pytest.approx(1.2) and "RL step: 8 prompts" in ratio["measure"]
    assert {r["key"] for r in rows} >= {"train-step.ia3_over_lora", "train-step.params_over_lora"}
    assert set(skipped) == {"peak memory", "step memory overhead"}  # the fake jobs have none


# ---------------------------------------------------------------------- the committed records


@pytest.mark.skipif(not REAL.is_dir(), reason="no results/bench in this checkout")
def test_real_records_are_read_in_full(monkeypatch):
    monkeypatch.chdir(REPO)
    t = perf.build(Path("results/bench"))
    rows = by_key(t)
    for u in t.data["records"]:
        assert "error" not in u, u
        assert u["skipped"] == {}, (u["kind"], u["skipped"])
        assert u["rows"] > 0
    newest_step = max(REAL.glob("train-step-*.json"), key=lambda p: p.name, default=None)
    if newest_step is not None:
        rec = prow._step_view(json.loads(newest_step.read_text()))
        r = rows["train-step.svf_over_lora"]
        assert r["ratio"] == pytest.approx(rec["svf_over_lora_step_time"])
        assert r["record"] == f"results/bench/{newest_step.name}"
        assert r["commit"] == prow.short_commit(rec["provenance"]["commit"])
        assert f"| {r['ratio']:.3f} |" in t.markdown()
    newest_svf = max(REAL.glob("svf-*.json"), key=lambda p: p.name, default=None)
    if newest_svf is not None:
        rec = json.loads(newest_svf.read_text())
        assert rows["svf.svd_cold_over_cached"]["ratio"] == pytest.approx(
            rec["ratios"]["svd_cold_over_cached"]
        )
    newest_cost = max(REAL.glob("dispatch-cost-*.json"), key=lambda p: p.name, default=None)
    if newest_cost is not None:
        rec = json.loads(newest_cost.read_text())
        want = {
            (r["task"], r["strategy"]): r["fraction"]
            for r in rec["rows"]
            if r["strategy"] != "none"
        }
        got = {
            (k.split(".")[1], k.split(".")[2]): r["ratio"]
            for k, r in rows.items()
            if k.startswith("dispatch-cost.") and not k.endswith(".without_search")
        }
        assert got == pytest.approx(want)


# ---------------------------------------------------------------------- the table guards


def test_power_comes_from_the_parity_scores_and_expert_rows_claim_their_expert(tmp_path):
    from t2bench.core.tables import ADAPTER_KEY

    t = perf.build(full_dir(tmp_path))
    # the only scores the table compares are the parity run's: n docs and hf's score
    (power,) = t.power
    assert power["n"] == 50 and power["p_base"] == 0.26
    assert "backend parity on arc_challenge" in power["label"] and "acc,none" in power["label"]
    rows = by_key(t)
    for key in ("backend.throughput", "backend.compose_share", "backend.compositions_per_group"):
        assert rows[key][ADAPTER_KEY]["applied"], key
    # rows that time no expert claim none
    assert ADAPTER_KEY not in rows["backend.parity_identical"]
    assert ADAPTER_KEY not in rows["train-step.svf_over_lora"]
    t.write(tmp_path / "out", {"commit": "a" * 40})


def test_a_throughput_timed_without_composing_the_expert_is_refused(tmp_path):
    from t2bench.core.tables import UnappliedAdapterError

    d = tmp_path / "bench"
    rec = backend_record()
    rec["throughput"]["t2"]["weight_compositions"] = 0  # the expert was loaded, never applied
    write(d, "backend-20261124T050119Z.json", rec)
    with pytest.raises(UnappliedAdapterError, match="backend throughput"):
        perf.build(d).write(tmp_path / "out", {"commit": "a" * 40})


def test_without_parity_scores_the_power_record_says_nothing_is_compared(tmp_path):
    d = tmp_path / "bench"
    write(d, "train-step-20261124T075441Z.json", train_step_record())
    (power,) = perf.build(d).power
    assert power["n"] == 0 and "no score is compared here" in power["label"]
