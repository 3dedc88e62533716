"""The t2 lm-eval backend on a tiny local model: parity with hf, grouping, errors, registration."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata

import pytest
import torch

pytest.importorskip("lm_eval")

from lm_eval.api.instance import Instance  # noqa: E402
from lm_eval.models.huggingface import HFLM  # noqa: E402

from t2bench.backends.text import T2LM  # noqa: E402
from t2bench.bench.backend import AlternatingDispatch  # noqa: E402
from t2bench.errors import ConfigError, ExpertFileError, ExpertMismatchError  # noqa: E402
from t2bench.models import load_model  # noqa: E402
from t2bench.svf import TargetSpec, decompose, identity_expert, save_expert  # noqa: E402


def _ll_requests(n=8):
    reqs = []
    for i in range(n):
        ctx = " ".join(f"w{(i * 7 + j) % 60}" for j in range(3 + i % 4))
        cont = f" w{(i * 3) % 60} w{(i * 5) % 60}"
        reqs.append(Instance("loglikelihood", {}, (ctx, cont), i, ("toy", i, 1)))
    return reqs


def _gen_requests(n=4):
    kw = {"until": ["</s>"], "max_gen_toks": 5, "do_sample": False}
    return [
        Instance("generate_until", {}, (f"w{i} w{i + 1} w{i + 2}", dict(kw)), i, ("toy", i, 1))
        for i in range(n)
    ]


def _experts(folder, d, n):
    g = torch.Generator().manual_seed(0)
    paths = []
    for k in range(n):
        e = identity_expert(d, name=f"e{k}")
        e.params = {
            key: 1 + 0.8 * (torch.rand(v.shape, generator=g) - 0.5) for key, v in e.params.items()
        }
        paths.append(save_expert(e, folder / f"e{k}"))
    return paths


@pytest.fixture
def expert_dir(llama_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("T2BENCH_HOME", str(tmp_path / "home"))
    lm = load_model(str(llama_dir))
    d = decompose(lm.model, TargetSpec("mlp"), model_id=lm.model_id, progress=False)
    folder = tmp_path / "experts"
    _experts(folder, d, 4)
    return folder


def _t2(llama_dir, **kw):
    return T2LM(pretrained=str(llama_dir), device="cpu", batch_size=4, **kw)


def test_no_experts_equals_hf_exactly(llama_dir):
    hf = HFLM(pretrained=str(llama_dir), device="cpu", batch_size=4, dtype="float32")
    t2 = _t2(llama_dir)
    assert t2.loglikelihood(_ll_requests()) == hf.loglikelihood(_ll_requests())
    assert t2.generate_until(_gen_requests()) == hf.generate_until(_gen_requests())
    assert t2.patcher is None and t2.get_model_info()["t2"]["weight_compositions"] == 0


def test_fixed_expert_changes_scores_and_composes_once(llama_dir, expert_dir):
    base = _t2(llama_dir).loglikelihood(_ll_requests())
    t2 = _t2(llama_dir, experts=str(expert_dir), dispatch="fixed:e2")
    first = t2.loglikelihood(_ll_requests())
    again = t2.loglikelihood(_ll_requests())
    assert first == again and first != base
    info = t2.get_model_info()["t2"]
    assert info["weight_compositions"] == 1  # the second call found e2 already active
    assert info["dispatch_counts"] == {"e2": 16}
    assert info["experts"] == ["e0", "e1", "e2", "e3"]
    assert {"commit", "machine", "created_utc"} <= set(info["provenance"])


def test_one_expert_without_dispatch_is_applied(llama_dir, expert_dir):
    # loading an expert and silently evaluating the base model was a trap (issue #18)
    path = str(expert_dir / "e1.safetensors")
    base = _t2(llama_dir).loglikelihood(_ll_requests())
    t2 = _t2(llama_dir, experts=path)
    got = t2.loglikelihood(_ll_requests())
    info = t2.get_model_info()["t2"]
    assert got != base
    assert got == _t2(llama_dir, experts=path, dispatch="fixed:e1").loglikelihood(_ll_requests())
    assert info["dispatch"] == {"strategy": "fixed", "expert": "e1"}
    assert info["weight_compositions"] == 1
    assert info["dispatch_counts"] == {"e1": 8}


def test_several_experts_without_dispatch_ask_for_one(llama_dir, expert_dir):
    with pytest.raises(
        ConfigError, match=r"4 experts are loaded \(e0, e1, e2, e3\).*dispatch=fixed:<name>"
    ):
        _t2(llama_dir, experts=str(expert_dir))


def test_explicit_dispatch_none_keeps_the_base_weights(llama_dir, expert_dir):
    base = _t2(llama_dir).loglikelihood(_ll_requests())
    t2 = _t2(llama_dir, experts=str(expert_dir), dispatch="none")
    assert t2.loglikelihood(_ll_requests()) == base
    assert t2.get_model_info()["t2"]["weight_compositions"] == 0


def test_summary_records_the_base_weights_hash(llama_dir):
    info = _t2(llama_dir).get_model_info()["t2"]
    assert len(info["weights_sha256"]["model"]) == 16
    assert info["peft_merged"] is False


def test_alternating_experts_one_composition_per_group_results_in_order(llama_dir, expert_dir):
    t2 = _t2(llama_dir, experts=str(expert_dir), dispatch="none")
    t2.dispatcher = AlternatingDispatch(t2.experts)
    reqs = _ll_requests(12)
    mixed = t2.loglikelihood(reqs)
    info = t2.get_model_info()["t2"]
    assert info["groups"] == 4 and info["weight_compositions"] == 4
    assert info["dispatch_counts"] == {"e0": 3, "e1": 3, "e2": 3, "e3": 3}
    # each logged request records the expert that answered it
    assert [r.args[-1]["t2_expert"] for r in reqs] == [f"e{i % 4}" for i in range(12)]
    for k in range(4):
        solo = _t2(llama_dir, experts=str(expert_dir), dispatch=f"fixed:e{k}").loglikelihood(
            _ll_requests(12)
        )
        for i in range(k, 12, 4):
            assert mixed[i] == pytest.approx(solo[i], abs=1e-5)


def test_generation_with_expert_and_back_to_base(llama_dir, expert_dir):
    t2 = _t2(llama_dir, experts=str(expert_dir), dispatch="none")
    base = t2.generate_until(_gen_requests())
    t2.dispatcher = AlternatingDispatch(t2.experts)
    t2.generate_until(_gen_requests())
    from t2bench.dispatch import NoDispatch

    t2.dispatcher = NoDispatch()
    assert t2.generate_until(_gen_requests()) == base
    assert t2.patcher.is_base()


def test_unknown_model_arg_lists_the_valid_ones(llama_dir):
    with pytest.raises(
        ConfigError, match=r"unknown model_args for t2: expertz\. Valid: .*dispatch.*experts"
    ):
        _t2(llama_dir, expertz="x")


def test_unknown_dispatch(llama_dir, expert_dir):
    with pytest.raises(ConfigError, match="unknown dispatch strategy 'oracle-x'.*fixed"):
        _t2(llama_dir, experts=str(expert_dir), dispatch="oracle-x")
    with pytest.raises(ConfigError, match="no expert named 'nope'"):
        _t2(llama_dir, experts=str(expert_dir), dispatch="fixed:nope")
    with pytest.raises(ConfigError, match="needs experts"):
        _t2(llama_dir, dispatch="fixed")


def test_missing_expert_file(llama_dir, tmp_path):
    with pytest.raises(ExpertFileError, match="no expert file at"):
        _t2(llama_dir, experts=str(tmp_path / "missing.safetensors"))


def test_expert_of_another_model(llama_dir, tmp_path, monkeypatch):
    from conftest import tiny_gemma

    monkeypatch.setenv("T2BENCH_HOME", str(tmp_path / "home"))
    g = tiny_gemma()
    d = decompose(g, TargetSpec("mlp"), model_id="tiny-gemma", progress=False)
    path = save_expert(identity_expert(d, name="gemma-expert"), tmp_path / "g")
    with pytest.raises(ExpertMismatchError, match="does not fit|adapts"):
        _t2(llama_dir, experts=str(path), dispatch="fixed")


def test_expert_list_separated_by_semicolons(llama_dir, expert_dir):
    files = sorted(str(p) for p in expert_dir.glob("*.safetensors"))[:2]
    t2 = _t2(llama_dir, experts=";".join(files), dispatch="fixed:e1")
    assert sorted(t2.experts) == ["e0", "e1"]


def _installed() -> bool:
    try:
        metadata.distribution("t2bench")
    except metadata.PackageNotFoundError:
        return False
    return True


@pytest.mark.skipif(not _installed(), reason="t2bench is not pip-installed here")
def test_stock_lm_eval_finds_t2_and_keeps_builtins():
    code = (
        "import sys\n"
        "heavy = [m for m in ('torch', 'lm_eval', 'transformers') if m in sys.modules]\n"
        "from lm_eval.api.registry import get_model\n"
        "import json; print(json.dumps({'heavy_at_start': heavy, 't2': get_model('t2').__name__, 'hf': get_model('hf').__name__}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    got = json.loads(out.strip().splitlines()[-1])
    assert got == {"heavy_at_start": [], "t2": "T2LM", "hf": "HFLM"}


@pytest.mark.skipif(
    torch.cuda.is_available(), reason="checks the fallback on machines without CUDA"
)
def test_lm_eval_default_cuda_device_falls_back_like_hf(llama_dir):
    """lm-eval's run config defaults to device=cuda:0; hf then uses the best available device."""
    t2 = T2LM(pretrained=str(llama_dir), device="cuda:0", batch_size=2)
    assert t2.model.device.type == "cpu"


