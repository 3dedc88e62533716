"""Table 2 analogue: adaptation to unseen tasks — base, LoRA, and the two-pass strategies:
prompt, classifier expert, few-shot CEM, plus label scoring and the embedding router.

Tasks: the paper's MATH, HumanEval and ARC-Challenge in the ``paper`` profile. At 135M those
score 0 (MATH, HumanEval) or chance (ARC-C) for every variant, which tests nothing, so the CPU
profile scores SciQ, basic arithmetic and basic coding (``t2bench.tasks.unseen``): one per
expert category, ~1000 multiple-choice documents each, never a training source.

How each number is made (all through ``lm_eval --model t2`` on the first n documents):
* base, each single SVF expert and the LoRA baseline: one lm-eval run each.
* few-shot CEM: one lm-eval run with ``dispatch=cem`` (α searched on shots that are never
  scored, see ``t2bench.dispatch.cem_strategy``); it composes a new mixture, so it is its own run.
* prompt / classifier / label / router choose, per document, the base model or one single
  expert. Their first pass runs on the exact contexts lm-eval sends (``first_docs``) and is
  timed; their second-pass score on a document is that of the chosen single expert's run on
  the same document (same weights, greedy decoding). One strategy is also run end to end
  through the backend, and the agreement with this assembly is reported as a check.
"""

from __future__ import annotations

from t2bench.ablations.context import precision_key
from t2bench.ablations.table1_training import STATS_NOTE, variant
from t2bench.core.stats import accuracy, power_record, verdict
from t2bench.core.tables import ADAPTER_KEY, Table, adapter_claim, diff_cell, diff_columns
from t2bench.dispatch.base import DispatchRequest
from t2bench.dispatch.categories import EXPERT_LABELS
from t2bench.dispatch.cem_strategy import scorable_limit
from t2bench.dispatch.routing_items import first_docs
from t2bench.dispatch.standalone import load_bound
from t2bench.tasks.lettered import TWINS
from t2bench.train.recipes import in_place_of

NAME = "table2-unseen-tasks"
STRATEGIES = ("prompt", "classifier", "label", "router")
CHECK_STRATEGY = "router"  # run end to end once to check the assembled scores
TASK_LABEL = {
    "arc_challenge": "ARC-Challenge",
    "humaneval": "HumanEval",
    "sciq": "SciQ",
    "t2_basic_arithmetic": "basic arithmetic",
    "t2_basic_coding": "basic coding",
}
COLUMNS = [
    "task",
    "variant",
    "n",
    "score",
    "95% CI",
    "Δ vs base (points) [95% CI]",
    "p",
    "W/L",
    "experts chosen",
]


def task_label(task: str) -> str:
    if task.startswith("minerva_math"):
        sub = task.removeprefix("minerva_math").strip("_")
        return "MATH" + (f" ({sub})" if sub else "")
    return TASK_LABEL.get(task, task)


def expert_name(label: str, experts: str | None = None) -> str:
    """The SVF expert of ``label``: ``<label>-svf-pg``, or under ``experts`` the fallback
    trained in its place where its policy-gradient sweep found no signal (e.g. code-svf-ntp,
    :func:`~t2bench.train.recipes.in_place_of`)."""
    pg = f"{label}-svf-pg"
    return in_place_of(experts, pg) if experts else pg


def expert_row(label: str, name: str) -> str:
    """The 'expert only' row of ``label``, naming the expert where it is not the PG one."""
    return f"{label} expert only" + ("" if name == f"{label}-svf-pg" else f" ({name})")


def lora_path(experts: str, run: str) -> str:
    """The peft adapter folder of the finished run ``run`` (e.g. math-lora-ntp)."""

    task, suffix = run.split("-", 1)
    return str(variant(experts, task, suffix).path)


def _pre(p) -> str:
    return f"pretrained={p.model}," if p.model else ""


def base_run(ctx, task: str, n: int | None) -> dict:
    """The lm-eval run of the base weights on the task's first n docs (memoised)."""
    return ctx.lmeval(task, _pre(ctx.profile) + "dispatch=none", n=n, label="base")


