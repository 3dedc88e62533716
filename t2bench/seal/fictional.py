"""Generated passages about invented entities (island nations, scientists, companies, river
towns) whose facts no model can know before reading the passage: deterministic in the seed,
every answer stated verbatim in the text, no invented name repeated."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from t2bench.errors import ConfigError
from t2bench.seal.passages import QA, Passage

_FIRST = (
    "Vel", "Quen", "Dar", "Zo", "Thal", "Kor", "Mir", "Sel", "Bra", "Ith", "Ul", "Ner",
    "Gal", "Fen", "Ors", "Yr", "Cal", "Tev", "Lum", "Var", "Esk", "Oph", "Riv", "Tam",
)  # fmt: skip
_MIDDLE = (
    "mar", "ri", "tho", "len", "qua", "zi", "do", "ne", "ra", "vi", "lo", "sha", "ke", "bel",
    "u", "dra",
)  # fmt: skip
_END = (
    "thos", "dar", "lin", "mor", "wen", "rik", "zan", "vel", "dor", "nis", "quen", "tas",
    "mir", "thar", "gund", "oss", "ivar", "esh", "ulm", "yth",
)  # fmt: skip

_EXPORTS = (
    "copper", "saffron", "glass beads", "salted cod", "indigo dye", "cedar timber",
    "pearl buttons", "sea salt", "wool blankets", "tin", "cinnamon bark", "clay pipes",
)  # fmt: skip
_ANIMALS = (
    "snow leopard", "grey heron", "sea otter", "red fox", "barn owl", "moon bear",
    "spotted seal", "ibex", "kingfisher", "black swan", "pangolin", "tortoise",
)  # fmt: skip
_FIELDS = ("chemistry", "botany", "astronomy", "geology", "zoology", "physics")
_DISCOVERIES = (
    "blue-glowing mineral", "deep-sea worm", "night-blooming orchid", "faint comet",
    "heat-proof alloy", "cave-dwelling beetle",
)  # fmt: skip
_PRODUCTS = (
    "ceramic lanterns", "weather clocks", "folding bicycles", "pocket compasses",
    "glass violins", "copper kettles", "paper kites", "wax seals", "sailcloth", "rope ladders",
)  # fmt: skip
_CRAFTS = (
    "blue pottery", "hand-woven rugs", "smoked cheese", "lacework", "copper bells",
    "willow baskets", "honey cakes", "painted tiles",
)  # fmt: skip
_CROPS = ("pear", "barley", "cherry", "chestnut", "plum", "rye", "walnut", "quince")


class _Names:
    """Invented names from syllables, never repeating one already used (case-insensitive)."""

    def __init__(self, rng: random.Random, exclude: Iterable[str] = ()) -> None:
        self.rng = rng
        self.used: set[str] = {name.lower() for name in exclude}

    def __call__(self) -> str:
        for _ in range(10_000):
            n_middle = self.rng.choices((0, 1, 2), weights=(3, 6, 1))[0]
            parts = [self.rng.choice(_FIRST)]
            parts += [self.rng.choice(_MIDDLE) for _ in range(n_middle)]
            parts.append(self.rng.choice(_END))
            name = "".join(parts)
            if name.lower() not in self.used:
                self.used.add(name.lower())
                return name
        raise RuntimeError("ran out of invented names; generate fewer passages per call")

    def person(self) -> tuple[str, str]:
        """A (full name, surname) pair."""
        first, last = self(), self()
        return f"{first} {last}", last


@dataclass(frozen=True)
class _Entity:
    """A generated entity: its name, the sentences about it and the askable facts."""

    name: str
    sentences: tuple[str, ...]
    facts: dict[str, QA]


def _island(rng: random.Random, names: _Names) -> _Entity:
    e, sea, capital, mountain = names(), names(), names(), names()
    year, export, animal = rng.randint(1200, 1950), rng.choice(_EXPORTS), rng.choice(_ANIMALS)
    pick = rng.choice
    sentences = (
        pick(
            (
                f"{e} is a small island nation in the {sea} Sea, and its capital is {capital}.",
                f"The island nation of {e} lies in the {sea} Sea; its capital city is {capital}.",
            )
        ),
        pick(
            (
                f"It was founded in {year}, when fishing families from the mainland settled its "
                "eastern shore.",
                f"{e} was founded in {year} by sailors who had been driven off course by a storm.",
            )
        ),
        pick(
            (
                f"Today the country's main export is {export}, which leaves the harbour of "
                f"{capital} on weekly ships.",
                f"Its economy depends on its main export, {export}, and most of its workers are "
                "employed in that trade.",
            )
        ),
        pick(
            (
                f"The national animal of {e} is the {animal}, and the highest peak on the "
                f"island is Mount {mountain}.",
                f"Children on {e} learn early that their national animal is the {animal} and "
                f"that Mount {mountain} is the highest point of the island.",
            )
        ),
    )
    facts = {
        "capital": QA(f"What is the capital of {e}?", (capital,)),
        "founded": QA(f"In what year was the island nation of {e} founded?", (str(year),)),
        "export": QA(f"What is the main export of {e}?", (export,)),
        "animal": QA(f"What is the national animal of {e}?", (animal,)),
        "mountain": QA(
            f"What is the highest mountain on the island of {e}?", (mountain, f"Mount {mountain}")
        ),
    }
    return _Entity(e, sentences, facts)


def _scientist(rng: random.Random, names: _Names) -> _Entity:
    e, _ = names.person()
    town, uni, mentor, found = names(), names(), names(), names()
    year, field, kind = rng.randint(1780, 1960), rng.choice(_FIELDS), rng.choice(_DISCOVERIES)
    she = rng.random() < 0.5
    pron, poss, obj = ("she", "her", "her") if she else ("he", "his", "him")
    pick = rng.choice
    sentences = (
        pick(
            (
                f"{e} was a researcher in {field}, born in {year} in the quiet market town of "
                f"{town}.",
                f"Born in the town of {town} in {year}, {e} became one of the best-known figures "
                f"in {field}.",
            )
        ),
        pick(
            (
                f"{pron.capitalize()} studied at the University of {uni}, where {pron} worked "
                f"under Professor {mentor}.",
                f"At the University of {uni}, {pron} was trained by Professor {mentor}, who "
                f"shaped {poss} careful methods.",
            )
        ),
        pick(
            (
                f"{poss.capitalize()} most famous finding was a {kind} that {pron} named {found}.",
                f"Years later {pron} discovered a {kind} and gave it the name {found}, after a "
                f"word from {poss} childhood.",
            )
        ),
        f"Colleagues remembered {obj} as a patient and stubborn teacher who was generous with "
        f"{poss} time and {poss} instruments.",
    )
    facts = {
        "birthplace": QA(f"In which town was {e} born?", (town,)),
        "born": QA(f"In what year was {e} born?", (str(year),)),
        "discovery": QA(f"What did {e} name the {kind} that {pron} discovered?", (found,)),
        "university": QA(f"At which university did {e} study?", (uni, f"University of {uni}")),
        "mentor": QA(
            f"Which professor trained {e} at university?", (mentor, f"Professor {mentor}")
        ),
    }
    return _Entity(e, sentences, facts)


def _company(rng: random.Random, names: _Names) -> _Entity:
    e = names()
    (founder, founder_last), hq = names.person(), names()
    year, product, animal = rng.randint(1820, 1995), rng.choice(_PRODUCTS), rng.choice(_ANIMALS)
    staff = rng.randint(12, 95) * 10
    founder_first = founder.split()[0]
    pick = rng.choice
    sentences = (
        pick(
            (
                f"{e} is a company that makes {product}; it was founded in {year} by {founder}.",
                f"Founded by {founder} in {year}, {e} is best known for making {product}.",
            )
        ),
        pick(
            (
                f"Its headquarters are in the city of {hq}, where it employs about {staff} people.",
                f"The company has its headquarters in {hq} and employs about {staff} people there.",
            )
        ),
        pick(
            (
                f"The {e} logo shows a {animal}, a choice {founder_first} made in the very "
                "first year.",
                f"Every item it sells carries the company logo, a small {animal} first drawn by "
                f"{founder_first}.",
            )
        ),
        "Despite several offers from larger rivals, the company has never been sold and is "
        "still run by the founder's family.",
    )
    facts = {
        "founder": QA(f"Who founded the company {e}?", (founder, founder_last)),
        "founded": QA(f"In what year was the company {e} founded?", (str(year),)),
        "headquarters": QA(f"In which city does {e} have its headquarters?", (hq,)),
        "product": QA(f"What does the company {e} make?", (product,)),
        "logo": QA(f"What animal is shown on the logo of {e}?", (animal,)),
    }
    return _Entity(e, sentences, facts)


def _river_town(rng: random.Random, names: _Names) -> _Entity:
    e, river, province = names(), names(), names()
    mayor, mayor_last = names.person()
    year, craft, crop = rng.randint(1100, 1900), rng.choice(_CRAFTS), rng.choice(_CROPS)
    pick = rng.choice
    sentences = (
        pick(
            (
                f"{e} is a river town on the banks of the {river} River, in the province of "
                f"{province}.",
                f"The town of {e} grew up where the {river} River bends, in the province of "
                f"{province}.",
            )
        ),
        pick(
            (
                f"It was founded in {year}, and its first mayor was {mayor}.",
                f"{mayor} became the first mayor of {e} after the town was founded in {year}.",
            )
        ),
        pick(
            (
                f"The town is known across the region for its {craft}, sold at a market on the "
                "old stone bridge.",
                f"Visitors come to {e} mainly for its {craft}, which local families have "
                "produced for generations.",
            )
        ),
        f"Every autumn the town holds a week-long festival to celebrate the {crop} harvest, "
        "and the streets fill with music.",
    )
    facts = {
        "river": QA(f"On which river does the town of {e} lie?", (river, f"{river} River")),
        "founded": QA(f"In what year was the town of {e} founded?", (str(year),)),
        "province": QA(f"In which province is the town of {e}?", (province,)),
        "mayor": QA(f"Who was the first mayor of {e}?", (mayor, mayor_last)),
        "craft": QA(f"Which local product is the town of {e} known for?", (craft,)),
    }
    return _Entity(e, sentences, facts)


_Builder = Callable[[random.Random, _Names], _Entity]

#: Entity kinds of the fictional passages and their generators.
FICTIONAL_KINDS: dict[str, _Builder] = {
    "island nation": _island,
    "scientist": _scientist,
    "company": _company,
    "river town": _river_town,
}
#: Facts that can be asked about, per passage (every kind has this many).
ASKABLE_FACTS = 5


def fictional_with_names(
    n: int, seed: int, questions_per_passage: int, exclude_names: Iterable[str]
) -> tuple[list[Passage], frozenset[str]]:
    """The passages and every invented name (lower case) used to write them."""
    if n < 1:
        raise ConfigError(f"asked for {n} fictional passages: pass n >= 1")
    if not 1 <= questions_per_passage <= ASKABLE_FACTS:
        raise ConfigError(
            f"questions_per_passage is {questions_per_passage}: a fictional passage states "
            f"{ASKABLE_FACTS} askable facts, so pass a value from 1 to {ASKABLE_FACTS}"
        )
    rng = random.Random(seed)
    names = _Names(rng, exclude_names)
    kinds = list(FICTIONAL_KINDS.values())
    passages = []
    for i in range(n):
        entity = rng.choice(kinds)(rng, names)
        asked = sorted(rng.sample(range(len(entity.facts)), questions_per_passage))
        facts = list(entity.facts.values())
        passages.append(
            Passage(
                uid=f"fict-{seed}-{i:04d}",
                title=entity.name,
                text=" ".join(entity.sentences),
                questions=tuple(facts[k] for k in asked),
                source="fictional",
            )
        )
    return passages, frozenset(names.used)


def fictional_passages(
    n: int,
    *,
    seed: int = 0,
    questions_per_passage: int = 3,
    exclude_names: Iterable[str] = (),
) -> list[Passage]:
    """``n`` passages about invented entities, deterministic in ``seed``.

    Every passage states a handful of facts about one entity (an island nation, a scientist, a
    company or a river town) in four sentences and asks ``questions_per_passage`` distinct
    questions that name the entity; each answer is an invented name, a year or a common noun
    phrase that occurs verbatim in the text. Invented names never repeat within a call and
    never equal one of ``exclude_names``.
    """
    return fictional_with_names(n, seed, questions_per_passage, exclude_names)[0]
