"""Learning rate × KL coefficient sweep of one recipe, judged on the validation split only.

Every grid point is a short training run of the recipe (``steps`` optimizer steps, everything
else as the recipe says) in its own folder ``<out_root>/<recipe>/lr<lr>-kl<kl>/`` and its own
process (peft changes a model in place). A finished point is kept, never retrained; an
interrupted one resumes from its checkpoint. The runs evaluate greedy accuracy on the
validation items of the recipe (never test items) and the sweep selects:

1. a point that kept its learning signal before one that stopped for lack of it (its policy
   collapsed: every sample of a prompt got the same reward, ``stop_without_signal``), since
   its good early checkpoint would not survive the long run;
2. the highest best-on-validation accuracy;
3. on a tie, the higher mean of all its validation evaluations (a run that stays good);
4. then the smaller learning rate, then the smaller λ (the more conservative setting).

A policy-gradient sweep whose first point never got a learning signal (every group's samples
earned one reward at every step, the gradient was zero, the expert never moved) stops there and
selects nothing: every other point would draw the same samples from the same unchanged model
(:func:`never_learned`). That record is the evidence that the task cannot be moved from the
base model within the budget, and the long run is not trained.

The record ``sweep.json`` (with provenance) and ``sweep.md`` list every point with its
validation accuracy and Wilson interval, and say when the selected point is not separable
from the others at this validation size. The long run of the recipe then trains with the
selected ``lr`` and ``kl_coef`` (:func:`t2bench.train.recipes.run_recipes`).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from t2bench.core.io import results_path, write_atomic
from t2bench.core.stats import wilson
from t2bench.core.tables import markdown_rows
from t2bench.errors import ConfigError

SWEEP_JSON = "sweep.json"
SUMMARY = "summary.json"
LOG = "log.jsonl"


@dataclass(frozen=True)
class SweepConfig:
    """One grid over learning rate and KL coefficient for ``recipe`` under ``profile``."""

    recipe: str
    lrs: tuple[float, ...]
    kl_coefs: tuple[float, ...]
    steps: int  # optimizer steps of each short run
    eval_every: int
    eval_size: int  # validation items of each evaluation
    profile: str = "cpu"
    out_root: str = str(results_path("sweeps"))
    # stage 2: the best ``stage2_top`` points of the short runs run again for ``stage2_steps``
    # (a failure such as a policy that collapses after the short horizon shows there), and
    # the selection is made among those longer runs; 0 = one stage
    stage2_steps: int = 0
    stage2_top: int = 0

    def __post_init__(self) -> None:
        if not self.lrs or not self.kl_coefs:
            raise ConfigError("a sweep needs at least one learning rate and one KL coefficient")
        if any(v <= 0 for v in self.lrs) or any(v < 0 for v in self.kl_coefs):
            raise ConfigError(
                f"learning rates must be > 0 and KL coefficients >= 0, got lrs={self.lrs} "
                f"kl_coefs={self.kl_coefs}"
            )
        if (self.stage2_steps > 0) != (self.stage2_top > 0) or (
            self.stage2_steps and self.stage2_steps <= self.steps
        ):
            raise ConfigError(
                f"stage 2 needs both stage2_steps (> steps = {self.steps}) and stage2_top, got "
                f"{self.stage2_steps} and {self.stage2_top}"
            )
        if min(self.steps, self.eval_every, self.eval_size) < 1:
            raise ConfigError(
                f"steps, eval_every and eval_size must be >= 1, got {self.steps}, "
                f"{self.eval_every}, {self.eval_size}"
            )

    @property
    def folder(self) -> Path:
        return Path(self.out_root) / self.recipe

    def points(self) -> list[tuple[float, float]]:
        return [(lr, kl) for lr in self.lrs for kl in self.kl_coefs]


def point_name(lr: float, kl: float) -> str:
    """Folder name of one grid point, e.g. ``lr0.01-kl0.1``."""
    return f"lr{lr:g}-kl{kl:g}"


def run_point(cfg: SweepConfig, lr: float, kl: float, stage: int = 1) -> Path:
    """Train (or resume, or keep) one grid point of ``stage``; returns its run folder."""
    suffix = "" if stage == 1 else f"-s{stage}"
    steps = cfg.steps if stage == 1 else cfg.stage2_steps
    out = cfg.folder / f"{point_name(lr, kl)}{suffix}"
    if (out / SUMMARY).exists():
        print(f"[sweep {cfg.recipe}] {out.name} finished earlier (kept)", flush=True)
        return out
    cmd = [
        sys.executable,
        "-m",
        "t2bench.train",
        "--recipe",
        cfg.recipe,
        "--profile",
        cfg.profile,
        "--lr",
        repr(lr),
        "--kl-coef",
        repr(kl),
        "--steps",
        str(steps),
        "--eval-every",
        str(cfg.eval_every),
        "--eval-size",
        str(cfg.eval_size),
        "--name",
        f"{cfg.recipe}-{point_name(lr, kl)}{suffix}",
        "--eval-at-start",
        # a point runs its whole budget: the sweep compares equal horizons (patience is the long run's)
        "--patience",
        "0",
        "--output-dir",
        str(out),
    ]
    print(f"[sweep {cfg.recipe}] {' '.join(cmd[1:])}", flush=True)
    launch(cmd)
    return out


def launch(cmd: list[str]) -> None:
    """Run one training process to its end (a failure stops the sweep)."""
    subprocess.run(cmd, check=True)


def read_point(folder: Path) -> dict:
    """One finished grid point as a row: its settings and validation curve, from its files."""

    s = json.loads((folder / SUMMARY).read_text())
    log = _log(folder)
    evals = [
        (r["step"], r["valid_accuracy"], r["valid_n"])
        for r in log
        if "valid_accuracy" in r and r["step"] > 0  # step 0 is the base model (eval_at_start)
    ]
    start = next((r["valid_accuracy"] for r in log if r.get("step") == 0), None)
    if not evals:
        raise ConfigError(f"{folder} has no validation evaluation: set eval_every <= steps")
    best_step, best, n = max(evals, key=lambda e: (e[1], -e[0]))
    lo, hi = wilson(round(best * n), n)
    rewards = [r["reward"] for r in log if "reward" in r]
    return {
        "point": folder.name,
        "lr": s["config"]["lr"],
        "kl_coef": s["config"]["kl_coef"],
        "steps": s["steps_done"],
        "valid_n": n,
        "base_valid_accuracy": start,
        "best_valid_accuracy": best,
        "best_ci": [lo, hi],
        "best_step": best_step,
        "mean_valid_accuracy": sum(e[1] for e in evals) / len(evals),
        "valid_curve": [[e[0], e[1]] for e in evals],
        "first_reward": rewards[0] if rewards else None,
        "last_rewards_mean": sum(rewards[-5:]) / len(rewards[-5:]) if rewards else None,
        "zero_advantage_share": _mean(r.get("zero_advantage_share") for r in log),
        "wall_seconds": s.get("provenance", {}).get("wall_seconds"),
        # stopped for lack of learning signal: the policy collapsed within the point's budget
        "collapsed": "no learning signal" in str(s.get("stopped") or ""),
        "commit": s.get("provenance", {}).get("commit"),
    }


def _points_facts(folders: list[Path]) -> dict:
    """What every point of a sweep shares, from their summaries: seed, base weights, the
    validation items they were judged on; and their training time summed."""
    provs = [json.loads((f / SUMMARY).read_text()).get("provenance", {}) for f in folders]
    first = provs[0]
    return {
        "seed": first.get("seed"),
        "weights_sha256": first.get("weights_sha256"),
        "data_items": first.get("data_items"),
        "wall_seconds": round(sum(p.get("wall_seconds") or 0.0 for p in provs), 1),
    }


def _mean(values) -> float | None:
    xs = [v for v in values if v is not None]
    return sum(xs) / len(xs) if xs else None


def _key(r: dict) -> tuple:
    return (
        not r.get("collapsed", False),
        r["best_valid_accuracy"],
        r["mean_valid_accuracy"],
        -r["lr"],
        -r["kl_coef"],
    )


def select(rows: list[dict]) -> dict:
    """The selected row (rules in the module docstring)."""
    if not rows:
        raise ConfigError("no finished sweep point to select from")
    return max(rows, key=_key)


def run_sweep(cfg: SweepConfig) -> dict:
    """Run every grid point, then write and return the sweep record."""
    from t2bench.core.provenance import git_commit, provenance

    commit = git_commit()
    t0 = time.perf_counter()
    points = cfg.points()
    folders = [run_point(cfg, *points[0])]
    # every point starts from the same base model, seed and data order: if the first drew no
    # sample with a learning signal, nothing moved, and every other point would draw the same
    # samples again (learning rate and λ only act on a gradient)
    barren = never_learned(folders[0])
    if barren is None:
        folders += [run_point(cfg, lr, kl) for lr, kl in points[1:]]
    rows = [read_point(f) for f in folders]
    rows2 = []
    if cfg.stage2_steps and barren is None:
        ranked = sorted(rows, key=_key, reverse=True)[: cfg.stage2_top]
        rows2 = [read_point(run_point(cfg, r["lr"], r["kl_coef"], stage=2)) for r in ranked]
    path = cfg.folder / SWEEP_JSON
    if path.exists():
        earlier = json.loads(path.read_text())
        same_grid = earlier.get("sweep") == json.loads(json.dumps(asdict(cfg)))
        if earlier.get("rows") == rows and earlier.get("stage2_rows", []) == rows2 and same_grid:
            return earlier  # the same finished points: the record stands as written
        print(f"[sweep {cfg.recipe}] {path} is replaced: its points changed", flush=True)
    final = rows2 or rows
    best = None if barren else select(final)
    inseparable = best and [
        r["point"]
        for r in final
        if r is not best and r["best_valid_accuracy"] >= best["best_ci"][0]
    ]
    record = {
        "sweep": asdict(cfg),
        "criterion": "a point that kept its learning signal (did not stop for lack of it) "
        "before one that collapsed; then the highest best-on-validation greedy accuracy; ties: "
        "higher mean validation accuracy, then smaller lr, then smaller KL coefficient"
        + (
            f"; among the {cfg.stage2_top} best short runs run again for {cfg.stage2_steps} steps"
            if rows2
            else ""
        ),
        "rows": rows,
        "stage2_rows": rows2,
        "selected": best and {"point": best["point"], "lr": best["lr"], "kl_coef": best["kl_coef"]},
        "within_selected_ci": inseparable or [],
        "no_signal": barren,
        "provenance": provenance(
            commit=commit,
            data_split="validation split of the recipe's task only (no test item)",
            wall_seconds_this_session=round(time.perf_counter() - t0, 1),
            **_points_facts(folders),
        ),
    }
    cfg.folder.mkdir(parents=True, exist_ok=True)
    # replaced atomically: the sweep record is regenerated from its kept runs
    write_atomic(path, json.dumps(record, indent=2) + "\n")
    write_atomic(cfg.folder / "sweep.md", markdown(record))
    return record


def _log(folder: Path) -> list[dict]:
    return [json.loads(x) for x in (folder / LOG).read_text().splitlines() if x.strip()]


def never_learned(folder: Path) -> dict | None:
    """What a finished policy-gradient point shows when it never got a learning signal: every
    step's samples earned one reward per group and the gradient was exactly zero, so with no
    weight decay its trainable never left its initial value. None when it learned anything
    (or is not a policy-gradient run)."""
    steps = [r for r in _log(folder) if "reward" in r]
    config = json.loads((folder / SUMMARY).read_text())["config"]
    if not steps or config.get("weight_decay", 0.0) != 0.0:
        return None
    if not all(r.get("no_signal") is True and r.get("grad_norm") == 0.0 for r in steps):
        return None
    samples = config["global_batch"] * len(steps)
    rewarded = round(sum(r["accuracy"] for r in steps) * config["global_batch"])
    upper = wilson(rewarded, samples)[1]
    return {
        "point": folder.name,
        "steps": len(steps),
        "samples": samples,
        "samples_rewarded": rewarded,
        "sampled_success_rate_upper95": upper,
        "finding": (
            f"no learning signal: in {len(steps)} steps ({samples} sampled completions, "
            f"{rewarded} rewarded; 95% upper bound on the sampled success rate {upper:.3f}), "
            "every group's samples got one reward and the gradient was exactly zero, so "
            "the expert never left its initial value. The other grid points start from the "
            "same model, seed and data order and would draw the same samples: no learning "
            "rate or KL coefficient can change that, and no long run is trained."
        ),
    }


def selected(recipe: str, out_root: str = str(results_path("sweeps"))) -> dict | None:
    """The selected ``lr`` / ``kl_coef`` of a finished sweep of ``recipe``, or None (no
    finished sweep, or one whose base model gave no learning signal)."""
    path = Path(out_root) / recipe / SWEEP_JSON
    if not path.exists():
        return None
    rec = json.loads(path.read_text())
    return rec["selected"] and rec["selected"] | {"record": str(path)}


def _table(rows: list[dict], selected: str) -> list[str]:
    columns = [
        "point",
        "lr",
        "KL λ",
        "base valid acc",
        "best valid acc [95% CI]",
        "at step",
        "mean valid acc",
        "train reward first → last 5",
        "zero-advantage share",
        "wall s",
    ]
    cells = []
    for r in rows:
        mark = " **selected**" if r["point"] == selected else ""
        mark += " (collapsed: stopped without signal)" if r.get("collapsed") else ""
        lo, hi = r["best_ci"]
        rew = (
            "-"
            if r["first_reward"] is None
            else f"{r['first_reward']:+.2f} → {r['last_rewards_mean']:+.2f}"
        )
        zero = "-" if r["zero_advantage_share"] is None else f"{r['zero_advantage_share']:.2f}"
        start = r.get("base_valid_accuracy")
        cells.append(
            [
                f"{r['point']}{mark}",
                f"{r['lr']:g}",
                f"{r['kl_coef']:g}",
                "-" if start is None else f"{start:.3f}",
                f"{r['best_valid_accuracy']:.3f} [{lo:.3f}, {hi:.3f}]",
                r["best_step"],
                f"{r['mean_valid_accuracy']:.3f}",
                rew,
                zero,
                r["wall_seconds"],
            ]
        )
    return markdown_rows(columns, cells)


def _verdict(record: dict, n: int) -> str:
    """The line under the tables: nothing selected (no signal), or how separable the
    selected point is from the others."""
    if record.get("no_signal"):
        return f"**Nothing selected: {record['no_signal']['finding']}**"
    inside = record["within_selected_ci"]
    if inside:
        return (
            f"Points whose best validation accuracy lies inside the selected point's interval "
            f"(not separable at n = {n}): {', '.join(inside)}."
        )
    return f"Every other point lies below the selected point's interval at n = {n}."


def markdown(record: dict) -> str:
    sw = record["sweep"]
    n = record["rows"][0]["valid_n"]
    chosen = (record["selected"] or {}).get("point")
    lines = [
        f"# Sweep: {sw['recipe']} ({sw['profile']} profile)",
        "",
        f"Short runs of {sw['steps']} steps, validation every {sw['eval_every']} steps on "
        f"{n} validation items (greedy accuracy, 95% Wilson interval). No test item is used.",
        f"Selection: {record['criterion']}.",
        "",
        *_table(record["rows"], chosen),
    ]
    if record.get("stage2_rows"):
        lines += [
            "",
            f"## Stage 2: the {sw['stage2_top']} best points, {sw['stage2_steps']} steps",
            "",
            *_table(record["stage2_rows"], chosen),
        ]
    lines += [
        "",
        _verdict(record, n),
        "",
        "Base valid acc: the base model on the same validation items (step 0 of the point's "
        "log, where the point logged it). Zero-advantage share: the mean over the point's "
        "steps of the share of samples whose group got one reward (1 = no learning signal). "
        "Learning curves: `curves/<point>.png` (train reward per step, validation accuracy).",
        "",
    ]
    return "\n".join(lines)
