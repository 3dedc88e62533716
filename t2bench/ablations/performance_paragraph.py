"""The paragraph under the performance table: what its ratios say against the project's goals."""

from __future__ import annotations

import json

from t2bench.ablations.performance_rows import short_commit, short_machine


def paragraph(rows: list[dict], used: list[dict], missing: dict[str, str]) -> str:
    by = {r["key"]: r for r in rows if r.get("ratio") is not None or r["key"].endswith("identical")}
    parts: list[str] = []

    def ratio(key: str) -> float | None:
        r = by.get(key)
        return None if r is None else r.get("ratio")

    x = ratio("train-step.svf_over_lora")
    if x is not None:
        r = by["train-step.svf_over_lora"]
        s = f"SVF's train step takes {x:.2f}× LoRA's ({r['value']}): "
        s += (
            "LoRA is faster per step here (goal ≤ 1× not met)"
            if x > 1
            else "at or under LoRA's, as the goal asks"
        )
        p = ratio("train-step.params_over_lora")
        if p is not None:
            s += f"; SVF trains {p:.3f}× LoRA's parameters"
        m = ratio("train-step.peak_memory_over_lora")
        if m is not None:
            s += f" and peaks at {m:.2f}× its memory during the steps"
        parts.append(s + ".")
    x = ratio("svf.svd_cold_over_cached")
    if x is not None:
        cold = by["svf.svd_cold_over_cached"]["value"]
        s = f"A cold SVD takes {x:.0f}× as long as loading the cached one ({cold})"
        c = ratio("svf.compose_over_forward")
        if c is not None:
            s += f", and composing an expert's weights costs {100 * c:.1f}% of one forward pass"
        parts.append(s + ".")
    x = ratio("backend.throughput")
    if x is not None:
        s = f"The t2 backend with a fixed expert runs at {x:.3f}× hf's throughput"
        s += " (as fast or faster)" if x >= 1 else f" ({100 * (1 - x):.1f}% slower)"
        ident = by.get("backend.parity_identical")
        if ident is not None:
            same = ident["value"] == "identical"
            s += f"; without experts its scores are {'identical to' if same else 'not identical to'} hf's"
        g = by.get("backend.compositions_per_group")
        if g is not None:
            s += "; with requests alternating between experts, weights are composed " + (
                "once per expert group" if g["ratio"] == 1 else f"{g['ratio']:.2f}× per group"
            )
            a = ratio("backend.alternating_over_fixed")
            if a is not None:
                s += f", at {a:.2f}× the fixed expert's wall time"
        parts.append(s + ".")
    d = by.get("train-parity.max_abs_dz")
    if d is not None:
        if d["ratio"] == 0:
            parts.append("Training with 2 processes gives the same expert as 1 (max |Δz| = 0).")
        else:
            parts.append(
                f"Training with 2 processes instead of 1 changes the expert by max |Δz| = "
                f"{d['value'].split(' ')[0]}, {d['ratio']:.3g} of its largest move from identity."
            )
    fr = [r for r in rows if r["key"].startswith("dispatch-cost.") and r.get("ratio") is not None]
    fr = [r for r in fr if not r["key"].endswith("without_search")]
    if fr:
        lo, hi = min(fr, key=lambda r: r["ratio"]), max(fr, key=lambda r: r["ratio"])
        parts.append(
            f"A dispatch first pass costs from {100 * lo['ratio']:.1f}% ({lo['where']}) to "
            f"{100 * hi['ratio']:.1f}% ({hi['where']}) of the second pass."
        )
    if missing:
        parts.append(
            "No record yet for " + "; ".join(f"{k} (`{c}`)" for k, c in missing.items()) + "."
        )
    ok = [u for u in used if "error" not in u]
    commits = sorted({short_commit(u.get("commit")) or "unknown" for u in ok})
    machines = {json.dumps(u.get("machine"), sort_keys=True) for u in ok}
    shorts = sorted({short_machine(u.get("machine")) or "unknown" for u in ok})
    if len(commits) > 1 or len(machines) > 1:
        where = f"{len(commits)} commit{'s' if len(commits) > 1 else ''} ({', '.join(commits)})"
        if len(machines) > 1:
            where += f" and {len(machines)} machine configurations ({'; '.join(shorts)})"
        else:
            where += f" on one machine configuration ({shorts[0]})"
        parts.append(
            f"The records come from {where}: ratios within one record are comparable, "
            "absolute times across records are not."
        )
    elif ok:
        parts.append(
            f"All records come from commit {commits[0]} on one machine ({shorts[0]}); "
            "absolute times are still from separate runs."
        )
    if any("+" in c for c in commits):
        parts.append(
            "A commit marked +dirty was recorded from a working tree with uncommitted changes."
        )
    return "**What this shows.** " + " ".join(parts) if parts else ""
