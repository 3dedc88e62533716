"""The SEAL ablation tables: the knowledge table end to end on a tiny model and a tiny ReST-EM
run, and the forgetting summary against a hand-made accuracy triangle."""

from __future__ import annotations

import json

import pytest
from conftest import tiny_seal_config


def test_forgetting_summary_reads_the_triangle():
    from t2bench.ablations.forgetting import retention, summarise

    rec = {
        "method": "lora",
        "before": [0.0, 0.0, 1 / 3],
        "matrix": [[1.0], [2 / 3, 1.0], [1 / 3, 1 / 3, 2 / 3]],
        "merge_seconds": [1.0, 1.0, 1.0],
    }
    rows = summarise(rec)
    assert [r["edits merged"] for r in rows] == [1, 2, 3]
    assert rows[0]["mean accuracy on earlier passages"] is None
    assert rows[2]["accuracy on the newest passage"] == pytest.approx(0.667, abs=1e-3)
    assert rows[2]["mean accuracy on earlier passages"] == pytest.approx(1 / 3, abs=1e-3)
    assert rows[2]["their accuracy right after their own edit"] == 1.0
    assert rows[1]["accuracy on passage 0"] == pytest.approx(0.667, abs=1e-3)
    r = retention(rec)
    assert r["after_own"] == 1.0 and r["after_all"] == pytest.approx(0.333, abs=1e-3)
    assert r["before"] == 0.0


