"""Train / validation / held-out test splits for training SVF experts.

An expert must never see the items it is evaluated on, nor be selected (checkpoint choice,
hyper-parameter tuning) on them. Every task therefore has three disjoint splits; ``test`` is
for the final evaluation of an expert only. All splits are deterministic given ``seed``
(only ``math`` and ``classifier`` depend on it; the others are fixed partitions).

* ``math``: no GSM8K train split is packaged and GSM8K test must never be trained on, so the
  items are short arithmetic word problems from a seeded generator (15 templates, one and
  two steps: addition, subtraction, multiplication, exact division, "each/per" rates and
  whole-dollar money; varied names, objects and wording; integer answers 0..~1200).
  Sizes 2000 / 200 / 300. Each split has its own stream (``random.Random(f"{seed}-<split>")``),
  generated in the order test, valid, train; a question whose normalised text is already in
  an earlier split (or earlier in the same split) is skipped, so the held-out split does not
  depend on the training size. The result is checked against every GSM8K test question
  (:func:`~t2bench.tasks.splits.normalize_question`); any overlap raises ``LeakageError``.
  ``reference`` is a one- or two-sentence worked solution ending ``The answer is N.``
  ``difficulty="mix"`` (opt-in; ``TrainConfig.difficulty``) is a second, easier setting for
  training: of every 10 consecutive items, 8 are one-step additions / subtractions with
  operands up to 20, 1 is a two-step one, 1 is from the templates above (:data:`MATH_MIX`).
  Uids say the level (``arith-mix-valid-00008-two-step``); its streams are
  ``random.Random(f"{seed}-mix-<split>")`` and it never repeats a question of the packaged
  splits, so the packaged test split stays unseen by a mix-trained expert. Sizes 2000 / 200 /
  1200 (:data:`MATH_MIX_SIZES`: a test split large enough for n >= 1000 comparisons).
* ``reasoning``: ARC-Easy validation (570 items; :func:`arc_train_pool` checks it against
  both ARC test sets), even positions -> train (285), odd positions -> valid (285);
  test = the ARC-Easy test split (2376). Choices are lettered ``A, B, ...`` by position
  (some validation items use labels ``1..4``). ``reference`` = ``The answer is (X).``
* ``code``: the 500 MBPP problems sorted by ``task_id``; task ids 311-510 (the last 200) are
  test. The first 300 are the training pool, minus any problem whose normalised text is also
  a test problem's or an earlier pool problem's: MBPP 76 is the same problem, with the same
  first test, as MBPP 347, so it is dropped. Train = the first 200 of the pool, valid = the
  remaining 99. ``target`` is the tested function's name, ``reference`` the gold code in a
  ```python block.
* ``classifier``: route a question to ``code``, ``math`` or ``reasoning`` (reply
  ``\\boxed{label}``). Each prompt is :func:`t2bench.classify_prompt.classify_prompt` of the
  original question text (without the task instructions) of the other tasks' splits, the
  prompt every dispatch first pass sends; its four-way question also offers ``other``, which
  no item has as target. Items: train = math train[:200] + reasoning train (285)
  + code train (200) = 685; valid = the first 100 (at most) of each valid split = 299;
  test = the first 200 of each test split = 600. Each split is shuffled with
  ``random.Random(f"{seed}-classifier-<split>")``. Since the source splits are disjoint,
  so are these; the check below re-verifies it by uid and normalised question.
* ``vqa``: the generated text-in-image VQA set of :mod:`t2bench.tasks.textimages` with its
  default config (seed 0, 96 px; independent of the training seed, so the held-out split is
  exactly the ``t2vqa_text`` lm-eval task's test split): train 2000, valid 200, test 300
  items; each item carries its image. The splits are generated from different seeds; the
  check compares uids and image pixels (every prompt is one of three questions).

:func:`check_disjoint` (run by :func:`load_splits`) raises ``LeakageError`` when a uid or a
normalised prompt occurs in two of train / valid / test. :func:`load_jsonl_items`
(:mod:`t2bench.data.user_items`) reads user-supplied items instead; items and splits are
defined in :mod:`t2bench.data.items`, the ``vqa`` splits built in :mod:`t2bench.data.vqa_items`.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from itertools import combinations
from typing import Any, NamedTuple

from t2bench.classify_prompt import CLASSIFY_PROMPT_SHA256, classify_prompt
from t2bench.classify_prompt import EXPERT_LABELS as CLASSIFIER_LABELS
from t2bench.data.items import SPLIT_NAMES, TASKS, Splits, TrainItem, check_task
from t2bench.data.user_items import load_jsonl_items
from t2bench.data.vqa_items import pixels_digest, vqa_splits
from t2bench.data.wordproblems import LEVEL_TEMPLATES, MATH_MIX, TEMPLATES, mix_level
from t2bench.errors import ConfigError
from t2bench.tasks.arc import load_arc_test
from t2bench.tasks.gsm8k import load_gsm8k
from t2bench.tasks.mbpp import load_mbpp
from t2bench.tasks.splits import LeakageError, arc_train_pool, normalize_question

__all__ = [
    "CLASSIFIER_LABELS",
    "MATH_DIFFICULTIES",
    "MATH_MIX",
    "MATH_MIX_SIZES",
    "SPLIT_NAMES",
    "TASKS",
    "Splits",
    "TrainItem",
    "check_difficulty",
    "check_disjoint",
    "item_level",
    "load_jsonl_items",
    "load_splits",
]


MATH_SIZES = {"test": 300, "valid": 200, "train": 2000}
#: The mix's test split is large enough for a held-out comparison of n >= 1000 with a minimum
#: detectable difference near 5 points; train and valid are the packaged sizes.
MATH_MIX_SIZES = {"test": 1200, "valid": 200, "train": 2000}
MATH_INSTRUCTION = "Solve the problem. End your reply with 'The answer is <number>.'"
REASONING_INSTRUCTION = "Answer with the letter of the correct choice, as 'The answer is (X).'"
CODE_INSTRUCTION = "Answer with the complete Python code in a single ```python code block."
CODE_TRAIN_POOL, CODE_TRAIN = 300, 200
# How many items of each source task the classifier takes per split ("*": every task not
# named; no entry: all of them).
CLASSIFIER_TAKE = {"train": {"math": 200}, "valid": {"*": 100}, "test": {"*": 200}}


class _Source(NamedTuple):
    """An item with its bare question, which the classifier task reuses."""

    item: TrainItem
    question: str


def check_difficulty(task: str, difficulty: str) -> None:
    """Raise ``ConfigError`` unless ``difficulty`` exists for ``task`` (only math has several)."""
    if difficulty not in MATH_DIFFICULTIES:
        raise ConfigError(
            f"unknown difficulty {difficulty!r}: use one of {', '.join(MATH_DIFFICULTIES)}"
        )
    if difficulty != "default" and task != "math":
        raise ConfigError(
            f"difficulty={difficulty!r} exists only for task=math (task is {task!r}); "
            "leave difficulty at 'default' for other tasks"
        )


def load_splits(task: str, seed: int = 0, difficulty: str = "default") -> Splits:
    """Train / valid / test splits of ``task`` (see the module docstring), leak-checked.

    ``difficulty`` picks the math generator's setting (:data:`MATH_DIFFICULTIES`); other tasks
    only have ``"default"``.
    """
    check_task(task)
    check_difficulty(task, difficulty)
    if difficulty == "mix":
        sources, description = _math_mix_sources(seed)
        parts = {name: [s.item for s in sources[name]] for name in SPLIT_NAMES}
        splits = Splits(task, parts["train"], parts["valid"], parts["test"], description)
    elif task == "classifier":
        splits = _classifier_splits(seed)
    elif task == "vqa":
        splits = vqa_splits()
    else:
        sources, description = _SOURCES[task](seed)
        parts = {name: [s.item for s in sources[name]] for name in SPLIT_NAMES}
        splits = Splits(task, parts["train"], parts["valid"], parts["test"], description)
    check_disjoint(splits)
    return splits


def check_disjoint(splits: Splits) -> None:
    """Raise ``LeakageError`` if a uid or normalised prompt is in two of the splits."""
    for a, b in combinations(SPLIT_NAMES, 2):
        left: list[TrainItem] = getattr(splits, a)
        right: list[TrainItem] = getattr(splits, b)
        uids = {i.uid for i in left} & {i.uid for i in right}
        if splits.task == "vqa":  # same three questions everywhere: compare the images
            prompts = {pixels_digest(i) for i in left} & {pixels_digest(i) for i in right}
        else:
            prompts = {normalize_question(i.prompt) for i in left} & {
                normalize_question(i.prompt) for i in right
            }
        if uids or prompts:
            raise LeakageError(
                f"{splits.task}: the {a} and {b} splits share {len(uids)} uid(s) "
                f"{sorted(uids)[:3]} and {len(prompts)} prompt(s) {sorted(prompts)[:1]}; "
                "a split must never contain items of another"
            )


# --------------------------------------------------------------------------- math


#: Difficulty settings of the math task: "default" is the packaged split (held-out tables and
#: evaluation use it); "mix" is opt-in (``TrainConfig.difficulty``).
MATH_DIFFICULTIES = ("default", "mix")


def item_level(item: TrainItem) -> str:
    """The difficulty level a math uid names ("default" for the packaged split's items)."""
    match = re.fullmatch(r"arith-mix-\w+-\d{5}-(.+)", item.uid)
    return match.group(1) if match else "default"


def _math_sources(seed: int) -> tuple[dict[str, list[_Source]], dict[str, Any]]:
    seen: set[str] = set()
    sources: dict[str, list[_Source]] = {}
    for split, size in MATH_SIZES.items():  # test first: it never depends on the others
        rng = random.Random(f"{seed}-{split}")
        sources[split] = _unseen_problems(
            size,
            seen,
            lambda i, rng=rng, split=split: (f"arith-{split}-{i:05d}", rng.choice(TEMPLATES)(rng)),
        )
    _check_against_gsm8k(seen)
    description = {
        "task": "math",
        "seed": seed,
        "splits": {
            s: {
                "source": f"arithmetic word-problem generator, random.Random('{seed}-{s}')",
                "size": len(sources[s]),
            }
            for s in SPLIT_NAMES
        },
        "templates": len(TEMPLATES),
        "disjointness": "generated test, valid, train in that order, skipping any question "
        "whose normalised text was already generated; checked against all 1319 GSM8K test "
        "questions (normalised text), and by uid and normalised prompt across splits",
    }
    return sources, description


def _unseen_problems(size: int, seen: set[str], draw) -> list[_Source]:
    """``size`` math items from ``draw(position) -> (uid, (question, solution, answer))``,
    skipping (and redrawing for) any question whose normalised text is in ``seen``, which
    grows with every item taken."""
    out: list[_Source] = []
    while len(out) < size:
        uid, (question, solution, answer) = draw(len(out))
        key = normalize_question(question)
        if key in seen:
            continue
        seen.add(key)
        item = TrainItem(
            uid=uid,
            task="math",
            prompt=f"{question}\n\n{MATH_INSTRUCTION}",
            target=str(answer),
            reference=f"{solution} The answer is {answer}.",
        )
        out.append(_Source(item, question))
    return out


def _check_against_gsm8k(questions: set[str]) -> None:
    """Raise ``LeakageError`` if a normalised generated question is a GSM8K test question."""

    gsm8k = {normalize_question(q) for q in load_gsm8k()["test"]["question"]}
    leaked = questions & gsm8k
    if leaked:  # cannot happen for these templates; the check is the guarantee
        raise LeakageError(f"generated math items equal GSM8K test questions: {sorted(leaked)[:3]}")


def _math_mix_sources(seed: int) -> tuple[dict[str, list[_Source]], dict[str, Any]]:
    """The "mix" difficulty: per split, the level of each position is :func:`mix_level`.

    Its own streams (``random.Random(f"{seed}-mix-<split>")``), generated test, valid, train,
    skipping any question already generated, *including every item of the packaged (default)
    splits*: an expert trained on the mix never sees the packaged test split it is scored on.
    """
    packaged, _ = _math_sources(seed)
    seen = {normalize_question(s.question) for part in packaged.values() for s in part}
    sources: dict[str, list[_Source]] = {}
    for split, size in MATH_MIX_SIZES.items():
        rng = random.Random(f"{seed}-mix-{split}")

        def draw(i: int, rng=rng, split=split) -> tuple[str, tuple[str, str, int]]:
            level = mix_level(i)
            return f"arith-mix-{split}-{i:05d}-{level}", rng.choice(LEVEL_TEMPLATES[level])(rng)

        sources[split] = _unseen_problems(size, seen, draw)
    _check_against_gsm8k(seen)
    per_block = sum(count for _, count in MATH_MIX)
    description = {
        "task": "math",
        "seed": seed,
        "difficulty": "mix",
        "levels": {
            level: {
                "share": count / per_block,
                "templates": len(LEVEL_TEMPLATES[level]),
            }
            for level, count in MATH_MIX
        },
        "splits": {
            s: {
                "source": f"arithmetic word-problem generator, difficulty mix, "
                f"random.Random('{seed}-mix-{s}')",
                "size": len(sources[s]),
                "per_level": {
                    level: sum(mix_level(i) == level for i in range(len(sources[s])))
                    for level, _ in MATH_MIX
                },
            }
            for s in SPLIT_NAMES
        },
        "templates": sum(len(t) for t in LEVEL_TEMPLATES.values()),
        "disjointness": "generated test, valid, train in that order, skipping any question "
        "whose normalised text was already generated or is in the packaged (default) math "
        "splits; checked against all 1319 GSM8K test questions (normalised text), and by uid "
        "and normalised prompt across splits",
    }
    return sources, description


# --------------------------------------------------------------------------- reasoning


def _arc_source(row: dict[str, Any], uid: str) -> _Source:
    """Letter the choices by position, whatever the row's own labels are."""
    texts, labels = row["choices"]["text"], row["choices"]["label"]
    letters = [chr(ord("A") + i) for i in range(len(texts))]
    gold = letters[labels.index(row["answerKey"])]
    lines = "\n".join(f"{letter}. {text}" for letter, text in zip(letters, texts, strict=True))
    item = TrainItem(
        uid=uid,
        task="reasoning",
        prompt=f"{row['question']}\n{lines}\n{REASONING_INSTRUCTION}",
        target=gold,
        reference=f"The answer is ({gold}).",
    )
    return _Source(item, row["question"])


def _reasoning_sources(seed: int) -> tuple[dict[str, list[_Source]], dict[str, Any]]:

    pool = [_arc_source(r, f"arc-easy-val-{r['id']}") for r in arc_train_pool("ARC-Easy")]
    test = [_arc_source(r, f"arc-easy-test-{r['id']}") for r in load_arc_test("ARC-Easy")]
    sources = {"train": pool[0::2], "valid": pool[1::2], "test": test}
    description = {
        "task": "reasoning",
        "seed": seed,
        "seed_used": False,
        "splits": {
            "train": {"source": "ARC-Easy validation, even positions", "size": len(pool[0::2])},
            "valid": {"source": "ARC-Easy validation, odd positions", "size": len(pool[1::2])},
            "test": {"source": "ARC-Easy test", "size": len(test)},
        },
        "disjointness": "arc_train_pool checks ARC-Easy validation against both ARC test "
        "splits by normalised question; then uid and normalised prompt across splits",
    }
    return sources, description


# --------------------------------------------------------------------------- code


def _function_name(code: str, first_test: str) -> str:
    """The ``def`` the first test calls; else the first ``def``; else ``""``."""
    names = re.findall(r"^[ \t]*def\s+(\w+)\s*\(", code, re.M)
    called = [n for n in names if re.search(rf"\b{re.escape(n)}\s*\(", first_test)]
    return (called or names or [""])[0]


def _unix_newlines(text: str) -> str:
    """MBPP code uses ``\\r\\n`` and, at a few line ends, a lone ``\\r``."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _mbpp_source(row: dict[str, Any]) -> _Source:
    text = row["text"].strip()
    first = row["test_list"][0]
    code = _unix_newlines(row["code"]).strip("\n")
    item = TrainItem(
        uid=f"mbpp-{row['task_id']}",
        task="code",
        prompt=f"{text}\nYour code should pass this test:\n{first}\n\n{CODE_INSTRUCTION}",
        target=_function_name(code, first),
        reference=f"```python\n{code}\n```",
        tests=tuple(row["test_list"]),
        setup=_unix_newlines(row["test_setup_code"]),
    )
    return _Source(item, text)


def _code_sources(seed: int) -> tuple[dict[str, list[_Source]], dict[str, Any]]:

    rows = sorted(load_mbpp()["test"], key=lambda r: r["task_id"])
    test = [_mbpp_source(r) for r in rows[CODE_TRAIN_POOL:]]
    seen = {normalize_question(s.question) for s in test}
    pool: list[_Source] = []
    dropped: list[str] = []
    for row in rows[:CODE_TRAIN_POOL]:
        source = _mbpp_source(row)
        key = normalize_question(source.question)
        if key in seen:
            dropped.append(source.item.uid)
            continue
        seen.add(key)
        pool.append(source)
    sources = {"train": pool[:CODE_TRAIN], "valid": pool[CODE_TRAIN:], "test": test}
    ids = [r["task_id"] for r in rows]
    description = {
        "task": "code",
        "seed": seed,
        "seed_used": False,
        "splits": {
            "train": {
                "source": f"MBPP task_id {ids[0]}-{ids[CODE_TRAIN_POOL - 1]} (training pool), "
                f"first {CODE_TRAIN}",
                "size": len(sources["train"]),
            },
            "valid": {"source": "the rest of the training pool", "size": len(sources["valid"])},
            "test": {"source": f"MBPP task_id {ids[CODE_TRAIN_POOL]}-{ids[-1]}", "size": len(test)},
        },
        "dropped_from_pool": dropped,
        "disjointness": "pool problems whose normalised text equals a test problem's or an "
        "earlier pool problem's are dropped; then uid and normalised prompt across splits",
    }
    return sources, description


_SOURCES: dict[str, Callable[[int], tuple[dict[str, list[_Source]], dict[str, Any]]]] = {
    "math": _math_sources,
    "reasoning": _reasoning_sources,
    "code": _code_sources,
}


# --------------------------------------------------------------------------- classifier


def _classifier_item(source: _Source, label: str) -> TrainItem:
    return TrainItem(
        uid=f"cls-{source.item.uid}",
        task="classifier",
        prompt=classify_prompt(source.question),
        target=label,
        reference=f"\\boxed{{{label}}}",
    )


def _classifier_splits(seed: int) -> Splits:
    per_task = {task: _SOURCES[task](seed)[0] for task in ("math", "reasoning", "code")}
    parts: dict[str, list[TrainItem]] = {}
    composition: dict[str, dict[str, int]] = {}
    for split in SPLIT_NAMES:
        take = CLASSIFIER_TAKE[split]
        items: list[TrainItem] = []
        composition[split] = {}
        for label, sources in per_task.items():
            limit = take.get(label, take.get("*"))
            chosen = sources[split][:limit]
            items += [_classifier_item(s, label) for s in chosen]
            composition[split][label] = len(chosen)
        random.Random(f"{seed}-classifier-{split}").shuffle(items)
        parts[split] = items
    description = {
        "task": "classifier",
        "seed": seed,
        "labels": list(CLASSIFIER_LABELS),
        "prompt_sha256": CLASSIFY_PROMPT_SHA256,
        "splits": {
            s: {
                "source": f"bare questions of the math / reasoning / code {s} splits, "
                f"shuffled with random.Random('{seed}-classifier-{s}')",
                "per_label": composition[s],
                "size": len(parts[s]),
            }
            for s in SPLIT_NAMES
        },
        "disjointness": "the source splits are disjoint; uid (cls-<source uid>) and "
        "normalised question are re-checked across splits",
    }
    return Splits("classifier", parts["train"], parts["valid"], parts["test"], description)
