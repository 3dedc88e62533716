"""The evaluation prompts that dispatch is scored on, each with the expert label it should get.

They are the exact contexts lm-eval sends for held-out evaluation docs (few-shot examples
included, as in a default ``lm_eval run``: no chat template, no system instruction, the default
few-shot seed). MBPP docs are restricted to task ids 311-510: ids 11-310 are the training and
validation pools of the code expert and the classifier (:mod:`t2bench.data.splits`).
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

from t2bench.errors import ConfigError
from t2bench.tasks import tasks_dir
from t2bench.tasks.code_exec import ENV_FLAG
from t2bench.tasks.sandbox import RUNNER_ENV, UNISOLATED

TRUE_LABEL: dict[str, str] = {
    "gsm8k": "math",
    "minerva_math": "math",
    "humaneval": "code",
    "mbpp": "code",
    "arc_challenge": "reasoning",
    "arc_easy": "reasoning",
    "sciq": "reasoning",
    "t2_basic_arithmetic": "math",
    "t2_basic_coding": "code",
}
DEFAULT_TASKS = ("gsm8k", "minerva_math", "humaneval", "mbpp", "arc_challenge")
# MBPP task ids 11-310 train / validate the code expert and the classifier (data/splits.py).
MBPP_HELD_OUT = range(311, 511)


def true_label(task_name: str) -> str:
    """The category of an lm-eval task: exact name, else the longest ``<known>_`` prefix."""
    if task_name in TRUE_LABEL:
        return TRUE_LABEL[task_name]
    for known in sorted(TRUE_LABEL, key=len, reverse=True):
        if task_name.startswith(known + "_"):
            return TRUE_LABEL[known]
    raise ConfigError(
        f"no true label for task {task_name!r}: known tasks (and their '<name>_…' subtasks) are "
        f"{', '.join(sorted(TRUE_LABEL))}; add it to t2bench.dispatch.routing_items.TRUE_LABEL"
    )


class PromptItem(NamedTuple):
    """One evaluation doc as the dispatcher sees it, with the label it should route to."""

    task: str  # the leaf lm-eval task (a subtask for groups), as lm-eval names its requests
    doc_id: int  # lm-eval's doc_id: the position in the task's evaluation docs
    text: str
    true: str


@contextlib.contextmanager
def _code_dataset_opt_in() -> Iterator[None]:
    """Let humaneval/mbpp load their docs: their loaders demand the code-execution opt-in and
    a working sandbox (so that an evaluation fails before generation, not after).

    Nothing is executed here, only prompts are built, so the opt-in is set just while the
    tasks load, with the runner named as ``unisolated`` so that loading does not need
    bubblewrap, and both are restored afterwards.
    """

    lent = {ENV_FLAG: "1", RUNNER_ENV: UNISOLATED}
    old = {name: os.environ.get(name) for name in lent}
    os.environ.update(lent)
    try:
        yield
    finally:
        for name, value in old.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _eligible(task_name: str, doc: Mapping[str, Any]) -> bool:
    if task_name == "mbpp" or task_name.startswith("mbpp_"):
        return int(doc["task_id"]) in MBPP_HELD_OUT
    return True


def _contexts(task: Any, wanted: set[int]) -> dict[int, str]:
    """lm-eval's context for each wanted doc_id, exactly as ``build_all_requests`` makes it.

    The default few-shot sampler draws from one seeded stream in doc order, so a doc's shots
    depend on the docs before it: their draws are replayed, in order, up to the last wanted
    doc (only the draws, as ``fewshot_context`` makes them: rendering every skipped context
    would cost ~10 ms a doc). The tests compare the result with ``build_all_requests``.
    """
    from lm_eval.api.samplers import FirstNSampler
    from lm_eval.defaults import DEFAULT_OTHER_SEED

    num_fewshot = task.get_config("num_fewshot") or 0
    task.set_fewshot_seed(seed=DEFAULT_OTHER_SEED)  # what simple_evaluate does by default
    stateful = num_fewshot > 0 and not isinstance(getattr(task, "sampler", None), FirstNSampler)
    last = max(wanted)
    out: dict[int, str] = {}
    for doc_id, doc in task.doc_iterator():
        if doc_id > last:
            break
        if doc_id not in wanted:
            if stateful:
                same_split = task.fewshot_cfg.split == task.config.test_split
                task.sampler.sample(n=num_fewshot, eval_doc=doc if same_split else None)
            continue
        ctx = task.fewshot_context(doc, num_fewshot=num_fewshot, gen_prefix=task.doc_to_prefix(doc))
        if not isinstance(ctx, str):
            raise ConfigError(
                f"task {task.config.task} builds several contexts per doc (multiple inputs); "
                "dispatch accuracy needs one prompt per doc: choose another task"
            )
        out[doc_id] = ctx
    return out


def task_prompts(
    tasks: Sequence[str] = DEFAULT_TASKS, n_per_task: int = 50, seed: int = 0
) -> list[PromptItem]:
    """``n_per_task`` seeded evaluation docs per task (a group samples across its subtasks).

    Each item's text is the context lm-eval would send for that doc; nothing is cached, so
    edits to the task YAMLs show up at once.
    """
    from lm_eval.tasks import TaskManager

    if n_per_task < 1:
        raise ConfigError(f"n_per_task must be at least 1 (got {n_per_task})")
    for name in tasks:
        true_label(name)  # fail on an unknown task before loading anything
    # Indexing lm-eval's own ~14k task YAMLs takes ~20 s; the offline folder holds (and
    # overrides) every task named here, so it alone suffices unless a task lives elsewhere.
    local = tasks_dir()
    defaults = not all((local / f"{name}.yaml").is_file() for name in tasks)
    manager = TaskManager(include_path=str(local), include_defaults=defaults)
    items: list[PromptItem] = []
    for name in tasks:
        with _code_dataset_opt_in():
            leaves = manager.load(name)["tasks"]
        pool = [
            (leaf, doc_id)
            for leaf, task in sorted(leaves.items())
            for doc_id, doc in task.doc_iterator()
            if _eligible(leaf, doc)
        ]
        if n_per_task > len(pool):
            raise ConfigError(
                f"task {name} has {len(pool)} eligible evaluation docs, fewer than n={n_per_task}: "
                "lower --n"
            )
        picked = random.Random(f"{seed}-{name}").sample(pool, n_per_task)
        by_leaf: dict[str, set[int]] = {}
        for leaf, doc_id in picked:
            by_leaf.setdefault(leaf, set()).add(doc_id)
        texts = {leaf: _contexts(leaves[leaf], ids) for leaf, ids in by_leaf.items()}
        items += [
            PromptItem(leaf, doc_id, texts[leaf][doc_id], true_label(leaf))
            for leaf, doc_id in sorted(picked)
        ]
    return items


def first_docs(task_name: str, n: int | None) -> list[PromptItem]:
    """The first ``n`` docs (all when None) of one lm-eval task with their contexts: the docs
    ``lm_eval --limit n`` evaluates, so a first pass here sees exactly the backend's prompts."""
    from lm_eval.tasks import TaskManager

    local = tasks_dir()
    manager = TaskManager(
        include_path=str(local), include_defaults=not (local / f"{task_name}.yaml").is_file()
    )
    with _code_dataset_opt_in():
        task = manager.load(task_name)["tasks"][task_name]
    ids = [doc_id for doc_id, _ in task.doc_iterator()]
    wanted = set(ids if n is None else ids[:n])
    texts = _contexts(task, wanted)
    label = true_label(task_name)
    return [PromptItem(task_name, d, texts[d], label) for d in sorted(wanted)]
