"""Dispatch strategies on tiny local models: parsing, label↔expert mapping, options, the
prompt / classifier / label first passes, CEM, few-shot α caching and the shot guard, and the
backend's bind and timing."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import torch
from conftest import tiny_llama

from t2bench.dispatch import BASE, Choice, DispatchContext, DispatchRequest, make_dispatcher
from t2bench.dispatch import cem_strategy as fs
from t2bench.dispatch.base import options_to_config
from t2bench.dispatch.categories import (
    choice_for,
    label_experts,
    parse_label,
    question_of,
)
from t2bench.dispatch.cem_optimizer import CEMConfig, cem
from t2bench.dispatch.first_pass import UnreadableClassification
from t2bench.dispatch.label_strategy import LabelConfig, LabelScoreDispatch
from t2bench.dispatch.prompt_strategy import PromptDispatch
from t2bench.errors import ConfigError, ExpertMismatchError
from t2bench.svf import SVFPatcher, TargetSpec, decompose, identity_expert, save_expert
from t2bench.svf.expert import mix
from t2bench.svf.files import load_experts

WORDS = ["code", "math", "reasoning", "other", "\\", "boxed", "{", "}", "Question", ":", "?"]


def word_tokenizer():
    """Word-level tokenizer over 64 ids that knows the label words (others are <unk>)."""
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers import models as tk_models
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(WORDS + [f"w{i}" for i in range(51)])}
    vocab |= {"<unk>": 62, "</s>": 63}
    tk = Tokenizer(tk_models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", eos_token="</s>")
    tok.pad_token = tok.eos_token
    return tok


def make_experts(d, names, seed=0, task=None):
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name in names:
        e = identity_expert(d, name=name)
        e.params = {
            k: 1 + 0.5 * (torch.rand(v.shape, generator=g) - 0.5) for k, v in e.params.items()
        }
        if task:
            e.meta.provenance = {"train_config": {"task": task[name]}}
        out[name] = e
    return out


@pytest.fixture
def setup():
    model = tiny_llama()
    d = decompose(model, TargetSpec("mlp"), model_id="tiny", progress=False)
    experts = make_experts(d, ["code-x", "math-x", "reasoning-x", "classifier-x"])
    ctx = DispatchContext(
        model=model,
        tokenizer=word_tokenizer(),
        experts=experts,
        patcher=SVFPatcher(model, d),
        model_id="tiny",
        batch_size=4,
    )
    return ctx, d, experts


# --------------------------------------------------------------------------- parsing, mapping


@pytest.mark.parametrize(
    "reply,label",
    [
        ("\\boxed{math}", "math"),
        ("So: \\boxed{ Coding }.", "code"),
        ("\\boxed{\\text{Reasoning}}", "reasoning"),
        ("first \\boxed{code} then \\boxed{other}", "other"),
        ("\\boxed{banana} it is mathematics", "math"),
        ("The category is reasoning.", "reasoning"),
        ("math or code, hard to say", None),
        ("The capital of France is Paris.", None),
        ("", None),
    ],
)
def test_parse_label(reply, label):
    assert parse_label(reply) == label


def test_label_experts_by_name_and_by_training_task(setup):
    _, d, experts = setup
    m = label_experts(experts, strategy="t")
    assert {k: e.meta.name for k, e in m.items()} == {
        "code": "code-x",
        "math": "math-x",
        "reasoning": "reasoning-x",
    }
    named = make_experts(d, ["a", "b", "c"], task={"a": "math", "b": "code", "c": "reasoning"})
    assert label_experts(named, strategy="t")["math"].meta.name == "a"
    assert choice_for("other", m) is BASE and choice_for(None, m) is BASE
    assert choice_for("code", m).key == "code-x"


def test_fixed_accepts_a_task_label_served_by_exactly_one_expert(setup):
    """README's ``dispatch=fixed:math``: a label picks the one expert that serves it."""
    _, d, experts = setup
    assert make_dispatcher("fixed:math", experts).describe()["expert"] == "math-x"
    assert make_dispatcher("fixed:math-x", experts).describe()["expert"] == "math-x"
    by_task = make_experts(d, ["a", "b"], task={"a": "math", "b": "code"})
    assert make_dispatcher("fixed:Math", by_task).describe()["expert"] == "a"
    dup = {**experts, **make_experts(d, ["math-y"])}
    with pytest.raises(
        ConfigError, match=r"several loaded experts serve task 'math': \['math-x', "
    ):
        make_dispatcher("fixed:math", dup)
    with pytest.raises(ConfigError, match="no expert named 'poetry' and none serves a task"):
        make_dispatcher("fixed:poetry", experts)


