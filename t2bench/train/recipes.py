"""Named training recipes: the runs behind ``results/experts/`` (``nox -s train``).

Three profiles share the same recipes and differ in budget:

* ``cpu`` — experts that move the embedded model on a 2-core machine: bf16 compute with fp32
  adapters where the CPU has native bf16 (``compute_dtype="auto"``; fp32 on an AVX2-only CPU,
  where bf16 is an order of magnitude slower), K = 4 sampled completions per prompt with group-relative advantages (a task with a
  5–10% base rate still gets signal), 50× the samples of the ``smoke`` budget or more, and the
  math task's difficulty mix (base model between 20% and 60%). Learning rate and KL λ of each
  recipe come from a sweep of short runs on the validation split (:data:`SWEEPS`,
  :mod:`t2bench.train.sweep`); the long run then trains with the selected pair. Runs take
  hours: each is resumable from its newest checkpoint, and an unfinished run is committed with
  its run folder so a fresh checkout continues it.
* ``smoke`` — the budgets of the first committed experts (a few optimizer steps of 8–16
  samples, fp32, one sample per prompt): they exercise the pipeline and move z by < 1%.
* ``gpu`` — the paper's shape (global batch 256 for RL, more steps, best-on-validation over
  a larger validation subset) for a machine with a GPU.

Every recipe of one task uses the same data, steps, global batch (samples per step) and
validation budget, so SVF, LoRA-NTP, LoRA-PG and IA3 are compared on equal sample budgets.
The classifier expert is trained by next-token prediction on the category label (SVF-NTP on
the shared classify prompt of :mod:`t2bench.classify_prompt`): the base model names a valid
category for 2% of prompts, too rarely for policy gradient to start from. Learning rates
without a sweep differ by method (SVF 2e-3 from the paper; LoRA 2e-4 and IA3 2e-3, usual
values for those methods) and every artifact records the values it trained with.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

from t2bench.core.io import results_path
from t2bench.core.tables import markdown_rows
from t2bench.errors import ConfigError
from t2bench.svf import load_expert
from t2bench.train.sweep import SweepConfig, run_sweep

TASKS = ("reasoning", "math", "code", "classifier")
METHODS = {  # artifact suffix -> (method, objective, lr)
    "svf-pg": ("svf", "pg", 2e-3),
    "lora-ntp": ("lora", "ntp", 2e-4),
    "lora-pg": ("lora", "pg", 2e-4),
    "ia3-ntp": ("ia3", "ntp", 2e-3),
}


class AblationRun(NamedTuple):
    """One run of the parameters-vs-score ablation: its method, objective and default lr, the
    SVF module set, and any other TrainConfig fields (LoRA targets, TinyLoRA's size)."""

    method: str
    objective: str
    lr: float
    modules: str = "mlp"
    fields: dict = {}


#: The paper's Table 4 ablation (module set x objective) and, beyond the paper, peft's TinyLoRA
#: at three sizes from tens to thousands of parameters (on SVF's matrices, the MLP: 13 = one
#: tied 13-vector, the size of TinyLoRA's title; 4 and 16 per matrix, 360 and 1,440 on
#: SmolLM2's 90 MLP matrices); all trained on math only as in the paper. suffix -> run
ABLATION_TASK = "math"
_TINYLORA_LR = 2e-3  # without a sweep (smoke and gpu profiles): SVF's, both scale a few σ
ABLATION_METHODS = {
    "svf-pg-attn": AblationRun("svf", "pg", 2e-3, "attn"),
    "svf-pg-mlp+attn": AblationRun("svf", "pg", 2e-3, "mlp+attn"),
    "svf-ntp-attn": AblationRun("svf", "ntp", 2e-3, "attn"),
    "lora-ntp-mlp+attn": AblationRun(
        "lora", "ntp", 2e-4, fields={"lora_targets": "q_proj,v_proj,gate_proj,up_proj,down_proj"}
    ),
    "tinylora-pg-u13-tied": AblationRun(
        "tinylora", "pg", _TINYLORA_LR, fields={"tinylora_u": 13, "tinylora_tying": 1.0}
    ),
    "tinylora-pg-u4": AblationRun("tinylora", "pg", _TINYLORA_LR, fields={"tinylora_u": 4}),
    "tinylora-pg-u16": AblationRun("tinylora", "pg", _TINYLORA_LR, fields={"tinylora_u": 16}),
}
#: The first committed experts' budget: steps, global batch, micro batch, new tokens, eval size.
_SMOKE = {
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
#: 50x the smoke budget's samples or more, bf16 where it pays, K = 4 samples per prompt for RL. One
#: micro-batch per step where memory allows: SVF composes its weights once per micro-batch,
#: and generation is faster in one batch of 32 than in two of 16 on CPU.
_CPU_RL = dict(group_size=4, advantage="group_whiten", compute_dtype="auto", stop_without_signal=10)
_CPU = {
    "reasoning": dict(
        steps=200,
        global_batch=32,
        micro_batch=32,
        max_new_tokens=12,
        eval_size=285,
        # the sweep's 24-step runs peaked at step 4 and collapsed from step 9 (lr 1e-2, λ 0):
        # validating every 4 steps lets best-on-validation keep the peak, not the collapse
        eval_every=4,
        patience=5,  # 20 steps without a better validation score end the run
    ),
    "math": dict(
        steps=80,
        global_batch=32,
        micro_batch=32,
        max_new_tokens=64,
        eval_size=200,
        eval_every=10,
        difficulty="mix",
    ),
    "code": dict(
        steps=50,
        global_batch=32,
        micro_batch=8,
        max_new_tokens=128,
        eval_size=99,
        eval_every=10,
    ),
    "classifier": dict(
        steps=200,
        global_batch=32,
        micro_batch=32,
        max_new_tokens=8,
        eval_size=299,
        eval_every=20,
        # the sweep's lr 1e-2 point routed 78% of 64 validation prompts after 8 steps: 60 steps
        # without a better validation score end the run instead of spending the rest
        patience=3,
    ),
}
PROFILES = {"cpu": _CPU, "smoke": _SMOKE, "gpu": _GPU}
#: Profiles whose RL recipes sample K completions per prompt and compute in bf16.
_PROFILE_RL = {"cpu": _CPU_RL}
#: The classifier expert per profile: trained on the label by next-token prediction where the
#: profile trains experts that route (cpu); by policy gradient as the smoke and gpu runs were.
CLASSIFIER = {"cpu": "classifier-svf-ntp", "smoke": "classifier-svf-pg", "gpu": "classifier-svf-pg"}

#: The cpu profile's sweeps (short runs on the validation split): lr and KL λ grid per method,
#: and the short run's steps, evaluation interval and validation size per task.
SWEEPS = {
    "svf-pg": dict(lrs=(2e-3, 1e-2, 5e-2), kl_coefs=(0.0, 0.1)),
    "lora-pg": dict(lrs=(2e-4, 1e-3, 5e-3), kl_coefs=(0.0, 0.1)),
    "lora-ntp": dict(lrs=(2e-4, 1e-3, 5e-3), kl_coefs=(0.0,)),
    "ia3-ntp": dict(lrs=(2e-3, 1e-2, 5e-2), kl_coefs=(0.0,)),
    "svf-ntp": dict(lrs=(2e-3, 1e-2, 5e-2), kl_coefs=(0.0,)),
    "tinylora-pg-u16": dict(lrs=(2e-3, 1e-2, 5e-2), kl_coefs=(0.0, 0.1)),
    "svf-ntp-attn": dict(lrs=(2e-3, 1e-2, 5e-2), kl_coefs=(0.0,)),
}
#: Recipes that take lr and KL λ from another recipe's sweep: the three TinyLoRA sizes share the
#: sweep of the largest (one sweep instead of three, each ~3 h of CPU); the module-set runs of
#: Table 4 take those of the same method and objective on the MLP, as the paper keeps one
#: setting per method across module sets (an SVF-PG sweep costs ~3 h of CPU). SVF by
#: next-token prediction has no MLP recipe on math, so its attention run sweeps itself.
SWEEP_FROM = {
    "math-tinylora-pg-u13-tied": "math-tinylora-pg-u16",
    "math-tinylora-pg-u4": "math-tinylora-pg-u16",
    "math-svf-pg-attn": "math-svf-pg",
    "math-svf-pg-mlp+attn": "math-svf-pg",
    "math-lora-ntp-mlp+attn": "math-lora-ntp",
}
#: Stage 1: every grid point for a few hundred samples (fp32 RL costs ~1-2 s a sample on 2
#: cores); stage 2: the best 3 again for 24 steps, where a policy that collapses after the short
#: horizon shows (reasoning at lr 1e-2 without KL answered "(A)" to every prompt from step 9).
SWEEP_RUNS = {
    "reasoning": dict(steps=8, eval_every=4, eval_size=64, stage2_steps=24, stage2_top=3),
    "math": dict(steps=8, eval_every=4, eval_size=64, stage2_steps=24, stage2_top=3),
    "code": dict(steps=6, eval_every=3, eval_size=32, stage2_steps=18, stage2_top=2),
    "classifier": dict(steps=8, eval_every=4, eval_size=64, stage2_steps=24, stage2_top=3),
}


#: An expert whose policy-gradient sweep found no learning signal at all
#: (:func:`t2bench.train.sweep.never_learned`) is replaced by the same SVF expert trained by
#: next-token prediction on the task's gold answers, named for what it is, so that every
#: category still has an expert to dispatch to. Trained only then: a profile whose PG expert
#: learns has one expert per category, as label dispatch requires.
NO_SIGNAL_FALLBACK = {"code-svf-pg": "code-svf-ntp"}


def in_place_of(experts, name: str) -> str:
    """``name``, or its :data:`NO_SIGNAL_FALLBACK` where the folder of finished runs
    ``experts`` holds the fallback's run and not ``name``'s (it was trained in its place)."""
    fallback = NO_SIGNAL_FALLBACK.get(name)
    root = Path(experts)
    if fallback and not (root / name).is_dir() and (root / fallback).is_dir():
        return fallback
    return name


def recipe_names() -> list[str]:
    """All artifact names: every method for the three skill tasks, SVF for the classifier
    (by policy gradient and by next-token prediction), the no-signal fallbacks, the
    module-set ablation runs."""
    names = [f"{t}-{m}" for t in TASKS if t != "classifier" for m in METHODS]
    classifier = ["classifier-svf-pg", "classifier-svf-ntp"]
    fallbacks = list(NO_SIGNAL_FALLBACK.values())
    return names + classifier + fallbacks + [f"{ABLATION_TASK}-{m}" for m in ABLATION_METHODS]


def profile_recipes(profile: str) -> list[str]:
    """What ``run_recipes`` trains under ``profile`` when no names are given: the experts first
    (reasoning, math, the profile's classifier expert of :data:`CLASSIFIER`, code), then the
    baselines and the module-set ablation runs."""
    _check_profile(profile)
    experts = ["reasoning-svf-pg", "math-svf-pg", CLASSIFIER[profile], "code-svf-pg"]
    skip = {*experts, *NO_SIGNAL_FALLBACK.values()}
    rest = [n for n in recipe_names() if n not in skip and not n.startswith("classifier-")]
    return experts + rest


def _check_profile(profile: str) -> None:
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}: use one of {', '.join(PROFILES)}")


def recipe(name: str, profile: str = "cpu") -> dict:
    """TrainConfig fields of recipe ``name`` (e.g. ``math-svf-pg``) under ``profile``."""
    _check_profile(profile)
    if name not in recipe_names():
        raise ConfigError(f"unknown recipe {name!r}; recipes: {', '.join(recipe_names())}")
    task, suffix = name.split("-", 1)
    modules, extra = "mlp", {}
    if suffix == "svf-ntp":
        method, objective, lr = "svf", "ntp", METHODS["svf-pg"][2]
    elif suffix in METHODS:
        method, objective, lr = METHODS[suffix]
    else:
        run = ABLATION_METHODS[suffix]
        method, objective, lr, modules, extra = (*run[:4], dict(run.fields))
    budget = dict(PROFILES[profile][task])
    rl = _PROFILE_RL.get(profile, {}) if objective == "pg" else {}
    dtype = _PROFILE_RL.get(profile, {}).get("compute_dtype")
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
        **({"eval_at_start": True} if profile == "cpu" else {}),
        **({"compute_dtype": dtype} if dtype else {}),
        **rl,
        **budget,
    }


