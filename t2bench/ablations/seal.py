"""SEAL knowledge incorporation: closed-book QA on held-out passages after an inner update on
nothing (base), the passage alone, the model's own self-edit (no RL), and the self-edit of the
ReST-EM generator after each round; LoRA vs SVF as the inner update.

The SEAL paper (Qwen2.5-7B, SQuAD, single passage): base 32.7, passage 33.5, own implications
39.7, SEAL round 1 43.7, round 2 47.0. Here the model is SmolLM2-135M-Instruct, the passages are
generated fictional ones (facts no model knows; ``t2bench.seal.data``) with eval passages
disjoint from the ReST-EM training passages, and grading is deterministic normalised
containment (EM and F1 beside it).
"""

from __future__ import annotations

import json
from pathlib import Path

from t2bench.ablations.context import precision_key
from t2bench.ablations.table1_training import STATS_NOTE
from t2bench.core.stats import (
    accuracy,
    clustered_difference,
    design_effect,
    power_record,
    verdict,
)
from t2bench.core.tables import ADAPTER_KEY, Table, adapter_claim, diff_cell, diff_columns
from t2bench.errors import ConfigError
from t2bench.models import load_model, resolve_dtype
from t2bench.seal.experiment import edit_sequences, evaluate_condition
from t2bench.seal.inner import InnerConfig
from t2bench.seal.restem import load_generator
from t2bench.train.policy import compute_dtype_name

NAME = "seal-knowledge"
COLUMNS = [
    "variant",
    "inner update",
    "n",
    "accuracy (contains)",
    "95% CI",
    "EM",
    "F1",
    "Δ vs base (points) [95% CI]",
    "p",
    "W/L",
    "trainable parameters",
    "s / passage",
]


def eval_passages(ctx, source: str | None = None, n: int | None = None):
    """The first ``n`` eval passages of ``source`` (default: the profile's fictional set)."""
    from t2bench.seal.data import load_passages

    p = ctx.profile
    if source is None:
        source, n = p.seal_source, p.seal_n
    return load_passages(source, "eval", n=n, seed=p.seed)


def run_record(ctx) -> dict:
    """The ReST-EM run's summary and per-round records (wall time per round)."""
    folder = Path(ctx.profile.seal_run)
    summary = folder / "summary.json"
    if not summary.is_file():
        raise ConfigError(
            f"no finished ReST-EM run in {folder}: train it with `nox -s seal` "
            "(t2bench seal train) first"
        )
    return json.loads(summary.read_text())


def compute_dtype(ctx) -> str:
    """The dtype the knowledge tables compute in, for every condition alike: the profile's
    ``seal_compute_dtype`` resolved (``auto``: bf16 where the CPU computes it natively)."""
    return compute_dtype_name(ctx.profile.seal_compute_dtype)


def _load(ctx, rounds: int):
    """The base model or the ReST-EM generator after ``rounds``, loaded in fp32 (the
    generator's LoRA merged there), then cast once to :func:`compute_dtype`."""
    if rounds:
        loaded = load_generator(ctx.profile.seal_run, rounds)
    else:
        loaded = load_model(ctx.profile.model)
    dtype = compute_dtype(ctx)
    if dtype != "float32":
        loaded.model.to(resolve_dtype(dtype))
    return loaded


