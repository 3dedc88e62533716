"""bf16 compute with fp32 adapters, and logits at the completion positions only (tiny models).

Under ``compute_dtype=bfloat16`` the frozen model runs in bf16 while SVF's vectors, their AdamW
state and the SVD factors stay fp32, and W' is composed in fp32 and cast once; peft adapters
stay fp32 on a bf16 base. ``select`` runs the LM head on the needed rows only.
"""

from __future__ import annotations

import json

import pytest
import torch
from conftest import tiny_gemma, tiny_llama, tiny_train_config
from safetensors.torch import load_file

from t2bench.errors import ConfigError
from t2bench.generation import completion_logprobs, logit_positions
from t2bench.svf import TargetSpec, decompose
from t2bench.train.config import TrainConfig
from t2bench.train.policy import SVFPolicy, build_policy

BF16 = torch.bfloat16


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("T2BENCH_HOME", str(tmp_path / "home"))  # SVD cache stays in tmp


def _batch(seed: int = 0):
    """Two right-padded rows: different prompt and completion lengths, like join_batch's."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 63, (2, 12), generator=g)
    attn = torch.ones_like(ids)
    attn[1, 10:] = 0
    target = torch.zeros_like(ids)
    target[0, 5:] = 1  # prompt of 5, completion of 7
    target[1, 8:10] = 1  # prompt of 8, completion of 2, then padding
    return ids, attn, target


def _svf(model, dtype=None, noise=0.0):
    d = decompose(model, TargetSpec("mlp"), model_id="tiny", use_cache=False, progress=False)
    return SVFPolicy(model, d, init_noise=noise, seed=1, compute_dtype=dtype)


# --------------------------------------------------------------------------- selected positions


def test_logit_positions_are_the_target_mask_shifted_left():
    _, _, target = _batch()
    sel = logit_positions(target)
    assert sel.dtype == torch.bool and sel.shape == target.shape
    assert torch.equal(sel[:, :-1], target[:, 1:].bool()) and not sel[:, -1].any()


@pytest.mark.parametrize("make", [tiny_llama, tiny_gemma], ids=["llama", "gemma"])
def test_selected_logprobs_equal_full_logits_ones(make):
    policy = _svf(make(), noise=0.05)  # an adapter that is not the identity
    ids, attn, target = _batch()
    sel = logit_positions(target)
    full = policy(ids, attn)
    part = policy(ids, attn, select=sel)
    assert full.dim() == 3 and part.shape == (int(sel.sum()), full.shape[-1])
    a_tok, a_lp, a_rows = completion_logprobs(full, ids, target, 0.7)
    b_tok, b_lp, b_rows = completion_logprobs(part, ids, target, 0.7)
    assert torch.equal(a_rows, b_rows)
    torch.testing.assert_close(b_tok, a_tok, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(b_lp, a_lp, atol=1e-4, rtol=1e-4)
    ref_full = policy.reference_logits(ids, attn)
    ref_part = policy.reference_logits(ids, attn, select=sel)
    torch.testing.assert_close(ref_part, ref_full[sel], atol=1e-4, rtol=1e-4)
    # gradients through the selected rows are those of the full path
    a_tok.sum().backward()
    full_grads = [v.grad.clone() for v in policy.vectors.values()]
    policy.zero_grad()
    completion_logprobs(policy(ids, attn, select=sel), ids, target, 0.7)[0].sum().backward()
    for g, v in zip(full_grads, policy.vectors.values(), strict=True):
        torch.testing.assert_close(v.grad, g, atol=1e-5, rtol=1e-3)


@pytest.mark.parametrize("method", ["lora", "ia3"])
def test_selected_logits_for_peft_policies(method):
    cfg = TrainConfig(method=method, progress=False)
    policy = build_policy(cfg, tiny_llama(), "tiny", torch.device("cpu"))
    policy.eval()  # no adapter dropout: both calls must see the same function
    ids, attn, target = _batch()
    sel = logit_positions(target)
    torch.testing.assert_close(policy(ids, attn, select=sel), policy(ids, attn)[sel])
    torch.testing.assert_close(
        policy.reference_logits(ids, attn, select=sel), policy.reference_logits(ids, attn)[sel]
    )


def test_selected_logits_on_an_image_text_model(tiny_vlm_dir):
    """LLaVA applies its head to the language model's hidden states, image tokens included."""
    from PIL import Image
    from transformers import AutoProcessor

    from t2bench.vlm.models import load_vlm

    model, processor, model_id = load_vlm(tiny_vlm_dir, device="cpu")
    proc = AutoProcessor.from_pretrained(tiny_vlm_dir)
    enc = proc(
        text="<image>\nWhat colour?", images=Image.new("RGB", (48, 48), "red"), return_tensors="pt"
    )
    ids = enc["input_ids"]
    target = torch.zeros_like(ids)
    target[:, -4:] = 1
    cfg = TrainConfig(task="vqa", model=tiny_vlm_dir, progress=False)
    policy = build_policy(cfg, model, model_id, torch.device("cpu"))
    sel = logit_positions(target)
    kw = {"pixel_values": enc["pixel_values"]}
    full = policy(ids, torch.ones_like(ids), **kw)
    part = policy(ids, torch.ones_like(ids), select=sel, **kw)
    torch.testing.assert_close(part, full[sel], atol=1e-4, rtol=1e-4)


