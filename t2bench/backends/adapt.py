"""What ``t2`` and ``t2-vlm`` share: experts loaded and checked up front, a dispatcher, and
request groups run under one expert each, in one process or in several data-parallel ones.

Each public request method asks the dispatcher for a choice per request, groups the requests
by choice, composes each group's weights once (not at all when the active weights already
match), runs the parent backend's own batched method on the group, and returns results in the
original order. Tokenisation, length-sorted batching and stop handling stay the parent's.

Data-parallel runs (``accelerate launch --multi_gpu --num_processes N`` or ``torchrun
--nproc_per_node N``): HFLM sets up its ranks only when it loads the model from a name, and t2
hands it a loaded model, so the backend joins the launch itself (:func:`launch_accelerator`,
``_join_data_parallel``). lm-eval's evaluator then gives each process every N-th document and
gathers the per-sample metrics on rank 0. Within a call each process runs its own share alone
(``_one_rank``): HFLM's only collectives inside a call (the cross-rank minimum of an ``auto``
batch size, the padding of rolling windows) keep DDP/FSDP forwards in step, which a plain
model does not need, and a rank with more expert groups than another would wait on them forever.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

from t2bench.core.provenance import provenance, state_sha256
from t2bench.dispatch import (
    BASE,
    Choice,
    DispatchContext,
    DispatchRequest,
    make_dispatcher,
)
from t2bench.errors import ConfigError, ExpertMismatchError
from t2bench.svf import (
    SNAPSHOTS,
    SVFPatcher,
    TargetSpec,
    check_fits,
    decompose,
    load_experts,
)
from t2bench.svf.expert import check_same_layout
from t2bench.svf.patch import TRANSFER_HINT_LM_EVAL
from t2bench.svf.targets import tower_of_keys

eval_logger = logging.getLogger(__name__)

T2_ARGS = {
    "pretrained",
    "share_context",
    "experts",
    "dispatch",
    "modules",
    "layers",
    "transfer",
    "dtype",
    "device",
    "peft",
    "snapshot",
}


def split_expert_paths(experts) -> list[str]:
    """A folder, one file, ``a.safetensors;b.safetensors`` or a list (JSON model_args)."""
    if experts is None or experts == "":
        return []
    if isinstance(experts, (list, tuple)):
        return [str(e) for e in experts]
    return [p.strip() for p in str(experts).split(";") if p.strip()]


def _as_bool(value, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("1", "true", "yes"):
        return True
    if str(value).lower() in ("0", "false", "no", ""):
        return False
    raise ConfigError(f"model_arg {name}={value!r} is not a boolean: use true or false")


def merge_adapter(model, path: str):
    """``model`` with the peft adapter at ``path`` (LoRA, IA3, ...) merged into its weights."""
    if not (Path(path) / "adapter_config.json").is_file():
        raise ConfigError(
            f"peft={path}: no adapter_config.json there. Pass the folder a peft adapter was "
            "saved to (e.g. results/experts/math-lora-ntp/math-lora-ntp)"
        )
    from peft import PeftModel

    return PeftModel.from_pretrained(model, path).merge_and_unload().eval()


def refuse_peft_with_experts(peft, experts) -> None:
    if peft and experts:
        raise ConfigError(
            "peft= and experts= together: SVF experts are decompositions of the base "
            "weights, not of LoRA-merged ones. Evaluate the adapter and the experts in "
            "separate runs"
        )


def available_device(device: str | None) -> str | None:
    """lm-eval's CLI passes device=cuda:0 by default; like hf, fall back to the best available."""
    import torch

    if device and str(device).startswith("cuda") and not torch.cuda.is_available():
        eval_logger.warning(
            f"t2: device {device!r} requested but CUDA is not available; using the best available device"
        )
        return None
    return device


def check_snapshot(snapshot) -> str:
    """The ``snapshot=`` model_arg, checked before the model is loaded."""
    value = "device" if snapshot is None or snapshot == "" else str(snapshot).lower()
    if value not in SNAPSHOTS:
        raise ConfigError(
            f"model_arg snapshot={snapshot!r}: use device (a copy of the adapted base weights "
            "next to them, the default), cpu (the copy in host memory) or disk (no copy: read "
            "back from the model's safetensors files)"
        )
    return value


def weights_folder(source: str | None) -> str | None:
    """The local folder a model's safetensors files are in: ``source`` itself when it is a
    folder, else a hub id's cached snapshot; None when neither is on this machine."""
    if source is None:
        return None
    if Path(source).is_dir():
        return str(source)
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(source, local_files_only=True, allow_patterns=["*.safetensors"])
    except Exception:  # not a hub id, or not cached: snapshot=disk then names the problem
        return None


