"""Data-parallel evaluation with ``t2``: two CPU processes (gloo, torchrun) split lm-eval's
documents and give the one-process results; dispatch strategies that do not declare
themselves shard-safe are refused; ``accelerate launch --cpu`` (one process) is named."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("lm_eval")

from conftest import tiny_llama  # noqa: E402
from lm_eval.api.instance import Instance  # noqa: E402

from t2bench.backends import adapt  # noqa: E402
from t2bench.backends.text import T2LM  # noqa: E402
from t2bench.dispatch import (  # noqa: E402
    Choice,
    DispatchContext,
    Dispatcher,
    DispatchRequest,
    make_dispatcher,
)
from t2bench.dispatch import base as dispatch_base  # noqa: E402
from t2bench.errors import ConfigError  # noqa: E402
from t2bench.models import load_model  # noqa: E402
from t2bench.svf import SVFPatcher, TargetSpec, decompose, identity_expert, save_expert  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
EXPERTS = ("code-x", "math-x", "reasoning-x")
WORDS = ["code", "math", "reasoning", "other", "\\", "boxed", "{", "}", "Question", ":", "?"]

# Toy documents: multiple choice with 2-4 choices (unequal request counts per process, so
# lm-eval pads), and rolling log-likelihood texts (HFLM gathers inside that call).
MC_DOCS = [
    {
        "context": f"w{i} w{i + 1} w{i + 2} ?",
        "choices": [f"w{(i * 7 + k * 5) % 50}" for k in range(2 + i % 3)],
        "label": i % (2 + i % 3),
    }
    for i in range(11)
]
ROLLING_DOCS = [{"text": " ".join(f"w{(i * 3 + j) % 50}" for j in range(4 + i))} for i in range(7)]

TASKS = {
    "t2dp_mc": (
        "output_type: multiple_choice\n"
        'doc_to_text: "{{context}}"\n'
        'doc_to_target: "{{label}}"\n'
        'doc_to_choice: "{{choices}}"\n'
        "metric_list:\n  - metric: acc\n"
    ),
    "t2dp_rolling": (
        'output_type: loglikelihood_rolling\ndoc_to_text: ""\ndoc_to_target: "{{text}}"\n'
    ),
}

# Run by each process: evaluates every configuration of cfg["runs"]; rank 0 writes the record.
WORKER = r'''
import json
import sys
from pathlib import Path

from t2bench.backends import register
from t2bench.dispatch import Choice, Dispatcher, register_dispatcher


class FirstDoc(Dispatcher):
    """Document 0 -> math-x, every other one -> code-x: process 0 runs two expert groups per
    call and process 1 one, which deadlocked on HFLM's collectives inside a call."""

    name = "firstdoc"
    shardable = True

    def __init__(self, experts):
        self.experts = experts

    def choose(self, requests):
        names = ["math-x" if r.doc_id == 0 else "code-x" for r in requests]
        return [Choice(n, self.experts[n]) for n in names]


cfg = json.loads(sys.argv[1])
register()
register_dispatcher("firstdoc", lambda arg, experts: FirstDoc(experts))
from lm_eval import simple_evaluate  # noqa: E402
from lm_eval.tasks import TaskManager  # noqa: E402

# only the toy tasks: indexing lm-eval's thousands of task files costs each process seconds
tasks = TaskManager(include_path=cfg["include"], include_defaults=False)
out = {}
for name, run in cfg["runs"].items():
    res = simple_evaluate(
        model="t2",
        model_args=run["model_args"],
        tasks=sorted(cfg["tasks"]),
        task_manager=tasks,
        batch_size=run["batch_size"],
        log_samples=True,
        bootstrap_iters=0,
    )
    if res is None:  # only rank 0 gets the results
        continue
    out[name] = {
        "results": res["results"],
        "t2": res["config"]["t2"],
        "samples": {
            task: {
                s["doc_id"]: {
                    "resps": s["filtered_resps"],
                    "experts": [a[-1]["t2_expert"] for a in s["arguments"]],
                }
                for s in samples
            }
            for task, samples in res["samples"].items()
        },
    }
if out:
    Path(cfg["out"]).write_text(json.dumps(out, default=str))