def sweep_config(name: str, profile: str = "cpu", out_root: str = str(results_path("sweeps"))):
    """The lr × KL λ sweep that picks recipe ``name``'s hyperparameters under ``profile`` (its
    own, or that of the recipe :data:`SWEEP_FROM` names), or None where the profile trains with
    the recipe's fixed values (smoke, gpu)."""
    recipe(name, profile)
    name = SWEEP_FROM.get(name, name)
    suffix = name.split("-", 1)[1]
    if profile != "cpu" or suffix not in SWEEPS:
        return None
    run = SWEEP_RUNS[name.split("-", 1)[0]]
    return SweepConfig(
        recipe=name,
        profile=profile,
        out_root=out_root,
        **run,
        **SWEEPS[suffix],
    )


def run_recipes(
    names: list[str] | None = None,
    *,
    profile: str = "cpu",
    out_root: str = str(results_path("experts")),
    sweep_root: str = str(results_path("sweeps")),
    on_finished=None,
) -> list[str]:
    """Train each named recipe (default: :func:`profile_recipes`) into ``out_root/<name>/``,
    one process each; ``on_finished(folder)`` is called for every sweep folder and run folder
    when it is complete (the CLI draws learning curves there).

    Where the profile sweeps a recipe (:func:`sweep_config`), the sweep runs first (its
    finished points are kept) and the long run trains with the selected ``lr`` and ``kl_coef``,
    written to ``<run>/hyperparameters.json`` with the sweep record it came from; a recipe
    whose sweep found no learning signal at all (:func:`t2bench.train.sweep.never_learned`) is
    not trained, its ``sweep.md`` says why, and its :data:`NO_SIGNAL_FALLBACK` (if any) is
    trained after the others. A finished
    run (its ``summary.json`` exists) is skipped, never overwritten; an interrupted one resumes
    from its last checkpoint. Returns the names that were trained or resumed.
    """
    import subprocess
    import sys

    todo = list(names or profile_recipes(profile))
    for name in todo:
        recipe(name, profile)  # fail on a typo before anything runs
    ran = []
    for name in todo:
        out = run_folder(Path(out_root), name)
        if (out / "summary.json").exists():
            print(f"[{name}] finished earlier: {out} (kept as it is)", flush=True)
            continue
        cmd = [sys.executable, "-m", "t2bench.train", "--recipe", name, "--profile", profile]
        sweep = sweep_config(name, profile, sweep_root)
        if sweep is not None:
            record = run_sweep(sweep)
            if on_finished:
                on_finished(sweep.folder)
            if record["selected"] is None:
                print(f"[{name}] not trained: {record['no_signal']['finding']}", flush=True)
                fallback = NO_SIGNAL_FALLBACK.get(name)
                if fallback and fallback not in todo:
                    print(f"[{name}] training {fallback} in its place", flush=True)
                    todo.append(fallback)  # the loop reaches it after the others
                continue
            cmd += ["--config", str(_hyperparameters_file(out, record, sweep))]
        print(f"[{name}] {' '.join(cmd[1:])} --output-dir {out}", flush=True)
        subprocess.run([*cmd, "--output-dir", str(out)], check=True)
        if on_finished:
            on_finished(out)
        ran.append(name)
    for root in {run_folder(Path(out_root), n).parent for n in todo}:
        table = root / "runs.md"
        root.mkdir(parents=True, exist_ok=True)  # a recipe not trained (no signal) made none
        table.write_text(runs_markdown(root))
        print(f"run table: {table}", flush=True)
    return ran