def test_completion_logprobs_refuses_rows_that_do_not_match():
    ids, _, target = _batch()
    with pytest.raises(ValueError, match="logit rows"):
        completion_logprobs(torch.zeros(3, 64), ids, target)


# --------------------------------------------------------------------------- bf16 compute


def test_bf16_svf_keeps_vectors_factors_and_optimizer_state_fp32():
    cfg = TrainConfig(compute_dtype="bfloat16", progress=False)
    model = tiny_llama()
    policy = build_policy(cfg, model, "tiny", torch.device("cpu"))
    assert all(p.dtype == BF16 for p in model.parameters())  # the frozen model computes in bf16
    assert all(v.dtype == torch.float32 for v in policy.vectors.values())
    for svd in policy.decomposition.svd.values():
        assert svd.U.dtype == svd.S.dtype == svd.Vh.dtype == torch.float32
    # the SVD is that of the loaded fp32 weights (same cache entries, experts portable)
    fp32 = decompose(tiny_llama(), TargetSpec("mlp"), model_id="tiny", progress=False)
    assert policy.decomposition.fingerprint == fp32.fingerprint

    ids, attn, target = _batch()
    sel = logit_positions(target)
    logits = policy(ids, attn, select=sel)
    assert logits.dtype == BF16
    tok, logp, _ = completion_logprobs(logits, ids, target)
    assert tok.dtype == logp.dtype == torch.float32  # log-softmax in fp32
    opt = torch.optim.AdamW(list(policy.vectors.parameters()), lr=1e-2)
    (-tok.mean()).backward()
    grads = [v.grad for v in policy.vectors.values()]
    assert all(g is not None and g.dtype == torch.float32 for g in grads)
    assert all(bool(g.abs().sum() > 0) for g in grads)  # every matrix's z gets a gradient
    opt.step()
    states = [t for s in opt.state.values() for t in s.values() if t.dim() > 0]
    assert states and all(t.dtype == torch.float32 for t in states)
    assert any(bool((v - 1).abs().max() > 0) for v in policy.vectors.values())


@pytest.mark.parametrize("method", ["lora", "ia3"])
def test_bf16_peft_adapters_stay_fp32_on_a_bf16_base(method):
    cfg = TrainConfig(method=method, compute_dtype="bfloat16", progress=False)
    policy = build_policy(cfg, tiny_llama(), "tiny", torch.device("cpu"))
    trainable = [p for p in policy.parameters() if p.requires_grad]
    frozen = [p for p in policy.parameters() if not p.requires_grad]
    assert trainable and all(p.dtype == torch.float32 for p in trainable)
    assert all(p.dtype == BF16 for p in frozen)
    ids, attn, target = _batch()
    tok, _, _ = completion_logprobs(policy(ids, attn, select=logit_positions(target)), ids, target)
    (-tok.mean()).backward()
    grads = [p.grad for p in trainable]
    assert all(g is not None and g.dtype == torch.float32 for g in grads)
    assert any(bool(g.abs().sum() > 0) for g in grads)


