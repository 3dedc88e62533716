"""Ablation plumbing on fake data: statistics, table files, score assembly, the run index."""

from __future__ import annotations

import json

import pytest

from t2bench.ablations import MODULES, SHORT, select, write_index
from t2bench.ablations import table2_unseen as t2
from t2bench.ablations import table4_params as t4
from t2bench.ablations.context import AblationContext
from t2bench.ablations.profile import CPU, PAPER, SMOKE, get_profile
from t2bench.core.stats import accuracy, paired_bootstrap, verdict, wilson
from t2bench.core.tables import Table
from t2bench.errors import ConfigError


def test_wilson_known_values_and_edges():
    lo, hi = wilson(0, 10)
    assert lo == 0 and 0.27 < hi < 0.28  # the textbook 0/10 interval is [0, 0.278]
    lo, hi = wilson(5, 10)
    assert 0.23 < lo < 0.24 and 0.76 < hi < 0.77
    assert accuracy([1, 0, 1, 1])["score"] == 0.75


def test_paired_bootstrap_sees_a_real_difference_and_no_difference():
    base = [0] * 30 + [1] * 30
    better = [1] * 30 + [1] * 30  # wins on every item base got wrong
    d = paired_bootstrap(base, better, iters=2000)
    assert d["diff"] == pytest.approx(0.5) and d["ci_low"] > 0.3 and d["wins"] == 30
    assert verdict(d) == "supports" and verdict(d, -1) == "contradicts"
    same = paired_bootstrap(base, base, iters=2000)
    assert same["diff"] == 0 and same["p_bootstrap"] == 1.0 and verdict(same) == "inconclusive"
    noisy = paired_bootstrap([0, 1] * 10, [1, 0] * 10, iters=2000)
    assert noisy["ci_low"] < 0 < noisy["ci_high"] and verdict(noisy) == "inconclusive"
    with pytest.raises(ValueError, match="equally many"):
        paired_bootstrap([1, 0], [1])


def test_bootstrap_is_seeded():
    a, b = [0, 1, 0, 1, 1, 0, 0, 1], [1, 1, 0, 1, 1, 1, 0, 0]
    assert paired_bootstrap(a, b, seed=3) == paired_bootstrap(a, b, seed=3)


def test_table_writes_three_files_and_never_overwrites(tmp_path):
    from t2bench.core.stats import power_record

    t = Table("t", "Title", ["a", "b"], [{"a": 1, "b": 0.5}, {"a": 2, "b": None}], "cap", "para")
    t.power = [power_record("task", 50, 0.5)]  # a table must state its power to be written
    paths = t.write(tmp_path, {"commit": "x"})
    assert [p.suffix for p in paths] == [".md", ".csv", ".json"]
    md = (tmp_path / "t.md").read_text()
    assert "| 1 | 0.500 |" in md and md.strip().endswith("para")
    assert (tmp_path / "t.csv").read_text().splitlines() == ["a,b", "1,0.5", "2,"]
    assert json.loads((tmp_path / "t.json").read_text())["provenance"] == {"commit": "x"}
    with pytest.raises(FileExistsError):
        t.write(tmp_path, {})


def test_assemble_takes_each_docs_score_from_the_chosen_run():
    runs = {
        "base": {"doc_ids": [0, 1, 2], "scores": [0, 0, 1]},
        "math-svf-pg": {"doc_ids": [0, 1, 2], "scores": [1, 1, 0]},
    }
    choice = {"strategy": "x", "doc_ids": [0, 1, 2], "keys": ["math-svf-pg", "base", "math-svf-pg"]}
    assert t2.assemble(choice, runs) == [1, 0, 0]
    with pytest.raises(RuntimeError, match="chose 'code-svf-pg'"):
        t2.assemble({"strategy": "x", "doc_ids": [0], "keys": ["code-svf-pg"]}, runs)


def test_llama3_8b_counts_reproduce_the_papers():
    for (method, modules), stated in t4.PAPER_COUNTS.items():
        assert t4.llama_count(method, modules) == stated, (method, modules)
    # TinyLoRA beyond the paper: one tied 13-vector; 4 per MLP matrix (32 layers x 3 matrices)
    assert t4.llama_count("TinyLoRA u=13 tied", "mlp", "tinylora-pg-u13-tied") == 13
    assert t4.llama_count("TinyLoRA u=4", "mlp", "tinylora-pg-u4") == 4 * 96


