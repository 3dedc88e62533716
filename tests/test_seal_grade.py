"""Closed-book grading: SQuAD normalisation, token containment, EM, F1, answer cleaning."""

from __future__ import annotations

import pytest

from t2bench.errors import ConfigError, T2BenchError
from t2bench.seal.grade import clean_answer, contains, exact_match, f1, grade, normalize


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The Big, Red Dog!", "big red dog"),
        ("  an   apple a day  ", "apple day"),
        ("Harvard-Yale", "harvardyale"),
        ("theatre then", "theatre then"),  # articles only as whole words
        ("\u201cQuoted\u201d \u2013 it\u2019s", "quoted its"),  # curly quotes, en dash
        ("\uff21\uff22\uff23 \u2460", "abc 1"),  # NFKC: fullwidth letters, circled digit
        ("", ""),
    ],
)
def test_normalize(text, expected):
    assert normalize(text) == expected


@pytest.mark.parametrize(
    ("prediction", "answers", "expected"),
    [
        ("in July 1899 he left", ["july 1899"], True),
        ("1234", ["23"], False),  # token boundary: 23 is not a token of 1234
        ("it was 23 years", ["23"], True),
        ("The Denver Broncos won.", ["Denver Broncos"], True),
        ("Denver", ["Denver Broncos"], False),
        ("nothing here", ["Paris", "paris, France"], False),
        ("paris france", ["Paris", "Paris, France"], True),
        ("the", ["the"], False),  # an answer that normalises to nothing never matches
        ("", ["x"], False),
    ],
)
def test_contains(prediction, answers, expected):
    assert contains(prediction, answers) is expected


def test_exact_match_is_max_over_answers():
    assert exact_match("The Eiffel Tower.", ["tower", "eiffel tower"])
    assert not exact_match("the eiffel tower in paris", ["eiffel tower"])
    assert exact_match("", ["the"])  # both normalise empty


def test_f1_hand_computed():
    # "big red dog" vs "red dog": precision 2/3, recall 1 -> 2 * (2/3) / (5/3) = 0.8
    assert f1("the big red dog", ["red dog"]) == pytest.approx(0.8)
    # "red" vs "red dog": precision 1, recall 1/2 -> 2/3
    assert f1("red", ["red dog"]) == pytest.approx(2 / 3)
    # max over answers
    assert f1("red", ["blue", "red dog", "cat"]) == pytest.approx(2 / 3)
    # repeated tokens count once per occurrence: "dog dog" vs "dog" -> p 1/2, r 1 -> 2/3
    assert f1("dog dog", ["dog"]) == pytest.approx(2 / 3)
    assert f1("cat", ["dog"]) == 0.0
    assert f1("a", ["the"]) == 1.0  # both normalise empty
    assert f1("dog", ["the"]) == 0.0


def test_grade_dict_and_single_string_answer():
    assert grade("1899.", ["July 1899", "1899"]) == {"contains": True, "em": True, "f1": 1.0}
    g = grade("In 1899.", ["1899"])  # "in 1899" vs "1899": p 1/2, r 1
    assert g == {"contains": True, "em": False, "f1": pytest.approx(2 / 3)}
    g = grade("it was the big red dog", "red dog")
    assert g["contains"] is True and g["em"] is False
    assert g["f1"] == pytest.approx(2 * 0.4 / 1.4)  # p 2/4, r 1


def test_no_answers_is_a_config_error():
    for fn in (contains, exact_match, f1, grade):
        with pytest.raises(ConfigError, match="at least one reference answer.*fix the data"):
            fn("x", [])
    assert issubclass(ConfigError, T2BenchError)


@pytest.mark.parametrize(
    ("generation", "expected"),
    [
        ("Paris\nQuestion: next one", "Paris"),
        ("\n\n  Answer: the Thames  \nmore", "the Thames"),
        ("A: 1899", "1899"),
        ("answer:\nQuendar", "Quendar"),
        ("Apple: a fruit", "Apple: a fruit"),  # only the exact prefixes are removed
        ("   \n", ""),
    ],
)
def test_clean_answer(generation, expected):
    assert clean_answer(generation) == expected