'''


def word_tokenizer():
    """Word-level tokenizer over 64 ids that knows the label words (others are <unk>)."""
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers import models as tk_models
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(WORDS + [f"w{i}" for i in range(51)])}
    vocab |= {"<unk>": 62, "</s>": 63}
    tk = Tokenizer(tk_models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", eos_token="</s>")
    tok.pad_token = tok.eos_token
    return tok


def _experts(model, model_id: str) -> dict:
    d = decompose(model, TargetSpec("mlp"), model_id=model_id, progress=False)
    g = torch.Generator().manual_seed(0)
    out = {}
    for name in EXPERTS:
        e = identity_expert(d, name=name)
        e.params = {
            k: 1 + 0.8 * (torch.rand(v.shape, generator=g) - 0.5) for k, v in e.params.items()
        }
        out[name] = e
    return out


@pytest.fixture
def model_dir(tmp_path, monkeypatch):
    """A tiny Llama with the label-word tokenizer and three experts saved next to it."""
    monkeypatch.setenv("T2BENCH_HOME", str(tmp_path / "home"))
    folder = tmp_path / "tiny"
    tiny_llama().save_pretrained(folder)
    word_tokenizer().save_pretrained(folder)
    lm = load_model(str(folder))
    for name, e in _experts(lm.model, lm.model_id).items():
        save_expert(e, tmp_path / "experts" / name)
    return folder


def _write_tasks(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for name, docs in (("t2dp_mc", MC_DOCS), ("t2dp_rolling", ROLLING_DOCS)):
        data = folder / f"{name}.jsonl"
        data.write_text("".join(json.dumps(d) + "\n" for d in docs))
        (folder / f"{name}.yaml").write_text(
            f"task: {name}\ndataset_path: json\n"
            f"dataset_kwargs:\n  data_files:\n    test: {data}\n"
            f"test_split: test\n{TASKS[name]}"
        )
    return folder


def _launch(cmd: list[str], tmp_path: Path) -> None:
    env = os.environ | {
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(REPO),
        "HF_DATASETS_CACHE": str(tmp_path / "hf-datasets"),
        "T2BENCH_HOME": str(tmp_path / "home"),
        "TOKENIZERS_PARALLELISM": "false",
    }
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    # the timeout turns a deadlock between the processes into a failure, not a hang
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]


def _numbers(value) -> list[float]:
    """The numbers of a logged response (log-likelihoods, is-greedy flags), flattened."""
    if isinstance(value, (list, tuple)):
        return [x for v in value for x in _numbers(v)]
    return [float(value)]


def _expected_instances(rank: int, world: int) -> int:
    """The lm-eval requests of the documents the evaluator gives ``rank`` (every world-th)."""
    return sum(len(d["choices"]) for d in MC_DOCS[rank::world]) + len(ROLLING_DOCS[rank::world])


@pytest.mark.slow
def test_two_processes_split_the_documents_and_match_one_process(model_dir, tmp_path):
    experts = str(tmp_path / "experts")
    runs = {
        "fixed": {"model_args": f"pretrained={model_dir},experts={experts},dispatch=fixed:math-x"},
        # a real per-request strategy (its first pass runs in each process on its share)
        "label": {"model_args": f"pretrained={model_dir},experts={experts},dispatch=label"},
        # unequal expert groups per process, with HFLM's cross-rank batch-size detection and
        # rolling-window padding in play (both deadlocked when they ran inside a call)
        "firstdoc": {"model_args": f"pretrained={model_dir},experts={experts},dispatch=firstdoc"},
    }
    batch = {"fixed": 4, "label": 4, "firstdoc": "auto"}
    for name in runs:
        runs[name]["batch_size"] = batch[name]
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    include = str(_write_tasks(tmp_path / "tasks"))
    out = {}
    for procs in (1, 2):
        cfg = {"runs": runs, "tasks": list(TASKS), "include": include}
        cfg["out"] = str(tmp_path / f"out{procs}.json")
        if procs == 1:  # a plain single process, as without any launcher
            cmd = [sys.executable, str(worker), json.dumps(cfg)]
        else:
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
            cmd += ["--nproc_per_node", "2", str(worker), json.dumps(cfg)]
        _launch(cmd, tmp_path)
        out[procs] = json.loads(Path(cfg["out"]).read_text())

    total = _expected_instances(0, 1)
    for name in runs:
        one, two = out[1][name], out[2][name]
        # each process ran exactly its documents' requests (plus lm-eval's padding copies)
        assert one["t2"]["data_parallel"]["processes"] == 1
        assert one["t2"]["data_parallel"]["per_rank"][0]["instances"] == total
        dp = two["t2"]["data_parallel"]
        assert dp["processes"] == 2 and [r["rank"] for r in dp["per_rank"]] == [0, 1]
        assert [r["instances"] for r in dp["per_rank"]] == [
            _expected_instances(0, 2),
            _expected_instances(1, 2),
        ]
        assert all(0.3 * total < r["instances"] < 0.7 * total for r in dp["per_rank"])
        requests = [r["requests"] for r in dp["per_rank"]]
        assert requests[0] == requests[1]  # lm-eval pads the shorter share
        assert sum(two["t2"]["dispatch_counts"].values()) == sum(requests)
        # the same scores, document by document
        assert two["results"]["t2dp_mc"]["acc,none"] == one["results"]["t2dp_mc"]["acc,none"]
        assert two["results"]["t2dp_rolling"]["word_perplexity,none"] == pytest.approx(
            one["results"]["t2dp_rolling"]["word_perplexity,none"], rel=1e-6
        )
        for task in TASKS:
            a, b = one["samples"][task], two["samples"][task]
            assert sorted(a) == sorted(b) and len(a) == len(
                MC_DOCS if "mc" in task else ROLLING_DOCS
            )
            for doc_id in a:
                assert a[doc_id]["experts"] == b[doc_id]["experts"]
                # batches hold other documents in each process: equal up to float rounding
                assert _numbers(b[doc_id]["resps"]) == pytest.approx(
                    _numbers(a[doc_id]["resps"]), abs=1e-5
                )
    # the per-request strategies really chose per request
    assert out[2]["firstdoc"]["samples"]["t2dp_mc"]["0"]["experts"][0] == "math-x"
    assert set(out[2]["firstdoc"]["t2"]["dispatch_counts"]) == {"math-x", "code-x"}


# --------------------------------------------------------------------------- the guard


class FirstOfCall(Dispatcher):
    """The expert of the call's first document answers the whole call: the choice depends on
    which requests share a call, so two processes would answer differently than one."""

    name = "firstofcall"

    def __init__(self, experts):
        self.experts = experts

    def choose(self, requests):
        names = sorted(self.experts)
        pick = names[(requests[0].doc_id or 0) % len(names)] if requests else names[0]
        return [Choice(pick, self.experts[pick])] * len(requests)


class FakeLaunch:
    """What the backends read from a 2-process Accelerator (no process group is started)."""

    process_index, num_processes, device = 1, 2, torch.device("cpu")

    def unwrap_model(self, model):
        return model


def _ll_requests(n=6):
    return [
        Instance("loglikelihood", {}, (f"w{i} w{i + 1}", f" w{i + 2}"), i, ("toy", i, 1))
        for i in range(n)
    ]


def test_data_parallel_launch_sets_rank_world_size_and_device(model_dir, tmp_path, monkeypatch):
    monkeypatch.setattr("t2bench.backends.text.launch_accelerator", lambda: FakeLaunch())
    t2 = T2LM(
        pretrained=str(model_dir),
        device="cuda:0",  # lm-eval's CLI default: the launch's device replaces it
        batch_size=4,
        experts=str(tmp_path / "experts"),
        dispatch="fixed:math-x",
    )
    assert (t2.rank, t2.world_size, str(t2.device)) == (1, 2, "cpu")


def test_t2_vlm_joins_a_data_parallel_launch_too(tiny_vlm_dir, monkeypatch):
    from t2bench.backends.vlm import T2VLM

    monkeypatch.setattr("t2bench.backends.vlm.launch_accelerator", lambda: FakeLaunch())
    lm = T2VLM(pretrained=tiny_vlm_dir, device="cuda:0", batch_size=2)
    assert (lm.rank, lm.world_size, str(lm.device)) == (1, 2, "cpu")
    assert lm.t2_summary()["data_parallel"]["processes"] == 2


def test_a_strategy_that_is_not_shard_safe_is_refused_data_parallel(
    model_dir, tmp_path, monkeypatch
):
    monkeypatch.setitem(
        dispatch_base._REGISTRY, "firstofcall", lambda arg, experts: FirstOfCall(experts)
    )
    monkeypatch.setattr("t2bench.backends.text.launch_accelerator", lambda: FakeLaunch())
    kw = dict(pretrained=str(model_dir), device="cpu", batch_size=4)
    with pytest.raises(ConfigError, match="dispatch=firstofcall with 2 data-parallel processes"):
        T2LM(**kw, experts=str(tmp_path / "experts"), dispatch="firstofcall")
    # a dispatcher swapped in after set-up is checked before the first request runs
    t2 = T2LM(**kw, experts=str(tmp_path / "experts"), dispatch="fixed:math-x")
    t2.dispatcher = FirstOfCall(t2.experts)
    with pytest.raises(ConfigError, match="Dispatcher.shardable"):
        t2.loglikelihood(_ll_requests())
    # one process: the same strategy runs
    monkeypatch.setattr("t2bench.backends.text.launch_accelerator", lambda: None)
    single = T2LM(**kw, experts=str(tmp_path / "experts"), dispatch="firstofcall")
    assert len(single.loglikelihood(_ll_requests())) == 6


@pytest.mark.parametrize("spec", ["label", "prompt:max_new_tokens=2"])
def test_shard_safe_first_passes_choose_the_same_on_any_split(spec, tmp_path):
    """What ``shardable`` promises: a process's share gets the choices one process gives it."""
    model = tiny_llama()
    experts = _experts(model, "tiny")
    ctx = DispatchContext(
        model=model,
        tokenizer=word_tokenizer(),
        experts=experts,
        patcher=SVFPatcher(model, decompose(model, TargetSpec("mlp"), progress=False)),
        model_id="tiny",
        batch_size=3,
    )
    reqs = [DispatchRequest(f"w{i} w{(i * 7) % 50} ? {WORDS[i % 4]}", "toy", i) for i in range(8)]

    def fresh():
        d = make_dispatcher(spec, experts)
        d.bind(ctx)
        return d

    assert fresh().shardable
    whole = [c.key for c in fresh().choose(reqs)]
    shares = {r: [c.key for c in fresh().choose(reqs[r::2])] for r in (0, 1)}
    assert shares[0] == whole[0::2] and shares[1] == whole[1::2]


def test_accelerate_cpu_launch_is_named_as_one_process(monkeypatch, caplog):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("ACCELERATE_USE_CPU", "True")
    with caplog.at_level(logging.WARNING, logger=adapt.__name__):
        assert adapt.launch_accelerator() is None
    assert "starts a single process" in caplog.text and "--multi_gpu" in caplog.text
