"""Expert-training splits: sizes, determinism, disjointness and user JSON-lines data."""

from __future__ import annotations

import dataclasses
import json
import re
from collections import Counter

import pytest

from t2bench.errors import ConfigError
from t2bench.tasks.splits import LeakageError, normalize_question
from t2bench.train.data import (
    CLASSIFIER_LABELS,
    SPLIT_NAMES,
    TASKS,
    Splits,
    TrainItem,
    check_disjoint,
    load_jsonl_items,
    load_splits,
)

# The sizes the module docstring states.
SIZES = {
    "math": (2000, 200, 300),
    "reasoning": (285, 285, 2376),
    "code": (200, 99, 200),
    "classifier": (685, 299, 600),
    "vqa": (2000, 200, 300),
}


@pytest.fixture(scope="module")
def splits() -> dict[str, Splits]:
    return {task: load_splits(task) for task in TASKS}


@pytest.mark.parametrize("task", TASKS)
def test_split_sizes_match_the_docstring(splits, task):
    s = splits[task]
    assert (len(s.train), len(s.valid), len(s.test)) == SIZES[task]
    assert [s.description["splits"][n]["size"] for n in SPLIT_NAMES] == list(SIZES[task])
    json.dumps(s.description)  # JSON-serialisable


@pytest.mark.parametrize("task", TASKS)
def test_items_are_well_formed_and_disjoint(splits, task):
    s = splits[task]
    check_disjoint(s)
    for name in SPLIT_NAMES:
        items = getattr(s, name)
        assert len({i.uid for i in items}) == len(items)
        assert all(i.task == task and i.prompt and i.target for i in items)


def test_reference_formats(splits):
    assert all(re.search(r"The answer is \d+\.$", i.reference) for i in splits["math"].train)
    assert all(i.reference == f"The answer is ({i.target})." for i in splits["reasoning"].test)
    assert all(i.reference == f"\\boxed{{{i.target}}}" for i in splits["classifier"].valid)
    code = splits["code"].train
    assert all(
        i.reference.startswith("```python\n") and i.reference.endswith("\n```") for i in code
    )
    assert all("\r" not in i.reference and len(i.tests) == 3 for i in code)


def test_math_items_are_integer_word_problems(splits):
    items = [i for n in SPLIT_NAMES for i in getattr(splits["math"], n)]
    assert all(0 <= int(i.target) <= 1200 for i in items)
    assert all(i.prompt.endswith("End your reply with 'The answer is <number>.'") for i in items)
    assert splits["math"].description["templates"] >= 10
    assert len({i.target for i in items}) > 300  # answers are spread out


def test_math_is_deterministic_per_seed(splits):
    again = load_splits("math", seed=0)
    assert again.train == splits["math"].train and again.test == splits["math"].test
    other = load_splits("math", seed=1)
    assert [i.prompt for i in other.train] != [i.prompt for i in again.train]
    assert [i.prompt for i in other.test] != [i.prompt for i in again.test]


def test_math_never_matches_a_gsm8k_test_question(splits):
    from t2bench.tasks.gsm8k import load_gsm8k

    gsm8k = {normalize_question(q) for q in load_gsm8k()["test"]["question"]}
    prompts = [i.prompt for n in SPLIT_NAMES for i in getattr(splits["math"], n)]
    questions = {normalize_question(p.split("\n\n")[0]) for p in prompts}
    assert len(questions) == 2500
    assert not questions & gsm8k


def test_check_disjoint_raises_on_shared_uid_or_prompt():
    item = TrainItem("u1", "math", "What is 1 + 1?", "2", "The answer is 2.")
    other = TrainItem("u2", "math", "What is 2 + 2?", "4", "The answer is 4.")
    check_disjoint(Splits("math", [item], [other], [], {}))
    same_prompt = dataclasses.replace(other, prompt="  what IS 1 +\n1? ")
    with pytest.raises(LeakageError, match="valid and test"):
        check_disjoint(Splits("math", [], [item], [same_prompt], {}))
    with pytest.raises(LeakageError, match="train and valid"):
        check_disjoint(Splits("math", [item], [dataclasses.replace(other, uid="u1")], [], {}))


def test_reasoning_is_arc_easy_with_positional_letters(splits):
    s = splits["reasoning"]
    assert all(i.uid.startswith("arc-easy-val-") for i in s.train + s.valid)
    assert all(i.uid.startswith("arc-easy-test-") for i in s.test)
    for item in s.train + s.valid + s.test:
        letters = re.findall(r"^([A-Z])\. ", item.prompt, re.M)
        assert letters == [chr(ord("A") + k) for k in range(len(letters))]
        assert item.target in letters
    # validation items labelled 1..4 upstream are lettered A..D here
    from t2bench.tasks.splits import arc_train_pool

    numeric = [r["id"] for r in arc_train_pool("ARC-Easy") if r["choices"]["label"][0] == "1"]
    assert numeric
    assert {f"arc-easy-val-{i}" for i in numeric} <= {i.uid for i in s.train + s.valid}


