"""The RL / next-token trainer on a tiny local Llama: equality across processes, kill/resume,
bad inputs, and the pieces of the loss."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import tiny_train_config, train_cli_args
from safetensors.torch import load_file

from t2bench.errors import ConfigError
from t2bench.generation import GumbelNoise, per_sequence, token_kl
from t2bench.train import checkpoint as ckpt_io
from t2bench.train.advantages import advantages
from t2bench.train.config import TrainConfig
from t2bench.train.schedule import batch_indices, cosine_lambda
from t2bench.train.trainer import TrainingDiverged, train

REPO = Path(__file__).resolve().parents[1]


def _cfg(llama_dir, data, out, **kw):
    return tiny_train_config(llama_dir, data, out, **({} | kw))


def _env() -> dict:
    return os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def _vectors(out: Path, cfg: TrainConfig) -> dict[str, torch.Tensor]:
    return load_file(str(out / f"{cfg.run_name}.safetensors"))


# --------------------------------------------------------------------------- pure pieces


def test_batch_indices_cover_each_epoch_once_and_are_deterministic():
    n, g = 10, 4
    stream = [i for s in range(5) for i in batch_indices(s, n, g, seed=1)]
    assert sorted(stream[:10]) == list(range(10)) and sorted(stream[10:20]) == list(range(10))
    assert stream == [i for s in range(5) for i in batch_indices(s, n, g, seed=1)]
    assert stream != [i for s in range(5) for i in batch_indices(s, n, g, seed=2)]


def test_advantages_modes():
    r = torch.tensor([1.0, -1.0, -1.0, -1.0])
    assert torch.equal(advantages(r, "raw"), r)
    assert advantages(r, "center").sum().abs() < 1e-6
    w = advantages(r, "whiten")
    assert abs(float(w.mean())) < 1e-6 and abs(float(w.std(unbiased=False)) - 1) < 1e-4
    assert torch.equal(advantages(-torch.ones(4), "whiten"), torch.zeros(4))  # no signal, no update


def test_cosine_schedule_with_warmup():
    f = cosine_lambda(warmup=2, total=10)
    assert f(0) < f(1) < f(2) == 1.0
    assert f(10) == pytest.approx(0.0) and f(6) == pytest.approx(0.5)


def test_gumbel_sampling_matches_softmax():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    proc = GumbelNoise([7], temperature=1.0)
    counts = torch.zeros(4)
    for _ in range(4000):
        counts[int(proc(None, logits).argmax())] += 1
    assert torch.allclose(counts / 4000, torch.softmax(logits[0], -1), atol=0.03)
    # the same seed gives the same draws, whatever else is in the batch
    a = GumbelNoise([5], 1.0)(None, logits)
    b = GumbelNoise([5, 9], 1.0)(None, logits.repeat(2, 1))
    assert torch.equal(a[0], b[0])


def test_kl_and_sequence_reduction():
    p = torch.log_softmax(torch.randn(5, 7), -1)
    q = torch.log_softmax(torch.randn(5, 7), -1)
    assert torch.allclose(token_kl(p, p, "policy_ref"), torch.zeros(5), atol=1e-6)
    assert (token_kl(p, q, "policy_ref") > 0).all() and (token_kl(p, q, "ref_policy") > 0).all()
    assert not torch.allclose(token_kl(p, q, "policy_ref"), token_kl(p, q, "ref_policy"))
    rows = torch.tensor([0, 0, 1])
    v = torch.tensor([1.0, 3.0, 5.0])
    assert per_sequence(v, rows, 2, "sum").tolist() == [4.0, 5.0]
    assert per_sequence(v, rows, 2, "mean").tolist() == [2.0, 5.0]


def test_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="global_batch 6 is not a multiple of micro_batch 4"):
        TrainConfig(global_batch=6, micro_batch=4)
    with pytest.raises(ConfigError, match="unknown kl_direction"):
        TrainConfig(kl_direction="sideways")
    with pytest.raises(ConfigError, match="unknown training option"):
        TrainConfig.from_dict({"learning_rate": 1.0})


# --------------------------------------------------------------------------- training runs


def test_pg_run_exports_a_loadable_expert_with_logs(llama_dir, data, tmp_path):
    from t2bench.svf import load_expert

    cfg = _cfg(llama_dir, data, tmp_path / "run", kl_coef=0.1)
    result = train(cfg)
    expert = load_expert(result.artifact)
    assert expert.meta.base_model.endswith("tiny-llama")
    assert expert.meta.provenance["best_step"] in (2, 4)
    assert any((v - 1).abs().max() > 0 for v in expert.params.values())  # it trained
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    assert log[0]["kl"] == 0.0  # the identity start equals the reference model exactly
    assert all(0 <= r["kl"] < float("inf") for r in log)  # KL is finite and never negative
    assert {"reward", "accuracy", "lr", "tokens_per_s", "loss"} <= set(log[0])
    assert "valid_accuracy" in log[1]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["provenance"]["commit"] and summary["data"]["train_override"]["items"] == 12
    with pytest.raises(ConfigError, match="already holds a finished training run"):
        train(cfg)
    from t2bench.train.recipes import runs_markdown

    table = runs_markdown(tmp_path)
    assert "| reasoning-svf-pg | svf | pg | 384 | 4 | 16 |" in table
    from t2bench.train.recipes import run_stats

    stats = run_stats(tmp_path / "run", "reasoning-svf-pg")
    z = load_expert(result.artifact).params
    assert stats["max_abs_z_minus_1"] == max(float((v - 1).abs().max()) for v in z.values()) > 0
    assert stats["reward_first10"] is not None and f"{stats['max_abs_z_minus_1']:.4f}" in table
    assert stats["computed_in"] == [log[0]["computed_in"]]
    assert f"| {log[0]['computed_in']} |" in table


def test_ntp_lowers_the_loss(llama_dir, data, tmp_path):
    cfg = _cfg(
        llama_dir,
        data,
        tmp_path / "ntp",
        objective="ntp",
        steps=12,
        lr=0.3,
        eval_every=0,
        grad_clip=0.0,
    )
    train(cfg)
    log = [json.loads(line) for line in (tmp_path / "ntp" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["loss"] < log[0]["loss"] - 0.05


@pytest.mark.parametrize(
    "method,objective", [("lora", "pg"), ("lora", "ntp"), ("ia3", "ntp"), ("tinylora", "pg")]
)
def test_peft_baselines_train_and_save_adapters(llama_dir, data, tmp_path, method, objective):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    cfg = _cfg(llama_dir, data, tmp_path / method, method=method, objective=objective, steps=2)
    result = train(cfg)
    assert (result.artifact / "adapter_model.safetensors").exists()
    assert json.loads((result.artifact / "t2bench_provenance.json").read_text())["seed"] == 3
    model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(llama_dir), result.artifact
    )
    kinds = ("lora_B", "ia3", "tinylora_v")  # LoRA's B and TinyLoRA's v start at 0, IA3 at 1
    trained = {n: p for n, p in model.named_parameters() if any(k in n for k in kinds)}
    assert trained and any(
        (p - (1 if "ia3" in n else 0)).abs().max() > 0 for n, p in trained.items()
    )


def test_two_processes_equal_one_process(llama_dir, data, tmp_path):
    """Same global batch and seed: 1 process × 2 micro-batches == 2 processes × 1 micro-batch."""
    cfg1 = _cfg(llama_dir, data, tmp_path / "p1", eval_every=0, steps=3)
    cfg2 = _cfg(llama_dir, data, tmp_path / "p2", eval_every=0, steps=3)
    subprocess.run(
        [sys.executable, "-m", "t2bench.train", *train_cli_args(cfg1)],
        check=True,
        env=_env(),
        capture_output=True,
    )
    launch = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "-m",
        "t2bench.train",
        *train_cli_args(cfg2),
    ]
    proc = subprocess.run(launch, env=_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((tmp_path / "p2" / "summary.json").read_text())["processes"] == 2
    a, b = _vectors(tmp_path / "p1", cfg1), _vectors(tmp_path / "p2", cfg2)
    assert max(float((a[k] - 1).abs().max()) for k in a) > 1e-4  # the steps moved z
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-5


def _kill_when(proc: subprocess.Popen, log: Path, step: int, timeout: float = 120) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if log.exists() and sum(1 for _ in log.open()) >= step:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return
        if proc.poll() is not None:
            raise AssertionError("the run ended before it could be killed")
        time.sleep(0.005)
    proc.kill()
    raise AssertionError("timed out waiting for the run")


@pytest.mark.parametrize("kill_at", [2, 5])
def test_killed_run_resumes_to_the_same_expert(llama_dir, data, tmp_path, kill_at):
    kw = dict(steps=8, eval_every=3, patience=0, kl_coef=0.1)
    ref_cfg = _cfg(llama_dir, data, tmp_path / "ref", **kw)
    cfg = _cfg(llama_dir, data, tmp_path / "killed", **kw)
    # all three runs in subprocesses with the same thread count, so float sums match bit for bit
    run = [sys.executable, "-m", "t2bench.train"]
    subprocess.run([*run, *train_cli_args(ref_cfg)], check=True, env=_env(), capture_output=True)
    proc = subprocess.Popen(
        [*run, *train_cli_args(cfg)],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _kill_when(proc, tmp_path / "killed" / "log.jsonl", kill_at)
    assert not (tmp_path / "killed" / "summary.json").exists()
    done = ckpt_io.complete_checkpoints(tmp_path / "killed")
    assert done, "a checkpoint should exist when the kill came"
    # debris of a kill during a checkpoint write must be ignored
    (tmp_path / "killed" / "checkpoints" / ".tmp-step-000099-1").mkdir()
    (tmp_path / "killed" / "checkpoints" / "step-000098").mkdir()
    subprocess.run([*run, *train_cli_args(cfg)], check=True, env=_env(), capture_output=True)
    a, b = _vectors(tmp_path / "ref", ref_cfg), _vectors(tmp_path / "killed", cfg)
    assert all(torch.equal(a[k], b[k]) for k in a)
    logs = [
        [json.loads(x) for x in (tmp_path / d / "log.jsonl").read_text().splitlines()]
        for d in ("ref", "killed")
    ]
    strip = [
        [{k: v for k, v in r.items() if k not in ("seconds", "tokens_per_s")} for r in log]
        for log in logs
    ]
    assert strip[0] == strip[1]


def test_resume_refuses_a_changed_config(llama_dir, data, tmp_path):
    cfg = _cfg(llama_dir, data, tmp_path / "r", steps=2, eval_every=0)
    state = ckpt_io.RunState(step=1)
    from t2bench.train.policy import SVFPolicy  # noqa: F401  (import check only)

    opt = torch.optim.AdamW([torch.nn.Parameter(torch.ones(2))])
    ckpt_io.save_checkpoint(Path(cfg.output_dir), state, cfg, {"x": torch.ones(2)}, opt, None)
    changed = _cfg(llama_dir, data, tmp_path / "r", steps=2, eval_every=0, lr=0.5)
    with pytest.raises(ConfigError, match=r"other settings \(lr: now 0.5, checkpoint 0.002\)"):
        train(changed)


def test_nan_reward_stops_and_keeps_last_good_checkpoint(llama_dir, data, tmp_path, monkeypatch):
    from t2bench.train import rewards

    real = rewards.score
    calls = {"n": 0}

    def flaky(task, completions, items, spec=None, max_workers=4):
        calls["n"] += 1
        r, c = real(task, completions, items, spec or rewards.RewardSpec())
        return ([float("nan")] * len(r), c) if calls["n"] > 4 else (r, c)

    monkeypatch.setattr(rewards, "score", flaky)
    cfg = _cfg(llama_dir, data, tmp_path / "nan", steps=6, eval_every=0)
    with pytest.raises(TrainingDiverged, match=r"step 2: the reward is not finite.*step-000002"):
        train(cfg)
    done = ckpt_io.complete_checkpoints(tmp_path / "nan")
    assert [p.name for p in done] == ["step-000001", "step-000002"]
    good = ckpt_io.load_checkpoint(done[-1])
    assert all(torch.isfinite(v).all() for v in good.trainable.values())
    assert not (tmp_path / "nan" / "summary.json").exists()


def test_nan_loss_stops_with_a_clear_error(llama_dir, data, tmp_path, monkeypatch):
    from t2bench.train.policy import SVFPolicy

    real = SVFPolicy.forward

    def poisoned(self, input_ids, attention_mask, **kw):
        return real(self, input_ids, attention_mask, **kw) * float("nan")

    monkeypatch.setattr(SVFPolicy, "forward", poisoned)
    cfg = _cfg(llama_dir, data, tmp_path / "nanloss", steps=3, eval_every=0)
    with pytest.raises(TrainingDiverged, match="step 0: the loss is not finite.*no checkpoint"):
        train(cfg)


def test_bad_inputs_name_the_problem(llama_dir, data, tmp_path):
    with pytest.raises(ConfigError, match="unknown reward task 'poetry'; valid tasks: math"):
        train(_cfg(llama_dir, data, tmp_path / "a", task="poetry"))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ConfigError, match="no items in"):
        train(_cfg(llama_dir, empty, tmp_path / "b"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "w1\\nA. w1\\nB. w2", "target": "A"}\n{not json\n')
    with pytest.raises(ConfigError, match="line 2"):
        train(_cfg(llama_dir, bad, tmp_path / "c"))
    with pytest.raises(ConfigError, match="missing.jsonl does not exist"):
        train(_cfg(llama_dir, tmp_path / "missing.jsonl", tmp_path / "d"))


def test_early_stopping_after_patience_evaluations(llama_dir, data, tmp_path):
    cfg = _cfg(llama_dir, data, tmp_path / "es", steps=10, eval_every=1, patience=2)
    result = train(cfg)
    # the tiny model never answers right: no evaluation improves on the first one
    assert result.summary["steps_done"] == 3
    assert result.summary["stopped"] == "early stop: no improvement in 2 evaluations"
    assert result.summary["best_step"] == 1


def test_sigmoid_parameterisation_starts_at_the_base_model(llama_dir, data, tmp_path):
    from t2bench.svf import load_expert

    cfg = _cfg(
        llama_dir, data, tmp_path / "sig", parameterisation="sigmoid", kl_coef=0.1, steps=2, lr=0.5
    )
    result = train(cfg)
    log = [json.loads(x) for x in (tmp_path / "sig" / "log.jsonl").read_text().splitlines()]
    assert log[0]["kl"] == 0.0 and log[1]["kl"] > 1e-6
    assert load_expert(result.artifact).meta.parameterisation == "sigmoid"


def test_greedy_rollouts_ignore_seeds_and_sampling_uses_them():
    from conftest import tiny_llama, tiny_tokenizer

    from t2bench.generation import generate

    model, tok = tiny_llama(), tiny_tokenizer()
    prompts = [[1, 2, 3], [4, 5]]
    greedy = [generate(model, tok, prompts, max_new_tokens=6).completion_ids for _ in range(2)]
    assert greedy[0] == greedy[1]
    a = generate(model, tok, prompts, max_new_tokens=6, seeds=[1, 2]).completion_ids
    b = generate(model, tok, prompts, max_new_tokens=6, seeds=[1, 2]).completion_ids
    c = generate(model, tok, prompts, max_new_tokens=6, seeds=[3, 4]).completion_ids
    assert a == b and a != c
    # a sample's tokens do not depend on the other rows of its batch
    alone = generate(model, tok, prompts[:1], max_new_tokens=6, seeds=[1]).completion_ids
    assert alone[0] == a[0]


def test_eval_at_start_logs_the_base_once_and_is_never_selected(llama_dir, data, tmp_path):
    from t2bench.train.run_log import has_start_record

    out = tmp_path / "start"
    cfg = _cfg(llama_dir, data, out, steps=2, eval_at_start=True)
    assert cfg.fingerprint() == _cfg(llama_dir, data, out, steps=2).fingerprint()
    # a run killed after its step-0 evaluation, before step 1, starts again: one step-0 record
    out.mkdir()
    (out / "log.jsonl").write_text(
        json.dumps({"step": 0, "valid_accuracy": 0.5, "valid_n": 4}) + "\n"
    )
    result = train(cfg)
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [0, 1, 2]
    assert result.summary["best_step"] == 2  # selection is among trained steps only
    assert result.summary["no_signal"]["of"] == 2  # the base record is no training step
    fresh = tmp_path / "fresh"
    train(_cfg(llama_dir, data, fresh, steps=1, eval_every=1, eval_at_start=True))
    first = json.loads((fresh / "log.jsonl").read_text().splitlines()[0])
    assert first["step"] == 0 and first["base"] is True and first["valid_n"] == 4
    assert has_start_record(fresh / "log.jsonl")
    assert not has_start_record(tmp_path / "none.jsonl")


def test_code_run_records_the_code_runner(llama_dir, tmp_path, code_ok):
    """A code-reward run names the runner that executed the model's programs."""
    path = tmp_path / "code.jsonl"
    with open(path, "w") as fh:
        for i in range(4):
            item = {"prompt": f"w{i} w{i + 1}", "target": "f", "tests": ["assert f() == 1"]}
            fh.write(json.dumps(item | {"reference": "def f():\n    return 1"}) + "\n")
    cfg = _cfg(llama_dir, path, tmp_path / "run", task="code", steps=1, global_batch=2, eval_size=2)
    train(cfg)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["provenance"]["code_runner"] == code_ok
