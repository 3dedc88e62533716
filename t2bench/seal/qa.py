"""Closed-book question answering: the reward of an inner update.

The model sees a passage's questions without the passage (greedy, a short answer) and each
answer is graded deterministically (:mod:`t2bench.seal.grade`): normalised containment is the
reward, exact match and token F1 are reported beside it.
"""

from __future__ import annotations

from t2bench.seal.grade import clean_answer, grade
from t2bench.seal.passages import Passage

__all__ = ["QA_PROMPT", "accuracy", "answer_questions", "closed_book"]

QA_PROMPT = "Answer the question with a short phrase.\nQuestion: {question}"


def answer_questions(
    model, tokenizer, questions: list[str], *, max_new_tokens: int = 16, batch: int = 16
) -> list[str]:
    """Greedy answers to ``questions`` (no passage in the prompt)."""
    from t2bench.generation import encode_prompts, generate

    answers: list[str] = []
    for start in range(0, len(questions), batch):
        chunk = questions[start : start + batch]
        ids = encode_prompts(tokenizer, [QA_PROMPT.format(question=q) for q in chunk])
        answers.extend(generate(model, tokenizer, ids, max_new_tokens=max_new_tokens).texts)
    return answers


def closed_book(
    model, tokenizer, passages: list[Passage], *, max_new_tokens: int = 16, batch: int = 16
) -> list[dict]:
    """One record per question of ``passages``: uid, question, prediction and its grades."""
    pairs = [(p, qa) for p in passages for qa in p.questions]
    preds = answer_questions(
        model,
        tokenizer,
        [qa.question for _, qa in pairs],
        max_new_tokens=max_new_tokens,
        batch=batch,
    )
    records = []
    for (p, qa), pred in zip(pairs, preds, strict=True):
        answer = clean_answer(pred)
        records.append(
            {
                "uid": p.uid,
                "question": qa.question,
                "prediction": answer,
                **grade(answer, list(qa.answers)),
            }
        )
    return records


def accuracy(records: list[dict], key: str = "contains") -> float:
    """Mean of ``key`` over question records (0.0 for none)."""
    return sum(float(r[key]) for r in records) / len(records) if records else 0.0
