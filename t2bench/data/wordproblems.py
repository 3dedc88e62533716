"""Arithmetic word problems from seeded templates: the math task's training data.

No GSM8K train split is packaged and GSM8K test must never be trained on, so the math items are
generated. A template draws names, objects and numbers from a ``random.Random`` and returns the
question, a one- or two-sentence worked solution and the integer answer; every division is
exact by construction. :data:`TEMPLATES` are the standard problems (one and two steps:
addition, subtraction, multiplication, exact division, rates, whole-dollar money);
:data:`LEVEL_TEMPLATES` group easier ones by level for the "mix" difficulty (:data:`MATH_MIX`).
Splits, uids and the leakage checks live in :mod:`t2bench.data.splits`."""

from __future__ import annotations

import random
from collections.abc import Callable

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
Problem = tuple[str, str, int]


def _two_names(rng: random.Random) -> tuple[str, str]:
    first, second = rng.sample(_NAMES, 2)
    return first, second


def _t_add(rng: random.Random) -> Problem:
    n, m = _two_names(rng)
    obj, a, b = rng.choice(_OBJECTS), rng.randint(5, 400), rng.randint(5, 400)
    q = f"{n} has {a} {obj}. {m} gives {n} {b} more {obj}. How many {obj} does {n} have now?"
    return q, f"{n} has {a} + {b} = {a + b} {obj}.", a + b


def _t_sub(rng: random.Random) -> Problem:
    n, m = _two_names(rng)
    obj, a = rng.choice(_OBJECTS), rng.randint(20, 900)
    b = rng.randint(1, a - 2)
    q = f"{n} had {a} {obj} and gave {b} of them to {m}. How many {obj} does {n} have left?"
    return q, f"{n} has {a} - {b} = {a - b} {obj} left.", a - b


def _t_containers(rng: random.Random) -> Problem:
    n, (one, many), obj = rng.choice(_NAMES), rng.choice(_CONTAINERS), rng.choice(_OBJECTS)
    k, e = rng.randint(2, 25), rng.randint(2, 40)
    q = (
        f"{n} buys {k} {many} of {obj}. Each {one} holds {e} {obj}. "
        f"How many {obj} does {n} buy in total?"
    )
    return q, f"{n} buys {k} x {e} = {k * e} {obj}.", k * e


def _t_share(rng: random.Random) -> Problem:
    n, obj = rng.choice(_NAMES), rng.choice(_OBJECTS)
    each, k = rng.randint(2, 50), rng.randint(2, 12)
    q = (
        f"{n} has {each * k} {obj} and shares them equally among {k} friends. "
        f"How many {obj} does each friend get?"
    )
    return q, f"Each friend gets {each * k} / {k} = {each} {obj}.", each


def _t_buy(rng: random.Random) -> Problem:
    n, (_, many) = rng.choice(_NAMES), rng.choice(_GOODS)
    c, p = rng.randint(2, 20), rng.randint(1, 50)
    q = f"{n} buys {c} {many} for ${p} each. How many dollars does {n} spend?"
    return q, f"{n} spends {c} x ${p} = ${c * p}.", c * p


def _t_change(rng: random.Random) -> Problem:
    n, (_, many) = rng.choice(_NAMES), rng.choice(_GOODS)
    c, p = rng.randint(2, 10), rng.randint(1, 30)
    cost = c * p
    money = cost + rng.randint(0, 200)
    q = f"{n} has ${money}. {n} buys {c} {many} at ${p} each. How many dollars does {n} have left?"
    sol = (
        f"The {many} cost {c} x ${p} = ${cost}. {n} has ${money} - ${cost} = ${money - cost} left."
    )
    return q, sol, money - cost


def _t_rate(rng: random.Random) -> Problem:
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


def _t_add_remove(rng: random.Random) -> Problem:
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


