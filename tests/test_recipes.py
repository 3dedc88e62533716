"""Named recipes: every one is a valid config, and methods of one task share one budget."""

import pytest

from t2bench.errors import ConfigError
from t2bench.train.config import TrainConfig
from t2bench.train.recipes import recipe, recipe_names, run_folder

BUDGET = ("steps", "global_batch", "micro_batch", "max_new_tokens", "eval_size", "seed")


@pytest.mark.parametrize("profile", ["cpu", "gpu"])
def test_recipes_are_valid_and_fair(profile):
    names = recipe_names()
    assert len(names) == 17 and "classifier-svf-pg" in names
    for name in names:
        TrainConfig.from_dict(recipe(name, profile))
    for task in ("reasoning", "math", "code"):
        budgets = {
            tuple(recipe(n, profile)[k] for k in BUDGET) for n in names if n.startswith(task)
        }
        assert len(budgets) == 1, f"{task} recipes differ in budget: {budgets}"
    lora = recipe("math-lora-ntp", profile)
    assert (lora["lora_r"] if "lora_r" in lora else TrainConfig().lora_r) == 16


def test_unknown_recipe_or_profile():
    with pytest.raises(ConfigError, match="unknown recipe 'math-dora'.*math-svf-pg"):
        recipe("math-dora")
    with pytest.raises(ConfigError, match="unknown profile 'tpu'"):
        recipe("math-svf-pg", "tpu")


def test_table4_recipes_set_modules_and_targets():
    attn = TrainConfig.from_dict(recipe("math-svf-pg-attn"))
    assert (attn.method, attn.objective, attn.modules) == ("svf", "pg", "attn")
    assert TrainConfig.from_dict(recipe("math-svf-ntp-attn")).objective == "ntp"
    assert TrainConfig.from_dict(recipe("math-svf-pg-mlp+attn")).modules == "mlp+attn"
    lora = TrainConfig.from_dict(recipe("math-lora-ntp-mlp+attn"))
    assert lora.lora_targets.split(",") == ["q_proj", "v_proj", "gate_proj", "up_proj", "down_proj"]
    assert recipe("math-svf-pg")["modules"] == "mlp"
    assert run_folder("r", "math-svf-pg-attn").as_posix() == "r/table4/math-svf-pg-attn"
    assert run_folder("r", "math-svf-pg").as_posix() == "r/math-svf-pg"