def cem_run(ctx, task: str, n: int | None) -> dict:
    """The lm-eval run of the CEM mixture (α searched on its shots) on the first n docs, or
    fewer where its shots are the task's last documents (they are never scored): compare it
    with other runs on its own ``doc_ids`` (:func:`on_docs`)."""
    p = ctx.profile
    return ctx.lmeval(
        task,
        f"{_pre(p)}experts={p.experts},dispatch=cem:{p.cem[task]};out={ctx.folder / 'cem'}",
        n=scorable_limit(task, p.cem[task], n),
        label="cem",
    )


def on_docs(run: dict, doc_ids: list[int]) -> list[float]:
    """``run``'s scores on ``doc_ids`` (a run that scored more documents, e.g. base beside a
    CEM run that held its shots back), in that order."""
    by_doc = dict(zip(run["doc_ids"], run["scores"], strict=True))
    missing = [d for d in doc_ids if d not in by_doc]
    if missing:
        raise RuntimeError(
            f"the {run.get('label', '?')} run did not score documents {missing[:5]} "
            f"({len(missing)} in all) that the comparison needs"
        )
    return [by_doc[d] for d in doc_ids]


def singles(ctx, task: str, n: int | None, scored: str | None = None) -> dict[str, dict]:
    """lm-eval runs of base, each single expert, LoRA and CEM on the task's first n docs;
    ``scored``: the same on another lm-eval task of the same documents (the generation twin
    of :attr:`~t2bench.ablations.profile.AblationProfile.generation`), without CEM, whose α
    search scores shots by the task it runs on."""
    p = ctx.profile
    pre = _pre(p)
    on = scored or task
    runs = {"base": base_run(ctx, on, n)}
    for lab in EXPERT_LABELS:
        name = expert_name(lab, p.experts)
        runs[name] = ctx.lmeval(
            on, f"{pre}experts={p.experts},dispatch=fixed:{name}", n=n, label=name
        )
    runs["LoRA"] = ctx.lmeval(
        on, f"{pre}peft={lora_path(p.experts, p.lora_for[task])}", n=n, label="LoRA"
    )
    if scored is None:
        runs["few-shot (CEM)"] = cem_run(ctx, task, n)
    return runs


#: where a CEM row's shots come from, for the captions of the tables that score CEM
CEM_SHOTS = (
    "CEM shots come from a split the evaluation does not score where the task has one, else "
    "from its last documents, which the CEM row then leaves out: its n is smaller and its Δ is "
    "against base on its own documents"
)

#: what the generation rows score, in their task column
GENERATION = "letter in a greedy completion"


def generation_rows(ctx, task: str, n: int | None, choices: dict[str, dict]) -> tuple:
    """Table 2's rows on ``task``'s generation twin: base, LoRA, each strategy (the expert it
    chose per document on the log-likelihood task, whose first pass saw the same question)
    and each single expert. Returns (rows, per-document data, power record)."""
    p = ctx.profile
    gen = p.generation[task]
    runs = singles(ctx, task, n, scored=gen)
    base, docs = runs["base"]["scores"], runs["base"]["doc_ids"]
    for name, r in runs.items():
        if r["doc_ids"] != docs:
            raise RuntimeError(f"{gen}: the {name} run scored other documents than base")
    label = f"{task_label(task)} ({GENERATION})"
    iters, seed = p.bootstrap_iters, p.seed

    def row(variant, scores, chosen="", adapter=None, versus=base):
        r = make_row(gen, variant, scores, versus, iters, seed, chosen, adapter)
        return r | {"task": label}

    rows = [
        row("base", base, versus=None),
        row("LoRA", runs["LoRA"]["scores"], adapter=("lora", runs["LoRA"])),
    ]
    per_doc = {"doc_ids": docs, "base": base, "LoRA": runs["LoRA"]["scores"]}
    for strategy, choice in choices.items():
        if choice["doc_ids"] != docs:
            raise RuntimeError(f"{gen}: {strategy} chose for other documents than {task}")
        scores = assemble(choice, runs)
        per_doc[strategy] = scores
        rows.append(row(strategy, scores, counts(choice["keys"])))
    for lab in EXPERT_LABELS:
        name = expert_name(lab, p.experts)
        per_doc[name] = runs[name]["scores"]
        rows.append(row(expert_row(lab, name), runs[name]["scores"], adapter=("svf", runs[name])))
    return rows, per_doc, power_of(f"{label}, {gen}, first {len(docs)} docs", base)


