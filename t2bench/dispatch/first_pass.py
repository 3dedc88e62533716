"""What the model-asking first passes share (``prompt``, ``classifier``, ``label``): a memo per
prompt text (the several requests lm-eval sends for one document cost one classification),
batching, counters, the reading of a reply into a label, and the label's Choice.

With ``reuse=true`` (the default) a first pass encodes the part of the classification prompt
that every question shares (the chat template's opening and, in the ``instruction-first`` and
``sandwich`` layouts, the whole instruction) once per weights, and reuses its keys and values: per question
it reads only the question and the reply cue. Questions are batched longest first, so that a
batch pads little. ``reuse=false`` re-reads the whole prompt for every question, as before
this option existed; ``stats`` count both ``prompt_tokens`` (the prompts' length) and
``encoded_tokens`` (what was actually run through the model).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict

import torch
from tqdm.auto import tqdm

from t2bench.classify_prompt import LAYOUTS, classify_prompt, prompt_sha256
from t2bench.dispatch.base import (
    Choice,
    Dispatcher,
    DispatchRequest,
    options_to_config,
)
from t2bench.dispatch.categories import (
    LABELS,
    choice_for,
    label_experts,
    parse_label,
    question_of,
)
from t2bench.errors import ConfigError
from t2bench.generation import PrefixCache
from t2bench.svf.expert import Expert

# stands for the question while the shared head of a formatted prompt is cut out
_MARK = "\x00question\x00"


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
        if config.layout not in LAYOUTS:
            raise ConfigError(
                f"dispatch={self.name}: unknown layout {config.layout!r}; choose one of "
                f"{', '.join(LAYOUTS)} (e.g. dispatch={self.name}:layout=question-first)"
            )
        self.config = config
        self.mapping = label_experts(experts, strategy=self.name)
        self.memo: dict[str, str] = {}
        self.stats: Counter = Counter()
        self.label_counts: Counter = Counter()
        self.seconds = 0.0
        self.examples: list[dict] = []  # a few raw replies, for the record
        self._heads: dict[str | None, PrefixCache | None] = {}  # active expert → encoded head

    def choose(self, requests: Sequence[DispatchRequest]) -> list[Choice]:
        ctx = self.context()
        todo = list(dict.fromkeys(r.text for r in requests if r.text not in self.memo))
        if self.config.reuse:  # longest first: a batch of similar lengths pads little
            todo.sort(key=len, reverse=True)
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

    def _head(self) -> PrefixCache | None:
        """The encoded head that every prompt of this layout starts with, under the weights the
        first pass runs with; None with ``reuse=false``. Its last token is left out, so that a
        question's first token cannot merge with it (the row re-reads that one token)."""
        if not self.config.reuse:
            return None
        ctx = self.context()
        key = getattr(ctx.patcher, "active", None)
        if key not in self._heads:
            from t2bench.generation import encode_formatted, format_prompt

            text = format_prompt(ctx.tokenizer, classify_prompt(_MARK, self.config.layout))
            ids = encode_formatted(ctx.tokenizer, text[: text.index(_MARK)])[:-1]
            self._heads[key] = PrefixCache.encode(ctx.model, ids) if ids else None
        return self._heads[key]

    def _encode(self, questions: list[str]) -> list[list[int]]:
        """Token ids of each question's whole classification prompt."""
        from t2bench.generation import encode_prompts

        prompts = [classify_prompt(q, self.config.layout) for q in questions]
        return encode_prompts(self.context().tokenizer, prompts)

    def _run_rows(self, ids: list[list[int]], run) -> list:
        """``run(prefix, rows)`` on whole prompt ids: once for the rows that start with the
        encoded head, given only what follows it, and once for any others, given whole. One
        result per row, in order."""
        self.stats["prompt_tokens"] += sum(len(i) for i in ids)
        head = self._head()
        n = len(head.ids) if head is not None else 0
        reused = [head is not None and len(i) > n and i[:n] == head.ids for i in ids]
        out: list = [None] * len(ids)
        for flag in (True, False):
            idx = [k for k, r in enumerate(reused) if r == flag]
            if not idx:
                continue
            rows = [ids[k][n:] if flag else ids[k] for k in idx]
            self.stats["encoded_tokens"] += sum(len(r) for r in rows)
            if flag:
                self.stats["head_reused"] += len(idx)
            for k, result in zip(idx, run(head if flag else None, rows), strict=True):
                out[k] = result
        return out

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
            "prompt_sha256": prompt_sha256(self.config.layout),
            "head_tokens": {str(k): len(v.ids) for k, v in self._heads.items() if v is not None},
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
