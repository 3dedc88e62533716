"""SEAL's outer loop, ReST-EM: sample self-edits, keep the ones whose inner update helps most,
fine-tune the generator on them, repeat.

Round r (generator G(r-1), G(0) = the base model), for every training passage:
  1. closed-book accuracy of G(r-1) on the passage's questions with no update (the baseline);
  2. K self-edits sampled from G(r-1) (temperature 1, seeds fixed per round, passage, sample);
  3. each one: an inner update of G(r-1) on its lines + the passage, then closed-book accuracy
     on the passage's questions (the reward); an empty self-edit or a diverged update gets no
     reward and is never kept;
  4. the best self-edit is kept only where its reward beats the baseline.
Then G(r) = G(r-1) + a LoRA fine-tune on the kept (prompt -> self-edit) pairs, merged.

The run folder is the checkpoint: ``records.jsonl`` gets one line per finished passage (written
and fsynced as it finishes), ``round-<r>/adapter`` the generator's LoRA of round r, ``round-<r>/
round.json`` its summary. A run started again with the same config continues where it stopped
and loses nothing; another config in the same folder is refused.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from t2bench.core.io import (
    check_writable,
    output_errors,
    replacing,
    results_path,
    write_json_atomic,
)
from t2bench.core.provenance import provenance
from t2bench.core.run import RunFolder
from t2bench.errors import ConfigError
from t2bench.seal.data import load_passages
from t2bench.seal.inner import InnerConfig, InnerUpdateDivergedError, InnerUpdater, token_loss
from t2bench.seal.passages import Passage, passages_fingerprint
from t2bench.seal.qa import accuracy, closed_book
from t2bench.seal.selfedit import (
    EmptySelfEditError,
    generate_self_edits,
    parse_self_edit,
    selfedit_prompt,
    training_sequences,
)

__all__ = ["SealConfig", "load_generator", "round_adapter", "train_seal"]

CONFIG = RunFolder.CONFIG
RECORDS = "records.jsonl"
SUMMARY = RunFolder.SUMMARY


@dataclass
class SealConfig:
    output_dir: str = str(results_path("seal/restem"))
    model: str | None = None  # None: the packaged SmolLM2-135M-Instruct
    source: str = "fictional"  # training passages: fictional | squad (train split)
    n_train: int = 12
    variant: str = "implications"
    k: int = 3
    rounds: int = 2
    temperature: float = 1.0
    max_new_tokens: int = 128
    qa_max_new_tokens: int = 16
    inner: InnerConfig = field(default_factory=InnerConfig)
    sft_steps_per_pair: int = 2  # generator fine-tune: epochs over the kept pairs
    sft_lr: float = 3e-4
    sft_r: int = 16
    sft_batch: int = 4
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.inner, dict):
            self.inner = InnerConfig(**self.inner)
        for name in ("n_train", "k", "rounds", "sft_steps_per_pair", "sft_batch"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.temperature <= 0:
            raise ConfigError("ReST-EM samples its self-edits: temperature must be > 0")

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("progress")
        return d


def round_adapter(run: Path, r: int) -> Path:
    return Path(run) / f"round-{r}" / "adapter"


def _run_folder(out: Path) -> RunFolder:
    """The ReST-EM run in ``out``: its config pinned in ``config.json``, one JSONL record per
    scored self-edit; its checkpoints are the round adapters, each saved whole."""
    return RunFolder(out, "SEAL run", log=RECORDS)


def load_generator(run: str | Path, rounds: int, model: str | None = None):
    """The run's base model (or ``model``) with the generator LoRA of rounds 1..``rounds``
    merged into it."""
    from peft import PeftModel

    from t2bench.models import load_model

    config = Path(run) / CONFIG
    if not config.is_file():
        raise ConfigError(
            f"{run} is not a SEAL run folder (no {CONFIG}): train one with "
            "`t2bench seal train --out FOLDER`"
        )
    loaded = load_model(model or json.loads(config.read_text())["model"])
    for r in range(1, rounds + 1):
        folder = round_adapter(Path(run), r)
        if not (folder / "adapter_config.json").is_file():
            raise ConfigError(
                f"no generator adapter for round {r} in {run}: finish the run with "
                "`t2bench seal train` (same settings) or ask for fewer rounds"
            )
        loaded.model = PeftModel.from_pretrained(loaded.model, str(folder)).merge_and_unload()
    loaded.model.eval()
    return loaded


def score_self_edit(
    updater: InnerUpdater, tokenizer, passage: Passage, text: str, *, qa_max_new_tokens: int
) -> dict:
    """Reward of one self-edit: closed-book accuracy after an inner update on it."""
    try:
        lines = parse_self_edit(text)
        seqs = training_sequences(passage, lines)
        with updater.updated(seqs) as (model, inner):
            recs = closed_book(model, tokenizer, [passage], max_new_tokens=qa_max_new_tokens)
    except (EmptySelfEditError, InnerUpdateDivergedError) as exc:
        return {"reward": None, "error": f"{type(exc).__name__}: {exc}"}
    return {
        "reward": accuracy(recs),
        "f1": accuracy(recs, "f1"),
        "lines": len(lines),
        "inner": inner.to_dict(),
    }


def sft_generator(model, tokenizer, pairs: list[tuple[str, str]], cfg: SealConfig, out: Path):
    """LoRA fine-tune of the generator on (prompt, self-edit) pairs; saves it to ``out`` and
    returns (merged model, losses). Loss on the self-edit tokens only."""
    from t2bench.generation import encode_prompts, join_batch

    peft_model = _generator_lora(model, cfg)
    params = [p for p in peft_model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.sft_lr, weight_decay=0.0)
    prompts = encode_prompts(tokenizer, [p for p, _ in pairs])
    eos = tokenizer.eos_token_id
    completions = [
        tokenizer(c, add_special_tokens=False)["input_ids"] + ([eos] if eos is not None else [])
        for _, c in pairs
    ]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    order = torch.Generator().manual_seed(cfg.seed)
    losses = []
    peft_model.train()
    for _epoch in range(cfg.sft_steps_per_pair):
        perm = torch.randperm(len(pairs), generator=order).tolist()
        for s in range(0, len(perm), cfg.sft_batch):
            idx = perm[s : s + cfg.sft_batch]
            ids, attn, target = join_batch(
                [prompts[i] for i in idx], [completions[i] for i in idx], pad, None
            )
            labels = ids.masked_fill(target == 0, -100)
            logits = peft_model(input_ids=ids, attention_mask=attn, use_cache=False).logits
            loss = token_loss(logits, labels)
            if not torch.isfinite(loss):
                peft_model.unload()
                raise InnerUpdateDivergedError(
                    f"the generator fine-tune's loss is {float(loss)}: lower sft_lr "
                    f"(now {cfg.sft_lr:g}); nothing of this round was saved"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            losses.append(float(loss.detach()))
    peft_model.eval()
    _save_adapter(peft_model, out)
    return peft_model.merge_and_unload(), losses


def train_seal(cfg: SealConfig) -> dict:
    """Run (or continue) ReST-EM; returns the summary also written to ``summary.json``."""
    from tqdm.auto import tqdm

    from t2bench.models import load_model

    out = Path(cfg.output_dir)
    run = _run_folder(out)
    run.refuse_finished()
    check_writable(out, "SEAL output folder")  # read-only or full: refused before any work
    run.pin_config(cfg.to_dict())
    passages = load_passages(cfg.source, "train", n=cfg.n_train, seed=cfg.seed)
    log = run.log
    records = log.records()
    done = {(r["round"], r["uid"]) for r in records}
    t0 = time.perf_counter()
    loaded = load_model(cfg.model)
    model, tok = loaded.model, loaded.tokenizer
    rounds = []
    for r in range(1, cfg.rounds + 1):
        folder = round_adapter(out, r)
        # round.json, written after the adapter, marks a finished round; an adapter without it
        # (a kill between the two writes) is trained again: same pairs, same seed, same adapter
        if (folder.parent / "round.json").is_file():
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(folder)).merge_and_unload().eval()
            rounds.append(json.loads((folder.parent / "round.json").read_text()))
            continue
        t_round = time.perf_counter()
        updater = InnerUpdater(model, tok, cfg.inner, model_id=loaded.model_id)
        todo = [p for p in passages if (r, p.uid) not in done]
        bar = tqdm(
            total=len(passages),
            initial=len(passages) - len(todo),
            disable=not cfg.progress,
            desc=f"ReST-EM round {r}/{cfg.rounds}",
            unit="passage",
        )
        for p in todo:
            rec = _sample_and_score(p, r, model, tok, updater, cfg)
            log.append(rec)
            records.append(rec)
            bar.update(1)
            bar.set_postfix(
                kept=sum(1 for x in records if x["round"] == r and x["kept"] is not None)
            )
        bar.close()
        mine = {x["uid"]: x for x in records if x["round"] == r}
        by_uid = {p.uid: p for p in passages}
        pairs = [
            (selfedit_prompt(by_uid[u], cfg.variant), x["texts"][x["kept"]])
            for u, x in mine.items()
            if x["kept"] is not None and u in by_uid
        ]
        info = _round_info(r, mine, pairs)
        folder.parent.mkdir(parents=True, exist_ok=True)
        if pairs:
            t = time.perf_counter()
            model, losses = sft_generator(model, tok, pairs, cfg, folder)
            info |= {"sft_losses": losses, "sft_seconds": round(time.perf_counter() - t, 2)}
        else:  # nothing beat no update: G(r) = G(r-1), an adapter of zeros says so explicitly
            info["note"] = "no self-edit beat no update: the generator is unchanged this round"
            _empty_adapter(model, cfg, folder)
        info["seconds"] = round(time.perf_counter() - t_round, 2)
        info["provenance"] = provenance(
            model=loaded.model_id,
            seed=cfg.seed,
            split=f"{cfg.source}/train",
            wall_seconds=info["seconds"],
        )
        write_json_atomic(folder.parent / "round.json", info)
        rounds.append(info)
    summary = {
        "config": cfg.to_dict(),
        "rounds": rounds,
        "train_passages": {
            "source": cfg.source,
            "split": "train",
            "n": len(passages),
            "fingerprint": passages_fingerprint(passages),
        },
        "provenance": provenance(model=loaded.model_id, wall_seconds=time.perf_counter() - t0),
    }
    run.write_summary(summary)
    return summary


def _sample_and_score(
    p: Passage, r: int, model, tok, updater: InnerUpdater, cfg: SealConfig
) -> dict:
    """Round ``r`` on passage ``p``: the closed-book baseline, ``k`` sampled self-edits, each
    scored by an inner update; the best is kept only when it beats no update at all."""
    t = time.perf_counter()
    base = accuracy(closed_book(model, tok, [p], max_new_tokens=cfg.qa_max_new_tokens))
    texts = generate_self_edits(
        model,
        tok,
        [p],
        variant=cfg.variant,
        k=cfg.k,
        seed=cfg.seed * 1000 + r,
        temperature=cfg.temperature,
        max_new_tokens=cfg.max_new_tokens,
    )[0]
    scores = [
        score_self_edit(updater, tok, p, text, qa_max_new_tokens=cfg.qa_max_new_tokens)
        for text in texts
    ]
    rewards = [s["reward"] for s in scores]
    valid = [i for i, v in enumerate(rewards) if v is not None]
    best = max(valid, key=lambda i: rewards[i]) if valid else None
    kept = best if best is not None and rewards[best] > base else None
    return {
        "round": r,
        "uid": p.uid,
        "baseline": base,
        "rewards": rewards,
        "kept": kept,
        "texts": texts,
        "scores": scores,
        "seconds": round(time.perf_counter() - t, 2),
    }


def _round_info(r: int, mine: dict[str, dict], pairs: list) -> dict:
    """What round ``r`` found over its passages' records ``mine`` (before the generator's SFT)."""
    return {
        "round": r,
        "passages": len(mine),
        "kept": len(pairs),
        "mean_baseline": _mean([x["baseline"] for x in mine.values()]),
        "mean_reward": _mean([v for x in mine.values() for v in x["rewards"] if v is not None]),
        "mean_best": _mean(
            [
                max(v for v in x["rewards"] if v is not None)
                for x in mine.values()
                if any(v is not None for v in x["rewards"])
            ]
        ),
        "invalid_self_edits": sum(v is None for x in mine.values() for v in x["rewards"]),
    }


def _generator_lora(model, cfg: SealConfig):
    """The generator's fresh LoRA (seeded; peft starts B at zero, so it changes nothing yet)."""
    from peft import LoraConfig, get_peft_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return get_peft_model(
            model,
            LoraConfig(
                r=cfg.sft_r,
                lora_alpha=2 * cfg.sft_r,
                lora_dropout=0.0,
                target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
            ),
        )


def _save_adapter(peft_model, folder: Path) -> None:
    """Save under a temporary name and rename: a kill leaves a complete adapter or none."""
    # a full or read-only disk: no partial adapter, one error naming the cause (peft's writer
    # raises safetensors' bare SafetensorError)
    with output_errors(folder, "nothing partial was left", "round adapter"):
        with replacing(folder, folder=True) as tmp:
            peft_model.save_pretrained(str(tmp), safe_serialization=True)


def _empty_adapter(model, cfg: SealConfig, folder: Path) -> None:
    """A LoRA adapter whose update is exactly zero: G(r) = G(r-1), said explicitly."""
    peft_model = _generator_lora(model, cfg)
    _save_adapter(peft_model, folder)
    peft_model.unload()


def _mean(values: list) -> float | None:
    return round(sum(values) / len(values), 4) if values else None
