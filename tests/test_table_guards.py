"""What a published table must prove before it is written (``report.tables.Table.check``), and
that the ablation modules give their tables that proof: power per task and, for every row that
names an adapter, the record that the adapter was applied."""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace

import pytest

from t2bench.core.stats import paired_difference, power_record
from t2bench.core.tables import (
    ADAPTER_KEY,
    DirtyCheckoutError,
    Table,
    UnappliedAdapterError,
    UnpoweredTableError,
    adapter_claim,
)

CLEAN = {"commit": "a" * 40}


def _table(rows, power=True) -> Table:
    return Table(
        "t",
        "T",
        ["variant", "score"],
        rows,
        power=[power_record("task", 100, 0.5)] if power else [],
    )


# --------------------------------------------------------------------------- the guards


def test_a_row_whose_expert_was_never_composed_is_refused(tmp_path):
    """The VLM bug: the SVF row passed experts= without dispatch=, so the backend loaded the
    expert and evaluated the base model (weight_compositions = 0). Such a row is refused."""
    unapplied = {"t2": {"weight_compositions": 0, "peft_merged": False}}
    row = {"variant": "SVF expert", "score": 0.2, ADAPTER_KEY: adapter_claim("svf", unapplied)}
    with pytest.raises(UnappliedAdapterError, match="'SVF expert' \\(weight_compositions=0\\)"):
        _table([{"variant": "base", "score": 0.2}, row]).write(tmp_path, CLEAN)
    assert not list(tmp_path.iterdir())  # nothing was published
    # the same row with its expert composed once is written
    row[ADAPTER_KEY] = adapter_claim("svf", {"t2": {"weight_compositions": 1}})
    assert len(_table([row]).write(tmp_path, CLEAN)) == 3


def test_a_lora_row_whose_adapter_was_not_merged_is_refused(tmp_path):
    row = {"variant": "LoRA", ADAPTER_KEY: adapter_claim("lora", {"t2": {"peft_merged": False}})}
    with pytest.raises(UnappliedAdapterError, match="peft_merged=False"):
        _table([row]).write(tmp_path, CLEAN)


def test_a_table_without_power_is_refused(tmp_path):
    with pytest.raises(UnpoweredTableError, match="states no power"):
        _table([{"variant": "base", "score": 0.5}], power=False).write(tmp_path, CLEAN)
    assert not list(tmp_path.iterdir())


def test_a_dirty_checkout_is_refused_unless_allowed_and_then_recorded(tmp_path):
    dirty = {"commit": "a" * 40 + "+dirty"}
    t = _table([{"variant": "base", "score": 0.5}])
    with pytest.raises(DirtyCheckoutError, match="allow-dirty"):
        t.write(tmp_path / "refused", dirty)
    assert not (tmp_path / "refused").exists()
    paths = t.write(tmp_path / "allowed", dirty, allow_dirty=True)
    prov = json.loads(paths[-1].read_text())["provenance"]
    assert prov["allow_dirty"] is True and prov["commit"].endswith("+dirty")
    # a clean checkout records no allowance
    clean = json.loads(t.write(tmp_path / "clean", CLEAN)[-1].read_text())["provenance"]
    assert "allow_dirty" not in clean


def test_not_ranked_appears_only_for_differences_below_the_mdd():
    power = [power_record("task", 100, 0.5)]  # MDD about 20 points
    base = [0] * 50 + [1] * 50
    small = base[:45] + [1] * 5 + base[50:]  # +5 points
    large = [1] * 100  # +50 points
    assert 0.05 < power[0]["mdd"] < 0.5

    def md(other) -> str:
        row = {"variant": "x", "diff": paired_difference(base, other)}
        return Table("t", "T", ["variant"], [row], paragraph="p.", power=power).markdown()

    assert "**Not ranked.** 1 of the differences shown" in md(small)
    assert "Not ranked" not in md(large)
    assert "**Power.**" in md(large) and "n = 100" in md(large)


# --------------------------------------------------------------------------- table 2, 3, α