def test_bf16_generation_weights_are_the_forwards_and_restore_bit_exactly():
    policy = _svf(tiny_llama(), BF16, noise=0.05)
    before = {k: w.detach().clone() for k, w in policy._base.items()}
    svd = policy.decomposition.svd
    from t2bench.svf import compose

    with torch.no_grad(), policy.generating():
        for k, z in policy.z().items():
            # the patched bf16 weight is exactly the fp32 composition cast once, as in forward
            assert torch.equal(policy._base[k], compose(policy._source[k], svd[k], z).to(BF16))
    assert all(torch.equal(w, before[k]) for k, w in policy._base.items())


def test_identity_expert_is_the_base_model_bit_for_bit_in_bf16():
    """z ≡ 1 composes W exactly (δ = 0), so the policy equals the reference: KL starts at 0."""
    policy = _svf(tiny_gemma(), BF16)
    ids, attn, target = _batch()
    sel = logit_positions(target)
    with torch.no_grad():
        assert torch.equal(policy(ids, attn, select=sel), policy.reference_logits(ids, attn, sel))


@pytest.mark.parametrize("make", [tiny_llama, tiny_gemma], ids=["llama", "gemma"])
def test_a_one_percent_expert_changes_every_bf16_weight_and_the_logits(make):
    """|z − 1| = 0.01 survives bf16 by construction, not by luck.

    With z ≡ 1.01, δ = 0.01·UΣVᵀ = 0.01·W (up to the fp32 SVD residual), and W' = W + δ is
    formed in fp32 and rounded once. bf16 keeps 8 significant bits, so two values that round
    to the same bf16 number differ by less than one step, 2⁻⁷·|w| ≈ 0.0078·|w| at most; they
    differ by 0.01·|w|, hence every nonzero weight's bf16 value changes. The bf16 logits then
    cannot all stay equal.
    """
    policy = _svf(make(), BF16)
    ids, attn, _ = _batch()
    base_w = {k: w.detach().clone() for k, w in policy._base.items()}
    with torch.no_grad():
        base = policy(ids, attn)
        for v in policy.vectors.values():
            v.fill_(1.01)
        adapted = policy(ids, attn)
        with policy.generating():
            for k, w in policy._base.items():
                nonzero = policy._source[k] != 0
                assert bool((w != base_w[k])[nonzero].all()), k
    assert adapted.dtype == BF16
    assert not torch.equal(adapted, base)
    # every sequence's logits move, not a stray entry
    assert all(bool((adapted[i] != base[i]).any()) for i in range(adapted.shape[0]))


def test_svf_delta_in_the_compute_dtype_matches_the_fp32_delta_and_trains_z():
    """svf_delta_dtype="compute": U and Vᵀ copied to bf16 once; the change U diag(σ(z−1)) Vᵀ
    formed from them stays within bf16's relative error of the fp32 one, the identity is
    still W exactly, and z gets the gradient the fp32-delta policy gives it."""
    ids, attn, target = _batch()
    sel = logit_positions(target)
    made = {}
    for delta in ("float32", "compute"):
        cfg = TrainConfig(compute_dtype="bfloat16", svf_delta_dtype=delta, progress=False)
        made[delta] = build_policy(cfg, tiny_llama(), "tiny", torch.device("cpu"))
    ref, lp = made["float32"], made["compute"]
    assert ref._factors == {} and lp._factors.keys() == lp._base.keys()
    assert all(u.dtype == vh.dtype == BF16 for u, vh in lp._factors.values())
    with torch.no_grad():  # z ≡ 1: δ is exactly 0, so W' is W and the policy the reference
        assert torch.equal(lp(ids, attn, select=sel), lp.reference_logits(ids, attn, sel))
        for p in (ref, lp):
            g = torch.Generator().manual_seed(3)
            for v in p.vectors.values():
                v.copy_(1 + 0.2 * torch.randn(v.shape, generator=g))
    svd = lp.decomposition.svd
    from t2bench.svf import compose

    for k, z in lp.z().items():
        exact = compose(lp._source[k], svd[k], z.detach()) - lp._source[k]
        low = compose(lp._source[k], svd[k], z.detach(), lp._factors[k]) - lp._source[k]
        assert float((low - exact).norm() / exact.norm()) < 0.05, k  # bf16: ~0.4%
    grads = {}
    for name, p in made.items():
        tok, _, _ = completion_logprobs(p(ids, attn, select=sel), ids, target)
        (-tok.mean()).backward()
        grads[name] = torch.cat([v.grad.flatten() for v in p.vectors.values()])
        assert grads[name].dtype == torch.float32
    cos = torch.nn.functional.cosine_similarity(grads["float32"], grads["compute"], dim=0)
    assert float(cos) > 0.9
    with pytest.raises(ConfigError, match="svf_delta_dtype"):
        TrainConfig(svf_delta_dtype="bfloat16")
    # left at its default the field is not part of the fingerprint (committed runs keep theirs)
    assert TrainConfig(svf_delta_dtype="compute").fingerprint() != TrainConfig().fingerprint()


