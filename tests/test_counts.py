"""Parameter counts from configs, checked against the paper, live decompositions and peft."""

from __future__ import annotations

import json
from importlib import resources

import pytest
import transformers

from t2bench.svf import (
    TargetSpec,
    decompose,
    ia3_params,
    lora_params,
    svf_params,
    tinylora_params,
)


def packaged(name):
    d = json.loads(resources.files("t2bench.configs").joinpath(f"{name}.json").read_text())
    d.pop("hub_id")
    return transformers.CONFIG_MAPPING[d.pop("model_type")](**d)


def test_smollm2_counts():
    cfg = packaged("smollm2-135m-instruct")
    assert svf_params(cfg, "mlp") == 51_840
    assert svf_params(cfg, "attn") == 23_040
    assert svf_params(cfg, "all") == 97_920
    assert lora_params(cfg, 16, "q,v") == 921_600


def test_llama3_8b_counts_match_the_paper():
    cfg = packaged("llama-3-8b")
    assert svf_params(cfg, "mlp") == 393_216
    assert svf_params(cfg, "attn") == 163_840
    assert lora_params(cfg, 16, "q,v") == 6_815_744
    assert lora_params(cfg, 16, "q,v,gate,up,down") == 35_127_296


def test_half_layers():
    cfg = packaged("llama-3-70b")
    assert svf_params(cfg, "mlp", "even") * 2 == svf_params(cfg, "mlp")


@pytest.mark.parametrize("modules", ["mlp", "attn", "attn-all", "all", "q,down"])
@pytest.mark.parametrize("layers", ["all", "odd"])
def test_config_count_equals_decomposition(tiny_model, tmp_path, modules, layers):
    d = decompose(tiny_model, TargetSpec(modules, layers), cache_dir=tmp_path, progress=False)
    assert svf_params(tiny_model.config, modules, layers) == d.num_parameters()


def _trainable(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize(
    "targets,modules",
    [
        (["q_proj", "v_proj"], "q,v"),
        (["q_proj", "v_proj", "gate_proj", "up_proj", "down_proj"], "q,v,gate,up,down"),
    ],
)
def test_lora_count_equals_peft(tiny_model, targets, modules):
    peft = pytest.importorskip("peft")
    cfg = peft.LoraConfig(r=4, lora_alpha=8, target_modules=targets)
    assert _trainable(peft.get_peft_model(tiny_model, cfg)) == lora_params(
        tiny_model.config, 4, modules
    )


@pytest.mark.parametrize("u,tying", [(3, 0.0), (5, 1.0), (2, 0.5)])
def test_tinylora_count_equals_peft(llama, u, tying):
    peft = pytest.importorskip("peft")
    cfg = peft.TinyLoraConfig(
        r=2, u=u, weight_tying=tying, target_modules=["gate_proj", "up_proj", "down_proj"]
    )
    assert _trainable(peft.get_peft_model(llama, cfg)) == tinylora_params(
        llama.config, u, tying, "mlp"
    )


def test_ia3_count_equals_peft(llama):
    peft = pytest.importorskip("peft")
    cfg = peft.IA3Config(
        target_modules=["k_proj", "v_proj", "down_proj"], feedforward_modules=["down_proj"]
    )
    assert _trainable(peft.get_peft_model(llama, cfg)) == ia3_params(llama.config)