def test_select_and_profiles():
    assert select("table1,transfer") == ["table1_training", "transfer"]
    assert len(select(None)) == 11
    # short names do not collide: every module has its own
    assert len(SHORT) == len(MODULES)
    assert select("seal,forgetting,squad") == ["seal", "forgetting", "squad"]
    with pytest.raises(ConfigError, match="unknown ablation.*table9"):
        select("table9")
    with pytest.raises(ConfigError, match="unknown profile 'gpu'"):
        get_profile("gpu")
    assert PAPER.model and "Llama-3-8B" in PAPER.model and PAPER.same_shape_target
    assert set(CPU.unseen) == set(CPU.lora_for)
    assert set(CPU.unseen) | set(CPU.cost_tasks) == set(CPU.cem) == set(CPU.max_gen_toks)
    # Table 2 scores tasks with signal at 135M, Table 3 times the paper's tasks
    assert set(CPU.unseen) == {"sciq", "t2_basic_arithmetic", "t2_basic_coding"}
    assert CPU.timed_tasks == CPU.cost_tasks and "arc_challenge" in CPU.timed_tasks


def test_memo_is_written_as_it_goes_and_read_back_on_resume(tmp_path):
    ctx = AblationContext(CPU, tmp_path / "run")
    calls = []
    ctx.remember("k", lambda: calls.append(1) or {"scores": [1, 0]})
    assert ctx.remember("k", lambda: calls.append(1) or {"scores": [9]})["scores"] == [1, 0]
    again = AblationContext(CPU, tmp_path / "run", resume=True)
    assert again.remember("k", lambda: calls.append(1) or {})["scores"] == [1, 0]
    assert calls == [1]
    with pytest.raises(FileExistsError):
        AblationContext(CPU, tmp_path / "run")  # a new run never reuses a folder


def test_memo_drops_a_record_cut_by_a_kill_and_computes_it_again(tmp_path):
    ctx = AblationContext(CPU, tmp_path / "run")
    ctx.remember("a", lambda: {"scores": [1]})
    ctx.remember("b", lambda: {"scores": [0]})
    data = ctx.memo_path.read_bytes()
    ctx.memo_path.write_bytes(data[:-10])  # killed while "b" was being written
    again = AblationContext(CPU, tmp_path / "run", resume=True)
    assert list(again.memo) == ["a"]
    assert again.remember("b", lambda: {"scores": [0, 1]})["scores"] == [0, 1]
    keys = [json.loads(x)["key"] for x in again.memo_path.read_text().splitlines()]
    assert keys == ["a", "b"]


def test_resume_keeps_a_whole_table_and_drops_one_without_its_json(tmp_path):
    from t2bench.ablations import published
    from t2bench.core.stats import power_record

    t = Table("t", "Title", ["a"], [{"a": 1}], power=[power_record("task", 50, 0.5)])
    t.write(tmp_path, {"commit": "x", "wall_seconds": 1.5})
    status, section = published(tmp_path, "t")
    assert status["ok"] and status["seconds"] == 1.5 and section == t.markdown()
    assert status["files"] == ["t.md", "t.csv", "t.json"]
    (tmp_path / "t.json").unlink()  # killed before the JSON, which is written last
    assert published(tmp_path, "t") is None
    assert not any(tmp_path.iterdir())  # its Markdown and CSV are gone: it is written again
    t.write(tmp_path, {"commit": "x"})


def _fake_run(root, name, ok=True, modules=7):
    folder = root / name
    folder.mkdir(parents=True)
    status = {f"m{i}": {"ok": ok or i > 0} for i in range(modules)}
    summary = {
        "profile": "cpu",
        "modules": [f"m{i}" for i in range(modules)],
        "status": status,
        "wall_seconds": 600,
        "provenance": {"commit": "abcdef1234567"},
    }
    (folder / "run.json").write_text(json.dumps(summary))


