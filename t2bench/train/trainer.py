"""The training loop: REINFORCE (+ λ·KL to the base model) or next-token prediction, on accelerate.

One optimizer step consumes ``global_batch`` samples, split evenly over the processes
and, inside a process, into micro-batches (gradient accumulation). With ``group_size`` K the
global batch holds ``global_batch / K`` training items, each at K consecutive positions (a
group), and every position samples with its own seed. For policy gradient each step
(1) samples one completion per position with the current adapter, (2) scores them with the
task's reward and gathers the rewards of the whole global batch, (3) turns them into
advantages (raw, centred or whitened over the global batch, or centred / whitened within each
prompt's group as GRPO does), (4) back-propagates -A·log π(completion) + λ·KL(policy‖ref) per
micro-batch. Every step logs the share of samples whose advantage is 0; a run whose every
step up to the selected checkpoint had no signal (all advantages 0, or a constant reward) is
flagged ``no_signal`` in its summary. Gradients are averaged over processes by DDP, clipped,
and applied by AdamW with a cosine schedule.

The loss of a micro-batch is its sum over samples divided by the process's share of the
global batch, so 1 process × k micro-batches and k processes × 1 micro-batch give the same
update; sampling noise is seeded per sample (see :mod:`t2bench.generation`) and the data
order per step, so a run is a function of its config and seed alone. That is what makes
resume-after-kill and the 1-vs-2-process check exact.
"""

from __future__ import annotations

import functools
import json
import math
import sys
import time
import zlib
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from t2bench.core.io import write_json_atomic
from t2bench.core.run import JsonlLog, NonFiniteError, epoch_order, finite_or_raise
from t2bench.data.splits import TrainItem, load_jsonl_items, load_splits
from t2bench.errors import ConfigError
from t2bench.generation import (
    DEFAULT_NEW_TOKENS,
    completion_logprobs,
    encode_items,
    generate,
    join_batch,
    logit_positions,
    per_sequence,
    sample_seed,
    stack_pixels,
    token_kl,
)
from t2bench.train import checkpoint as ckpt_io
from t2bench.train import rewards as rw
from t2bench.train.config import TrainConfig
from t2bench.train.heldout import greedy_correct
from t2bench.train.policy import GroupedBatch, build_policy
from t2bench.vlm.models import load_vlm

SUMMARY = "summary.json"
LOG = "log.jsonl"


class TrainingDiverged(NonFiniteError):
    """A reward, loss or gradient became NaN/inf; the last good checkpoint is kept."""


@dataclass
class TrainResult:
    artifact: Path
    summary: dict


# --------------------------------------------------------------------------- data order