def test_label_experts_errors_name_the_label(setup):
    _, d, experts = setup
    with pytest.raises(ConfigError, match="none are loaded"):
        label_experts({}, strategy="prompt")
    with pytest.raises(ConfigError, match="no expert serves label 'reasoning'"):
        label_experts({k: v for k, v in experts.items() if k != "reasoning-x"}, strategy="p")
    dup = {**experts, **make_experts(d, ["math-y"])}
    with pytest.raises(ConfigError, match="several experts serve label 'math'"):
        label_experts(dup, strategy="p")


def test_question_of_keeps_the_tail():
    assert question_of("abc", 10) == "abc"
    assert question_of("x" * 5 + "question?", 9) == "…question?"


def test_options_parse_types_and_refuse_unknown_keys():
    cfg = options_to_config(
        fs.FewShotConfig, "shots=3;per_matrix=true;low=0.1;shot_split=train", "cem"
    )
    assert (cfg.shots, cfg.per_matrix, cfg.low, cfg.shot_split) == (3, True, 0.1, "train")
    with pytest.raises(ConfigError, match="unknown option.*popsize"):
        options_to_config(fs.FewShotConfig, "popsize=3", "cem")
    with pytest.raises(ConfigError, match="shots='x' is not a valid int"):
        options_to_config(fs.FewShotConfig, "shots=x", "cem")
    with pytest.raises(ConfigError, match="not one of"):
        options_to_config(fs.FewShotConfig, "shot_split=dev", "cem")
    with pytest.raises(ConfigError, match="not key=value"):
        options_to_config(fs.FewShotConfig, "shots", "cem")


@pytest.mark.parametrize("spec", ["prompt", "label", "router", "cem", "classifier"])
def test_every_strategy_refuses_no_experts(spec):
    with pytest.raises(ConfigError, match="expert"):
        make_dispatcher(spec, {})


def test_classifier_needs_a_classifier_expert(setup):
    _, _, experts = setup
    with pytest.raises(ConfigError, match="exactly one classifier expert"):
        make_dispatcher("classifier", {k: v for k, v in experts.items() if k != "classifier-x"})


def test_first_pass_before_bind_is_a_clear_error(setup):
    _, _, experts = setup
    with pytest.raises(ConfigError, match="bind"):
        make_dispatcher("label", experts).choose([DispatchRequest("q")])


# --------------------------------------------------------------------------- prompt / classifier


def _canned(dispatcher, replies):
    calls = Counter()

    def fake(questions):
        calls["prompts"] += len(questions)
        return [replies[_q(q)] for q in questions]

    dispatcher._replies = fake
    return calls


def _q(prompt: str) -> str:
    for key in ("alpha", "beta", "gamma", "delta"):
        if key in prompt:
            return key
    raise AssertionError(prompt)


def test_prompt_strategy_maps_labels_memoises_and_reads_garbage_as_base(setup):
    ctx, _, experts = setup
    d = make_dispatcher("prompt", experts)
    d.bind(ctx)
    calls = _canned(
        d,
        {
            "alpha": "\\boxed{code}",
            "beta": "It is \\boxed{math}",
            "gamma": "\\boxed{other}",
            "delta": "no idea at all",
        },
    )
    reqs = [DispatchRequest(t) for t in ["alpha", "beta", "alpha", "gamma", "delta", "beta"]]
    keys = [c.key for c in d.choose(reqs)]
    assert keys == ["code-x", "math-x", "code-x", "base", "base", "math-x"]
    assert calls["prompts"] == 4  # duplicates classified once
    d.choose(reqs)
    assert calls["prompts"] == 4  # and remembered across calls
    info = d.describe()
    assert info["unreadable"] == 1 and info["labels"] == {"code": 1, "math": 1, "other": 2}


def test_prompt_strict_refuses_an_unreadable_reply(setup):
    ctx, _, experts = setup
    d = make_dispatcher("prompt:strict=true", experts)
    d.bind(ctx)
    _canned(d, {"alpha": "hmm", "beta": "", "gamma": "", "delta": ""})
    with pytest.raises(UnreadableClassification, match="cannot read a label from the reply 'hmm'"):
        d.choose([DispatchRequest("alpha")])


def test_prompt_first_pass_runs_on_base_weights_and_really_generates(setup):
    ctx, _, experts = setup
    ctx.patcher.apply(experts["math-x"])
    d = make_dispatcher("prompt:max_new_tokens=3", experts)
    d.bind(ctx)
    seen = []
    real = PromptDispatch._generate

    def spy(self, prefix, rows):
        seen.append(ctx.patcher.active)
        return real(self, prefix, rows)

    d._generate = spy.__get__(d)
    d.choose([DispatchRequest("w1 w2 ?"), DispatchRequest("w3 ?")])
    assert seen == [None] and ctx.patcher.is_base()
    assert d.describe()["forward_passes"] >= 1 and d.describe()["generated_tokens"] >= 2


