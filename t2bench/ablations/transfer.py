"""Transfer of experts between models (the paper's Table 5, and beyond it).

* same-shape (the paper: Llama-3-8B → Mistral-7B): z copied by layer and singular-value rank;
  runs when the profile names a same-shape target (no such pair is available offline).
* shape-adaptive (beyond the paper): z resampled over relative depth and relative rank, so
  SmolLM2-135M experts apply to Gemma-3-270M (18 vs 30 layers, rank 640 vs 576), and back
  when experts trained on the target exist.

Each direction reports the target's base model, the transferred expert with ordered σ, the
shuffled-σ control over several seeds (the expert's z permuted within each matrix before
transfer: same values, wrong singular directions), and cross-model few-shot (CEM mixing of the
transferred experts on the target). All scored through ``lm_eval --model t2`` on the same
documents; transferred experts are saved in the run folder.
"""

from __future__ import annotations

import re
from pathlib import Path

from t2bench.ablations.table1_training import STATS_NOTE
from t2bench.ablations.table2_unseen import (
    CEM_SHOTS,
    expert_name,
    judged,
    make_row,
    on_docs,
    power_of,
    task_label,
)
from t2bench.core.stats import paired_difference, power_record
from t2bench.core.tables import Table, diff_cell, figure
from t2bench.dispatch.categories import EXPERT_LABELS
from t2bench.dispatch.cem_strategy import scorable_limit
from t2bench.svf import TargetSpec, decompose, load_experts, save_expert
from t2bench.svf.transfer import shuffled_transfer, transfer_expert

NAME = "transfer"
COLUMNS = [
    "direction",
    "mode",
    "variant",
    "n",
    "score",
    "95% CI",
    "Δ vs base (points) [95% CI]",
    "p",
    "W/L",
]


def _decomposition(name: str | None, expert):
    from t2bench.models import load_model

    lm = load_model(name)
    spec = TargetSpec(expert.meta.module_set, "all")
    return lm.model_id, decompose(lm.model, spec, model_id=lm.model_id, progress=False)


def transfer_set(ctx, source: str | None, target: str, experts: str, tag: str) -> dict:
    """Transfer every skill expert (ordered) and the profile's expert (shuffled, each seed);
    save them under the run folder. Returns {variant: folder or file}."""

    loaded = {e.meta.name: e for e in load_experts(experts)}
    names = [expert_name(lab, experts) for lab in EXPERT_LABELS]
    skills = [loaded[name] for name in names if name in loaded]
    _, src = _decomposition(source, skills[0])
    tgt_id, tgt = _decomposition(target, skills[0])
    sig = src.sigmas()
    root = ctx.folder / "transfer" / re.sub(r"[^A-Za-z0-9._-]+", "_", tag.replace("→", "to"))
    ordered = root / "ordered"
    modes = set()
    for e in skills:
        t = transfer_expert(e, tgt, source_sigmas=sig, name=e.meta.name)
        modes.add(t.meta.provenance.get("transfer"))
        save_expert(t, ordered / e.meta.name)
    out = {
        "ordered": ordered,
        "mode": ",".join(sorted(m for m in modes if m)),
        "target_id": tgt_id,
        "skills": [e.meta.name for e in skills],
    }
    main = loaded[ctx.profile.transfer_expert]
    for seed in ctx.profile.shuffle_seeds:
        t = shuffled_transfer(main, tgt, seed, source_sigmas=sig, name=main.meta.name)
        out[f"shuffled-{seed}"] = save_expert(t, root / f"shuffled-{seed}" / main.meta.name)
    return out


def adapter_of(variant: str) -> str | None:
    """The adapter a transfer row claims: every row but the target's base applies SVF experts
    (ordered or shuffled transfers, the source's own expert) or their CEM mixture."""
    if variant == "target base":
        return None
    return "mixture" if "few-shot" in variant else "svf"