def batch_indices(step: int, n: int, global_batch: int, seed: int) -> list[int]:
    """Dataset indices of one step's global batch: seeded epoch permutations, read in order."""

    @functools.cache
    def permutation(epoch: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(zlib.crc32(f"{seed}:epoch:{epoch}".encode()))
        return torch.randperm(n, generator=gen)

    return epoch_order(step * global_batch, global_batch, n, permutation)


def group_advantages(rewards: torch.Tensor, group_size: int, whiten: bool) -> torch.Tensor:
    """Each reward minus the mean of its group (``group_size`` consecutive positions: the
    samples of one prompt), divided by the group's std when ``whiten``. A group whose rewards
    are all equal gets exactly 0 (no rounding residue): it says nothing about which sample
    was better."""
    if rewards.numel() % group_size:
        raise ConfigError(
            f"{rewards.numel()} rewards do not split into groups of {group_size}; global_batch "
            "must be a multiple of group_size"
        )
    groups = rewards.view(-1, group_size)
    centred = groups - groups.mean(dim=1, keepdim=True)
    if whiten:
        std = groups.std(dim=1, unbiased=False, keepdim=True)
        centred = centred / (std + 1e-6)
    constant = groups.amax(dim=1, keepdim=True) == groups.amin(dim=1, keepdim=True)
    return torch.where(constant, torch.zeros_like(centred), centred).flatten()


def advantages(rewards: torch.Tensor, mode: str, group_size: int = 1) -> torch.Tensor:
    """Advantages of the global batch's rewards (see ``TrainConfig.advantage``)."""
    if mode in ("group", "group_whiten"):
        return group_advantages(rewards, group_size, whiten=mode == "group_whiten")
    if mode == "raw":
        return rewards
    centred = rewards - rewards.mean()
    if mode == "center":
        return centred
    std = rewards.std(unbiased=False)
    return centred / (std + 1e-6) if std > 0 else centred


def cosine_lambda(warmup: int, total: int):
    def fn(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return fn


# --------------------------------------------------------------------------- helpers


def _training_items(cfg: TrainConfig) -> tuple[list[TrainItem], list[TrainItem], dict]:
    """Train and validation items: the packaged splits unless JSONL files replace them."""
    packaged = (
        None
        if (cfg.data and cfg.valid_data)
        else load_splits(cfg.task, seed=cfg.seed, difficulty=cfg.difficulty)
    )
    train = load_jsonl_items(cfg.data, cfg.task) if cfg.data else packaged.train
    valid = load_jsonl_items(cfg.valid_data, cfg.task) if cfg.valid_data else packaged.valid
    if not train:
        raise ConfigError(f"no training items for task {cfg.task!r}: the dataset is empty")
    desc = dict(packaged.description) if packaged else {"task": cfg.task}
    if cfg.data:
        desc["train_override"] = {"file": str(cfg.data), "items": len(train)}
    if cfg.valid_data:
        desc["valid_override"] = {"file": str(cfg.valid_data), "items": len(valid)}
    return train, valid, desc


def _difficulty_note(cfg: TrainConfig) -> str:
    """A note naming a non-default packaged split; empty for the default (as older records)."""
    return "" if cfg.difficulty == "default" else f" (difficulty={cfg.difficulty})"


def _check_finite(name: str, value: torch.Tensor, step: int, out: Path) -> None:
    finite_or_raise(
        value,
        name,
        where=f"step {step}",
        checkpoints=ckpt_io.complete_checkpoints(out),
        fix="Lower lr, keep grad_clip on, or check the reward function; rerunning the same "
        "command resumes from that checkpoint.",
        error=TrainingDiverged,
    )


class _Log:
    """The run's JSONL log, cut on resume to the records up to the checkpoint's step; only the
    main process writes it."""

    def __init__(self, path: Path, resume_step: int, enabled: bool):
        self.log, self.enabled = JsonlLog(path), enabled
        if enabled:
            self.log.keep(lambda rec: rec.get("step", 0) <= resume_step)

    def write(self, record: dict) -> None:
        if self.enabled:
            self.log.append(record)


def _has_start_record(log_path: Path) -> bool:
    """Whether the log already holds the base model's step-0 validation (``eval_at_start``)."""
    if not log_path.exists():
        return False
    for line in log_path.read_text().splitlines():
        try:
            if json.loads(line).get("step") == 0:
                return True
        except json.JSONDecodeError:
            continue
    return False


def _no_signal(log_path: Path, selected_step: int, cfg: TrainConfig) -> dict | None:
    """How many steps up to ``selected_step`` had no learning signal, from the run's log (which
    holds every step, also across resumptions); ``flag`` when all of them had none. None for
    next-token prediction, which has no advantages."""
    if cfg.objective != "pg":
        return None
    records = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    upto = [r for r in records if 0 < r.get("step", 0) <= selected_step]  # step 0: the base
    known = [r for r in upto if "no_signal" in r]  # logs of older code lack the field
    without = sum(bool(r["no_signal"]) for r in known)
    return {
        "steps_without_signal": without,
        "of": len(upto),
        "selected_step": selected_step,
        "unknown": len(upto) - len(known),
        "flag": bool(known) and without == len(upto),
    }


# --------------------------------------------------------------------------- evaluation


def evaluate(
    policy,
    tokenizer,
    items: list[TrainItem],
    task: str,
    *,
    max_new_tokens: int,
    batch: int,
    processor=None,
) -> list[bool]:
    """Greedy accuracy of the policy's adapted model on ``items`` (one bool per item)."""
    with policy.generating() as model:
        return greedy_correct(
            model,
            tokenizer,
            items,
            task,
            max_new_tokens=max_new_tokens,
            batch=batch,
            processor=processor,
        )


@dataclass
class _Loaded:
    model: torch.nn.Module
    tokenizer: object
    processor: object | None
    model_id: str


def _load(cfg: TrainConfig, device) -> _Loaded:
    """The base model: an image-text model (with its processor) for VQA, else a causal LM."""
    if cfg.task == "vqa":
        model, processor, model_id = load_vlm(cfg.model, dtype=cfg.dtype, device=device)
        return _Loaded(model, processor.tokenizer, processor, model_id)
    from t2bench.models import load_model

    lm = load_model(cfg.model, dtype=cfg.dtype, device=device)
    return _Loaded(lm.model, lm.tokenizer, None, lm.model_id)


# --------------------------------------------------------------------------- the loop


def train(cfg: TrainConfig) -> TrainResult:
    """Run (or resume) one training run; returns the exported artifact and summary."""
    from accelerate import Accelerator

    from t2bench.core.provenance import git_commit, items_sha256, provenance, weights_sha256

    t_start = time.perf_counter()
    commit = git_commit()  # the code that runs, read before anything can change the tree
    out = Path(cfg.output_dir)
    if (out / SUMMARY).exists():
        raise ConfigError(
            f"{out} already holds a finished run ({SUMMARY}); pick a new output_dir, results are "
            "never overwritten"
        )
    rw.check_task(cfg.task)
    train_items, valid_items, split_desc = _training_items(cfg)
    spec = rw.RewardSpec(cfg.reward_correct, cfg.reward_wrong)
    new_tokens = cfg.max_new_tokens or DEFAULT_NEW_TOKENS.get(cfg.task, 64)

    acc = Accelerator(
        cpu=cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available()),
        mixed_precision=cfg.mixed_precision,
        log_with=None if cfg.log_with == "none" else cfg.log_with,
        project_dir=str(out),
    )
    world, rank = acc.num_processes, acc.process_index
    if cfg.global_batch % (world * cfg.micro_batch):
        raise ConfigError(
            f"global_batch {cfg.global_batch} must be a multiple of processes ({world}) × "
            f"micro_batch ({cfg.micro_batch})"
        )
    local = cfg.global_batch // world
    main = acc.is_main_process
    resume = ckpt_io.latest_checkpoint(out, cfg)
    state = resume.state if resume else ckpt_io.RunState()

    loaded = _load(cfg, acc.device)
    tok, processor = loaded.tokenizer, loaded.processor
    # the base weights as loaded, before any adapter is attached (vision side apart for VLMs)
    base_weights = weights_sha256(loaded.model) if main else None
    policy = build_policy(cfg, loaded.model, loaded.model_id, acc.device)
    # what the frozen model computes in (compute_dtype=auto resolves per machine)
    computed_in = str(
        next(
            p.dtype
            for p in loaded.model.parameters()
            if p.is_floating_point() and not p.requires_grad
        )
    ).removeprefix("torch.")
    params = [p for p in policy.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, cosine_lambda(cfg.warmup_steps, cfg.steps)
    )
    best = None
    if resume:
        policy.load_trainable_state(resume.trainable)
        optimizer.load_state_dict(resume.optimizer)
        scheduler.load_state_dict(state.scheduler)
        best = resume.best
        if main:
            print(f"resuming {out} from {resume.path.name} (step {state.step})", flush=True)
    wrapped = acc.prepare(policy)
    if cfg.log_with != "none":
        acc.init_trackers(cfg.run_name, config={k: str(v) for k, v in cfg.to_dict().items()})
    log = _Log(out / LOG, state.step, main)

    eval_items = valid_items[: cfg.eval_size]

    # what every checkpoint and the exported artifact record of where they come from
    run_facts = dict(
        commit=commit,
        base_model=loaded.model_id,
        seed=cfg.seed,
        data_split=f"{cfg.task}{_difficulty_note(cfg)}: train split for updates, "
        f"{len(eval_items)} valid items for selection",
        weights_sha256=base_weights,
        # which items trained and selected the adapter: count and sha256 of their uids
        data_items={
            name: {"n": len(part), "items_sha256": items_sha256(it.uid for it in part)}
            for name, part in (
                ("train", train_items),
                ("valid", valid_items),
                ("selection", eval_items),
            )
        },
        computed_in=computed_in,
    )

    def validate() -> tuple[float, int]:
        """Greedy accuracy on the validation items, each process scoring its shard."""
        flags = evaluate(
            acc.unwrap_model(wrapped),
            tok,
            eval_items[rank::world],
            cfg.task,
            max_new_tokens=new_tokens,
            batch=cfg.eval_batch,
            processor=processor,
        )
        tally = acc.reduce(
            torch.tensor([sum(flags), len(flags)], device=acc.device, dtype=torch.float64), "sum"
        )
        return float(tally[0] / tally[1]), int(tally[1])

    if cfg.eval_at_start and state.step == 0 and eval_items and not _has_start_record(out / LOG):
        # the base model on the same items: where the curve starts (never a selection candidate)
        score, n_valid = validate()
        log.write({"step": 0, "valid_accuracy": score, "valid_n": n_valid, "base": True})
    bar = tqdm(
        total=cfg.steps, initial=state.step, desc=cfg.run_name, disable=not (main and cfg.progress)
    )
    while state.step < cfg.steps and not state.stopped:
        step = state.step
        t0 = time.perf_counter()
        torch.manual_seed(zlib.crc32(f"{cfg.seed}:dropout:{step}:{rank}".encode()))
        # global_batch / K prompts, each at K consecutive positions (its group); K = 1 is the
        # one-sample-per-item order of every earlier run, unchanged
        k = cfg.group_size
        prompts = batch_indices(step, len(train_items), cfg.global_batch // k, cfg.seed)
        gidx = [prompts[pos // k] for pos in range(cfg.global_batch)]
        mine = list(range(rank * local, (rank + 1) * local))  # positions in the global batch
        micro = [mine[i : i + cfg.micro_batch] for i in range(0, local, cfg.micro_batch)]
        items = {pos: train_items[gidx[pos]] for pos in mine}
        enc_ids, enc_pix = encode_items(tok, [items[p] for p in mine], processor)
        prompt_ids = dict(zip(mine, enc_ids, strict=True))
        pixels = dict(zip(mine, enc_pix, strict=True)) if enc_pix is not None else None

        def pix(mb: list[int], pixels=pixels) -> dict:
            """The micro-batch's images as forward kwargs (none for text models)."""
            if pixels is None:
                return {}
            return {"pixel_values": stack_pixels([pixels[p] for p in mb], loaded.model)}

        # whole prompt groups in every micro-batch (text only): each prompt is encoded once per
        # group, in sampling and in the log-prob forwards (the same numbers, less compute)
        share_prompts = (
            cfg.objective == "pg" and k > 1 and cfg.micro_batch % k == 0 and pixels is None
        )
        gen_tokens = 0
        if cfg.objective == "pg":
            completions: dict[int, list[int]] = {}
            local_rewards = torch.zeros(cfg.global_batch, device=acc.device)
            local_correct = torch.zeros(cfg.global_batch, device=acc.device)
            unwrapped = acc.unwrap_model(wrapped)
            with unwrapped.generating() as gen_model:
                for mb in micro:
                    roll = generate(
                        gen_model,
                        tok,
                        [prompt_ids[p] for p in mb],
                        max_new_tokens=new_tokens,
                        seeds=None if cfg.greedy else [sample_seed(cfg.seed, step, p) for p in mb],
                        temperature=cfg.temperature,
                        pixel_values=None if pixels is None else [pixels[p] for p in mb],
                        group_size=k if share_prompts else 1,
                    )
                    r, c = rw.score(cfg.task, roll.texts, [items[p] for p in mb], spec)
                    for p, ids, ri, ci in zip(mb, roll.completion_ids, r, c, strict=True):
                        completions[p] = ids
                        local_rewards[p], local_correct[p] = ri, float(ci)
                        gen_tokens += len(ids)
            rewards = acc.reduce(local_rewards, "sum")  # each position is filled by one process
            correct = acc.reduce(local_correct, "sum")
            _check_finite("reward", rewards, step, out)
            adv = advantages(rewards, cfg.advantage, cfg.group_size)
        else:
            ref_ids = [tok(items[p].reference, add_special_tokens=False)["input_ids"] for p in mine]
            eos = tok.eos_token_id
            completions = {p: ids + [eos] for p, ids in zip(mine, ref_ids, strict=True)}
            rewards = correct = adv = None

        loss_sum = torch.zeros((), device=acc.device)
        kl_sum = torch.zeros((), device=acc.device)
        fwd_tokens = 0
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        for j, mb in enumerate(micro):
            sync = acc.no_sync(wrapped) if j < len(micro) - 1 else nullcontext()
            with sync:
                ids, attn, target = join_batch(
                    [prompt_ids[p] for p in mb], [completions[p] for p in mb], pad, acc.device
                )
                fwd_tokens += int(attn.sum())
                # logits at the completion positions only: the LM head skips the prompt
                sel = logit_positions(target)
                # K samples of one prompt: the prompt runs once per group (same logits)
                groups = (
                    GroupedBatch(
                        [prompt_ids[p] for p in mb[::k]], [completions[p] for p in mb], k, pad
                    )
                    if share_prompts
                    else None
                )
                logits = wrapped(ids, attn, select=sel, groups=groups, **pix(mb))
                temp = cfg.temperature if cfg.objective == "pg" and not cfg.greedy else 1.0
                tok_lp, logp, rows = completion_logprobs(logits, ids, target, temp)
                if cfg.objective == "pg":
                    seq_lp = per_sequence(tok_lp, rows, len(mb), cfg.logprob_reduction)
                    a = adv[torch.tensor(mb, device=acc.device)]
                    per_sample = -a * seq_lp
                    if cfg.kl_coef > 0:
                        ref = acc.unwrap_model(wrapped).reference_logits(
                            ids, attn, select=sel, groups=groups, **pix(mb)
                        )
                        _, ref_logp, _ = completion_logprobs(ref, ids, target, temp)
                        kl = per_sequence(
                            token_kl(logp, ref_logp, cfg.kl_direction), rows, len(mb), "mean"
                        )
                        per_sample = per_sample + cfg.kl_coef * kl
                        kl_sum = kl_sum + kl.detach().sum()
                else:
                    per_sample = -per_sequence(tok_lp, rows, len(mb), "mean")
                loss = per_sample.sum() / local
                loss_sum = loss_sum + loss.detach()
                acc.backward(loss)
        loss_all = acc.reduce(loss_sum, "mean")
        _check_finite("loss", loss_all, step, out)
        if cfg.grad_clip > 0:
            gnorm = acc.clip_grad_norm_(params, cfg.grad_clip)
        else:
            gnorm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params]))
        _check_finite("gradient norm", torch.as_tensor(gnorm), step, out)
        lr = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        state.step = step + 1

        counts = acc.reduce(
            torch.tensor([gen_tokens, fwd_tokens], device=acc.device, dtype=torch.float64), "sum"
        )
        seconds = time.perf_counter() - t0
        rec = {
            "step": state.step,
            "loss": float(loss_all),
            "lr": lr,
            "grad_norm": float(gnorm),
            "seconds": round(seconds, 3),
            "tokens_per_s": round(float(counts.sum()) / seconds, 1),
            "computed_in": computed_in,
        }
        if cfg.objective == "pg":
            rec |= {
                "reward": float(rewards.mean()),
                "accuracy": float(correct.mean()),
                "kl": float(acc.reduce(kl_sum, "sum")) / cfg.global_batch,
                "generated_tokens": int(counts[0]),
                # samples that teach nothing this step (1.0: only the KL term moves the
                # adapter); a constant reward carries no signal even as raw advantages, where
                # it only pushes every sample down (or up) alike
                "zero_advantage_share": float((adv == 0).float().mean()),
                "no_signal": bool((adv == 0).all() or rewards.max() == rewards.min()),
            }

        if cfg.objective == "pg" and cfg.stop_without_signal:
            quiet = rec["no_signal"]
            state.steps_without_signal = state.steps_without_signal + 1 if quiet else 0
            if state.steps_without_signal >= cfg.stop_without_signal:
                state.stopped = (
                    f"early stop: no learning signal in {cfg.stop_without_signal} consecutive "
                    "steps (every group's samples got the same reward)"
                )
        if (
            cfg.eval_every
            and (state.step % cfg.eval_every == 0 or state.step == cfg.steps or state.stopped)
            and eval_items
        ):
            score, n_valid = validate()
            rec["valid_accuracy"] = score
            rec["valid_n"] = n_valid
            if state.best_score is None or score > state.best_score:
                state.best_score, state.best_step, state.evals_since_best = score, state.step, 0
                best = acc.unwrap_model(wrapped).trainable_state()
            else:
                state.evals_since_best += 1
                if cfg.patience and state.evals_since_best >= cfg.patience:
                    state.stopped = f"early stop: no improvement in {cfg.patience} evaluations"
        state.wall_seconds += time.perf_counter() - t0
        log.write(rec)
        if cfg.log_with != "none":
            acc.log({k: v for k, v in rec.items() if k != "step"}, step=state.step)
        state.scheduler = scheduler.state_dict()
        if state.step % cfg.checkpoint_every == 0 or state.step == cfg.steps or state.stopped:
            if main:
                ckpt_io.save_checkpoint(
                    out,
                    state,
                    cfg,
                    acc.unwrap_model(wrapped).trainable_state(),
                    optimizer,
                    best,
                    keep=cfg.keep_checkpoints,
                    provenance=provenance(**run_facts, wall_seconds=round(state.wall_seconds, 1)),
                )
            acc.wait_for_everyone()
        bar.update(1)
        bar.set_postfix({k: rec[k] for k in ("reward", "valid_accuracy", "loss") if k in rec})
    bar.close()

    policy = acc.unwrap_model(wrapped)
    final_state = best if best is not None else policy.trainable_state()
    summary = {
        "run": cfg.run_name,
        "config": cfg.to_dict(),
        "steps_done": state.step,
        "best_step": state.best_step,
        "best_valid_accuracy": state.best_score,
        "stopped": state.stopped,
        "selected": "best-on-validation" if best is not None else "last",
        "processes": world,
        "trainable_parameters": sum(p.numel() for p in params),
        "computed_in": computed_in,
        "data": split_desc,
    }
    artifact = out
    if main:
        selected_step = state.best_step if best is not None else state.step
        summary["no_signal"] = _no_signal(out / LOG, selected_step, cfg)
        if summary["no_signal"] and summary["no_signal"]["flag"]:
            print(
                f"warning: {cfg.run_name} learned from nothing: all {selected_step} steps up to "
                "the selected checkpoint had zero advantage on every sample or a constant "
                "reward. Sample several completions per prompt (group_size >= 2 with "
                "advantage=group), or make the task easier (difficulty=mix for math).",
                file=sys.stderr,
                flush=True,
            )
        prov = provenance(
            **run_facts,
            wall_seconds=round(state.wall_seconds, 1),
            wall_seconds_last_session=round(time.perf_counter() - t_start, 1),
            train_config=cfg.to_dict(),
            best_step=state.best_step,
            best_valid_accuracy=state.best_score,
        )
        if cfg.method == "svf":
            prov["weight_fingerprint"] = policy.decomposition.fingerprint
        artifact = policy.export(final_state, out, cfg.run_name, prov)
        summary |= {"artifact": str(artifact), "provenance": prov}
        write_json_atomic(out / SUMMARY, summary)
    acc.wait_for_everyone()
    if cfg.log_with != "none":
        acc.end_training()
    return TrainResult(Path(artifact), summary)
