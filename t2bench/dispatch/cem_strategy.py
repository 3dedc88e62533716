"""Strategy ``cem`` (few-shot adaptation): per task, mix the experts as z' = Σ_k α_k z_k with α
found by CEM (:mod:`t2bench.dispatch.cem_optimizer`).

For each task the requests name, ``k`` shot documents are drawn from a split the evaluation
does not score, the task's own lm-eval pipeline (context, requests, filters, metric) scores
candidate mixtures on them, and the best α answers every request of that task:

* shots come from the task's validation split (or training split) when the evaluated split is
  another one; tasks with one split only (HumanEval, MATH, SciQ as packaged) reserve their
  *last* ``k`` documents, and a request for a reserved document is refused, so no scored item
  ever chooses α (evaluate with ``--limit`` ≤ N−k, which :func:`scorable_limit` computes, or
  ``--samples`` without them);
* fitness = (accuracy on the shots, mean per-token log-likelihood of the gold answers); the
  second term only breaks ties;
* α is global (one per expert) or per matrix (one per expert per adapted matrix), clipped to
  [low, high]; the start is α = 1/K;
* with ``normalise`` (the default) every candidate α is divided by its sum over the experts
  (per matrix when α is per matrix) before it is scored, so CEM searches the simplex: the mix
  chooses a direction among the experts instead of also rescaling every singular value; an
  all-zero candidate becomes 1/K. ``normalise=false`` is the paper's unnormalised search;
  Σα is recorded either way (``alpha_sum`` in ``describe()``);
* the result (α, its fitness history, cost and provenance) is cached on disk under a key of
  everything that determines it, written as safetensors + JSON + a plot, and reused.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import random
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from t2bench.assets.store import cache_root
from t2bench.core.io import replacing, write_json_atomic
from t2bench.core.provenance import provenance
from t2bench.dispatch.base import (
    Choice,
    Dispatcher,
    DispatchRequest,
    options_to_config,
    register_dispatcher,
)
from t2bench.dispatch.categories import label_experts
from t2bench.dispatch.cem_optimizer import CEMConfig, CEMResult, cem, normalise_columns
from t2bench.dispatch.first_pass import count_forwards
from t2bench.errors import ConfigError
from t2bench.svf.expert import Expert, check_same_layout, mix
from t2bench.tasks import tasks_dir

log = logging.getLogger(__name__)

# Gold answers to score the tie-break on, where doc_to_target is not the answer text.
GOLD_FIELDS = {"humaneval": "canonical_solution", "minerva_math": "solution"}


@dataclass
class FewShotConfig(CEMConfig):
    """The optimiser's settings (population, elite_ratio, iterations, init_std, low, high,
    min_std, seed) and the few-shot search's own."""

    shots: int = 5
    per_matrix: bool = False
    normalise: bool = True  # α summed over the experts is 1 (per matrix); false: unconstrained
    max_gen_toks: int = 256  # cap on the shots' generations; 0 keeps the task's own
    shot_split: Literal["auto", "validation", "train", "test-tail"] = "auto"
    out: str = ""  # where α records go; default <T2BENCH_HOME>/cem
    cache: bool = True

    def cem(self) -> CEMConfig:
        """The optimiser's settings alone."""
        return CEMConfig(**{f.name: getattr(self, f.name) for f in fields(CEMConfig)})


def _out_dir(cfg: FewShotConfig) -> Path:
    if cfg.out:
        return Path(cfg.out)

    return cache_root() / "cem"


# --------------------------------------------------------------------------- shots


@dataclass
class Shots:
    """The shot documents of one task, their lm-eval requests and gold continuations."""

    task_name: str
    task: Any
    split: str
    doc_ids: list[int]
    docs: list[dict]
    requests: list[list[Any]]  # per doc, its lm-eval Instances
    gold: list[tuple[str, str]]  # per doc, (context, gold continuation) for the tie-break
    reserved: set[int] = field(default_factory=set)  # evaluation doc ids used as shots


def _gold_text(task, task_name: str, doc: dict) -> str:
    for prefix, key in GOLD_FIELDS.items():
        if task_name.startswith(prefix) and key in doc:
            return str(doc[key])
    if task.OUTPUT_TYPE == "multiple_choice":
        target = task.doc_to_target(doc)
        choices = task.doc_to_choice(doc)
        return choices[target] if isinstance(target, int) else str(target)
    return str(task.doc_to_target(doc))