def test_classifier_first_pass_runs_with_the_classifier_expert(setup):
    ctx, _, experts = setup
    d = make_dispatcher("classifier", experts)
    d.bind(ctx)
    seen = []

    def fake(questions):
        seen.append((ctx.patcher.active, questions[0]))
        return ["\\boxed{reasoning}"] * len(questions)

    d._replies = fake
    assert [c.key for c in d.choose([DispatchRequest("w1 ?")])] == ["reasoning-x"]
    active, question = seen[0]
    assert active == "classifier-x"
    assert question == "w1 ?"  # test_classify_prompt checks that the prompt text is prompt's


# --------------------------------------------------------------------------- label scoring


def test_label_scores_equal_unbatched_log_likelihoods(setup):
    """Left-padded batch scores == each prompt scored alone (positions handled)."""
    ctx, _, experts = setup
    d = LabelScoreDispatch(LabelConfig(calibrate=False, scoring="full"), experts)
    d.bind(ctx)
    questions = ["w1 w2 w3 w4 w5 w6 ?", "w7 ?"]
    batched = d._scores(questions)
    for i, q in enumerate(questions):
        alone = d._scores([q])[0]
        torch.testing.assert_close(batched[i], alone, atol=1e-4, rtol=1e-4)
    first = LabelScoreDispatch(LabelConfig(calibrate=False, scoring="first"), experts)
    first.bind(ctx)
    # every label is one token here, so first-token and full scoring agree
    torch.testing.assert_close(first._scores(questions), batched, atol=1e-4, rtol=1e-4)


def test_label_scoring_picks_the_argmax_and_calibrates(setup, monkeypatch):
    ctx, _, experts = setup
    d = LabelScoreDispatch(LabelConfig(calibrate=True), experts)
    d.bind(ctx)
    table = {
        "N/A": [0.0, 5.0, 0.0, 0.0],
        "alpha": [1.0, 5.5, 0.0, 0.0],
        "beta": [0.0, 6.0, 0.0, 2.0],
    }

    def fake(questions):
        return torch.tensor([table[q] for q in questions])

    monkeypatch.setattr(d, "_scores", fake)
    keys = [c.key for c in d.choose([DispatchRequest("alpha"), DispatchRequest("beta")])]
    # raw argmax is math for both; against the content-free prior: code (+1) and other (+2)
    assert keys == ["code-x", "base"]
    assert d.describe()["prior"]["math"] == 5.0


def test_label_strategy_through_the_real_forward(setup):
    ctx, _, experts = setup
    d = make_dispatcher("label", experts)
    d.bind(ctx)
    out = d.choose([DispatchRequest("w1 w2 ?"), DispatchRequest("w3 ?")])
    assert all(isinstance(c, Choice) for c in out)
    info = d.describe()
    # the shared head once, one batch, the prior
    assert info["classified"] == 2 and info["forward_passes"] == 3
    assert info["head_reused"] == 3 and info["encoded_tokens"] < info["prompt_tokens"]


# --------------------------------------------------------------------------- CEM


def test_cem_finds_the_optimum_of_a_smooth_fitness():
    target = np.array([0.2, 0.9, 0.5])
    res = cem(
        lambda x: (-float(((x - target) ** 2).sum()),),
        np.full(3, 1 / 3),
        CEMConfig(population=24, iterations=12, seed=1),
    )
    assert np.abs(res.best - target).max() < 0.08
    assert res.best_fitness >= res.start_fitness
    assert all(0 <= v <= 1 for v in res.best)


def test_cem_never_returns_worse_than_its_start_and_scores_duplicates_once():
    calls = Counter()

    def fit(x):
        calls[np.round(x, 6).tobytes()] += 1
        return (1.0 if np.allclose(x, 0.5) else 0.0, 0.0)

    res = cem(
        fit, np.full(2, 0.5), CEMConfig(population=4, iterations=3, init_std=5.0, low=0.0, high=1.0)
    )
    assert res.best_fitness == (1.0, 0.0) and np.allclose(res.best, 0.5)
    assert max(calls.values()) == 1  # clipped corner samples repeat; each is scored once


@pytest.mark.parametrize(
    "bad", [dict(population=1), dict(elite_ratio=0.0), dict(low=1.0, high=0.0)]
)
def test_cem_config_errors(bad):
    with pytest.raises(ConfigError):
        cem(lambda x: (0.0,), np.zeros(2), CEMConfig(**bad))


