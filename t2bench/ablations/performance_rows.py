"""The performance table's rows: one extractor per benchmark record kind, each yielding the
ratios its record holds (the record's own ratio where it stores one, else the quotient of the two
numbers it stores), and what of a record was skipped because a field was missing or odd."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from t2bench.core.tables import ADAPTER_KEY, adapter_claim

#: what a record with a missing or odd field raises on lookup; anything else is a bug and raises
LOOKUP_ERRORS = (KeyError, TypeError, ValueError, IndexError, AttributeError, ZeroDivisionError)

Thunk = Callable[[], "dict | list[dict] | None"]


# ---------------------------------------------------------------------- formatting


def secs(x: float) -> str:
    x = float(x)
    if x >= 100:
        return f"{x:.0f} s"
    if x >= 10:
        return f"{x:.1f} s"
    if x >= 1:
        return f"{x:.2f} s"
    return f"{x:.3f} s"


def mib(kib: float) -> str:
    return f"{kib / 1024:,.0f} MiB"


def short_commit(commit: str | None) -> str:
    if not commit:
        return ""
    sha, _, rest = str(commit).partition("+")
    return sha[:12] + (f"+{rest}" if rest else "")


def short_machine(machine: dict | None) -> str:
    m = machine if isinstance(machine, dict) else {}
    parts = []
    if m.get("cpu_count") is not None:
        parts.append(f"{m['cpu_count']} CPUs")
    if m.get("torch"):
        parts.append(f"torch {m['torch']}")
    if m.get("gpu"):
        parts.append(str(m["gpu"]))
    return ", ".join(parts)


def _row(key: str, measure: str, value: str, baseline: str, ratio: Any, derived: bool) -> dict:
    return {
        "key": key,
        "measure": measure,
        "value": value,
        "baseline": baseline,
        "ratio": None if ratio is None else float(ratio),
        "ratio_source": None
        if ratio is None
        else ("quotient of recorded values" if derived else "record"),
    }


def cells(row: dict) -> dict:
    """No '|' in a cell: it would split the Markdown table's row (names come from records)."""
    return {k: v.replace("|", "/") if isinstance(v, str) else v for k, v in row.items()}


def _pick(d: dict, prefix: str) -> tuple[str, Any]:
    """The one entry of ``d`` whose key starts with ``prefix`` (keys carry run settings)."""
    hits = [(k, v) for k, v in d.items() if k.startswith(prefix)]
    if len(hits) != 1:
        raise KeyError(f"{len(hits)} keys start with {prefix!r}")
    return hits[0]


# ---------------------------------------------------------------------- one extractor per kind


def _svf(rec: dict) -> Iterator[tuple[str, Thunk]]:
    def cold_cached():
        s = rec["seconds"]
        ck, cold = _pick(s, "svd_cold_")
        _, cached = _pick(s, "svd_cached_load_")
        mods = ck.removeprefix("svd_cold_")
        n = rec.get("svd_matrices")
        return _row(
            "svf.svd_cold_over_cached",
            f"SVD of {f'{n} ' if n else ''}matrices ({mods}): cold vs cached load",
            f"{secs(cold)} vs {secs(cached)}",
            "loading the cached SVD",
            rec["ratios"]["svd_cold_over_cached"],
            False,
        )

    def compose_forward():
        s = rec["seconds"]
        ck, compose = _pick(s, "compose_all_")
        fk, forward = _pick(s, "forward_")
        _, ratio = _pick(rec["ratios"], "compose_over_forward_")
        n = rec.get("matrices")
        return _row(
            "svf.compose_over_forward",
            f"compose all {f'{n} ' if n else ''}{ck.removeprefix('compose_all_')} matrices "
            "vs one forward pass",
            f"{secs(compose)} vs {secs(forward)}",
            f"one forward pass, batch × tokens {fk.removeprefix('forward_').replace('x', ' × ')}",
            ratio,
            False,
        )

    def restore_forward():
        s = rec["seconds"]
        fk, forward = _pick(s, "forward_")
        return _row(
            "svf.restore_over_forward",
            "restore the base weights vs one forward pass",
            f"{secs(s['restore'])} vs {secs(forward)}",
            f"one forward pass, batch × tokens {fk.removeprefix('forward_').replace('x', ' × ')}",
            s["restore"] / forward,
            True,
        )

    yield "svd cold vs cached", cold_cached
    yield "compose vs forward", compose_forward
    yield "restore vs forward", restore_forward