def _t_bags(rng: random.Random) -> Problem:
    n, (_, many), obj = rng.choice(_NAMES), rng.choice(_CONTAINERS), rng.choice(_OBJECTS)
    k, full = rng.randint(2, 20), rng.randint(3, 40)
    g = rng.randint(1, full - 2)
    q = (
        f"{n} packs {k * full} {obj} into {many} of {k}. Then {n} gives away {g} of the {many}. "
        f"How many {many} does {n} have left?"
    )
    sol = f"{n} fills {k * full} / {k} = {full} {many}. {n} keeps {full} - {g} = {full - g} {many}."
    return q, sol, full - g


def _t_more_than(rng: random.Random) -> Problem:
    n, m = _two_names(rng)
    obj, a, b = rng.choice(_OBJECTS), rng.randint(5, 400), rng.randint(1, 200)
    q = f"{n} has {a} {obj}. {m} has {b} more {obj} than {n}. How many {obj} do they have together?"
    sol = f"{m} has {a} + {b} = {a + b} {obj}. Together they have {a} + {a + b} = {2 * a + b}."
    return q, sol, 2 * a + b


def _t_times(rng: random.Random) -> Problem:
    n, m = _two_names(rng)
    obj, a, k = rng.choice(_OBJECTS), rng.randint(2, 100), rng.randint(2, 9)
    q = (
        f"{n} has {a} {obj}. {m} has {k} times as many {obj} as {n}. "
        f"How many more {obj} does {m} have than {n}?"
    )
    sol = f"{m} has {k} x {a} = {k * a} {obj}, which is {k * a} - {a} = {(k - 1) * a} more."
    return q, sol, (k - 1) * a


def _t_split_bill(rng: random.Random) -> Problem:
    thing, k, each = rng.choice(_SHARED), rng.randint(2, 12), rng.randint(3, 80)
    q = (
        f"{k} friends split a {thing} of ${k * each} equally. "
        "How many dollars does each friend pay?"
    )
    return q, f"Each friend pays ${k * each} / {k} = ${each}.", each


def _t_wage(rng: random.Random) -> Problem:
    n = rng.choice(_NAMES)
    w, h, d = rng.randint(8, 30), rng.randint(2, 8), rng.randint(1, 5)
    q = (
        f"{n} earns ${w} per hour and works {h} hours a day for {d} days. "
        f"How many dollars does {n} earn?"
    )
    sol = f"{n} works {h} x {d} = {h * d} hours and earns {h * d} x ${w} = ${h * d * w}."
    return q, sol, h * d * w


def _t_spend_two(rng: random.Random) -> Problem:
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


def _t_rows(rng: random.Random) -> Problem:
    (place, things), r, p = rng.choice(_ROWS), rng.randint(2, 30), rng.randint(2, 30)
    q = (
        f"A {place} has {r} rows with {p} {things} in each row. "
        f"How many {things} are in the {place}?"
    )
    return q, f"There are {r} x {p} = {r * p} {things}.", r * p


# fmt: off
TEMPLATES: tuple[Callable[[random.Random], Problem], ...] = (
    _t_add, _t_sub, _t_containers, _t_share, _t_buy, _t_change, _t_rate, _t_add_remove,
    _t_bags, _t_more_than, _t_times, _t_split_bill, _t_wage, _t_spend_two, _t_rows,
)
# fmt: on

# The opt-in "mix" difficulty adds easier problems: small numbers (at most 20 per operand)
# and only addition / subtraction, in one step or two. They exist so that a small base model
# starts with a reward that is neither always wrong nor always right (a policy gradient learns
# nothing from a constant reward); the "standard" level is the templates above, unchanged.


def _e_add(rng: random.Random) -> Problem:
    n, m = _two_names(rng)
    obj, a, b = rng.choice(_OBJECTS), rng.randint(1, 20), rng.randint(1, 20)
    q = f"{n} has {a} {obj}. {m} gives {n} {b} more {obj}. How many {obj} does {n} have now?"
    return q, f"{n} has {a} + {b} = {a + b} {obj}.", a + b