DOCS = 6


def _t2(compositions, counts, **extra) -> dict:
    return {
        "model_id": "tiny",
        "weight_compositions": compositions,
        "peft_merged": False,
        "dispatch_counts": counts,
        "second_pass_seconds": 10.0,
        "dispatch_seconds": 1.0,
        **extra,
    }


def _cem_t2(task, compositions, search, routed) -> dict:
    desc = {
        "alpha": [0.2, 0.3, 0.5],
        "shot_doc_ids": [100, 101, 102],
        "shot_split": "validation",
        "fitness": {"accuracy": 2 / 3},
        "cost": {"candidates_scored": 6, "weight_compositions": search, "seconds": 3.0},
        "from_cache": False,
        "record": None,
    }
    dispatch = {
        "strategy": "cem",
        "experts": ["code-svf-pg", "math-svf-pg", "reasoning-svf-pg"],
        "tasks": {task: desc},
    }
    return _t2(compositions, {f"cem:{task}": routed}, dispatch=dispatch)


class FakeCtx:
    """The AblationContext surface Table 2, Table 3 and α use, with canned lm-eval records."""

    def __init__(self, tmp_path, records):
        self.profile = SimpleNamespace(
            model=None,
            experts="experts",
            unseen={"arc_challenge": DOCS},
            timed_tasks={"arc_challenge": DOCS},
            lora_for={"arc_challenge": "reasoning-lora-ntp"},
            cem={"arc_challenge": "shots=3"},
            generation={},
            bootstrap_iters=200,
            seed=0,
        )
        self.folder = tmp_path
        self.memo: dict = {}
        self.records = records

    def lmeval_dtype(self):
        return "float32"

    def lmeval(self, task, model_args, *, n, label):
        rec = self.records.get((task, label)) or self.records[label]
        docs = DOCS if n is None else min(n, DOCS)  # lm-eval's --limit: the first n documents
        rec = rec | {"scores": rec["scores"][:docs]}
        return {"task": task, "label": label, "doc_ids": list(range(docs))} | rec

    def remember(self, key, compute):
        assert key.startswith("first-pass|"), key
        strategy = key.split("|")[3]
        return {  # every strategy routes every document to base: it claims no adapter
            "strategy": strategy,
            "doc_ids": list(range(DOCS)),
            "keys": ["base"] * DOCS,
            "first_pass_seconds": 0.5,
        }

    def expert_spread(self, experts):
        return 0.01


def _records(task="arc_challenge", **override) -> dict:
    from t2bench.ablations.table2_unseen import EXPERT_LABELS, expert_name

    base = [1, 0, 0, 1, 0, 0]
    recs = {
        "base": {"scores": base, "aggregate": 1 / 3, "t2": _t2(0, {"base": DOCS})},
        "LoRA": {"scores": [1, 1, 0, 1, 0, 0], "t2": _t2(0, {"base": DOCS}, peft_merged=True)},
        "cem": {"scores": [1, 0, 1, 1, 0, 0], "t2": _cem_t2(task, 7, 6, DOCS)},
        "check": {"scores": base, "aggregate": 1 / 3, "t2": _t2(0, {"base": DOCS})},
    }
    for lab in EXPERT_LABELS:
        name = expert_name(lab)
        recs[name] = {"scores": base, "t2": _t2(1, {name: DOCS})}
    return recs | override


@pytest.fixture
def no_lora_lookup(monkeypatch):
    from t2bench.ablations import table2_unseen as t2

    monkeypatch.setattr(t2, "lora_path", lambda experts, run: "lora-folder")
    # ARC-Challenge draws its CEM shots from validation: CEM scores every document
    monkeypatch.setattr(t2, "scorable_limit", lambda task, spec, n: n)


