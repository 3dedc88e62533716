"""Cross-model transfer of SVF experts on tiny seeded Llama-style models of two shapes."""

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
    identity_expert,
    resample_vector,
    shuffled_transfer,
    transfer_expert,
)


def _llama(seed: int = 0, layers: int = 4, hidden: int = 32, inter: int = 48, name: str = "a"):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=64,
        hidden_size=hidden,
        intermediate_size=inter,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    cfg._name_or_path = name
    return LlamaForCausalLM(cfg).eval()


def _decomp(model, modules: str = "mlp", layers: str = "all"):
    return decompose(
        model,
        TargetSpec(modules, layers),
        model_id=model.config._name_or_path,
        use_cache=False,
        progress=False,
    )


def _random_expert(d, seed: int = 0, name: str = "rand", parameterisation: str = "z"):
    e = identity_expert(d, name=name, parameterisation=parameterisation)
    g = torch.Generator().manual_seed(seed)
    e.params = {k: 1 + (torch.rand(v.shape, generator=g) - 0.5) for k, v in e.params.items()}
    return e


@pytest.fixture(scope="module")
def big():
    """Source: 4 layers, hidden 32 (rank 32), intermediate 48."""
    m = _llama(seed=0, layers=4, hidden=32, inter=48, name="big")
    return m, _decomp(m)


@pytest.fixture(scope="module")
def small():
    """Other shape: 2 layers, hidden 24 (rank 24), intermediate 40."""
    m = _llama(seed=1, layers=2, hidden=24, inter=40, name="small")
    return m, _decomp(m)


# --- resample_vector -------------------------------------------------------------------------


def test_resample_same_size_is_an_exact_copy():
    z = torch.rand(7, generator=torch.Generator().manual_seed(0))
    r = resample_vector(z, 7)
    assert torch.equal(r, z)
    r[0] = 99.0
    assert z[0] != 99.0  # a copy, not a view


def test_resample_is_linear_over_relative_rank():
    assert torch.equal(resample_vector(torch.tensor([0.0, 1.0]), 3), torch.tensor([0.0, 0.5, 1.0]))
    assert torch.allclose(
        resample_vector(torch.tensor([0.0, 2.0, 4.0]), 5), torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0])
    )
    assert torch.equal(
        resample_vector(torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0]), 3), torch.tensor([0.0, 2.0, 4.0])
    )
    # 4 → 3: middle target index sits at source position 1.5
    assert torch.allclose(
        resample_vector(torch.tensor([0.0, 10.0, 20.0, 40.0]), 3), torch.tensor([0.0, 15.0, 40.0])
    )


@pytest.mark.parametrize("size", [2, 5, 13, 40])
def test_resample_keeps_endpoints_and_constants(size):
    z = torch.rand(17, generator=torch.Generator().manual_seed(size))
    r = resample_vector(z, size)
    assert r.shape == (size,)
    assert r[0] == z[0] and r[-1] == z[-1]
    assert r.min() >= z.min() and r.max() <= z.max()
    assert torch.all(resample_vector(torch.full((17,), 0.7), size) == 0.7)


def test_resample_degenerate_sizes():
    assert torch.equal(resample_vector(torch.tensor([3.0]), 4), torch.full((4,), 3.0))
    assert torch.equal(resample_vector(torch.tensor([3.0, 5.0, 9.0]), 1), torch.tensor([3.0]))
    with pytest.raises(ConfigError, match="at least 1"):
        resample_vector(torch.ones(3), 0)


# --- same-shape transfer (the paper's) -------------------------------------------------------


def test_same_shape_transfer_copies_z_and_applies(big):
    _, da = big
    b = _llama(seed=5, layers=4, hidden=32, inter=48, name="big-other")
    db = _decomp(b)
    e = _random_expert(da, name="math")
    t = transfer_expert(e, db)
    assert t.keys == db.keys
    for k in db.keys:
        assert torch.equal(t.params[k], e.params[k])
    assert t.meta.parameterisation == "z"
    assert t.meta.base_model == "big-other"
    assert t.meta.shape_fingerprint == db.shape_fingerprint
    assert t.meta.layers == [0, 1, 2, 3]
    assert t.meta.name == "math"
    prov = t.meta.provenance
    assert prov["transfer"] == "same-shape"
    assert prov["source_model"] == "big" and prov["source_expert"] == "math"
    assert prov["source_layers"] == 4 and prov["target_layers"] == 4

    check_fits(t, db, allow_transfer=True)
    tokens = torch.randint(0, 64, (2, 8), generator=torch.Generator().manual_seed(1))
    base = b(tokens).logits
    patcher = SVFPatcher(b, db)
    patcher.apply(t, allow_transfer=True)
    assert not torch.allclose(b(tokens).logits, base)
    patcher.restore()
    assert patcher.is_base()


def test_sigmoid_expert_transfers_its_effective_z(big):
    _, da = big
    e = _random_expert(da, parameterisation="sigmoid", name="sig")
    with pytest.raises(ConfigError, match=r"sigmoid-parameterised.*source_sigmas="):
        transfer_expert(e, da)
    with pytest.raises(ConfigError, match="source_sigmas lacks"):
        transfer_expert(e, da, source_sigmas={})
    t = transfer_expert(e, da, source_sigmas=da.sigmas(), mode="same-shape")
    z = effective_z(e, da.sigmas())
    assert t.meta.parameterisation == "z"
    for k in da.keys:
        assert torch.equal(t.params[k], z[k])
        assert not torch.equal(t.params[k], e.params[k])  # the logits themselves are not copied


# --- resample transfer (shape-adaptive) ------------------------------------------------------


