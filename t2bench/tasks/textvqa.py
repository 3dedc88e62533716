"""``textvqa``: TextVQA validation (Singh et al. 2019) for lm-eval's multimodal path.

Unlike the other tasks in ``tasks/`` this one reads the Hugging Face hub dataset
``lmms-lab/textvqa`` (split ``validation``, 5000 questions on 3166 images; the ``test`` split
has no public answers). It needs hub access, or a ``datasets`` cache filled beforehand.
``tasks/utils.py`` holds thin shims over the functions here; ``tasks/textvqa.yaml`` holds the
generation settings and metric.

Prompt (as lmms-eval's ``textvqa_val`` default): the question with its first letter
capitalised by ``str.capitalize`` (which also lower-cases the rest, as lmms-eval does; TextVQA
questions are lower case), then ``"\\nAnswer the question using a single word or phrase."``,
preceded by lm-eval's image placeholder ``<image>`` (``DEFAULT_IMAGE_PLACEHOLDER`` of
``lm_eval/models/hf_vlms.py``), which ``hf-multimodal`` replaces by the model's image token.

Scoring (:func:`process_results`): the generation is cleaned with
:func:`t2bench.tasks.vqa_metric.clean_prediction` and scored with
:func:`t2bench.tasks.vqa_metric.vqa_accuracy` against the doc's ten ``answers``, with
``always_normalize_answers=True``: the references are raw annotator strings, and the TextVQA
evaluator used by LLaVA and lmms-eval normalises every reference (the VQA evaluator's
skip-when-unanimous rule would score e.g. a unanimous ``"coca-cola"`` as unmatchable).
"""

from __future__ import annotations

from typing import Any

__all__ = ["INSTRUCTION", "doc_to_image", "doc_to_text", "process_results"]

#: lmms-eval's default TextVQA post-prompt.
INSTRUCTION = "\nAnswer the question using a single word or phrase."
#: lm-eval's image placeholder for multimodal backends.
IMAGE_PLACEHOLDER = "<image>"


def doc_to_text(doc: dict[str, Any]) -> str:
    """``<image><Question>\\nAnswer the question using a single word or phrase.``"""
    return f"{IMAGE_PLACEHOLDER}{str(doc['question']).capitalize()}{INSTRUCTION}"


def doc_to_image(doc: dict[str, Any]) -> list[Any]:
    """The doc's one image as a one-element list, converted to RGB when it is a PIL image
    (TextVQA has some greyscale and RGBA images; vision processors expect 3 channels)."""
    image = doc["image"]
    if hasattr(image, "convert") and getattr(image, "mode", "RGB") != "RGB":
        image = image.convert("RGB")
    return [image]


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    """lm-eval ``process_results`` for ``generate_until``: ``results`` is ``[generation]``."""
    from t2bench.tasks.vqa_metric import clean_prediction, vqa_accuracy

    prediction = clean_prediction(results[0])
    answers = [str(a) for a in doc["answers"]]
    return {"vqa_accuracy": float(vqa_accuracy(prediction, answers, always_normalize_answers=True))}
