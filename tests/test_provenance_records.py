"""Every writer of a record under results/ names its commit, base weights' sha256, seed, split
and items, machine and wall time; the few-shot and held-out tables use report.stats intervals."""

from __future__ import annotations

import json
import re

import pytest

from t2bench.core.provenance import items_sha256, provenance_gaps, state_sha256

COMMIT = re.compile(r"[0-9a-f]{40}(\+dirty)?")


# --------------------------------------------------------------------------- few-shot bench


def _run(scores: dict[int, float], *, weights: str = "w0", cem: bool = False) -> dict:
    """What ``bench.dispatch.run_lm_eval`` returns for one lm-eval run, without lm-eval."""
    t2 = {"model_id": "tiny", "weights_sha256": {"model": weights}}
    if cem:
        t2["dispatch"] = {
            "tasks": {
                "arc_challenge": {
                    "alpha": [0.2, 0.3, 0.5],
                    "shot_doc_ids": [100, 101, 102],
                    "shot_split": "validation",
                    "fitness": {"accuracy": 0.0},
                    "cost": {
                        "candidates_scored": 4,
                        "weight_compositions": 4,
                        "forward_passes": 12,
                        "seconds": 1.0,
                    },
                }
            }
        }
    return {
        "per_doc": scores,
        "metric": "acc",
        "wall_seconds": 1.5,
        "t2": t2,
        "split": {"test_split": "test", "fewshot_split": "validation", "num_fewshot": 0},
        "seeds": {"random_seed": 0, "numpy_seed": 1234, "torch_seed": 1234, "fewshot_seed": 1234},
    }


def test_fewshot_rows_at_zero_of_eight_have_intervals_with_width():
    from t2bench.bench.dispatch import fewshot_rows

    zeros = dict.fromkeys(range(8), 0.0)
    runs = {"base": _run(zeros), "math-svf-pg": _run(zeros), "cem": _run(zeros, cem=True)}
    rows, power = fewshot_rows("arc_challenge", runs)
    base, expert, cem = rows
    # Wald gives [0, 0] at 0/8; Wilson's upper bound stays above zero
    assert base["ci95"][0] == 0.0 and base["ci95"][1] > 0.0 and base["ci_method"] == "wilson"
    # no document changed, yet a difference of a few documents is not ruled out
    d = expert["vs_base"]
    assert d["diff"] == 0.0 and d["ci_low"] < 0.0 < d["ci_high"]
    assert d["p"] == 1.0 and d["p_method"] == "mcnemar-exact"
    assert power["label"] == "arc_challenge" and power["n"] == 8 and power["mdd"] > 0
    assert cem["cem_shots"] == {"split": "validation", "doc_ids": [100, 101, 102]}
    assert base["doc_ids"] == list(range(8)) and base["docs_sha256"] == items_sha256(range(8))
    assert base["weights_sha256"] == {"model": "w0"} and base["split"]["test_split"] == "test"


def test_fewshot_rows_refuse_variants_scored_on_other_documents():
    from t2bench.bench.dispatch import fewshot_rows

    runs = {"base": _run({0: 1.0, 1: 0.0}), "math-svf-pg": _run({0: 1.0, 2: 0.0})}
    with pytest.raises(RuntimeError, match="same documents"):
        fewshot_rows("arc_challenge", runs)


def test_fewshot_payload_carries_provenance_and_power_in_markdown():
    from t2bench.bench.dispatch import fewshot_markdown, fewshot_rows, record_provenance

    scores = {0: 1.0, 1: 0.0, 2: 0.0, 3: 1.0}
    rows, power = fewshot_rows(
        "arc_challenge", {"base": _run(scores), "cem": _run(scores, cem=True)}
    )
    payload = {"kind": "fewshot-vs-experts", "rows": rows, "power": [power]}
    payload["provenance"] = record_provenance(rows, "0" * 40, 12.5)
    prov = payload["provenance"]
    assert prov["commit"] == "0" * 40 and prov["wall_seconds"] == 12.5 and prov["machine"]
    assert prov["weights_sha256"] == {"model": "w0"} and prov["model_source"] == "tiny"
    assert prov["seed"]["fewshot_seed"] == 1234
    assert prov["data_split"]["arc_challenge"]["doc_ids"] == [0, 1, 2, 3]
    assert prov["items_sha256"] == {"arc_challenge": items_sha256([0, 1, 2, 3])}
    assert provenance_gaps(payload) == []
    md = fewshot_markdown(payload)
    assert "p (McNemar exact)" in md and "**Power.**" in md and "arc_challenge: n = 4" in md
    assert "| 3 (validation) |" in md  # CEM's shots: how many and from which split


def test_record_provenance_names_each_run_when_weights_differ():
    from t2bench.bench.dispatch import fewshot_rows, record_provenance

    scores = {0: 1.0, 1: 0.0}
    rows, _ = fewshot_rows(
        "arc_challenge", {"base": _run(scores), "math-svf-pg": _run(scores, weights="w1")}
    )
    prov = record_provenance(rows, "0" * 40, 1.0)
    assert prov["weights_sha256"] == {
        "arc_challenge/base": {"model": "w0"},
        "arc_challenge/math-svf-pg": {"model": "w1"},
    }


# --------------------------------------------------------------------------- held-out compare


