"""Shared state of one ablation run: its folder, profile, provenance and a memo of every
evaluation, so tables that need the same numbers (Table 1 and Table 4 share the math items,
Table 2 and the α figure share the CEM runs) compute them once.

The memo is written to ``<run>/evaluations.jsonl`` as each evaluation finishes; ``--resume``
on an interrupted run reads it back instead of recomputing.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from t2bench.ablations.profile import AblationProfile
from t2bench.core.provenance import git_commit, provenance
from t2bench.core.run import JsonlLog
from t2bench.data.splits import load_splits
from t2bench.generation import DEFAULT_NEW_TOKENS
from t2bench.svf import TargetSpec, decompose, load_experts
from t2bench.svf.expert import effective_z
from t2bench.train.policy import compute_dtype_name


def precision_key(dtype: str) -> str:
    """The memo-key suffix of an evaluation computed in ``dtype``: empty for fp32, so a resumed
    fp32 run still finds the evaluations it wrote before keys named their dtype."""
    return "" if dtype == "float32" else f"|{dtype}"


class AblationContext:
    def __init__(self, profile: AblationProfile, folder: Path, *, resume: bool = False):
        self.profile = profile
        self.folder = Path(folder)
        # a new run takes a new folder (or the empty one :func:`t2bench.core.io.new_folder` made)
        fresh = self.folder.is_dir() and not any(self.folder.iterdir())
        self.folder.mkdir(parents=True, exist_ok=resume or fresh)
        self.memo_path = self.folder / "evaluations.jsonl"
        # each record is flushed to disk as it is appended; a last line cut by a kill is
        # dropped (and its evaluation redone) when a resumed run reads the memo back
        self._memo_log = JsonlLog(self.memo_path)
        self.memo: dict[str, dict] = {}
        if resume:
            self.memo = {rec["key"]: rec for rec in self._memo_log.records()}
        self.started = time.perf_counter()
        # the code that runs is the code at the start: later commits or edits in the checkout
        # (made while a long run goes on) must not be credited with its numbers
        self.commit = git_commit()
        self._spread: dict[str, float] = {}
        self._lm = None
        # the machine does not change during a run: ``auto`` is resolved once
        self._lmeval_dtype = compute_dtype_name(profile.lmeval_dtype)

    # ------------------------------------------------------------------ memo

    def remember(self, key: str, compute) -> dict:
        """``compute()`` once per key and run; its result (JSON-able dict) is appended to the memo."""
        if key in self.memo:
            return self.memo[key]
        t0 = time.perf_counter()
        rec = dict(compute())
        rec["key"] = key
        rec.setdefault("seconds", round(time.perf_counter() - t0, 2))
        self.memo[key] = rec
        self._memo_log.append(rec, default=str)
        return rec

    # ------------------------------------------------------------------ evaluations

    def heldout(self, task: str, variant) -> dict:
        """Greedy per-item correctness of one variant on the held-out test items of ``task``."""
        from t2bench.train.heldout import heldout_items, score_variant

        n = self.profile.heldout_n.get(task)
        difficulty = self.profile.heldout_difficulty.get(task, "default")
        dtype = compute_dtype_name(self.profile.compute_dtype)

        def compute():
            import torch

            size = n or len(load_splits(task, seed=0, difficulty=difficulty).test)
            items, split = heldout_items(task, size, self.profile.seed, difficulty)
            applied: dict = {}
            with torch.no_grad():
                ok = score_variant(
                    variant,
                    self.profile.model,
                    items,
                    task,
                    DEFAULT_NEW_TOKENS[task],
                    self.profile.batch_size,
                    applied=applied,
                    compute_dtype=dtype,
                )
            return {
                **applied,
                "kind": "heldout",
                "task": task,
                "variant": variant.name,
                "artifact": str(variant.path) if variant.path else None,
                "uids": [it.uid for it in items],
                "scores": [int(x) for x in ok],
                "split": split,
                "max_new_tokens": DEFAULT_NEW_TOKENS[task],
                "compute_dtype": dtype,
            }

        level = "" if difficulty == "default" else f"|{difficulty}"
        key = f"heldout|{task}{level}|{n}|{variant.name}|{variant.path}{precision_key(dtype)}"
        return self.remember(key, compute)

    def lmeval_dtype(self) -> str:
        """The dtype the lm-eval runs and their first passes compute in (``auto`` resolved)."""
        return self._lmeval_dtype

    def lmeval(self, task: str, model_args: str, *, n: int | None, label: str) -> dict:
        """Per-document scores of one ``lm_eval --model t2`` run on the first ``n`` docs, in
        :meth:`lmeval_dtype` (named in ``model_args`` unless float32)."""
        from t2bench.bench.dispatch import run_lm_eval

        gen = self.profile.max_gen_toks.get(task)
        dtype = self.lmeval_dtype()
        if dtype != "float32":
            model_args = f"{model_args},dtype={dtype}"

        def compute():
            os.environ.setdefault("HF_ALLOW_CODE_EVAL", "1")
            r = run_lm_eval(model_args, task, n, gen, self.profile.batch_size)
            docs = sorted(r["per_doc"])
            return {
                "kind": "lm-eval",
                "task": task,
                "label": label,
                "model_args": model_args,
                "doc_ids": docs,
                "scores": [r["per_doc"][d] for d in docs],
                "metric": r["metric"],
                "filter": r["filter"],
                "aggregate": r["score"],
                "max_gen_toks": gen,
                "dtype": dtype,
                "t2": r["t2"],
                "seconds": r["wall_seconds"],
            }

        return self.remember(f"lm-eval|{task}|{n}|{gen}|{model_args}", compute)

    # ------------------------------------------------------------------ provenance

    def provenance(self, **extra: Any) -> dict:
        now = git_commit()
        if now != self.commit:
            extra["commit_when_written"] = now
        return provenance(
            commit=self.commit,
            profile=asdict(self.profile),
            run_folder=str(self.folder),
            base_model=self.profile.model or "smollm2-135m-instruct",
            seed=self.profile.seed,
            lmeval_dtype=self.lmeval_dtype(),
            **extra,
        )

    def shared_lm(self):
        """One loaded base model for first passes (dispatchers restore it after use), in the
        lm-eval runs' dtype so that Table 3 times both passes alike."""
        if self._lm is None:
            from t2bench.models import load_model

            self._lm = load_model(self.profile.model, dtype=self.lmeval_dtype())
        return self._lm

    def expert_spread(self, experts: str) -> float:
        if experts not in self._spread:
            self._spread[experts] = expert_spread(experts, self.profile.model)
        return self._spread[experts]

    def elapsed(self) -> float:
        return round(time.perf_counter() - self.started, 1)


def expert_spread(experts: str, model: str | None = None) -> float:
    """max |z − 1| over every vector of the SVF experts in ``experts`` (effective z)."""
    from t2bench.models import load_model

    loaded = load_experts(experts)
    lm = load_model(model)
    worst = 0.0
    for e in loaded:
        spec = TargetSpec(e.meta.module_set, ",".join(map(str, e.meta.layers)))
        dec = decompose(lm.model, spec, model_id=lm.model_id, progress=False)
        for z in effective_z(e, dec.sigmas()).values():
            worst = max(worst, float((z - 1).abs().max()))
    return worst
