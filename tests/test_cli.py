"""The t2bench command: params, expert info/permute/mix, and its error handling."""

from __future__ import annotations

import json

import pytest
import torch

from t2bench.cli import main
from t2bench.svf import TargetSpec, decompose, identity_expert, load_expert, save_expert


def test_params_smollm2_json(capsys):
    assert main(["params", "smollm2-135m-instruct", "--json"]) == 0
    counts = json.loads(capsys.readouterr().out)["counts"]
    assert counts["svf[mlp]"] == 51_840 and counts["svf[attn]"] == 23_040
    assert counts["svf[all]"] == 97_920 and counts["lora[r16,q,v]"] == 921_600


def test_params_llama3_by_hub_id_offline(capsys):
    assert main(["params", "meta-llama/Meta-Llama-3-8B-Instruct", "--modules", "attn"]) == 0
    out = capsys.readouterr().out
    assert "393,216" in out and "163,840" in out and "6,815,744" in out


def test_params_local_config_folder(llama, tmp_path, capsys):
    llama.config.save_pretrained(tmp_path)
    assert main(["params", str(tmp_path), "--json", "--lora-rank", "4"]) == 0
    counts = json.loads(capsys.readouterr().out)["counts"]
    assert counts["svf[mlp]"] == 4 * 3 * 32 and counts["lora[r4,q,v]"] == 4 * 4 * (64 + 48)


def test_params_unknown_module_set_is_a_clean_error(capsys):
    assert main(["params", "smollm2-135m-instruct", "--modules", "ffn"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown module set 'ffn'") and "Traceback" not in err


def test_params_unknown_model_offline(capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["params", "no-such-org/no-such-model"]) == 2
    assert "packaged configs" in capsys.readouterr().err


def test_expert_info_permute_mix(llama, tmp_path, capsys):
    d = decompose(llama, TargetSpec("mlp"), cache_dir=tmp_path / "svd", progress=False)
    e = identity_expert(d, name="a")
    e.params = {k: v * 1.5 for k, v in e.params.items()}
    a = save_expert(e, tmp_path / "a")
    b = save_expert(identity_expert(d, name="b"), tmp_path / "b")
    assert main(["expert", "info", str(a)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["name"] == "a" and info["parameters"] == 12 * 32
    assert (
        main(["expert", "mix", str(a), str(b), "--alphas", "0.5,0.5", "--out", str(tmp_path / "m")])
        == 0
    )
    m = load_expert(tmp_path / "m.safetensors")
    assert all(torch.allclose(v, torch.full_like(v, 1.25)) for v in m.params.values())
    assert main(["expert", "permute", str(a), "--seed", "3", "--out", str(tmp_path / "p")]) == 0
    assert load_expert(tmp_path / "p.safetensors").meta.provenance["permuted_seed"] == 3
    capsys.readouterr()
    assert main(["expert", "permute", str(a), "--seed", "3", "--out", str(tmp_path / "p")]) == 2
    assert "exists" in capsys.readouterr().err


def test_expert_info_on_corrupt_file(tmp_path, capsys):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 5)
    assert main(["expert", "info", str(bad)]) == 2
    assert "truncated or damaged" in capsys.readouterr().err


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for cmd in ("assets", "params", "decompose", "expert", "demo"):
        assert cmd in out


def test_eval_defaults_to_t2_and_the_offline_tasks():
    from t2bench.evaluate import lm_eval_argv
    from t2bench.tasks import tasks_dir

    argv = lm_eval_argv(["--tasks", "gsm8k", "--limit", "5"])
    assert argv[:2] == ["--model", "t2"] and argv[-2:] == ["--include_path", str(tasks_dir())]
    assert tasks_dir().is_dir()
    kept = lm_eval_argv(["--model", "hf", "--include_path", "mine", "--tasks", "x"])
    assert kept == ["--model", "hf", "--include_path", "mine", "--tasks", "x"]


@pytest.mark.parametrize("saved_here", [True, False])
def test_eval_writes_provenance_only_beside_results_this_process_saved(
    tmp_path, monkeypatch, saved_here
):
    """A data-parallel launch: lm-eval's rank 0 saves the results, the other ranks save none and
    must not read rank 0's file (it may be half written), so they write no sidecar."""
    import lm_eval.__main__
    import lm_eval.loggers as loggers

    from t2bench import evaluate

    out = tmp_path / "out"

    def fake_cli():
        if saved_here:  # rank 0: lm-eval's CLI saves through its tracker
            tracker = loggers.EvaluationTracker(output_path=str(out))
            tracker._save(out / "model" / "results_1.json", json.dumps({"config": {}}))
        else:  # another rank: rank 0's file appears under --output_path meanwhile
            (out / "model").mkdir(parents=True)
            (out / "model" / "results_1.json").write_text(json.dumps({"config": {}}))

    monkeypatch.setattr(lm_eval.__main__, "cli_evaluate", fake_cli)
    monkeypatch.setattr(evaluate, "tasks_dir", lambda: tmp_path)
    evaluate.run(["--tasks", "x", "--output_path", str(out)])
    assert (out / "model" / "provenance_1.json").exists() is saved_here


def test_python_dash_m_runs_the_command():
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "t2bench.cli", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0 and "heldout" in done.stdout