def _claim(run: dict, what: str) -> dict:
    """A backend row timed with SVF experts claims them: the run's t2 summary must show that
    their weights were composed (a run that never applied them timed the base model)."""
    if not isinstance(run.get("t2"), dict):
        raise KeyError("no t2 summary to show the experts were applied")
    return {ADAPTER_KEY: adapter_claim("svf", run), "variant": what}


def _backend(rec: dict) -> Iterator[tuple[str, Thunk]]:
    def parity_scores():
        p = rec["parity"]
        identical = p["identical"]
        if not isinstance(identical, bool):
            raise TypeError("parity.identical is not a bool")
        differ = [t for t in p["hf"] if p["hf"][t] != p["t2_no_experts"].get(t)]
        return _row(
            "backend.parity_identical",
            f"t2 without experts vs hf: scores on {', '.join(p['tasks'])} (limit {p['limit']})",
            "identical" if identical else f"differ on {', '.join(differ) or 'some task'}",
            "lm-eval hf backend, same model and documents",
            None,
            False,
        )

    def parity_seconds():
        s = rec["parity"]["seconds"]
        return _row(
            "backend.parity_throughput",
            "t2 without experts / hf throughput (parity run, one run each)",
            f"t2 {secs(s['t2'])}, hf {secs(s['hf'])}",
            "lm-eval hf backend",
            s["hf"] / s["t2"],
            True,
        )

    def throughput():
        th = rec["throughput"]
        med = th["median_seconds"]
        return _row(
            "backend.throughput",
            f"t2 with one fixed expert / hf throughput ({', '.join(th['tasks'])} limit "
            f"{th['limit']}, median of {th['repeats']})",
            f"t2 {secs(med['t2_fixed'])}, hf {secs(med['hf'])}",
            "lm-eval hf backend, no expert",
            th["t2_fixed_over_hf_throughput"],
            False,
        ) | _claim(th, "backend throughput, t2 with one fixed expert")

    def compose_share():
        th = rec["throughput"]
        t2 = th["t2"]
        total = sum(th["seconds"]["t2_fixed"])
        runs = len(th["seconds"]["t2_fixed"])
        return _row(
            "backend.compose_share",
            "composing the fixed expert's weights within the t2 runs",
            f"{secs(t2['compose_seconds'])} ({t2['weight_compositions']} composition(s), "
            f"{t2['matrices_composed']} matrices) of {secs(total)} over {runs} run(s)",
            "wall time of the t2 runs",
            t2["compose_seconds"] / total,
            True,
        ) | _claim(th, "backend compose share, t2 with one fixed expert")

    def alternating_groups():
        a = rec["alternating_4_experts"]
        t2 = a["t2"]
        return _row(
            "backend.compositions_per_group",
            f"requests alternating over {len(t2['experts'])} experts: weight compositions per "
            "expert group",
            f"{t2['weight_compositions']} compositions for {t2['groups']} groups "
            f"({t2['matrices_composed']} matrices, {secs(t2['compose_seconds'])})",
            "one composition per expert group",
            t2["weight_compositions"] / t2["groups"],
            True,
        ) | _claim(a, "backend, requests alternating over experts")

    def alternating_vs_fixed():
        a, th = rec["alternating_4_experts"], rec["throughput"]
        if a["tasks"] != th["tasks"] or a["limit"] != th["limit"]:
            return None  # different documents: the wall times are not comparable
        fixed = th["median_seconds"]["t2_fixed"]
        return _row(
            "backend.alternating_over_fixed",
            f"{len(a['t2']['experts'])} alternating experts vs one fixed expert: wall time",
            f"{secs(a['seconds'])} vs {secs(fixed)}",
            "t2 with one fixed expert (median), same documents",
            a["seconds"] / fixed,
            True,
        )

    yield "parity scores", parity_scores
    yield "parity throughput", parity_seconds
    yield "throughput", throughput
    yield "compose share", compose_share
    yield "alternating groups", alternating_groups
    yield "alternating vs fixed", alternating_vs_fixed


