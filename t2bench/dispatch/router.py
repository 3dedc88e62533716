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

import logging
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

import torch

from t2bench.core.provenance import provenance
from t2bench.dispatch.base import (
    Choice,
    DispatchContext,
    Dispatcher,
    DispatchRequest,
    options_to_config,
    register_dispatcher,
)
from t2bench.dispatch.categories import EXPERT_LABELS, choice_for, label_experts, question_of
from t2bench.dispatch.router_fit import (
    CACHE_FORMAT,
    FittedRouter,
    RouterConfig,
    cache_key,
    data_fingerprint,
    fit_router,
    load_router,
    router_cache_dir,
    router_training_set,
    router_validation_set,
    save_router,
)
from t2bench.dispatch.sentence_encoder import SentenceEncoder, model_device
from t2bench.svf.expert import Expert

log = logging.getLogger(__name__)


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
    shardable = True  # one embedding and prediction per question

    def __init__(self, config: RouterConfig, experts: Mapping[str, Expert]):
        self.config = config
        self.mapping = label_experts(experts, strategy=self.name)  # fail before any loading
        self.router: EmbeddingRouter | None = None

    def bind(self, ctx: DispatchContext) -> None:
        """Load the encoder on the model's device and fit (or load) the router."""
        super().bind(ctx)
        if self.router is None:
            self.router = EmbeddingRouter(self.config, device=model_device(ctx.model))

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