def test_seal_tables_run_end_to_end_on_a_tiny_model(
    tmp_path, char_llama_dir, monkeypatch, tiny_passages
):
    import t2bench.ablations.seal as seal_mod
    import t2bench.seal.restem as restem
    from t2bench.ablations import forgetting, squad
    from t2bench.ablations.context import AblationContext
    from t2bench.ablations.profile import SMOKE
    from t2bench.seal.inner import InnerConfig
    from t2bench.seal.restem import train_seal

    monkeypatch.setattr(restem, "load_passages", lambda source, split, n, seed: tiny_passages(n))
    run = tmp_path / "restem"
    train_seal(
        tiny_seal_config(
            char_llama_dir,
            run,
            rounds=1,
            max_new_tokens=12,
            qa_max_new_tokens=4,
            inner=InnerConfig(steps=1, lr=1e-2),
            sft_steps_per_pair=2,
        )
    )
    monkeypatch.setattr(
        seal_mod,
        "eval_passages",
        lambda ctx, source=None, n=None: tiny_passages(n or ctx.profile.seal_n),
    )
    profile = SMOKE.with_overrides(model=char_llama_dir, seal_run=str(run), bootstrap_iters=100)
    ctx = AblationContext(profile, tmp_path / "ablation")
    table = seal_mod.run(ctx)
    labels = [(r["variant"], r["inner update"]) for r in table.rows]
    assert labels == [
        ("base (no update)", "—"),
        ("passage only", "lora"),
        ("passage only", "svf"),
        ("passage + own self-edit (no RL)", "lora"),
        ("passage + own self-edit (no RL)", "svf"),
        ("passage + own self-edit 'qa' (no RL)", "lora"),
        ("SEAL after round 1", "lora"),
        ("SEAL after round 1", "svf"),
    ]
    assert all(r["n"] == 2 for r in table.rows)
    assert all("Δ vs base (points) [95% CI]" in r for r in table.rows[1:])
    # every row with an inner update proves it ran (passages updated, trainable parameters);
    # the base row claims none
    assert "adapter_claim" not in table.rows[0]
    for r in table.rows[1:]:
        c = r["adapter_claim"]
        assert c["kind"] == r["inner update"] and c["applied"], c
        assert "inner update on 2 of 2 passages (0 diverged" in c["evidence"]
    assert "ReST-EM rounds 1..1 merged" in table.rows[-1]["adapter_claim"]["evidence"]
    # power: n is questions (stated as such), p the base row's accuracy
    (power,) = table.power
    assert power["questions"] == 2 and power["n"] <= 2 and "questions" in power["label"]
    assert power["design_effect"] >= 1 and "effective n" in power["label"]
    assert power["p_base"] == table.rows[0]["accuracy (contains)"]
    # the central contrast is paired: SEAL vs the same inner update without RL
    assert table.data["seal_vs_own_self_edit"]["n"] == 2
    assert table.data["seal_vs_own_self_edit"]["method"] == "cluster-bootstrap"
    diffs = [r["diff"] for r in table.rows if "diff" in r]
    assert diffs and all(d["method"] == "cluster-bootstrap" for d in diffs)
    assert "SEAL − own self-edit (lora), paired over the same questions" in table.paragraph
    table.write(tmp_path / "tables", {"commit": "a" * 40})  # the guards let it through
    assert "round 1:" in table.caption and "SEAL after round 1" in table.paragraph
    assert "Self-edit variants without RL (lora inner update)" in table.paragraph
    assert "qa " in table.paragraph.split("Self-edit variants")[1]
    # the 'qa' row really used the qa prompt: its self-edits differ from the implications row's
    qa = table.data["passage + own self-edit 'qa' (no RL) | lora"]["self_edits"]
    assert qa != table.data["passage + own self-edit (no RL) | lora"]["self_edits"]
    # every evaluation is in the memo: a resumed run recomputes nothing
    keys = [json.loads(x)["key"] for x in ctx.memo_path.read_text().splitlines()]
    assert len([k for k in keys if k.startswith("seal|")]) == 8
    # self-edits are written once per generator and variant, shared by LoRA and SVF rows:
    # 8 rows, 3 of which share their generator and variant with another row
    assert len([k for k in keys if k.startswith("seal-edits|")]) == 5

    sq = squad.run(ctx)
    assert sq.name == "seal-knowledge-squad"
    assert [r["variant"] for r in sq.rows][:2] == ["base (no update)", "passage only"]
    assert not any("'qa'" in r["variant"] for r in sq.rows)  # variants are compared once
    assert "SQuAD eval passages" in sq.caption and "transfer" in sq.caption
    assert all(r["n"] == ctx.profile.seal_squad_n for r in sq.rows)

    ft = forgetting.run(ctx)
    assert [(r["inner update"], r["edits merged"]) for r in ft.rows] == [
        ("lora", 1),
        ("lora", 2),
        ("svf", 1),
        ("svf", 2),
    ]
    assert "forg" in ft.paragraph and "newest passage right after its edit" in ft.paragraph
    # each row claims its method's merged edits; the record shows both edits were merged
    for r in ft.rows:
        c = r["adapter_claim"]
        assert c["kind"] == r["inner update"] and c["applied"]
        assert f"merged 2 {r['inner update']} updates for 2 edits" in c["evidence"]
    (power,) = ft.power
    assert power["n"] == sum(len(p.questions) for p in tiny_passages(2))
    assert "questions" in power["label"]
    ft.write(tmp_path / "tables", {"commit": "a" * 40})


def test_forgetting_verdict_compares_the_share_kept_not_the_raw_drop():
    from t2bench.ablations.forgetting import _verdict

    def ret(after_own, after_all):
        return {"after_own": after_own, "after_all": after_all, "before": 0.0}

    # both lost everything: the larger raw drop of the method that stored more is no evidence
    text = _verdict({"lora": ret(0.267, 0.0), "svf": ret(0.133, 0.0)})
    assert "both forgot everything" in text and "SVF forgets no less than LoRA" in text
    text = _verdict({"lora": ret(0.6, 0.1), "svf": ret(0.3, 0.2)})
    assert "SVF forgot less than LoRA" in text and "67%" in text and "17%" in text
    text = _verdict({"lora": ret(0.4, 0.3), "svf": ret(0.4, 0.1)})
    assert "SVF forgot more than LoRA" in text
    assert "cannot say" in _verdict({"lora": ret(0.0, 0.0), "svf": ret(0.3, 0.1)})


