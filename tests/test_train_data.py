"""Expert-training splits: sizes, determinism, disjointness and user JSON-lines data."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections import Counter

import pytest

from t2bench.data.splits import (
    CLASSIFIER_LABELS,
    MATH_MIX,
    MATH_MIX_SIZES,
    SPLIT_NAMES,
    TASKS,
    Splits,
    TrainItem,
    check_disjoint,
    item_level,
    load_jsonl_items,
    load_splits,
)
from t2bench.errors import ConfigError
from t2bench.tasks.splits import LeakageError, normalize_question
from t2bench.train.base_rates import base_rates

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


def _items_sha256(s: Splits) -> str:
    """sha256 over every split's (name, uid, prompt, target, reference), in order."""
    h = hashlib.sha256()
    for name in SPLIT_NAMES:
        for i in getattr(s, name):
            h.update(json.dumps([name, i.uid, i.prompt, i.target, i.reference]).encode())
    return h.hexdigest()


#: The packaged splits as the code of commit 1245761 produced them, before the opt-in "mix"
#: difficulty existed: evaluation and the held-out tables score these items.
PACKAGED_SHA256 = {
    ("math", 0): "455e8a84712a3b0cadf741534d376748d772de55edcdfc06aecb1a923f2bdeae",
    ("math", 1): "1021eeba7e8dc5b38fb18c0c38fbe3f2ad2e33acea70f6e1fcbcc225ec3df328",
    ("classifier", 0): "02a45c0829917d9a9ba451658882c71e41c35f0ec9e6de96fac66f8bfb6eafdd",
}


def test_default_math_split_is_unchanged_by_the_difficulty_setting(splits):
    assert _items_sha256(splits["math"]) == PACKAGED_SHA256[("math", 0)]
    assert _items_sha256(splits["classifier"]) == PACKAGED_SHA256[("classifier", 0)]
    explicit = load_splits("math", seed=1, difficulty="default")
    assert _items_sha256(explicit) == PACKAGED_SHA256[("math", 1)]
    assert "difficulty" not in splits["math"].description  # the description is unchanged too


@pytest.fixture(scope="module")
def mix() -> Splits:
    return load_splits("math", difficulty="mix")


def test_mix_has_exact_level_shares_and_uids_that_name_the_level(mix):
    per_ten = dict(MATH_MIX)
    assert sum(per_ten.values()) == 10
    for name in SPLIT_NAMES:
        size = MATH_MIX_SIZES[name]
        items = getattr(mix, name)
        assert len(items) == size
        expected = {level: size // 10 * k for level, k in per_ten.items()}
        assert Counter(item_level(i) for i in items) == expected
        assert mix.description["splits"][name]["per_level"] == expected
        # every prefix of 10k items has the shares too (the validation subset a run selects on)
        assert Counter(item_level(i) for i in items[:20]) == {k: 2 * v for k, v in per_ten.items()}
        pattern = rf"arith-mix-{name}-\d{{5}}-(one-step|two-step|standard)"
        assert all(re.fullmatch(pattern, i.uid) for i in items)
        assert len({i.uid for i in items}) == size
    check_disjoint(mix)
    json.dumps(mix.description)


def test_mix_levels_hold_what_their_names_say(mix):
    items = mix.train + mix.valid + mix.test
    for item in items:
        steps = re.findall(r"\d+ [-+x/] \$?\d+", item.reference)
        numbers = [int(n) for n in re.findall(r"\d+", item.prompt.split("\n\n")[0])]
        level = item_level(item)
        if level in ("one-step", "two-step"):
            assert len(steps) == (1 if level == "one-step" else 2), item
            assert max(numbers) <= 20 and " x " not in item.reference, item
        assert item.reference.endswith(f"The answer is {item.target}.")
        assert 0 <= int(item.target) <= 1200
    standard = [i for i in items if item_level(i) == "standard"]
    assert max(int(i.target) for i in standard) > 100  # the templates of the packaged split


def test_mix_never_repeats_a_packaged_item_nor_a_gsm8k_test_question(splits, mix):
    from t2bench.tasks.gsm8k import load_gsm8k

    def questions(s: Splits) -> set[str]:
        return {
            normalize_question(i.prompt.split("\n\n")[0])
            for n in SPLIT_NAMES
            for i in getattr(s, n)
        }

    mixed = questions(mix)
    assert len(mixed) == sum(MATH_MIX_SIZES.values()) == 3400  # test 1200: n >= 1000 held out
    # the packaged test split, which held-out tables score a mix-trained expert on, included
    assert not mixed & questions(splits["math"])
    assert not mixed & {normalize_question(q) for q in load_gsm8k()["test"]["question"]}


def test_mix_is_deterministic_and_opt_in(mix):
    assert load_splits("math", difficulty="mix").train == mix.train
    assert [i.prompt for i in load_splits("math", seed=1, difficulty="mix").valid] != [
        i.prompt for i in mix.valid
    ]
    with pytest.raises(ConfigError, match="exists only for task=math"):
        load_splits("reasoning", difficulty="mix")
    with pytest.raises(ConfigError, match="unknown difficulty 'hard': use one of default, mix"):
        load_splits("math", difficulty="hard")


def test_base_rates_count_per_level_and_never_read_the_test_split(llama_dir, tmp_path):
    from t2bench.train.base_rates import main

    with pytest.raises(ConfigError, match="the test split is for the final evaluation"):
        base_rates(str(llama_dir), split="test")
    with pytest.raises(ConfigError, match="n must be between 1 and 200"):
        base_rates(str(llama_dir), n=201)
    rec = base_rates(str(llama_dir), n=10, batch=5, max_new_tokens=2)
    assert {k: v["n"] for k, v in rec["levels"].items()} == dict(MATH_MIX)
    assert sum(v["correct"] for v in rec["levels"].values()) == rec["overall"]["correct"]
    assert list(rec["correct_by_uid"]) == [
        i.uid for i in load_splits("math", difficulty="mix").valid[:10]
    ]
    prov = rec["provenance"]
    assert prov["commit"] and prov["weights_sha256"]["model"] and prov["data_items"]["n"] == 10
    # the CLI writes the record as a new file and never replaces one
    args = ["--model", str(llama_dir), "--n", "10", "--batch", "5"]
    assert main([*args, "--max-new-tokens", "2", "--out", str(tmp_path)]) == 0
    assert main([*args, "--max-new-tokens", "2", "--out", str(tmp_path)]) == 0
    written = sorted(tmp_path.glob("base-rate-math-mix-*.json"))
    assert len(written) == 2
    assert json.loads(written[0].read_text())["levels"].keys() == rec["levels"].keys()


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
