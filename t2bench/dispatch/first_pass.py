"""What the model-asking first passes share (``prompt``, ``classifier``, ``label``): a memo per
prompt text (the several requests lm-eval sends for one document cost one classification),
batching, counters, the reading of a reply into a label, and the label's Choice."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict

import torch
from tqdm.auto import tqdm

from t2bench.dispatch.base import (
    Choice,
    Dispatcher,
    DispatchRequest,
    options_to_config,
)
from t2bench.dispatch.categories import (
    CLASSIFY_PROMPT_SHA256,
    LABELS,
    choice_for,
    label_experts,
    parse_label,
    question_of,
)
from t2bench.errors import ConfigError
from t2bench.svf.expert import Expert


@contextmanager
def count_forwards(model: torch.nn.Module, counter: Counter, key: str = "forward_passes"):
    """Count the model's forward calls (each generated token is one) while inside."""

    def hook(*_):
        counter[key] += 1

    handle = model.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


class UnreadableClassification(ConfigError):
    """A first-pass reply named no label (raised only with ``strict=true``)."""


class FirstPass(Dispatcher):
    """Shared machinery: memo per text, batching, counters, label → Choice."""

    labels: Sequence[str] = LABELS
    # each distinct prompt text is classified on its own (batched only for speed)
    shardable = True

    def __init__(self, config, experts: Mapping[str, Expert]):
        self.config = config
        self.mapping = label_experts(experts, strategy=self.name)
        self.memo: dict[str, str] = {}
        self.stats: Counter = Counter()
        self.label_counts: Counter = Counter()
        self.seconds = 0.0
        self.examples: list[dict] = []  # a few raw replies, for the record

    def choose(self, requests: Sequence[DispatchRequest]) -> list[Choice]:
        ctx = self.context()
        todo = list(dict.fromkeys(r.text for r in requests if r.text not in self.memo))
        if todo:
            t0 = time.perf_counter()
            size = self.config.batch_size or ctx.batch_size or 16
            batches = [todo[i : i + size] for i in range(0, len(todo), size)]
            bar = tqdm(
                batches, desc=f"dispatch={self.name}", disable=len(todo) <= size, leave=False
            )
            with count_forwards(ctx.model, self.stats), self._weights():
                for batch in bar:
                    labels = self.classify([question_of(t, self.config.max_chars) for t in batch])
                    for text, label in zip(batch, labels, strict=True):
                        self.memo[text] = label
                        self.label_counts[label] += 1
            self.stats["classified"] += len(todo)
            self.seconds += time.perf_counter() - t0
        return [choice_for(self.memo[r.text], self.mapping) for r in requests]

    @contextmanager
    def _weights(self):
        """The weights the first pass runs with: the base model."""
        patcher = self.context().patcher
        if patcher is not None and patcher.active is not None:
            patcher.restore()
        yield

    def classify(self, questions: list[str]) -> list[str]:
        raise NotImplementedError

    def _read(self, replies: list[str]) -> list[str]:
        out = []
        for reply in replies:
            label = parse_label(reply, self.labels)
            if len(self.examples) < 5:
                self.examples.append({"reply": reply, "label": label})
            if label is None:
                self.stats["unreadable"] += 1
                if self.config.strict:
                    raise UnreadableClassification(
                        f"dispatch={self.name}: cannot read a label from the reply {reply!r}; "
                        "drop strict=true to answer such prompts with the base weights"
                    )
                label = "other"
            out.append(label)
        return out

    def describe(self) -> dict:
        return {
            "strategy": self.name,
            "prompt_sha256": CLASSIFY_PROMPT_SHA256,
            "config": asdict(self.config),
            "experts": {k: e.meta.name for k, e in self.mapping.items()},
            "labels": dict(self.label_counts),
            "first_pass_seconds": round(self.seconds, 4),
            **{k: int(v) for k, v in self.stats.items()},
            "examples": self.examples,
        }


def strategy_factory(cls, config_cls):
    def make(arg: str | None, experts: Mapping[str, Expert]) -> Dispatcher:
        return cls(options_to_config(config_cls, arg, cls.name), experts)

    return make