def load_task(task_name: str):
    """The lm-eval Task object (t2bench's offline task folder first, then lm-eval's own)."""
    from lm_eval.tasks import TaskManager, get_task_dict

    tasks = get_task_dict([task_name], TaskManager(include_path=str(tasks_dir())))
    flat = {}
    stack = list(tasks.items())
    while stack:
        name, obj = stack.pop()
        if isinstance(obj, dict):
            stack.extend(obj.items())
        else:
            flat[obj.config.task] = obj
    if task_name not in flat:
        raise ConfigError(
            f"dispatch=cem works per task: {task_name!r} resolves to {sorted(flat)}; its "
            "requests should name one of those"
        )
    return flat[task_name]


def shot_split(task, task_name: str, cfg: FewShotConfig) -> str:
    """The split ``cfg`` draws ``task``'s shots from (``auto``: one the evaluation does not
    score, else the test tail); a split the task lacks or evaluates is a ConfigError."""
    evaluated = "test" if task.has_test_docs() else "validation"
    split = cfg.shot_split
    if split == "auto":
        if evaluated == "test" and task.has_validation_docs():
            split = "validation"
        elif task.has_training_docs():
            split = "train"
        else:
            split = "test-tail"
    if split == "validation" and (evaluated == "validation" or not task.has_validation_docs()):
        raise ConfigError(
            f"dispatch=cem:shot_split=validation: task {task_name} evaluates its validation split "
            "or has none; use shot_split=train or test-tail"
        )
    if split == "train" and not task.has_training_docs():
        raise ConfigError(f"dispatch=cem:shot_split=train: task {task_name} has no training split")
    return split


@lru_cache(maxsize=64)
def scorable_limit(task_name: str, spec: str | None, n: int | None) -> int | None:
    """How many leading evaluation documents a ``dispatch=cem:<spec>`` run on ``task_name`` may
    score: ``n`` (None = all), capped where the shots are the test tail to the documents
    before them, which the dispatcher refuses to score."""
    cfg = options_to_config(FewShotConfig, spec, "cem")
    task = load_task(task_name)
    split = shot_split(task, task_name, cfg)
    if split != "test-tail":
        return n
    before = tail_ids(task_name, split, len(task.eval_docs), cfg.shots).start
    return before if n is None else min(n, before)


def tail_ids(task_name: str, split: str, size: int, shots: int) -> range:
    """The last ``shots`` of ``size`` documents: the shots of a task with one split."""
    if size <= shots:
        raise ConfigError(
            f"dispatch=cem: task {task_name} has {size} documents in its {split} split, "
            f"not more than shots={shots}"
        )
    return range(size - shots, size)


def build_shots(task_name: str, cfg: FewShotConfig) -> Shots:
    task = load_task(task_name)
    split = shot_split(task, task_name, cfg)
    if split == "validation":
        pool = list(task.validation_docs())
    elif split == "train":
        pool = list(task.training_docs())
    else:
        pool = list(task.eval_docs)
    tail = tail_ids(task_name, split, len(pool), cfg.shots)  # refuses a pool of ≤ shots docs
    if split == "test-tail":
        ids = list(tail)
    else:
        ids = sorted(random.Random(f"{cfg.seed}-{task_name}").sample(range(len(pool)), cfg.shots))
    docs = [pool[i] for i in ids]
    nshot = task.config.num_fewshot or 0
    requests, gold = [], []
    for doc_id, doc in zip(ids, docs, strict=True):
        ctx = task.fewshot_context(doc, num_fewshot=nshot, gen_prefix=task.doc_to_prefix(doc))
        inst = task.construct_requests(doc=doc, ctx=ctx, metadata=(task_name, doc_id, 1))
        inst = inst if isinstance(inst, list) else [inst]
        if task.OUTPUT_TYPE == "generate_until" and cfg.max_gen_toks:
            for i in inst:
                context, kwargs = i.arguments
                kwargs = dict(kwargs)
                kwargs["max_gen_toks"] = min(int(kwargs.get("max_gen_toks", 256)), cfg.max_gen_toks)
                i.arguments = (context, kwargs)
        requests.append(inst)
        delim = task.config.target_delimiter if task.OUTPUT_TYPE == "multiple_choice" else ""
        gold.append((ctx, delim + _gold_text(task, task_name, doc)))
    return Shots(
        task_name,
        task,
        split,
        ids,
        docs,
        requests,
        gold,
        reserved=set(ids) if split == "test-tail" else set(),
    )


