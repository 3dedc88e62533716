"""bench.data_parallel without running lm-eval: the command it launches, and its reading of
lm-eval's samples (as lm-eval writes them) into the 1-vs-2-process comparison and table."""

from __future__ import annotations

import argparse
import copy

from t2bench.bench import data_parallel as dp


def _sample(doc_id: int, lls: list[float], acc: float, expert: str = "reasoning-svf-pg") -> dict:
    """One line of lm-eval's samples_<task>.jsonl: arguments and responses written as text."""
    return {
        "doc_id": doc_id,
        "arguments": {
            f"gen_args_{i}": {
                "arg_0": "Question: q",
                "arg_1": f" c{i}",
                "arg_2": {"t2_expert": expert},
            }
            for i in range(len(lls))
        },
        "filtered_resps": [[str(ll), "False"] for ll in lls],
        "acc": acc,
        "acc_norm": acc,
    }


def _run(samples: list[dict], acc: float, per_rank: list[int]) -> dict:
    return {
        "label": f"{len(per_rank)} processes",
        "processes": len(per_rank),
        "command": "python -m lm_eval run ...",
        "wall_seconds": 10.0,
        "lm_eval_seconds": 9.0,
        "model_seconds_per_rank": [4.0] * len(per_rank),
        "children_cpu_seconds": 12.0,
        "loadavg_before": [2.0, 2.0, 2.0],
        "loadavg_after": [2.5, 2.0, 2.0],
        "scores": {"arc_easy": {"acc,none": acc, "acc_norm,none": acc}},
        "requests_per_rank": per_rank,
        "instances_per_rank": per_rank,
        "_samples": samples,
    }


def test_the_two_process_command_is_accelerate_multi_gpu_with_one_thread_each(tmp_path):
    a = argparse.Namespace(task="arc_easy", limit=40, batch_size=8, seed=0)
    args = dp.lm_eval_args(a, tmp_path / "e.safetensors", "e", tmp_path / "out")
    assert args[:3] == ["run", "--model", "t2"]
    assert args[args.index("--model_args") + 1].startswith(f"experts={tmp_path / 'e.safetensors'},")
    assert "dispatch=fixed:e" in args[args.index("--model_args") + 1]
    assert args[args.index("--limit") + 1] == "40" and "--log_samples" in args
    env = dp._env(1)
    assert env["OMP_NUM_THREADS"] == "1" and "WORLD_SIZE" not in env
    assert env["PYTHONPATH"].split(":")[0] == str(dp.REPO)


def test_compare_finds_equal_runs_identical_and_names_the_documents_that_differ():
    one = _run([_sample(0, [-1.0, -2.0], 1.0), _sample(1, [-3.0, -1.5], 0.0)], 0.5, [4])
    two = _run([_sample(1, [-3.0, -1.5000001], 0.0), _sample(0, [-1.0, -2.0], 1.0)], 0.5, [2, 2])
    same = dp.compare(one, two)
    assert same["identical_scores"] and same["same_doc_ids"] and same["docs"] == 2
    assert 0 < same["max_abs_loglikelihood_diff"] < 1e-6

    other = copy.deepcopy(two)
    other["_samples"][0] = _sample(1, [-1.0, -3.0], 1.0, expert="base")
    other["scores"]["arc_easy"]["acc,none"] = 1.0
    diff = dp.compare(one, other)
    assert not diff["identical_scores"]
    assert diff["docs_with_other_metrics"] == [1] and diff["docs_with_other_expert"] == [1]

    missing = dp.compare(one, _run(one["_samples"][:1], 0.5, [1, 1]))
    assert not missing["same_doc_ids"] and not missing["identical_scores"]


def test_markdown_shows_requests_per_rank_and_the_speedup():
    one = _run([_sample(0, [-1.0], 1.0)], 1.0, [4])
    two = _run([_sample(0, [-1.0], 1.0)], 1.0, [2, 2])
    two["against_1_process_1_thread"] = dp.compare(one, two)
    for r in (one, two):
        r.pop("_samples")
    record = {
        "task": "arc_easy",
        "limit": 1,
        "batch_size": 8,
        "expert": {"name": "e"},
        "runs": [one, two],
        "speedup_2_processes_over_1": {"wall": 1.5, "lm_eval": 1.6, "model": 1.9},
        "provenance": {"machine": {"cpu_count": 2}},
    }
    text = dp.markdown(record)
    assert "| 2 / 2 |" in text and "identical" in text
    assert "wall 1.5×" in text and "slowest process 1.9×" in text
