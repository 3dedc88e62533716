"""Tiny seeded models built locally (no downloads) and the --real opt-in."""

from __future__ import annotations

import pytest
import torch


def pytest_addoption(parser):
    parser.addoption("--real", action="store_true", help="run tests on the real packaged model")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--real"):
        return
    skip = pytest.mark.skip(reason="real-model test: opt in with --real (nox -s tests_real)")
    for item in items:
        if "real" in item.keywords:
            item.add_marker(skip)


def code_runner_for_tests() -> str:
    """The code runner for tests of code execution that run benign programs: ``bwrap`` where
    bubblewrap works here, else ``unisolated``, chosen explicitly (the programs are the tests'
    own). Hostile programs run only under ``bwrap`` (tests/test_sandbox.py skips without it)."""
    from t2bench.tasks import sandbox

    try:
        return sandbox.check_runner(sandbox.BWRAP)
    except sandbox.SandboxUnavailable:
        return sandbox.UNISOLATED


@pytest.fixture
def code_ok(monkeypatch) -> str:
    """Code execution opted in (``HF_ALLOW_CODE_EVAL=1``) with :func:`code_runner_for_tests`
    chosen through ``T2BENCH_CODE_RUNNER``; returns the runner."""
    from t2bench.tasks.code_exec import ENV_FLAG, RUNNER_ENV

    runner = code_runner_for_tests()
    monkeypatch.setenv(ENV_FLAG, "1")
    monkeypatch.setenv(RUNNER_ENV, runner)
    return runner


def tiny_llama(seed: int = 0, layers: int = 4):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    cfg._name_or_path = "tiny-llama"
    return LlamaForCausalLM(cfg).eval()


def tiny_gemma(seed: int = 0, layers: int = 3):
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(seed)
    cfg = Gemma3TextConfig(
        vocab_size=64,
        hidden_size=40,
        intermediate_size=56,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        max_position_embeddings=64,
        sliding_window=8,
    )
    cfg._name_or_path = "tiny-gemma"
    return Gemma3ForCausalLM(cfg).eval()


def need_data(*names: str) -> None:
    """Skip (with the reason) unless the packaged data assets are cached; never download."""
    from t2bench.assets import ensure_data
    from t2bench.errors import AssetMissingError

    for name in names:
        try:
            ensure_data(name, download=False)
        except AssetMissingError as exc:
            pytest.skip(f"data asset {name!r} is not cached ({exc}); fetch it to run this test")


def tiny_tokenizer():
    """A word-level tokenizer over the tiny models' 64 ids: w0 .. w61, <unk>, </s>."""
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers import models as tk_models
    from transformers import PreTrainedTokenizerFast

    vocab = {f"w{i}": i for i in range(62)} | {"<unk>": 62, "</s>": 63}
    tk = Tokenizer(tk_models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", eos_token="</s>")


@pytest.fixture
def llama_dir(tmp_path):
    """A tiny Llama saved as a Hugging Face folder with its tokenizer."""
    folder = tmp_path / "tiny-llama"
    tiny_llama().save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    return folder


@pytest.fixture
def llama():
    return tiny_llama()


@pytest.fixture
def gemma():
    return tiny_gemma()


@pytest.fixture(params=["llama", "gemma"])
def tiny_model(request):
    return tiny_llama() if request.param == "llama" else tiny_gemma()


@pytest.fixture
def tokens():
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 64, (2, 12), generator=g)


# --------------------------------------------------------------------------- image-text models

TINY_VISION = dict(
    image_size=48, patch_size=16, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64
)


def char_tokenizer():
    """One token per printable character (newline included), plus <unk> and </s> (= pad)."""
    import string

    from tokenizers import Tokenizer, decoders
    from tokenizers import models as tk_models
    from transformers import PreTrainedTokenizerFast

    chars = sorted(set(string.printable))
    vocab = {c: i for i, c in enumerate(chars)} | {"<unk>": len(chars), "</s>": len(chars) + 1}
    tk = Tokenizer(tk_models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tk.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=tk, unk_token="<unk>", eos_token="</s>", pad_token="</s>"
    )


