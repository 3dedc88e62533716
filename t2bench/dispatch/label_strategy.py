"""Strategy ``label`` (beyond the paper): no generation. One forward pass scores each label word
as the continuation of ``\\boxed{`` after the ``prompt`` strategy's classification prompt, and
the likeliest label wins, optionally calibrated by the label scores of a content-free question.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import torch

from t2bench.dispatch.base import (
    register_dispatcher,
)
from t2bench.dispatch.categories import (
    classify_prompt,
)
from t2bench.dispatch.first_pass import FirstPass, strategy_factory
from t2bench.errors import ConfigError
from t2bench.svf.expert import Expert


@dataclass
class LabelConfig:
    max_chars: int = 1500
    batch_size: int = 0
    calibrate: bool = True  # subtract each label's score on a content-free question
    scoring: Literal["auto", "first", "full"] = "auto"


class LabelScoreDispatch(FirstPass):
    """One forward pass: the label whose word is likeliest after ``\\boxed{`` wins."""

    name = "label"

    def __init__(self, config: LabelConfig, experts: Mapping[str, Expert]):
        super().__init__(config, experts)
        self._label_ids: list[list[int]] | None = None
        self._prior: torch.Tensor | None = None

    def _prefixes(self, questions: list[str]) -> list[list[int]]:
        from t2bench.generation import encode_prompts

        ids = encode_prompts(self.context().tokenizer, [classify_prompt(q) for q in questions])
        box = self.context().tokenizer("\\boxed{", add_special_tokens=False)["input_ids"]
        return [i + box for i in ids]

    def _continuations(self) -> list[list[int]]:
        """Token ids of each label after ``\\boxed{`` (tokenised in context, not alone)."""
        if self._label_ids is None:
            tok = self.context().tokenizer
            box = tok("\\boxed{", add_special_tokens=False)["input_ids"]
            out = []
            for label in self.labels:
                full = tok("\\boxed{" + label, add_special_tokens=False)["input_ids"]
                if full[: len(box)] != box:  # the label merged into the brace: score it whole
                    raise ConfigError(
                        f"dispatch=label: the tokenizer merges '{{' with {label!r}; use dispatch=prompt"
                    )
                out.append(full[len(box) :])
            self._label_ids = out
        return self._label_ids

    def _scores(self, prefixes: list[list[int]]) -> torch.Tensor:
        """(batch, labels) summed log-probabilities of each label's tokens."""
        conts = self._continuations()
        firsts = [c[0] for c in conts]
        mode = self.config.scoring
        if mode == "auto":
            mode = "first" if len(set(firsts)) == len(firsts) else "full"
        if mode == "first":
            logp = self._last_logprobs(prefixes)
            self.stats["scored_rows"] += len(prefixes)
            return logp[:, firsts]
        rows = [p + c for p in prefixes for c in conts]
        scores = self._sequence_logprobs(rows, [len(c) for _ in prefixes for c in conts])
        self.stats["scored_rows"] += len(rows)
        return scores.view(len(prefixes), len(conts))

    def _batch(self, seqs: list[list[int]]):
        ctx = self.context()
        device = next(ctx.model.parameters()).device
        pad = ctx.tokenizer.pad_token_id or 0
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, s in enumerate(seqs):  # left padding: every row ends at the last column
            ids[i, width - len(s) :] = torch.tensor(s)
            mask[i, width - len(s) :] = 1
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        return ids.to(device), mask.to(device), pos.to(device)

    @torch.no_grad()
    def _last_logprobs(self, seqs: list[list[int]]) -> torch.Tensor:
        ids, mask, pos = self._batch(seqs)
        logits = self.context().model(input_ids=ids, attention_mask=mask, position_ids=pos).logits
        return torch.log_softmax(logits[:, -1].float(), dim=-1)

    @torch.no_grad()
    def _sequence_logprobs(self, seqs: list[list[int]], tails: list[int]) -> torch.Tensor:
        ids, mask, pos = self._batch(seqs)
        logits = self.context().model(input_ids=ids, attention_mask=mask, position_ids=pos).logits
        logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
        tok = logp.gather(-1, ids[:, 1:, None]).squeeze(-1)
        return torch.stack([tok[i, -n:].sum() for i, n in enumerate(tails)])

    def classify(self, questions: list[str]) -> list[str]:
        prefixes = self._prefixes(questions)
        self.stats["prompt_tokens"] += sum(len(p) for p in prefixes)
        scores = self._scores(prefixes)
        if self.config.calibrate:
            if self._prior is None:
                self._prior = self._scores(self._prefixes(["N/A"]))[0]
            scores = scores - self._prior
        return [self.labels[i] for i in scores.argmax(-1).tolist()]

    def describe(self) -> dict:
        out = super().describe()
        out.pop("examples", None)
        if self._prior is not None:
            out["prior"] = dict(
                zip(self.labels, [round(v, 4) for v in self._prior.tolist()], strict=True)
            )
        return out


register_dispatcher("label", strategy_factory(LabelScoreDispatch, LabelConfig))