def direction(ctx, source: str | None, target: str, experts: str, tag: str) -> tuple[list, dict]:
    p = ctx.profile
    task, n = p.transfer_task, p.transfer_n
    files = transfer_set(ctx, source, target, experts, tag)
    name = p.transfer_expert
    runs = {
        "target base": ctx.lmeval(
            task, f"pretrained={target},dispatch=none", n=n, label=f"{tag}-base"
        ),
        f"{name} transferred (ordered σ)": ctx.lmeval(
            task,
            f"pretrained={target},experts={files['ordered']},dispatch=fixed:{name}",
            n=n,
            label=f"{tag}-ordered",
        ),
    }
    for seed in p.shuffle_seeds:
        runs[f"{name} shuffled σ (seed {seed})"] = ctx.lmeval(
            task,
            f"pretrained={target},experts={files[f'shuffled-{seed}']},dispatch=fixed:{name}",
            n=n,
            label=f"{tag}-shuffled-{seed}",
        )
    if len(files["skills"]) == len(EXPERT_LABELS):  # CEM mixes one expert per skill
        runs["cross-model few-shot (CEM)"] = ctx.lmeval(
            task,
            f"pretrained={target},experts={files['ordered']},dispatch=cem:{p.transfer_cem};"
            f"out={ctx.folder / 'cem'}",
            n=scorable_limit(task, p.transfer_cem, n),  # its shots may be the last docs
            label=f"transfer-cem-{tag}",
        )
    src_pre = f"pretrained={source}," if source else ""
    runs[f"source model with {name} (reference)"] = ctx.lmeval(
        task, f"{src_pre}experts={experts},dispatch=fixed:{name}", n=n, label=f"{tag}-source"
    )
    base = runs["target base"]["scores"]
    rows = []
    shuffled = []
    for variant, rec in runs.items():
        versus = variant != "target base" and not variant.startswith("source")
        ref = on_docs(runs["target base"], rec["doc_ids"]) if versus else None
        kind = adapter_of(variant)
        r = make_row(
            task,
            variant,
            rec["scores"],
            ref,
            p.bootstrap_iters,
            p.seed,
            adapter=(kind, rec) if kind else None,
        )
        r |= {"direction": f"{tag} ({task_label(task)})", "mode": files["mode"]}
        rows.append(r)
        if "shuffled" in variant:
            shuffled.append(r)
    # ordered vs each shuffled seed, paired over the same documents: the paper's contrast, which
    # two rows' distances to base cannot show (JSON only; the paragraph reads it)
    key = f"{name} transferred (ordered σ)"
    ordered = runs[key]["scores"]
    next(r for r in rows if r["variant"] == key)["ordered vs shuffled"] = [
        paired_difference(rec["scores"], ordered, iters=p.bootstrap_iters, seed=p.seed)
        for v, rec in runs.items()
        if "shuffled" in v
    ]
    if shuffled:
        import numpy as np

        vals = [r["score"] for r in shuffled]
        rows.append(
            {
                "direction": rows[0]["direction"],
                "mode": files["mode"],
                "variant": f"shuffled σ: mean ± sd over {len(vals)} seeds",
                "n": shuffled[0]["n"],
                "score": float(np.mean(vals)),
                "95% CI": f"sd {np.std(vals, ddof=1) if len(vals) > 1 else 0:.3f}",
            }
        )
    data = {v: r["scores"] for v, r in runs.items()} | {
        "doc_ids": runs["target base"]["doc_ids"],
        # the documents of a row scored on fewer (CEM holds its test-tail shots back)
        "row_doc_ids": {
            v: r["doc_ids"]
            for v, r in runs.items()
            if r["doc_ids"] != runs["target base"]["doc_ids"]
        },
        "experts": files["skills"],
    }
    label = f"{tag} ({task_label(task)}, first {len(base)} docs, target base)"
    return rows, data | {"power": power_of(label, base)}


