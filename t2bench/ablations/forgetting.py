"""SEAL forgetting: sequential edits merged into the weights one after another, LoRA vs SVF.

After edit i (passage i's own self-edit + the passage, merged), the questions of every passage
edited so far are asked again closed-book. The SEAL paper saw earlier passages fall below the
base model after 8 merged LoRA edits; the open question here is whether SVF, which only
rescales existing singular directions, forgets less.
"""

from __future__ import annotations

from t2bench.report.tables import Table

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
    from t2bench.seal.experiment import edit_sequences

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
    from t2bench.seal.experiment import sequential_edits
    from t2bench.seal.inner import InnerConfig

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


def run(ctx) -> Table:
    recs = {m: sequence(ctx, m) for m in ("lora", "svf")}
    rows = [r for m in recs for r in summarise(recs[m])]
    ret = {m: retention(r) for m, r in recs.items()}
    n = ctx.profile.seal_forget_n
    return Table(
        NAME,
        "SEAL forgetting: sequential merged edits, LoRA vs SVF inner update",
        COLUMNS,
        rows,
        caption=(
            f"The first {n} eval passages of the SEAL table, edited in order; edit i = the base "
            "model's own greedy self-edit of passage i + the passage, trained with the inner "
            "update of the SEAL table and merged into the weights before edit i+1. Accuracy = "
            "closed-book normalised containment over each passage's 3 questions. Per-passage "
            "accuracies are fractions of 3 questions, so a cell moves in steps of 1/3 and the "
            "means rest on few questions: read them as a description of this run, not as "
            "estimates with error bars."
        ),
        paragraph=(
            "**What this shows.** Right after its own edit an earlier passage scores "
            f"{ret['lora']['after_own']} (LoRA) / {ret['svf']['after_own']} (SVF) on average; "
            f"after all {n} edits it scores {ret['lora']['after_all']} (LoRA) / "
            f"{ret['svf']['after_all']} (SVF), against {ret['lora']['before']} before any "
            "edit. The drop from the first to the second number is the forgetting; "
            + _verdict(ret)
            + _newest(recs)
        ),
        data={m: recs[m] for m in recs},
    )


def _verdict(ret: dict) -> str:
    """Which method kept more of what its own edits stored (a share, not a raw drop: a method
    that stored less has less to lose)."""
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
    return (
        f"SVF forgot {word} LoRA here: it kept {kept['svf']:.0%} of what its edits stored vs "
        f"LoRA {kept['lora']:.0%} (drops {drops['svf']:+.3f} vs {drops['lora']:+.3f}). With "
        "this few passages and questions the comparison is suggestive only."
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
