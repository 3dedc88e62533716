"""The VLM runs behind ``results/vlm/`` (``nox -s vlm``): vision-side pre-training, then an SVF
expert and a LoRA baseline on the assembled model, all on the generated VQA task's train split
(selection on its valid split; the test split is only evaluated, by the ``vlm`` ablation).

The SVF expert follows the paper's VLM recipe: REINFORCE with reward +1 correct / −0.1 wrong
and, as for its LLaVA-8B, every other language-model layer (``layers=even``). LoRA is the
usual next-token baseline on q_proj, v_proj of the language model only.
"""

from __future__ import annotations

from pathlib import Path

from t2bench.core.io import results_path
from t2bench.errors import ConfigError

ROOT = results_path("vlm")
#: Named vision-side pre-training runs (overrides of :class:`~t2bench.vlm.pretrain.PretrainConfig`),
#: each written to ``results/vlm/<name>/``. ``init_from`` names the recipe whose
#: ``vision.safetensors`` starts the run; :func:`pretrain_recipe` runs that one first if needed.
#: What each run reached, and the runs that were tried and dropped: results/vlm/README.md.
PRETRAIN_RECIPES: dict[str, dict] = {
    # the defaults: stage A 1200 steps, stage B 200
    "smollm2-vlm": {},
    # a longer stage A
    "smollm2-vlm-a4000": {"stage_a_steps": 4000},
    # continues that tower on fresh images every step (a 1M-item train split rendered per
    # batch, so the tower cannot memorise a fixed set) with a per-patch character head
    "smollm2-vlm-chars": {
        "init_from": "smollm2-vlm-a4000",
        "n_train": 1_000_000,
        "char_head": True,
        "stage_a_steps": 4000,
        "stage_b_steps": 300,
    },
    # stage B only: 500 more steps carrying what the tower reads into the LM's answers
    "smollm2-vlm-chars-b500": {
        "init_from": "smollm2-vlm-chars",
        "n_train": 1_000_000,
        "stage_a_steps": 0,
        "stage_b_steps": 500,
    },
}
#: The SVF expert and LoRA baseline trained on the default model.
EXPERTS_DIR = ROOT / "experts-chars"

_COMMON = dict(task="vqa", model="smollm2-vlm", seed=0, eval_batch=16)
_CPU = {
    "vqa-svf-pg": dict(
        method="svf",
        objective="pg",
        lr=2e-3,
        modules="mlp",
        layers="even",
        reward_wrong=-0.1,
        kl_coef=0.1,
        advantage="whiten",
        steps=48,
        global_batch=16,
        micro_batch=8,
        eval_every=8,
        eval_size=64,
    ),
    "vqa-lora-ntp": dict(
        method="lora",
        objective="ntp",
        lr=2e-4,
        steps=48,
        global_batch=16,
        micro_batch=8,
        eval_every=8,
        eval_size=64,
    ),
}
_GPU = {
    name: cfg | dict(steps=60, global_batch=128, micro_batch=32, eval_every=10, eval_size=200)
    for name, cfg in _CPU.items()
}
#: The text experts' new signal and budget (train/recipes.py's CPU profile): K = 4 samples per
#: prompt with group-whitened advantages, a run stopped after 10 steps without signal, bf16
#: where it pays, and 4800 samples (150 steps x 32; the experts-chars runs saw 768). LoRA gets
#: the same samples.
_GROUPS_BUDGET = dict(steps=150, global_batch=32, micro_batch=16, eval_every=10, eval_size=64)
_CPU_GROUPS = {
    "vqa-svf-pg": _CPU["vqa-svf-pg"]
    | _GROUPS_BUDGET
    | dict(
        group_size=4,
        advantage="group_whiten",
        stop_without_signal=10,
        compute_dtype="auto",
    ),
    "vqa-lora-ntp": _CPU["vqa-lora-ntp"] | _GROUPS_BUDGET | dict(compute_dtype="auto"),
}
PROFILES = {"cpu": _CPU, "gpu": _GPU, "cpu-groups": _CPU_GROUPS}
#: Where each profile's runs go: a new budget never writes into an earlier profile's folder
PROFILE_DIRS = {"cpu": EXPERTS_DIR, "gpu": EXPERTS_DIR, "cpu-groups": ROOT / "experts-groups"}