def condition(
    ctx,
    condition: str,
    method: str | None,
    rounds: int = 0,
    *,
    source: str | None = None,
    n: int | None = None,
    variant: str | None = None,
) -> dict:
    """Per-question scores of one condition on the eval passages (memoised)."""

    p = ctx.profile
    if source is None:
        source, n = p.seal_source, p.seal_n
    variant = variant or p.seal_variant
    dtype = compute_dtype(ctx)
    precision = precision_key(dtype)
    key = f"seal|{source}|{n}|{variant}|g{rounds}|{condition}|{method}{precision}"

    def compute():
        passages = eval_passages(ctx, source, n)
        loaded = _load(ctx, rounds)

        def write_edits():
            return {
                "edits": edit_sequences(
                    loaded.model,
                    loaded.tokenizer,
                    passages,
                    condition,
                    variant=variant,
                    seed=p.seed,
                )
            }

        # greedy self-edits of one generator are the same for either inner update: write once
        edit_key = f"seal-edits|{source}|{n}|{variant}|g{rounds}|{condition}{precision}"
        edits = ctx.remember(edit_key, write_edits)["edits"]
        inner = InnerConfig(method=method, steps=p.seal_inner_steps) if method else None
        r = evaluate_condition(
            loaded.model,
            loaded.tokenizer,
            passages,
            edits,
            inner,
            model_id=loaded.model_id,
            progress=True,
        )
        recs = r["records"]
        trainable = [x["inner"]["trainable"] for x in r["passages"] if "inner" in x]
        return {
            "condition": condition,
            "method": method,
            "generator_rounds": rounds,
            "uids": [x["uid"] for x in recs],
            "scores": [float(x["contains"]) for x in recs],
            "em": [float(x["em"]) for x in recs],
            "f1": [float(x["f1"]) for x in recs],
            "predictions": [x["prediction"] for x in recs],
            "self_edits": [e.get("self_edit") for e in edits],
            "passages": r["passages"],
            "trainable": trainable[0] if trainable else None,
            "inner": inner.to_dict() if inner else None,
            "compute_dtype": dtype,
            "seconds": round(r["seconds"], 2),
            "seconds_per_passage": round(r["seconds"] / len(passages), 2),
        }

    return ctx.remember(key, compute)


OWN = "passage + own self-edit (no RL)"


def inner_proof(rec: dict) -> dict:
    """Whether a condition's inner updates were applied, from what evaluate_condition did:
    each passage it updated carries its InnerResult (trainable parameters, per-step losses);
    a diverged update was undone and its passage scored without one."""
    passages = rec.get("passages") or []
    runs = [x["inner"] for x in passages if "inner" in x]
    diverged = sum(1 for x in passages if "diverged" in x)
    trainable = max((int(r.get("trainable") or 0) for r in runs), default=0)
    losses = [r["losses"] for r in runs if r.get("losses")]
    first = sum(x[0] for x in losses) / len(losses) if losses else None
    last = sum(x[-1] for x in losses) / len(losses) if losses else None
    loss = f", mean loss {first:.3f} → {last:.3f}" if losses else ""
    rounds = rec.get("generator_rounds") or 0
    gen = f"; generator: ReST-EM rounds 1..{rounds} merged" if rounds else ""
    return {
        "applied": bool(runs) and trainable > 0,
        "applied_evidence": f"{rec.get('method')} inner update on {len(runs)} of "
        f"{len(passages)} passages ({diverged} diverged, scored without it), "
        f"{trainable:,} trainable parameters{loss}{gen}",
    }


def power_of(label: str, rec: dict, passages: int) -> dict:
    """The questions' power, clustered in passages: n is the effective number of questions,
    n / design effect (Kish's, from the base scores' intraclass correlation over passages)."""
    acc = accuracy(rec["scores"])
    deff = design_effect(rec["scores"], rec["uids"])
    n_eff = max(1, round(acc["n"] / deff))
    return power_record(
        f"{label}: {acc['n']} questions in {passages} passages, design effect {deff:.2f}, "
        f"effective n = {n_eff} (answers within a passage are correlated)",
        n_eff,
        acc["score"],
    ) | {"questions": acc["n"], "passages": passages, "design_effect": deff}


def variants(ctx, compare: tuple[str, ...] = ()) -> list[tuple]:
    """(label, condition, inner method, generator rounds, self-edit variant or None) per row.

    ``compare``: further self-edit variants (``rewrite``, ``qa``) evaluated without RL with the
    ReST-EM run's inner method, beside the profile's variant.
    """
    cfg = run_record(ctx)["config"]
    rounds, method = cfg["rounds"], cfg["inner"]["method"]
    other = "lora" if method == "svf" else "svf"
    rows = [
        ("base (no update)", "base", None, 0, None),
        ("passage only", "passage", "lora", 0, None),
        ("passage only", "passage", "svf", 0, None),
        (OWN, "self-edit", "lora", 0, None),
        (OWN, "self-edit", "svf", 0, None),
    ]
    rows += [
        (f"passage + own self-edit '{v}' (no RL)", "self-edit", method, 0, v)
        for v in compare
        if v != ctx.profile.seal_variant
    ]
    rows += [(f"SEAL after round {r}", "self-edit", method, r, None) for r in range(1, rounds + 1)]
    rows.append((f"SEAL after round {rounds}", "self-edit", other, rounds, None))
    return rows