def _hyperparameters_file(out, record: dict, sweep) -> object:
    """``<out>/hyperparameters.json``: the sweep's selected lr and KL λ as TrainConfig fields,
    with where they came from. A resumed run must find the same values it started with."""
    chosen = record["selected"]
    fields = {
        "lr": chosen["lr"],
        "kl_coef": chosen["kl_coef"],
        "extra": {
            "hyperparameters_from": {
                "sweep": str(Path(sweep.folder) / "sweep.json"),
                "point": chosen["point"],
                "criterion": record["criterion"],
                "provenance": record["provenance"],
            }
        },
    }
    path = Path(out) / "hyperparameters.json"
    if path.exists():
        earlier = json.loads(path.read_text())
        if (earlier["lr"], earlier["kl_coef"]) != (fields["lr"], fields["kl_coef"]):
            raise ConfigError(
                f"{path} holds lr={earlier['lr']} kl_coef={earlier['kl_coef']} but the sweep "
                f"now selects lr={fields['lr']} kl_coef={fields['kl_coef']}: the run in {out} "
                "started with the former; move that folder away to train with the new values"
            )
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(fields, indent=2) + "\n")
    return path


def run_folder(out_root, name: str):
    """Where recipe ``name`` trains: ``<out_root>/<name>``, or ``<out_root>/table4/<name>``
    for the module-set ablation runs, which keeps ``<out_root>`` a folder of experts with one
    layout (the dispatch strategies load all of it)."""
    suffix = name.split("-", 1)[1]
    return Path(out_root) / ("table4" if suffix in ABLATION_METHODS else "") / name


