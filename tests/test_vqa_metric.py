"""The VQA accuracy metric (t2bench.tasks.vqa_metric) and the TextVQA lm-eval task.

Expected values are derived by hand in the comments; nothing here touches the network.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from t2bench.errors import ConfigError
from t2bench.tasks import textvqa
from t2bench.tasks.vqa_metric import (
    CONTRACTIONS,
    NUMBER_WORDS,
    clean_prediction,
    normalize_answer,
    vqa_accuracy,
)

REPO = Path(__file__).resolve().parents[1]
TASKS_DIR = REPO / "tasks"


def _k_of_10(k: int, hit: str = "sign", miss: str = "other") -> list[str]:
    return [hit] * k + [miss] * (10 - k)


# --------------------------------------------------------------------------- vqa_accuracy


def test_all_ten_agree():
    # every leave-one-out subset holds 9 matches -> min(1, 9/3) = 1 each -> mean 1.0
    assert vqa_accuracy("sign", ["sign"] * 10) == 1.0


@pytest.mark.parametrize(
    ("k", "expected"),
    [
        # 0 matches: every subset has 0 -> 0.0
        (0, 0.0),
        # 1 match: the 9 subsets that keep it have 1 -> 1/3; the one leaving it out has 0.
        #   mean = 9 * (1/3) / 10 = 0.3
        (1, 0.3),
        # 2 matches: 8 subsets keep both -> 2/3; 2 subsets leave one out -> 1/3.
        #   mean = (8 * 2/3 + 2 * 1/3) / 10 = (16/3 + 2/3) / 10 = 6/10 = 0.6
        (2, 0.6),
        # 3 matches: 7 subsets keep all 3 -> 1; 3 leave one out -> 2/3.
        #   mean = (7 + 3 * 2/3) / 10 = 9/10 = 0.9
        (3, 0.9),
        # 4 matches: every subset keeps >= 3 -> 1 each -> 1.0
        (4, 1.0),
        (7, 1.0),
    ],
)
def test_k_of_ten_matches(k, expected):
    assert vqa_accuracy("sign", _k_of_10(k)) == pytest.approx(expected, abs=1e-12)


def test_leave_one_out_with_fewer_answers():
    # 4 answers, 1 match: 3 subsets keep it -> 1/3 each; 1 leaves it out -> 0.
    #   mean = 3 * (1/3) / 4 = 0.25  (a no-leave-one-out formula would give min(1, 1/3) = 0.333)
    assert vqa_accuracy("cat", ["cat", "dog", "dog", "bird"]) == pytest.approx(0.25)


def test_prediction_is_normalised_against_differing_answers():
    # references differ -> all normalised: "Two" -> "2", "the cat" -> "cat"
    assert vqa_accuracy("2", ["Two"] * 3 + ["three"] * 7) == pytest.approx(0.9)
    assert vqa_accuracy("The Cat.", ["cat"] * 2 + ["dog"] * 8) == pytest.approx(0.6)
    # "dont" -> "don't"; 1 of 2 references: leaving out "don't" -> 0, leaving out "no" -> 1/3
    #   mean = (0 + 1/3) / 2 = 1/6
    assert vqa_accuracy("dont", ["don't", "no"]) == pytest.approx(1 / 6)


def test_unanimous_answers_are_not_normalised():
    # official rule: 10 identical references are compared verbatim; the prediction is
    # normalised ("Coca-Cola" -> "coca cola") and cannot equal "Coca-Cola" -> 0.0
    assert vqa_accuracy("Coca-Cola", ["Coca-Cola"] * 10) == 0.0
    # once one reference differs, all are normalised: 9 matches of "coca cola" -> 1.0
    assert vqa_accuracy("Coca-Cola", ["Coca-Cola"] * 9 + ["pepsi"]) == 1.0
    # the TextVQA mode normalises them always -> 1.0
    assert vqa_accuracy("Coca-Cola", ["Coca-Cola"] * 10, always_normalize_answers=True) == 1.0


def test_whitespace_is_always_cleaned():
    # unanimous references are still whitespace-cleaned: "  sign\n" -> "sign"
    assert vqa_accuracy(" sign\t", ["  sign\n"] * 10) == 1.0


def test_empty_answers_raise():
    with pytest.raises(ConfigError, match="answers is empty"):
        vqa_accuracy("sign", [])
    with pytest.raises(ConfigError, match="list of strings"):
        vqa_accuracy("sign", "sign")


# --------------------------------------------------------------------------- normalize_answer


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Two", "2"),  # number word -> digit, lower-cased
        ("none", "0"),  # official manualMap maps "none" to "0"
        ("ten", "10"),
        ("the cat", "cat"),  # article dropped
        ("An Apple", "apple"),
        ("dont", "don't"),  # contractions table
        ("isnt", "isn't"),
        ("youre", "you're"),
        # "," and "!" : "," is followed by a space -> deleted; "!" has no space next to it
        #   -> replaced by a space, which the final split/join removes
        ("hello, world!", "hello world"),
        ("coca-cola", "coca cola"),  # "-" not next to a space -> space
        ("red - blue", "red blue"),  # "-" next to a space -> deleted
        ("1,000", "1000"),  # digit,digit pattern -> the comma is deleted, number kept whole
        ("3.5", "3.5"),  # period followed by a digit is kept
        ("yes.", "yes"),  # trailing period deleted
        ("5.", "5"),  # the official regex deletes a period unless a digit follows it
        ("  a\tdog\n", "dog"),  # tab/newline -> space, stripped
        ("(left)", "left"),
    ],
)
def test_normalize_answer(raw, expected):
    assert normalize_answer(raw) == expected


def test_tables():
    assert NUMBER_WORDS == {
        w: str(i)
        for i, w in enumerate("zero one two three four five six seven eight nine ten".split())
    } | {"none": "0"}
    assert len(CONTRACTIONS) == 120  # keys in the official table
    assert CONTRACTIONS["wont"] == "won't" and CONTRACTIONS["yall'd've"] == "y'all'd've"
    assert all(v.count("'") >= 1 for k, v in CONTRACTIONS.items() if k != "somebody'd")


def test_period_count_limit_as_official():
    # the official call passes re.UNICODE (32) as the `count` of re.sub: at most 32 periods go
    # "x.x.x. ... x." (40 periods, none followed by a digit): the first 32 are deleted
    assert normalize_answer("x." * 40) == "x" * 32 + "x." * 8


# --------------------------------------------------------------------------- clean_prediction


@pytest.mark.parametrize(
    ("generation", "expected"),
    [
        ("stop", "stop"),
        ("  Stop.  ", "Stop"),  # whitespace and one trailing period
        ("Answer: pizza", "pizza"),
        ("answer:pizza", "pizza"),  # case-insensitive, no space needed
        ("A: 42", "42"),
        ('"hello"', "hello"),
        ('Answer: "Stop".', "Stop"),
        ("\u201cexit\u201d", "exit"),  # typographic quotes
        ("3.5.", "3.5"),
        ("\n\nbakery\nsecond line", "bakery"),  # first non-empty line
        ("Answer:\ncafe", "cafe"),  # a line that is only the prefix counts as empty
        ("", ""),
        ("  \n ", ""),
        ("a dog", "a dog"),  # no colon: not a prefix
    ],
)
def test_clean_prediction(generation, expected):
    assert clean_prediction(generation) == expected


# --------------------------------------------------------------------------- textvqa task


def _fake_doc() -> dict:
    return {
        "question": "what brand is the drink?",
        # 3 x "coca cola" spelt three ways (all normalise to "coca cola"), 7 others
        "answers": ["Coca-Cola", "coca cola", "coca-cola"] + ["pepsi"] * 5 + ["cola", "coke"],
        "image": object(),
    }


def test_textvqa_process_results():
    # generation "Answer: Coca-Cola.\n..." -> cleaned "Coca-Cola" -> normalised "coca cola";
    # 3 of 10 references match -> (7 * 1 + 3 * 2/3) / 10 = 0.9
    out = textvqa.process_results(_fake_doc(), ["Answer: Coca-Cola.\nextra"])
    assert out == {"vqa_accuracy": pytest.approx(0.9)}
    # "pepsi": 5 matches -> 1.0; "coke": 1 match -> 0.3
    assert textvqa.process_results(_fake_doc(), ["pepsi"])["vqa_accuracy"] == 1.0
    assert textvqa.process_results(_fake_doc(), ["coke"])["vqa_accuracy"] == pytest.approx(0.3)


def test_textvqa_prompt_and_image():
    doc = _fake_doc()
    assert textvqa.doc_to_text(doc) == (
        "<image>What brand is the drink?\nAnswer the question using a single word or phrase."
    )
    Image = pytest.importorskip("PIL.Image")
    img = Image.new("L", (4, 3))
    out = textvqa.doc_to_image({"image": img})
    assert len(out) == 1 and out[0].mode == "RGB" and out[0].size == (4, 3)
    rgb = Image.new("RGB", (2, 2))
    assert textvqa.doc_to_image({"image": rgb})[0] is rgb


def test_textvqa_utils_shims():
    spec = importlib.util.spec_from_file_location("t2bench_test_vqa_utils", TASKS_DIR / "utils.py")
    utils = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(utils)
    doc = _fake_doc()
    assert utils.textvqa_doc_to_text(doc) == textvqa.doc_to_text(doc)
    assert utils.textvqa_doc_to_image(doc) == [doc["image"]]
    assert utils.textvqa_process_results(doc, ["coke"]) == textvqa.process_results(doc, ["coke"])


def test_textvqa_yaml_config():
    """The YAML is indexed and its config read (functions resolved), without building the task
    (building would download the data from the hub)."""
    pytest.importorskip("lm_eval")
    from lm_eval.api.task import TaskConfig
    from lm_eval.tasks import TaskManager
    from lm_eval.tasks._yaml_loader import load_yaml
    from lm_eval.utils import apply_template

    tm = TaskManager(include_path=str(TASKS_DIR), include_defaults=False)
    assert "textvqa" in tm.all_tasks
    cfg = load_yaml(tm.task_index["textvqa"].yaml_path, resolve_func=True)
    tc = TaskConfig(**cfg)
    assert tc.task == "textvqa" and tc.dataset_path == "lmms-lab/textvqa"
    assert tc.test_split == "validation" and tc.output_type == "generate_until"
    assert tc.metric_list == [
        {"metric": "vqa_accuracy", "aggregation": "mean", "higher_is_better": True}
    ]
    assert tc.generation_kwargs == {"until": ["\n"], "max_gen_toks": 16, "do_sample": False}
    doc = _fake_doc()
    assert tc.doc_to_text(doc) == textvqa.doc_to_text(doc)
    assert tc.doc_to_image(doc) == [doc["image"]]
    assert tc.process_results(doc, ["coke"])["vqa_accuracy"] == pytest.approx(0.3)
    assert apply_template(tc.doc_to_target, doc) == "Coca-Cola"
    assert tc.metadata["t2bench_offline"] is False
