"""The VLM runs behind ``results/vlm/`` (``nox -s vlm``): vision-side pre-training, then an SVF
expert and a LoRA baseline on the assembled model, all on the generated VQA task's train split
(selection on its valid split; the test split is only evaluated, by the ``vlm`` ablation).

The SVF expert follows the paper's VLM recipe: REINFORCE with reward +1 correct / −0.1 wrong
and, as for its LLaVA-8B, every other language-model layer (``layers=even``). LoRA is the
usual next-token baseline on q_proj, v_proj of the language model only.
"""

from __future__ import annotations

from pathlib import Path

from t2bench.errors import ConfigError

ROOT = Path("results/vlm")
PRETRAIN_DIR = ROOT / "smollm2-vlm"
EXPERTS_DIR = ROOT / "experts"

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
        steps=16,
        global_batch=16,
        micro_batch=8,
        eval_every=4,
        eval_size=64,
    ),
    "vqa-lora-ntp": dict(
        method="lora",
        objective="ntp",
        lr=2e-4,
        steps=16,
        global_batch=16,
        micro_batch=8,
        eval_every=4,
        eval_size=64,
    ),
}
_GPU = {
    name: cfg | dict(steps=60, global_batch=128, micro_batch=32, eval_every=10, eval_size=200)
    for name, cfg in _CPU.items()
}
PROFILES = {"cpu": _CPU, "gpu": _GPU}


def vlm_recipe(name: str, profile: str = "cpu") -> dict:
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}: use one of {', '.join(PROFILES)}")
    if name not in PROFILES[profile]:
        raise ConfigError(f"unknown VLM recipe {name!r}; recipes: {', '.join(PROFILES[profile])}")
    return _COMMON | {"name": name} | PROFILES[profile][name]


def train_vlm_recipes(
    names: list[str] | None = None, *, profile: str = "cpu", out_root: Path = EXPERTS_DIR
) -> list[str]:
    """Train each named VLM recipe into ``out_root/<name>/``; finished runs are kept as they are."""
    from t2bench.train.config import TrainConfig
    from t2bench.train.recipes import runs_markdown
    from t2bench.train.trainer import train

    todo = names or list(PROFILES[profile])
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
