"""Where the base weights are kept while an expert is applied (``snapshot=device|cpu|disk``):
each option restores the base bit for bit, composes the same W', keeps its copy where it says,
and refuses a file it cannot restore from exactly (tiny seeded models, no downloads)."""

from __future__ import annotations

import os

import pytest
import torch

from t2bench.errors import ConfigError
from t2bench.models import load_model
from t2bench.svf import SNAPSHOTS, SVFPatcher, TargetSpec, decompose, identity_expert

pytest.importorskip("lm_eval")

from lm_eval.api.instance import Instance  # noqa: E402

from t2bench.backends.text import T2LM  # noqa: E402
from t2bench.bench.backend import AlternatingDispatch  # noqa: E402
from t2bench.dispatch import BASE  # noqa: E402


def _expert(d, seed, name):
    e = identity_expert(d, name=name)
    g = torch.Generator().manual_seed(seed)
    e.params = {k: 1 + 0.8 * (torch.rand(v.shape, generator=g) - 0.5) for k, v in e.params.items()}
    return e


def _state(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _adapted_bytes(patcher):
    return sum(w.numel() * w.element_size() for w in patcher._weights.values())


def _patched(llama_dir, tmp_path, snapshot, dtype="float32"):
    lm = load_model(str(llama_dir), dtype=dtype, device="cpu")
    d = decompose(lm.model, TargetSpec("all"), cache_dir=tmp_path / "svd", progress=False)
    patcher = SVFPatcher(lm.model, d, snapshot=snapshot, weights_folder=llama_dir)
    return lm.model, d, patcher


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("snapshot", SNAPSHOTS)
def test_each_option_composes_the_same_weights_and_restores_bit_exactly(
    llama_dir, tmp_path, tokens, snapshot, dtype
):
    # the reference is the default (device) on an identical fresh model
    ref_model, d, ref = _patched(llama_dir, tmp_path, "device", dtype)
    model, _, patcher = _patched(llama_dir, tmp_path, snapshot, dtype)
    base, base_logits = _state(model), model(tokens).logits
    for seed in (1, 2):  # switching experts composes from the base, not on top
        e = _expert(d, seed, f"e{seed}")
        ref.apply(e)
        patcher.apply(e)
        assert all(torch.equal(w, ref._weights[k]) for k, w in patcher._weights.items())
        assert not patcher.is_base()
    patcher.restore()
    assert patcher.is_base() and patcher.snapshot == snapshot
    assert all(torch.equal(p, base[n]) for n, p in model.named_parameters())
    assert torch.equal(model(tokens).logits, base_logits)


@pytest.mark.parametrize("snapshot,where", [("device", {"cpu"}), ("cpu", {"cpu"}), ("disk", set())])
def test_the_copy_is_taken_on_first_apply_and_held_where_the_option_says(
    llama_dir, tmp_path, snapshot, where
):
    _, d, patcher = _patched(llama_dir, tmp_path, snapshot)
    assert patcher.snapshot_bytes() == {}  # nothing copied before an expert is applied
    for seed in range(3):
        patcher.apply(_expert(d, seed, f"e{seed}"))
    # one copy of the adapted matrices however many experts were applied; none for disk
    assert patcher.snapshot_bytes() == dict.fromkeys(where, _adapted_bytes(patcher))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("snapshot,where", [("device", "cuda"), ("cpu", "cpu")])
def test_on_cuda_the_cpu_option_keeps_the_copy_off_the_accelerator(
    llama_dir, tmp_path, snapshot, where
):
    lm = load_model(str(llama_dir), device="cuda")
    d = decompose(lm.model, TargetSpec("mlp"), cache_dir=tmp_path, progress=False)
    patcher = SVFPatcher(lm.model, d, snapshot=snapshot)
    base = _state(lm.model)
    patcher.apply(_expert(d, 0, "e"))
    assert set(patcher.snapshot_bytes()) == {where}
    assert all(t.device.type == where for t in patcher.store._base.values())
    patcher.restore()
    assert all(torch.equal(p, base[n]) for n, p in lm.model.named_parameters())


def test_disk_refuses_weights_the_files_do_not_hold(llama_dir, tmp_path):
    lm = load_model(str(llama_dir), device="cpu")
    d = decompose(lm.model, TargetSpec("mlp"), cache_dir=tmp_path, progress=False)
    with torch.no_grad():  # e.g. an adapter merged after loading
        lm.model.model.layers[1].mlp.up_proj.weight.add_(1e-3)
    with pytest.raises(ConfigError, match=r"up_proj.weight.*not bit-identical.*snapshot=cpu"):
        SVFPatcher(lm.model, d, snapshot="disk", weights_folder=llama_dir)
    with pytest.raises(ConfigError, match="snapshot=disk needs the folder"):
        SVFPatcher(lm.model, d, snapshot="disk")
    with pytest.raises(ConfigError, match=r"no \*.safetensors files"):
        SVFPatcher(lm.model, d, snapshot="disk", weights_folder=tmp_path)
    with pytest.raises(ConfigError, match="unknown snapshot='gpu'"):
        SVFPatcher(lm.model, d, snapshot="gpu")


def test_disk_refuses_to_restore_from_a_file_changed_after_loading(llama_dir, tmp_path):
    _, d, patcher = _patched(llama_dir, tmp_path, "disk")
    patcher.apply(_expert(d, 0, "e"))
    (path,) = patcher.store.files
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    with pytest.raises(ConfigError, match="changed after the model was loaded"):
        patcher.restore()


# --------------------------------------------------------------------------- the t2 backend


def _requests(n=8):
    return [
        Instance(
            "loglikelihood", {}, (f"w{i} w{i + 1} w{i + 2}", f" w{(3 * i) % 60}"), i, ("t", i, 1)
        )
        for i in range(n)
    ]


@pytest.fixture
def expert_files(llama_dir, tmp_path, monkeypatch):
    from t2bench.svf import save_expert

    monkeypatch.setenv("T2BENCH_HOME", str(tmp_path / "home"))
    lm = load_model(str(llama_dir))
    d = decompose(lm.model, TargetSpec("mlp"), model_id=lm.model_id, progress=False)
    return [
        str(save_expert(_expert(d, k, f"e{k}"), tmp_path / "experts" / f"e{k}")) for k in range(4)
    ]


@pytest.mark.parametrize("snapshot", ["cpu", "disk"])
def test_backend_scores_are_the_defaults_with_every_option(llama_dir, expert_files, snapshot):
    def scores(**kw):
        lm = T2LM(
            pretrained=str(llama_dir),
            device="cpu",
            batch_size=4,
            experts=";".join(expert_files),
            dispatch="none",
            **kw,
        )
        lm.dispatcher = AlternatingDispatch(lm.experts)  # 4 experts, switched per group
        adapted = lm.loglikelihood(_requests())
        lm.patcher.restore()
        assert lm.patcher.is_base()
        return adapted, lm._run_choice(BASE, "loglikelihood", _requests()), lm

    ref, ref_base, _ = scores()
    got, got_base, lm = scores(snapshot=snapshot)
    assert got == ref and got_base == ref_base and ref != ref_base
    assert lm.t2_summary()["snapshot"] == snapshot
    assert lm.t2_summary()["weight_compositions"] == 4


def test_backend_holds_vectors_per_expert_and_one_copy_of_the_weights(llama_dir, expert_files):
    lm = T2LM(
        pretrained=str(llama_dir),
        device="cpu",
        batch_size=4,
        experts=";".join(expert_files),
        dispatch="none",
    )
    d = lm.patcher.decomposition
    # each loaded expert is one vector per matrix (rank entries), never a matrix
    assert all(v.dim() == 1 for e in lm.experts.values() for v in e.params.values())
    assert (
        sum(v.numel() for e in lm.experts.values() for v in e.params.values())
        == 4 * d.num_parameters()
    )
    assert lm.patcher.snapshot_bytes() == {}
    lm.dispatcher = AlternatingDispatch(lm.experts)
    lm.loglikelihood(_requests())
    assert lm.patcher.snapshot_bytes() == {"cpu": _adapted_bytes(lm.patcher)}


def test_backend_snapshot_arg_is_checked_before_loading(llama_dir):
    with pytest.raises(ConfigError, match="snapshot='host'.*device.*cpu.*disk"):
        T2LM(pretrained=str(llama_dir), snapshot="host")


def test_vlm_backend_reads_the_base_back_from_differently_named_checkpoint_keys(
    tiny_vlm_dir, tmp_path, monkeypatch
):
    # the LLaVA checkpoint names the language model's weights language_model.model.layers...,
    # the loaded modules model.language_model.layers...: the store finds them by their tails
    from pathlib import Path

    from transformers import AutoModelForImageTextToText

    from t2bench.backends.vlm import T2VLM
    from t2bench.dispatch import Choice
    from t2bench.svf import save_expert

    monkeypatch.setenv("T2BENCH_HOME", str(tmp_path / "home"))
    model = AutoModelForImageTextToText.from_pretrained(tiny_vlm_dir).eval()
    spec = TargetSpec("mlp", "all", "language")
    d = decompose(model, spec, model_id=str(Path(tiny_vlm_dir).resolve()), progress=False)
    path = save_expert(_expert(d, 0, "loud"), tmp_path / "loud")
    lm = T2VLM(pretrained=tiny_vlm_dir, experts=str(path), batch_size=2, snapshot="disk")
    names = {name for _, name in lm.patcher.store.where.values()}
    assert names and all(n.startswith("language_model.model.layers.") for n in names)
    base = _state(lm.model)
    lm._activate(Choice("loud", lm.experts["loud"]))
    assert not lm.patcher.is_base()
    lm.patcher.restore()
    assert all(torch.equal(p, base[n]) for n, p in lm.model.named_parameters())