def run(ctx) -> Table:
    p = ctx.profile
    rows, data, skipped = [], {}, []
    src_name = p.model or "smollm2-135m-instruct"
    if p.same_shape_target:
        r, d = direction(
            ctx, p.model, p.same_shape_target, p.experts, f"{src_name} → {p.same_shape_target}"
        )
        rows += r
        data["same-shape"] = d
    else:
        skipped.append(
            "same-shape transfer: no second model with the same shapes is available offline "
            "(`--profile paper` runs Llama-3-8B → Mistral-7B-v0.3)"
        )
    if p.transfer_target:
        tag = f"{src_name} → {p.transfer_target}"
        r, d = direction(ctx, p.model, p.transfer_target, p.experts, tag)
        rows += r
        data[tag] = d
        if p.target_experts and Path(p.target_experts).exists():
            back = f"{p.transfer_target} → {src_name}"
            r, d = direction(ctx, p.transfer_target, p.model or src_name, p.target_experts, back)
            rows += r
            data[back] = d
            if not any("few-shot" in x["variant"] for x in r):
                skipped.append(
                    f"cross-model few-shot {back}: CEM mixes one expert per skill and "
                    f"{p.target_experts} holds only {', '.join(sorted(d['experts']))}"
                )
        else:
            skipped.append(
                f"{p.transfer_target} → {src_name}: no experts trained on {p.transfer_target} are "
                "committed (set the profile's target_experts to a folder of them)"
            )
    plot = ctx.folder / f"{NAME}.png"
    if rows:
        draw(rows, plot)
    return Table(
        NAME,
        "Transfer between models: ordered vs shuffled σ, and cross-model few-shot",
        COLUMNS,
        rows,
        caption=(
            f"Task {task_label(p.transfer_task)}, first {p.transfer_n or 'all'} docs through lm-eval. "
            f"Transferred: {p.transfer_expert} (shuffled-σ seeds {list(p.shuffle_seeds)}); "
            f"cross-model few-shot mixes all transferred skill experts with CEM ({CEM_SHOTS}). "
            "Δ vs base: against the target model's base ('target base' row; the reference row "
            "is the source model with its own expert). "
            + STATS_NOTE
            + " "
            + ("Not run: " + "; ".join(skipped) + "." if skipped else "")
        ),
        paragraph=paragraph(rows, skipped),
        data=data | {"skipped": skipped},
        plots=[plot.name] if rows else [],
        # no direction ran: nothing was scored, and the power line says so (n = 0)
        power=[d["power"] for d in data.values()]
        or [power_record("no direction ran: nothing scored (see 'Not run')", 0, 0.0)],
    )


def draw(rows: list[dict], path: Path) -> None:
    fig = figure(7, 3.4)
    ax = fig.add_subplot(1, 1, 1)
    shown = [r for r in rows if "diff" in r]
    ys = [100 * r["diff"]["diff"] for r in shown]
    lo = [100 * (r["diff"]["diff"] - r["diff"]["ci_low"]) for r in shown]
    hi = [100 * (r["diff"]["ci_high"] - r["diff"]["diff"]) for r in shown]
    ax.errorbar(range(len(shown)), ys, yerr=[lo, hi], fmt="o", capsize=3)
    ax.axhline(0, color="grey", linewidth=1)
    ax.set_xticks(range(len(shown)))
    ax.set_xticklabels([r["variant"][:28] for r in shown], rotation=30, ha="right", fontsize=6)
    ax.set_ylabel("Δ vs target base (points)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def versus_shuffled(diffs: list[dict]) -> str:
    """Ordered vs shuffled σ, seed by seed: counted only where the paired CI excludes zero."""
    if not diffs:
        return "no shuffled seed ran"
    above = sum(judged(x) == "supports" for x in diffs)
    below = sum(judged(x) == "contradicts" for x in diffs)
    open_ = len(diffs) - above - below
    text = (
        f"ordered above shuffled (paired 95% CI above zero) in {above} of {len(diffs)} seeds, "
        f"below in {below}"
    )
    if open_:
        text += f", undetermined (CI includes zero) in {open_}"
    return text


def paragraph(rows: list[dict], skipped: list[str]) -> str:
    parts = []
    for d in dict.fromkeys(r["direction"] for r in rows):
        mine = [r for r in rows if r["direction"] == d and "diff" in r]
        ordered = next(r for r in mine if "ordered" in r["variant"])
        fs = next((r for r in mine if "few-shot" in r["variant"]), None)
        parts.append(
            f"{d}: ordered σ {diff_cell(ordered['diff'])} ({judged(ordered['diff'])}), "
            + versus_shuffled(ordered.get("ordered vs shuffled", []))
            + (
                f", cross-model few-shot {diff_cell(fs['diff'])} ({judged(fs['diff'])})"
                if fs
                else ""
            )
        )
    return (
        "**What this shows.** The paper (Table 5) finds Llama-3-8B experts help Mistral-7B "
        "only with σ in order (shuffled σ hurts) and credits the identical shapes. Here: "
        + ("; ".join(parts) if parts else "no direction ran")
        + ". Only an ordered-σ gain whose interval excludes zero, with every shuffled seed "
        "below it by a paired interval that excludes zero, would support transfer; intervals "
        "that include zero leave it open. "
        + ("Not run: " + "; ".join(skipped) + "." if skipped else "")
    )
