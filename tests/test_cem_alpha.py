"""Few-shot CEM α on the simplex (normalise=true, the default) or unconstrained, and Σα recorded."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import tiny_llama

from t2bench.dispatch import DispatchContext, DispatchRequest, make_dispatcher
from t2bench.dispatch import cem_strategy as fs
from t2bench.dispatch.base import options_to_config
from t2bench.dispatch.cem_optimizer import CEMConfig, cem, normalise_columns
from t2bench.errors import ConfigError
from t2bench.svf import SVFPatcher, TargetSpec, decompose, identity_expert

NAMES = ["code-x", "math-x", "reasoning-x"]


# --------------------------------------------------------------------------- the optimiser


def test_normalise_columns_puts_each_column_on_the_simplex_and_zero_columns_at_uniform():
    x = np.array([[0.2, 0.0, 3.0], [0.6, 0.0, 1.0]]).reshape(-1)
    out = normalise_columns(x, 2).reshape(2, 3)
    np.testing.assert_allclose(out, [[0.25, 0.5, 0.75], [0.75, 0.5, 0.25]])
    np.testing.assert_allclose(normalise_columns(np.zeros(3), 3), np.full(3, 1 / 3))


def test_cem_with_a_projection_scores_only_projected_points():
    seen = []

    def fit(x):
        seen.append(x.copy())
        return (float(x.sum()),)  # rewards scale: without the projection, bigger is better

    cfg = CEMConfig(population=6, iterations=3, init_std=1.0, seed=0)
    res = cem(fit, np.full(3, 0.1), cfg, project=lambda x: normalise_columns(x, 3))
    assert len(seen) > 1 and all(abs(s.sum() - 1) < 1e-9 for s in seen)
    assert abs(res.best.sum() - 1) < 1e-9
    assert all(abs(sum(h["mean"]) - 1) < 1e-9 for h in res.history)
    free = cem(fit, np.full(3, 0.1), cfg)
    assert free.best.sum() > 1.5


# --------------------------------------------------------------------------- the dispatcher


@pytest.fixture
def scale_setup(tmp_path, monkeypatch):
    """Three experts and a shot scorer whose fitness grows with the mixture's overall scale."""
    monkeypatch.setenv("T2BENCH_HOME", str(tmp_path / "home"))
    model = tiny_llama(layers=2)
    d = decompose(model, TargetSpec("mlp"), model_id="tiny", progress=False)
    g = torch.Generator().manual_seed(0)
    experts = {}
    for name in NAMES:
        e = identity_expert(d, name=name)
        e.params = {
            k: 1 + 0.2 * (torch.rand(v.shape, generator=g) - 0.5) for k, v in e.params.items()
        }
        experts[name] = e
    ctx = DispatchContext(
        model=model, tokenizer=None, experts=experts, patcher=SVFPatcher(model, d), model_id="tiny"
    )
    ctx.run = lambda *a: []

    class Scorer:
        def __init__(self, shots, run, tokenizer):
            pass

        def __call__(self, choice):
            z = choice.expert.params
            return (0.0, float(np.mean([v.mean().item() for v in z.values()])))

    def shots(task_name, cfg):
        return fs.Shots(task_name, None, "validation", [1, 2], [{}, {}], [[], []], [("", "")] * 2)

    monkeypatch.setattr(fs, "ShotScorer", Scorer)
    monkeypatch.setattr(fs, "build_shots", shots)
    return ctx, experts, tmp_path, len(d.keys)


def _run(ctx, experts, spec):
    disp = make_dispatcher(spec, experts)
    disp.bind(ctx)
    disp.choose([DispatchRequest("q", task="toy")])
    return disp, disp.describe()["tasks"]["toy"]


def test_default_search_returns_alpha_summing_to_one_and_records_it(scale_setup):
    ctx, experts, tmp, _ = scale_setup
    disp, info = _run(ctx, experts, f"cem:population=6;iterations=3;out={tmp / 'a'}")
    assert disp.config.normalise is True
    assert abs(sum(info["alpha"]) - 1) < 1e-6
    assert info["normalise"] is True and abs(info["alpha_sum"] - 1) < 1e-6
    assert all(abs(s - 1) < 1e-6 for s in info["alpha_sum_range"])
    assert disp.records["toy"].info["normalise"] is True  # also in the record on disk
    assert abs(disp.records["toy"].info["alpha_sum"] - 1) < 1e-6


def test_unnormalised_search_rescales_on_an_objective_that_rewards_scale(scale_setup):
    ctx, experts, tmp, _ = scale_setup
    _, info = _run(ctx, experts, f"cem:normalise=false;population=6;iterations=3;out={tmp / 'a'}")
    assert info["normalise"] is False
    assert info["alpha_sum"] > 1.2
    assert info["alpha_sum"] == pytest.approx(sum(info["alpha"]), abs=1e-6)


def test_per_matrix_alpha_is_normalised_per_matrix_across_experts(scale_setup):
    ctx, experts, tmp, m = scale_setup
    disp, info = _run(
        ctx, experts, f"cem:per_matrix=true;population=6;iterations=2;out={tmp / 'a'}"
    )
    alpha = disp.records["toy"].alpha
    assert tuple(alpha.shape) == (3, m)
    assert (alpha.double().sum(0) - 1).abs().max() < 1e-6
    assert info["alpha"] == "per-matrix" and abs(info["alpha_sum"] - 1) < 1e-6


def test_normalise_is_part_of_the_cache_key(scale_setup):
    ctx, experts, tmp, _ = scale_setup
    out = tmp / "a"
    _run(ctx, experts, f"cem:population=4;iterations=1;out={out}")
    _, info = _run(ctx, experts, f"cem:normalise=false;population=4;iterations=1;out={out}")
    assert info["from_cache"] is False  # not the normalised record found under the same key
    assert len(list(out.glob("*.safetensors"))) == 2


def test_normalise_option_parses_and_rejects_signed_bounds():
    assert options_to_config(fs.FewShotConfig, None, "cem").normalise is True
    assert options_to_config(fs.FewShotConfig, "normalise=false", "cem").normalise is False
    assert options_to_config(fs.FewShotConfig, "shots=3;normalise=true", "cem").normalise is True
    with pytest.raises(ConfigError, match="normalise='maybe' is not a valid bool"):
        options_to_config(fs.FewShotConfig, "normalise=maybe", "cem")
    with pytest.raises(ConfigError, match="needs low >= 0"):
        make_dispatcher("cem:low=-1", _experts())
    make_dispatcher("cem:low=-1;normalise=false", _experts())


def _experts():
    d = decompose(tiny_llama(layers=1), TargetSpec("mlp"), model_id="tiny", progress=False)
    return {n: identity_expert(d, name=n) for n in NAMES}
