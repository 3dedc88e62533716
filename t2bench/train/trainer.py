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

import sys
import time
import zlib
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from t2bench.core import provenance as pv
from t2bench.core.io import check_writable
from t2bench.core.run import NonFiniteError, RunFolder
from t2bench.data.splits import TrainItem
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
from t2bench.train.advantages import advantages
from t2bench.train.config import TrainConfig
from t2bench.train.inputs import difficulty_note, load_base, policy_correct, training_items
from t2bench.train.policy import GroupedBatch, build_policy
from t2bench.train.run_log import RunLog, has_start_record, no_signal
from t2bench.train.schedule import batch_indices, cosine_lambda


class TrainingDiverged(NonFiniteError):
    """A reward, loss or gradient became NaN/inf; the last good checkpoint is kept."""


@dataclass
class TrainResult:
    artifact: Path
    summary: dict


def _check_finite(name: str, value: torch.Tensor, step: int, folder: RunFolder) -> None:
    folder.check_finite(
        value,
        name,
        where=f"step {step}",
        fix="Lower lr, keep grad_clip on, or check the reward function; rerunning the same "
        "command resumes from that checkpoint.",
        error=TrainingDiverged,
    )


# --------------------------------------------------------------------------- the loop


@dataclass
class _Batch:
    """This process's share of one step's global batch."""

    mine: list[int]  # positions in the global batch
    micro: list[list[int]]  # ``mine`` cut into micro-batches
    items: dict[int, TrainItem]
    prompt_ids: dict[int, list[int]]
    pixels: dict | None  # images per position (VLMs), else None
    # whole prompt groups in every micro-batch (text only): each prompt is encoded once per
    # group, in sampling and in the log-prob forwards (the same numbers, less compute)
    share_prompts: bool


@dataclass
class _Targets:
    """What the log-prob pass scores: sampled completions and their advantages (policy
    gradient), or the references (next-token prediction, no rewards)."""

    completions: dict[int, list[int]]
    rewards: torch.Tensor | None = None
    correct: torch.Tensor | None = None
    adv: torch.Tensor | None = None
    gen_tokens: int = 0


@dataclass
class _Update:
    loss: torch.Tensor
    grad_norm: torch.Tensor
    kl_sum: torch.Tensor
    fwd_tokens: int
    lr: float