def test_resample_four_to_two_layers(big, small):
    _, da = big
    _, ds = small
    e = _random_expert(da)
    t = transfer_expert(e, ds)
    assert t.meta.provenance["transfer"] == "resample"
    assert t.keys == ds.keys
    assert t.meta.shapes == {k: list(v) for k, v in ds.shapes.items()}
    assert t.meta.shape_fingerprint == ds.shape_fingerprint
    assert t.meta.layers == [0, 1]
    assert t.meta.provenance["source_layers"] == 4 and t.meta.provenance["target_layers"] == 2
    for role in ("gate", "up", "down"):
        first, last = t.params[f"layers.0.{role}"], t.params[f"layers.1.{role}"]
        assert first.shape == (24,)
        # first ↔ first, last ↔ last, then rank-resampled 32 → 24 with endpoints kept
        assert torch.equal(first, resample_vector(e.params[f"layers.0.{role}"], 24))
        assert torch.equal(last, resample_vector(e.params[f"layers.3.{role}"], 24))
        assert first[0] == e.params[f"layers.0.{role}"][0]
        assert last[-1] == e.params[f"layers.3.{role}"][-1]
    check_fits(t, ds)
    SVFPatcher(*small).apply(t)


def test_resample_two_to_three_layers_interpolates_the_middle(big, small):
    _, ds = small
    target = _decomp(_llama(seed=2, layers=3, hidden=32, inter=48, name="mid"))
    e = _random_expert(ds, seed=3)
    t = transfer_expert(e, target, mode="resample")
    assert t.meta.layers == [0, 1, 2]
    for role in ("gate", "up", "down"):
        r0 = resample_vector(e.params[f"layers.0.{role}"], 32)
        r1 = resample_vector(e.params[f"layers.1.{role}"], 32)
        assert torch.equal(t.params[f"layers.0.{role}"], r0)
        assert torch.equal(t.params[f"layers.2.{role}"], r1)
        mid = t.params[f"layers.1.{role}"]
        assert torch.allclose(mid, (r0 + r1) / 2)
        assert not torch.allclose(mid, r0) and not torch.allclose(mid, r1)
    check_fits(t, target)
    # layer depth is relative to the expert's own sorted layers (here 0 and 2 of 4)
    ev = _random_expert(_decomp(_llama(seed=0, layers=4), layers="even"), seed=4)
    t2 = transfer_expert(ev, target)
    assert t2.meta.provenance["source_layers"] == 2
    assert torch.equal(t2.params["layers.2.up"], ev.params["layers.2.up"])
    assert torch.allclose(
        t2.params["layers.1.up"], (ev.params["layers.0.up"] + ev.params["layers.2.up"]) / 2
    )


@pytest.mark.parametrize("parameterisation", ["z", "sigmoid"])
@pytest.mark.parametrize("direction", ["same", "down", "up"])
def test_identity_stays_exactly_identity(big, small, parameterisation, direction):
    _, da = big
    _, ds = small
    src, tgt = {"same": (da, da), "down": (da, ds), "up": (ds, da)}[direction]
    e = identity_expert(src, parameterisation=parameterisation)
    t = transfer_expert(e, tgt, source_sigmas=src.sigmas())
    assert t.keys == tgt.keys
    for k, v in t.params.items():
        assert v.numel() == min(tgt.shapes[k])
        assert torch.all(v == 1), k


# --- errors ----------------------------------------------------------------------------------


def test_mismatched_roles_are_named(big):
    m, da = big
    e = _random_expert(da)
    with pytest.raises(
        ExpertMismatchError,
        match=r"roles only in the expert: \['down', 'gate', 'up'\]; roles only in the target: "
        r"\['q', 'v'\].*modules='mlp'",
    ):
        transfer_expert(e, _decomp(m, modules="attn"))
    with pytest.raises(
        ExpertMismatchError, match=r"only in the expert: none.*\['k', 'o', 'q', 'v'\]"
    ):
        transfer_expert(e, _decomp(m, modules="all"))


def test_same_shape_mode_on_other_shapes_names_the_difference(big, small):
    _, da = big
    _, ds = small
    with pytest.raises(
        ExpertMismatchError,
        match=r"only in the expert: \['layers\.2\.down'.*layers\.0\.gate: expert \[48, 32\] vs "
        r"target \[40, 24\].*mode='resample'",
    ):
        transfer_expert(_random_expert(da), ds, mode="same-shape")


def test_unknown_mode_is_a_config_error(big):
    _, da = big
    with pytest.raises(ConfigError, match=r"unknown transfer mode 'copy'.*same-shape"):
        transfer_expert(identity_expert(da), da, mode="copy")


# --- shuffled-σ control ----------------------------------------------------------------------


def test_shuffled_transfer_permutes_within_each_matrix(big):
    _, da = big
    b = _llama(seed=5, layers=4, name="big-other")
    db = _decomp(b)
    e = _random_expert(da, name="math")
    ordered = transfer_expert(e, db)
    s1 = shuffled_transfer(e, db, 1, name="math")
    s1b = shuffled_transfer(e, db, 1, name="math")
    s2 = shuffled_transfer(e, db, 2, name="math")
    assert s1.meta.provenance["shuffled_seed"] == 1
    assert s1.meta.provenance["transfer"] == "same-shape"
    assert s1.meta.name == "math" and s1.meta.base_model == "big-other"
    for k in db.keys:
        assert not torch.equal(s1.params[k], ordered.params[k])
        assert torch.equal(torch.sort(s1.params[k]).values, torch.sort(e.params[k]).values)
        assert torch.equal(s1.params[k], s1b.params[k])
        assert not torch.equal(s1.params[k], s2.params[k])
    check_fits(s1, db)