# --------------------------------------------------------------------------- few-shot dispatch


class FakeShots:
    """Shots whose 'accuracy' is high when α puts weight on the math expert."""

    @staticmethod
    def build(task_name, cfg, reserved=False):
        return fs.Shots(
            task_name=task_name,
            task=None,
            split="test-tail" if reserved else "validation",
            doc_ids=[97, 98, 99] if reserved else [3, 5, 8],
            docs=[{}, {}, {}],
            requests=[[], [], []],
            gold=[("", "")] * 3,
            reserved={97, 98, 99} if reserved else set(),
        )


@pytest.fixture
def cem_setup(setup, tmp_path, monkeypatch):
    ctx, d, experts = setup
    monkeypatch.setenv("T2BENCH_HOME", str(tmp_path / "home"))
    calls = Counter()
    sig = d.sigmas()

    def dist(z, name):
        ref = experts[name].params
        return sum(float(((z[k] - ref[k]) ** 2).mean()) for k in z)

    class Scorer:
        def __init__(self, shots, run, tokenizer):
            pass

        def __call__(self, choice):
            calls["scored"] += 1
            ctx.patcher.apply(choice.expert)  # what the real runner does
            z = choice.expert.params
            margin = min(dist(z, "code-x"), dist(z, "reasoning-x")) - dist(z, "math-x")
            return (1.0 if margin > 0.05 else 0.0, margin)

    monkeypatch.setattr(fs, "ShotScorer", Scorer)
    monkeypatch.setattr(fs, "build_shots", FakeShots.build)
    ctx.run = lambda *a: []
    return ctx, experts, calls, sig, tmp_path


def test_fewshot_searches_once_caches_and_mixes(cem_setup):
    ctx, experts, calls, sig, tmp = cem_setup
    spec = f"cem:shots=3;population=8;iterations=4;out={tmp / 'alpha'}"
    d = make_dispatcher(spec, experts)
    d.bind(ctx)
    out = d.choose(
        [DispatchRequest("q", task="toy", doc_id=0), DispatchRequest("r", task="toy", doc_id=1)]
    )
    assert out[0] is out[1] and out[0].key == "cem:toy"
    scored = calls["scored"]
    assert 1 < scored <= 1 + 8 * 4
    info = d.describe()["tasks"]["toy"]
    alpha = info["alpha"]
    assert alpha[1] > alpha[0] and alpha[1] > alpha[2]  # math (sorted: code, math, reasoning)
    assert info["from_cache"] is False and info["cost"]["candidates_scored"] == scored
    assert info["cost"]["weight_compositions"] >= scored
    files = sorted(p.suffix for p in (tmp / "alpha").iterdir())
    assert files == [".json", ".png", ".safetensors"]
    record = json.loads(next((tmp / "alpha").glob("*.json")).read_text())
    assert record["shot_doc_ids"] == [3, 5, 8] and record["history"][0]["iteration"] == 0
    expected = mix(
        [experts[k] for k in ("code-x", "math-x", "reasoning-x")], torch.tensor(alpha), sig
    )
    for k, v in expected.params.items():
        torch.testing.assert_close(out[0].expert.params[k], v)

    again = make_dispatcher(spec, experts)
    again.bind(ctx)
    again.choose([DispatchRequest("q", task="toy", doc_id=0)])
    assert calls["scored"] == scored  # loaded, not searched again
    assert again.describe()["tasks"]["toy"]["from_cache"] is True
    assert again.describe()["tasks"]["toy"]["alpha"] == alpha


def test_fewshot_per_matrix_alpha_and_corrupt_cache_is_recomputed(cem_setup):
    ctx, experts, calls, _, tmp = cem_setup
    spec = f"cem:population=4;iterations=1;per_matrix=true;out={tmp / 'a'}"
    d = make_dispatcher(spec, experts)
    d.bind(ctx)
    d.choose([DispatchRequest("q", task="toy")])
    rec = d.records["toy"]
    assert tuple(rec.alpha.shape) == (3, len(ctx.patcher.decomposition.keys))
    path = next((tmp / "a").glob("*.safetensors"))
    path.write_bytes(b"garbage")
    before = calls["scored"]
    d2 = make_dispatcher(spec, experts)
    d2.bind(ctx)
    d2.choose([DispatchRequest("q", task="toy")])
    assert calls["scored"] > before and d2.describe()["tasks"]["toy"]["from_cache"] is False


