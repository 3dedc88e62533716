"""The bf16-vs-fp32 benches on tiny inputs: evaluation on the same items, and one matmul."""

import json

import torch

from t2bench.bench import eval_dtype
from t2bench.train import heldout


def test_both_dtypes_score_the_same_items_and_the_record_has_provenance(
    llama_dir, tmp_path, monkeypatch
):
    seen = []
    real = heldout.greedy_correct

    def spy(model, tok, items, task, **kw):
        seen.append((next(model.parameters()).dtype, tuple(it.uid for it in items)))
        return real(model, tok, items, task, **kw)

    monkeypatch.setattr(heldout, "greedy_correct", spy)
    rc = eval_dtype.main(
        ["--model", str(llama_dir), "--n", "4", "--batch", "2", "--out", str(tmp_path)]
    )
    assert rc == 0
    assert [d for d, _ in seen] == [torch.float32, torch.bfloat16]
    assert seen[0][1] == seen[1][1] and len(seen[0][1]) == 4
    (path,) = tmp_path.glob("eval-dtype-*.json")
    rec = json.loads(path.read_text())
    assert rec["n"] == 4 and set(rec["items_per_s"]) == {"float32", "bfloat16"}
    assert rec["ratio_bf16_over_fp32"] > 0
    d = rec["difference_bf16_minus_fp32"]
    assert d["ci_low"] <= d["diff"] <= d["ci_high"]
    prov = rec["provenance"]
    assert prov["data_split"]["split"] == "test" and len(prov["item_uids"]) == 4
    assert prov["weights_sha256"]["model"] and prov["commit"]


def test_matmul_dtype_bench_reports_both_dtypes_and_the_cpu_flags(tmp_path):
    from t2bench.bench import matmul_dtype

    assert matmul_dtype.main(["--tokens", "8", "--rounds", "2", "--out", str(tmp_path)]) == 0
    (path,) = tmp_path.glob("matmul-dtype-*.json")
    rec = json.loads(path.read_text())
    assert set(rec["gflops_per_s"]) == {"torch.float32", "torch.bfloat16"}
    assert all(len(v) == 2 for v in rec["seconds"].values()) and rec["bf16_over_fp32"] > 0
    assert isinstance(rec["cpu_bf16_flags"], list)
    assert rec["bf16_pays_resolves_auto_to"] in ("float32", "bfloat16")
    assert rec["provenance"]["machine"]


def test_seal_dtype_bench_runs_each_row_in_both_dtypes_on_train_passages(
    char_llama_dir, tmp_path, monkeypatch
):
    from t2bench.bench import seal_dtype
    from t2bench.seal import experiment

    seen = []
    real = experiment.evaluate_condition

    def spy(model, tok, passages, edits, inner, **kw):
        seen.append((next(model.parameters()).dtype, inner.method, tuple(p.uid for p in passages)))
        return real(model, tok, passages, edits, inner, **kw)

    monkeypatch.setattr(experiment, "evaluate_condition", spy)
    argv = ["--model", str(char_llama_dir), "--n", "2", "--conditions", "passage"]
    rc = seal_dtype.main([*argv, "--methods", "lora,svf", "--steps", "2", "--out", str(tmp_path)])
    assert rc == 0
    # each row in both dtypes, the second row starting with the other dtype
    assert [(d, m) for d, m, _ in seen] == [
        (torch.float32, "lora"),
        (torch.bfloat16, "lora"),
        (torch.bfloat16, "svf"),
        (torch.float32, "svf"),
    ]
    assert len({uids for *_, uids in seen}) == 1 and len(seen[0][2]) == 2
    (path,) = tmp_path.glob("seal-dtype-*.json")
    rec = json.loads(path.read_text())
    assert [(r["condition"], r["method"]) for r in rec["rows"]] == [
        ("passage", "lora"),
        ("passage", "svf"),
    ]
    for r in rec["rows"]:
        assert r["updated"] == {"float32": 2, "bfloat16": 2}  # every passage was updated
        assert len(r["per_question"]["float32"]) == len(r["per_question"]["bfloat16"]) > 0
    d = rec["pooled_difference_bf16_minus_fp32"]
    assert d["ci_low"] <= d["diff"] <= d["ci_high"] and rec["ratio_fp32_over_bf16"] > 0
    prov = rec["provenance"]
    assert "train passages" in prov["data_split"] and len(prov["item_uids"]) == 2
    assert prov["weights_sha256"]["model"] and prov["commit"]
