"""Group-relative advantages (GRPO-style ``group_size`` K), the per-step zero-advantage share,
the run summary's ``no_signal`` flag and the options' validation, fingerprints and CLI flags.

The training runs use the tiny local Llama; a fake reward (a hash of the completion's text,
fixed by the per-sample seeds) gives rewards that differ within some groups and not others.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
import torch
from conftest import tiny_train_config, train_cli_args
from safetensors.torch import load_file

from t2bench.errors import ConfigError
from t2bench.train import rewards
from t2bench.train import trainer as trainer_mod
from t2bench.train.advantages import advantages, group_advantages
from t2bench.train.config import TrainConfig
from t2bench.train.trainer import train

REPO = Path(__file__).resolve().parents[1]

#: Fingerprints before group_size and difficulty existed (computed with the code of 1245761):
#: the defaults, and the committed math-svf-pg run's config.
DEFAULT_FINGERPRINT = "41d533527d64c344"
MATH_SVF_PG_FINGERPRINT = "98014b94c7acfa8f"


def _cfg(llama_dir, data, out, **kw):
    return tiny_train_config(llama_dir, data, out, **({"steps": 3, "eval_every": 0} | kw))


def _hash_reward(completions, items):
    """+1 / -1 from the completion text's crc32 parity: a deterministic, varied reward."""
    r = [1.0 if zlib.crc32(text.encode()) % 2 else -1.0 for text in completions]
    return r, [x > 0 for x in r]


def _log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


# --------------------------------------------------------------------------- pure pieces


def test_group_advantages_centre_within_each_group():
    # three groups of 4; rewards of +-1 keep every mean and difference exact in floating point
    r = torch.tensor([1.0, -1.0, -1.0, -1.0, -1.0, -1.0, -1.0, -1.0, 1.0, 1.0, -1.0, 1.0])
    a = advantages(r, "group", group_size=4)
    assert a.tolist() == [1.5, -0.5, -0.5, -0.5, 0.0, 0.0, 0.0, 0.0, 0.5, 0.5, -1.5, 0.5]
    # a group's advantages depend on its own rewards only (not on the batch mean, unlike center)
    other = r.clone()
    other[8:] = 1.0
    assert torch.equal(advantages(other, "group", 4)[:8], a[:8])
    assert not torch.equal(advantages(other, "center")[:8], advantages(r, "center")[:8])


def test_constant_groups_get_exactly_zero_even_with_inexact_rewards():
    # -0.1 is not exact in binary: the mean of a constant group may differ from its members in
    # the last bit, so the zero is enforced, not left to rounding
    r = torch.tensor([-0.1, -0.1, -0.1, 0.7, 0.7, 0.7, -0.1, 0.7, -0.1])
    for mode in ("group", "group_whiten"):
        a = advantages(r, mode, group_size=3)
        assert torch.equal(a[:6], torch.zeros(6)), mode
        assert (a[6:] != 0).all(), mode


def test_group_whiten_scales_each_group_to_unit_spread():
    r = torch.tensor([1.0, -1.0, 1.0, -1.0, 3.0, 0.0, 0.0, 0.0])
    a = advantages(r, "group_whiten", group_size=4).view(2, 4)
    assert a.mean(dim=1).abs().max() < 1e-6
    assert torch.allclose(a.std(dim=1, unbiased=False), torch.ones(2), atol=1e-4)


def test_group_advantages_reject_a_batch_that_does_not_split_into_groups():
    with pytest.raises(ConfigError, match="6 rewards do not split into groups of 4"):
        group_advantages(torch.zeros(6), 4, whiten=False)


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        (dict(group_size=0), "group_size must be >= 1, got 0"),
        (dict(advantage="group"), "needs group_size >= 2, got 1"),
        (dict(advantage="group_whiten", group_size=1), "needs group_size >= 2"),
        (dict(global_batch=6, micro_batch=2, group_size=4), "not a multiple of group_size 4"),
        (dict(objective="ntp", group_size=2), "only objective='pg' does"),
        (dict(greedy=True, group_size=2), "K identical completions"),
        (dict(difficulty="hard"), "unknown difficulty 'hard': use one of default, mix"),
        (dict(task="reasoning", difficulty="mix"), "exists only for task=math"),
        (dict(difficulty="mix", data="a.jsonl", valid_data="b.jsonl"), "replace it"),
    ],
)
def test_config_rejects_bad_group_and_difficulty_settings(kw, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**kw)


def test_group_and_difficulty_settings_that_are_valid():
    cfg = TrainConfig(group_size=4, advantage="group_whiten", global_batch=16, micro_batch=4)
    assert cfg.group_size == 4
    assert TrainConfig(group_size=2, advantage="raw").advantage == "raw"  # more samples, raw
    assert TrainConfig(difficulty="mix").difficulty == "mix"