def first_pass(ctx, task: str, n: int | None, strategy: str) -> dict:
    """The strategy's choice for each doc and the seconds its ``choose`` took."""
    dtype = ctx.lmeval_dtype()

    def compute():
        import time

        import torch
        from tqdm.auto import tqdm

        items = first_docs(task, n)
        bound = load_bound(
            strategy,
            pretrained=ctx.profile.model,
            experts=ctx.profile.experts,
            batch_size=ctx.profile.batch_size,
            lm=ctx.shared_lm(),
        )
        keys, seconds = [], 0.0
        bs = ctx.profile.batch_size
        bar = tqdm(total=len(items), desc=f"first pass {strategy} on {task}", unit="doc")
        try:
            with torch.no_grad():
                for i in range(0, len(items), bs):
                    reqs = [
                        DispatchRequest(it.text, it.task, it.doc_id) for it in items[i : i + bs]
                    ]
                    t0 = time.perf_counter()
                    keys += [c.key for c in bound.dispatcher.choose(reqs)]
                    seconds += time.perf_counter() - t0
                    bar.update(len(reqs))
        finally:
            bar.close()
            if bound.patcher is not None:
                bound.patcher.restore()
        return {
            "kind": "first-pass",
            "task": task,
            "strategy": strategy,
            "doc_ids": [it.doc_id for it in items],
            "keys": keys,
            "first_pass_seconds": round(seconds, 3),
            "dtype": dtype,
            "describe": bound.dispatcher.describe(),
        }

    key = f"first-pass|{task}|{n}|{strategy}|{ctx.profile.experts}"
    return ctx.remember(key + precision_key(dtype), compute)


def assemble(choice: dict, runs: dict[str, dict]) -> list[float]:
    """Per-doc scores of a strategy: the chosen run's score on each doc."""
    by_run = {k: dict(zip(r["doc_ids"], r["scores"], strict=True)) for k, r in runs.items()}
    out = []
    for doc, key in zip(choice["doc_ids"], choice["keys"], strict=True):
        if key not in by_run:
            raise RuntimeError(f"strategy {choice['strategy']} chose {key!r}, which has no run")
        out.append(by_run[key][doc])
    return out


def counts(keys: list[str]) -> str:
    from collections import Counter

    return ", ".join(f"{k.split('-svf-')[0]} {v}" for k, v in sorted(Counter(keys).items()))


def mixture_proof(rec: dict) -> dict:
    """Whether a ``dispatch=cem`` run's second pass ran on the composed mixture.

    The backend's ``weight_compositions`` also counts the candidates the α search composed on
    the same patcher, so it alone cannot prove that the mixture answered any document: the
    compositions left after the search's own, and the documents routed to a ``cem:`` choice,
    must both be positive."""
    t2 = rec.get("t2") or {}
    total = int(t2.get("weight_compositions") or 0)
    tasks = ((t2.get("dispatch") or {}).get("tasks")) or {}
    # a search read from the cache composed nothing in this run
    search = sum(
        int((d.get("cost") or {}).get("weight_compositions") or 0)
        for d in tasks.values()
        if not d.get("from_cache")
    )
    routed = sum(v for k, v in (t2.get("dispatch_counts") or {}).items() if k.startswith("cem:"))
    return {
        "applied": total - search > 0 and routed > 0,
        "applied_evidence": f"weight_compositions={total} ({search} of them in the α search), "
        f"{routed} requests answered by the cem mixture",
    }


def claim(kind: str, rec: dict) -> dict:
    """The adapter claim of a row scored by the lm-eval run ``rec`` (mixtures: mixture_proof)."""
    return adapter_claim(kind, mixture_proof(rec) if kind == "mixture" else rec)


def judged(diff: dict, claim_sign: int = 1) -> str:
    """verdict() in words, saying 'undetermined' where the paired 95% CI includes zero."""
    v = verdict(diff, claim_sign)
    return "undetermined: its 95% CI includes zero" if v == "inconclusive" else v


def power_of(label: str, base_scores: list[float]) -> dict:
    """n and the base's score on the scored documents (0/1 per document for every task here)."""
    acc = accuracy(base_scores)
    return power_record(label, acc["n"], acc["score"])