def _step_view(rec: dict) -> dict:
    """A train-step record in the one-section layout the rows read: records written since the
    bench grew ``--mode`` and ``--dtypes`` keep a section per mode (``rl`` is the trainer's
    step and is preferred) with variants per ``<adapter>/<dtype>``; the view takes the
    fp32 jobs of that section (the first dtype where there is no fp32)."""
    if "variants" in rec:
        return rec
    mode = "rl" if "rl" in rec else "ntp"
    sec = rec[mode]
    dtypes = [k.split("/")[1] for k in sec["variants"] if k.count("/") == 1]
    dtype = "float32" if "float32" in dtypes else dtypes[0]
    variants = {k.split("/")[0]: v for k, v in sec["variants"].items() if k.endswith(f"/{dtype}")}
    lora = variants["lora"]["median_step_seconds"]
    shape = sec.get("batch_shape")
    return rec | {
        "variants": variants,
        "svf_over_lora_step_time": variants["svf"]["median_step_seconds"] / lora,
        "step_time_over_lora": {k: v["median_step_seconds"] / lora for k, v in variants.items()},
        "batch_shape": shape,
        "step_label": sec.get("step") if mode == "rl" else None,
        "dtype": dtype,
    }


def _train_step(rec: dict) -> Iterator[tuple[str, Thunk]]:
    rec = _step_view(rec)

    def setting() -> str:
        shape = rec.get("batch_shape")
        where = f"batch {shape[0]} × {shape[1]} tokens" if shape else ""
        if rec.get("step_label"):
            where = f"RL step: {rec['step_label'].split(',')[0]}"
        dev = rec.get("device")
        dtype = rec.get("dtype")
        return ", ".join(x for x in (where, dev, dtype) if x)

    def lora_name() -> str:
        return "LoRA " + str((rec.get("adapters") or {}).get("lora", "")).strip()

    def svf_lora_time():
        v = rec["variants"]
        return _row(
            "train-step.svf_over_lora",
            f"train step, SVF vs LoRA: median seconds ({setting()})",
            f"{secs(v['svf']['median_step_seconds'])} vs {secs(v['lora']['median_step_seconds'])}",
            lora_name(),
            rec["svf_over_lora_step_time"],
            False,
        )

    def other_times():
        v, ratios = rec["variants"], rec["step_time_over_lora"]
        return [
            _row(
                f"train-step.{name}_over_lora",
                f"train step, {name.upper()} vs LoRA: median seconds ({setting()})",
                f"{secs(v[name]['median_step_seconds'])} vs {secs(v['lora']['median_step_seconds'])}",
                lora_name(),
                ratio,
                False,
            )
            for name, ratio in ratios.items()
            if name not in ("svf", "lora")
        ]

    def params():
        s, lo = rec["variants"]["svf"], rec["variants"]["lora"]
        return _row(
            "train-step.params_over_lora",
            "trainable parameters (AdamW state), SVF vs LoRA",
            f"{s['trainable_parameters']:,} ({s['optimizer_state_bytes'] / 1024:,.0f} KiB) vs "
            f"{lo['trainable_parameters']:,} ({lo['optimizer_state_bytes'] / 1024:,.0f} KiB)",
            lora_name(),
            s["trainable_parameters"] / lo["trainable_parameters"],
            True,
        )

    def peak_memory():
        s, lo = rec["variants"]["svf"], rec["variants"]["lora"]
        if "peak_allocated_steps_bytes" in s:  # CUDA
            a, b = s["peak_allocated_steps_bytes"] / 1024, lo["peak_allocated_steps_bytes"] / 1024
            what = "peak allocated GPU memory during the steps"
        else:  # CPU: the kernel's resident-set high-water mark
            a = s.get("peak_rss_steps_kib") or s["peak_rss_kib"]
            b = lo.get("peak_rss_steps_kib") or lo["peak_rss_kib"]
            what = "peak resident memory during the steps"
        return _row(
            "train-step.peak_memory_over_lora",
            f"{what}, SVF vs LoRA",
            f"{mib(a)} vs {mib(b)}",
            lora_name(),
            a / b,
            True,
        )

    def overhead():
        s, lo = rec["variants"]["svf"], rec["variants"]["lora"]
        if "step_overhead_bytes" in s:
            a, b = s["step_overhead_bytes"] / 1024, lo["step_overhead_bytes"] / 1024
        else:
            a, b = s["step_overhead_kib"], lo["step_overhead_kib"]
        return _row(
            "train-step.step_overhead_over_lora",
            "memory the steps add over the built model (peak − after build), SVF vs LoRA",
            f"{mib(a)} vs {mib(b)}",
            lora_name(),
            a / b,
            True,
        )

    yield "svf vs lora step time", svf_lora_time
    yield "other variants' step time", other_times
    yield "trainable parameters", params
    yield "peak memory", peak_memory
    yield "step memory overhead", overhead