def test_table2_states_power_and_claims_every_named_adapter(tmp_path, no_lora_lookup):
    from t2bench.ablations import table2_unseen as t2

    table = t2.run(FakeCtx(tmp_path, _records()))
    (power,) = table.power
    assert power["n"] == DOCS and power["p_base"] == pytest.approx(2 / 6)
    assert "ARC-Challenge" in power["label"]
    claims = {r["variant"]: r.get(ADAPTER_KEY) for r in table.rows}
    # base and the strategies (which may route everything to base) claim no adapter
    assert all(claims[v] is None for v in ("base", *t2.STRATEGIES))
    assert claims["LoRA"] == {"kind": "lora", "applied": True, "evidence": "peft_merged=True"}
    assert claims["few-shot (CEM)"]["kind"] == "mixture" and claims["few-shot (CEM)"]["applied"]
    experts = [v for v in claims if v.endswith("expert only")]
    assert len(experts) == len(t2.EXPERT_LABELS)
    assert all(claims[v]["kind"] == "svf" and claims[v]["applied"] for v in experts)
    assert len(table.write(tmp_path / "out", CLEAN)) == 3
    # with 6 documents no difference reaches the MDD: the rows are not ranked
    assert "**Not ranked.**" in table.markdown()


def test_table2_refuses_an_expert_row_that_scored_the_base_model(tmp_path, no_lora_lookup):
    from t2bench.ablations import table2_unseen as t2

    recs = _records()
    recs["math-svf-pg"] = recs["math-svf-pg"] | {"t2": _t2(0, {"base": DOCS})}
    table = t2.run(FakeCtx(tmp_path, recs))
    with pytest.raises(UnappliedAdapterError, match="'math expert only'"):
        table.write(tmp_path / "out", CLEAN)


def test_a_cem_run_whose_compositions_were_all_in_the_search_is_refused(tmp_path, no_lora_lookup):
    """weight_compositions also counts the α search's candidates: if every composition was
    the search's and no document reached the mixture, the CEM row scored the base model."""
    from t2bench.ablations import table2_unseen as t2
    from t2bench.ablations import table3_cost

    recs = _records(cem={"scores": [1, 0, 0, 1, 0, 0], "t2": _cem_t2("arc_challenge", 6, 6, 0)})
    ctx = FakeCtx(tmp_path, recs)
    row = next(r for r in t2.run(ctx).rows if r["variant"] == "few-shot (CEM)")
    assert not row[ADAPTER_KEY]["applied"]
    assert "(6 of them in the α search), 0 requests" in row[ADAPTER_KEY]["evidence"]
    # Table 3 times the same run's second pass as the mixture's: refused too
    with pytest.raises(UnappliedAdapterError, match="few-shot"):
        table3_cost.run(ctx).write(tmp_path / "t3", CLEAN)


def test_table3_and_alpha_state_power_and_claim_the_mixture(tmp_path, no_lora_lookup):
    from t2bench.ablations import alpha, table3_cost

    ctx = FakeCtx(tmp_path, _records())
    t3 = table3_cost.run(ctx)
    (power,) = t3.power
    # seconds are shown, but the power line says what the timed documents could resolve
    assert power["n"] == DOCS and "compares no scores" in power["label"]
    cem = next(r for r in t3.rows if r["strategy"].startswith("few-shot"))
    assert cem[ADAPTER_KEY]["applied"]
    assert all(ADAPTER_KEY not in r for r in t3.rows if r is not cem)
    t3.write(tmp_path / "t3", CLEAN)

    fig = alpha.run(ctx)
    (row,) = fig.rows
    assert row[ADAPTER_KEY]["kind"] == "mixture" and row[ADAPTER_KEY]["applied"]
    # the α record file is not there: p = 0.5 is assumed, and the label says so
    (power,) = fig.power
    assert power["n"] == 3 and power["p_base"] == 0.5 and "assumed" in power["label"]
    fig.write(tmp_path / "alpha", CLEAN)


