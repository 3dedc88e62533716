"""The first pass's reuse of the prompt head (``reuse=true``): same scores and replies as
re-reading every prompt whole, fewer tokens run through the model, a clean fallback for a row
that does not start with the head, and replies that stop at their first boxed label."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from test_dispatch import setup, word_tokenizer  # noqa: F401  (setup is a fixture)

from t2bench.classify_prompt import LAYOUTS
from t2bench.dispatch import DispatchRequest, make_dispatcher
from t2bench.dispatch.prompt_strategy import BoxClosed
from t2bench.errors import ConfigError
from t2bench.generation import PrefixCache, generate, last_logits

QUESTIONS = ["w1 w2 w3 w4 w5 w6 ?", "w7 ?", "w8 : w9 w10 ?", "w11 w12 ?", "w13 ?"]


def _bound(ctx, spec, experts):
    d = make_dispatcher(spec, experts)
    d.bind(ctx)
    return d


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("scoring", ["first", "full"])
def test_label_scores_are_those_of_the_whole_prompt(setup, layout, scoring):  # noqa: F811
    ctx, _, experts = setup
    opts = f"calibrate=false;scoring={scoring};layout={layout}"
    whole = _bound(ctx, f"label:{opts};reuse=false", experts)
    reused = _bound(ctx, f"label:{opts};reuse=true", experts)
    torch.testing.assert_close(
        reused._scores(QUESTIONS), whole._scores(QUESTIONS), atol=1e-4, rtol=1e-4
    )
    a, b = whole.describe(), reused.describe()
    assert a["encoded_tokens"] == a["prompt_tokens"] and "head_reused" not in a
    assert b["head_reused"] == a["scored_rows"] and b["prompt_tokens"] == a["prompt_tokens"]
    head = next(iter(b["head_tokens"].values()))
    assert b["encoded_tokens"] == b["prompt_tokens"] - head * b["head_reused"]


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_prompt_replies_are_those_of_the_whole_prompt(setup, layout):  # noqa: F811
    ctx, _, experts = setup
    whole = _bound(ctx, f"prompt:max_new_tokens=4;layout={layout};reuse=false", experts)
    reused = _bound(ctx, f"prompt:max_new_tokens=4;layout={layout}", experts)
    assert reused._replies(QUESTIONS) == whole._replies(QUESTIONS)
    assert reused.describe()["encoded_tokens"] < whole.describe()["encoded_tokens"]


def test_classifier_encodes_its_head_under_the_classifier_weights(setup):  # noqa: F811
    ctx, _, experts = setup
    d = _bound(ctx, "classifier:max_new_tokens=2", experts)
    base = _bound(ctx, "prompt:max_new_tokens=2", experts)
    d.choose([DispatchRequest(q) for q in QUESTIONS])
    base.choose([DispatchRequest(q) for q in QUESTIONS])
    assert list(d._heads) == ["classifier-x"] and list(base._heads) == [None]
    # the expert rescales the MLPs, so every layer after the first reads other inputs
    k_cls = d._heads["classifier-x"].cache.layers[-1].keys
    k_base = base._heads[None].cache.layers[-1].keys
    assert not torch.allclose(k_cls, k_base)


def test_a_row_that_does_not_start_with_the_head_is_read_whole(setup, monkeypatch):  # noqa: F811
    ctx, _, experts = setup
    whole = _bound(ctx, "label:calibrate=false;reuse=false", experts)
    d = _bound(ctx, "label:calibrate=false", experts)
    wrong = PrefixCache.encode(ctx.model, [5, 6, 7])  # no prompt starts with these ids
    monkeypatch.setattr(d, "_head", lambda: wrong)
    torch.testing.assert_close(d._scores(QUESTIONS), whole._scores(QUESTIONS), atol=1e-4, rtol=1e-4)
    info = d.describe()
    assert "head_reused" not in info and info["encoded_tokens"] == info["prompt_tokens"]


def test_last_logits_with_a_prefix_equal_the_full_forward(setup):  # noqa: F811
    ctx, _, _ = setup
    model = ctx.model
    head, rows = [3, 9, 10, 4], [[11, 12, 13], [14, 20], [15, 16]]
    prefix = PrefixCache.encode(model, head)
    got = last_logits(model, rows, 63, keep=2, prefix=prefix)
    for i, r in enumerate(rows):
        full = model(input_ids=torch.tensor([head + r])).logits[0, -2:]
        torch.testing.assert_close(got[i], full, atol=1e-4, rtol=1e-4)
    # the prefix's cache is not consumed by a batch
    assert prefix.cache.get_seq_length() == len(head)
    with pytest.raises(ValueError, match="keep=3 exceeds the shortest row"):
        last_logits(model, [[14], [15, 16, 17]], 63, keep=3, prefix=prefix)


def test_generate_with_a_prefix_equals_generate_on_the_whole_prompt(setup):  # noqa: F811
    ctx, _, _ = setup
    head, rows = [3, 9, 10, 4], [[11, 12, 13], [14], [15, 16]]
    a = generate(ctx.model, ctx.tokenizer, [head + r for r in rows], max_new_tokens=5)
    b = generate(
        ctx.model,
        ctx.tokenizer,
        rows,
        max_new_tokens=5,
        prefix=PrefixCache.encode(ctx.model, head),
    )
    assert b.completion_ids == a.completion_ids and b.prompt_ids == a.prompt_ids


class _Replies:
    """A tokenizer stand-in whose rows decode to fixed texts."""

    def __init__(self, texts):
        self.texts = texts

    def batch_decode(self, ids, skip_special_tokens=True):
        return self.texts[: len(ids)]


def test_a_reply_stops_at_its_first_box_that_names_a_label():
    stop = BoxClosed(
        _Replies(["It is \\boxed{math}", "\\boxed{", "\\boxed{banana}", "\\boxed{\\text{code}}"]),
        ("code", "math", "reasoning", "other"),
    )
    done = stop(torch.zeros(4, 7, dtype=torch.long), None)
    assert done.tolist() == [True, False, False, True]
    assert stop.start == 6  # the replies begin where the first call found one new token


def test_an_unknown_layout_is_refused_with_the_choices():
    with pytest.raises(ConfigError, match="unknown layout 'sideways'.*question-first"):
        make_dispatcher("label:layout=sideways", {"code-x": None})


def test_firstpass_bench_times_each_spec_against_the_base_second_pass(setup, monkeypatch):  # noqa: F811
    """bench.dispatch firstpass: one base lm-eval run per task, then each spec's choose on the
    same documents; ratio, tokens and routing accuracy per spec."""
    import t2bench.dispatch.routing_items as items_mod
    import t2bench.dispatch.standalone as standalone
    import t2bench.models as models
    from t2bench.bench import dispatch as bench

    ctx, _, experts = setup
    docs = [
        items_mod.PromptItem("arc_challenge", i, f"w{i + 1} w{i + 2} ?", "reasoning")
        for i in range(3)
    ]
    calls = []

    def fake_lm_eval(model_args, task, n, cap, batch_size, **kw):
        calls.append(model_args)
        return {
            "per_doc": {d.doc_id: 1.0 for d in docs},
            "score": 1.0,
            "metric": "acc",
            "t2": {"second_pass_seconds": 2.0, "model_id": "tiny"},
        }

    monkeypatch.setattr(bench, "run_lm_eval", fake_lm_eval)
    monkeypatch.setattr(items_mod, "first_docs", lambda task, n: docs)
    monkeypatch.setattr(models, "load_model", lambda name: None)
    monkeypatch.setattr(
        standalone,
        "load_bound",
        lambda spec, **kw: standalone.Bound(_bound(ctx, spec, experts), None, None),
    )
    args = SimpleNamespace(
        tasks="arc_challenge:3",
        strategies="label:reuse=false,label",
        experts="experts",
        max_gen_toks=8,
        batch_size=2,
    )
    rows = bench.firstpass(args)["rows"]
    assert calls == ["dispatch=none"]  # the base run loads no experts: lm-eval reads none as None
    assert [r["strategy"] for r in rows] == ["label:reuse=false", "label"]
    for r in rows:
        assert r["n"] == 3 and r["second_pass_s"] == 2.0
        assert r["fraction"] == pytest.approx(r["first_pass_s"] / 2.0, rel=1e-3, abs=1e-3)
        assert r["routing"]["n"] == 3 and r["routing"]["true_label"] == "reasoning"
        assert r["routing"]["score"] == sum(lab == "reasoning" for lab in r["labels"]) / 3
    whole, reused = (r["tokens"] for r in rows)
    assert whole["encoded_tokens"] == whole["prompt_tokens"]
    assert reused["encoded_tokens"] < reused["prompt_tokens"]
    md = bench.firstpass_markdown({"rows": rows})
    assert "| `label` |" in md
    # routing rates are compared between specs, so the table states n and its MDD per task
    assert (
        "**Power.**" in md and "arc_challenge routing (reference `label:reuse=false`): n = 3" in md
    )