def make_row(task, name, scores, base, iters, seed, chosen="", adapter=None) -> dict:
    """One row; ``adapter`` = (kind, lm-eval record) where the row names a specific adapter."""
    acc = accuracy(scores)
    r = {
        "task": task_label(task),
        "task_id": task,
        "variant": name,
        "n": acc["n"],
        "score": acc["score"],
        "95% CI": f"[{acc['ci_low']:.3f}, {acc['ci_high']:.3f}]",
        "experts chosen": chosen,
    }
    if base is not None:
        r |= diff_columns(base, scores, iters=iters, seed=seed)
    if adapter is not None:
        r[ADAPTER_KEY] = claim(*adapter)
    return r


def run(ctx) -> Table:
    p = ctx.profile
    rows, data, checks, power = [], {}, {}, []
    for task, n in p.unseen.items():
        runs = singles(ctx, task, n)
        base = runs["base"]["scores"]
        docs = runs["base"]["doc_ids"]
        for name, r in runs.items():
            if name != "few-shot (CEM)" and r["doc_ids"] != docs:
                raise RuntimeError(f"{task}: the {name} run scored other documents than base")
        assembled = {"base": ("", runs["base"])}
        per_doc = {"doc_ids": docs}
        rows.append(make_row(task, "base", base, None, p.bootstrap_iters, p.seed))
        power.append(power_of(f"{task_label(task)} ({task}, first {len(docs)} docs)", base))
        lora = runs["LoRA"]
        rows.append(
            make_row(
                task,
                "LoRA",
                lora["scores"],
                base,
                p.bootstrap_iters,
                p.seed,
                adapter=("lora", lora),
            )
        )
        per_doc["LoRA"] = runs["LoRA"]["scores"]
        for strategy in STRATEGIES:
            choice = first_pass(ctx, task, n, strategy)
            scores = assemble(choice, runs)
            per_doc[strategy] = scores
            per_doc[f"{strategy}_choices"] = choice["keys"]
            rows.append(
                make_row(
                    task, strategy, scores, base, p.bootstrap_iters, p.seed, counts(choice["keys"])
                )
            )
            assembled[strategy] = (choice, scores)
        cem = runs["few-shot (CEM)"]
        rows.append(
            make_row(
                task,
                "few-shot (CEM)",
                cem["scores"],
                on_docs(runs["base"], cem["doc_ids"]),
                p.bootstrap_iters,
                p.seed,
                adapter=("mixture", cem),
            )
        )
        per_doc["cem"] = cem["scores"]
        per_doc["cem_doc_ids"] = cem["doc_ids"]  # without the shots held back from the end
        for lab in EXPERT_LABELS:
            name = expert_name(lab, p.experts)
            rows.append(
                make_row(
                    task,
                    expert_row(lab, name),
                    runs[name]["scores"],
                    base,
                    p.bootstrap_iters,
                    p.seed,
                    adapter=("svf", runs[name]),
                )
            )
            per_doc[name] = runs[name]["scores"]
        per_doc["base"] = base
        data[task] = per_doc
        if task in p.generation:
            choices = {s: assembled[s][0] for s in STRATEGIES}
            gen_rows, data[p.generation[task]], gen_power = generation_rows(ctx, task, n, choices)
            rows += gen_rows
            power.append(gen_power)
        if not checks:  # once: the strategy end to end through the backend, on the first task
            pre = f"pretrained={p.model}," if p.model else ""
            e2e = ctx.lmeval(
                task, f"{pre}experts={p.experts},dispatch={CHECK_STRATEGY}", n=n, label="check"
            )
            mine = assembled[CHECK_STRATEGY][1]
            agree = sum(a == b for a, b in zip(mine, e2e["scores"], strict=True))
            checks = {
                "task": task,
                "strategy": CHECK_STRATEGY,
                "docs": len(mine),
                "agreeing_docs": agree,
                "assembled_score": sum(mine) / len(mine),
                "end_to_end_score": e2e["aggregate"],
            }
    data["end_to_end_check"] = checks
    return Table(
        NAME,
        "Table 2 analogue: unseen tasks — base, LoRA and the two-pass strategies",
        COLUMNS,
        rows,
        caption=caption(ctx, checks),
        paragraph=paragraph(rows, ctx.expert_spread(p.experts)),
        data=data,
        power=power,
    )