def test_heldout_compare_records_weights_items_seed_and_power(llama_dir, tmp_path, monkeypatch):
    from t2bench.models import load_model
    from t2bench.train import heldout

    runs = tmp_path / "runs"
    (runs / "reasoning-svf-pg").mkdir(parents=True)
    (runs / "reasoning-svf-pg" / "summary.json").write_text(
        json.dumps({"run": "reasoning-svf-pg", "artifact": "x/reasoning-svf-pg.safetensors"})
    )
    answers = {"base": [False] * 8, "reasoning-svf-pg": [False] * 8}

    def fake_score(variant, model_name, items, task, new_tokens, batch, applied=None, **kw):
        if applied is not None:
            applied.update({"applied": True, "applied_evidence": f"fake {variant.name}"})
        return answers[variant.name]

    monkeypatch.setattr(heldout, "score_variant", fake_score)
    payload = heldout.compare(
        "reasoning", n=8, runs=runs, out=tmp_path / "out", model=str(llama_dir), seed=2
    )
    prov = payload["provenance"]
    assert COMMIT.fullmatch(prov["commit"]) and prov["machine"] and prov["wall_seconds"] >= 0
    assert prov["weights_sha256"]["model"] == state_sha256(load_model(str(llama_dir)).model)
    assert prov["seed"] == 2 and prov["data_split"]["split"] == "test"
    assert prov["items_sha256"] == items_sha256(payload["item_uids"])
    assert payload["power"][0]["n"] == 8 and payload["power"][0]["mdd"] > 0
    base, svf = payload["table"]
    assert base["accuracy_ci95"][1] > 0.0  # Wilson at 0/8
    assert svf["ci_low"] < 0.0 < svf["ci_high"] and svf["p"] == svf["mcnemar_p"] == 1.0
    assert svf["applied"] is True
    written = json.loads(open(payload["path"]).read())
    assert provenance_gaps(written) == []
    md = open(payload["path"].replace(".json", ".md")).read()
    assert "**Power.**" in md and prov["weights_sha256"]["model"] in md


# --------------------------------------------------------------------------- trainer summary


@pytest.fixture
def data(tmp_path):
    """12 tiny 'reasoning' items the word-level tokenizer can read (as in test_train)."""
    path = tmp_path / "data.jsonl"
    with open(path, "w") as fh:
        for i in range(12):
            item = {"prompt": f"w{i} w{i + 1} w{i + 2}\nA. w1\nB. w2", "target": "AB"[i % 2]}
            fh.write(json.dumps(item | {"reference": "w3 w4"}) + "\n")
    return path


@pytest.mark.parametrize("method", ["lora", "ia3"])
def test_peft_training_summary_has_full_provenance(llama_dir, data, tmp_path, method):
    from test_train import _cfg

    from t2bench.data.splits import load_jsonl_items
    from t2bench.models import load_model
    from t2bench.train.trainer import train

    cfg = _cfg(llama_dir, data, tmp_path / method, method=method, objective="ntp", steps=2)
    result = train(cfg)
    summary = json.loads((tmp_path / method / "summary.json").read_text())
    prov = summary["provenance"]
    assert COMMIT.fullmatch(prov["commit"]) and prov["seed"] == 3
    assert prov["weights_sha256"] == {"model": state_sha256(load_model(str(llama_dir)).model)}
    uids = [it.uid for it in load_jsonl_items(data, "reasoning")]
    assert prov["data_items"]["train"] == {"n": 12, "items_sha256": items_sha256(uids)}
    assert prov["data_items"]["selection"] == {"n": 4, "items_sha256": items_sha256(uids[:4])}
    assert prov["machine"]["torch"] and prov["wall_seconds"] > 0
    assert provenance_gaps(summary) == []
    # the adapter folder's own provenance file says the same
    side = json.loads((result.artifact / "t2bench_provenance.json").read_text())
    assert side["weights_sha256"] == prov["weights_sha256"]
    # so do the checkpoints' JSON files (an unfinished run is committed with its newest one)
    newest = sorted((tmp_path / method / "checkpoints").glob("step-*"))[-1]
    for name in ("state.json", "optimizer.json"):
        record = json.loads((newest / name).read_text())
        assert provenance_gaps(record) == [], name
        assert record["provenance"]["weights_sha256"] == prov["weights_sha256"]
        assert record["provenance"]["commit"] == prov["commit"]


# --------------------------------------------------------------------------- confusion run


def test_confusion_run_records_weights_items_and_commit(monkeypatch, llama, tmp_path):
    pytest.importorskip("matplotlib")
    from t2bench.core.provenance import weights_sha256
    from t2bench.dispatch import confusion_run as cr
    from t2bench.dispatch import routing_items as ri
    from t2bench.dispatch import standalone
    from t2bench.models import LoadedModel

    items = [
        ri.PromptItem("gsm8k", 4, "calculate 2 + 2", "math"),
        ri.PromptItem("arc_challenge", 7, "Which animal?", "reasoning"),
    ]
    monkeypatch.setattr(
        standalone, "load_model", lambda name=None, device=None: LoadedModel(llama, None, "t", "")
    )
    monkeypatch.setattr(cr, "task_prompts", lambda tasks, n, seed: items)
    folder = cr.run(["none"], n_per_task=1, out_dir=tmp_path, pretrained="t", seed=5)
    for name in ("run.json", "none.json"):
        prov = json.loads((folder / name).read_text())["provenance"]
        assert COMMIT.fullmatch(prov["commit"]) and prov["seed"] == 5 and prov["machine"]
        assert prov["weights_sha256"] == weights_sha256(llama)
        assert prov["item_ids"] == ["gsm8k:4", "arc_challenge:7"]
        assert prov["items_sha256"] == items_sha256(["gsm8k:4", "arc_challenge:7"])
        assert prov["wall_seconds"] >= 0
        assert provenance_gaps(json.loads((folder / name).read_text())) == []
