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
* ``vqa``: the generated text-in-image VQA set of :mod:`t2bench.vlm.textimages` with its
  default config (seed 0, 96 px; independent of the training seed, so the held-out split is
  exactly the ``t2vqa_text`` lm-eval task's test split): train 2000, valid 200, test 300
  items; each item carries its image. The splits are generated from different seeds; the
  check compares uids and image pixels (every prompt is one of three questions).

:func:`check_disjoint` (run by :func:`load_splits`) raises ``LeakageError`` when a uid or a
normalised prompt occurs in two of train / valid / test. :func:`load_jsonl_items` reads
user-supplied items instead.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from itertools import combinations
from pathlib import Path
from typing import Any, NamedTuple

from t2bench.classify_prompt import CLASSIFY_PROMPT_SHA256, classify_prompt
from t2bench.classify_prompt import EXPERT_LABELS as CLASSIFIER_LABELS
from t2bench.errors import ConfigError
from t2bench.tasks.splits import LeakageError, normalize_question

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

TASKS = ("math", "reasoning", "code", "classifier", "vqa")
SPLIT_NAMES = ("train", "valid", "test")

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


@dataclass(frozen=True)
class TrainItem:
    """One training / evaluation example, in the form the trainer and rewards use."""

    uid: str
    task: str
    prompt: str
    target: str
    reference: str
    tests: tuple[str, ...] = ()
    setup: str = ""
    image: Any = field(default=None, compare=False, hash=False, repr=False)  # PIL, VLM tasks


@dataclass
class Splits:
    """The three disjoint splits of one task; ``test`` is only for final evaluation."""

    task: str
    train: list[TrainItem]
    valid: list[TrainItem]
    test: list[TrainItem]
    description: dict[str, Any]


class _Source(NamedTuple):
    """An item with its bare question, which the classifier task reuses."""

    item: TrainItem
    question: str


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ConfigError(f"unknown training task {task!r}; valid tasks: {', '.join(TASKS)}")


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
    _check_task(task)
    check_difficulty(task, difficulty)
    if difficulty == "mix":
        sources, description = _math_mix_sources(seed)
        parts = {name: [s.item for s in sources[name]] for name in SPLIT_NAMES}
        splits = Splits(task, parts["train"], parts["valid"], parts["test"], description)
    elif task == "classifier":
        splits = _classifier_splits(seed)
    elif task == "vqa":
        splits = _vqa_splits()
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
            prompts = {_pixels(i) for i in left} & {_pixels(i) for i in right}
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


# --------------------------------------------------------------------------- vqa

#: The prompt of the ``t2vqa_text`` lm-eval task (tasks/t2vqa_text.yaml), kept identical.
VQA_PROMPT = "<image>Question: {question}\nAnswer with a single word or number.\nAnswer:"


def _pixels(item: TrainItem) -> str:
    import hashlib

    return hashlib.sha256(item.image.tobytes()).hexdigest()


def vqa_item(raw: dict) -> TrainItem:
    return TrainItem(
        uid=raw["id"],
        task="vqa",
        prompt=VQA_PROMPT.format(question=raw["question"]),
        target=raw["answer"],
        # the continuation as the model writes it after "Answer:" (the task stops at "\n")
        reference=f" {raw['answer']}\n",
        image=raw["image"],
    )


def _vqa_splits() -> Splits:
    from t2bench.vlm.textimages import TextImageConfig, dataset_metadata, make_split

    cfg = TextImageConfig()
    parts = {name: [vqa_item(r) for r in make_split(cfg, name)] for name in SPLIT_NAMES}
    description = {
        "task": "vqa",
        "source": "t2bench.vlm.textimages (generated text-in-image VQA)",
        "generator": dataset_metadata(cfg),
        "splits": {
            name: {
                "source": f"textimages split {name!r} (its own seed stream)",
                "size": len(parts[name]),
            }
            for name in SPLIT_NAMES
        },
        "disjointness": "uids and image pixels are checked across splits",
    }
    return Splits("vqa", parts["train"], parts["valid"], parts["test"], description)


# --------------------------------------------------------------------------- math


# fmt: off
_NAMES = (
    "Ava", "Ben", "Carla", "Diego", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jamal",
    "Kira", "Liam", "Maya", "Noah", "Olga", "Pedro", "Quinn", "Rosa", "Sam", "Tara",
    "Umar", "Vera", "Wes", "Ximena", "Yusuf", "Zoe", "Amara", "Bruno", "Chen", "Dana",
)
_OBJECTS = (
    "apples", "marbles", "stickers", "pencils", "cookies", "books", "trading cards",
    "stamps", "seashells", "beads", "toy cars", "balloons", "crayons", "oranges", "eggs",
    "cupcakes", "flowers", "building blocks", "ribbons", "postcards",
)
_CONTAINERS = (("box", "boxes"), ("bag", "bags"), ("basket", "baskets"), ("jar", "jars"),
               ("pack", "packs"), ("crate", "crates"))
_GOODS = (("notebook", "notebooks"), ("sandwich", "sandwiches"), ("movie ticket", "movie tickets"),
          ("toy", "toys"), ("shirt", "shirts"), ("plant", "plants"), ("puzzle", "puzzles"),
          ("mug", "mugs"), ("scarf", "scarves"), ("lamp", "lamps"))
_ACTIVITIES = (("reads", "read", "pages"), ("walks", "walked", "miles"),
               ("bakes", "baked", "cookies"), ("writes", "written", "letters"),
               ("folds", "folded", "paper cranes"), ("plants", "planted", "seeds"),
               ("swims", "swum", "laps"), ("knits", "knitted", "rows"))
_ROWS = (("orchard", "trees"), ("theater", "seats"), ("parking lot", "parking spaces"),
         ("garden", "tulips"), ("classroom", "desks"), ("vineyard", "vines"))
_SHARED = ("restaurant bill", "taxi fare", "birthday gift", "cabin rental", "pizza order")
# fmt: on

# A template draws numbers and words from ``rng`` and returns (question, worked solution,
# integer answer); every division in a template is exact by construction.
_Problem = tuple[str, str, int]


def _two_names(rng: random.Random) -> tuple[str, str]:
    first, second = rng.sample(_NAMES, 2)
    return first, second


def _t_add(rng: random.Random) -> _Problem:
    n, m = _two_names(rng)
    obj, a, b = rng.choice(_OBJECTS), rng.randint(5, 400), rng.randint(5, 400)
    q = f"{n} has {a} {obj}. {m} gives {n} {b} more {obj}. How many {obj} does {n} have now?"
    return q, f"{n} has {a} + {b} = {a + b} {obj}.", a + b


def _t_sub(rng: random.Random) -> _Problem:
    n, m = _two_names(rng)
    obj, a = rng.choice(_OBJECTS), rng.randint(20, 900)
    b = rng.randint(1, a - 2)
    q = f"{n} had {a} {obj} and gave {b} of them to {m}. How many {obj} does {n} have left?"
    return q, f"{n} has {a} - {b} = {a - b} {obj} left.", a - b


def _t_containers(rng: random.Random) -> _Problem:
    n, (one, many), obj = rng.choice(_NAMES), rng.choice(_CONTAINERS), rng.choice(_OBJECTS)
    k, e = rng.randint(2, 25), rng.randint(2, 40)
    q = (
        f"{n} buys {k} {many} of {obj}. Each {one} holds {e} {obj}. "
        f"How many {obj} does {n} buy in total?"
    )
    return q, f"{n} buys {k} x {e} = {k * e} {obj}.", k * e


def _t_share(rng: random.Random) -> _Problem:
    n, obj = rng.choice(_NAMES), rng.choice(_OBJECTS)
    each, k = rng.randint(2, 50), rng.randint(2, 12)
    q = (
        f"{n} has {each * k} {obj} and shares them equally among {k} friends. "
        f"How many {obj} does each friend get?"
    )
    return q, f"Each friend gets {each * k} / {k} = {each} {obj}.", each


def _t_buy(rng: random.Random) -> _Problem:
    n, (_, many) = rng.choice(_NAMES), rng.choice(_GOODS)
    c, p = rng.randint(2, 20), rng.randint(1, 50)
    q = f"{n} buys {c} {many} for ${p} each. How many dollars does {n} spend?"
    return q, f"{n} spends {c} x ${p} = ${c * p}.", c * p


def _t_change(rng: random.Random) -> _Problem:
    n, (_, many) = rng.choice(_NAMES), rng.choice(_GOODS)
    c, p = rng.randint(2, 10), rng.randint(1, 30)
    cost = c * p
    money = cost + rng.randint(0, 200)
    q = f"{n} has ${money}. {n} buys {c} {many} at ${p} each. How many dollars does {n} have left?"
    sol = (
        f"The {many} cost {c} x ${p} = ${cost}. {n} has ${money} - ${cost} = ${money - cost} left."
    )
    return q, sol, money - cost


def _t_rate(rng: random.Random) -> _Problem:
    n, (verb, done, unit) = rng.choice(_NAMES), rng.choice(_ACTIVITIES)
    r, d, start = rng.randint(2, 60), rng.randint(2, 14), rng.randint(0, 200)
    q = (
        f"{n} {verb} {r} {unit} per day and has already {done} {start} {unit}. "
        f"How many {unit} will {n} have {done} in total after {d} more days?"
    )
    sol = (
        f"In {d} days {n} adds {d} x {r} = {d * r} {unit}. "
        f"In total that is {start} + {d * r} = {start + d * r} {unit}."
    )
    return q, sol, start + d * r


def _t_add_remove(rng: random.Random) -> _Problem:
    n, (one, _), obj = rng.choice(_NAMES), rng.choice(_CONTAINERS), rng.choice(_OBJECTS)
    a, b = rng.randint(10, 500), rng.randint(1, 300)
    c = rng.randint(1, a + b - 2)
    q = (
        f"There are {a} {obj} in a {one}. {n} puts in {b} more and then takes out {c}. "
        f"How many {obj} are in the {one} now?"
    )
    sol = (
        f"After adding there are {a} + {b} = {a + b} {obj}; "
        f"then {a + b} - {c} = {a + b - c} remain."
    )
    return q, sol, a + b - c


def _t_bags(rng: random.Random) -> _Problem:
    n, (_, many), obj = rng.choice(_NAMES), rng.choice(_CONTAINERS), rng.choice(_OBJECTS)
    k, full = rng.randint(2, 20), rng.randint(3, 40)
    g = rng.randint(1, full - 2)
    q = (
        f"{n} packs {k * full} {obj} into {many} of {k}. Then {n} gives away {g} of the {many}. "
        f"How many {many} does {n} have left?"
    )
    sol = f"{n} fills {k * full} / {k} = {full} {many}. {n} keeps {full} - {g} = {full - g} {many}."
    return q, sol, full - g


def _t_more_than(rng: random.Random) -> _Problem:
    n, m = _two_names(rng)
    obj, a, b = rng.choice(_OBJECTS), rng.randint(5, 400), rng.randint(1, 200)
    q = f"{n} has {a} {obj}. {m} has {b} more {obj} than {n}. How many {obj} do they have together?"
    sol = f"{m} has {a} + {b} = {a + b} {obj}. Together they have {a} + {a + b} = {2 * a + b}."
    return q, sol, 2 * a + b


def _t_times(rng: random.Random) -> _Problem:
    n, m = _two_names(rng)
    obj, a, k = rng.choice(_OBJECTS), rng.randint(2, 100), rng.randint(2, 9)
    q = (
        f"{n} has {a} {obj}. {m} has {k} times as many {obj} as {n}. "
        f"How many more {obj} does {m} have than {n}?"
    )
    sol = f"{m} has {k} x {a} = {k * a} {obj}, which is {k * a} - {a} = {(k - 1) * a} more."
    return q, sol, (k - 1) * a


def _t_split_bill(rng: random.Random) -> _Problem:
    thing, k, each = rng.choice(_SHARED), rng.randint(2, 12), rng.randint(3, 80)
    q = (
        f"{k} friends split a {thing} of ${k * each} equally. "
        "How many dollars does each friend pay?"
    )
    return q, f"Each friend pays ${k * each} / {k} = ${each}.", each


def _t_wage(rng: random.Random) -> _Problem:
    n = rng.choice(_NAMES)
    w, h, d = rng.randint(8, 30), rng.randint(2, 8), rng.randint(1, 5)
    q = (
        f"{n} earns ${w} per hour and works {h} hours a day for {d} days. "
        f"How many dollars does {n} earn?"
    )
    sol = f"{n} works {h} x {d} = {h * d} hours and earns {h * d} x ${w} = ${h * d * w}."
    return q, sol, h * d * w


def _t_spend_two(rng: random.Random) -> _Problem:
    n = rng.choice(_NAMES)
    (_, first), (_, second) = rng.sample(_GOODS, 2)
    money = rng.randint(50, 1000)
    a = rng.randint(1, money // 2)
    b = rng.randint(1, money - a)
    q = (
        f"{n} had ${money}, spent ${a} on {first} and ${b} on {second}. "
        f"How many dollars does {n} have left?"
    )
    sol = (
        f"{n} spent ${a} + ${b} = ${a + b}, so {n} has ${money} - ${a + b} = ${money - a - b} left."
    )
    return q, sol, money - a - b


def _t_rows(rng: random.Random) -> _Problem:
    (place, things), r, p = rng.choice(_ROWS), rng.randint(2, 30), rng.randint(2, 30)
    q = (
        f"A {place} has {r} rows with {p} {things} in each row. "
        f"How many {things} are in the {place}?"
    )
    return q, f"There are {r} x {p} = {r * p} {things}.", r * p


# fmt: off
_TEMPLATES: tuple[Callable[[random.Random], _Problem], ...] = (
    _t_add, _t_sub, _t_containers, _t_share, _t_buy, _t_change, _t_rate, _t_add_remove,
    _t_bags, _t_more_than, _t_times, _t_split_bill, _t_wage, _t_spend_two, _t_rows,
)
# fmt: on

# The opt-in "mix" difficulty adds easier problems: small numbers (at most 20 per operand)
# and only addition / subtraction, in one step or two. They exist so that a small base model
# starts with a reward that is neither always wrong nor always right (a policy gradient learns
# nothing from a constant reward); the "standard" level is the templates above, unchanged.


def _e_add(rng: random.Random) -> _Problem:
    n, m = _two_names(rng)
    obj, a, b = rng.choice(_OBJECTS), rng.randint(1, 20), rng.randint(1, 20)
    q = f"{n} has {a} {obj}. {m} gives {n} {b} more {obj}. How many {obj} does {n} have now?"
    return q, f"{n} has {a} + {b} = {a + b} {obj}.", a + b


def _e_buy_more(rng: random.Random) -> _Problem:
    n, obj = rng.choice(_NAMES), rng.choice(_OBJECTS)
    a, b = rng.randint(1, 20), rng.randint(1, 20)
    q = f"{n} has {a} {obj} and buys {b} more. How many {obj} does {n} have?"
    return q, f"{n} has {a} + {b} = {a + b} {obj}.", a + b


def _e_sub(rng: random.Random) -> _Problem:
    n, m = _two_names(rng)
    obj, a = rng.choice(_OBJECTS), rng.randint(3, 20)
    b = rng.randint(1, a - 1)
    q = f"{n} had {a} {obj} and gave {b} of them to {m}. How many {obj} does {n} have left?"
    return q, f"{n} has {a} - {b} = {a - b} {obj} left.", a - b


def _e_lose(rng: random.Random) -> _Problem:
    n, obj = rng.choice(_NAMES), rng.choice(_OBJECTS)
    a = rng.randint(3, 20)
    b = rng.randint(1, a - 1)
    q = f"{n} has {a} {obj} and loses {b} of them. How many {obj} does {n} have left?"
    return q, f"{n} has {a} - {b} = {a - b} {obj} left.", a - b


def _e_add_sub(rng: random.Random) -> _Problem:
    n, m = _two_names(rng)
    obj, a, b = rng.choice(_OBJECTS), rng.randint(1, 20), rng.randint(1, 20)
    c = rng.randint(1, min(20, a + b - 1))
    q = (
        f"{n} has {a} {obj}. {n} buys {b} more and then gives {c} to {m}. "
        f"How many {obj} does {n} have now?"
    )
    sol = f"{n} has {a} + {b} = {a + b} {obj}, then {a + b} - {c} = {a + b - c} {obj}."
    return q, sol, a + b - c


def _e_three_sum(rng: random.Random) -> _Problem:
    n, m, k = rng.sample(_NAMES, 3)
    obj, a, b, c = rng.choice(_OBJECTS), rng.randint(1, 20), rng.randint(1, 20), rng.randint(1, 20)
    q = f"{n} has {a} {obj}, {m} has {b} and {k} has {c}. How many {obj} do they have together?"
    sol = f"{n} and {m} have {a} + {b} = {a + b}; with {k} that is {a + b} + {c} = {a + b + c}."
    return q, sol, a + b + c


def _e_sub_sub(rng: random.Random) -> _Problem:
    n, m, k = rng.sample(_NAMES, 3)
    obj, a = rng.choice(_OBJECTS), rng.randint(4, 20)
    b = rng.randint(1, a - 2)
    c = rng.randint(1, a - b - 1)
    q = f"{n} had {a} {obj}, gave {b} to {m} and {c} to {k}. How many {obj} does {n} have left?"
    sol = f"{n} has {a} - {b} = {a - b} {obj}, then {a - b} - {c} = {a - b - c} {obj} left."
    return q, sol, a - b - c


#: Difficulty settings of the math task: "default" is the packaged split (held-out tables and
#: evaluation use it); "mix" is opt-in (``TrainConfig.difficulty``).
MATH_DIFFICULTIES = ("default", "mix")
#: The "mix" levels, with how many of every 10 consecutive items of a split each level gets
#: (positions 0-7 one-step, 8 two-step, 9 standard, repeated), so the shares are exact for every
#: split and for any prefix of 10k items (the validation subset a run selects on). Tuned on the
#: valid split for SmolLM2-135M-Instruct, which answers about a quarter of one-step items and
#: few two-step or standard ones greedily (``base_rates``; results/experts/base-rate-math-mix-*):
#: the one-step share keeps the start accuracy above 20%, the others keep harder items in view.
MATH_MIX: tuple[tuple[str, int], ...] = (("one-step", 8), ("two-step", 1), ("standard", 1))
_LEVEL_TEMPLATES: dict[str, tuple[Callable[[random.Random], _Problem], ...]] = {
    "one-step": (_e_add, _e_buy_more, _e_sub, _e_lose),
    "two-step": (_e_add_sub, _e_three_sum, _e_sub_sub),
    "standard": _TEMPLATES,
}


def mix_level(position: int) -> str:
    """The difficulty level of the item at ``position`` of a "mix" split."""
    block = [level for level, count in MATH_MIX for _ in range(count)]
    return block[position % len(block)]


def item_level(item: TrainItem) -> str:
    """The difficulty level a math uid names ("default" for the packaged split's items)."""
    match = re.fullmatch(r"arith-mix-\w+-\d{5}-(.+)", item.uid)
    return match.group(1) if match else "default"


def _math_sources(seed: int) -> tuple[dict[str, list[_Source]], dict[str, Any]]:
    seen: set[str] = set()
    sources: dict[str, list[_Source]] = {}
    for split, size in MATH_SIZES.items():  # test first: it never depends on the others
        rng = random.Random(f"{seed}-{split}")
        out: list[_Source] = []
        while len(out) < size:
            question, solution, answer = rng.choice(_TEMPLATES)(rng)
            key = normalize_question(question)
            if key in seen:
                continue
            seen.add(key)
            item = TrainItem(
                uid=f"arith-{split}-{len(out):05d}",
                task="math",
                prompt=f"{question}\n\n{MATH_INSTRUCTION}",
                target=str(answer),
                reference=f"{solution} The answer is {answer}.",
            )
            out.append(_Source(item, question))
        sources[split] = out
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
        "templates": len(_TEMPLATES),
        "disjointness": "generated test, valid, train in that order, skipping any question "
        "whose normalised text was already generated; checked against all 1319 GSM8K test "
        "questions (normalised text), and by uid and normalised prompt across splits",
    }
    return sources, description


def _check_against_gsm8k(questions: set[str]) -> None:
    """Raise ``LeakageError`` if a normalised generated question is a GSM8K test question."""
    from t2bench.tasks.gsm8k import load_gsm8k

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
        out: list[_Source] = []
        while len(out) < size:
            level = mix_level(len(out))
            question, solution, answer = rng.choice(_LEVEL_TEMPLATES[level])(rng)
            key = normalize_question(question)
            if key in seen:
                continue
            seen.add(key)
            item = TrainItem(
                uid=f"arith-mix-{split}-{len(out):05d}-{level}",
                task="math",
                prompt=f"{question}\n\n{MATH_INSTRUCTION}",
                target=str(answer),
                reference=f"{solution} The answer is {answer}.",
            )
            out.append(_Source(item, question))
        sources[split] = out
    _check_against_gsm8k(seen)
    per_block = sum(count for _, count in MATH_MIX)
    description = {
        "task": "math",
        "seed": seed,
        "difficulty": "mix",
        "levels": {
            level: {
                "share": count / per_block,
                "templates": len(_LEVEL_TEMPLATES[level]),
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
        "templates": sum(len(t) for t in _LEVEL_TEMPLATES.values()),
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
    from t2bench.tasks.arc import load_arc_test
    from t2bench.tasks.splits import arc_train_pool

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
    from t2bench.tasks.mbpp import load_mbpp

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


# --------------------------------------------------------------------------- user data


def _is_number(text: str) -> bool:
    try:
        return Decimal(text.replace(",", "")).is_finite()
    except InvalidOperation:
        return False


def _target_problem(task: str, prompt: str, target: str) -> str | None:
    """Why ``target`` cannot be scored for ``task``, or ``None`` when it can."""
    if task == "math" and not _is_number(target):
        return f"'target' must be a number for the math task, got {target!r}"
    if task == "reasoning" and not re.fullmatch(r"[A-Z]", target):
        return f"'target' must be one capital letter for the reasoning task, got {target!r}"
    if task == "reasoning" and target not in re.findall(r"^([A-Z])\. ", prompt, re.M):
        return (
            f"target {target!r} is not among the prompt's choices; the reward reads the "
            "choices from prompt lines of the form 'A. text'"
        )
    if task == "classifier" and target not in CLASSIFIER_LABELS:
        return f"'target' must be one of {', '.join(CLASSIFIER_LABELS)}, got {target!r}"
    return None


def _default_reference(task: str, target: str) -> str:
    """A reference in the format the reward extracts (code has no gold program here)."""
    return {
        "math": f"The answer is {target}.",
        "reasoning": f"The answer is ({target}).",
        "classifier": f"\\boxed{{{target}}}",
    }.get(task, "")


def _string_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def load_jsonl_items(path: str | Path, task: str) -> list[TrainItem]:
    """Items from a JSON-lines file: ``prompt`` and ``target`` per line (strings), optional
    ``uid``, ``reference``, ``tests`` (list of assert lines, required for code) and ``setup``.

    Every error is a ``ConfigError`` naming the file, the line and the fix, so a bad file
    fails before any training starts.
    """
    _check_task(task)
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"training data file {path} does not exist; pass a JSON-lines file")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text ({exc}); save it as UTF-8") from exc
    items: list[TrainItem] = []
    first_line: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}, line {number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"{where}: invalid JSON ({exc.msg}); each line must be one JSON object"
            ) from exc
        if not isinstance(row, dict):
            raise ConfigError(f"{where}: expected a JSON object, got {type(row).__name__}")
        for key in ("prompt", "target"):
            if not isinstance(row.get(key), str) or not row[key].strip():
                raise ConfigError(
                    f"{where}: missing or non-string {key!r}; add a non-empty {key!r} string"
                )
        for key in ("uid", "reference", "setup"):
            if key in row and not isinstance(row[key], str):
                raise ConfigError(f"{where}: {key!r} must be a string")
        if "tests" in row and not _string_list(row["tests"]):
            raise ConfigError(f"{where}: 'tests' must be a list of strings (assert lines)")
        if task == "code" and not row.get("tests"):
            raise ConfigError(f"{where}: code items need 'tests' (assert lines) to be scored")
        target = row["target"].strip()
        problem = _target_problem(task, row["prompt"], target)
        if problem:
            raise ConfigError(f"{where}: {problem}")
        uid = row.get("uid") or f"{path.stem}-{number}"
        if uid in first_line:
            raise ConfigError(
                f"{where}: duplicate uid {uid!r} (first on line {first_line[uid]}); "
                "make every uid unique"
            )
        first_line[uid] = number
        items.append(
            TrainItem(
                uid=uid,
                task=task,
                prompt=row["prompt"],
                target=target,
                reference=row.get("reference") or _default_reference(task, target),
                tests=tuple(row.get("tests", ())),
                setup=row.get("setup", ""),
            )
        )
    if not items:
        raise ConfigError(
            f"no items in {path}: write one JSON object per line with 'prompt' and 'target'"
        )
    return items


# --------------------------------------------------------------------------- base rates


def base_rates(
    model: str | None = None,
    *,
    difficulty: str = "mix",
    split: str = "valid",
    n: int = 64,
    batch: int = 16,
    max_new_tokens: int | None = None,
    seed: int = 0,
    progress: bool = False,
) -> dict:
    """Greedy accuracy of ``model`` (None: the packaged base model) on the first ``n`` items
    of a math ``split``, per difficulty level, with the record's provenance.

    This is how :data:`MATH_MIX` is tuned: a policy-gradient run only learns when its starting
    accuracy is neither 0 nor 1. Tuning reads ``train`` or ``valid`` only, never ``test``.
    """
    import time

    from t2bench.models import load_model
    from t2bench.report.provenance import git_commit, items_sha256, provenance, weights_sha256
    from t2bench.report.stats import wilson
    from t2bench.train.heldout import greedy_correct
    from t2bench.train.rollout import DEFAULT_NEW_TOKENS

    if split not in ("train", "valid"):
        raise ConfigError(
            f"base rates are measured on split 'train' or 'valid', got {split!r}; the test "
            "split is for the final evaluation of an expert only"
        )
    commit = git_commit()  # the code that runs, read before anything else
    items = getattr(load_splits("math", seed=seed, difficulty=difficulty), split)
    if not 1 <= n <= len(items):
        raise ConfigError(f"n must be between 1 and {len(items)} (the {split} split), got {n}")
    items = items[:n]
    tokens = max_new_tokens or DEFAULT_NEW_TOKENS["math"]
    t0 = time.perf_counter()
    loaded = load_model(model)
    flags = greedy_correct(
        loaded.model,
        loaded.tokenizer,
        items,
        "math",
        max_new_tokens=tokens,
        batch=batch,
        progress=progress,
        desc=f"base rate {difficulty}",
    )

    def tally(got: list[bool]) -> dict:
        k = sum(got)
        return {
            "n": len(got),
            "correct": k,
            "accuracy": k / len(got),
            "wilson95": wilson(k, len(got)),
        }

    levels = {
        level: tally([f for i, f in zip(items, flags, strict=True) if item_level(i) == level])
        for level in dict.fromkeys(item_level(i) for i in items)
    }
    wall = round(time.perf_counter() - t0, 1)
    return {
        "task": "math",
        "difficulty": difficulty,
        "split": split,
        "greedy": True,
        "max_new_tokens": tokens,
        "overall": tally(flags),
        "levels": levels,
        "correct_by_uid": {i.uid: f for i, f in zip(items, flags, strict=True)},
        "provenance": provenance(
            commit=commit,
            base_model=loaded.model_id,
            seed=seed,
            data_split=f"math difficulty={difficulty}, first {n} items of the {split} split",
            weights_sha256=weights_sha256(loaded.model),
            data_items={"n": n, "items_sha256": items_sha256(i.uid for i in items)},
            wall_seconds=wall,
        ),
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m t2bench.train.data base-rates``: measure :func:`base_rates`, print each
    level's accuracy and, with ``--out``, write the record as a new JSON file there."""
    import argparse

    from t2bench.report.provenance import write_new

    p = argparse.ArgumentParser(prog="python -m t2bench.train.data")
    p.add_argument("action", choices=["base-rates"])
    p.add_argument("--model", default=None, help="model name or folder (default: packaged)")
    p.add_argument("--difficulty", default="mix", choices=MATH_DIFFICULTIES)
    p.add_argument("--split", default="valid", help="train or valid (never test)")
    p.add_argument("--n", type=int, default=64, help="first n items of the split (default 64)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=None, help="default: the task's (96)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="folder for the JSON record (e.g. results/experts)")
    args = p.parse_args(argv)
    record = base_rates(
        args.model,
        difficulty=args.difficulty,
        split=args.split,
        n=args.n,
        batch=args.batch,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
        progress=True,
    )
    for level, r in [("overall", record["overall"]), *record["levels"].items()]:
        lo, hi = r["wilson95"]
        print(f"{level:>9}: {r['correct']}/{r['n']} = {r['accuracy']:.3f} (95% {lo:.3f}-{hi:.3f})")
    if args.out:
        path = write_new(Path(args.out), f"base-rate-math-{args.difficulty}", record)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
