"""SEAL evaluations on held-out passages: one condition at a time, and sequential edits.

Conditions (each passage is handled alone: update, answer its questions closed-book, undo):
- ``base``: no update;
- ``passage``: an inner update on the passage only;
- ``self-edit``: an inner update on the model's own self-edit (greedy) + the passage.
The SEAL rows are the ``self-edit`` condition run with a ReST-EM generator (the same model
writes its self-edit and is updated on it).

``sequential_edits`` merges one edit after another into the weights and after each edit
re-asks the questions of every passage edited so far (forgetting).
"""

from __future__ import annotations

import time

from t2bench.errors import ConfigError
from t2bench.seal.inner import InnerConfig, InnerUpdateDivergedError, InnerUpdater
from t2bench.seal.passages import Passage
from t2bench.seal.qa import accuracy, closed_book
from t2bench.seal.selfedit import (
    EmptySelfEditError,
    generate_self_edits,
    parse_self_edit,
    training_sequences,
)

__all__ = ["CONDITIONS", "edit_sequences", "evaluate_condition", "sequential_edits"]

CONDITIONS = ("base", "passage", "self-edit")


def edit_sequences(
    model,
    tokenizer,
    passages: list[Passage],
    condition: str,
    *,
    variant: str,
    seed: int,
    max_new_tokens: int = 128,
) -> list[dict]:
    """Per passage: the training sequences of ``condition`` and the self-edit they came from.

    An empty self-edit leaves the passage alone as the only sequence and is counted
    (``empty: True``) rather than dropped, so every passage is scored.
    """
    if condition not in CONDITIONS:
        raise ConfigError(f"unknown condition {condition!r}: use one of {', '.join(CONDITIONS)}")
    if condition == "base":
        return [{"uid": p.uid, "sequences": [], "self_edit": None} for p in passages]
    if condition == "passage":
        return [
            {"uid": p.uid, "sequences": training_sequences(p, []), "self_edit": None}
            for p in passages
        ]
    texts = generate_self_edits(
        model,
        tokenizer,
        passages,
        variant=variant,
        k=1,
        seed=seed,
        temperature=0.0,
        max_new_tokens=max_new_tokens,
    )
    out = []
    for p, (text,) in zip(passages, texts, strict=True):
        try:
            lines, empty = parse_self_edit(text), False
        except EmptySelfEditError:
            lines, empty = [], True
        out.append(
            {
                "uid": p.uid,
                "sequences": training_sequences(p, lines),
                "self_edit": text,
                "lines": len(lines),
                "empty": empty,
            }
        )
    return out


def evaluate_condition(
    model,
    tokenizer,
    passages: list[Passage],
    edits: list[dict],
    inner: InnerConfig | None,
    *,
    model_id: str = "model",
    qa_max_new_tokens: int = 16,
    progress: bool = False,
) -> dict:
    """Closed-book records per question after each passage's own update (none for ``base``).

    A diverged inner update is recorded and its passage is scored without an update.
    """
    from tqdm.auto import tqdm

    updater = InnerUpdater(model, tokenizer, inner, model_id=model_id) if inner else None
    records, per_passage = [], []
    t0 = time.perf_counter()
    for p, e in tqdm(
        list(zip(passages, edits, strict=True)),
        disable=not progress,
        desc="passages",
        unit="passage",
    ):
        if e["uid"] != p.uid:
            raise ConfigError(f"edits are for {e['uid']}, not passage {p.uid}: same order needed")
        info = {"uid": p.uid, "lines": e.get("lines"), "empty": e.get("empty", False)}
        if updater is None or not e["sequences"]:
            recs = closed_book(model, tokenizer, [p], max_new_tokens=qa_max_new_tokens)
        else:
            try:
                with updater.updated(e["sequences"]) as (m, result):
                    recs = closed_book(m, tokenizer, [p], max_new_tokens=qa_max_new_tokens)
                info["inner"] = result.to_dict()
            except InnerUpdateDivergedError as exc:
                info["diverged"] = str(exc)
                recs = closed_book(model, tokenizer, [p], max_new_tokens=qa_max_new_tokens)
        records.extend(recs)
        per_passage.append(info)
    return {"records": records, "passages": per_passage, "seconds": time.perf_counter() - t0}


def sequential_edits(
    model,
    tokenizer,
    passages: list[Passage],
    edits: list[dict],
    inner: InnerConfig,
    *,
    model_id: str = "model",
    qa_max_new_tokens: int = 16,
    progress: bool = False,
) -> dict:
    """Merge the edits one after another; after edit i, closed-book accuracy on passages 0..i.

    ``matrix[i][j]`` = accuracy on passage j after edits 0..i (j <= i); ``before[j]`` = before
    any edit. The model's weights are changed: pass a copy you can discard.
    """
    from tqdm.auto import tqdm

    updater = InnerUpdater(model, tokenizer, inner, model_id=model_id)
    before = [
        accuracy(closed_book(model, tokenizer, [p], max_new_tokens=qa_max_new_tokens))
        for p in passages
    ]
    matrix, seconds = [], []
    for i, e in enumerate(tqdm(edits, disable=not progress, desc="sequential edits")):
        t = time.perf_counter()
        updater.merge(e["sequences"])
        seconds.append(time.perf_counter() - t)
        matrix.append(
            [
                accuracy(closed_book(model, tokenizer, [p], max_new_tokens=qa_max_new_tokens))
                for p in passages[: i + 1]
            ]
        )
    return {"before": before, "matrix": matrix, "merge_seconds": seconds}
