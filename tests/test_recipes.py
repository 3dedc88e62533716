"""Named recipes: every one is a valid config, and methods of one task share one budget."""

import pytest

from t2bench.errors import ConfigError
from t2bench.train.config import TrainConfig
from t2bench.train.recipes import (
    CLASSIFIER,
    PROFILES,
    profile_recipes,
    recipe,
    recipe_names,
    run_folder,
    sweep_config,
)

BUDGET = ("steps", "global_batch", "micro_batch", "max_new_tokens", "eval_size", "seed")


@pytest.mark.parametrize("profile", ["cpu", "smoke", "gpu"])
def test_recipes_are_valid_and_fair(profile):
    names = recipe_names()
    assert len(names) == 22 and {"classifier-svf-pg", "classifier-svf-ntp", "code-svf-ntp"} <= set(
        names
    )
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


def test_tinylora_recipes_span_tens_to_thousands_and_share_one_sweep():
    tied = TrainConfig.from_dict(recipe("math-tinylora-pg-u13-tied"))
    assert (tied.method, tied.objective, tied.tinylora_u, tied.tinylora_tying) == (
        "tinylora",
        "pg",
        13,
        1.0,
    )
    assert TrainConfig.from_dict(recipe("math-tinylora-pg-u4")).tinylora_u == 4
    assert run_folder("r", "math-tinylora-pg-u16").as_posix() == "r/table4/math-tinylora-pg-u16"
    # the same RL, data and sample budget as SVF
    svf = recipe("math-svf-pg", "cpu")
    for name in ("math-tinylora-pg-u13-tied", "math-tinylora-pg-u16"):
        r = recipe(name, "cpu")
        assert {k: r[k] for k in (*BUDGET, "group_size", "advantage", "difficulty")} == {
            k: svf[k] for k in (*BUDGET, "group_size", "advantage", "difficulty")
        }
    folders = {sweep_config(n, "cpu", "s").folder.as_posix() for n in recipe_names() if "tiny" in n}
    assert folders == {"s/math-tinylora-pg-u16"}
    assert sweep_config("math-tinylora-pg-u4", "smoke") is None


def samples(name: str, profile: str) -> int:
    r = recipe(name, profile)
    return r["steps"] * r["global_batch"]


def test_cpu_profile_trains_50x_the_smoke_samples_with_groups_in_bf16():
    for name in ("reasoning-svf-pg", "math-svf-pg"):
        assert samples(name, "cpu") >= 50 * samples(name, "smoke"), name
        r = TrainConfig.from_dict(recipe(name, "cpu"))
        assert (r.group_size, r.advantage, r.compute_dtype) == (4, "group_whiten", "auto")
    assert samples("classifier-svf-ntp", "cpu") >= 50 * samples("classifier-svf-pg", "smoke")
    assert recipe("math-svf-pg", "cpu")["difficulty"] == "mix"
    # next-token prediction has no groups but the same samples per step
    ntp = TrainConfig.from_dict(recipe("reasoning-lora-ntp", "cpu"))
    assert ntp.group_size == 1 and ntp.compute_dtype == "auto"
    assert samples("reasoning-lora-ntp", "cpu") == samples("reasoning-svf-pg", "cpu")
    # the smoke profile is the first experts' budget: fp32, one sample per prompt
    smoke = TrainConfig.from_dict(recipe("reasoning-svf-pg", "smoke"))
    assert (smoke.group_size, smoke.compute_dtype, smoke.steps) == (1, "float32", 8)


def test_profile_recipes_put_the_experts_first_with_one_classifier():
    for profile in PROFILES:
        names = profile_recipes(profile)
        assert names[:4] == ["reasoning-svf-pg", "math-svf-pg", CLASSIFIER[profile], "code-svf-pg"]
        assert sum(n.startswith("classifier-") for n in names) == 1
        assert len(names) == len(set(names)) == 20
    assert CLASSIFIER["cpu"] == "classifier-svf-ntp"
    assert TrainConfig.from_dict(recipe("classifier-svf-ntp")).objective == "ntp"


def test_sweeps_only_on_the_cpu_profile():
    sw = sweep_config("math-svf-pg", "cpu", "somewhere")
    assert sw.points() == [(lr, kl) for lr in (2e-3, 1e-2, 5e-2) for kl in (0.0, 0.1)]
    assert sw.steps < recipe("math-svf-pg", "cpu")["steps"] and sw.eval_size <= 200
    assert sw.folder.as_posix() == "somewhere/math-svf-pg"
    assert sweep_config("math-lora-ntp", "cpu").kl_coefs == (0.0,)
    assert sweep_config("math-svf-pg", "gpu") is None
    # Table 4's module-set runs take the MLP recipe's sweep of the same method and objective;
    # SVF by next-token prediction has no MLP recipe on math and sweeps its attention run
    for name, source in (
        ("math-svf-pg-attn", "math-svf-pg"),
        ("math-svf-pg-mlp+attn", "math-svf-pg"),
        ("math-lora-ntp-mlp+attn", "math-lora-ntp"),
        ("math-svf-ntp-attn", "math-svf-ntp-attn"),
    ):
        assert sweep_config(name, "cpu", "s").folder.as_posix() == f"s/{source}", name
        assert sweep_config(name, "gpu") is None
    assert sweep_config("math-svf-ntp-attn", "cpu").kl_coefs == (0.0,)
