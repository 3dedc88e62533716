"""Named training recipes: the runs behind ``results/experts/`` (``nox -s train``).

Two profiles share the same recipes and differ only in budget:

* ``cpu`` — what a 2-core machine can run in about an hour for the thirteen main artifacts. The
  budgets are tiny (a few optimizer steps of 8–16 samples): they exercise the full pipeline
  on the real model and give honest, small-sample numbers, not converged experts.
* ``gpu`` — the paper's shape (global batch 256 for RL, more steps, best-on-validation over
  a larger validation subset) for a machine with a GPU.

Every recipe of one task uses the same data, steps, global batch and validation budget, so
SVF, LoRA-NTP, LoRA-PG and IA3 are compared on equal terms. Learning rates differ by method
(SVF 2e-3 from the paper; LoRA 2e-4 and IA3 2e-3, usual values for those methods) and are
recorded in every artifact's provenance. KL coefficient λ = 0.1 for the RL runs: λ is not
tuned here (that would need one run per λ and the validation split).
"""

from __future__ import annotations

from t2bench.errors import ConfigError

TASKS = ("reasoning", "math", "code", "classifier")
METHODS = {  # artifact suffix -> (method, objective, lr)
    "svf-pg": ("svf", "pg", 2e-3),
    "lora-ntp": ("lora", "ntp", 2e-4),
    "lora-pg": ("lora", "pg", 2e-4),
    "ia3-ntp": ("ia3", "ntp", 2e-3),
}
#: The paper's Table 4 ablation (module set x objective), trained on math only as in the paper.
#: suffix -> (method, objective, lr, SVF module set, LoRA targets)
ABLATION_TASK = "math"
ABLATION_METHODS = {
    "svf-pg-attn": ("svf", "pg", 2e-3, "attn", None),
    "svf-pg-mlp+attn": ("svf", "pg", 2e-3, "mlp+attn", None),
    "svf-ntp-attn": ("svf", "ntp", 2e-3, "attn", None),
    "lora-ntp-mlp+attn": ("lora", "ntp", 2e-4, "mlp", "q_proj,v_proj,gate_proj,up_proj,down_proj"),
}
#: Per-task budget on the CPU profile: steps, global batch, micro batch, new tokens, eval size.
_CPU = {
    "reasoning": dict(steps=8, global_batch=16, micro_batch=8, max_new_tokens=12, eval_size=24),
    "math": dict(steps=6, global_batch=8, micro_batch=8, max_new_tokens=40, eval_size=24),
    "code": dict(steps=4, global_batch=8, micro_batch=4, max_new_tokens=128, eval_size=12),
    "classifier": dict(steps=8, global_batch=16, micro_batch=8, max_new_tokens=8, eval_size=24),
}
_GPU = {
    "reasoning": dict(steps=40, global_batch=256, micro_batch=32, max_new_tokens=16, eval_size=285),
    "math": dict(steps=40, global_batch=256, micro_batch=32, max_new_tokens=96, eval_size=200),
    "code": dict(steps=30, global_batch=128, micro_batch=16, max_new_tokens=256, eval_size=99),
    "classifier": dict(
        steps=30, global_batch=256, micro_batch=32, max_new_tokens=12, eval_size=299
    ),
}
PROFILES = {"cpu": _CPU, "gpu": _GPU}


def recipe_names() -> list[str]:
    """All artifact names: every method for the three skill tasks, SVF only for the classifier."""
    names = [f"{t}-{m}" for t in TASKS if t != "classifier" for m in METHODS]
    return names + ["classifier-svf-pg"] + [f"{ABLATION_TASK}-{m}" for m in ABLATION_METHODS]


def recipe(name: str, profile: str = "cpu") -> dict:
    """TrainConfig fields of recipe ``name`` (e.g. ``math-svf-pg``) under ``profile``."""
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}: use one of {', '.join(PROFILES)}")
    if name not in recipe_names():
        raise ConfigError(f"unknown recipe {name!r}; recipes: {', '.join(recipe_names())}")
    task, suffix = name.split("-", 1)
    modules, targets = "mlp", None
    if suffix in METHODS:
        method, objective, lr = METHODS[suffix]
    else:
        method, objective, lr, modules, targets = ABLATION_METHODS[suffix]
    budget = PROFILES[profile][task]
    extra = {"lora_targets": targets} if targets else {}
    return {
        "task": task,
        "method": method,
        "objective": objective,
        "lr": lr,
        "name": name,
        "modules": modules,
        **extra,
        "kl_coef": 0.1 if objective == "pg" else 0.0,
        "advantage": "whiten",
        "temperature": 1.0,
        "eval_every": max(1, budget["steps"] // 2),
        "eval_batch": 24 if task != "code" else 12,
        "seed": 0,
        **budget,
    }


def run_recipes(
    names: list[str] | None = None, *, profile: str = "cpu", out_root: str = "results/experts"
) -> list[str]:
    """Train each named recipe (default: all) into ``out_root/<name>/``, one process each.

    A finished run (its ``summary.json`` exists) is skipped, never overwritten; an interrupted
    one resumes from its last checkpoint. Returns the names that were trained or resumed.
    """
    import subprocess
    import sys
    from pathlib import Path

    todo = names or recipe_names()
    for name in todo:
        recipe(name, profile)  # fail on a typo before anything runs
    ran = []
    for name in todo:
        out = run_folder(Path(out_root), name)
        if (out / "summary.json").exists():
            print(f"[{name}] finished earlier: {out} (kept as it is)", flush=True)
            continue
        cmd = [sys.executable, "-m", "t2bench.train", "--recipe", name, "--profile", profile]
        print(f"[{name}] {' '.join(cmd[1:])} --output-dir {out}", flush=True)
        subprocess.run([*cmd, "--output-dir", str(out)], check=True)
        ran.append(name)
    for root in {run_folder(Path(out_root), n).parent for n in todo}:
        table = root / "runs.md"
        table.write_text(runs_markdown(root))
        print(f"run table: {table}", flush=True)
    return ran


def run_folder(out_root, name: str):
    """Where recipe ``name`` trains: ``<out_root>/<name>``, or ``<out_root>/table4/<name>``
    for the module-set ablation runs, which keeps ``<out_root>`` a folder of experts with one
    layout (the dispatch strategies load all of it)."""
    from pathlib import Path

    suffix = name.split("-", 1)[1]
    return Path(out_root) / ("table4" if suffix in ABLATION_METHODS else "") / name


def runs_markdown(root) -> str:
    """One row per finished run under ``root``, read from each ``summary.json``."""
    import json
    from pathlib import Path

    rows = [
        "| run | method | objective | trainable params | steps | global batch | lr | KL λ | "
        "best step | best valid acc (n) | processes | wall s | commit |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for f in sorted(Path(root).glob("*/summary.json")):
        s = json.loads(f.read_text())
        c, prov = s["config"], s.get("provenance", {})
        acc = s["best_valid_accuracy"]
        rows.append(
            f"| {s['run']} | {c['method']} | {c['objective']} | {s['trainable_parameters']:,} | "
            f"{s['steps_done']} | {c['global_batch']} | {c['lr']:g} | {c['kl_coef']:g} | "
            f"{s['best_step']} | {'-' if acc is None else f'{acc:.3f}'} ({c['eval_size']}) | "
            f"{s['processes']} | {prov.get('wall_seconds', '-')} | "
            f"`{str(prov.get('commit', '?'))[:12]}` |"
        )
    return "# Trained runs\n\nGenerated from each run's summary.json.\n\n" + "\n".join(rows) + "\n"
