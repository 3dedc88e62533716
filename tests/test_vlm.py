"""Image-text models: assembly, SVF target towers, the t2-vlm backend end to end through lm-eval,
bad inputs, and the trainer on the generated VQA task (tiny seeded models, no downloads)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from t2bench.errors import ConfigError, ExpertMismatchError
from t2bench.svf import TargetSpec, find_targets, identity_expert, save_expert
from t2bench.svf.decompose import decompose

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
TASKS = str(Path(__file__).resolve().parents[1] / "tasks")


@pytest.fixture(autouse=True)
def no_git(monkeypatch):
    monkeypatch.setattr("t2bench.core.provenance.git_commit", lambda repo=None: "test")


@pytest.fixture(scope="module")
def vlm(tiny_vlm_dir):
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText.from_pretrained(tiny_vlm_dir).eval()


# --------------------------------------------------------------------------- assembly, towers


def test_assembled_language_model_is_the_text_model_bit_for_bit(vlm, char_llama_dir):
    from transformers import AutoModelForCausalLM

    lm = AutoModelForCausalLM.from_pretrained(char_llama_dir).eval()
    ids = torch.tensor([[5, 17, 40, 41, 3]])
    with torch.no_grad():
        a = lm(input_ids=ids).logits
        b = vlm(input_ids=ids).logits[..., : a.shape[-1]]
    assert torch.equal(a, b)


def test_towers_select_language_vision_or_both(vlm):
    lang = find_targets(vlm, TargetSpec("mlp", "all", "language"))
    vis = find_targets(vlm, TargetSpec("mlp", "all", "vision"))
    both = find_targets(vlm, TargetSpec("mlp", "all", "both"))
    assert [t.key for t in lang] == [
        f"layers.{i}.{r}" for i in (0, 1) for r in ("gate", "up", "down")
    ]
    assert all("language_model" in t.module_name for t in lang)
    # SigLIP's MLP is fc1/fc2 (up/down); no gate
    assert [t.key for t in vis] == ["vision.layers.0.up", "vision.layers.0.down"]
    assert all("vision_tower" in t.module_name for t in vis)
    assert [t.key for t in both] == [t.key for t in lang] + [t.key for t in vis]
    even = find_targets(vlm, TargetSpec("attn", "even", "language"))
    assert [t.key for t in even] == ["layers.0.q", "layers.0.v"]


def test_vision_tower_on_a_text_model_is_a_clear_error(llama):
    with pytest.raises(ConfigError, match="no vision-encoder layer"):
        find_targets(llama, TargetSpec("mlp", "all", "vision"))
    with pytest.raises(ConfigError, match="unknown tower"):
        TargetSpec("mlp", "all", "eyes")


# --------------------------------------------------------------------------- backend


def _expert(model, path: Path, spec: TargetSpec, model_id: str, scale: float = 1.0):
    d = decompose(model, spec, model_id=model_id, use_cache=False, progress=False)
    e = identity_expert(d)
    e.meta.name = path.stem
    for k in e.params:
        e.params[k] = torch.full_like(e.params[k], scale)
    return save_expert(e, path)


def _evaluate(model_args: str, limit: int = 4, tasks=("t2vqa_text",)):
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    from t2bench.backends import register

    register()
    return simple_evaluate(
        model="t2-vlm",
        model_args=model_args,
        tasks=list(tasks),
        task_manager=TaskManager(include_path=TASKS, include_defaults=False),
        limit=limit,
        batch_size=2,
        device="cpu",
        log_samples=True,
    )


def test_t2_vlm_runs_the_generated_task_end_to_end(tiny_vlm_dir):
    out = _evaluate(f"pretrained={tiny_vlm_dir}")
    res = out["results"]["t2vqa_text"]
    assert 0.0 <= res["vqa_accuracy,none"] <= 1.0
    samples = out["samples"]["t2vqa_text"]
    assert len(samples) == 4
    # each request carried its image into the backend and records the expert that answered
    args = [s["arguments"][0] for s in samples]
    assert all("visual" in str(a[2]) for a in args), args[0]
    assert all(a[-1] == {"t2_expert": "base"} for a in args), args[0]


def test_t2_vlm_applies_an_expert_and_changes_answers(tiny_vlm_dir, vlm, tmp_path):
    spec = TargetSpec("mlp", "all", "language")
    model_id = str(Path(tiny_vlm_dir).resolve())
    path = _expert(vlm, tmp_path / "loud.safetensors", spec, model_id, scale=3.0)
    base = _evaluate(f"pretrained={tiny_vlm_dir}")["samples"]["t2vqa_text"]
    adapted = _evaluate(f"pretrained={tiny_vlm_dir},experts={path},dispatch=fixed:loud")
    got = adapted["samples"]["t2vqa_text"]
    assert [s["resps"] for s in got] != [s["resps"] for s in base]
    assert "fixed" in str(adapted["config"]["model_args"])


def test_t2_vlm_applies_a_lone_expert_without_dispatch(tiny_vlm_dir, vlm, tmp_path):
    # the VLM table's SVF row once loaded its expert without dispatch= and scored the base
    # model: one expert and no dispatch now means that expert, several mean an error
    from t2bench.backends.vlm import T2VLM

    spec = TargetSpec("mlp", "all", "language")
    model_id = str(Path(tiny_vlm_dir).resolve())
    path = _expert(vlm, tmp_path / "loud.safetensors", spec, model_id, scale=3.0)
    lm = T2VLM(pretrained=tiny_vlm_dir, experts=str(path), batch_size=2)
    assert lm.dispatcher.describe() == {"strategy": "fixed", "expert": "loud"}
    summary = lm.t2_summary()
    assert set(summary["weights_sha256"]) == {"model", "vision_tower", "multi_modal_projector"}
    _expert(vlm, tmp_path / "quiet.safetensors", spec, model_id, scale=0.5)
    with pytest.raises(ConfigError, match="2 experts are loaded.*dispatch=fixed:<name>"):
        T2VLM(pretrained=tiny_vlm_dir, experts=str(tmp_path), batch_size=2)


def test_t2_vlm_vision_tower_expert(tiny_vlm_dir, vlm, tmp_path):
    spec = TargetSpec("mlp", "all", "vision")
    path = _expert(vlm, tmp_path / "eyes.safetensors", spec, str(Path(tiny_vlm_dir).resolve()), 0.0)
    from t2bench.backends.vlm import T2VLM

    lm = T2VLM(pretrained=tiny_vlm_dir, experts=str(path), dispatch="fixed:eyes", batch_size=2)
    assert lm.patcher.decomposition.spec.tower == "vision"
    assert all(k.startswith("vision.") for k in lm.patcher.decomposition.keys)


def test_bad_inputs_give_clear_errors(tiny_vlm_dir, char_llama_dir, tmp_path):
    from t2bench.backends.text import T2LM
    from t2bench.backends.vlm import T2VLM

    # a text-only model given to the image backend
    with pytest.raises(ConfigError, match="text-only model"):
        T2VLM(pretrained=char_llama_dir, batch_size=2)
    # an image-text model given to the text backend
    with pytest.raises(ConfigError, match="--model t2-vlm"):
        T2LM(pretrained=tiny_vlm_dir, batch_size=2)
    # unknown model_args and text-only first-pass strategies
    with pytest.raises(ConfigError, match="unknown model_args for t2-vlm: colour"):
        T2VLM(pretrained=tiny_vlm_dir, colour="red")
    # an expert of another model (tiny Gemma shapes)
    from tests.conftest import tiny_gemma

    g = tiny_gemma()
    wrong = _expert(g, tmp_path / "gemma.safetensors", TargetSpec("mlp"), "tiny-gemma")
    with pytest.raises(ExpertMismatchError, match="does not fit|adapts"):
        T2VLM(pretrained=tiny_vlm_dir, experts=str(wrong), batch_size=2)
    # an expert of the text model the VLM was built from: same shapes, other model id
    from transformers import AutoModelForCausalLM

    text = AutoModelForCausalLM.from_pretrained(char_llama_dir)
    same = _expert(text, tmp_path / "text.safetensors", TargetSpec("mlp"), "char-llama", 1.1)
    with pytest.raises(ExpertMismatchError, match="transfer"):
        T2VLM(pretrained=tiny_vlm_dir, experts=str(same), batch_size=2)
    lm = T2VLM(pretrained=tiny_vlm_dir, experts=str(same), transfer="true", batch_size=2)
    assert lm.experts


def test_text_backend_refuses_image_tasks(llama_dir):
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    from t2bench.backends import register

    register()
    with pytest.raises(ValueError, match="multimodal"):
        simple_evaluate(
            model="t2",
            model_args=f"pretrained={llama_dir}",
            tasks=["t2vqa_text"],
            task_manager=TaskManager(include_path=TASKS, include_defaults=False),
            limit=2,
            device="cpu",
        )


class _Req:
    def __init__(self, visual):
        self.args = ("ctx", {}, {"visual": visual})
        self.doc_id, self.task_name = 7, "t2vqa_text"


def test_missing_or_unreadable_images_are_named(tmp_path):
    from PIL import Image

    from t2bench.backends.vlm import check_images

    with pytest.raises(ConfigError, match="document 7 of task t2vqa_text has no image"):
        check_images([_Req([])])
    with pytest.raises(ConfigError, match="not a decoded PIL image"):
        check_images([_Req(["/no/such/file.png"])])
    good = tmp_path / "ok.png"
    Image.new("RGB", (40, 40), "red").save(good)
    broken = tmp_path / "broken.png"
    broken.write_bytes(good.read_bytes()[:60])  # truncated PNG
    with pytest.raises(ConfigError, match="cannot be decoded"):
        check_images([_Req([Image.open(broken)])])
    check_images([_Req([Image.open(good)])])  # a good one passes


# --------------------------------------------------------------------------- trainer


@pytest.mark.parametrize("method", ["svf", "lora"])
def test_trainer_trains_vlm_adapters_with_images(tiny_vlm_dir, tmp_path, method):
    from t2bench.train.config import TrainConfig
    from t2bench.train.trainer import train

    cfg = TrainConfig(
        task="vqa",
        model=tiny_vlm_dir,
        method=method,
        output_dir=str(tmp_path / method),
        steps=2,
        global_batch=4,
        micro_batch=2,
        eval_every=2,
        eval_size=4,
        eval_batch=4,
        reward_wrong=-0.1,
        lr=1e-2,
        grad_clip=0,
        progress=False,
    )
    res = train(cfg)
    assert res.summary["steps_done"] == 2
    assert res.summary["best_valid_accuracy"] is not None
    log = [
        __import__("json").loads(x)
        for x in (tmp_path / method / "log.jsonl").read_text().splitlines()
    ]
    # the VLM reward: +1 correct, -0.1 wrong, so the batch mean follows the batch accuracy
    for r in log:
        assert r["reward"] == pytest.approx(r["accuracy"] * 1.0 + (1 - r["accuracy"]) * -0.1)
    if method == "lora":  # LoRA only on the language model, never the vision tower
        from safetensors.torch import load_file

        w = load_file(str(res.artifact / "adapter_model.safetensors"))
        assert w and all("language_model" in k and "vision" not in k for k in w)
    else:
        from t2bench.svf import load_expert

        e = load_expert(res.artifact)
        assert e.meta.base_model == str(Path(tiny_vlm_dir).resolve())
        assert all(not k.startswith("vision.") for k in e.params)


@pytest.mark.real
def test_real_smollm2_vlm_reads_text_colour_above_chance():
    """The committed vision side, assembled with the packaged SmolLM2, answers colour questions
    on valid items (never test) far above the best constant answer (0.107 on colour)."""
    from t2bench.tasks.textimages import TextImageConfig, make_item
    from t2bench.vlm.models import load_vlm
    from t2bench.vlm.pretrain import generate_answers

    model, processor, model_id = load_vlm("smollm2-vlm")
    assert model_id == "smollm2-vlm"
    cfg = TextImageConfig()
    items = [make_item(cfg, "valid", i) for i in range(cfg.n_valid)]
    colour = [it for it in items if it["qtype"] == "colour"][:24]
    got = generate_answers(model, processor, colour)
    hits = sum(g.strip().lower() == it["answer"] for g, it in zip(got, colour, strict=True))
    assert hits / len(colour) > 0.3, (hits, got)
