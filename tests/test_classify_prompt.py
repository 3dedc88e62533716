"""One classification prompt for every first pass and for the classifier expert's training.

The ``prompt`` and ``classifier`` strategies are compared as "base weights vs classifier
expert reading the same question"; these tests fail when the two (or ``label``, or the
classifier's training split) send different prompt text.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import tiny_llama
from test_dispatch import make_experts, word_tokenizer

import t2bench.generation as rollout
from t2bench.classify_prompt import (
    CLASSIFY_INSTRUCTION,
    CLASSIFY_PROMPT_SHA256,
    DEFAULT_LAYOUT,
    EXPERT_LABELS,
    LABELS,
    LAYOUTS,
    classify_prompt,
    prompt_sha256,
    question_in,
)
from t2bench.dispatch import DispatchContext, DispatchRequest, make_dispatcher
from t2bench.svf import SVFPatcher, TargetSpec, decompose

QUESTIONS = ["w1 w2 ?", "w3 : w4 ?"]
_ENCODE = rollout.encode_prompts  # the real encoder, which the spies below wrap
COMMITTED = (
    Path(__file__).resolve().parents[1] / "results" / "experts-smoke"
)  # the first committed experts


@pytest.fixture
def ctx():
    model = tiny_llama()
    d = decompose(model, TargetSpec("mlp"), model_id="tiny", progress=False)
    experts = make_experts(d, ["code-x", "math-x", "reasoning-x", "classifier-x"])
    return DispatchContext(
        model=model,
        tokenizer=word_tokenizer(),
        experts=experts,
        patcher=SVFPatcher(model, d),
        model_id="tiny",
        batch_size=4,
    )


def _sent(ctx, spec, monkeypatch) -> tuple[list[str], list[str | None], dict]:
    """The prompt texts a strategy hands the tokenizer (through the real generate or forward),
    the expert active at each hand-over, and its describe()."""
    texts, active = [], []

    def spy(tokenizer, prompts):
        texts.extend(prompts)
        active.append(ctx.patcher.active)
        return _ENCODE(tokenizer, prompts)

    monkeypatch.setattr(rollout, "encode_prompts", spy)
    d = make_dispatcher(spec, ctx.experts)
    d.bind(ctx)
    d.choose([DispatchRequest(q) for q in QUESTIONS])
    return texts, active, d.describe()


def test_prompt_and_classifier_send_the_same_text_with_different_weights(ctx, monkeypatch):
    prompt_texts, prompt_active, prompt_info = _sent(ctx, "prompt:max_new_tokens=2", monkeypatch)
    cls_texts, cls_active, cls_info = _sent(ctx, "classifier:max_new_tokens=2", monkeypatch)
    expected = sorted(classify_prompt(q) for q in QUESTIONS)
    assert sorted(prompt_texts) == expected
    assert sorted(cls_texts) == expected
    assert [t.encode() for t in cls_texts] == [t.encode() for t in prompt_texts]
    # only the weights differ: base for prompt, the classifier expert for classifier
    assert prompt_active == [None] and cls_active == ["classifier-x"]
    assert prompt_info["prompt_sha256"] == cls_info["prompt_sha256"] == CLASSIFY_PROMPT_SHA256


def test_label_strategy_scores_after_the_same_prompt(ctx, monkeypatch):
    texts, active, info = _sent(ctx, "label:calibrate=false", monkeypatch)
    assert sorted(texts) == sorted(classify_prompt(q) for q in QUESTIONS)
    assert active == [None]
    assert info["prompt_sha256"] == CLASSIFY_PROMPT_SHA256


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_the_prompt_asks_for_every_label_and_gives_back_its_question(layout):
    q = "What is 2 + 3?"
    p = classify_prompt(q, layout)
    where = "above" if layout == "question-first" else "below"
    instruction = CLASSIFY_INSTRUCTION.replace("above", where)
    assert instruction in p and all(label in instruction for label in LABELS)
    # instruction-first and sandwich: everything before the question is the same for every
    # question; sandwich adds a one-line reminder after it
    if layout == "question-first":
        assert p.index(q) < p.index(instruction)
    else:
        assert p.index(instruction) < p.index(q)
        assert p.endswith(q) == (layout == "instruction-first")
    if layout == "sandwich":
        assert "category of the question above" in p[p.index(q) :]
    assert question_in(p) == q and question_in(q) is None
    assert len(prompt_sha256(layout)) == 12 and set(prompt_sha256(layout)) <= set(
        "0123456789abcdef"
    )


def test_layouts_have_their_own_identity_and_the_old_one_is_unchanged():
    assert CLASSIFY_PROMPT_SHA256 == prompt_sha256(DEFAULT_LAYOUT)
    assert prompt_sha256("instruction-first") != prompt_sha256("question-first")
    # question-first is, word for word, the only prompt before layouts existed (commit 9992d81)
    assert prompt_sha256("question-first") == "cfb32ecc52f0"
    with pytest.raises(ValueError, match="unknown classification prompt layout 'sideways'"):
        classify_prompt("q", "sideways")


def test_classifier_training_prompts_are_the_dispatch_prompt():
    from t2bench.data import splits as data

    splits = data.load_splits("classifier", 0)
    assert splits.description["prompt_sha256"] == CLASSIFY_PROMPT_SHA256
    questions = {
        s.item.uid: s.question
        for task in ("math", "reasoning", "code")
        for items in data._SOURCES[task](0)[0].values()
        for s in items
    }
    for item in splits.train + splits.valid + splits.test:
        assert item.prompt == classify_prompt(questions[item.uid.removeprefix("cls-")])
        assert item.target in EXPERT_LABELS


def test_committed_classifier_expert_still_loads_into_the_classifier_strategy():
    from t2bench.svf.files import load_experts

    names = ["classifier-svf-pg", *(f"{label}-svf-pg" for label in EXPERT_LABELS)]
    experts = {
        e.meta.name: e for n in names for e in load_experts(COMMITTED / n / f"{n}.safetensors")
    }
    d = make_dispatcher("classifier", experts)
    info = d.describe()
    assert info["classifier_expert"] == "classifier-svf-pg"
    assert info["prompt_sha256"] == CLASSIFY_PROMPT_SHA256


@pytest.mark.real
def test_committed_classifier_expert_classifies_on_the_real_model():
    from t2bench.dispatch.standalone import load_bound

    names = ["classifier-svf-pg", *(f"{label}-svf-pg" for label in EXPERT_LABELS)]
    bound = load_bound(
        "classifier:max_new_tokens=8",
        experts=[str(COMMITTED / n / f"{n}.safetensors") for n in names],
        device="cpu",
    )
    with torch.no_grad():
        choices = bound.dispatcher.choose([DispatchRequest("What is 12 * 7?")])
    assert len(choices) == 1
    assert bound.dispatcher.describe()["classified"] == 1