def test_index_points_to_the_newest_complete_run(tmp_path):
    _fake_run(tmp_path, "cpu-20260101T000000Z")
    _fake_run(tmp_path, "cpu-20260102T000000Z", ok=False)
    _fake_run(tmp_path, "cpu-20260103T000000Z", modules=2)
    text = write_index(tmp_path).read_text()
    assert "Latest complete run: [cpu-20260101T000000Z]" in text
    assert "failed: m0" in text and text.count("/README.md) | cpu |") == 3
    # each table points at the newest run that produced it: m0 and m1 come from the 2-table run
    assert "| m1 | [cpu-20260103T000000Z](cpu-20260103T000000Z/m1.md) |" in text
    assert "| m5 | [cpu-20260102T000000Z](cpu-20260102T000000Z/m5.md) |" in text


def _row(task, variant, base, other):
    from t2bench.ablations.table1_training import row

    return row(task, variant, {"scores": other}, {"scores": base} if base else None, 2000, 0)


def test_table1_paragraph_follows_the_numbers():
    from t2bench.ablations.table1_training import paragraph

    base, good = [0] * 40 + [1] * 10, [1] * 50
    rows = []
    # table 1's rows name the trainer's task; the split each scores is its own column
    for task in ("math", "code", "reasoning"):
        rows += [_row(task, "base", None, base), _row(task, "LoRA (NTP)", base, base)]
        rows.append(_row(task, "SVF (PG)", base, good if task == "math" else base))
    text = paragraph(rows, 0.0123)
    assert "math: SVF +80.0" in text and "(supports for SVF > base)" in text
    assert "significant on 1 of 3 tasks" in text and "1.23%" in text


def test_table3_paragraph_compares_with_the_papers_ratio():
    from t2bench.ablations.table3_cost import paragraph

    rows = [
        {
            "task": "ARC-Challenge",
            "strategy": "prompt",
            "ratio": 0.9,
            "first / second": "90.0%",
            "paper (prompt)": "47%",
        },
        {
            "task": "ARC-Challenge",
            "strategy": "router",
            "ratio": 0.02,
            "first / second": "2.0%",
            "paper (prompt)": "",
        },
        {
            "task": "MATH",
            "strategy": "prompt",
            "ratio": 0.05,
            "first / second": "5.0%",
            "paper (prompt)": "13%",
        },
    ]
    text = paragraph(rows)
    assert "90% on ARC-Challenge (above the paper's 47%)" in text
    assert "5% on MATH (below the paper's 13%)" in text
    assert "Cheapest first pass: router on ARC-Challenge" in text
    assert "Reusing" not in text  # no before rows, no claim about them
    before = {
        "task": "ARC-Challenge",
        "strategy": "prompt (before: layout=question-first;reuse=false)",
        "ratio": 1.4,
        "first / second": "140.0%",
        "paper (prompt)": "",
    }
    text = paragraph([*rows, before])
    assert "prompt on ARC-Challenge 140.0% → 90.0%" in text


@pytest.mark.real
def test_smoke_profile_writes_a_complete_table_with_provenance(tmp_path, monkeypatch):
    """Table 1 end to end on the real model with a few items (opt-in: pytest --real)."""
    from t2bench.ablations import run_all

    monkeypatch.setenv("HF_ALLOW_CODE_EVAL", "1")  # the MBPP reward runs model-written code
    # allow_dirty: the test must not depend on the developer's git state (CI is clean)
    folder = run_all("smoke", only="table1", out=tmp_path, allow_dirty=True)
    payload = json.loads((folder / "table1-training-tasks.json").read_text())
    assert {r["task"] for r in payload["rows"]} == {"math", "code", "reasoning"}
    prov = payload["provenance"]
    assert prov["model_fingerprint"]["sha256_weights"] and prov["profile"]["name"] == "smoke"
    assert prov["wall_seconds"] > 0 and "What this shows" in payload["paragraph"]
    # the guards: power per task, and every adapter row proved that its adapter was applied
    labels = [p["label"] for p in payload["power"]]
    assert [x.split(" ")[0] for x in labels] == ["math", "code", "reasoning", "reasoning"]
    assert "arc_easy, log-likelihood" in labels[3]  # the knowledge scoring has its own power
    adapters = [r for r in payload["rows"] if r["variant"] != "base"]
    assert adapters and all(r["adapter_claim"]["applied"] for r in adapters)
    # 3 tasks x 3 variants held out, and reasoning's 3 variants by log-likelihood (arc_easy)
    assert (folder / "evaluations.jsonl").read_text().count("\n") == 12
    index = (tmp_path / "README.md").read_text()
    assert folder.name in index