def test_a_cem_run_that_holds_its_test_tail_shots_back_is_compared_on_its_own_documents(
    tmp_path, no_lora_lookup, monkeypatch
):
    """A task with one split (SciQ as packaged) gives CEM its last documents as shots, which
    the dispatcher refuses to score: the CEM run covers the documents before them, and its
    row, Table 3's row and the verdicts compare it with base (and LoRA) on those alone."""
    from t2bench.ablations import table2_unseen as t2
    from t2bench.ablations import table3_cost
    from t2bench.ablations.verdicts import measurements

    limits = []

    def limit(task, spec, n):
        limits.append((task, spec, n))
        return DOCS - 2  # two shots at the end

    monkeypatch.setattr(t2, "scorable_limit", limit)
    # base wins the two held-back documents; on the first four CEM gains one and loses none
    recs = _records(
        base={"scores": [1, 0, 0, 1, 1, 1], "aggregate": 4 / 6, "t2": _t2(0, {"base": DOCS})},
        LoRA={"scores": [0, 0, 0, 0, 1, 1], "t2": _t2(0, {"base": DOCS}, peft_merged=True)},
        cem={"scores": [1, 1, 0, 1, 0, 0], "t2": _cem_t2("arc_challenge", 7, 6, DOCS - 2)},
    )
    ctx = FakeCtx(tmp_path, recs)
    table = t2.run(ctx)
    assert limits[0] == ("arc_challenge", "shots=3", DOCS)
    rows = {r["variant"]: r for r in table.rows}
    cem = rows["few-shot (CEM)"]
    assert cem["n"] == DOCS - 2 and rows["base"]["n"] == DOCS
    assert (cem["diff"]["wins"], cem["diff"]["losses"]) == (1, 0)
    assert table.data["arc_challenge"]["cem_doc_ids"] == list(range(DOCS - 2))
    table.write(tmp_path / "t2", CLEAN)
    found = {m.what: m for m in measurements(tmp_path / "t2", {t2.NAME: "."})}
    vs_base = found["arc_challenge: few-shot (CEM) − base"]
    vs_lora = found["arc_challenge: few-shot (CEM) − LoRA"]
    assert vs_base.n == vs_lora.n == DOCS - 2
    assert vs_base.diff["diff"] > 0 and vs_lora.diff["diff"] > 0
    t3 = {r["strategy"]: r for r in table3_cost.run(ctx).rows}
    assert t3["few-shot (CEM, incl. α search)"]["n"] == DOCS - 2 and t3["prompt"]["n"] == DOCS


def test_a_first_pass_chooses_per_document_in_batches_and_times_only_choose(
    tmp_path, monkeypatch, capsys
):
    """first_pass asks the strategy for every document lm-eval scores, batch by batch, keeps
    its choices in document order, times only ``choose``, shows progress and restores the
    weights."""
    from t2bench.ablations import table2_unseen as t2
    from t2bench.dispatch.routing_items import PromptItem

    items = [PromptItem("arc_challenge", i, f"question {i}", "reasoning") for i in range(5)]
    monkeypatch.setattr(t2, "first_docs", lambda task, n: items[:n])
    batches, restored = [], []

    class Dispatcher:
        def choose(self, reqs):
            batches.append([r.doc_id for r in reqs])
            return [SimpleNamespace(key="math-svf-pg" if r.doc_id % 2 else "base") for r in reqs]

        def describe(self):
            return {"strategy": "label"}

    bound = SimpleNamespace(
        dispatcher=Dispatcher(), patcher=SimpleNamespace(restore=lambda: restored.append(1))
    )
    monkeypatch.setattr(t2, "load_bound", lambda strategy, **kw: bound)
    ctx = FakeCtx(tmp_path, {})
    ctx.profile.batch_size = 2
    ctx.shared_lm = lambda: None
    ctx.remember = lambda key, compute: compute()
    rec = t2.first_pass(ctx, "arc_challenge", 5, "label")
    assert batches == [[0, 1], [2, 3], [4]] and restored == [1]
    assert rec["doc_ids"] == [0, 1, 2, 3, 4]
    assert rec["keys"] == ["base", "math-svf-pg", "base", "math-svf-pg", "base"]
    assert rec["first_pass_seconds"] >= 0 and rec["dtype"] == "float32"
    assert "first pass label on arc_challenge" in capsys.readouterr().err