def run(ctx) -> Table:
    p = ctx.profile
    return knowledge_table(
        ctx,
        NAME,
        "SEAL knowledge incorporation: closed-book QA after self-edit updates (held-out passages)",
        source=p.seal_source,
        n=p.seal_n,
        compare=p.seal_compare_variants,
    )


def knowledge_table(
    ctx, name: str, title: str, *, source: str, n: int | None, compare: tuple[str, ...] = ()
) -> Table:
    """The knowledge table on the first ``n`` eval passages of ``source``."""
    p = ctx.profile
    rows, data, base = [], {}, None
    for label, cond, method, rounds, variant in variants(ctx, compare):
        rec = condition(ctx, cond, method, rounds, source=source, n=n, variant=variant)
        acc = accuracy(rec["scores"])
        row = {
            "variant": label,
            "inner update": method or "—",
            "n": acc["n"],
            "accuracy (contains)": acc["score"],
            "95% CI": f"[{acc['ci_low']:.3f}, {acc['ci_high']:.3f}]",
            "EM": round(sum(rec["em"]) / len(rec["em"]), 3),
            "F1": round(sum(rec["f1"]) / len(rec["f1"]), 3),
            "trainable parameters": f"{rec['trainable']:,}" if rec["trainable"] else "—",
            "s / passage": rec["seconds_per_passage"],
        }
        if method:  # the row claims a LoRA / SVF inner update: prove it ran
            row[ADAPTER_KEY] = adapter_claim(method, inner_proof(rec))
        if base is None:
            base = rec
        else:
            # questions of one passage are correlated: intervals resample whole passages
            row |= diff_columns(
                base["scores"],
                rec["scores"],
                iters=p.bootstrap_iters,
                seed=p.seed,
                clusters=base["uids"],
            )
        rows.append(row)
        data[f"{label} | {method}"] = {
            k: rec[k] for k in ("uids", "scores", "predictions", "self_edits", "passages")
        }
    run_info = run_record(ctx)
    passages = len(base["passages"])
    # the paper's central contrast, SEAL vs the same inner update without RL, paired over the
    # same questions (both rows' distances to base cannot show it)
    cfg = run_info["config"]
    last, method = cfg["rounds"], cfg["inner"]["method"]
    seal_vs_own = None
    if last:
        own = data.get(f"{OWN} | {method}")
        seal = data.get(f"SEAL after round {last} | {method}")
        if own and seal:
            seal_vs_own = clustered_difference(
                own["scores"], seal["scores"], own["uids"], iters=p.bootstrap_iters, seed=p.seed
            )
    return Table(
        name,
        title,
        COLUMNS,
        rows,
        caption=caption(
            ctx, run_info, source=source, passages=passages, questions=len(base["scores"])
        ),
        paragraph=paragraph(rows, run_info, seal_vs_own),
        data=data | {"seal_vs_own_self_edit": seal_vs_own},
        power=[power_of(f"{source} eval, base (no update)", base, passages)],
    )


def _source_text(source: str, passages: int, questions: int) -> str:
    if source == "fictional":
        return (
            f"Eval: the first {passages} generated fictional eval passages ({questions} "
            "questions; facts no model can know), disjoint from the ReST-EM training passages "
            "(other generator seed, no shared entity names)."
        )
    if source == "squad":
        return (
            f"Eval: the first {passages} SQuAD eval passages ({questions} questions; the "
            "packaged SQuAD validation split by article, the eval half's articles never used "
            "for training or tuning). The ReST-EM generator was trained on fictional passages, "
            "so its rows measure transfer of its self-edit skill to real text; a base answer "
            "may already be right from pre-training."
        )
    return f"Eval: the first {passages} `{source}` eval passages ({questions} questions)."