def launch_accelerator():
    """The Accelerator of a data-parallel launch with more than one process, else None.

    ``WORLD_SIZE`` is what torchrun (and ``accelerate launch --multi_gpu``, which runs it) sets
    for every process; a plain ``python -m lm_eval`` builds no process group at all.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        if os.environ.get("MASTER_ADDR") and os.environ.get("ACCELERATE_USE_CPU", "").lower() in (
            "1",
            "true",
            "yes",
        ):
            # accelerate's --cpu launcher starts one process whatever --num_processes says
            # (CPU multi-process needs an MPI hostfile there); it only sets MASTER_ADDR.
            eval_logger.warning(
                "t2: `accelerate launch --cpu --num_processes N` starts a single process, so this "
                "evaluation runs in 1 process. For N CPU processes run `accelerate launch "
                "--multi_gpu --num_processes N` on a machine without GPUs, or `torchrun "
                "--nproc_per_node N -m lm_eval ...`"
            )
        return None
    import torch
    from accelerate import Accelerator, InitProcessGroupKwargs

    # Without cpu=True accelerate treats a launch on a machine without GPUs as no launch at all
    # (HFLM's own set-up has the same gap): CPU processes then talk over gloo.
    has_gpu = torch.accelerator.is_available() if hasattr(torch, "accelerator") else False
    acc = Accelerator(
        cpu=not (has_gpu or torch.cuda.is_available()),
        # HFLM's own timeout: a process may wait long while another one loads a task or runs
        # a first pass (CEM, a router fit) before the next gather
        kwargs_handlers=[InitProcessGroupKwargs(timeout=timedelta(weeks=52))],
    )
    return acc if acc.num_processes > 1 else None


def process_device(accelerator, device: str | None) -> str | None:
    """Where this process loads the model: the launch's device for it (``cuda:<local rank>``
    or ``cpu``) when data-parallel, like HFLM, else the requested or best available one."""
    if accelerator is None:
        return available_device(device)
    if device and str(device) not in ("cuda", "cuda:0", str(accelerator.device)):
        eval_logger.info(
            f"t2: data-parallel launch: device {device!r} is replaced by this process's "
            f"device {accelerator.device}"
        )
    return str(accelerator.device)


def default_dispatch(dispatch, experts) -> str:
    """The dispatch a user means when ``dispatch=`` is left out.

    No experts: the base weights. One expert: that expert for every request (loading an expert
    and silently evaluating the base model would be a trap). Several: an error asking for a
    choice. An explicit ``dispatch=none`` still evaluates the base weights with experts loaded.
    """
    if dispatch is not None and str(dispatch).strip() != "":
        return str(dispatch)
    if not experts:
        return "none"
    if len(experts) == 1:
        name = next(iter(experts))
        eval_logger.info(f"t2: one expert loaded and no dispatch= given: applying {name!r}")
        return f"fixed:{name}"
    raise ConfigError(
        f"{len(experts)} experts are loaded ({', '.join(sorted(experts))}) but no dispatch= says "
        "which one answers: pass dispatch=fixed:<name> for one of them, or a per-request "
        "strategy (prompt, classifier, label, router, cem); dispatch=none evaluates the base "
        "weights"
    )


class ExpertDispatchMixin:
    """Mixed into an HFLM subclass; ``_lm_base`` is the lm-eval class whose methods run groups."""

    _lm_base: type

    def _setup_experts(
        self,
        experts,
        dispatch,
        modules,
        layers,
        transfer,
        tower="language",
        dispatchers=None,
        snapshot="device",
        source=None,
    ) -> None:
        """Load and check the experts, decompose the adapted matrices, build the dispatcher.

        ``snapshot`` says where the base weights are kept while an expert is applied
        (:mod:`t2bench.svf.snapshot`); ``source`` is the model folder or hub id the weights
        were loaded from, read back by ``snapshot=disk``.
        """
        self.transfer = _as_bool(transfer, "transfer")
        snapshot = check_snapshot(snapshot)
        # the weights every result of this backend starts from (after merging peft=, before
        # any expert is composed); VLMs also record their vision side on its own
        self.weights_sha256 = {"model": state_sha256(self.model)}
        for part in ("vision_tower", "multi_modal_projector"):
            names = [n for n, _ in self.model.named_modules() if n.endswith(part)]
            if names:
                self.weights_sha256[part] = state_sha256(self.model, prefix=names[0] + ".")
        paths = split_expert_paths(experts)
        loaded = []
        for p in paths:  # a folder or one file
            loaded.extend(load_experts(p, device=self.device))
        names = [e.meta.name for e in loaded]
        dupes = sorted(n for n, c in Counter(names).items() if c > 1)
        if dupes:
            raise ConfigError(
                f"several experts are named {dupes}: expert names must be unique (rename one with t2bench expert)"
            )
        self.experts = {e.meta.name: e for e in loaded}
        self.patcher: SVFPatcher | None = None
        if loaded:
            check_same_layout(loaded)
            meta = loaded[0].meta
            spec = TargetSpec(
                modules or meta.module_set,
                layers or ",".join(map(str, meta.layers)),
                tower_of_keys(meta.shapes) if tower == "language" else tower,
            )
            try:
                decomposition = decompose(self.model, spec, model_id=self.model_id)
            except ConfigError as exc:
                if modules or layers:
                    raise
                raise ExpertMismatchError(
                    f"expert {meta.name!r} (base model {meta.base_model!r}, {meta.module_set} on "
                    f"layers {meta.layers[0]}..{meta.layers[-1]}) does not fit model "
                    f"{self.model_id!r}: {exc} Use an expert trained for this model."
                ) from None
            self.patcher = SVFPatcher(
                self.model,
                decomposition,
                snapshot=snapshot,
                weights_folder=weights_folder(source) if snapshot == "disk" else None,
            )
            for e in loaded:  # fail now, not halfway through an evaluation
                check_fits(
                    e,
                    decomposition,
                    allow_transfer=self.transfer,
                    transfer_hint=TRANSFER_HINT_LM_EVAL,
                )
        elif modules or layers:
            raise ConfigError(
                "modules/layers only apply with experts=...: pass the experts to evaluate"
            )
        dispatch = default_dispatch(dispatch, self.experts)
        if dispatchers is not None and str(dispatch).split(":")[0] not in dispatchers:
            raise ConfigError(
                f"dispatch={dispatch!r} is not available for {type(self).__name__}: use one of "
                f"{', '.join(dispatchers)} (first-pass strategies read text-only prompts)"
            )
        self.dispatcher = make_dispatcher(dispatch, self.experts)
        self._check_shardable()
        self.dispatch_counts: Counter[str] = Counter()
        self.dispatch_seconds = 0.0
        self.second_pass_seconds = 0.0
        self.groups_run = 0
        self.requests_run = 0  # what this process ran: lm-eval's repeats and padding included
        self.instances_run = 0  # distinct lm-eval Instances among them
        self.rank_stats: list[dict] | None = None  # every process's counters, after a call
        batch = getattr(self, "batch_size_per_gpu", 16)
        self.dispatcher.bind(
            DispatchContext(
                model=self.model,
                tokenizer=self.tokenizer,
                experts=self.experts,
                patcher=self.patcher,
                model_id=self.model_id,
                batch_size=int(batch) if str(batch).isdigit() else 16,
                run=self._run_choice,
            )
        )

    # --- data parallelism ----------------------------------------------------------------------

    def _join_data_parallel(self, accelerator) -> None:
        """Take this process's place in a data-parallel launch (None: stay a single process).

        HFLM does this only for a model it loads from a name. The rank is the global process
        index, as the evaluator shards documents over all ``num_processes``.
        """
        if accelerator is None:
            return
        self.accelerator = accelerator
        self._rank = accelerator.process_index
        self._world_size = accelerator.num_processes
        self._device = accelerator.device
        eval_logger.info(
            f"t2: data-parallel process {self._rank} of {self._world_size} on {self._device}"
        )

    def _check_shardable(self) -> None:
        """Refuse a dispatcher that could answer a process's share differently than one process.

        Each process dispatches only its own requests, so a strategy may run data-parallel only
        if its choice for a request depends on that request (text, task, document) and not on
        which other requests share the call; strategies declare it with ``shardable``.
        """
        if self.world_size > 1 and not getattr(self.dispatcher, "shardable", False):
            raise ConfigError(
                f"dispatch={self.dispatcher.name} with {self.world_size} data-parallel processes: "
                "this strategy does not declare that its choice for a request is independent of "
                "the other requests in a call (Dispatcher.shardable), so a process's share could "
                "be answered differently than in one process. Run a single process, or use a "
                "strategy that declares it (none, fixed, prompt, classifier, label, router, cem)"
            )

    @contextmanager
    def _one_rank(self):
        """Run the parent's request methods as a lone process (see the module docstring)."""
        world, self._world_size = self._world_size, 1
        try:
            yield
        finally:
            self._world_size = world

    def _own_stats(self) -> dict:
        p = self.patcher
        return {
            "rank": self.rank,
            "requests": self.requests_run,
            "instances": self.instances_run,
            "dispatch_counts": dict(self.dispatch_counts),
            "groups": self.groups_run,
            "weight_compositions": p.applies if p else 0,
            "dispatch_seconds": round(self.dispatch_seconds, 4),
            "second_pass_seconds": round(self.second_pass_seconds, 4),
        }

    def _gather_stats(self) -> None:
        """Every process's counters, for rank 0's summary (the evaluator calls each request
        method once per request type on every process, so every process reaches this)."""
        if self.world_size <= 1:
            return
        import torch.distributed as dist

        out: list = [None] * self.world_size
        dist.all_gather_object(out, self._own_stats())
        self.rank_stats = out

    # --- per-request adaptation ---------------------------------------------------------------

    def _activate(self, choice: Choice) -> None:
        if self.patcher is None:
            if choice.expert is not None:
                raise ConfigError(f"dispatch chose expert {choice.key!r} but no experts are loaded")
            return
        if self.patcher.active == choice.key or (choice is BASE and self.patcher.active is None):
            return
        if choice.expert is None:
            self.patcher.restore()
        else:
            self.patcher.apply(choice.expert, allow_transfer=self.transfer)
            self.patcher.active = choice.key

    def _run_choice(self, choice: Choice, method: str, requests: list) -> list:
        """Run requests under a choice without dispatching them (first passes use this)."""
        self._activate(choice)
        with self._one_rank():
            return getattr(self._lm_base, method)(self, requests, disable_tqdm=True)

    def _dispatched(self, requests, method, **kwargs):
        self._check_shardable()  # the dispatcher may have been replaced since set-up
        with self._one_rank():
            results = self._dispatch_locally(requests, method, **kwargs)
        self._gather_stats()
        return results

    def _dispatch_locally(self, requests, method, **kwargs):
        if not requests:
            return []
        self.requests_run += len(requests)
        self.instances_run += len({id(r) for r in requests})
        t0 = time.perf_counter()
        choices = self.dispatcher.choose(
            [
                DispatchRequest(
                    r.args[0], getattr(r, "task_name", None), getattr(r, "doc_id", None)
                )
                for r in requests
            ]
        )
        self.dispatch_seconds += time.perf_counter() - t0
        if len(choices) != len(requests):
            raise RuntimeError(
                f"dispatcher {self.dispatcher.name} returned {len(choices)} choices for {len(requests)} requests"
            )
        groups: dict[str, list[int]] = {}
        for i, c in enumerate(choices):
            groups.setdefault(c.key, []).append(i)
        results = [None] * len(requests)
        for key, idxs in groups.items():
            t1 = time.perf_counter()
            self._activate(choices[idxs[0]])
            out = method([requests[i] for i in idxs], **kwargs)
            self.second_pass_seconds += time.perf_counter() - t1
            for i, o in zip(idxs, out, strict=True):
                results[i] = o
            self.dispatch_counts[key] += len(idxs)
            self.groups_run += 1
        seen = set()
        for r, c in zip(
            requests, choices, strict=True
        ):  # lm-eval logs req.args per sample: record the expert there
            if id(r) not in seen:
                seen.add(id(r))
                r.arguments = (*r.arguments, {"t2_expert": c.key})
        return results

    # --- reporting ----------------------------------------------------------------------------

    def t2_summary(self) -> dict:
        """What ran, for the results JSON. Data-parallel: ``dispatch_counts`` sums every process;
        the other counters and seconds are this process's (rank 0 writes the results), and
        ``data_parallel.per_rank`` has each process's own."""
        p = self.patcher
        per_rank = (
            self.rank_stats if self.world_size > 1 and self.rank_stats else [self._own_stats()]
        )
        counts: Counter[str] = Counter()
        for r in per_rank:
            counts.update(r["dispatch_counts"])
        return {
            "model_id": self.model_id,
            "peft": self.peft,
            # the constructor merges a peft= adapter before anything runs, or fails
            "peft_merged": bool(self.peft),
            "experts": sorted(self.experts),
            "dispatch": self.dispatcher.describe(),
            "module_set": p.decomposition.spec.modules if p else None,
            "layers": p.decomposition.layers if p else None,
            "weight_fingerprint": p.decomposition.fingerprint if p else None,
            "snapshot": p.snapshot if p else None,
            # log-likelihoods: each shared context encoded once (text backend) or HFLM's path
            "share_context": getattr(self, "share_context", False),
            "dispatch_counts": dict(counts),
            "data_parallel": {"processes": self.world_size, "per_rank": per_rank},
            "groups": self.groups_run,
            "weight_compositions": p.applies if p else 0,
            "matrices_composed": p.compositions if p else 0,
            "compose_seconds": round(p.compose_seconds, 4) if p else 0.0,
            "dispatch_seconds": round(self.dispatch_seconds, 4),
            "second_pass_seconds": round(self.second_pass_seconds, 4),
            "first_pass_fraction": round(self.dispatch_seconds / self.second_pass_seconds, 4)
            if self.second_pass_seconds
            else None,
            "weights_sha256": self.weights_sha256,
            "provenance": provenance(model_source=self.model_id),
        }

    def get_model_info(self) -> dict:
        try:
            info = super().get_model_info()
        except Exception:  # HFLM asks the hub for a sha; offline that may fail
            info = {}
        info["t2"] = self.t2_summary()
        return info
