"""Expert-training rewards: extraction edge cases, references score right, opt-in for code."""

from __future__ import annotations

import dataclasses

import pytest

from t2bench.data.splits import SPLIT_NAMES, Splits, TrainItem, load_splits
from t2bench.errors import ConfigError
from t2bench.tasks.code_exec import ENV_FLAG, CodeExecutionNotAllowed
from t2bench.train import rewards
from t2bench.train.rewards import (
    REWARD_TASKS,
    RewardSpec,
    check_task,
    extract_code,
    extract_label,
    extract_letter,
    extract_number,
    is_correct,
    score,
)

LABELS = ("code", "math", "reasoning")


@pytest.fixture(scope="module")
def splits() -> dict[str, Splits]:
    return {task: load_splits(task) for task in ("math", "reasoning", "code", "classifier")}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The answer is 42.", "42"),
        ("3 + 4 = 7, then 7 * 2 = 14. The answer is 14. Check: 14 > 3.", "14"),
        ("answer is 5, no wait, the answer is 6", "6"),
        ("It costs $1,234 in total", "1234"),
        ("The answer is $12.", "12"),
        ("The temperature is -3", "-3"),
        ("pages 3-4", "4"),
        ("The answer is 4.0", "4"),
        ("about 2.50 each", "2.5"),
        ("The answer is: **7**", "7"),
        ("no number here", None),
        ("", None),
    ],
)
def test_extract_number(text, expected):
    assert extract_number(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The answer is (B).", "B"),
        ("Let me think... (A) is wrong. The answer is (C).", "C"),
        ("answer: B", "B"),
        ("I pick (C)", "C"),
        ("B", "B"),
        ("B.", "B"),
        (" B) ", "B"),
        ("I think (E)", None),
        ("The answer is (E).", None),
        ("The answer is Apples", None),
        ("I am not sure", None),
        ("", None),
    ],
)
def test_extract_letter_four_choices(text, expected):
    assert extract_letter(text, 4) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\\boxed{math}", "math"),
        ("It asks for a function. \\boxed{ Code }", "code"),
        ("\\boxed{math} no, \\boxed{reasoning}", "reasoning"),
        ("\\boxed{science} but really this is reasoning", "reasoning"),
        ("This is a math question.", "math"),
        ("Either math or code.", None),
        ("I cannot tell.", None),
    ],
)
def test_extract_label(text, expected):
    assert extract_label(text, LABELS) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Here:\n```python\ndef f():\n    return 1\n```\nand ```\nx\n```",
            "def f():\n    return 1\n",
        ),
        ("```\ny = 2\n```", "y = 2\n"),
        ("def f():\n    return 3\n```\nsome prose", "def f():\n    return 3\n"),
        ("```python\ndef f():\n    return 4", "def f():\n    return 4"),
        ("def f():\n    return 5", "def f():\n    return 5"),
    ],
)
def test_extract_code(text, expected):
    assert extract_code(text) == expected


@pytest.mark.parametrize("task", ["math", "reasoning", "classifier"])
def test_every_reference_scores_correct(splits, task):
    for name in SPLIT_NAMES:
        items = getattr(splits[task], name)
        values, correct = score(task, [i.reference for i in items], items)
        assert all(correct), [i.uid for i, ok in zip(items, correct, strict=True) if not ok][:5]
        assert set(values) == {1.0}


def test_gold_mbpp_code_passes_its_tests(splits, code_ok):
    items = splits["code"].train[:20]
    values, correct = score("code", [i.reference for i in items], items, max_workers=8)
    assert all(correct) and values == [1.0] * 20


def test_mbpp_setup_code_runs_after_the_solution(splits, code_ok):
    (item,) = [i for i in splits["code"].test if i.setup]
    assert item.uid == "mbpp-367" and "Node(" in item.setup
    assert is_correct("code", item.reference, item)


