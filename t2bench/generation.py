"""Generation and log-probabilities of a causal LM: RL rollouts and every first-pass answer.

Sampling is seeded *per sample*: sample ``i`` of step ``s`` draws its Gumbel noise from its own
generator, so what it generates does not depend on which process or micro-batch it lands in.
That is what makes a 2-process run reproduce a 1-process run with the same global batch.
Sampling with temperature T is done as argmax(logits / T + Gumbel noise), which draws exactly
from softmax(logits / T), inside Hugging Face ``generate`` (greedy search + a logits processor).
"""

from __future__ import annotations

import copy
import inspect
import zlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    StoppingCriteriaList,
)

#: Generation budget per task when the config does not set ``max_new_tokens``.
DEFAULT_NEW_TOKENS = {"math": 96, "reasoning": 16, "code": 192, "classifier": 12, "vqa": 8}


def sample_seed(seed: int, step: int, index: int) -> int:
    """Seed of one sample, from the run seed, the step and its index in the global batch."""
    return zlib.crc32(f"{seed}:{step}:{index}".encode())


def format_prompt(tokenizer, prompt: str) -> str:
    """The prompt as the model sees it: its chat template if it has one, else plain text."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
    return f"{prompt}\n\nAnswer: "


def encode_formatted(tokenizer, text: str) -> list[int]:
    """Token ids of text already formatted by :func:`format_prompt` (special tokens only where
    the chat template puts them; a plain tokenizer adds its own)."""
    chat = bool(getattr(tokenizer, "chat_template", None))
    return tokenizer(text, add_special_tokens=not chat)["input_ids"]


def encode_prompts(tokenizer, prompts: list[str]) -> list[list[int]]:
    """Token ids of the formatted prompts."""
    return [encode_formatted(tokenizer, format_prompt(tokenizer, p)) for p in prompts]


def encode_items(tokenizer, items, processor=None) -> tuple[list[list[int]], list | None]:
    """Prompt ids of training items, and their pixel tensors when ``processor`` is given.

    Image items are encoded as lm-eval's multimodal backend encodes them: the raw prompt
    (no chat template) through the processor, which expands ``<image>`` into image tokens.
    """
    if processor is None:
        return encode_prompts(tokenizer, [it.prompt for it in items]), None
    ids, pixels = [], []
    for it in items:
        if it.image is None:
            raise ValueError(f"item {it.uid} has no image but the model is an image-text model")
        enc = processor(text=it.prompt, images=it.image, return_tensors="pt")
        ids.append(enc["input_ids"][0].tolist())
        pixels.append(enc["pixel_values"][0])
    return ids, pixels


def eos_ids(model, tokenizer) -> list[int]:
    ids = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = [ids] if isinstance(ids, int) else list(ids or [])
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


class GumbelNoise(LogitsProcessor):
    """Adds per-row seeded Gumbel noise to logits / T, turning greedy search into sampling."""

    def __init__(self, seeds: list[int], temperature: float):
        self.temperature = temperature
        self.generators = [torch.Generator().manual_seed(s) for s in seeds]

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        vocab = scores.shape[-1]
        u = torch.stack(
            [torch.rand(vocab, generator=g, dtype=torch.float64) for g in self.generators]
        )
        gumbel = -torch.log(-torch.log(u.clamp_min(1e-300))).to(scores.device, torch.float32)
        return scores.float() / self.temperature + gumbel


@dataclass
class Rollout:
    prompt_ids: list[list[int]]
    completion_ids: list[list[int]]
    texts: list[str]


def _left_pad(seqs: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s) :] = torch.tensor(s)
        mask[i, width - len(s) :] = 1
    return ids.to(device), mask.to(device)


@torch.no_grad()
def generate(
    model: nn.Module,
    tokenizer,
    prompt_ids: list[list[int]],
    *,
    max_new_tokens: int,
    seeds: list[int] | None = None,
    temperature: float = 1.0,
    pixel_values: list | None = None,
    group_size: int = 1,
    prefix: PrefixCache | None = None,
    stopping_criteria: StoppingCriteriaList | None = None,
) -> Rollout:
    """Greedy (``seeds=None``) or seeded sampled completions for a batch of prompts.

    Completions are cut after the first end-of-sequence token, which is kept so that the
    policy learns to stop. ``group_size`` k > 1 says the rows come in runs of k identical
    prompts (k samples per prompt): each prompt is then encoded once, and its keys and values
    are repeated for its k rows before sampling (text models only). ``prefix``: every prompt
    starts with ``prefix.ids``, whose keys and values are already encoded; ``prompt_ids`` then
    hold only what follows it. ``stopping_criteria`` end rows early (their tail is padding,
    dropped from the completion).
    """
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    stops = eos_ids(model, tokenizer)
    ids, mask = _left_pad(prompt_ids, pad, device)
    extra: dict = {}
    if prefix is not None:
        if group_size > 1 or pixel_values is not None:
            raise ValueError("generate: prefix= is for text prompts with group_size=1")
        ids, mask = prefix.prepend(ids, mask)
        extra = {cache_argument(model): prefix.for_batch(len(ids))}
        prompt_ids = [prefix.ids + list(p) for p in prompt_ids]
    elif group_size > 1 and pixel_values is None:
        extra = _shared_prefill(model, ids, mask, group_size)
    gen_cfg = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=False,
        eos_token_id=stops,
        pad_token_id=pad,
    )
    processors = LogitsProcessorList()
    if seeds is not None:
        processors.append(GumbelNoise(seeds, temperature))
    if pixel_values is not None:
        extra["pixel_values"] = stack_pixels(pixel_values, model)
    out = model.generate(
        input_ids=ids,
        attention_mask=mask,
        generation_config=gen_cfg,
        logits_processor=processors,
        stopping_criteria=stopping_criteria,
        **extra,
    )
    completions = []
    for row in out[:, ids.shape[1] :].tolist():
        cut = next((j + 1 for j, t in enumerate(row) if t in stops), len(row))
        if stopping_criteria is not None:  # a row stopped early is padded to the batch's end
            while cut and row[cut - 1] == pad and pad not in stops:
                cut -= 1
        completions.append(row[:cut])
    texts = tokenizer.batch_decode(completions, skip_special_tokens=True)
    return Rollout([list(p) for p in prompt_ids], completions, texts)


def cache_argument(model: nn.Module) -> str:
    """The forward argument that takes a key/value cache: ``cache`` in the transformers
    releases that renamed it, ``past_key_values`` before (peft models: their base model's)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    params = inspect.signature(base.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


@dataclass
class PrefixCache:
    """Keys and values of token ids that every row of a batch starts with, encoded once (batch
    of one) for the weights the model had then; a batch reuses them instead of re-encoding."""

    ids: list[int]
    cache: object  # a transformers DynamicCache

    @classmethod
    @torch.no_grad()
    def encode(cls, model: nn.Module, ids: list[int]) -> PrefixCache:
        from transformers import DynamicCache

        if not ids:
            raise ValueError("PrefixCache: the prefix is empty")
        device = next(model.parameters()).device
        cache = DynamicCache()
        model(
            input_ids=torch.tensor([ids], device=device),
            use_cache=True,
            **{cache_argument(model): cache},
        )
        return cls(list(ids), cache)

    def for_batch(self, rows: int):
        """A fresh copy for ``rows`` rows (a forward pass appends to the cache it is given)."""
        cache = copy.deepcopy(self.cache)
        cache.batch_repeat_interleave(rows)
        return cache

    def prepend(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The prefix's ids and an all-ones mask before left-padded rows: the padding then sits
        between the prefix and each row, masked out, so the prefix keeps positions 0..P-1."""
        head = torch.tensor(self.ids, dtype=ids.dtype, device=ids.device).expand(len(ids), -1)
        return torch.cat([head, ids], 1), torch.cat([torch.ones_like(head), mask], 1)


@torch.no_grad()
def last_logits(
    model: nn.Module,
    rows: list[list[int]],
    pad_id: int,
    *,
    keep: int = 1,
    prefix: PrefixCache | None = None,
) -> torch.Tensor:
    """(batch, keep, vocab) fp32 logits at each row's last ``keep`` positions, with the LM head
    computed there only. Rows are left-padded, so their last tokens share the last columns;
    with ``prefix`` the rows are what follows ``prefix.ids`` and the prefix is not re-encoded."""
    if keep > min(len(r) for r in rows):
        raise ValueError(f"last_logits: keep={keep} exceeds the shortest row's length")
    device = next(model.parameters()).device
    ids, mask = _left_pad(rows, pad_id, device)
    extra: dict = {}
    offset = 0
    if prefix is not None:
        offset = len(prefix.ids)
        extra[cache_argument(model)] = prefix.for_batch(len(rows))
        mask = torch.cat([torch.ones(len(rows), offset, dtype=mask.dtype, device=device), mask], 1)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)[:, offset:]
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if "logits_to_keep" in inspect.signature(base.forward).parameters:
        extra["logits_to_keep"] = keep
    logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, **extra).logits
    return logits[:, -keep:].float()


def _shared_prefill(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor, k: int) -> dict:
    """A key/value cache of all but the last token of every k-th row's prompt, repeated k
    times along the batch: ``generate`` then encodes only the last prompt token per row."""
    from transformers import DynamicCache

    rows = len(ids)
    if rows % k or any(
        not torch.equal(ids[i], ids[i - i % k]) for i in range(rows)
    ):  # the caller's promise, checked: a wrong grouping would answer the wrong prompt
        raise ValueError(f"group_size={k}: rows must come in runs of {k} identical prompts")
    if ids.shape[1] < 2:
        return {}
    first, first_mask = ids[::k, :-1], mask[::k, :-1]
    cache = DynamicCache()
    arg = cache_argument(model)
    with torch.no_grad():
        model(
            input_ids=first,
            attention_mask=first_mask,
            position_ids=(first_mask.cumsum(-1) - 1).clamp_min(0),
            use_cache=True,
            **{arg: cache},
        )
    cache.batch_repeat_interleave(k)
    return {arg: cache}  # generate takes the cache under the same name as forward


def stack_pixels(pixels: list, model) -> torch.Tensor:
    p = next(model.parameters())
    return torch.stack(list(pixels)).to(p.device, p.dtype)


def _selected_rows(hidden: torch.Tensor, select: torch.Tensor) -> torch.Tensor:
    if hidden.shape[:2] != select.shape:
        raise RuntimeError(
            f"the LM head received hidden states of shape {tuple(hidden.shape)}, not the "
            f"(batch, sequence) {tuple(select.shape)} of the selected positions: this model "
            "does not apply its head once to every position; call without select"
        )
    return hidden[select]


def logits_at(model: nn.Module, select: torch.Tensor | None, call) -> torch.Tensor:
    """``call()``'s logits, or only those at ``select`` ((N, vocab), ``logits[select]`` order).

    With ``select`` the model's output embedding (its LM head) gets a pre-hook that hands it
    the selected rows of the final hidden states, so the head's matmul (and its backward)
    runs on N rows. Causal LMs and LLaVA-style image-text models apply the head once to
    every position; a model without an output embedding gets full logits, then the rows.
    """
    if select is None:
        return call().logits
    select = select.bool()
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is None:
        return call().logits[select]
    handle = head.register_forward_pre_hook(
        lambda _module, args: (_selected_rows(args[0], select), *args[1:])
    )
    try:
        return call().logits
    finally:
        handle.remove()


def join_batch(
    prompt_ids: list[list[int]], completion_ids: list[list[int]], pad_id: int, device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded prompt+completion ids, attention mask, and a mask of completion tokens."""
    seqs = [p + c for p, c in zip(prompt_ids, completion_ids, strict=True)]
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    attn = torch.zeros_like(ids)
    target = torch.zeros_like(ids)
    for i, (p, s) in enumerate(zip(prompt_ids, seqs, strict=True)):
        ids[i, : len(s)] = torch.tensor(s)
        attn[i, : len(s)] = 1
        target[i, len(p) : len(s)] = 1
    return ids.to(device), attn.to(device), target.to(device)


def logit_positions(target_mask: torch.Tensor) -> torch.Tensor:
    """(batch, sequence) bool mask of the positions whose logits predict a completion token.

    Position t predicts token t + 1, so this is ``target_mask`` shifted left by one. Passed as
    a policy's ``select``, it gets exactly the logits :func:`completion_logprobs` needs.
    """
    sel = torch.zeros_like(target_mask, dtype=torch.bool)
    sel[:, :-1] = target_mask[:, 1:].bool()
    return sel


def completion_logprobs(
    logits: torch.Tensor,
    input_ids: torch.Tensor,
    target_mask: torch.Tensor,
    temperature: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Log-probabilities of the completion tokens.

    ``logits`` are (B, T, V) for every position, or (N, V) for the positions of
    :func:`logit_positions` only (a policy called with ``select``), in the same order.
    The log-softmax is taken in fp32 whatever dtype the logits come in.
    Returns (token log-probs of the selected positions (N,), full log-softmax rows (N, V),
    row index of each selected position (N,)), where N counts completion tokens in the batch.
    """
    sel = target_mask[:, 1:].bool()
    rows = torch.nonzero(sel, as_tuple=True)[0]
    picked = logits if logits.dim() == 2 else logits[:, :-1][sel]
    if picked.shape[0] != rows.numel():
        raise ValueError(
            f"{picked.shape[0]} logit rows for {rows.numel()} completion tokens: pass full "
            "(B, T, V) logits or those at logit_positions(target_mask)"
        )
    logp = F.log_softmax(picked.float() / temperature, dim=-1)
    tok = logp.gather(-1, input_ids[:, 1:][sel][:, None]).squeeze(-1)
    return tok, logp, rows


def per_sequence(
    values: torch.Tensor, rows: torch.Tensor, batch: int, reduction: str
) -> torch.Tensor:
    """Sum (or mean) of per-token values for each sequence of the batch."""
    total = torch.zeros(batch, dtype=values.dtype, device=values.device).index_add(0, rows, values)
    if reduction == "sum":
        return total
    count = torch.zeros(batch, dtype=values.dtype, device=values.device).index_add(
        0, rows, torch.ones_like(values)
    )
    return total / count.clamp_min(1)


def token_kl(logp_policy: torch.Tensor, logp_ref: torch.Tensor, direction: str) -> torch.Tensor:
    """Full-vocabulary KL per position: KL(policy‖ref) or KL(ref‖policy), never below 0.

    KL is non-negative, but the sum Σ p·(log p − log q) can round below zero when the two
    distributions (almost) agree, because rounded log-softmax outputs are not exactly
    normalised. Such values are raised to 0 by subtracting their own detached value, which
    leaves the gradient that of the sum everywhere (a plain clamp would zero it there).
    """
    if direction == "policy_ref":
        kl = (logp_policy.exp() * (logp_policy - logp_ref)).sum(-1)
    else:
        kl = (logp_ref.exp() * (logp_ref - logp_policy)).sum(-1)
    # x - x is exactly +0.0, so a negative sum becomes exactly 0 and others are unchanged
    return kl - kl.detach().clamp_max(0)
