"""Log-likelihoods of continuations with each shared context encoded once.

lm-eval's HFLM scores every (context, continuation) pair as its own sequence: a 4-choice
question is encoded 4 times, and the LM head and log-softmax run over every position of each.
Here the requests that share a context (the choices of one multiple-choice document: lm-eval
tokenises context and continuation apart, so their context tokens are identical) are grouped.
The context but its last token is encoded once into a key/value cache, which is copied per
choice; each choice then runs only ``[last context token] + continuation[:-1]`` on top of it
(choices of similar length together), and the LM head runs only on the positions that predict
a continuation token.

The numbers are HFLM's up to float rounding (tests compare the two). A request longer than the
model's window, which HFLM truncates from the left, is scored by HFLM's own path.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from t2bench.generation import cache_argument, logits_at

Request = tuple[tuple[str, str] | None, list[int], list[int]]


def group_by_context(requests: list[Request], max_length: int) -> tuple[dict, list[int]]:
    """Request indices by context tokens, and the indices of requests too long for the window."""
    groups: dict[tuple[int, ...], list[int]] = {}
    too_long = []
    for i, (_, context, continuation) in enumerate(requests):
        if not context or not continuation:
            raise ValueError(f"request {i} has an empty context or continuation")
        if len(context) + len(continuation) > max_length + 1:
            too_long.append(i)
        else:
            groups.setdefault(tuple(context), []).append(i)
    return groups, too_long


def _batches(contexts: list[tuple[int, ...]], size: int) -> list[list[tuple[int, ...]]]:
    """Contexts longest first in batches of ``size``; a one-token context (nothing to cache)
    never shares a batch with longer ones, so no row of a cached batch is all padding."""
    ordered = sorted(contexts, key=lambda c: (-len(c), c))
    long = [c for c in ordered if len(c) > 1]
    short = [c for c in ordered if len(c) == 1]
    return [part[i : i + size] for part in (long, short) for i in range(0, len(part), size)]


#: continuations scored per forward over the cached contexts: rows of similar length go
#: together, so little of a forward is padding
TAIL_ROWS = 32


@torch.no_grad()
def score_batch(
    model: torch.nn.Module,
    contexts: list[tuple[int, ...]],
    continuations: list[list[int]],
    owner: list[int],
    *,
    pad_id: int = 0,
    softmax_dtype: torch.dtype | None = torch.float32,
) -> list[tuple[float, bool]]:
    """(sum of continuation log-probs, whether each continuation token is the argmax) for
    continuation ``r`` after context ``owner[r]``."""
    from transformers import DynamicCache

    device = next(model.parameters()).device
    prefixes = [list(c[:-1]) for c in contexts]
    width = max(len(p) for p in prefixes)
    cache = None
    mask = torch.zeros((len(prefixes), 0), dtype=torch.long, device=device)
    if width:
        ids = torch.full((len(prefixes), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(prefixes), width), dtype=torch.long)
        for i, p in enumerate(prefixes):
            ids[i, width - len(p) :] = torch.tensor(p)
            mask[i, width - len(p) :] = 1
        ids, mask = ids.to(device), mask.to(device)
        cache = DynamicCache()
        model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
            use_cache=True,
            logits_to_keep=1,  # the prefix's logits are never read
            **{cache_argument(model): cache},
        )
    tails = [[contexts[o][-1], *cont[:-1]] for o, cont in zip(owner, continuations, strict=True)]
    order = sorted(range(len(tails)), key=lambda r: -len(tails[r]))
    out: list[tuple[float, bool] | None] = [None] * len(tails)
    for start in range(0, len(order), TAIL_ROWS):
        rows = order[start : start + TAIL_ROWS]
        t = len(tails[rows[0]])
        tail_ids = torch.full((len(rows), t), pad_id, dtype=torch.long)
        tail_mask = torch.zeros((len(rows), t), dtype=torch.long)
        for k, r in enumerate(rows):
            tail_ids[k, : len(tails[r])] = torch.tensor(tails[r])
            tail_mask[k, : len(tails[r])] = 1
        tail_ids, tail_mask = tail_ids.to(device), tail_mask.to(device)
        which = torch.tensor([owner[r] for r in rows], device=device)
        extra: dict = {}
        if cache is not None:
            # one copy of its context's keys and values per continuation of this chunk
            rows_cache = copy.deepcopy(cache)
            rows_cache.reorder_cache(which)
            extra[cache_argument(model)] = rows_cache
        start_pos = torch.tensor([len(prefixes[owner[r]]) for r in rows], device=device)
        select = tail_mask.bool()
        call = functools.partial(
            model,
            input_ids=tail_ids,
            attention_mask=torch.cat([mask[which], tail_mask], 1),
            position_ids=start_pos[:, None] + torch.arange(t, device=device)[None, :],
            **extra,
        )
        logits = logits_at(model, select, call)  # (real tail positions, vocab), row by row
        logp = F.log_softmax(logits, dim=-1, dtype=softmax_dtype)
        at = 0
        for r in rows:
            target = torch.tensor(continuations[r], device=device)
            own = logp[at : at + len(target)]
            at += len(target)
            total = float(own.gather(-1, target[:, None]).sum())
            out[r] = (total, bool((own.argmax(-1) == target).all()))
    return out


def shared_context_loglikelihood(
    model: torch.nn.Module,
    requests: list[Request],
    *,
    batch_size: int,
    max_length: int,
    fallback: Callable[[list[Request]], list[tuple[float, bool]]],
    on_answer: Callable[[tuple[str, str] | None, tuple[float, bool]], None] | None = None,
    pad_id: int = 0,
    softmax_dtype: torch.dtype = torch.float32,
    progress: bool = True,
) -> list[tuple[float, bool]]:
    """Answers to ``requests`` in their order; ``batch_size`` contexts are encoded at a time.
    ``fallback`` scores the requests too long for the window (HFLM's path); ``on_answer`` gets
    each (request key, answer) as it is computed (lm-eval's cache hook)."""
    groups, too_long = group_by_context(requests, max_length)
    answers: list[tuple[float, bool] | None] = [None] * len(requests)
    bar = tqdm(total=len(requests), disable=not progress, desc="loglikelihood (shared contexts)")
    for batch in _batches(list(groups), batch_size):
        index = [i for c in batch for i in groups[c]]
        owner = [k for k, c in enumerate(batch) for _ in groups[c]]
        scored = score_batch(
            model,
            batch,
            [requests[i][2] for i in index],
            owner,
            pad_id=pad_id,
            softmax_dtype=softmax_dtype,
        )
        for i, answer in zip(index, scored, strict=True):
            answers[i] = answer
            if on_answer is not None:
                on_answer(requests[i][0], answer)
        bar.update(len(index))
    if too_long:
        for i, answer in zip(too_long, fallback([requests[i] for i in too_long]), strict=True):
            answers[i] = answer
        bar.update(len(too_long))
    bar.close()
    return answers
