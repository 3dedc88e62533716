"""dispatch=router: a tiny local BERT encoder and a separable synthetic label set (no downloads)."""

from __future__ import annotations

import random
import time

import pytest
import torch

from t2bench.dispatch import BASE, DispatchRequest, make_dispatcher
from t2bench.dispatch import router as router_mod
from t2bench.dispatch.base import DispatchContext
from t2bench.dispatch.categories import EXPERT_LABELS
from t2bench.dispatch.router import (
    EmbeddingRouter,
    RouterConfig,
    RouterDispatch,
    SentenceEncoder,
    router_training_set,
    router_validation_set,
)
from t2bench.errors import ConfigError

WORDS = {
    "code": "python function program loop string class variable compile debug array".split(),
    "math": "add sum number plus minus times divide fraction total equation".split(),
    "reasoning": "why because science animal plant weather earth energy cause effect".split(),
}
FILLER = "the a of what is which to in for and with on".split()
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
EXPERT_NAMES = {label: f"{label}-x" for label in EXPERT_LABELS}


def _texts(label: str, n: int, rng: random.Random) -> list[str]:
    out = []
    for _ in range(n):
        words = rng.sample(WORDS[label], 5) + rng.sample(FILLER, 2)
        rng.shuffle(words)
        out.append(" ".join(words) + " ?")
    return out


