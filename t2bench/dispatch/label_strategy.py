"""Strategy ``label`` (beyond the paper): no generation. One forward pass scores each label word
as the continuation of ``\\boxed{`` after the ``prompt`` strategy's classification prompt, and
the likeliest label wins, optionally calibrated by the label scores of a content-free question.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import torch

from t2bench.classify_prompt import DEFAULT_LAYOUT
from t2bench.dispatch.base import (
    register_dispatcher,
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
    layout: str = DEFAULT_LAYOUT  # t2bench.classify_prompt.LAYOUTS
    reuse: bool = True  # encode the shared head once; the LM head runs at scored positions only


class LabelScoreDispatch(FirstPass):
    """One forward pass: the label whose word is likeliest after ``\\boxed{`` wins."""

    name = "label"

    def __init__(self, config: LabelConfig, experts: Mapping[str, Expert]):
        super().__init__(config, experts)
        self._label_ids: list[list[int]] | None = None
        self._prior: torch.Tensor | None = None

    def _box(self) -> list[int]:
        return self.context().tokenizer("\\boxed{", add_special_tokens=False)["input_ids"]

    def _continuations(self) -> list[list[int]]:
        """Token ids of each label after ``\\boxed{`` (tokenised in context, not alone)."""
        if self._label_ids is None:
            tok = self.context().tokenizer
            box = self._box()
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

    def _scores(self, questions: list[str]) -> torch.Tensor:
        """(questions, labels) summed log-probabilities of each label's tokens after the
        question's prompt and ``\\boxed{``."""
        conts = self._continuations()
        firsts = [c[0] for c in conts]
        mode = self.config.scoring
        if mode == "auto":
            mode = "first" if len(set(firsts)) == len(firsts) else "full"
        box = self._box()
        cued = [i + box for i in self._encode(questions)]
        if mode == "first":
            rows = self._run_rows(cued, self._first_tokens)
            self.stats["scored_rows"] += len(questions)
            return torch.stack(rows)[:, firsts]
        # each question's prompt followed by each label, one label at a time (its rows share a
        # tail length)
        self.stats["scored_rows"] += len(questions) * len(conts)
        out = []
        for c in conts:
            tails = self._run_rows([i + c for i in cued], self._tail_scorer(len(c)))
            out.append(torch.stack(tails))
        return torch.stack(out, 1)

    def _logits(self, prefix, rows: list[list[int]], keep: int) -> torch.Tensor:
        from t2bench.generation import last_logits

        ctx = self.context()
        pad = ctx.tokenizer.pad_token_id or 0
        # reuse=false: the LM head over every position, as before the option existed
        return last_logits(
            ctx.model, rows, pad, keep=keep if self.config.reuse else 0, prefix=prefix
        )

    def _first_tokens(self, prefix, rows: list[list[int]]) -> list[torch.Tensor]:
        """Log-probabilities of the next token after each row."""
        return list(torch.log_softmax(self._logits(prefix, rows, 1)[:, -1], dim=-1))

    def _tail_scorer(self, n: int):
        """Summed log-probabilities of each row's last ``n`` tokens."""

        def score(prefix, rows: list[list[int]]) -> list[torch.Tensor]:
            logits = self._logits(prefix, rows, n + 1)
            logp = torch.log_softmax(logits[:, -n - 1 : -1], dim=-1)
            tail = torch.tensor([r[-n:] for r in rows], device=logp.device)
            return list(logp.gather(-1, tail[..., None]).squeeze(-1).sum(-1))

        return score

    def classify(self, questions: list[str]) -> list[str]:
        scores = self._scores(questions)
        if self.config.calibrate:
            if self._prior is None:
                self._prior = self._scores(["N/A"])[0]
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