def _lora_adapter(llama_dir, folder):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    model = load_model(str(llama_dir)).model
    cfg = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    peft_model = get_peft_model(model, cfg)
    peft_model.save_pretrained(folder)
    return peft_model.merge_and_unload().eval()


def test_peft_adapter_is_merged_not_ignored(llama_dir, tmp_path):
    merged = _lora_adapter(llama_dir, tmp_path / "lora")
    hf = HFLM(pretrained=merged, tokenizer=load_model(str(llama_dir)).tokenizer, batch_size=4)
    t2 = _t2(llama_dir, peft=str(tmp_path / "lora"))
    base = _t2(llama_dir).loglikelihood(_ll_requests())
    got = t2.loglikelihood(_ll_requests())
    assert got == hf.loglikelihood(_ll_requests())
    assert got != base  # the adapter changed the scores: it was applied
    assert t2.t2_summary()["peft"] == str(tmp_path / "lora")
    assert t2.t2_summary()["peft_merged"] is True


def test_peft_errors_name_the_fix(llama_dir, tmp_path, expert_dir):
    with pytest.raises(ConfigError, match="no adapter_config.json"):
        _t2(llama_dir, peft=str(tmp_path))
    _lora_adapter(llama_dir, tmp_path / "lora")
    with pytest.raises(ConfigError, match="separate runs"):
        _t2(llama_dir, peft=str(tmp_path / "lora"), experts=str(expert_dir))