def test_new_fields_keep_the_fingerprints_of_configs_that_do_not_set_them():
    assert TrainConfig().fingerprint() == DEFAULT_FINGERPRINT
    summary = REPO / "results" / "experts-smoke" / "math-svf-pg" / "summary.json"
    saved = json.loads(summary.read_text())["config"]
    assert "group_size" not in saved and "difficulty" not in saved  # recorded before they existed
    assert TrainConfig.from_dict(saved).fingerprint() == MATH_SVF_PG_FINGERPRINT
    # setting them changes the fingerprint, and a checkpoint saved without them still resumes
    assert TrainConfig(group_size=2).fingerprint() != DEFAULT_FINGERPRINT
    assert TrainConfig(difficulty="mix").fingerprint() != DEFAULT_FINGERPRINT
    assert TrainConfig.from_dict(saved).differences(TrainConfig(**saved)) == {}


def test_cli_exposes_group_size_advantage_and_difficulty():
    from t2bench.train.cli_args import add_train_args, config_from_args

    p = argparse.ArgumentParser()
    add_train_args(p)
    flags = ["--group-size", "4", "--advantage", "group", "--difficulty", "mix"]
    cfg = config_from_args(p.parse_args([*flags, "--global-batch", "8"]))
    assert (cfg.group_size, cfg.advantage, cfg.difficulty) == (4, "group", "mix")
    with pytest.raises(ConfigError, match="not a multiple of group_size 4"):
        config_from_args(p.parse_args([*flags, "--global-batch", "6", "--micro-batch", "2"]))


# --------------------------------------------------------------------------- training runs


def test_group_run_samples_each_prompt_k_times_with_its_own_seeds(
    llama_dir, data, tmp_path, monkeypatch
):
    calls: list[dict] = []
    real_generate = trainer_mod.generate

    def recording(model, tok, prompts, **kw):
        roll = real_generate(model, tok, prompts, **kw)
        calls.append({"prompts": prompts, "seeds": kw["seeds"], "out": roll.completion_ids})
        return roll

    scored: list[list[float]] = []

    def fake_score(task, completions, items, spec=None, max_workers=4):
        r, c = _hash_reward(completions, items)
        scored.append(r)
        return r, c

    monkeypatch.setattr(trainer_mod, "generate", recording)
    monkeypatch.setattr(rewards, "score", fake_score)
    out = tmp_path / "group"
    result = train(_cfg(llama_dir, data, out, group_size=2, advantage="group", steps=4))

    # micro_batch == group_size: every generate call is one group, one prompt twice
    assert len(calls) == 8
    for call in calls:
        assert call["prompts"][0] == call["prompts"][1]
        assert call["seeds"][0] != call["seeds"][1]
    assert any(call["out"][0] != call["out"][1] for call in calls)
    # 4 steps x 2 prompts = 8 distinct items (12 in an epoch), so no prompt repeats across groups
    assert len({tuple(call["prompts"][0]) for call in calls}) == 8

    log = _log(out)
    for step, rec in enumerate(log):
        pairs = scored[2 * step : 2 * step + 2]  # this step's two groups
        constant = sum(2 for r in pairs if r[0] == r[1])
        assert rec["zero_advantage_share"] == constant / 4
        assert rec["no_signal"] == (constant == 4)
    assert 0 < sum(r["zero_advantage_share"] for r in log) < len(log)  # both kinds occurred
    ns = result.summary["no_signal"]
    assert ns["of"] == 4 and ns["selected_step"] == 4
    assert ns["steps_without_signal"] == sum(r["no_signal"] for r in log)
    assert ns["flag"] is False


def test_group_size_one_keeps_the_data_order_of_earlier_runs(
    llama_dir, data, tmp_path, monkeypatch
):
    """K = 1 reads the same item and seed per position as before groups existed: position p
    of step s is item batch_indices(s, n, global_batch, seed)[p], sampled with
    sample_seed(seed, s, p)."""
    from t2bench.generation import sample_seed

    seeds: list[int] = []
    uids: list[str] = []
    real_generate = trainer_mod.generate

    def recording(model, tok, prompts, **kw):
        seeds.extend(kw["seeds"])
        return real_generate(model, tok, prompts, **kw)

    def fake_score(task, completions, items, spec=None, max_workers=4):
        uids.extend(i.uid for i in items)
        return _hash_reward(completions, items)

    monkeypatch.setattr(trainer_mod, "generate", recording)
    monkeypatch.setattr(rewards, "score", fake_score)
    train(_cfg(llama_dir, data, tmp_path / "k1", steps=4))
    # 4 steps x 4 positions over 12 items: the second epoch starts inside step 3
    order = [
        (s, p, i) for s in range(4) for p, i in enumerate(trainer_mod.batch_indices(s, 12, 4, 3))
    ]
    assert uids == [f"data-{i + 1}" for _, _, i in order]  # uid = file stem + line number
    assert seeds == [sample_seed(3, s, p) for s, p, _ in order]