def run_stats(folder, name: str | None = None) -> dict:
    """What a finished run changed and learned, from its files: max |z − 1| of an SVF expert
    (z parameterisation; None otherwise), the train reward's mean over the first and the
    last 10 logged steps (None for next-token prediction) and the dtype(s) its steps computed
    in, in order of first use ("auto" resolves per machine, so a resumed run can hold two)."""
    folder = Path(folder)
    out: dict = {
        "max_abs_z_minus_1": None,
        "reward_first10": None,
        "reward_last10": None,
        "computed_in": [],
    }
    expert = folder / f"{name or folder.name}.safetensors"
    if expert.exists():
        e = load_expert(expert)
        if e.meta.parameterisation == "z":
            out["max_abs_z_minus_1"] = max(float((v - 1).abs().max()) for v in e.params.values())
    log = folder / "log.jsonl"
    if log.exists():
        records = [json.loads(x) for x in log.read_text().splitlines() if x.strip()]
        for r in records:
            if r.get("computed_in") and r["computed_in"] not in out["computed_in"]:
                out["computed_in"].append(r["computed_in"])
        rewards = [r["reward"] for r in records if "reward" in r]
        if rewards:
            out["reward_first10"] = sum(rewards[:10]) / len(rewards[:10])
            out["reward_last10"] = sum(rewards[-10:]) / len(rewards[-10:])
    return out