def _dataset(n: int, seed: int) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    texts, labels = [], []
    for label in EXPERT_LABELS:
        texts += _texts(label, n, rng)
        labels += [label] * n
    return texts, labels


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    """A seeded 1-layer BERT with a word vocabulary, saved like a Hugging Face folder."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = tmp_path_factory.mktemp("enc") / "tiny-bert"
    folder.mkdir()
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(SPECIAL + FILLER + ["?"] + sum(WORDS.values(), [])) + "\n")
    # transformers 5 reads ``vocab``, 4.x ``vocab_file``; each ignores the other
    tokenizer = BertTokenizerFast(vocab=str(vocab), vocab_file=str(vocab))
    assert tokenizer.unk_token_id not in tokenizer("add the sum ?")["input_ids"]
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=len(vocab.read_text().split()),
        hidden_size=64,  # at 32 random embeddings separate the labels only ~80% of the time
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=96,
        max_position_embeddings=64,
    )
    BertModel(cfg).eval().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def experts():
    """Identity SVF experts named so that label_experts maps code/math/reasoning to them."""
    from conftest import tiny_llama

    from t2bench.svf import TargetSpec, decompose, identity_expert

    d = decompose(
        tiny_llama(layers=1), TargetSpec("mlp"), model_id="tiny", use_cache=False, progress=False
    )
    return {n: identity_expert(d, name=n) for n in EXPERT_NAMES.values()}


@pytest.fixture
def home(tmp_path, monkeypatch):
    """Isolated cache and the synthetic train / valid sets in place of the classifier task."""
    monkeypatch.setenv("T2BENCH_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(router_mod, "router_training_set", lambda seed=0: _dataset(30, seed))
    monkeypatch.setattr(router_mod, "router_validation_set", lambda seed=0: _dataset(10, 100))
    return tmp_path / "home"


def _bound(spec: str, experts) -> RouterDispatch:
    d = make_dispatcher(spec, experts)
    assert isinstance(d, RouterDispatch)
    d.bind(DispatchContext(model=None, tokenizer=None, experts=experts))
    return d


def _held_out() -> tuple[list[DispatchRequest], list[str]]:
    texts, labels = _dataset(8, 7)
    return [DispatchRequest(t) for t in texts], labels


# --------------------------------------------------------------------------- encoder


def test_encoder_unit_vectors_ignore_padding(encoder_dir):
    enc = SentenceEncoder(encoder_dir)
    short, long = "add the sum ?", "python function with a loop on the string array class ?"
    alone = enc.encode([short])
    both = enc.encode([long, short], batch_size=2)  # short is padded in this batch
    assert both.shape == (2, enc.dim) and both.dtype == torch.float32
    assert torch.allclose(both.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert torch.allclose(alone[0], both[1], atol=1e-5)  # mean pooling respects the mask
    assert enc.forward_passes == 2
    assert enc.fingerprint.startswith("local:tiny-bert@") and enc.fingerprint == enc.fingerprint
    assert enc.encode([]).shape == (0, enc.dim)


def test_training_set_is_bare_train_questions():
    from t2bench.classify_prompt import CLASSIFY_INSTRUCTION, question_in
    from t2bench.data.splits import load_splits

    texts, labels = router_training_set(0)
    valid_texts, _ = router_validation_set(0)
    splits = load_splits("classifier", 0)
    assert len(texts) == len(splits.train) and set(labels) == set(EXPERT_LABELS)
    assert not any(CLASSIFY_INSTRUCTION in t or t.startswith("Question:") for t in texts)
    assert labels == [it.target for it in splits.train]
    assert not set(texts) & set(valid_texts)
    assert not set(texts) & {question_in(it.prompt) for it in splits.test}


# --------------------------------------------------------------------------- routing


@pytest.mark.parametrize("method", ["centroid", "logreg"])
def test_routes_held_out_texts(home, encoder_dir, experts, method):
    d = _bound(f"router:method={method};encoder={encoder_dir}", experts)
    requests, labels = _held_out()
    choices = d.choose(requests)
    assert [c.key for c in choices] == [EXPERT_NAMES[label] for label in labels]
    assert all(c.expert is experts[c.key] for c in choices)
    assert d.predict([r.text for r in requests]) == labels
    info = d.describe()
    assert info["strategy"] == "router" and info["method"] == method
    assert info["valid_accuracy"] == 1.0 and info["n_train"] == 90
    assert info["experts"] == EXPERT_NAMES
    assert info["labels"] == {label: 8 for label in EXPERT_LABELS}
    assert info["loaded_from_cache"] is False and info["cache_path"].startswith(str(home))


def test_second_construction_loads_from_cache_and_refit_refits(home, encoder_dir, experts):
    spec = f"router:method=logreg;encoder={encoder_dir}"
    first = _bound(spec, experts)
    path = first.router.path
    assert first.loaded_from_cache is False and path.is_file()
    assert path.with_suffix(".json").is_file() and path.parent == home / "routers"
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]

    second = _bound(spec, experts)
    assert second.loaded_from_cache is True and second.router.path == path
    assert torch.equal(second.router.fitted.weight, first.router.fitted.weight)
    texts = [r.text for r in _held_out()[0]]
    assert second.predict(texts) == first.predict(texts)

    other = _bound(spec.replace("logreg", "centroid"), experts)  # another fit, another key
    assert other.loaded_from_cache is False and other.router.path != path

    again = _bound(spec + ";refit=true", experts)
    assert again.loaded_from_cache is False and again.router.path == path
    assert again.predict(texts) == first.predict(texts)


def test_corrupt_cache_is_refitted_with_a_warning(home, encoder_dir, experts, caplog):
    spec = f"router:encoder={encoder_dir}"
    path = _bound(spec, experts).router.path
    path.write_bytes(b"not a safetensors file")
    with caplog.at_level("WARNING", logger="t2bench.dispatch.router"):
        d = _bound(spec, experts)
    assert d.loaded_from_cache is False
    assert any("unusable" in r.getMessage() for r in caplog.records)
    requests, labels = _held_out()
    assert [c.key for c in d.choose(requests)] == [EXPERT_NAMES[label] for label in labels]
    assert _bound(spec, experts).loaded_from_cache is True  # the refit was written back

    path.with_suffix(".json").write_text("{")  # a broken sidecar is no better
    assert _bound(spec, experts).loaded_from_cache is False


@pytest.mark.parametrize("method,threshold", [("centroid", 1.01), ("logreg", 1.01)])
def test_high_threshold_sends_everything_to_base(home, encoder_dir, experts, method, threshold):
    d = _bound(f"router:method={method};threshold={threshold};encoder={encoder_dir}", experts)
    requests, _ = _held_out()
    assert d.choose(requests) == [BASE] * len(requests)
    assert d.describe()["labels"] == {"other": len(requests)}
    assert d.describe()["valid_accuracy"] == 1.0  # the threshold only acts at dispatch time


def test_duplicate_texts_are_encoded_once(home, encoder_dir, experts, monkeypatch):
    d = _bound(f"router:encoder={encoder_dir}", experts)
    seen: list[str] = []
    encode = d.router.encoder.encode

    def spy(texts, *args, **kwargs):
        seen.extend(texts)
        return encode(texts, *args, **kwargs)

    monkeypatch.setattr(d.router.encoder, "encode", spy)
    a, b = "add the sum plus number ?", "python loop on a string ?"
    reqs = [DispatchRequest(t) for t in (a, a, b, a)]
    keys = [c.key for c in d.choose(reqs)]
    assert keys == ["math-x", "math-x", "code-x", "math-x"]
    assert sorted(seen) == sorted([a, b])
    assert [c.key for c in d.choose(reqs[:2])] == ["math-x"] * 2  # memo across calls
    assert len(seen) == 2
    info = d.describe()
    assert info["classified"] == 2 and info["encoder_batches"] == 1


def test_embedding_router_predicts_without_experts(home, encoder_dir):
    r = EmbeddingRouter(RouterConfig(encoder=str(encoder_dir)))
    _, labels = _held_out()
    texts = [q.text for q in _held_out()[0]]
    assert r.predict(texts) == labels
    assert r.meta["train_fingerprint"] and r.meta["provenance"]["commit"]


# --------------------------------------------------------------------------- errors


def test_no_experts_fails_at_construction():
    with pytest.raises(ConfigError, match="none are loaded"):
        make_dispatcher("router", {})


def test_unknown_option_is_named(experts):
    with pytest.raises(ConfigError, match="foo"):
        make_dispatcher("router:foo=1", experts)
    with pytest.raises(ConfigError, match="method"):
        make_dispatcher("router:method=knn", experts)


def test_choose_before_bind(experts):
    d = make_dispatcher("router", experts)
    assert d.describe()["bound"] is False
    with pytest.raises(ConfigError, match="bind"):
        d.choose([DispatchRequest("add the sum ?")])
    with pytest.raises(ConfigError, match="bind"):
        d.predict(["add the sum ?"])


# --------------------------------------------------------------------------- real


@pytest.mark.real
@pytest.mark.parametrize("method", ["centroid", "logreg"])
def test_real_minilm_on_the_classifier_split(tmp_path, monkeypatch, method):
    """The packaged all-MiniLM-L6-v2 fitted on the classifier train split; valid ≥ 0.8."""
    monkeypatch.setattr(router_mod, "router_cache_dir", lambda: tmp_path / "routers")
    t0 = time.perf_counter()
    r = EmbeddingRouter(RouterConfig(method=method))
    seconds = time.perf_counter() - t0
    acc = r.meta["valid_accuracy"]
    print(
        f"\nrouter {method}: valid accuracy {acc} on {r.meta['n_valid']}, "
        f"n_train {r.meta['n_train']}, fit {r.meta['fit_seconds']} s "
        f"(encode {r.meta['encode_seconds']} s), total {seconds:.1f} s, "
        f"confusion {r.meta['valid_confusion']}"
    )
    assert r.loaded_from_cache is False
    assert acc >= 0.8
    assert r.predict(["Write a python function to reverse a list."]) == ["code"]