def test_seal_rows_whose_updates_never_ran_are_refused(tmp_path):
    """A condition whose every inner update diverged was scored on the base model: its row
    may not claim the update (the table is refused), and merged-edit records likewise."""
    from t2bench.ablations.forgetting import merge_proof
    from t2bench.ablations.seal import inner_proof
    from t2bench.core.stats import power_record
    from t2bench.core.tables import Table, UnappliedAdapterError, adapter_claim

    ran = {
        "method": "svf",
        "passages": [{"uid": "p0", "inner": {"trainable": 8, "losses": [2.0, 1.5]}}],
    }
    assert inner_proof(ran)["applied"]
    assert "mean loss 2.000 → 1.500" in inner_proof(ran)["applied_evidence"]
    diverged = {"method": "svf", "passages": [{"uid": "p0", "diverged": "loss 2 -> 9"}]}
    assert not inner_proof(diverged)["applied"]
    assert "0 of 1 passages (1 diverged" in inner_proof(diverged)["applied_evidence"]
    row = {"variant": "passage only", "adapter_claim": adapter_claim("svf", inner_proof(diverged))}
    table = Table("t", "T", ["variant"], [row], power=[power_record("q", 30, 0.3)])
    with pytest.raises(UnappliedAdapterError, match="passage only"):
        table.write(tmp_path, {"commit": "a" * 40})
    # a sequence with fewer merges than edits skipped one
    short = {"method": "lora", "matrix": [[1.0], [0.0, 1.0]], "merge_seconds": [1.0]}
    assert not merge_proof(short)["applied"]
    assert merge_proof(short | {"merge_seconds": [1.0, 1.0]})["applied"]


def test_missing_restem_run_is_a_clear_error(tmp_path):
    from t2bench.ablations import seal as seal_mod
    from t2bench.ablations.context import AblationContext
    from t2bench.ablations.profile import SMOKE
    from t2bench.errors import ConfigError

    ctx = AblationContext(SMOKE.with_overrides(seal_run=str(tmp_path / "none")), tmp_path / "a")
    with pytest.raises(ConfigError, match="nox -s seal"):
        seal_mod.run(ctx)


def test_seal_conditions_compute_in_the_profile_dtype(
    tmp_path, char_llama_dir, monkeypatch, tiny_passages
):
    import torch

    import t2bench.ablations.seal as seal_mod
    from t2bench.ablations.context import AblationContext
    from t2bench.ablations.profile import SMOKE

    seen = []
    real = seal_mod.evaluate_condition

    def spy(model, *args, **kwargs):
        seen.append({p.dtype for p in model.parameters()})
        return real(model, *args, **kwargs)

    monkeypatch.setattr(seal_mod, "evaluate_condition", spy)
    monkeypatch.setattr(
        seal_mod, "eval_passages", lambda ctx, source=None, n=None: tiny_passages(2)
    )
    profile = SMOKE.with_overrides(
        model=char_llama_dir, seal_compute_dtype="bfloat16", bootstrap_iters=100
    )
    ctx = AblationContext(profile, tmp_path / "ablation")
    base = seal_mod.condition(ctx, "base", None)
    svf = seal_mod.condition(ctx, "passage", "svf")
    assert seen == [{torch.bfloat16}, {torch.bfloat16}]  # base and update conditions alike
    assert base["compute_dtype"] == svf["compute_dtype"] == "bfloat16"
    assert seal_mod.inner_proof(svf)["applied"]
    # bf16 evaluations never answer for fp32 ones (a resumed run keeps the two apart)
    keys = [json.loads(x)["key"] for x in ctx.memo_path.read_text().splitlines()]
    assert len(keys) == 4 and all(k.endswith("|bfloat16") for k in keys)