def pretrain_config(name: str, root: Path = ROOT, **overrides):
    """The :class:`~t2bench.vlm.pretrain.PretrainConfig` of a named pre-training recipe."""
    from t2bench.vlm.pretrain import VISION_FILE, PretrainConfig

    if name not in PRETRAIN_RECIPES:
        raise ConfigError(
            f"unknown pre-training recipe {name!r}; recipes: {', '.join(PRETRAIN_RECIPES)}"
        )
    fields = dict(PRETRAIN_RECIPES[name])
    if "n_train" in fields:
        from t2bench.tasks.textimages import TextImageConfig

        fields["data"] = TextImageConfig(n_train=fields.pop("n_train"))
    if "init_from" in fields:
        fields["init_from"] = str(Path(root) / fields["init_from"] / VISION_FILE)
    fields |= {k: v for k, v in overrides.items() if v is not None}
    fields.setdefault("output_dir", Path(root) / name)
    return PretrainConfig(**fields)


def pretrain_recipe(name: str, root: Path = ROOT, **overrides) -> dict:
    """Run (or resume) a named pre-training recipe, after the recipe it starts from if that one
    has not finished; a finished recipe is read back, never redone. Returns its summary.

    ``overrides`` (None values ignored) apply to the named recipe only, not to the one it
    starts from.
    """
    import json

    from t2bench.vlm.pretrain import SUMMARY, pretrain

    cfg = pretrain_config(name, root, **overrides)
    summary = Path(cfg.output_dir) / SUMMARY
    if summary.exists():
        print(f"[{name}] finished earlier: {summary} (kept as it is)", flush=True)
        return json.loads(summary.read_text())
    parent = PRETRAIN_RECIPES[name].get("init_from")
    if parent is not None:
        keep = {"num_threads", "progress"}
        pretrain_recipe(parent, root, **{k: v for k, v in overrides.items() if k in keep})
    print(f"[{name}] pre-training into {cfg.output_dir}", flush=True)
    return pretrain(cfg)


def vlm_recipe(name: str, profile: str = "cpu") -> dict:
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}: use one of {', '.join(PROFILES)}")
    if name not in PROFILES[profile]:
        raise ConfigError(f"unknown VLM recipe {name!r}; recipes: {', '.join(PROFILES[profile])}")
    return _COMMON | {"name": name} | PROFILES[profile][name]


def train_vlm_recipes(
    names: list[str] | None = None, *, profile: str = "cpu", out_root: Path | None = None
) -> list[str]:
    """Train each named VLM recipe into ``out_root/<name>/`` (default: the profile's folder,
    :data:`PROFILE_DIRS`); finished runs are kept as they are."""
    from t2bench.train.config import TrainConfig
    from t2bench.train.recipes import runs_markdown
    from t2bench.train.trainer import train

    out_root = out_root or PROFILE_DIRS.get(profile, EXPERTS_DIR)
    todo = names or list(PROFILES.get(profile, {}))
    configs = {n: vlm_recipe(n, profile) for n in todo}  # fail on a typo before anything runs
    ran = []
    for name, fields in configs.items():
        out = Path(out_root) / name
        if (out / "summary.json").exists():
            print(f"[{name}] finished earlier: {out} (kept as it is)", flush=True)
            continue
        print(f"[{name}] training into {out}", flush=True)
        train(TrainConfig(**fields, output_dir=str(out)))
        ran.append(name)
    (Path(out_root) / "runs.md").write_text(runs_markdown(out_root))
    return ran