def test_table3_times_each_asking_strategy_before_and_after_head_reuse(tmp_path, no_lora_lookup):
    from t2bench.ablations import table2_unseen as t2
    from t2bench.ablations import table3_cost

    ctx = FakeCtx(tmp_path, _records())
    timed = []
    remember = ctx.remember
    ctx.remember = lambda key, compute: timed.append(key.split("|")[3]) or remember(key, compute)
    rows = table3_cost.run(ctx).rows
    assert set(timed) == {*t2.STRATEGIES, *table3_cost.BEFORE.values()}
    names = [r["strategy"] for r in rows]
    for s in ("prompt", "classifier", "label"):
        assert s in names and f"{s} (before: layout=question-first;reuse=false)" in names


def test_alpha_power_reads_the_uniform_starts_shot_accuracy(tmp_path):
    from t2bench.ablations.alpha import start_accuracy

    path = tmp_path / "cem-arc-key.safetensors"
    path.with_suffix(".json").write_text(json.dumps({"start_fitness": {"accuracy": 0.4}}))
    assert start_accuracy({"record": str(path)}) == 0.4
    assert start_accuracy({"record": str(tmp_path / "gone.safetensors")}) is None


# --------------------------------------------------------------------------- transfer


def _transfer_ctx(tmp_path, lmeval, task, n, seeds) -> SimpleNamespace:
    """The AblationContext surface the transfer table uses: SmolLM2 → Gemma, no way back."""
    return SimpleNamespace(
        profile=SimpleNamespace(
            model=None,
            experts="experts",
            transfer_task=task,
            transfer_n=n,
            transfer_expert="reasoning-svf-pg",
            transfer_cem="shots=2",
            shuffle_seeds=seeds,
            same_shape_target=None,
            transfer_target="gemma-3-270m",
            target_experts=None,
            bootstrap_iters=200,
            seed=0,
        ),
        folder=tmp_path,
        lmeval=lmeval,
    )


def test_transfer_rows_claim_their_experts_and_pair_ordered_with_shuffled(tmp_path, monkeypatch):
    from t2bench.ablations import transfer

    seeds = (0, 1)
    monkeypatch.setattr(
        transfer,
        "transfer_set",
        lambda ctx, source, target, experts, tag: (
            {
                "ordered": "o",
                "mode": "shape-adaptive",
                "skills": ["reasoning-svf-pg"],  # one skill: no CEM row
            }
            | {f"shuffled-{s}": f"s{s}" for s in seeds}
        ),
    )
    n = 40
    base = [0] * 30 + [1] * 10
    scores = {
        "base": base,
        "ordered": [1] * 40,  # +75 points over base and over each shuffled seed
        "shuffled-0": base,
        "shuffled-1": base,
        "source": base,
    }

    def lmeval(task, model_args, *, n, label):
        kind = next(k for k in scores if label.endswith(k))  # labels end in "-<kind>"
        compositions = 0 if kind == "base" else 1
        return {"doc_ids": list(range(40)), "scores": scores[kind], "t2": _t2(compositions, {})}

    table = transfer.run(_transfer_ctx(tmp_path, lmeval, "arc_challenge", n, seeds))
    (power,) = table.power
    assert power["n"] == n and power["p_base"] == pytest.approx(0.25)
    by = {r["variant"]: r for r in table.rows}
    assert ADAPTER_KEY not in by["target base"]
    for v in (
        "reasoning-svf-pg transferred (ordered σ)",
        "reasoning-svf-pg shuffled σ (seed 0)",
        "reasoning-svf-pg shuffled σ (seed 1)",
        "source model with reasoning-svf-pg (reference)",
    ):
        assert by[v][ADAPTER_KEY] == {
            "kind": "svf",
            "applied": True,
            "evidence": "weight_compositions=1",
        }
    assert "above shuffled (paired 95% CI above zero) in 2 of 2 seeds" in table.paragraph
    table.write(tmp_path / "out", CLEAN)


