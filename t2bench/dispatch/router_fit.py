"""Fitting the router: its config, its data (the bare questions of the ``classifier`` task's train
split; the valid split only measures accuracy; the test split is never read), the two fits
(nearest label centroid, multinomial logistic regression) and the on-disk cache of fitted
routers under a key that hashes every input of the fit."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F

from t2bench.assets.store import cache_root
from t2bench.classify_prompt import question_in
from t2bench.core.io import file_sha256, replacing, write_atomic
from t2bench.data.splits import load_splits
from t2bench.dispatch.categories import EXPERT_LABELS
from t2bench.dispatch.sentence_encoder import SentenceEncoder
from t2bench.errors import ConfigError

log = logging.getLogger(__name__)

#: Bumped when the fit or the file layout changes, so old cached routers are not reused.
CACHE_FORMAT = 1
METHODS = ("centroid", "logreg")
OTHER = "other"


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
            "t2bench.data.splits changed its prompt format; update router_fit._bare_question"
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
