"""Thin lm-eval hooks (``!function utils.<name>``) for the offline tasks in this folder.

All logic lives in :mod:`t2bench.tasks`; see ``README.md`` here for sources and deviations.
lm-eval calls ``custom_dataset`` functions with the task metadata and ``dataset_kwargs`` as
keyword arguments, so the loaders accept and ignore extra keywords.
"""

from __future__ import annotations

from t2bench.tasks import (
    code_exec,
    gsm8k,
    humaneval,
    lettered,
    math_answer,
    mbpp,
    minerva_math,
    textvqa,
)
from t2bench.tasks.arc import load_arc
from t2bench.tasks.unseen import load_basic_skill, load_sciq

# --------------------------------------------------------------------------- datasets


def load_gsm8k_dataset(**kwargs):
    return gsm8k.load_gsm8k()


def load_arc_dataset(subset: str, **kwargs):
    return load_arc(subset)


def load_sciq_dataset(**kwargs):
    return load_sciq()


def load_basic_skill_dataset(skill: str, **kwargs):
    return load_basic_skill(skill)


def load_lettered_dataset(source: str, **kwargs):
    return lettered.load_lettered(source)


def load_minerva_math_dataset(subject: str, **kwargs):
    return minerva_math.load_minerva_math(subject)


def load_humaneval_dataset(**kwargs):
    code_exec.require_opt_in()  # fail before generation, as upstream's import-time check
    return humaneval.load_humaneval()


def load_mbpp_dataset(**kwargs):
    code_exec.require_opt_in()
    return mbpp.load_mbpp()


# --------------------------------------------------------------------------- few-shot pools

gsm8k_fewshot_samples = gsm8k.fewshot_samples
minerva_math_fewshot_samples = minerva_math.fewshot_samples
mbpp_fewshot_samples = mbpp.fewshot_samples

# --------------------------------------------------------------------------- prompts, scoring

minerva_math_doc_to_text = minerva_math.doc_to_text
minerva_math_process_results = math_answer.process_results
build_predictions = humaneval.build_predictions


def pass_at_k(references, predictions, k=None):
    """humaneval metric; the name makes lm-eval report ``pass@<k>`` like upstream."""
    return code_exec.pass_at_k(references, predictions, k=[1] if k is None else k)


def pass_at_1(references, predictions):
    """mbpp metric; the name makes lm-eval report ``pass_at_1`` like upstream."""
    return code_exec.pass_at_k(references, predictions, k=[1])["pass@1"]


# --------------------------------------------------------------------------- textvqa (hub data)


def textvqa_doc_to_text(doc):
    return textvqa.doc_to_text(doc)


def textvqa_doc_to_image(doc):
    return textvqa.doc_to_image(doc)


def textvqa_process_results(doc, results):
    return textvqa.process_results(doc, results)


# --------------------------------------------------------------------------- lettered choices


def lettered_doc_to_text(doc):
    """The stem, the lettered choices and the reasoning expert's answer instruction."""
    from t2bench.data.splits import REASONING_INSTRUCTION

    lines = "\n".join(f"{lettered.letter(i)}. {c}" for i, c in enumerate(doc["choices"]))
    return f"{doc['stem']}\n{lines}\n{REASONING_INSTRUCTION}\n"


def lettered_process_results(doc, results):
    """1 when the completion names the gold letter (the reasoning reward's extraction)."""
    from t2bench.train.rewards import extract_letter

    chosen = extract_letter(results[0].strip(), len(doc["choices"]))
    return {"exact_match": float(chosen == doc["gold_letter"])}