def _finished_run(folder, name: str, params: int, peft: bool) -> None:
    """A run folder as discover() reads it: summary.json beside its artifact."""
    run = folder / name
    run.mkdir(parents=True)
    art = run / (name if peft else f"{name}.safetensors")
    art.mkdir() if peft else art.write_bytes(b"")
    summary = {"run": name, "artifact": str(art), "trainable_parameters": params}
    (run / "summary.json").write_text(json.dumps(summary))


def test_transfer_cem_on_a_one_split_task_is_compared_on_the_documents_before_its_shots(
    tmp_path, monkeypatch
):
    from t2bench.ablations import transfer

    monkeypatch.setattr(
        transfer,
        "transfer_set",
        lambda ctx, source, target, experts, tag: {
            "ordered": "o",
            "mode": "shape-adaptive",
            "skills": ["code-svf-pg", "math-svf-pg", "reasoning-svf-pg"],  # CEM mixes them
            "shuffled-0": "s0",
        },
    )
    asked = []
    monkeypatch.setattr(
        transfer, "scorable_limit", lambda task, spec, n: asked.append((task, spec, n)) or 38
    )
    base = [0] * 30 + [1] * 10  # the two held-back documents are base wins

    def lmeval(task, model_args, *, n, label):
        docs = 40 if n is None else n
        if label.startswith("transfer-cem"):
            rec = {"scores": [1] * 30 + [0] * 8, "t2": _cem_t2(task, 7, 6, docs)}
        else:
            rec = {"scores": base, "t2": _t2(0 if label.endswith("base") else 1, {})}
        return {"doc_ids": list(range(docs)), "scores": rec["scores"][:docs], "t2": rec["t2"]}

    table = transfer.run(_transfer_ctx(tmp_path, lmeval, "sciq", None, (0,)))
    assert asked == [("sciq", "shots=2", None)]
    cem = next(r for r in table.rows if "few-shot" in r["variant"])
    # on its 38 documents: 30 wins, 8 losses; base's two held-back wins are not counted
    assert cem["n"] == 38 and (cem["diff"]["wins"], cem["diff"]["losses"]) == (30, 8)
    (d,) = [v for k, v in table.data.items() if isinstance(v, dict)]
    assert d["row_doc_ids"] == {"cross-model few-shot (CEM)": list(range(38))}
    table.write(tmp_path / "transfer", CLEAN)


def test_table4_shows_trained_tinylora_rows_on_the_parameter_axis_and_names_missing_ones(
    tmp_path,
):
    from t2bench.ablations import table4_params as t4

    experts, table4 = tmp_path / "experts", tmp_path / "experts" / "table4"
    for _, suffix, where, _, _ in t4.ROWS:
        if suffix == "tinylora-pg-u4":
            continue  # not trained: named in the caption, no row
        tiny, peft = "tinylora" in suffix, not suffix.startswith("svf")
        params = 13 if suffix.endswith("tied") else 1440 if tiny else 50_000
        _finished_run(experts if where == "main" else table4, f"math-{suffix}", params, peft)
    n = 40

    def heldout(task, v):
        scores = [1] * 10 + [0] * 30 if v.name == "base" else [1] * 30 + [0] * 10
        return {
            "scores": scores,
            "uids": list(range(n)),
            "split": {"source": "math-mix test", "split": "test"},
            "applied": v.name != "base",
            "applied_evidence": f"{v.name} active",
        }

    ctx = SimpleNamespace(
        profile=SimpleNamespace(
            experts=str(experts), table4_experts=str(table4), bootstrap_iters=200, seed=0
        ),
        folder=tmp_path,
        heldout=heldout,
    )
    table = t4.run(ctx)
    by = {r.get("run"): r for r in table.rows}
    tied, u16 = by["math-tinylora-pg-u13-tied"], by["math-tinylora-pg-u16"]
    assert "math-tinylora-pg-u4" not in by
    assert "Not trained" in table.caption and "math-tinylora-pg-u4" in table.caption
    assert (tied["params (ours)"], u16["params (ours)"]) == (13, 1440)
    # on Llama-3-8B: one tied 13-vector; 16 per MLP matrix, 32 layers x 3 matrices
    assert tied["params Llama-3-8B (computed)"] == 13
    assert u16["params Llama-3-8B (computed)"] == 16 * 96
    assert tied[ADAPTER_KEY]["kind"] == "tinylora" and tied[ADAPTER_KEY]["applied"]
    assert "TinyLoRA spans 13–1,440 parameters" in table.paragraph
    assert (tmp_path / f"{t4.NAME}.png").exists()