def save_char_llama(folder, seed: int = 0) -> str:
    """A 2-layer Llama over :func:`char_tokenizer` (prompts and answers are real tokens)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=104,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
    )
    LlamaForCausalLM(cfg).eval().save_pretrained(folder)
    char_tokenizer().save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def char_llama_dir(tmp_path_factory):
    return save_char_llama(tmp_path_factory.mktemp("char-llama"))


@pytest.fixture(scope="session")
def tiny_vlm_dir(tmp_path_factory, char_llama_dir):
    """A LLaVA folder: the char Llama + a 1-layer 48 px SigLIP tower (9 image tokens)."""
    from t2bench.vlm.assemble import VisionConfig, assemble_vlm

    return str(
        assemble_vlm(
            tmp_path_factory.mktemp("vlm") / "tiny-vlm",
            language_model=char_llama_dir,
            vision=VisionConfig(**TINY_VISION),
        )
    )


def fictional_passages(n: int):
    """n one-question fictional passages ("Zo<i> ... river is Lo<i>") for SEAL tests."""
    from t2bench.seal.passages import QA, Passage

    return [
        Passage(
            f"t-{i}",
            f"Zo{i}",
            f"Zo{i} is a town. Its river is Lo{i}.",
            (QA(f"What river has Zo{i}?", (f"Lo{i}",)),),
            "fictional",
        )
        for i in range(n)
    ]


@pytest.fixture
def tiny_passages():
    """A maker of n one-question fictional passages (:func:`fictional_passages`)."""
    return fictional_passages


@pytest.fixture
def data(tmp_path):
    """12 tiny 'reasoning' items the word-level tokenizer can read (training tests)."""
    import json

    path = tmp_path / "data.jsonl"
    with open(path, "w") as fh:
        for i in range(12):
            item = {"prompt": f"w{i} w{i + 1} w{i + 2}\nA. w1\nB. w2", "target": "AB"[i % 2]}
            fh.write(json.dumps(item | {"reference": "w3 w4"}) + "\n")
    return path


def tiny_seal_config(model, out, **kw):
    """A SealConfig of two short ReST-EM rounds over two passages; ``kw`` overrides."""
    from t2bench.seal.inner import InnerConfig
    from t2bench.seal.restem import SealConfig

    base = dict(
        output_dir=str(out),
        model=str(model),
        n_train=2,
        k=2,
        rounds=2,
        max_new_tokens=16,
        qa_max_new_tokens=6,
        inner=InnerConfig(steps=2, lr=1e-2),
        sft_steps_per_pair=1,
        progress=False,
    )
    return SealConfig(**(base | kw))


def random_expert_file(model_dir, folder, name: str = "probe", seed: int = 0):
    """An SVF expert of the MLP of the model in ``model_dir`` with z drawn from 1 ± 0.4 (it
    changes the model's scores visibly), saved under ``folder``; returns its path."""
    from t2bench.models import load_model
    from t2bench.svf import TargetSpec, decompose, identity_expert, save_expert

    lm = load_model(str(model_dir))
    d = decompose(lm.model, TargetSpec("mlp"), model_id=lm.model_id, progress=False)
    e = identity_expert(d, name=name)
    g = torch.Generator().manual_seed(seed)
    e.params = {k: 1 + 0.8 * (torch.rand(v.shape, generator=g) - 0.5) for k, v in e.params.items()}
    return save_expert(e, folder / name)


def tiny_train_config(llama_dir, data, out, **kw):
    """A TrainConfig of a few steps on the tiny model and the ``data`` items; ``kw`` overrides."""
    from t2bench.train.config import TrainConfig

    base = dict(
        model=str(llama_dir),
        task="reasoning",
        data=str(data),
        valid_data=str(data),
        output_dir=str(out),
        steps=4,
        global_batch=4,
        micro_batch=2,
        eval_every=2,
        eval_size=4,
        max_new_tokens=4,
        progress=False,
        seed=3,
    )
    return TrainConfig(**(base | kw))


def train_cli_args(cfg) -> list[str]:
    """``python -m t2bench.train`` flags that rebuild ``cfg`` (None and dict fields left out)."""
    out = []
    for k, v in cfg.to_dict().items():
        if v is None or isinstance(v, dict):
            continue
        flag = "--" + k.replace("_", "-")
        if isinstance(v, bool):
            out.append(flag if v else "--no-" + k.replace("_", "-"))
        else:
            out += [flag, str(v)]
    return out