# --------------------------------------------------------------------------- config and trainer


def test_compute_dtype_config():
    assert TrainConfig().compute_dtype == "float32"
    with pytest.raises(ConfigError, match="compute_dtype"):
        TrainConfig(compute_dtype="float16")
    with pytest.raises(ConfigError, match="Leave dtype at float32"):
        TrainConfig(compute_dtype="bfloat16", dtype="bfloat16")
    # left at its default the field is not part of the fingerprint (committed runs keep theirs)

    class Older(TrainConfig):
        """The same config as code without compute_dtype saw it."""

        def to_dict(self) -> dict:
            d = super().to_dict()
            d.pop("compute_dtype")
            return d

    assert TrainConfig().fingerprint() == Older().fingerprint()
    assert TrainConfig(lr=1e-3).fingerprint() == Older(lr=1e-3).fingerprint()
    assert TrainConfig(compute_dtype="bfloat16").fingerprint() != Older().fingerprint()


def test_bf16_pg_run_completes_and_exports_an_fp32_expert(llama_dir, tmp_path, monkeypatch):
    from t2bench.svf import load_expert
    from t2bench.train.trainer import train

    monkeypatch.setattr("t2bench.core.provenance.git_commit", lambda repo=None: "test")
    data = tmp_path / "data.jsonl"
    with open(data, "w") as fh:
        for i in range(8):
            item = {"prompt": f"w{i} w{i + 1} w{i + 2}\nA. w1\nB. w2", "target": "AB"[i % 2]}
            fh.write(json.dumps(item) + "\n")
    out = tmp_path / "run"
    cfg = tiny_train_config(
        llama_dir, data, out, steps=2, kl_coef=0.1, lr=1e-2, seed=0, compute_dtype="bfloat16"
    )
    result = train(cfg)
    stored = load_file(str(result.artifact))
    assert stored and all(v.dtype == torch.float32 for v in stored.values())
    expert = load_expert(result.artifact)
    assert any(bool((v - 1).abs().max() > 0) for v in expert.params.values())  # it trained
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2]
    assert log[0]["kl"] == 0.0  # the identity start equals the bf16 reference exactly
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in log)
    assert result.summary["config"]["compute_dtype"] == "bfloat16"
    assert result.summary["computed_in"] == "bfloat16" and log[0]["computed_in"] == "bfloat16"
    assert expert.meta.provenance["computed_in"] == "bfloat16"


def test_auto_compute_dtype_is_bf16_only_where_the_device_has_it(tmp_path, monkeypatch):
    from t2bench.train import policy

    avx2 = tmp_path / "avx2"
    avx2.write_text("processor\t: 0\nflags\t\t: fpu sse avx avx2 fma\n")
    sapphire = tmp_path / "spr"
    sapphire.write_text("flags\t\t: avx2 avx512f avx512_bf16 amx_tile amx_bf16\n")
    assert policy.cpu_bf16_flags(str(avx2)) == []
    assert policy.cpu_bf16_flags(str(sapphire)) == ["avx512_bf16", "amx_bf16"]
    assert policy.cpu_bf16_flags(str(tmp_path / "absent")) == []
    cfg = TrainConfig(compute_dtype="auto")
    monkeypatch.setattr(policy, "cpu_bf16_flags", lambda: [])
    assert policy.compute_dtype(cfg, "cpu") is None  # fp32: nothing is cast
    monkeypatch.setattr(policy, "cpu_bf16_flags", lambda: ["avx512_bf16"])
    assert policy.compute_dtype(cfg, "cpu") == torch.bfloat16
    assert policy.compute_dtype(TrainConfig(), "cpu") is None  # float32 stays float32
    assert policy.compute_dtype(TrainConfig(compute_dtype="bfloat16"), "cpu") == torch.bfloat16