def test_code_split_is_mbpp_by_task_id(splits):
    s = splits["code"]
    ids = [[int(i.uid.removeprefix("mbpp-")) for i in getattr(s, n)] for n in SPLIT_NAMES]
    assert ids[2] == list(range(311, 511))
    assert sorted(ids[0] + ids[1]) == [i for i in range(11, 311) if i != 76]  # 76 == 347
    assert ids[0] == sorted(ids[0]) and max(ids[0]) < min(ids[1])
    assert s.description["dropped_from_pool"] == ["mbpp-76"]
    for item in s.train + s.valid + s.test:
        assert item.target and item.target in item.tests[0]
        assert item.tests[0] in item.prompt and "```python" in item.prompt


def test_classifier_uses_bare_questions_and_no_test_items(splits):
    s = splits["classifier"]
    for name in SPLIT_NAMES:
        items = getattr(s, name)
        assert set(Counter(i.target for i in items)) == set(CLASSIFIER_LABELS)
        assert len({i.target for i in items[:10]}) > 1  # shuffled, labels interleave
    assert Counter(i.target for i in s.train) == {"math": 200, "reasoning": 285, "code": 200}
    assert all(i.prompt.count("Solve the problem") == 0 for i in s.train)
    held_out = {i.uid for t in ("math", "reasoning", "code") for i in splits[t].test}
    used = {i.uid.removeprefix("cls-") for i in s.train + s.valid}
    assert not used & held_out
    assert {i.uid.removeprefix("cls-") for i in s.test} <= held_out


def test_classifier_is_deterministic(splits):
    assert load_splits("classifier").train == splits["classifier"].train
    assert load_splits("classifier", seed=3).train != splits["classifier"].train


def test_unknown_task_lists_the_valid_ones(tmp_path):
    with pytest.raises(ConfigError, match="math, reasoning, code, classifier"):
        load_splits("vision")
    with pytest.raises(ConfigError, match="valid tasks"):
        load_jsonl_items(tmp_path / "x.jsonl", "vision")


def _write(tmp_path, lines: list[str]):
    path = tmp_path / "items.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_load_jsonl_items_reads_items_and_fills_defaults(tmp_path):
    path = _write(
        tmp_path,
        [
            json.dumps({"prompt": "2 + 2?", "target": "4"}),
            "",
            json.dumps(
                {"uid": "q2", "prompt": "3 * 3?", "target": "9", "reference": "9. The answer is 9."}
            ),
        ],
    )
    first, second = load_jsonl_items(path, "math")
    assert (first.uid, first.reference) == ("items-1", "The answer is 4.")
    assert (second.uid, second.reference) == ("q2", "9. The answer is 9.")
    code = _write(tmp_path, [json.dumps({"prompt": "p", "target": "f", "tests": ["assert f()"]})])
    assert load_jsonl_items(code, "code")[0].tests == ("assert f()",)
    arc = _write(tmp_path, [json.dumps({"prompt": "Q?\nA. x\nB. y", "target": "B"})])
    assert load_jsonl_items(arc, "reasoning")[0].reference == "The answer is (B)."


@pytest.mark.parametrize(
    ("lines", "task", "message"),
    [
        ([], "math", "no items in"),
        (['{"prompt": "a", "target": "1"}', '{"prompt": "b",'], "math", "line 2: invalid JSON"),
        (['{"prompt": "a"}'], "math", "line 1: missing or non-string 'target'"),
        (['{"prompt": 3, "target": "1"}'], "math", "line 1: missing or non-string 'prompt'"),
        (['{"prompt": "a", "target": "x"}'], "math", "must be a number"),
        (['{"prompt": "a", "target": "b"}'], "reasoning", "one capital letter"),
        (['{"prompt": "Q?\\nA. x\\nB. y", "target": "C"}'], "reasoning", "not among the prompt's"),
        (['{"prompt": "a", "target": "art"}'], "classifier", "must be one of"),
        (['{"prompt": "a", "target": "f"}'], "code", "need 'tests'"),
        (['{"uid": "a", "prompt": "a", "target": "1"}'] * 2, "math", "duplicate uid 'a'"),
    ],
)
def test_load_jsonl_items_errors_name_file_line_and_fix(tmp_path, lines, task, message):
    path = _write(tmp_path, lines) if lines else tmp_path / "items.jsonl"
    if not lines:
        path.write_text("\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        load_jsonl_items(path, task)
    assert str(path) in str(info.value)


def test_load_jsonl_items_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_jsonl_items(tmp_path / "nope.jsonl", "math")