def caption(ctx, run_info: dict, *, source: str, passages: int, questions: int) -> str:

    p = ctx.profile
    cfg = run_info["config"]
    rounds = "; ".join(
        f"round {r['round']}: {r['seconds']:.0f} s, {r['kept']}/{r['passages']} self-edits kept "
        f"(mean baseline {r['mean_baseline']}, mean reward {r['mean_reward']})"
        for r in run_info["rounds"]
    )
    lora, svf = InnerConfig(method="lora"), InnerConfig(method="svf")
    return (
        f"{_source_text(source, passages, questions)} Each passage is updated alone, its "
        "questions asked without it (greedy, ≤ 16 tokens), the update undone; every "
        f"condition computes in {compute_dtype(ctx)} (model cast once after loading; LoRA "
        "and z trained in fp32). Accuracy = "
        "normalised containment of a reference answer; "
        f"EM and token F1 beside it. Inner update: {p.seal_inner_steps} full-batch steps on the "
        f"self-edit lines + passage (padding masked); LoRA r{lora.lora_r}/α{lora.lora_alpha} on "
        f"{lora.lora_targets}, lr {lora.learning_rate:g}; SVF on {svf.svf_modules} (all "
        f"layers), lr {svf.learning_rate:g} (both lrs picked on training passages). Self-edits "
        f"'{p.seal_variant}', greedy, ≤ 128 tokens. ReST-EM ({cfg['source']} train split, "
        f"{cfg['n_train']} passages, K={cfg['k']} self-edits at T={cfg['temperature']}, "
        f"{cfg['inner']['method']} inner update, the best kept only where it beats no update, generator LoRA r"
        f"{cfg['sft_r']} merged each round): {rounds}. The SEAL rows update the round's "
        "generator on its own self-edit. Rows with an inner update carry the record that it "
        "ran (passages updated, trainable parameters, loss). " + STATS_NOTE
    )


def _find(rows, variant, method):
    return next(r for r in rows if r["variant"] == variant and r["inner update"] == method)


def judged(diff: dict | None) -> str:
    """verdict() in words, saying 'undetermined' where the paired 95% CI includes zero."""
    if not diff:
        return "undetermined: no paired interval"
    v = verdict(diff)
    return "undetermined: its 95% CI includes zero" if v == "inconclusive" else v


def paragraph(rows: list[dict], run_info: dict, seal_vs_own: dict | None = None) -> str:
    base = rows[0]
    last = run_info["config"]["rounds"]
    method = run_info["config"]["inner"]["method"]
    own = _find(rows, OWN, "lora")
    own_m = _find(rows, OWN, method)
    seal = _find(rows, f"SEAL after round {last}", method)
    pas_l = _find(rows, "passage only", "lora")
    pas_s = _find(rows, "passage only", "svf")
    own_s = _find(rows, OWN, "svf")

    def d(r):
        return f"{diff_cell(r['diff'])} ({judged(r['diff'])})"

    return (
        "**What this shows.** The paper's ladder is base < passage < own self-edit < SEAL. "
        f"Here, against base {base['accuracy (contains)']:.3f} (n={base['n']} questions): "
        f"passage only {pas_l['accuracy (contains)']:.3f} with LoRA, Δ {d(pas_l)}, and "
        f"{pas_s['accuracy (contains)']:.3f} with SVF, Δ {d(pas_s)}; own self-edit "
        f"{own['accuracy (contains)']:.3f} (LoRA, Δ {d(own)}) and "
        f"{own_s['accuracy (contains)']:.3f} (SVF, Δ {d(own_s)}); SEAL after round {last} "
        f"{seal['accuracy (contains)']:.3f} ({method}, Δ {d(seal)}; the same inner update "
        f"without RL: {own_m['accuracy (contains)']:.3f}). Differences are in points "
        "against base; a claim counts only where its interval excludes zero, and with this "
        "few questions only large effects can. Whether SEAL beats the own self-edit without "
        f"RL is the paper's central claim: SEAL − own self-edit ({method}), paired over the "
        + (
            f"same questions, {diff_cell(seal_vs_own)} ({judged(seal_vs_own)})"
            if seal_vs_own
            else "same questions, was not computed"
        )
        + (
            ", so this run does not order the two."
            if judged(seal_vs_own).startswith("undetermined")
            else "."
        )
        + _variants_sentence(rows, method)
    )


def _variants_sentence(rows: list[dict], method: str) -> str:
    prefix = "passage + own self-edit '"
    others = [r for r in rows if r["variant"].startswith(prefix)]
    if not others:
        return ""
    own = _find(rows, OWN, method)
    parts = [f"the profile's variant {own['accuracy (contains)']:.3f}"]
    for r in others:
        name = r["variant"][len(prefix) :].split("'")[0]
        acc, diff = r["accuracy (contains)"], diff_cell(r["diff"])
        parts.append(f"{name} {acc:.3f} (Δ vs base {diff})")
    return f" Self-edit variants without RL ({method} inner update): " + ", ".join(parts) + "."