class _Run:
    """One training run: set up (or resumed) by the constructor, advanced one optimizer step at
    a time by :meth:`step`, exported and summarised by :meth:`finish`."""

    def __init__(self, cfg: TrainConfig):
        from accelerate import Accelerator

        self.t_start = time.perf_counter()
        self.cfg = cfg
        self.commit = (
            pv.git_commit()
        )  # the code that runs, read before anything can change the tree
        self.out = Path(cfg.output_dir)
        self.folder = ckpt_io.run_folder(self.out)
        self.folder.refuse_finished()
        # a read-only or full output folder fails here, not after the model has loaded
        check_writable(self.out, "training output folder")
        rw.check_task(cfg.task)
        self.train_items, valid_items, self.split_desc = training_items(cfg)
        self.spec = rw.RewardSpec(cfg.reward_correct, cfg.reward_wrong)
        self.new_tokens = cfg.max_new_tokens or DEFAULT_NEW_TOKENS.get(cfg.task, 64)

        self.acc = acc = Accelerator(
            cpu=cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available()),
            mixed_precision=cfg.mixed_precision,
            log_with=None if cfg.log_with == "none" else cfg.log_with,
            project_dir=str(self.out),
        )
        self.world, self.rank = acc.num_processes, acc.process_index
        if cfg.global_batch % (self.world * cfg.micro_batch):
            raise ConfigError(
                f"global_batch {cfg.global_batch} must be a multiple of processes ({self.world}) "
                f"× micro_batch ({cfg.micro_batch})"
            )
        self.local = cfg.global_batch // self.world
        self.main = acc.is_main_process
        resume = ckpt_io.latest_checkpoint(self.out, cfg, set_aside=self.main)
        self.state = resume.state if resume else ckpt_io.RunState()

        self.loaded = load_base(cfg, acc.device)
        self.tok, self.processor = self.loaded.tokenizer, self.loaded.processor
        # the base weights as loaded, before any adapter is attached (vision side apart for VLMs)
        base_weights = pv.weights_sha256(self.loaded.model) if self.main else None
        policy = build_policy(cfg, self.loaded.model, self.loaded.model_id, acc.device)
        # what the frozen model computes in (compute_dtype=auto resolves per machine)
        self.computed_in = str(
            next(
                p.dtype
                for p in self.loaded.model.parameters()
                if p.is_floating_point() and not p.requires_grad
            )
        ).removeprefix("torch.")
        self.params = [p for p in policy.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, cosine_lambda(cfg.warmup_steps, cfg.steps)
        )
        self.best = None
        if resume:
            policy.load_trainable_state(resume.trainable)
            self.optimizer.load_state_dict(resume.optimizer)
            self.scheduler.load_state_dict(self.state.scheduler)
            self.best = resume.best
            if self.main:
                print(
                    f"resuming {self.out} from {resume.path.name} (step {self.state.step})",
                    flush=True,
                )
        self.wrapped = acc.prepare(policy)
        if cfg.log_with != "none":
            acc.init_trackers(cfg.run_name, config={k: str(v) for k, v in cfg.to_dict().items()})
        self.log = RunLog(self.folder.log, self.state.step, self.main)
        self.eval_items = valid_items[: cfg.eval_size]

        # what every checkpoint and the exported artifact record of where they come from
        self.run_facts = dict(
            commit=self.commit,
            base_model=self.loaded.model_id,
            seed=cfg.seed,
            data_split=f"{cfg.task}{difficulty_note(cfg)}: train split for updates, "
            f"{len(self.eval_items)} valid items for selection",
            weights_sha256=base_weights,
            # which items trained and selected the adapter: count and sha256 of their uids
            data_items={
                name: {"n": len(part), "items_sha256": pv.items_sha256(it.uid for it in part)}
                for name, part in (
                    ("train", self.train_items),
                    ("valid", valid_items),
                    ("selection", self.eval_items),
                )
            },
            computed_in=self.computed_in,
        )
        if cfg.task == "code":  # which runner isolated the model's programs (bwrap/unisolated)
            self.run_facts["code_runner"] = rw.code_runner(cfg.task)

    @property
    def policy(self):
        return self.acc.unwrap_model(self.wrapped)

    # ---------------------------------------------------------------- validation

    def validate(self) -> tuple[float, int]:
        """Greedy accuracy on the validation items, each process scoring its shard."""
        flags = policy_correct(
            self.policy,
            self.tok,
            self.eval_items[self.rank :: self.world],
            self.cfg.task,
            max_new_tokens=self.new_tokens,
            batch=self.cfg.eval_batch,
            processor=self.processor,
        )
        tally = self.acc.reduce(
            torch.tensor([sum(flags), len(flags)], device=self.acc.device, dtype=torch.float64),
            "sum",
        )
        return float(tally[0] / tally[1]), int(tally[1])

    def validate_base(self) -> None:
        """The base model on the validation items: where the curve starts (never a selection
        candidate); once per run, also across resumptions."""
        if (
            self.cfg.eval_at_start
            and self.state.step == 0
            and self.eval_items
            and not has_start_record(self.folder.log.path)
        ):
            score, n_valid = self.validate()
            self.log.write({"step": 0, "valid_accuracy": score, "valid_n": n_valid, "base": True})

    # ---------------------------------------------------------------- one step

    def batch(self, step: int) -> _Batch:
        """global_batch / K prompts, each at K consecutive positions (its group); K = 1 is the
        one-sample-per-item order of every earlier run, unchanged."""
        cfg, k = self.cfg, self.cfg.group_size
        prompts = batch_indices(step, len(self.train_items), cfg.global_batch // k, cfg.seed)
        gidx = [prompts[pos // k] for pos in range(cfg.global_batch)]
        mine = list(range(self.rank * self.local, (self.rank + 1) * self.local))
        micro = [mine[i : i + cfg.micro_batch] for i in range(0, self.local, cfg.micro_batch)]
        items = {pos: self.train_items[gidx[pos]] for pos in mine}
        enc_ids, enc_pix = encode_items(self.tok, [items[p] for p in mine], self.processor)
        pixels = dict(zip(mine, enc_pix, strict=True)) if enc_pix is not None else None
        share = cfg.objective == "pg" and k > 1 and cfg.micro_batch % k == 0 and pixels is None
        return _Batch(mine, micro, items, dict(zip(mine, enc_ids, strict=True)), pixels, share)

    def pix(self, b: _Batch, mb: list[int]) -> dict:
        """The micro-batch's images as forward kwargs (none for text models)."""
        if b.pixels is None:
            return {}
        return {"pixel_values": stack_pixels([b.pixels[p] for p in mb], self.loaded.model)}

    def targets(self, step: int, b: _Batch) -> _Targets:
        """Policy gradient: sample a completion per position, score it, gather the global
        batch's rewards and turn them into advantages. Next-token prediction: the references."""
        cfg, acc = self.cfg, self.acc
        if cfg.objective != "pg":
            ref_ids = [
                self.tok(b.items[p].reference, add_special_tokens=False)["input_ids"]
                for p in b.mine
            ]
            eos = self.tok.eos_token_id
            return _Targets({p: ids + [eos] for p, ids in zip(b.mine, ref_ids, strict=True)})
        completions: dict[int, list[int]] = {}
        local_rewards = torch.zeros(cfg.global_batch, device=acc.device)
        local_correct = torch.zeros(cfg.global_batch, device=acc.device)
        gen_tokens = 0
        with self.policy.generating() as gen_model:
            for mb in b.micro:
                roll = generate(
                    gen_model,
                    self.tok,
                    [b.prompt_ids[p] for p in mb],
                    max_new_tokens=self.new_tokens,
                    seeds=None if cfg.greedy else [sample_seed(cfg.seed, step, p) for p in mb],
                    temperature=cfg.temperature,
                    pixel_values=None if b.pixels is None else [b.pixels[p] for p in mb],
                    group_size=cfg.group_size if b.share_prompts else 1,
                )
                r, c = rw.score(cfg.task, roll.texts, [b.items[p] for p in mb], self.spec)
                for p, ids, ri, ci in zip(mb, roll.completion_ids, r, c, strict=True):
                    completions[p] = ids
                    local_rewards[p], local_correct[p] = ri, float(ci)
                    gen_tokens += len(ids)
        rewards = acc.reduce(local_rewards, "sum")  # each position is filled by one process
        correct = acc.reduce(local_correct, "sum")
        _check_finite("reward", rewards, step, self.folder)
        adv = advantages(rewards, cfg.advantage, cfg.group_size)
        return _Targets(completions, rewards, correct, adv, gen_tokens)

    def update(self, step: int, b: _Batch, t: _Targets) -> _Update:
        """Back-propagate every micro-batch's loss (-A·log π + λ·KL, or the references'
        negative log-likelihood), then clip and take the optimizer step."""
        cfg, acc, k = self.cfg, self.acc, self.cfg.group_size
        loss_sum = torch.zeros((), device=acc.device)
        kl_sum = torch.zeros((), device=acc.device)
        fwd_tokens = 0
        tok = self.tok
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        for j, mb in enumerate(b.micro):
            sync = acc.no_sync(self.wrapped) if j < len(b.micro) - 1 else nullcontext()
            with sync:
                ids, attn, target = join_batch(
                    [b.prompt_ids[p] for p in mb], [t.completions[p] for p in mb], pad, acc.device
                )
                fwd_tokens += int(attn.sum())
                # logits at the completion positions only: the LM head skips the prompt
                sel = logit_positions(target)
                # K samples of one prompt: the prompt runs once per group (same logits)
                groups = (
                    GroupedBatch(
                        [b.prompt_ids[p] for p in mb[::k]], [t.completions[p] for p in mb], k, pad
                    )
                    if b.share_prompts
                    else None
                )
                logits = self.wrapped(ids, attn, select=sel, groups=groups, **self.pix(b, mb))
                temp = cfg.temperature if cfg.objective == "pg" and not cfg.greedy else 1.0
                tok_lp, logp, rows = completion_logprobs(logits, ids, target, temp)
                if cfg.objective == "pg":
                    seq_lp = per_sequence(tok_lp, rows, len(mb), cfg.logprob_reduction)
                    a = t.adv[torch.tensor(mb, device=acc.device)]
                    per_sample = -a * seq_lp
                    if cfg.kl_coef > 0:
                        ref = self.policy.reference_logits(
                            ids, attn, select=sel, groups=groups, **self.pix(b, mb)
                        )
                        _, ref_logp, _ = completion_logprobs(ref, ids, target, temp)
                        kl = per_sequence(
                            token_kl(logp, ref_logp, cfg.kl_direction), rows, len(mb), "mean"
                        )
                        per_sample = per_sample + cfg.kl_coef * kl
                        kl_sum = kl_sum + kl.detach().sum()
                else:
                    per_sample = -per_sequence(tok_lp, rows, len(mb), "mean")
                loss = per_sample.sum() / self.local
                loss_sum = loss_sum + loss.detach()
                acc.backward(loss)
        loss_all = acc.reduce(loss_sum, "mean")
        _check_finite("loss", loss_all, step, self.folder)
        if cfg.grad_clip > 0:
            gnorm = acc.clip_grad_norm_(self.params, cfg.grad_clip)
        else:
            gnorm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in self.params]))
        _check_finite("gradient norm", torch.as_tensor(gnorm), step, self.folder)
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return _Update(loss_all, gnorm, kl_sum, fwd_tokens, lr)

    def record(self, t: _Targets, u: _Update, seconds: float) -> dict:
        """The step's log record."""
        cfg, acc = self.cfg, self.acc
        counts = acc.reduce(
            torch.tensor([t.gen_tokens, u.fwd_tokens], device=acc.device, dtype=torch.float64),
            "sum",
        )
        rec = {
            "step": self.state.step,
            "loss": float(u.loss),
            "lr": u.lr,
            "grad_norm": float(u.grad_norm),
            "seconds": round(seconds, 3),
            "tokens_per_s": round(float(counts.sum()) / seconds, 1),
            "computed_in": self.computed_in,
        }
        if cfg.objective == "pg":
            rec |= {
                "reward": float(t.rewards.mean()),
                "accuracy": float(t.correct.mean()),
                "kl": float(acc.reduce(u.kl_sum, "sum")) / cfg.global_batch,
                "generated_tokens": int(counts[0]),
                # samples that teach nothing this step (1.0: only the KL term moves the
                # adapter); a constant reward carries no signal even as raw advantages, where
                # it only pushes every sample down (or up) alike
                "zero_advantage_share": float((t.adv == 0).float().mean()),
                "no_signal": bool((t.adv == 0).all() or t.rewards.max() == t.rewards.min()),
            }
        return rec

    def select_or_stop(self, rec: dict) -> None:
        """Stop after ``stop_without_signal`` quiet steps; validate when due, keep the best
        adapter, and stop after ``patience`` evaluations without a better one."""
        cfg, state = self.cfg, self.state
        if cfg.objective == "pg" and cfg.stop_without_signal:
            quiet = rec["no_signal"]
            state.steps_without_signal = state.steps_without_signal + 1 if quiet else 0
            if state.steps_without_signal >= cfg.stop_without_signal:
                state.stopped = (
                    f"early stop: no learning signal in {cfg.stop_without_signal} consecutive "
                    "steps (every group's samples got the same reward)"
                )
        due = state.step % cfg.eval_every == 0 if cfg.eval_every else False
        if cfg.eval_every and (due or state.step == cfg.steps or state.stopped) and self.eval_items:
            score, n_valid = self.validate()
            rec["valid_accuracy"] = score
            rec["valid_n"] = n_valid
            if state.best_score is None or score > state.best_score:
                state.best_score, state.best_step, state.evals_since_best = score, state.step, 0
                self.best = self.policy.trainable_state()
            else:
                state.evals_since_best += 1
                if cfg.patience and state.evals_since_best >= cfg.patience:
                    state.stopped = f"early stop: no improvement in {cfg.patience} evaluations"

    def save(self) -> None:
        """A checkpoint when one is due (every ``checkpoint_every`` steps, the last, a stop)."""
        cfg, state = self.cfg, self.state
        state.scheduler = self.scheduler.state_dict()
        if state.step % cfg.checkpoint_every == 0 or state.step == cfg.steps or state.stopped:
            if self.main:
                ckpt_io.save_checkpoint(
                    self.out,
                    state,
                    cfg,
                    self.policy.trainable_state(),
                    self.optimizer,
                    self.best,
                    keep=cfg.keep_checkpoints,
                    provenance=pv.provenance(
                        **self.run_facts, wall_seconds=round(state.wall_seconds, 3)
                    ),
                )
            self.acc.wait_for_everyone()

    def step(self) -> dict:
        """One optimizer step, its log record, validation when due, a checkpoint when due."""
        step = self.state.step
        t0 = time.perf_counter()
        torch.manual_seed(zlib.crc32(f"{self.cfg.seed}:dropout:{step}:{self.rank}".encode()))
        b = self.batch(step)
        t = self.targets(step, b)
        u = self.update(step, b, t)
        self.state.step = step + 1
        rec = self.record(t, u, time.perf_counter() - t0)
        self.select_or_stop(rec)
        self.state.wall_seconds += time.perf_counter() - t0
        self.log.write(rec)
        if self.cfg.log_with != "none":
            self.acc.log({k: v for k, v in rec.items() if k != "step"}, step=self.state.step)
        self.save()
        return rec

    # ---------------------------------------------------------------- the end

    def finish(self) -> TrainResult:
        """Export the selected adapter (best on validation, else the last) with its provenance
        and write the summary that marks the run finished."""
        cfg, state, policy = self.cfg, self.state, self.policy
        final_state = self.best if self.best is not None else policy.trainable_state()
        summary = {
            "run": cfg.run_name,
            "config": cfg.to_dict(),
            "steps_done": state.step,
            "best_step": state.best_step,
            "best_valid_accuracy": state.best_score,
            "stopped": state.stopped,
            "selected": "best-on-validation" if self.best is not None else "last",
            "processes": self.world,
            "trainable_parameters": sum(p.numel() for p in self.params),
            "computed_in": self.computed_in,
            "data": self.split_desc,
        }
        artifact = self.out
        if self.main:
            selected_step = state.best_step if self.best is not None else state.step
            summary["no_signal"] = no_signal(self.folder.log.path, selected_step, cfg)
            if summary["no_signal"] and summary["no_signal"]["flag"]:
                print(
                    f"warning: {cfg.run_name} learned from nothing: all {selected_step} steps up "
                    "to the selected checkpoint had zero advantage on every sample or a constant "
                    "reward. Sample several completions per prompt (group_size >= 2 with "
                    "advantage=group), or make the task easier (difficulty=mix for math).",
                    file=sys.stderr,
                    flush=True,
                )
            prov = pv.provenance(
                **self.run_facts,
                wall_seconds=round(state.wall_seconds, 3),
                wall_seconds_last_session=round(time.perf_counter() - self.t_start, 3),
                train_config=cfg.to_dict(),
                best_step=state.best_step,
                best_valid_accuracy=state.best_score,
            )
            if cfg.method == "svf":
                prov["weight_fingerprint"] = policy.decomposition.fingerprint
            artifact = policy.export(final_state, self.out, cfg.run_name, prov)
            summary |= {"artifact": str(artifact), "provenance": prov}
            self.folder.write_summary(summary)
        self.acc.wait_for_everyone()
        if cfg.log_with != "none":
            self.acc.end_training()
        return TrainResult(Path(artifact), summary)


def train(cfg: TrainConfig) -> TrainResult:
    """Run (or resume) one training run; returns the exported artifact and summary."""
    run = _Run(cfg)
    run.validate_base()
    bar = tqdm(
        total=cfg.steps,
        initial=run.state.step,
        desc=cfg.run_name,
        disable=not (run.main and cfg.progress),
    )
    while run.state.step < cfg.steps and not run.state.stopped:
        rec = run.step()
        bar.update(1)
        bar.set_postfix({k: rec[k] for k in ("reward", "valid_accuracy", "loss") if k in rec})
    bar.close()
    return run.finish()
