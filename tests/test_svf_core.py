"""SVF math on tiny seeded models: targets, SVD cache, experts, patching and restore."""

from __future__ import annotations

import pytest
import torch

from t2bench.errors import ConfigError, ExpertMismatchError
from t2bench.svf import (
    SVFPatcher,
    TargetSpec,
    check_fits,
    decompose,
    effective_z,
    find_targets,
    identity_expert,
    mix,
    parse_layers,
    parse_module_set,
    permute,
)
from t2bench.svf.expert import Expert


def _decomp(model, tmp_path, modules="mlp", layers="all", **kw):
    return decompose(model, TargetSpec(modules, layers), cache_dir=tmp_path, progress=False, **kw)


def _random_expert(d, seed=0, spread=0.5, name="rand"):
    e = identity_expert(d, name=name)
    g = torch.Generator().manual_seed(seed)
    e.params = {
        k: 1 + spread * (torch.rand(v.shape, generator=g) - 0.5) for k, v in e.params.items()
    }
    return e


def _weights(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


# --- targets ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "modules,roles",
    [
        ("mlp", ("gate", "up", "down")),
        ("attn", ("q", "v")),
        ("attn-all", ("q", "k", "v", "o")),
        ("all", ("q", "k", "v", "o", "gate", "up", "down")),
        ("down,q", ("q", "down")),
    ],
)
def test_module_sets(modules, roles):
    assert parse_module_set(modules) == roles


def test_unknown_module_set_lists_valid_ones():
    with pytest.raises(ConfigError, match=r"unknown module set 'ffn'.*mlp.*attn-all"):
        parse_module_set("ffn")


@pytest.mark.parametrize(
    "spec,expected",
    [
        ("all", [0, 1, 2, 3, 4, 5]),
        ("even", [0, 2, 4]),
        ("odd", [1, 3, 5]),
        ("first-half", [0, 1, 2]),
        ("last-half", [3, 4, 5]),
        ("0,5", [0, 5]),
        ("1-4", [1, 2, 3, 4]),
        ("0-5:2", [0, 2, 4]),
        ([3, 1], [1, 3]),
    ],
)
def test_layer_specs(spec, expected):
    assert parse_layers(spec, 6) == expected


@pytest.mark.parametrize("spec", ["7", "every", "1-x", ""])
def test_bad_layer_specs(spec):
    with pytest.raises(ConfigError, match="layer"):
        parse_layers(spec, 6)


def test_find_targets_counts_and_shapes(llama):
    ts = find_targets(llama, TargetSpec("all", "even"))
    assert [t.key for t in ts[:7]] == [
        f"layers.0.{r}" for r in ("q", "k", "v", "o", "gate", "up", "down")
    ]
    assert {t.layer for t in ts} == {0, 2}
    shapes = {t.role: t.shape for t in ts}
    assert shapes == {
        "q": (32, 32),
        "k": (16, 32),
        "v": (16, 32),
        "o": (32, 32),
        "gate": (48, 32),
        "up": (48, 32),
        "down": (32, 48),
    }


def test_find_targets_on_non_llama_names_is_a_clear_error():
    model = torch.nn.Sequential()
    model.add_module("layers", torch.nn.ModuleList([torch.nn.Linear(4, 4)]))
    with pytest.raises(ConfigError, match="matched no Linear layer"):
        find_targets(model, TargetSpec("mlp"))


# --- decomposition and its cache ---------------------------------------------------------------


def test_svd_reconstructs_and_counts(tiny_model, tmp_path):
    d = _decomp(tiny_model, tmp_path, "all")
    modules = dict(tiny_model.named_modules())
    for t in d.targets:
        w = modules[t.module_name].weight
        s = d.svd[t.key]
        assert s.U.shape == (t.shape[0], t.rank) and s.Vh.shape == (t.rank, t.shape[1])
        torch.testing.assert_close(s.U @ torch.diag(s.S) @ s.Vh, w, atol=1e-5, rtol=1e-5)
    assert d.num_parameters() == sum(min(t.shape) for t in d.targets)


def test_svd_cache_is_used_and_keyed_by_content(llama, tmp_path):
    cold = _decomp(llama, tmp_path)
    assert cold.stats["cache_hits"] == 0
    warm = _decomp(llama, tmp_path)
    assert warm.stats["cache_hits"] == warm.stats["matrices"] == 12
    assert warm.fingerprint == cold.fingerprint
    for k in cold.keys:
        assert torch.equal(cold.svd[k].S, warm.svd[k].S)
        assert torch.equal(cold.svd[k].U, warm.svd[k].U)
    # other weights -> other fingerprint, no stale hits
    with torch.no_grad():
        llama.model.layers[0].mlp.up_proj.weight.mul_(2)
    changed = _decomp(llama, tmp_path)
    assert changed.fingerprint != cold.fingerprint
    assert changed.stats["cache_hits"] == 11
    torch.testing.assert_close(changed.svd["layers.0.up"].S, 2 * cold.svd["layers.0.up"].S)