def test_alpha_description_names_no_expert_on_a_tie():
    from t2bench.ablations.alpha import describe_alpha

    names = ["code-svf-pg", "math-svf-pg", "reasoning-svf-pg"]
    tie = {"alpha": [1 / 3] * 3, "expert_names": names, "shot score": 0.0}
    assert describe_alpha(tie).startswith("α stayed uniform")
    moved = {"alpha": [0.1, 0.2, 0.7], "expert_names": names, "shot score": 0.4}
    assert describe_alpha(moved).startswith(
        "largest α on reasoning, max distance from uniform 0.37"
    )


def test_every_profile_task_is_a_leaf_task_of_the_offline_folder():
    """Per-document scores are read per lm-eval task: a group (minerva_math) would not work."""
    from t2bench.ablations.profile import PROFILES
    from t2bench.tasks import tasks_dir

    for prof in PROFILES.values():
        for task in [*prof.unseen, *prof.timed_tasks, prof.transfer_task]:
            text = (tasks_dir() / f"{task}.yaml").read_text()
            assert "group:" not in text, (prof.name, task)
        assert set(prof.unseen) == set(prof.lora_for)
        assert set(prof.unseen) | set(prof.timed_tasks) == set(prof.cem) == set(prof.max_gen_toks)


def test_vlm_paragraph_follows_the_numbers():
    from t2bench.ablations.vlm import paragraph
    from t2bench.core.stats import paired_bootstrap

    base, better = [0] * 30 + [1] * 20, [1] * 50

    def row(name, scores, with_diff=True):
        r = {"variant": name, "VQA accuracy": sum(scores) / len(scores)}
        if with_diff:
            r["diff"] = paired_bootstrap(base, scores, iters=2000, seed=0)
        return r

    untrained = row("assembled, vision side untrained", [0] * 50, False)
    rows = [untrained, row("base (vision side pre-trained)", base, False)]
    rows += [row("SVF expert (PG)", better), row("LoRA (NTP)", base)]
    text = paragraph(rows, untrained, {"overall": 0.027})
    assert "from 0.000 (untrained vision side) to 0.400" in text
    assert "+150% relative; supports for SVF > base" in text
    assert "inconclusive for LoRA > base" in text


def test_provenance_credits_the_commit_the_run_started_from(tmp_path, monkeypatch):
    import t2bench.ablations.context as context

    commits = iter(["aaa", "bbb", "bbb"])
    monkeypatch.setattr(context, "git_commit", lambda: next(commits))
    ctx = context.AblationContext(SMOKE, tmp_path / "run")
    prov = ctx.provenance(wall_seconds=1.0)
    # a commit made while the run went on is recorded beside it, never in its place
    assert prov["commit"] == "aaa" and prov["commit_when_written"] == "bbb"


