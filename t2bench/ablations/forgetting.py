"""SEAL forgetting: sequential edits merged into the weights one after another, LoRA vs SVF.

After edit i (passage i's own self-edit + the passage, merged), the questions of every passage
edited so far are asked again closed-book. The SEAL paper saw earlier passages fall below the
base model after 8 merged LoRA edits; the open question here is whether SVF, which only
rescales existing singular directions, forgets less.
"""

from __future__ import annotations

from t2bench.core.stats import paired_difference, power_record
from t2bench.core.tables import ADAPTER_KEY, Table, adapter_claim, diff_cell
from t2bench.seal.experiment import edit_sequences, sequential_edits
from t2bench.seal.inner import InnerConfig

NAME = "seal-forgetting"
COLUMNS = [
    "inner update",
    "edits merged",
    "accuracy on the newest passage",
    "mean accuracy on earlier passages",
    "their accuracy right after their own edit",
    "their accuracy before any edit",
    "accuracy on passage 0",
    "merge s",
]


def _edits(ctx) -> dict:
    """The own self-edits (base model, greedy) of the first passages, shared by both methods."""
    from t2bench.ablations.seal import eval_passages
    from t2bench.models import load_model

    p = ctx.profile
    key = f"seal-forget-edits|{p.seal_source}|{p.seal_forget_n}|{p.seal_variant}"

    def compute():
        passages = eval_passages(ctx)[: p.seal_forget_n]
        loaded = load_model(p.model)
        edits = edit_sequences(
            loaded.model,
            loaded.tokenizer,
            passages,
            "self-edit",
            variant=p.seal_variant,
            seed=p.seed,
        )
        return {"edits": edits}

    return ctx.remember(key, compute)


def sequence(ctx, method: str) -> dict:
    from t2bench.ablations.seal import eval_passages
    from t2bench.models import load_model

    p = ctx.profile
    key = f"seal-forget|{p.seal_source}|{p.seal_forget_n}|{p.seal_variant}|{method}"

    def compute():
        edits = _edits(ctx)["edits"]
        passages = eval_passages(ctx)[: p.seal_forget_n]
        loaded = load_model(p.model)  # a fresh copy: merging changes its weights
        out = sequential_edits(
            loaded.model,
            loaded.tokenizer,
            passages,
            edits,
            InnerConfig(method=method, steps=p.seal_inner_steps),
            model_id=loaded.model_id,
            progress=True,
        )
        return {"method": method, **out}

    return ctx.remember(key, compute)


def _mean(xs: list[float]) -> float | None:
    return round(sum(xs) / len(xs), 3) if xs else None


def summarise(rec: dict) -> list[dict]:
    m, before = rec["matrix"], rec["before"]
    rows = []
    for i, row in enumerate(m):
        earlier = list(range(i))
        rows.append(
            {
                "inner update": rec["method"],
                "edits merged": i + 1,
                "accuracy on the newest passage": round(row[i], 3),
                "mean accuracy on earlier passages": _mean([row[j] for j in earlier]),
                "their accuracy right after their own edit": _mean([m[j][j] for j in earlier]),
                "their accuracy before any edit": _mean([before[j] for j in earlier]),
                "accuracy on passage 0": round(row[0], 3),
                "merge s": round(rec["merge_seconds"][i], 1),
            }
        )
    return rows


def retention(rec: dict) -> dict:
    """After the last edit: mean accuracy on passages 0..n-2 vs right after their own edit."""
    m = rec["matrix"]
    n = len(m)
    earlier = range(n - 1)
    return {
        "after_own": _mean([m[j][j] for j in earlier]),
        "after_all": _mean([m[-1][j] for j in earlier]),
        "before": _mean([rec["before"][j] for j in earlier]),
        "questions": None,
    }


def merge_proof(rec: dict) -> dict:
    """Whether every edit of a sequence was merged, from what sequential_edits did: it merges
    edit i before it re-asks the questions of row i (one merge_seconds entry per edit), and an
    update that diverges raises there, so a finished record has no skipped edit.
    (sequential_edits keeps no per-edit loss or parameter count; this is the evidence it gives.)"""
    merged, rows = len(rec.get("merge_seconds") or []), len(rec.get("matrix") or [])
    return {
        "applied": merged > 0 and merged == rows,
        "applied_evidence": f"sequential_edits merged {merged} {rec.get('method')} updates "
        f"for {rows} edits (a diverged update raises; no loss is recorded per edit)",
    }


def power_of(ctx, recs: dict) -> dict:
    """n = the questions of the edited passages; p = their accuracy before any edit (both
    methods start from the same base model, so one record serves both)."""
    from t2bench.ablations.seal import eval_passages

    passages = eval_passages(ctx)[: ctx.profile.seal_forget_n]
    sizes = [len(x.questions) for x in passages]
    before = next(iter(recs.values()))["before"]
    p_base = sum(a * k for a, k in zip(before, sizes, strict=True)) / sum(sizes)
    return power_record(
        f"questions of the {len(sizes)} edited passages before any edit ({sum(sizes)} "
        "questions, not passages; answers within a passage are correlated, so the true MDD "
        "is larger)",
        sum(sizes),
        p_base,
    )