def test_wrong_answers_score_wrong(splits, code_ok):
    math = splits["math"].valid[0]
    assert not is_correct("math", f"The answer is {int(math.target) + 1}.", math)
    assert not is_correct("math", "I do not know.", math)
    arc = splits["reasoning"].valid[0]
    other = "B" if arc.target == "A" else "A"
    assert not is_correct("reasoning", f"The answer is ({other}).", arc)
    cls = splits["classifier"].valid[0]
    wrong_label = next(label for label in LABELS if label != cls.target)
    assert not is_correct("classifier", f"\\boxed{{{wrong_label}}}", cls)
    code = splits["code"].train[0]  # remove_Occ
    assert code.target == "remove_Occ"
    bad = "```python\ndef remove_Occ(s, ch):\n    return s\n```"
    assert score("code", [bad, code.reference], [code, code]) == ([-1.0, 1.0], [False, True])


def test_empty_code_is_wrong_without_running(splits, code_ok, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("empty code must not be run")

    monkeypatch.setattr(rewards.code_exec, "run_program", refuse)
    item = splits["code"].train[0]
    assert not is_correct("code", "```python\n\n```", item)
    assert not is_correct("code", "   ", item)


def test_reasoning_counts_the_item_choices():
    item = TrainItem("r", "reasoning", "Q?\nA. x\nB. y\nC. z\nD. w\nE. v\nAnswer.", "E", "")
    assert is_correct("reasoning", "The answer is (E).", item)
    three = dataclasses.replace(item, prompt="Q?\nA. x\nB. y\nC. z\nAnswer.")
    assert not is_correct("reasoning", "The answer is (E).", three)


def test_reward_spec_values_are_applied():
    item = TrainItem("m", "math", "1 + 1?", "2", "The answer is 2.")
    values, correct = score("math", ["The answer is 3.", "2"], [item, item], RewardSpec(wrong=-0.1))
    assert values == [-0.1, 1.0] and correct == [False, True]
    assert score("math", ["2"], [item], RewardSpec(correct=0.5))[0] == [0.5]


def test_score_needs_one_item_per_completion():
    item = TrainItem("m", "math", "1 + 1?", "2", "The answer is 2.")
    with pytest.raises(ValueError, match="2 completions but 1 items"):
        score("math", ["2", "2"], [item])


def test_unknown_task_lists_the_valid_ones():
    item = TrainItem("m", "math", "1 + 1?", "2", "The answer is 2.")
    for call in (
        lambda: check_task("vision"),
        lambda: is_correct("vision", "2", item),
        lambda: score("vision", ["2"], [item]),
    ):
        with pytest.raises(ConfigError, match=", ".join(REWARD_TASKS)):
            call()


def test_code_rewards_need_the_opt_in(code_ok, monkeypatch):
    monkeypatch.delenv(ENV_FLAG, raising=False)
    item = TrainItem("c", "code", "p", "f", "", tests=("assert f() == 1",))
    with pytest.raises(CodeExecutionNotAllowed):
        check_task("code")
    with pytest.raises(CodeExecutionNotAllowed):
        score("code", ["def f():\n    return 1"], [item])
    assert check_task("math") == "math"
    monkeypatch.setenv(ENV_FLAG, "1")
    assert check_task("code") == "code"
    assert rewards.code_runner("code") == code_ok and rewards.code_runner("math") is None


def test_code_rewards_refuse_without_a_working_sandbox(monkeypatch):
    """The default runner is bwrap; where it cannot run, code rewards refuse before training
    starts instead of running the model's programs unisolated."""
    from t2bench.tasks import sandbox

    monkeypatch.setenv(ENV_FLAG, "1")
    monkeypatch.delenv(sandbox.RUNNER_ENV, raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    sandbox.clear_probe_cache()
    try:
        with pytest.raises(sandbox.SandboxUnavailable, match="apt-get install bubblewrap") as err:
            check_task("code")
        assert f"{sandbox.RUNNER_ENV}=unisolated" in str(err.value)
        assert "not on PATH" in str(err.value)
    finally:
        sandbox.clear_probe_cache()