def _train_parity(rec: dict) -> Iterator[tuple[str, Thunk]]:
    prov = rec.get("provenance") or {}
    run = ", ".join(
        f"{label} {prov[k]}"
        for k, label in (("steps", "steps"), ("global_batch", "global batch"))
        if k in prov
    )

    def dz():
        d, moved = rec["max_abs_dz_1proc_vs_2proc"], rec["max_abs_z_minus_1"]
        return _row(
            "train-parity.max_abs_dz",
            f"1 vs 2 processes{f' ({run})' if run else ''}: max abs(Δz) between the experts",
            f"{d:.3g} (max abs(z − 1) = {moved:.3g})",
            "the 1-process expert's largest move from identity, max abs(z − 1)",
            d / moved if moved else None,
            True,
        )

    def seconds():
        s = rec["seconds"]
        return _row(
            "train-parity.seconds",
            "2 processes vs 1 process (one thread each): wall time of the training run",
            f"{secs(s['2proc'])} vs {secs(s['1proc'])}",
            "1 process",
            s["2proc"] / s["1proc"],
            True,
        )

    yield "max abs(dz)", dz
    yield "seconds", seconds


def _dispatch_row(r: dict) -> list[dict]:
    if r["strategy"] == "none":
        return []  # no first pass: the reference run, fraction 0 by construction
    where = f"{r['strategy']} on {r['task']} (n={r['n']})"
    short = f"{r['strategy']} on {r['task']}"
    search = r.get("cem_search_s")
    extra = f", α search {secs(search)}" if search else ""
    rows = [
        _row(
            f"dispatch-cost.{r['task']}.{r['strategy']}",
            f"first / second pass: {where}",
            f"{secs(r['first_pass_s'])} / {secs(r['second_pass_s'])}{extra}",
            "second pass (scoring) of the same run",
            r["fraction"],
            False,
        )
        | {"where": short}
    ]
    wo = r.get("fraction_without_search")
    if search and wo is not None:
        rows.append(
            _row(
                f"dispatch-cost.{r['task']}.{r['strategy']}.without_search",
                f"first / second pass without the α search: {where}",
                f"{secs(r['first_pass_s'] - search)} / {secs(r['second_pass_s'])}",
                "second pass (scoring) of the same run",
                wo,
                False,
            )
            | {"where": short}
        )
    return rows


def _dispatch_cost(rec: dict) -> Iterator[tuple[str, Thunk]]:
    for i, r in enumerate(rec["rows"]):
        yield f"rows[{i}]", lambda r=r: _dispatch_row(r)


EXTRACTORS: dict[str, Callable[[dict], Iterator[tuple[str, Thunk]]]] = {
    "svf": _svf,
    "backend": _backend,
    "train-step": _train_step,
    "train-parity": _train_parity,
    "dispatch-cost": _dispatch_cost,
}


def extract(kind: str, rec: dict) -> tuple[list[dict], dict[str, str]]:
    """The rows of one record, and {measure: why it was skipped} for those it lacks."""
    rows: list[dict] = []
    skipped: dict[str, str] = {}
    it = EXTRACTORS[kind](rec)
    while True:
        try:
            label, thunk = next(it)
        except StopIteration:
            break
        except LOOKUP_ERRORS as exc:  # the record's list of measurements itself is missing
            skipped["(all)"] = f"{type(exc).__name__}: {exc}"
            break
        try:
            out = thunk()
        except LOOKUP_ERRORS as exc:
            skipped[label] = f"{type(exc).__name__}: {exc}"
            continue
        if isinstance(out, dict):
            rows.append(out)
        elif out:
            rows.extend(out)
    return rows, skipped