def test_table1_scores_reasoning_by_greedy_answer_and_by_log_likelihood(tmp_path):
    """Format vs knowledge: the SVF expert gains on the greedy answer only, so the paragraph
    calls it a format gain; the log-likelihood rows pair the same lm-eval documents and claim
    their adapters from the backend's record."""
    from t2bench.ablations import table1_training as t1
    from t2bench.ablations.verdicts import measurements

    experts = tmp_path / "experts"
    for task in t1.TASKS:
        _finished_run(experts, f"{task}-svf-pg", 50_000, peft=False)
        _finished_run(experts, f"{task}-lora-ntp", 900_000, peft=True)
    n = 200
    low, high = [1] * 40 + [0] * 160, [1] * 120 + [0] * 80

    def heldout(task, v):
        return {
            "scores": high if v.name == "reasoning-svf-pg" else low,
            "uids": list(range(n)),
            "split": {"source": f"{task} test", "split": "test"},
            "applied": v.name != "base",
        }

    seen = []

    def lmeval(task, model_args, *, n, label):
        seen.append((task, model_args, n))
        compositions = 1 if "dispatch=fixed:" in model_args else 0
        return {
            "doc_ids": list(range(200)),
            "scores": low,  # no variant changes an answer's log-likelihood ranking
            "t2": _t2(compositions, {}, peft_merged="peft=" in model_args),
        }

    ctx = SimpleNamespace(
        profile=SimpleNamespace(
            experts=str(experts),
            model=None,
            knowledge={"reasoning": ("arc_easy", None)},
            compute_dtype="bfloat16",
            bootstrap_iters=200,
            seed=0,
        ),
        folder=tmp_path,
        heldout=heldout,
        lmeval=lmeval,
        expert_spread=lambda folder: 0.05,
    )
    table = t1.run(ctx)
    ll = [r for r in table.rows if r["metric"] == t1.LOGLIKELIHOOD]
    assert [r["variant"] for r in ll] == ["base", "LoRA (NTP)", "SVF (PG)"]
    assert all(r["task"] == "reasoning" for r in ll)
    assert [a for a, _, _ in seen] == ["arc_easy"] * 3
    assert "dispatch=fixed:reasoning-svf-pg" in seen[2][1] and "peft=" in seen[1][1]
    assert all(r[ADAPTER_KEY]["applied"] for r in ll[1:])
    assert t1.format_or_knowledge(table.rows, "reasoning", "SVF (PG)") == "format only"
    assert "a gain in format only" in table.paragraph
    assert "Greedy decoding in bfloat16" in table.caption
    assert len(table.power) == 4  # three held-out tasks and the log-likelihood scoring
    table.write(tmp_path / "t1", CLEAN)
    (found,) = [
        m
        for m in measurements(tmp_path / "t1", {t1.NAME: "."})
        if m.what.startswith("reasoning (log-likelihood): SVF (PG) − base")
    ]
    assert found.verdict == "undetermined at this n"