def test_mlp_and_all_share_cache_entries(llama, tmp_path):
    _decomp(llama, tmp_path, "mlp")
    d = _decomp(llama, tmp_path, "all")
    assert d.stats["cache_hits"] == 12  # the 12 MLP matrices; the 16 attention ones are new


def test_corrupt_cache_entry_is_recomputed(llama, tmp_path, capsys):
    cold = _decomp(llama, tmp_path)
    entries = sorted(tmp_path.rglob("*.safetensors"))
    entries[0].write_bytes(b"garbage")
    warm = _decomp(llama, tmp_path)
    assert warm.stats["cache_hits"] == 11
    assert "ignoring unreadable SVD cache entry" in capsys.readouterr().err
    for k in cold.keys:
        assert torch.equal(cold.svd[k].S, warm.svd[k].S)


# --- identity, apply and restore ----------------------------------------------------------------


@pytest.mark.parametrize("parameterisation", ["z", "sigmoid"])
def test_identity_expert_is_exactly_the_base_model(tiny_model, tokens, tmp_path, parameterisation):
    d = _decomp(tiny_model, tmp_path, "all")
    before = tiny_model(tokens).logits
    patcher = SVFPatcher(tiny_model, d)
    patcher.apply(identity_expert(d, parameterisation=parameterisation, init_logit=0.37))
    assert torch.equal(tiny_model(tokens).logits, before)
    for z in effective_z(
        identity_expert(d, parameterisation=parameterisation), d.sigmas()
    ).values():
        assert torch.equal(z, torch.ones_like(z))


def test_apply_matches_the_svf_formula_and_restore_is_bit_exact(tiny_model, tokens, tmp_path):
    d = _decomp(tiny_model, tmp_path, "all", layers="odd")
    base_weights = _weights(tiny_model)
    base_logits = tiny_model(tokens).logits
    expert = _random_expert(d)
    patcher = SVFPatcher(tiny_model, d)
    patcher.apply(expert)
    modules = dict(tiny_model.named_modules())
    for t in d.targets:
        s, z = d.svd[t.key], expert.params[t.key]
        torch.testing.assert_close(
            modules[t.module_name].weight, s.U @ torch.diag(s.S * z) @ s.Vh, atol=2e-5, rtol=1e-4
        )
    assert not torch.allclose(tiny_model(tokens).logits, base_logits)
    # applying twice composes from the base, never on top of the previous expert
    patcher.apply(expert)
    torch.testing.assert_close(
        modules[d.targets[0].module_name].weight,
        d.svd[d.targets[0].key].U
        @ torch.diag(d.svd[d.targets[0].key].S * expert.params[d.targets[0].key])
        @ d.svd[d.targets[0].key].Vh,
        atol=2e-5,
        rtol=1e-4,
    )
    patcher.restore()
    for n, w in tiny_model.named_parameters():
        assert torch.equal(w, base_weights[n]), n
    assert torch.equal(tiny_model(tokens).logits, base_logits)


def test_use_context_restores_even_on_error(llama, tmp_path):
    d = _decomp(llama, tmp_path)
    base = _weights(llama)
    patcher = SVFPatcher(llama, d)
    with pytest.raises(RuntimeError):
        with patcher.use(_random_expert(d)):
            raise RuntimeError("boom")
    assert all(torch.equal(w, base[n]) for n, w in llama.named_parameters())
    assert patcher.active is None


def test_bf16_model_identity_and_restore(tokens, tmp_path):
    from conftest import tiny_llama

    model = tiny_llama().to(torch.bfloat16)
    d = _decomp(model, tmp_path)
    base = _weights(model)
    before = model(tokens).logits
    p = SVFPatcher(model, d)
    p.apply(identity_expert(d))
    assert torch.equal(model(tokens).logits, before)
    p.apply(_random_expert(d))
    assert model.model.layers[0].mlp.up_proj.weight.dtype == torch.bfloat16
    p.restore()
    assert all(torch.equal(w, base[n]) for n, w in model.named_parameters())


def test_compositions_are_counted_and_identity_skipped(llama, tmp_path):
    d = _decomp(llama, tmp_path)
    p = SVFPatcher(llama, d)
    p.apply(identity_expert(d))
    assert p.compositions == 0
    p.apply(_random_expert(d))
    assert p.compositions == len(d.targets)


# --- sigmoid parameterisation ----------------------------------------------------------------