def format_or_knowledge(rows: list[dict]) -> str:
    """A sentence per variant whose interval excludes zero on a task scored both ways: a gain
    by generation only is the answer format; by log-likelihood too, knowledge."""
    by = {(r["task_id"], r["variant"]): r for r in rows if r.get("diff")}
    scored = {r["task_id"] for r in rows}
    twin = {ll: TWINS[ll][0] for ll in scored if ll in TWINS and TWINS[ll][0] in scored}
    if not twin:
        return ""
    found = []
    for (task, name), ll in by.items():
        gen = by.get((twin.get(task), name))
        if gen is not None:
            up = [verdict(x["diff"]) == "supports" for x in (ll, gen)]
            if any(up):
                kind = "knowledge" if up[0] else "answer format only"
                found.append(
                    f"{task_label(task)} {name}: log-likelihood {diff_cell(ll['diff'])}, "
                    f"generation {diff_cell(gen['diff'])} ({kind})"
                )
    return (
        "Format vs knowledge (the same documents scored by log-likelihood and by the letter a "
        "greedy completion names): "
        + ("; ".join(found) if found else "no variant gains on either with an interval above zero")
        + ". "
    )


def caption(ctx, check: dict) -> str:
    p = ctx.profile
    tasks = ", ".join(f"{task_label(t)} first {n or 'all'} docs" for t, n in p.unseen.items())
    return (
        f"lm-eval through the `t2` backend: {tasks} (each task's evaluated split; "
        f"{CEM_SHOTS}). LoRA: the category-matched LoRA-NTP "
        f"baseline ({', '.join(f'{task_label(t)}: {r}' for t, r in p.lora_for.items())}). "
        "prompt/classifier/label/router scores are assembled from the chosen expert's run per doc "
        f"(module docstring); end-to-end check: {check.get('strategy')} on {task_label(check.get('task', ''))} "
        f"agreed on {check.get('agreeing_docs')}/{check.get('docs')} docs "
        f"(assembled {check.get('assembled_score', 0):.3f} vs end to end {check.get('end_to_end_score', 0):.3f}). "
        "'expert only' rows: each single expert on every doc. The strategies' rows claim a "
        "strategy, not an adapter (they may route every document to base); the LoRA, CEM and "
        "expert-only rows carry the record that their adapter was applied. " + STATS_NOTE
    )


def paragraph(rows: list[dict], spread: float) -> str:
    bits = []
    for task in dict.fromkeys(r["task"] for r in rows):
        mine = {r["variant"]: r for r in rows if r["task"] == task}
        fs, lora = mine.get("few-shot (CEM)"), mine["LoRA"]
        bits.append(
            f"{task}: "
            + (f"few-shot {diff_cell(fs['diff'])} ({judged(fs['diff'])}), " if fs else "")
            + f"LoRA {diff_cell(lora['diff'])} ({judged(lora['diff'], -1)} for 'LoRA hurts')"
        )
    sig = [
        f"{r['task']} {r['variant']}"
        for r in rows
        if r.get("diff") and verdict(r["diff"]) != "inconclusive"
    ]
    moved: dict[str, int] = {}
    for r in rows:
        if r.get("diff"):
            changed = r["diff"]["wins"] + r["diff"]["losses"]
            moved[r["variant"]] = moved.get(r["variant"], 0) + changed
    n = sum(r["n"] for r in rows if r["variant"] == "base")
    most = max(moved, key=moved.get)
    return (
        "**What this shows.** The paper's claims (Table 2): all three Transformer² strategies "
        "improve on the base model on unseen tasks, few-shot the most, while LoRA often falls "
        f"below base. Here: {'; '.join(bits)}. Differences whose 95% interval excludes zero: "
        f"{', '.join(sig) if sig else 'none'}. Documents whose outcome differs from base, over "
        f"all {n}: "
        + ", ".join(f"{k} {v}" for k, v in moved.items())
        + f" (most: {most}). "
        + format_or_knowledge(rows)
        + "Which expert a strategy picks is in the 'experts chosen' column; the SVF experts are "
        f"close to identity (max |z−1| = {100 * spread:.2f}%), so a choice can change few "
        "answers, and unless intervals above exclude zero the strategies are not separated "
        "here: such rows test the machinery, not the claim."
    )