def _metric_value(metrics: dict) -> float:
    value = next(iter(metrics.values()))
    if isinstance(value, dict):
        value = next(iter(value.values()))
    return float(value)


class ShotScorer:
    """Fitness of a choice of weights on a task's shots, through the task's own pipeline."""

    def __init__(self, shots: Shots, run, tokenizer):
        self.shots = shots
        self.run = run
        self.tokenizer = tokenizer
        self._gold_tokens = [
            max(1, len(tokenizer(cont, add_special_tokens=False)["input_ids"]))
            for _, cont in shots.gold
        ]

    def __call__(self, choice: Choice) -> tuple[float, float]:
        from lm_eval.api.instance import Instance

        s = self.shots
        flat = [copy.copy(i) for doc in s.requests for i in doc]
        kind = flat[0].request_type
        method = "generate_until" if kind == "generate_until" else "loglikelihood"
        for i in flat:
            i.resps, i.filtered_resps = [], {}
        out = self.run(choice, method, flat)
        for i, r in zip(flat, out, strict=True):
            i.resps = [r]
        task = s.task
        for f in task._filters:
            f.apply(flat)
        fname = task._filters[0].name
        scores, pos = [], 0
        for doc, reqs in zip(s.docs, s.requests, strict=True):
            mine = flat[pos : pos + len(reqs)]
            pos += len(reqs)
            results = [i.filtered_resps[fname] for i in mine]
            scores.append(_metric_value(task.process_results(doc, results)))
        gold = [
            Instance("loglikelihood", doc, (ctx, cont), 0)
            for doc, (ctx, cont) in zip(s.docs, s.gold, strict=True)
        ]
        lls = [ll for ll, _ in self.run(choice, "loglikelihood", gold)]
        per_token = [ll / n for ll, n in zip(lls, self._gold_tokens, strict=True)]
        return float(np.mean(scores)), float(np.mean(per_token))