def test_heldout_scores_the_variant_on_the_profile_items_and_remembers_it(tmp_path, monkeypatch):
    """``ctx.heldout`` goes through ``train.heldout.score_variant`` (a renamed scorer broke the
    real-model smoke run once; this catches it without the model)."""
    import t2bench.train.heldout as heldout
    from t2bench.train.heldout import Variant

    seen = []

    def fake_score(variant, model_name, items, task, new_tokens, batch, applied=None, **kw):
        seen.append((variant.name, task, len(items)))
        applied.update({"applied": True, "applied_evidence": "fake"})
        return [i % 2 == 0 for i in range(len(items))]

    monkeypatch.setattr(heldout, "score_variant", fake_score)
    ctx = AblationContext(SMOKE, tmp_path / "run")
    task = next(iter(SMOKE.heldout_n))
    rec = ctx.heldout(task, Variant("base", "base"))
    n = SMOKE.heldout_n[task]
    assert seen == [("base", task, n)]
    assert rec["scores"] == [1, 0] * (n // 2) + [1] * (n % 2)
    assert len(rec["uids"]) == n and rec["applied"] is True
    assert ctx.heldout(task, Variant("base", "base")) == rec and len(seen) == 1


def test_progress_estimates_come_from_the_newest_earlier_timing_of_each_table(tmp_path):
    from t2bench.ablations import earlier_seconds, remaining

    def run(name, status):
        (tmp_path / name).mkdir()
        (tmp_path / name / "run.json").write_text(json.dumps({"status": status}))

    run(
        "cpu-20260101T000000Z",
        {"t1": {"ok": True, "seconds": 600}, "t2": {"ok": True, "seconds": 60}},
    )
    run("cpu-20260102T000000Z", {"t1": {"ok": True, "seconds": 1200}, "t3": {"ok": False}})
    run("paper-20260103T000000Z", {"t1": {"ok": True, "seconds": 9}})  # another profile
    seen = earlier_seconds(tmp_path, "cpu")
    assert seen == {"t1": 1200.0, "t2": 60.0}  # t1's newest timing; t3 failed: not a timing
    assert remaining(["t1", "t2"], seen) == "about 21 min left for 2 table(s) by earlier runs"
    assert remaining(["t2", "t3"], seen).endswith("plus 1 never timed before")
    assert remaining(["t3"], seen) == "1 table(s) left, none timed before"
    assert remaining([], seen) == "nothing left"
    # a run of another configuration (other n) is no basis for an estimate
    run("cpu-20260104T000000Z", {"t1": {"ok": True, "seconds": 5}})
    summary = json.loads((tmp_path / "cpu-20260104T000000Z" / "run.json").read_text())
    summary["provenance"] = {"profile": {"name": "cpu", "heldout_n": {"math": 1000}}}
    (tmp_path / "cpu-20260104T000000Z" / "run.json").write_text(json.dumps(summary))
    assert earlier_seconds(tmp_path, "cpu")["t1"] == 5.0  # without a configuration: newest
    same = {"name": "cpu", "heldout_n": {"math": 1000}}
    assert earlier_seconds(tmp_path, "cpu", same) == {"t1": 5.0}
    assert earlier_seconds(tmp_path, "cpu", same | {"heldout_n": {"math": 32}}) == {}


def test_cpu_profile_is_designed_for_power():
    """Whole test sets where they exist, >= 1000 generated items, >= 5 shuffled-σ seeds on a
    task above chance; the MDD each n gives at a 50% base rate is what the tables will state."""
    from t2bench.core.stats import minimum_detectable_difference

    assert CPU.heldout_n == {"reasoning": None, "math": 1000, "code": None}
    assert CPU.heldout_difficulty == {"math": "mix"}  # the math expert's own distribution
    assert CPU.transfer_task == "sciq" and CPU.transfer_n is None
    assert len(CPU.shuffle_seeds) >= 5
    assert all(n is None for n in CPU.unseen.values())
    # ARC-Easy's 2376 items resolve < 5 points at any base rate; 1000 items about 6
    assert minimum_detectable_difference(2376, 0.5) < 0.05
    assert 0.05 < minimum_detectable_difference(1000, 0.5) < 0.07


def test_heldout_reads_the_profiles_difficulty(tmp_path, monkeypatch):
    from t2bench.train import heldout

    asked = []

    def items(task, n, seed=0, difficulty="default"):
        asked.append((task, n, difficulty))
        return [], {"task": task}

    monkeypatch.setattr(heldout, "heldout_items", items)
    monkeypatch.setattr(heldout, "score_variant", lambda *a, **k: [])
    ctx = AblationContext(CPU.with_overrides(heldout_n={"math": 7}), tmp_path / "run")
    ctx.heldout("math", heldout.Variant("base", "base"))
    assert asked == [("math", 7, "mix")]


def test_heldout_computes_in_the_profiles_dtype_and_keeps_fp32_and_bf16_apart(
    tmp_path, monkeypatch
):
    """The CPU profile generates in bf16 where the CPU has it (``auto``); an fp32 and a bf16
    evaluation of the same variant are two memo entries, and an fp32 run keeps the memo key
    it always had (so an interrupted fp32 run still resumes)."""
    from t2bench.train import heldout, policy

    dtypes = []

    def score(*a, compute_dtype="float32", **k):
        dtypes.append(compute_dtype)
        return []

    monkeypatch.setattr(heldout, "heldout_items", lambda *a, **k: ([], {"task": "math"}))
    monkeypatch.setattr(heldout, "score_variant", score)
    monkeypatch.setattr(policy, "bf16_pays", lambda device: True)
    assert CPU.compute_dtype == "auto"
    base = heldout.Variant("base", "base")
    ctx = AblationContext(CPU.with_overrides(heldout_n={"math": 7}), tmp_path / "run")
    rec = ctx.heldout("math", base)
    assert rec["compute_dtype"] == "bfloat16" and rec["key"].endswith("|bfloat16")
    fp32 = ctx.profile.with_overrides(compute_dtype="float32")
    ctx.profile = fp32
    rec32 = ctx.heldout("math", base)
    assert rec32["key"] == "heldout|math|mix|7|base|None"
    assert dtypes == ["bfloat16", "float32"]
    monkeypatch.setattr(policy, "bf16_pays", lambda device: False)
    ctx2 = AblationContext(CPU.with_overrides(heldout_n={"math": 7}), tmp_path / "run2")
    assert ctx2.heldout("math", base)["compute_dtype"] == "float32"


def test_every_lm_eval_task_of_a_profile_has_a_per_document_metric():
    """ctx.lmeval reads per-document scores by metric: a task without one fails only after
    its whole evaluation ran."""
    from t2bench.ablations.profile import PROFILES
    from t2bench.bench.dispatch import metric_of

    for prof in PROFILES.values():
        knowledge = [task for task, _ in prof.knowledge.values()]
        gen = list(prof.generation.values())
        for task in [*prof.unseen, *prof.timed_tasks, prof.transfer_task, *knowledge, *gen]:
            assert metric_of(task), (prof.name, task)
    assert metric_of("sciq") == metric_of("t2_basic_coding") == "acc"
    # Table 2's unseen tasks are also scored by generation on the CPU profile
    assert set(CPU.generation) == set(CPU.unseen)
    assert {metric_of(t) for t in CPU.generation.values()} == {"exact_match"}


def test_cpu_profile_scores_the_retrained_vlm_experts():
    """The CPU VLM row uses the cpu-groups retrain (the text experts' signal and budget), never
    the 48-step experts-chars runs; the smoke profile keeps the committed experts-chars runs so
    it runs on any checkout."""
    from t2bench.vlm.recipes import EXPERTS_DIR, PROFILE_DIRS

    assert CPU.vlm_experts == str(PROFILE_DIRS["cpu-groups"])
    assert SMOKE.vlm_experts == str(EXPERTS_DIR)
    assert (EXPERTS_DIR / "vqa-svf-pg" / "summary.json").is_file()


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_lmeval_runs_compute_in_the_profile_dtype_and_key_it(tmp_path, monkeypatch, dtype):
    """bf16 lm-eval runs name their dtype in the model arguments and so in the memo key (a run
    resumed on a machine without bf16 recomputes instead of mixing dtypes); fp32 keeps the
    arguments, and so the keys of runs written before the dtype was configurable."""
    import t2bench.bench.dispatch as dispatch

    seen = []

    def fake_run(model_args, task, n, gen, batch_size):
        seen.append(model_args)
        return {
            "per_doc": {0: 1.0},
            "metric": "acc",
            "filter": "none",
            "score": 1.0,
            "t2": {},
            "wall_seconds": 0.1,
        }

    monkeypatch.setattr(dispatch, "run_lm_eval", fake_run)
    ctx = AblationContext(CPU.with_overrides(lmeval_dtype=dtype), tmp_path / "run")
    rec = ctx.lmeval("sciq", "dispatch=none", n=1, label="base")
    want = "dispatch=none" if dtype == "float32" else f"dispatch=none,dtype={dtype}"
    assert seen == [want] and rec["model_args"] == want and rec["key"].endswith(want)
    assert rec["dtype"] == dtype and ctx.provenance()["lmeval_dtype"] == dtype


def test_first_passes_load_the_base_model_in_the_lmeval_dtype(tmp_path, monkeypatch):
    import t2bench.models as models

    loaded = []
    monkeypatch.setattr(models, "load_model", lambda model, dtype="float32": loaded.append(dtype))
    ctx = AblationContext(CPU.with_overrides(lmeval_dtype="bfloat16"), tmp_path / "run")
    ctx.shared_lm()
    assert loaded == ["bfloat16"]