def test_constant_reward_run_is_flagged_no_signal(llama_dir, data, tmp_path, capsys):
    # the tiny model never writes a letter, so every reasoning reward is -1
    out = tmp_path / "flat"
    result = train(_cfg(llama_dir, data, out, steps=2, eval_every=1))
    log = _log(out)
    assert [r["reward"] for r in log] == [-1.0, -1.0]
    # raw advantages are the rewards: none is zero, yet a constant reward carries no signal
    assert [r["zero_advantage_share"] for r in log] == [0.0, 0.0]
    assert all(r["no_signal"] for r in log)
    # no evaluation improves on the first (step 1), so step 1 is the selected checkpoint
    assert result.summary["best_step"] == 1
    assert result.summary["no_signal"] == {
        "steps_without_signal": 1,
        "of": 1,
        "selected_step": 1,
        "unknown": 0,
        "flag": True,
    }
    assert "learned from nothing" in capsys.readouterr().err
    saved = json.loads((out / "summary.json").read_text())
    assert saved["no_signal"]["flag"] is True


def test_group_advantages_on_a_constant_reward_are_all_zero(llama_dir, data, tmp_path):
    out = tmp_path / "flatgroup"
    result = train(_cfg(llama_dir, data, out, steps=2, group_size=2, advantage="group"))
    assert [r["zero_advantage_share"] for r in _log(out)] == [1.0, 1.0]
    assert result.summary["no_signal"]["flag"] is True


def test_ntp_runs_have_no_signal_record(llama_dir, data, tmp_path):
    result = train(_cfg(llama_dir, data, tmp_path / "ntp", objective="ntp", steps=1))
    assert result.summary["no_signal"] is None
    assert "zero_advantage_share" not in _log(tmp_path / "ntp")[0]


# --------------------------------------------------------------------------- processes

# Loaded at interpreter start in the training subprocesses (on PYTHONPATH): the fake reward,
# so group advantages see rewards that differ within groups in a multi-process run too.
_SITECUSTOMIZE = """
import zlib
from t2bench.train import rewards

def _score(task, completions, items, spec=None, max_workers=4):
    r = [1.0 if zlib.crc32(t.encode()) % 2 else -1.0 for t in completions]
    return r, [x > 0 for x in r]

rewards.score = _score
"""


def test_group_advantages_are_the_same_with_two_processes(llama_dir, data, tmp_path):
    """One group per step spans both processes' halves of the global batch (K = global_batch
    = 4, 2 samples per process), so the advantages must come from the gathered rewards for the
    runs to agree."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": f"{hook}{os.pathsep}{REPO}"}
    kw = dict(group_size=4, advantage="group", steps=3, global_batch=4, micro_batch=2)
    cfg1 = _cfg(llama_dir, data, tmp_path / "p1", **kw)
    cfg2 = _cfg(llama_dir, data, tmp_path / "p2", **kw)
    one = subprocess.run(
        [sys.executable, "-m", "t2bench.train", *train_cli_args(cfg1)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
        + ["-m", "t2bench.train", *train_cli_args(cfg2)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    logs = [_log(tmp_path / d) for d in ("p1", "p2")]
    keys = ("reward", "zero_advantage_share", "no_signal")
    assert [[r[k] for k in keys] for r in logs[0]] == [[r[k] for k in keys] for r in logs[1]]
    assert any(r["zero_advantage_share"] == 0 for r in logs[0])  # a group had signal
    a = load_file(str(tmp_path / "p1" / f"{cfg1.run_name}.safetensors"))
    b = load_file(str(tmp_path / "p2" / f"{cfg2.run_name}.safetensors"))
    assert max(float((a[k] - 1).abs().max()) for k in a) > 1e-4  # the steps moved z
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-5


def test_a_run_without_signal_stops_early_and_is_evaluated(llama_dir, data, tmp_path, monkeypatch):
    """Every sample of a group gets the same reward (a collapsed policy): after
    stop_without_signal such steps the run stops, is validated once more and says why."""

    def constant(task, completions, items, spec=None, max_workers=4):
        return [-1.0] * len(completions), [False] * len(completions)

    monkeypatch.setattr(rewards, "score", constant)
    assert TrainConfig(stop_without_signal=3).fingerprint() != DEFAULT_FINGERPRINT
    with pytest.raises(ConfigError, match="stop_without_signal must be >= 0"):
        TrainConfig(stop_without_signal=-1)
    out = tmp_path / "quiet"
    cfg = _cfg(
        llama_dir,
        data,
        out,
        group_size=2,
        advantage="group",
        steps=6,
        eval_every=5,
        stop_without_signal=2,
    )
    result = train(cfg)
    log = _log(out)
    assert [r["step"] for r in log] == [1, 2] and all(r["no_signal"] for r in log)
    assert "valid_accuracy" in log[-1]  # evaluated at the stop, though 2 is no eval step
    assert result.summary["steps_done"] == 2
    assert "no learning signal in 2 consecutive steps" in result.summary["stopped"]