def test_a_task_without_a_pg_expert_is_scored_with_its_ntp_fallback(tmp_path):
    """code-svf-pg was never trained (its sweep found no signal) and code-svf-ntp took its
    place: Table 1 labels that row SVF (NTP), the verdicts say so, and Table 2 and transfer
    dispatch to the fallback as the code expert."""
    from t2bench.ablations import table1_training as t1
    from t2bench.ablations.table2_unseen import counts, expert_name
    from t2bench.ablations.verdicts import measurements

    experts = tmp_path / "experts"
    for task in t1.TASKS:
        svf = "code-svf-ntp" if task == "code" else f"{task}-svf-pg"
        _finished_run(experts, svf, 50_000, peft=False)
        _finished_run(experts, f"{task}-lora-ntp", 900_000, peft=True)
    n = 100
    asked = []

    def heldout(task, v):
        asked.append(v.name)
        return {
            "scores": [1] * 60 + [0] * 40 if v.name == "code-svf-ntp" else [1] * 20 + [0] * 80,
            "uids": list(range(n)),
            "split": {"source": f"{task} test", "split": "test"},
            "applied": v.name != "base",
        }

    ctx = SimpleNamespace(
        profile=SimpleNamespace(
            experts=str(experts),
            model=None,
            knowledge={},
            bootstrap_iters=200,
            seed=0,
            compute_dtype="float32",
        ),
        folder=tmp_path,
        heldout=heldout,
        expert_spread=lambda folder: 0.05,
    )
    table = t1.run(ctx)
    assert "code-svf-ntp" in asked and "code-svf-pg" not in asked
    code = {r["variant"]: r for r in table.rows if r["task"] == "code"}
    assert set(code) == {"base", "LoRA (NTP)", "SVF (NTP)"}
    assert "code: SVF (NTP)" in table.paragraph
    table.write(tmp_path / "t1", CLEAN)
    whats = {m.what for m in measurements(tmp_path / "t1", {t1.NAME: "."})}
    assert {"code: SVF (NTP) − base", "math: SVF (PG) − base"} <= whats
    assert expert_name("code", str(experts)) == "code-svf-ntp"
    assert expert_name("math", str(experts)) == "math-svf-pg"
    assert expert_name("code") == "code-svf-pg"  # without a folder: the PG name
    assert counts(["code-svf-ntp", "math-svf-pg", "base"]) == "base 1, code 1, math 1"


def test_table2_scores_each_unseen_task_also_by_generation_and_says_format_or_knowledge(
    tmp_path, no_lora_lookup, monkeypatch
):
    """With a generation twin, every variant is scored again on the same documents by the
    letter its greedy completion names; the strategies reuse their first-pass choices; an
    expert that gains by generation only is called an answer-format gain."""
    from t2bench.ablations import table2_unseen as t2
    from t2bench.ablations.verdicts import measurements

    monkeypatch.setitem(t2.TWINS, "arc_challenge", ("arc_gen", "test"))
    # 40 documents: a +50-point gain by generation has an interval above zero
    monkeypatch.setattr(sys.modules[__name__], "DOCS", 40)
    low, high = [1] * 10 + [0] * 30, [1] * 30 + [0] * 10
    recs = {k: v | {"scores": low} for k, v in _records().items()}
    recs[("arc_gen", "reasoning-svf-pg")] = recs["reasoning-svf-pg"] | {"scores": high}
    ctx = FakeCtx(tmp_path, recs)
    ctx.profile.generation = {"arc_challenge": "arc_gen"}
    table = t2.run(ctx)
    gen = [r for r in table.rows if r["task_id"] == "arc_gen"]
    assert {r["variant"] for r in gen} == {
        "base",
        "LoRA",
        *t2.STRATEGIES,
        *(f"{lab} expert only" for lab in t2.EXPERT_LABELS),
    }
    assert all(t2.GENERATION in r["task"] for r in gen)
    assert len(table.power) == 2 and "arc_gen" in table.power[1]["label"]
    assert "ARC-Challenge reasoning expert only: log-likelihood" in table.paragraph
    assert "(answer format only)" in table.paragraph
    assert table.data["arc_gen"]["reasoning-svf-pg"] == high
    table.write(tmp_path / "t2", CLEAN)
    whats = {m.what for m in measurements(tmp_path / "t2", {t2.NAME: "."})}
    assert "arc_gen: prompt − base" in whats and "arc_challenge: prompt − base" in whats
