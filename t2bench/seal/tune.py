"""Choosing the inner update's learning rate (and LoRA's target modules) on training passages.

Every setting in the grid updates the model on each training passage alone (the ``passage``
condition: the passage text, no self-edit), asks that passage's questions closed-book and
undoes the update. The eval passages are never touched, so the chosen defaults
(``t2bench.seal.inner.DEFAULT_LR`` and ``InnerConfig.lora_targets``) owe nothing to the
numbers they are later reported with. ``t2bench seal tune`` writes the grid as a table (never
over an earlier one).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from t2bench.core.io import check_writable, results_path
from t2bench.core.provenance import provenance
from t2bench.core.stats import accuracy, power_record, verdict
from t2bench.core.tables import (
    ADAPTER_KEY,
    Table,
    adapter_claim,
    check_clean_checkout,
    diff_cell,
    diff_columns,
)
from t2bench.errors import ConfigError
from t2bench.models import model_fingerprint
from t2bench.seal.experiment import edit_sequences, evaluate_condition
from t2bench.seal.inner import ALL_LINEAR, DEFAULT_LR, InnerConfig

__all__ = ["GRID", "TuneConfig", "tune_inner", "tune_table"]

QV = "q_proj,v_proj"
MLP = "gate_proj,up_proj,down_proj"

#: (method, LoRA targets or None, lr): the paper's q,v LoRA, LoRA on the MLP (SVF's modules),
#: LoRA on every linear map, and SVF on the MLP
GRID: tuple[tuple[str, str | None, float], ...] = (
    ("lora", QV, 1e-3),
    ("lora", QV, 3e-3),
    ("lora", MLP, 1e-3),
    ("lora", ALL_LINEAR, 5e-4),
    ("lora", ALL_LINEAR, 1e-3),
    ("lora", ALL_LINEAR, 3e-3),
    ("svf", None, 1e-2),
    ("svf", None, 2e-2),
)

COLUMNS = [
    "inner update",
    "targets",
    "lr",
    "trainable parameters",
    "n",
    "accuracy (contains)",
    "95% CI",
    "first → last loss (mean)",
    "diverged",
    "s / passage",
    "default",
    "Δ vs default (points) [95% CI]",
    "p",
]
DIFF = "Δ vs default (points) [95% CI]"


@dataclass
class TuneConfig:
    output_dir: str = str(results_path("seal/inner-lr"))
    model: str | None = None
    source: str = "fictional"
    n: int = 6  # training passages
    steps: int = 8
    grid: tuple[tuple[str, str | None, float], ...] = GRID
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ConfigError(f"n must be >= 1 training passage, got {self.n}")
        if not self.grid:
            raise ConfigError("the grid is empty: give at least one (method, targets, lr)")

    def inner(self, method: str, targets: str | None, lr: float) -> InnerConfig:
        kw = {"lora_targets": targets} if targets else {}
        return InnerConfig(method=method, steps=self.steps, lr=lr, seed=self.seed, **kw)


def _is_default(cfg: InnerConfig) -> bool:
    default = InnerConfig(method=cfg.method)
    same_targets = cfg.method == "svf" or cfg.lora_targets == default.lora_targets
    return same_targets and cfg.learning_rate == DEFAULT_LR[cfg.method]


def tune_inner(cfg: TuneConfig) -> list[dict]:
    """One record per grid setting: per-question scores on the training passages."""
    from tqdm.auto import tqdm

    from t2bench.models import load_model
    from t2bench.seal.data import load_passages

    loaded = load_model(cfg.model)
    passages = load_passages(cfg.source, "train", n=cfg.n, seed=cfg.seed)
    edits = edit_sequences(
        loaded.model, loaded.tokenizer, passages, "passage", variant="implications", seed=cfg.seed
    )
    out = []
    for method, targets, lr in tqdm(cfg.grid, disable=not cfg.progress, desc="inner grid"):
        inner = cfg.inner(method, targets, lr)
        r = evaluate_condition(
            loaded.model, loaded.tokenizer, passages, edits, inner, model_id=loaded.model_id
        )
        runs = [p["inner"] for p in r["passages"] if "inner" in p]
        out.append(
            {
                "inner": inner.to_dict(),
                "default": _is_default(inner),
                "uids": [x["uid"] for x in r["records"]],
                "scores": [float(x["contains"]) for x in r["records"]],
                "predictions": [x["prediction"] for x in r["records"]],
                "first_loss": [x["losses"][0] for x in runs],
                "last_loss": [x["losses"][-1] for x in runs],
                "diverged": [p["uid"] for p in r["passages"] if "diverged" in p],
                "trainable": runs[0]["trainable"] if runs else None,
                "seconds_per_passage": round(r["seconds"] / len(passages), 2),
            }
        )
    return out


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def inner_proof(rec: dict) -> dict:
    """Whether a grid setting's inner updates ran: evaluate_condition gives each passage it
    updated an InnerResult (one first/last loss here) and the trainable parameter count."""
    updated, diverged = len(rec["first_loss"]), len(rec["diverged"])
    first, last = _mean(rec["first_loss"]), _mean(rec["last_loss"])
    loss = f", mean loss {first:.3f} → {last:.3f}" if first is not None else ""
    return {
        "applied": updated > 0 and bool(rec["trainable"]),
        "applied_evidence": f"{rec['inner']['method']} update on {updated} passages "
        f"({diverged} diverged), {rec['trainable'] or 0:,} trainable parameters{loss}",
    }


def default_records(records: list[dict]) -> dict[str, dict]:
    """The default setting's record per method (the grid's reference: it has no base row)."""
    return {rec["inner"]["method"]: rec for rec in records if rec["default"]}


def tune_power(cfg: TuneConfig, records: list[dict]) -> list[dict]:
    """n = the training passages' questions; p = each method's default setting's accuracy
    (the grid has no base row), or 0.5 assumed where the grid holds no default."""

    n = len(records[0]["scores"])
    where = (
        f"{cfg.source} train questions ({n} questions in {cfg.n} passages; answers within a "
        "passage are correlated, so the true MDD is larger)"
    )
    defaults = default_records(records)
    if not defaults:
        return [power_record(f"{where}; no default setting in this grid: p = 0.5 assumed", n, 0.5)]
    return [
        power_record(
            f"{where}; p = the default {method} setting's accuracy",
            n,
            accuracy(rec["scores"])["score"],
        )
        for method, rec in defaults.items()
    ]


def tune_table(cfg: TuneConfig, records: list[dict]):

    rows = []
    defaults = default_records(records)
    for rec in records:
        inner, acc = rec["inner"], accuracy(rec["scores"])
        first, last = _mean(rec["first_loss"]), _mean(rec["last_loss"])
        ref = defaults.get(inner["method"])
        # each setting against its method's default, paired over the same questions
        diff = {}
        if ref is not None and ref is not rec:
            diff = diff_columns(ref["scores"], rec["scores"], iters=10_000, seed=cfg.seed)
            diff[DIFF] = diff.pop("Δ vs base (points) [95% CI]")
        rows.append(
            {
                "inner update": inner["method"],
                "targets": inner["lora_targets"] if inner["method"] == "lora" else "mlp (SVF)",
                "lr": f"{inner['learning_rate']:g}",
                "trainable parameters": f"{rec['trainable']:,}" if rec["trainable"] else "—",
                "n": acc["n"],
                "accuracy (contains)": round(acc["score"], 3),
                "95% CI": f"[{acc['ci_low']:.3f}, {acc['ci_high']:.3f}]",
                "first → last loss (mean)": (
                    f"{first:.2f} → {last:.2f}" if first is not None else "—"
                ),
                "diverged": len(rec["diverged"]),
                "s / passage": rec["seconds_per_passage"],
                "default": "yes" if rec["default"] else "",
                **diff,
                "variant": f"{inner['method']} lr {inner['learning_rate']:g}",  # for errors
                ADAPTER_KEY: adapter_claim(inner["method"], inner_proof(rec)),
            }
        )
    return Table(
        "seal-inner-lr",
        "SEAL inner update: learning rate and LoRA targets chosen on training passages",
        COLUMNS,
        rows,
        caption=(
            f"The first {cfg.n} `{cfg.source}` training passages (never the eval passages); "
            f"each setting updates the model on one passage at a time ({cfg.steps} full-batch "
            "steps on the passage text, padding masked), asks its questions closed-book "
            "(greedy, ≤ 16 tokens) and undoes the update. LoRA r32/α64; SVF on the MLP of every "
            "layer. Accuracy = normalised containment of a reference answer; 95% CI: Wilson; "
            "Δ vs default: each setting against its method's default on the same questions, "
            "Newcombe's paired score interval, p = McNemar's exact test."
        ),
        paragraph=paragraph(rows),
        data={"config": asdict(cfg), "records": records},
        power=tune_power(cfg, records),
    )


def paragraph(rows: list[dict]) -> str:

    parts = []
    for method in ("lora", "svf"):
        mine = [r for r in rows if r["inner update"] == method]
        if not mine:
            continue
        best = max(mine, key=lambda r: r["accuracy (contains)"])
        default = next((r for r in mine if r["default"]), None)
        text = (
            f"{method}: best {best['accuracy (contains)']:.3f} at lr {best['lr']} "
            f"({best['targets']})"
        )
        if default is None:
            text += "; the default setting is not in this grid"
        elif default["accuracy (contains)"] == best["accuracy (contains)"]:
            text += "; the default is a best setting"
        else:
            text += (
                f"; the default (lr {default['lr']}, {default['targets']}) scores "
                f"{default['accuracy (contains)']:.3f}, below the best"
            )
            d = best.get("diff")
            if d is None:
                text += ", but no paired interval was computed: the order is undetermined"
            elif verdict(d) == "inconclusive":  # not ranked: the paired CI includes zero
                text += (
                    f" by {diff_cell(d)}, a difference whose 95% CI includes zero: "
                    "undetermined, this grid does not rank the two"
                )
            else:
                text += f" by {diff_cell(d)}, an interval that excludes zero"
        parts.append(text)
    return (
        "**What this shows.** "
        + ". ".join(parts)
        + ". With 3 questions per passage the differences between neighbouring settings are "
        "within noise; the grid is here to show that each method got a fair lr, not to rank "
        "lrs finely."
    )


def write_tune(cfg: TuneConfig, *, allow_dirty: bool = False) -> Path:
    """Run the grid and write ``seal-inner-lr.{md,csv,json}`` under ``cfg.output_dir``
    (a dirty checkout is refused before the grid runs, unless ``allow_dirty``)."""

    check_clean_checkout(allow_dirty)
    out = Path(cfg.output_dir)
    if (out / "seal-inner-lr.json").exists():
        raise ConfigError(
            f"{out} already holds an inner-lr grid: published numbers are never overwritten; "
            "pass another --out"
        )
    check_writable(out, "SEAL output folder")  # read-only or full: refused before the grid runs
    t0 = time.perf_counter()
    from t2bench.seal.data import load_passages
    from t2bench.seal.passages import passages_fingerprint

    split = passages_fingerprint(load_passages(cfg.source, "train", n=cfg.n, seed=cfg.seed))
    records = tune_inner(cfg)
    table = tune_table(cfg, records)
    table.write(
        out,
        provenance(
            model_fingerprint=model_fingerprint(cfg.model),
            split=f"{cfg.source} train, first {cfg.n} passages ({split})",
            seed=cfg.seed,
            wall_seconds=round(time.perf_counter() - t0, 1),
        ),
        allow_dirty=allow_dirty,
    )
    return out