# --------------------------------------------------------------------------- records


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def experts_digest(experts: Sequence[Expert]) -> str:
    h = hashlib.sha256()
    for e in experts:
        h.update(e.meta.name.encode())
        for k in sorted(e.params):
            h.update(k.encode())
            h.update(e.params[k].detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


@dataclass
class AlphaRecord:
    """One task's CEM outcome, as cached and published."""

    task: str
    alpha: torch.Tensor  # (K,) or (K, M)
    experts: list[str]
    keys: list[str]
    info: dict

    def save(self, folder: Path, key: str) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"cem-{self.task}-{key}.safetensors"
        with replacing(path) as tmp:
            save_file({"alpha": self.alpha.contiguous()}, str(tmp), metadata={"task": self.task})
        meta = {"task": self.task, "experts": self.experts, "keys": self.keys, **self.info}
        write_json_atomic(path.with_suffix(".json"), meta, indent=1)
        try:
            plot_alpha(self, path.with_suffix(".png"))
        except ImportError:
            log.warning("matplotlib is not installed: α plot skipped (pip install matplotlib)")
        return path

    @classmethod
    def load(cls, path: Path) -> AlphaRecord:
        meta = json.loads(path.with_suffix(".json").read_text())
        alpha = load_file(str(path))["alpha"]
        info = {k: v for k, v in meta.items() if k not in ("task", "experts", "keys")}
        return cls(meta["task"], alpha, meta["experts"], meta["keys"], info)


def plot_alpha(record: AlphaRecord, path: Path) -> Path:
    """Bars of α per expert (global) or a heat map expert × matrix (per matrix), plus fitness."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a = record.alpha.float().numpy()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 3.6), gridspec_kw={"width_ratios": [2, 1]})
    if a.ndim == 1:
        ax.bar(record.experts, a, color="tab:blue")
        ax.set_ylabel("α")
        for i, v in enumerate(a):
            ax.text(i, v, f"{v:.2f}", ha="center", va="bottom")
    else:
        im = ax.imshow(a, aspect="auto", cmap="viridis", vmin=0, vmax=max(1.0, float(a.max())))
        ax.set_yticks(range(len(record.experts)), record.experts)
        ax.set_xlabel("adapted matrix (decomposition order)")
        fig.colorbar(im, ax=ax, label="α")
    ax.set_title(f"CEM α for {record.task}")
    hist = record.info.get("history", [])
    bx.plot(
        [h["iteration"] for h in hist], [h["best"][0] for h in hist], "o-", label="best accuracy"
    )
    bx.set_xlabel("CEM iteration")
    bx.set_ylabel("shot accuracy")
    bx.set_ylim(-0.05, 1.05)
    bx.set_title(f"{record.info.get('shots', '?')} shots ({record.info.get('shot_split', '')})")
    fig.tight_layout()
    # through a temporary sibling: data-parallel processes write the same record at once
    with replacing(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def alpha_sums(alpha: torch.Tensor) -> dict:
    """Σ_k α_k: ``alpha_sum`` is its mean over the adapted matrices (the plain sum when α is
    global), ``alpha_sum_range`` its [min, max] over them (both ends equal when α is global)."""
    sums = alpha.double().reshape(alpha.shape[0], -1).sum(0)
    return {
        "alpha_sum": float(sums.mean()),
        "alpha_sum_range": [float(sums.min()), float(sums.max())],
    }


# --------------------------------------------------------------------------- dispatcher


class FewShotDispatch(Dispatcher):
    """Per task: α by CEM on the task's shots, then every request of the task uses the mix."""

    name = "cem"
    # α depends on the task alone (its shots come from a fixed seed, not from the requests):
    # data-parallel processes each run the same search, or read it from the cache, and agree
    shardable = True

    def __init__(self, config: FewShotConfig, experts: Mapping[str, Expert]):
        config.cem().check()
        if config.shots < 1:
            raise ConfigError("dispatch=cem needs shots >= 1")
        if config.normalise and config.low < 0:
            raise ConfigError(
                f"dispatch=cem:normalise=true puts α on the simplex, which needs low >= 0 (got "
                f"low={config.low}); use normalise=false for signed α"
            )
        self.config = config
        mapping = label_experts(experts, strategy=self.name)
        self.experts = [mapping[k] for k in sorted(mapping)]
        check_same_layout(self.experts)
        self.records: dict[str, AlphaRecord] = {}
        self.choices: dict[str, Choice] = {}
        self.reserved: dict[str, set[int]] = {}

    def choose(self, requests: Sequence[DispatchRequest]) -> list[Choice]:
        out = []
        for r in requests:
            if not r.task:
                raise ConfigError(
                    "dispatch=cem chooses per task: requests must carry their task name "
                    "(lm-eval's do; from Python pass DispatchRequest(text, task=...))"
                )
            if r.task not in self.choices:
                self._adapt(r.task)
            if r.doc_id is not None and r.doc_id in self.reserved[r.task]:
                raise ConfigError(
                    f"dispatch=cem: document {r.doc_id} of task {r.task} is one of its CEM shots "
                    f"(the last {self.config.shots} test documents choose α), so it may not be "
                    f"scored: evaluate with --limit <= {min(self.reserved[r.task])} or --samples "
                    "listing the other documents"
                )
            out.append(self.choices[r.task])
        return out

    def cache_key(self, shots: Shots) -> str:
        ctx = self.context()
        cfg = {f.name: getattr(self.config, f.name) for f in fields(self.config)}
        cfg.pop("out"), cfg.pop("cache")
        return _digest(
            {
                "task": shots.task_name,
                "split": shots.split,
                "doc_ids": shots.doc_ids,
                "model": ctx.patcher.decomposition.fingerprint,
                "experts": experts_digest(self.experts),
                "config": cfg,
                "version": 2,
            }
        )

    def _adapt(self, task: str) -> None:
        ctx = self.context()
        if ctx.run is None:
            raise ConfigError("dispatch=cem needs a backend runner (the t2 backend provides one)")
        shots = build_shots(task, self.config)
        self.reserved[task] = shots.reserved
        key = self.cache_key(shots)
        folder = _out_dir(self.config)
        path = folder / f"cem-{task}-{key}.safetensors"
        record, cached = None, False
        if self.config.cache and path.exists() and path.with_suffix(".json").exists():
            try:
                record, cached = AlphaRecord.load(path), True
                log.info(f"dispatch=cem: α for {task} from {path}")
            except Exception as exc:  # a damaged cache entry is recomputed, not trusted
                log.warning(f"dispatch=cem: ignoring unreadable cache {path} ({exc})")
        if record is None:
            record = self._search(shots, key)
            record.save(folder, key)
        record.info["path"] = str(path)
        record.info["from_cache"] = cached
        self.records[task] = record
        mixture = mix(
            self.experts,
            record.alpha,
            ctx.patcher.decomposition.sigmas(),
            name=f"cem-{task}",
        )
        self.choices[task] = Choice(f"cem:{task}", mixture)

    def _search(self, shots: Shots, key: str) -> AlphaRecord:
        ctx = self.context()
        keys = ctx.patcher.decomposition.keys
        k = len(self.experts)
        shape = (k, len(keys)) if self.config.per_matrix else (k,)
        scorer = ShotScorer(shots, ctx.run, ctx.tokenizer)
        sigmas = ctx.patcher.decomposition.sigmas()
        counter: Counter = Counter()
        applies0 = ctx.patcher.applies
        t0 = time.perf_counter()

        def fitness(x: np.ndarray) -> tuple[float, float]:
            alpha = torch.tensor(x.reshape(shape), dtype=torch.float32)
            candidate = mix(self.experts, alpha, sigmas, name="cem-candidate")
            counter["candidates"] += 1
            return scorer(Choice(f"cem-candidate-{counter['candidates']}", candidate))

        from tqdm.auto import tqdm

        bar = tqdm(total=self.config.iterations, desc=f"cem {shots.task_name}", leave=False)
        project = (lambda x: normalise_columns(x, k)) if self.config.normalise else None
        with count_forwards(ctx.model, counter):
            result: CEMResult = cem(
                fitness,
                np.full(int(np.prod(shape)), 1.0 / k),
                self.config.cem(),
                project=project,
                on_iteration=lambda rec: bar.update(1),
            )
        bar.close()
        wall = time.perf_counter() - t0

        alpha = torch.tensor(result.best.reshape(shape), dtype=torch.float32)
        info = {
            "key": key,
            "shots": self.config.shots,
            "shot_split": shots.split,
            "shot_doc_ids": shots.doc_ids,
            "config": asdict(self.config),
            "per_matrix": self.config.per_matrix,
            "normalise": self.config.normalise,
            **alpha_sums(alpha),
            "fitness": {"accuracy": result.best_fitness[0], "mean_loglik": result.best_fitness[1]},
            "start_fitness": {
                "accuracy": result.start_fitness[0],
                "mean_loglik": result.start_fitness[1],
            },
            "history": result.history,
            "cost": {
                "candidates_scored": result.evaluations,
                "weight_compositions": ctx.patcher.applies - applies0,
                "forward_passes": int(counter["forward_passes"]),
                "seconds": round(wall, 2),
            },
            "provenance": provenance(model_source=ctx.model_id, data_split=shots.split),
        }
        return AlphaRecord(
            shots.task_name,
            alpha,
            [e.meta.name for e in self.experts],
            list(ctx.patcher.decomposition.keys),
            info,
        )

    def describe(self) -> dict:
        return {
            "strategy": self.name,
            "config": asdict(self.config),
            "experts": [e.meta.name for e in self.experts],
            "tasks": {
                t: {
                    "alpha": r.alpha.tolist() if r.alpha.ndim == 1 else "per-matrix",
                    "alpha_mean_per_expert": r.alpha.float()
                    .reshape(len(self.experts), -1)
                    .mean(-1)
                    .tolist(),
                    "normalise": self.config.normalise,
                    **alpha_sums(r.alpha),
                    "shot_split": r.info.get("shot_split"),
                    "shot_doc_ids": r.info.get("shot_doc_ids"),
                    "fitness": r.info.get("fitness"),
                    "cost": r.info.get("cost"),
                    "record": r.info.get("path"),
                    "from_cache": r.info.get("from_cache"),
                }
                for t, r in self.records.items()
            },
        }


register_dispatcher(
    "cem",
    lambda arg, experts: FewShotDispatch(options_to_config(FewShotConfig, arg, "cem"), experts),
)
