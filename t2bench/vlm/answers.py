"""Greedy answers of the VLM to the generated VQA items, cleaned and scored as the lm-eval task
does: the selection metric of vision pre-training."""

from __future__ import annotations

import torch

from t2bench.tasks import textimages as ti
from t2bench.vlm.objectives import mean_or_none, padding_side, prompt_text


def clean_answer(generation: str) -> str:
    """What lm-eval scores: the text up to the first newline, then the task's cleaning."""
    text = generation.split("\n", 1)[0]
    try:
        from t2bench.tasks.vqa_metric import clean_prediction
    except ImportError:
        return text.strip()
    return clean_prediction(text)


class _StopAtNewline:
    """Stopping criterion: a row is done once its generated text contains a newline."""

    def __init__(self, tokenizer, start: int):
        self.tokenizer, self.start = tokenizer, start

    def __call__(self, input_ids, scores, **kwargs):
        texts = self.tokenizer.batch_decode(input_ids[:, self.start :], skip_special_tokens=True)
        return torch.tensor(["\n" in t for t in texts], dtype=torch.bool, device=input_ids.device)


@torch.no_grad()
def generate_answers(
    model, processor, items: list[dict], max_new_tokens: int = 8, batch: int = 16
) -> list[str]:
    """Greedy answers to the task prompt, left-padded batches, stopped at a newline, cleaned."""
    from transformers import StoppingCriteriaList

    tok = processor.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    answers: list[str] = []
    for start in range(0, len(items), batch):
        chunk = items[start : start + batch]
        with padding_side(tok, "left"):
            enc = processor(
                images=[it["image"] for it in chunk],
                text=[prompt_text(it) for it in chunk],
                return_tensors="pt",
                padding=True,
            )
        enc = enc.to(model.device)
        width = enc["input_ids"].shape[1]
        out = model.generate(
            **enc,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=1,
            pad_token_id=pad,
            stopping_criteria=StoppingCriteriaList([_StopAtNewline(tok, width)]),
        )
        texts = tok.batch_decode(out[:, width:], skip_special_tokens=True)
        answers.extend(clean_answer(t) for t in texts)
    return answers


def valid_exact_match(
    model, processor, items: list[dict], max_new_tokens: int = 8, batch: int = 16
):
    """Exact-match accuracy (cleaned, lower-cased prediction == answer), overall and per qtype."""
    preds = generate_answers(model, processor, items, max_new_tokens=max_new_tokens, batch=batch)
    hits = [
        p.strip().lower() == str(it["answer"]).lower() for p, it in zip(preds, items, strict=True)
    ]
    per_qtype = {}
    for q in ti.QUESTIONS:
        sel = [h for h, it in zip(hits, items, strict=True) if it["qtype"] == q]
        per_qtype[q] = mean_or_none(sel)
    return {
        "overall": mean_or_none(hits),
        "per_qtype": per_qtype,
        "n": len(items),
        "examples": [
            {"id": it["id"], "answer": it["answer"], "prediction": p}
            for it, p in list(zip(items, preds, strict=True))[:6]
        ],
    }