def kept_after_all(recs: dict, iters: int, seed: int) -> dict | None:
    """SVF − LoRA accuracy on the earlier passages after the last edit, paired over passages
    (graded per-passage scores: a paired bootstrap). None with fewer than two passages."""
    lora, svf = recs["lora"]["matrix"], recs["svf"]["matrix"]
    earlier = len(lora) - 1
    if earlier < 1 or len(svf) != len(lora):
        return None
    return paired_difference(lora[-1][:earlier], svf[-1][:earlier], iters=iters, seed=seed)


def run(ctx) -> Table:
    recs = {m: sequence(ctx, m) for m in ("lora", "svf")}
    rows = [r for m in recs for r in summarise(recs[m])]
    for r in rows:  # every row claims its method's merged edits
        r["variant"] = f"{r['inner update']} after {r['edits merged']} merged edits"
        r[ADAPTER_KEY] = adapter_claim(r["inner update"], merge_proof(recs[r["inner update"]]))
    ret = {m: retention(r) for m, r in recs.items()}
    p = ctx.profile
    paired = kept_after_all(recs, p.bootstrap_iters, p.seed)
    n = ctx.profile.seal_forget_n
    return Table(
        NAME,
        "SEAL forgetting: sequential merged edits, LoRA vs SVF inner update",
        COLUMNS,
        rows,
        caption=(
            f"The first {n} eval passages of the SEAL table, edited in order; edit i = the base "
            "model's own greedy self-edit of passage i + the passage, trained with the inner "
            "update of the SEAL table and merged into the weights before edit i+1, in fp32 "
            "whatever the profile's SEAL compute dtype (merging into bf16 weights would round "
            "small updates away). Accuracy = "
            "closed-book normalised containment over each passage's 3 questions. Per-passage "
            "accuracies are fractions of 3 questions, so a cell moves in steps of 1/3 and the "
            "means rest on few questions: read them as a description of this run, not as "
            "estimates with error bars. The SVF − LoRA comparison after the last edit is "
            "paired over the earlier passages (a paired bootstrap of per-passage accuracies)."
        ),
        paragraph=(
            "**What this shows.** Right after its own edit an earlier passage scores "
            f"{ret['lora']['after_own']} (LoRA) / {ret['svf']['after_own']} (SVF) on average; "
            f"after all {n} edits it scores {ret['lora']['after_all']} (LoRA) / "
            f"{ret['svf']['after_all']} (SVF), against {ret['lora']['before']} before any "
            "edit. The drop from the first to the second number is the forgetting; "
            + _verdict(ret, paired)
            + _newest(recs)
        ),
        data={m: recs[m] for m in recs} | {"svf_minus_lora_after_all": paired},
        power=[power_of(ctx, recs)],
    )


def _verdict(ret: dict, paired: dict | None = None) -> str:
    """Which method kept more of what its own edits stored (a share, not a raw drop: a method
    that stored less has less to lose). ``paired``: SVF − LoRA on the earlier passages after
    the last edit (kept_after_all); an order is claimed only where its CI excludes zero."""
    drops = {m: (r["after_own"] or 0) - (r["after_all"] or 0) for m, r in ret.items()}
    blank = [m for m, r in ret.items() if not r["after_own"]]
    if blank:
        return (
            f"{' and '.join(blank)} learned nothing from its own edits here (0 right after "
            "them), so it had nothing to forget: SVF forgot "
            f"{drops['svf']:+.3f} vs LoRA {drops['lora']:+.3f}, but this run cannot say "
            "which forgets less."
        )
    kept = {m: (r["after_all"] or 0) / r["after_own"] for m, r in ret.items()}
    if kept["svf"] == kept["lora"] == 0:
        return (
            "both forgot everything their own edits had stored (none of it is left after the "
            "last edit): here SVF forgets no less than LoRA. (The raw drops, SVF "
            f"{drops['svf']:+.3f} vs LoRA {drops['lora']:+.3f}, differ only because the two "
            "stored different amounts.)"
        )
    if kept["svf"] > kept["lora"]:
        word = "less than"
    elif kept["svf"] < kept["lora"]:
        word = "more than"
    else:
        word = "as much as"
    text = (
        f"SVF forgot {word} LoRA here: it kept {kept['svf']:.0%} of what its edits stored vs "
        f"LoRA {kept['lora']:.0%} (drops {drops['svf']:+.3f} vs {drops['lora']:+.3f}). "
    )
    if paired is None:
        return text + (
            "No paired interval could be computed, so which method forgets less is "
            "undetermined here."
        )
    if paired["ci_low"] > 0 or paired["ci_high"] < 0:
        return text + (
            f"After the last edit SVF − LoRA on the earlier passages is {diff_cell(paired)} "
            "(paired over passages), an interval that excludes zero."
        )
    return text + (
        f"After the last edit SVF − LoRA on the earlier passages is {diff_cell(paired)} "
        "(paired over passages), an interval that includes zero: which method forgets less "
        "is undetermined at this n."
    )


def _newest(recs: dict) -> str:
    """Accuracy on each passage right after its own edit, in edit order (plasticity)."""
    parts = [
        f"{m}: " + ", ".join(f"{row[i]:.2f}" for i, row in enumerate(r["matrix"]))
        for m, r in recs.items()
    ]
    return (
        " Accuracy on the newest passage right after its edit, edit by edit ("
        + "; ".join(parts)
        + "), shows whether the merged model still learns new facts."
    )
