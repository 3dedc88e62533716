"""Strategies ``prompt`` and ``classifier``: the model itself names the expert.

* ``prompt``: the base model generates a ``\\boxed{label}`` reply to a four-way
  classification prompt (code / math / reasoning / other); ``other`` → base weights.
* ``classifier``: the same prompt, read the same way, but the first pass runs with the
  classifier SVF expert applied: only the weights differ from ``prompt``.

The prompt is :func:`t2bench.classify_prompt.classify_prompt`, which also builds the classifier
expert's training prompts; its hash is recorded as ``prompt_sha256`` in ``describe()``. With
``reuse=true`` a reply ends at its first closed ``\\boxed{…}`` that names a label (the label
is then read; later tokens would only cost time), and the prompt's shared head is encoded once.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from t2bench.classify_prompt import DEFAULT_LAYOUT
from t2bench.dispatch.base import (
    register_dispatcher,
)
from t2bench.dispatch.categories import boxed_label, expert_task
from t2bench.dispatch.first_pass import FirstPass, strategy_factory
from t2bench.errors import ConfigError
from t2bench.svf.expert import Expert


@dataclass
class PromptConfig:
    max_new_tokens: int = 32
    max_chars: int = 1500
    batch_size: int = 0  # 0: the backend's batch size
    strict: bool = False  # raise on a reply the parser cannot read instead of using base
    layout: str = DEFAULT_LAYOUT  # t2bench.classify_prompt.LAYOUTS
    reuse: bool = True  # encode the shared head once; stop a reply at its first closed box


class BoxClosed(StoppingCriteria):
    """Ends each row once its reply holds a closed ``\\boxed{…}`` that names a label."""

    def __init__(self, tokenizer, labels):
        self.tokenizer = tokenizer
        self.labels = labels
        self.start: int | None = None

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        if self.start is None:  # first call: one token has been generated
            self.start = input_ids.shape[1] - 1
        texts = self.tokenizer.batch_decode(input_ids[:, self.start :], skip_special_tokens=True)
        hits = [boxed_label(t, self.labels) is not None for t in texts]
        return torch.tensor(hits, device=input_ids.device)


class PromptDispatch(FirstPass):
    """The paper's prompt strategy: the base model classifies, then the expert answers."""

    name = "prompt"

    def _generate(self, prefix, rows: list[list[int]]) -> list[str]:
        from t2bench.generation import generate

        ctx = self.context()
        stop = (
            StoppingCriteriaList([BoxClosed(ctx.tokenizer, self.labels)])
            if self.config.reuse
            else None
        )
        out = generate(
            ctx.model,
            ctx.tokenizer,
            rows,
            max_new_tokens=self.config.max_new_tokens,
            prefix=prefix,
            stopping_criteria=stop,
        )
        self.stats["generated_tokens"] += sum(len(c) for c in out.completion_ids)
        return out.texts

    def classify(self, questions: list[str]) -> list[str]:
        return self._read(self._replies(questions))

    def _replies(self, questions: list[str]) -> list[str]:
        """The model's reply to each question's classification prompt."""
        return self._run_rows(self._encode(questions), self._generate)


class ClassifierDispatch(PromptDispatch):
    """The prompt strategy with the classifier expert applied during the first pass."""

    name = "classifier"

    def __init__(self, config, experts: Mapping[str, Expert]):
        found = [e for e in experts.values() if expert_task(e) == "classifier"] or [
            e for e in experts.values() if e.meta.name.lower().startswith("classifier")
        ]
        if len(found) != 1:
            raise ConfigError(
                f"dispatch=classifier needs exactly one classifier expert (trained on task "
                f"'classifier' or named 'classifier-…'); loaded: {sorted(experts) or 'none'}. "
                "Train one with `t2bench experts classifier-svf-pg` and pass it in experts=..."
            )
        self.classifier = found[0]
        super().__init__(config, experts)

    @contextmanager
    def _weights(self):
        patcher = self.context().patcher
        if patcher is None:
            raise ConfigError("dispatch=classifier needs the experts loaded by the backend")
        if patcher.active != self.classifier.meta.name:
            patcher.apply(self.classifier)
        yield

    def describe(self) -> dict:
        return {**super().describe(), "classifier_expert": self.classifier.meta.name}


register_dispatcher("prompt", strategy_factory(PromptDispatch, PromptConfig))
register_dispatcher("classifier", strategy_factory(ClassifierDispatch, PromptConfig))
