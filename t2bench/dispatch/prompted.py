"""First passes that ask the model itself which expert should answer.

* ``prompt``: the base model generates a ``\\boxed{label}`` reply to a four-way
  classification prompt (code / math / reasoning / other); ``other`` → base weights.
* ``classifier``: the same prompt, read the same way, but the first pass runs with the
  classifier SVF expert applied: only the weights differ from ``prompt``.
* ``label``: no generation: one forward pass scores each label word as the continuation of
  ``\\boxed{`` after the same prompt and the most likely label wins (beyond the paper;
  optionally calibrated by the label scores of a content-free question).

All three build their prompt with :func:`t2bench.classify_prompt.classify_prompt`, which also
builds the classifier expert's training prompts, and record its hash as ``prompt_sha256`` in
``describe()``.

Replies are memoised per prompt text, so the several requests lm-eval sends for one document
(e.g. the four choices of an ARC question) cost one classification.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Literal

import torch
from tqdm.auto import tqdm

from t2bench.dispatch.base import (
    Choice,
    Dispatcher,
    DispatchRequest,
    options_to_config,
    register_dispatcher,
)
from t2bench.dispatch.labels import (
    CLASSIFY_PROMPT_SHA256,
    LABELS,
    choice_for,
    classify_prompt,
    expert_task,
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


@dataclass
class PromptConfig:
    max_new_tokens: int = 32
    max_chars: int = 1500
    batch_size: int = 0  # 0: the backend's batch size
    strict: bool = False  # raise on a reply the parser cannot read instead of using base


class UnreadableClassification(ConfigError):
    """A first-pass reply named no label (raised only with ``strict=true``)."""


class _FirstPass(Dispatcher):
    """Shared machinery: memo per text, batching, counters, label → Choice."""

    labels: Sequence[str] = LABELS

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


class PromptDispatch(_FirstPass):
    """The paper's prompt strategy: the base model classifies, then the expert answers."""

    name = "prompt"

    def _generate(self, prompts: list[str]) -> list[str]:
        from t2bench.generation import encode_prompts, generate

        ctx = self.context()
        ids = encode_prompts(ctx.tokenizer, prompts)
        self.stats["prompt_tokens"] += sum(len(i) for i in ids)
        out = generate(ctx.model, ctx.tokenizer, ids, max_new_tokens=self.config.max_new_tokens)
        self.stats["generated_tokens"] += sum(len(c) for c in out.completion_ids)
        return out.texts

    def classify(self, questions: list[str]) -> list[str]:
        return self._read(self._generate([classify_prompt(q) for q in questions]))


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


@dataclass
class LabelConfig:
    max_chars: int = 1500
    batch_size: int = 0
    calibrate: bool = True  # subtract each label's score on a content-free question
    scoring: Literal["auto", "first", "full"] = "auto"


class LabelScoreDispatch(_FirstPass):
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


def _factory(cls, config_cls):
    def make(arg: str | None, experts: Mapping[str, Expert]) -> Dispatcher:
        return cls(options_to_config(config_cls, arg, cls.name), experts)

    return make


register_dispatcher("prompt", _factory(PromptDispatch, PromptConfig))
register_dispatcher("classifier", _factory(ClassifierDispatch, PromptConfig))
register_dispatcher("label", _factory(LabelScoreDispatch, LabelConfig))