def test_fewshot_refuses_scoring_a_shot_document_and_requests_without_task(cem_setup, monkeypatch):
    ctx, experts, _, _, tmp = cem_setup
    monkeypatch.setattr(fs, "build_shots", lambda t, c: FakeShots.build(t, c, reserved=True))
    d = make_dispatcher(f"cem:population=2;iterations=1;out={tmp / 'b'}", experts)
    d.bind(ctx)
    assert d.choose([DispatchRequest("q", task="toy", doc_id=5)])[0].key == "cem:toy"
    with pytest.raises(
        ConfigError, match="document 98 of task toy is one of its CEM shots.*--limit <= 97"
    ):
        d.choose([DispatchRequest("q", task="toy", doc_id=98)])
    with pytest.raises(ConfigError, match="requests must carry their task"):
        d.choose([DispatchRequest("q")])


def test_mixture_of_mismatched_experts_is_refused(setup):
    _, d, experts = setup
    other = decompose(
        tiny_llama(seed=1, layers=2), TargetSpec("mlp"), model_id="t2", progress=False
    )
    odd = identity_expert(other, name="math-odd")
    with pytest.raises(ExpertMismatchError, match="adapt different matrices"):
        mix([experts["code-x"], odd], [0.5, 0.5])
    with pytest.raises(ExpertMismatchError):
        make_dispatcher(
            "cem",
            {"code-x": experts["code-x"], "math-odd": odd, "reasoning-x": experts["reasoning-x"]},
        )
    with pytest.raises(ConfigError, match=r"alphas must have shape \(2,\)"):
        mix([experts["code-x"], experts["math-x"]], [0.5, 0.2, 0.3])


def test_load_experts_reads_a_folder_of_training_runs(setup, tmp_path):
    _, _, experts = setup
    for name in ("code-x", "math-x"):
        save_expert(experts[name], tmp_path / "runs" / name / name)
    (tmp_path / "runs" / "code-x" / "checkpoints").mkdir()
    save_expert(experts["math-x"], tmp_path / "runs" / "code-x" / "checkpoints" / "math-x")
    assert [e.meta.name for e in load_experts(tmp_path / "runs")] == ["code-x", "math-x"]


# --------------------------------------------------------------------------- through the backend


@pytest.mark.parametrize("spec", ["label", "prompt:max_new_tokens=2"])
def test_backend_binds_first_pass_strategies_and_times_both_passes(tmp_path, monkeypatch, spec):
    pytest.importorskip("lm_eval")
    from lm_eval.api.instance import Instance

    from t2bench.backends.text import T2LM
    from t2bench.models import load_model

    monkeypatch.setenv("T2BENCH_HOME", str(tmp_path / "home"))
    folder = tmp_path / "tiny"
    tiny_llama().save_pretrained(folder)
    word_tokenizer().save_pretrained(folder)
    lm = load_model(str(folder))
    d = decompose(lm.model, TargetSpec("mlp"), model_id=lm.model_id, progress=False)
    for name, e in make_experts(d, ["code-x", "math-x", "reasoning-x"]).items():
        save_expert(e, tmp_path / "experts" / name)
    t2 = T2LM(
        pretrained=str(folder),
        device="cpu",
        batch_size=4,
        experts=str(tmp_path / "experts"),
        dispatch=spec,
    )
    reqs = [
        Instance("loglikelihood", {}, (f"w{i} w{i + 1} ?", f" w{i + 2}"), i, ("toy", i, 1))
        for i in range(6)
    ]
    out = t2.loglikelihood(reqs)
    assert len(out) == 6 and all(isinstance(ll, float) for ll, _ in out)
    summary = t2.t2_summary()
    assert summary["dispatch"]["strategy"] == spec.split(":")[0]
    assert summary["dispatch"]["classified"] == 6
    assert summary["dispatch_seconds"] > 0 and summary["second_pass_seconds"] > 0
    assert summary["first_pass_fraction"] == pytest.approx(
        summary["dispatch_seconds"] / summary["second_pass_seconds"], rel=1e-2
    )
    chosen = [r.arguments[-1]["t2_expert"] for r in reqs]
    assert sum(summary["dispatch_counts"].values()) == 6 and set(chosen) <= {
        "base",
        "code-x",
        "math-x",
        "reasoning-x",
    }
    # the answer for each request is the one its chosen weights give
    for r, (ll, _) in zip(reqs, out, strict=True):
        choice = t2.dispatcher.choose([DispatchRequest(r.args[0])])[0]
        alone = t2._run_choice(
            choice, "loglikelihood", [Instance("loglikelihood", {}, r.args[:2], 0)]
        )
        assert alone[0][0] == pytest.approx(ll, abs=1e-4)
