"""Model loading: packaged asset, local folder, hub id, and the errors for each."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_tokenizer as _tiny_tokenizer

from t2bench import assets, models
from t2bench.errors import AssetMissingError, ConfigError, T2BenchError


def test_local_folder_loads_with_its_path_as_id(llama, tmp_path):
    llama.save_pretrained(tmp_path)
    _tiny_tokenizer().save_pretrained(tmp_path)
    lm = models.load_model(str(tmp_path), device="cpu")
    assert lm.model_id == str(tmp_path.resolve())
    assert lm.tokenizer.pad_token == "</s>"  # pad falls back to eos for batching
    assert not lm.model.training
    ids = torch.tensor([[1, 2, 3]])
    assert torch.equal(lm.model(ids).logits, llama(ids).logits)


def test_bf16_dtype(llama, tmp_path):
    llama.save_pretrained(tmp_path)
    _tiny_tokenizer().save_pretrained(tmp_path)
    assert models.load_model(str(tmp_path), dtype="bf16").model.dtype == torch.bfloat16
    with pytest.raises(ConfigError, match="unknown dtype 'int3'"):
        models.load_model(str(tmp_path), dtype="int3")


def test_folder_without_config_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="without config.json"):
        models.load_model(str(tmp_path))


def test_hub_id_goes_to_from_pretrained_unchanged(monkeypatch):
    import transformers

    calls = []

    def fake(source, **kw):
        calls.append(source)
        raise OSError("no hub here")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", fake)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(T2BenchError, match="HF_HUB_OFFLINE is set"):
        models.load_model("meta-llama/Meta-Llama-3-8B-Instruct")
    assert calls == ["meta-llama/Meta-Llama-3-8B-Instruct"]


def test_asset_names_resolve_to_the_cached_folder(monkeypatch, tmp_path):
    seen = []
    monkeypatch.setattr(assets, "ensure_model", lambda name: seen.append(name) or tmp_path)
    assert models.resolve_source(None) == ("smollm2-135m-instruct", str(tmp_path))
    assert models.resolve_source("gemma3") == ("gemma-3-270m", str(tmp_path))
    assert seen == ["smollm2-135m-instruct", "gemma-3-270m"]


def test_missing_default_model_offline_names_the_fetch_command(monkeypatch, tmp_path):
    monkeypatch.setenv("T2BENCH_HOME", str(tmp_path))
    monkeypatch.setenv("T2BENCH_OFFLINE", "1")
    with pytest.raises(AssetMissingError, match="t2bench assets fetch smollm2-135m-instruct"):
        models.load_model()


def test_device_resolution():
    assert models.resolve_device("cpu") == torch.device("cpu")
    assert models.resolve_device(None).type in ("cpu", "cuda", "mps")