def test_sigmoid_keeps_the_nuclear_norm_and_ignores_global_scale(llama, tmp_path):
    d = _decomp(llama, tmp_path)
    e = identity_expert(d, parameterisation="sigmoid", noise_std=1.0, seed=3)
    zs = effective_z(e, d.sigmas())
    for k, z in zs.items():
        s = d.svd[k].S
        torch.testing.assert_close((s * z).sum(), s.sum(), rtol=1e-5, atol=0)
        assert not torch.allclose(z, torch.ones_like(z))
    with pytest.raises(ConfigError, match="singular values"):
        effective_z(e)


# --- mixing and permuting ------------------------------------------------------------------


def test_mix_one_hot_and_weighted(llama, tmp_path):
    d = _decomp(llama, tmp_path)
    a, b = _random_expert(d, 1, name="a"), _random_expert(d, 2, name="b")
    one_hot = mix([a, b], [1.0, 0.0])
    assert all(torch.equal(one_hot.params[k], a.params[k]) for k in a.keys)
    m = mix([a, b], [0.25, 0.5])
    for k in a.keys:
        torch.testing.assert_close(m.params[k], 0.25 * a.params[k] + 0.5 * b.params[k])
    assert m.meta.provenance["mixture_of"] == ["a", "b"]


def test_mix_per_matrix_alphas_and_sigmoid_experts(llama, tmp_path):
    d = _decomp(llama, tmp_path)
    a = _random_expert(d, 1)
    s = identity_expert(d, parameterisation="sigmoid", noise_std=0.5, seed=4)
    alphas = torch.zeros(2, len(d.keys))
    alphas[0, 0] = 1.0
    alphas[1, 1:] = 1.0
    m = mix([a, s], alphas, d.sigmas())
    zs = effective_z(s, d.sigmas())
    assert torch.equal(m.params[d.keys[0]], a.params[d.keys[0]])
    for k in d.keys[1:]:
        torch.testing.assert_close(m.params[k], zs[k])
    assert m.meta.parameterisation == "z"


def test_mix_rejects_mismatched_experts_and_bad_alphas(llama, gemma, tmp_path):
    d = _decomp(llama, tmp_path)
    other = _decomp(llama, tmp_path, "attn")
    with pytest.raises(ExpertMismatchError, match="adapt different matrices"):
        mix([identity_expert(d), identity_expert(other)], [0.5, 0.5])
    with pytest.raises(ConfigError, match="alphas must have shape"):
        mix([identity_expert(d), identity_expert(d)], [1.0, 2.0, 3.0])
    with pytest.raises(ConfigError, match="at least one expert"):
        mix([], [])


def test_permute_is_seeded_per_matrix(llama, tmp_path):
    d = _decomp(llama, tmp_path)
    e = _random_expert(d)
    p1, p1b, p2 = permute(e, 1), permute(e, 1), permute(e, 2)
    for k in e.keys:
        assert torch.equal(p1.params[k], p1b.params[k])
        assert torch.equal(torch.sort(p1.params[k]).values, torch.sort(e.params[k]).values)
        assert not torch.equal(p1.params[k], e.params[k])
        assert not torch.equal(p1.params[k], p2.params[k])
    # a matrix's permutation does not depend on the other matrices in the expert
    sub = Expert({k: v for k, v in e.params.items() if k.endswith("down")}, e.meta)
    for k in sub.keys:
        assert torch.equal(permute(sub, 1).params[k], p1.params[k])
    assert p1.meta.provenance["permuted_seed"] == 1


# --- fitting checks -------------------------------------------------------------------------


def test_expert_of_another_model_names_the_mismatch(llama, gemma, tmp_path):
    dl = _decomp(llama, tmp_path)
    dg = _decomp(gemma, tmp_path)
    with pytest.raises(ExpertMismatchError, match=r"adapts 12 matrices.*decomposed for 9"):
        SVFPatcher(gemma, dg).apply(identity_expert(dl))
    dg4 = _decomp(tiny_gemma_layers(4), tmp_path)
    with pytest.raises(
        ExpertMismatchError,
        match=r"other shapes.*layers\.0\.gate: expert \[48, 32\] vs model \[56, 40\]",
    ):
        check_fits(identity_expert(dl), dg4)


def tiny_gemma_layers(n):
    from conftest import tiny_gemma

    return tiny_gemma(layers=n)


def test_same_shapes_other_model_needs_transfer_flag(tmp_path, tokens):
    from conftest import tiny_llama

    a, b = tiny_llama(seed=0), tiny_llama(seed=5)
    b.config._name_or_path = "tiny-llama-other"
    da, db = (
        _decomp(a, tmp_path, model_id="tiny-llama"),
        _decomp(b, tmp_path, model_id="tiny-llama-other"),
    )
    e = _random_expert(da)
    with pytest.raises(ExpertMismatchError, match="allow_transfer=True"):
        SVFPatcher(b, db).apply(e)
    base = b(tokens).logits
    SVFPatcher(b, db).apply(e, allow_transfer=True)
    assert not torch.allclose(b(tokens).logits, base)
