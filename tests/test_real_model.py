"""Opt-in tests on the real packaged models (run with --real; nox -s tests_real)."""

from __future__ import annotations

import pytest
import torch

from t2bench.models import load_config, load_model
from t2bench.svf import (
    SVFPatcher,
    TargetSpec,
    decompose,
    identity_expert,
    layer_shapes,
    load_expert,
    save_expert,
    svf_params,
)

pytestmark = pytest.mark.real

PROMPTS = ["The capital of France is", "def fibonacci(n):\n    ", "Question: 12 * 7 = ?\nAnswer:"]


@pytest.fixture(scope="module")
def smollm2():
    return load_model("smollm2-135m-instruct", dtype="float32", device="cpu")


def _logits(lm):
    tok = lm.tokenizer
    enc = tok(PROMPTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        return lm.model(**enc).logits


@pytest.mark.parametrize("parameterisation", ["z", "sigmoid"])
def test_identity_expert_on_real_smollm2(smollm2, tmp_path, parameterisation):
    d = decompose(smollm2.model, TargetSpec("all"), model_id=smollm2.model_id, progress=False)
    assert len(d.targets) == 210 and d.num_parameters() == 97_920
    base = _logits(smollm2)
    patcher = SVFPatcher(smollm2.model, d)
    patcher.apply(identity_expert(d, parameterisation=parameterisation))
    diff = (_logits(smollm2) - base).abs().max().item()
    assert diff <= 1e-5, diff
    # a real change, then restore: bit-identical weights and logits
    e = identity_expert(d, parameterisation=parameterisation, noise_std=0.5, seed=1)
    patcher.apply(e)
    assert (_logits(smollm2) - base).abs().max().item() > 1e-2
    patcher.restore()
    assert patcher.is_base()
    assert torch.equal(_logits(smollm2), base)
    # save / load round trip applies identically
    back = load_expert(save_expert(e, tmp_path / "e"))
    patcher.apply(e)
    first = _logits(smollm2)
    patcher.apply(back)
    assert torch.equal(_logits(smollm2), first)
    patcher.restore()


def test_packaged_config_matches_converted_model(smollm2):
    packaged = layer_shapes(load_config("smollm2-135m-instruct"))
    converted = layer_shapes(smollm2.model.config)
    assert packaged == converted
    assert svf_params(smollm2.model.config, "mlp") == 51_840


def test_gemma_loads_and_identity_is_exact(tmp_path):
    lm = load_model("gemma-3-270m", device="cpu")
    assert type(lm.model).__name__ == "Gemma3ForCausalLM"
    assert layer_shapes(load_config("gemma-3-270m")) == layer_shapes(lm.model.config)
    d = decompose(lm.model, TargetSpec("mlp", "even"), model_id=lm.model_id, progress=False)
    assert d.layers == list(range(0, 18, 2))
    enc = lm.tokenizer(PROMPTS[:1], return_tensors="pt")
    with torch.no_grad():
        base = lm.model(**enc).logits
        patcher = SVFPatcher(lm.model, d)
        patcher.apply(identity_expert(d, parameterisation="sigmoid"))
        assert (lm.model(**enc).logits - base).abs().max().item() <= 1e-5
    patcher.restore()
    assert patcher.is_base()


def test_one_policy_gradient_step_on_real_smollm2(tmp_path):
    """The trainer end to end on the real model and packaged ARC-Easy split: one RL step."""
    from t2bench.train.config import TrainConfig
    from t2bench.train.trainer import train

    cfg = TrainConfig(
        task="reasoning",
        output_dir=str(tmp_path / "run"),
        steps=1,
        global_batch=2,
        micro_batch=2,
        max_new_tokens=6,
        eval_every=1,
        eval_size=2,
        kl_coef=0.1,
        progress=False,
    )
    result = train(cfg)
    expert = load_expert(result.artifact)
    assert expert.meta.base_model == "smollm2-135m-instruct"
    assert expert.num_parameters() == 51_840
    assert any((v - 1).abs().max() > 0 for v in expert.params.values())
    assert result.summary["data"]["splits"]["train"]["size"] == 285
