"""K samples per prompt with the prompt run once: the same log-probs, KL and gradients as the
joined batch, for SVF and peft policies, on tiny Llama and Gemma models."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_gemma, tiny_llama

from t2bench.generation import completion_logprobs, join_batch, logit_positions, token_kl
from t2bench.svf import TargetSpec, decompose
from t2bench.train.config import TrainConfig
from t2bench.train.policy import GroupedBatch, SVFPolicy, build_policy

PAD = 0


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("T2BENCH_HOME", str(tmp_path / "home"))


def _groups(k: int = 3) -> GroupedBatch:
    """Two prompts of different lengths, k completions each, of lengths 1 to 5."""
    g = torch.Generator().manual_seed(0)

    def ids(n: int) -> list[int]:
        return torch.randint(1, 63, (n,), generator=g).tolist()

    lengths = [1, 4, 2, 5, 3, 1][: 2 * k]
    return GroupedBatch([ids(6), ids(9)], [ids(n) for n in lengths], k, PAD)


def _logprobs(policy, g: GroupedBatch, grouped: bool, reference: bool = False):
    ids, attn, target = join_batch(g.rows(), g.completions, PAD, "cpu")
    sel = logit_positions(target)
    fn = policy.reference_logits if reference else policy
    logits = fn(ids, attn, select=sel, groups=g if grouped else None)
    return completion_logprobs(logits, ids, target, 0.8)


def _svf(make):
    model = make()
    d = decompose(model, TargetSpec("mlp"), model_id="tiny", use_cache=False, progress=False)
    return SVFPolicy(model, d, init_noise=0.05, seed=1)


@pytest.mark.parametrize("make", [tiny_llama, tiny_gemma], ids=["llama", "gemma"])
def test_grouped_svf_logprobs_kl_and_gradients_equal_the_joined_batch(make):
    policy = _svf(make)
    g = _groups()
    joined = _logprobs(policy, g, grouped=False)
    shared = _logprobs(policy, g, grouped=True)
    assert torch.equal(joined[2], shared[2])  # the same completion tokens, in the same order
    assert shared[0].numel() == sum(len(c) for c in g.completions)
    torch.testing.assert_close(shared[0], joined[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(shared[1], joined[1], atol=1e-4, rtol=1e-4)
    ref_joined = _logprobs(policy, g, grouped=False, reference=True)[1]
    ref_shared = _logprobs(policy, g, grouped=True, reference=True)[1]
    torch.testing.assert_close(ref_shared, ref_joined, atol=1e-4, rtol=1e-4)

    def grads(grouped: bool) -> list[torch.Tensor]:
        policy.zero_grad()
        tok, logp, _ = _logprobs(policy, g, grouped)
        ref = _logprobs(policy, g, grouped, reference=True)[1]
        (tok.sum() + token_kl(logp, ref, "policy_ref").sum()).backward()
        return [v.grad.clone() for v in policy.vectors.values()]

    for a, b in zip(grads(False), grads(True), strict=True):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-3)
    assert any(bool(a.abs().max() > 0) for a in grads(True))  # the grouped path has gradients


@pytest.mark.parametrize("method", ["lora", "ia3", "tinylora"])
def test_grouped_peft_logprobs_and_gradients_equal_the_joined_batch(method):
    policy = build_policy(TrainConfig(method=method, progress=False), tiny_llama(), "tiny", "cpu")
    policy.eval()  # no dropout: both paths compute the same function
    g = _groups(k=2)
    torch.testing.assert_close(
        _logprobs(policy, g, True)[0], _logprobs(policy, g, False)[0], atol=1e-4, rtol=1e-4
    )
    torch.testing.assert_close(
        _logprobs(policy, g, True, reference=True)[1],
        _logprobs(policy, g, False, reference=True)[1],
        atol=1e-4,
        rtol=1e-4,
    )

    def grads(grouped: bool) -> list[torch.Tensor]:
        policy.zero_grad()
        _logprobs(policy, g, grouped)[0].sum().backward()
        return [p.grad.clone() for p in policy.parameters() if p.requires_grad]

    for a, b in zip(grads(False), grads(True), strict=True):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-3)


def test_grouped_batch_checks_its_shape():
    with pytest.raises(ValueError, match="3 completions for 2 prompts × k=2"):
        GroupedBatch([[1], [2]], [[1], [2], [3]], 2, PAD)
    with pytest.raises(ValueError, match="at least one token"):
        GroupedBatch([[1]], [[1], []], 2, PAD)
    assert GroupedBatch([[1], [2, 3]], [[4], [5], [6], [7]], 2, PAD).rows() == [
        [1],
        [1],
        [2, 3],
        [2, 3],
    ]


@pytest.mark.parametrize("seeded", [False, True], ids=["greedy", "sampled"])
def test_generation_with_shared_prompts_gives_the_same_completions(seeded):
    from conftest import tiny_tokenizer

    from t2bench.generation import generate

    model, tok = tiny_llama().eval(), tiny_tokenizer()
    prompts = [[5, 6, 7, 8], [9, 10, 11, 12, 13, 14, 15]]
    rows = [p for p in prompts for _ in range(3)]
    seeds = list(range(100, 106)) if seeded else None
    kw = dict(max_new_tokens=5, seeds=seeds, temperature=0.9)
    alone = generate(model, tok, rows, **kw)
    shared = generate(model, tok, rows, group_size=3, **kw)
    assert shared.completion_ids == alone.completion_ids
    assert all(shared.completion_ids)
    with pytest.raises(ValueError, match="runs of 2 identical prompts"):
        generate(model, tok, rows, group_size=2, **kw)


def test_sampling_and_the_next_forward_share_one_composition(monkeypatch):
    policy = _svf(tiny_llama)
    g = _groups()
    fresh = _logprobs(policy, g, grouped=True)[0].sum()
    fresh.backward()
    want = [v.grad.clone() for v in policy.vectors.values()]
    policy.zero_grad()
    calls = []
    real = SVFPolicy._compose_all
    monkeypatch.setattr(SVFPolicy, "_compose_all", lambda self: calls.append(1) or real(self))
    with policy.generating() as model:
        patched = {k: w.detach().clone() for k, w in policy.patcher._weights.items()}
        assert model is policy.model
    _logprobs(policy, g, grouped=True)[0].sum().backward()
    assert len(calls) == 1  # composed for sampling, reused by the forward
    for a, b in zip(want, [v.grad for v in policy.vectors.values()], strict=True):
        torch.testing.assert_close(b, a)
    # the sampled weights are the forward's, and the model is restored afterwards
    composed = real(policy)
    assert all(torch.equal(patched[k], composed[k]) for k in patched) and policy.patcher.is_base()
    _logprobs(policy, g, grouped=True)  # nothing cached any more: composes anew
    assert len(calls) == 2
    with policy.generating():
        pass
    with torch.no_grad():
        policy.vectors[next(iter(policy.vectors))].add_(0.1)  # z moved: the cache is stale
    _logprobs(policy, g, grouped=True)
    assert len(calls) == 4