def _e_buy_more(rng: random.Random) -> Problem:
    n, obj = rng.choice(_NAMES), rng.choice(_OBJECTS)
    a, b = rng.randint(1, 20), rng.randint(1, 20)
    q = f"{n} has {a} {obj} and buys {b} more. How many {obj} does {n} have?"
    return q, f"{n} has {a} + {b} = {a + b} {obj}.", a + b


def _e_sub(rng: random.Random) -> Problem:
    n, m = _two_names(rng)
    obj, a = rng.choice(_OBJECTS), rng.randint(3, 20)
    b = rng.randint(1, a - 1)
    q = f"{n} had {a} {obj} and gave {b} of them to {m}. How many {obj} does {n} have left?"
    return q, f"{n} has {a} - {b} = {a - b} {obj} left.", a - b


def _e_lose(rng: random.Random) -> Problem:
    n, obj = rng.choice(_NAMES), rng.choice(_OBJECTS)
    a = rng.randint(3, 20)
    b = rng.randint(1, a - 1)
    q = f"{n} has {a} {obj} and loses {b} of them. How many {obj} does {n} have left?"
    return q, f"{n} has {a} - {b} = {a - b} {obj} left.", a - b


def _e_add_sub(rng: random.Random) -> Problem:
    n, m = _two_names(rng)
    obj, a, b = rng.choice(_OBJECTS), rng.randint(1, 20), rng.randint(1, 20)
    c = rng.randint(1, min(20, a + b - 1))
    q = (
        f"{n} has {a} {obj}. {n} buys {b} more and then gives {c} to {m}. "
        f"How many {obj} does {n} have now?"
    )
    sol = f"{n} has {a} + {b} = {a + b} {obj}, then {a + b} - {c} = {a + b - c} {obj}."
    return q, sol, a + b - c


def _e_three_sum(rng: random.Random) -> Problem:
    n, m, k = rng.sample(_NAMES, 3)
    obj, a, b, c = rng.choice(_OBJECTS), rng.randint(1, 20), rng.randint(1, 20), rng.randint(1, 20)
    q = f"{n} has {a} {obj}, {m} has {b} and {k} has {c}. How many {obj} do they have together?"
    sol = f"{n} and {m} have {a} + {b} = {a + b}; with {k} that is {a + b} + {c} = {a + b + c}."
    return q, sol, a + b + c


def _e_sub_sub(rng: random.Random) -> Problem:
    n, m, k = rng.sample(_NAMES, 3)
    obj, a = rng.choice(_OBJECTS), rng.randint(4, 20)
    b = rng.randint(1, a - 2)
    c = rng.randint(1, a - b - 1)
    q = f"{n} had {a} {obj}, gave {b} to {m} and {c} to {k}. How many {obj} does {n} have left?"
    sol = f"{n} has {a} - {b} = {a - b} {obj}, then {a - b} - {c} = {a - b - c} {obj} left."
    return q, sol, a - b - c


#: The "mix" levels, with how many of every 10 consecutive items of a split each level gets
#: (positions 0-7 one-step, 8 two-step, 9 standard, repeated), so the shares are exact for every
#: split and for any prefix of 10k items (the validation subset a run selects on). Tuned on the
#: valid split for SmolLM2-135M-Instruct, which answers about a quarter of one-step items and
#: few two-step or standard ones greedily (``base_rates``; results/experts/base-rate-math-mix-*):
#: the one-step share keeps the start accuracy above 20%, the others keep harder items in view.
MATH_MIX: tuple[tuple[str, int], ...] = (("one-step", 8), ("two-step", 1), ("standard", 1))
LEVEL_TEMPLATES: dict[str, tuple[Callable[[random.Random], Problem], ...]] = {
    "one-step": (_e_add, _e_buy_more, _e_sub, _e_lose),
    "two-step": (_e_add_sub, _e_three_sum, _e_sub_sub),
    "standard": TEMPLATES,
}


def mix_level(position: int) -> str:
    """The difficulty level of the item at ``position`` of a "mix" split."""
    block = [level for level, count in MATH_MIX for _ in range(count)]
    return block[position % len(block)]