def runs_markdown(root) -> str:
    """One row per finished run under ``root``, read from each ``summary.json`` and log."""
    columns = [
        "run",
        "method",
        "objective",
        "trainable params",
        "steps",
        "samples",
        "lr",
        "KL λ",
        "best step",
        "best valid acc (n)",
        "max abs(z − 1)",
        "reward first 10 → last 10 steps",
        "computed in",
        "processes",
        "wall s",
        "commit",
    ]
    rows = []
    for f in sorted(Path(root).glob("*/summary.json")):
        s = json.loads(f.read_text())
        c, prov = s["config"], s.get("provenance", {})
        acc = s["best_valid_accuracy"]
        st = run_stats(f.parent, s["run"])
        z = st["max_abs_z_minus_1"]
        rew = (
            "-"
            if st["reward_first10"] is None
            else f"{st['reward_first10']:+.2f} → {st['reward_last10']:+.2f}"
        )
        rows.append(
            [
                s["run"],
                c["method"],
                c["objective"],
                f"{s['trainable_parameters']:,}",
                s["steps_done"],
                f"{s['steps_done'] * c['global_batch']:,}",
                f"{c['lr']:g}",
                f"{c['kl_coef']:g}",
                s["best_step"],
                f"{'-' if acc is None else f'{acc:.3f}'} ({c['eval_size']})",
                "-" if z is None else f"{z:.4f}",
                rew,
                " → ".join(st["computed_in"]) or "-",
                s["processes"],
                prov.get("wall_seconds", "-"),
                f"`{str(prov.get('commit', '?'))[:12]}`",
            ]
        )
    return (
        "# Trained runs\n\nGenerated from each run's summary.json, log.jsonl and expert file "
        "(samples = steps × global batch; reward = mean train reward per step).\n\n"
        + "\n".join(markdown_rows(columns, rows))
        + "\n"
    )
