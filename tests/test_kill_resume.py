"""``kill -9`` at seeded random points of an ablation run and of a ReST-EM run, then resume with
the documented resume (``run_all(..., resume=folder)``, i.e. ``t2bench ablations --resume``;
rerunning ``train_seal`` with the same config): the final numbers must equal those of an
uninterrupted run.

Every run (the reference too) is its own subprocess with one torch thread, so float sums agree
bit for bit between runs. Random kill points: the test polls the run folder until a
seed-chosen number of results is written (memo / record lines, table files, round files),
waits a seed-chosen fraction of a second more and sends SIGKILL, so the kill lands somewhere
inside the next piece of work. Windows too short to hit that way (a half-written memo line, a
table without its JSON, a round adapter without its ``round.json``) get a kill from inside the
driver at exactly that moment.

What may differ between two uninterrupted runs is only timing and where/when the run was
written (found by diffing two reference runs: ``seconds``, ``merge s``/``merge_seconds``,
``sft_seconds``, ``created_utc``, ``run_folder``, ``wall_seconds``, and ``output_dir`` of the
ReST-EM config); those keys are removed before comparing, everything else must be identical.

Run as a script, this file is the driver of those subprocesses (see ``_main``).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import fictional_passages, tiny_seal_config

HERE = Path(__file__).resolve()
#: the checkout under test; the drivers run in it (the performance table reads its results/bench)
REPO = HERE.parents[1]
TABLES = ("performance", "seal-forgetting")
#: keys that hold wall-clock times or where/when a result was written (see the docstring)
VOLATILE = {
    "seconds",
    "merge s",
    "merge_seconds",
    "sft_seconds",
    "created_utc",
    "run_folder",
    "wall_seconds",
    "output_dir",
}
#: two seeded kill points per run: seed 0 kills in the second half of each run, seed 1 in the
#: first (see the event counts at the tests); each point costs a killed and a resumed process
SEEDS = (0, 1)
#: the longest wait after the seed-chosen event before the kill
MAX_DELAY = 0.3
#: each driver sleeps this long inside every piece of work the kill may land in (a scored
#: passage, a memo record), so that on any machine, however fast, the work left after the
#: last event the kill may follow outlasts MAX_DELAY and the kill lands before the run ends
PAD = MAX_DELAY + 0.2

pytestmark = pytest.mark.slow


# --------------------------------------------------------------------------- the driver


def _drive_ablations(model: str, out: str, resume: str | None) -> None:
    """Two tables of the ``smoke`` profile on the tiny model: ``performance`` (reads the
    committed bench records, written first and at once) and ``forgetting`` (self-edits and
    sequential LoRA / SVF merges, three memo records)."""
    import t2bench.ablations.seal as seal_mod
    from t2bench.ablations import run_all
    from t2bench.ablations.context import AblationContext
    from t2bench.ablations.profile import PROFILES, SMOKE

    seal_mod.eval_passages = lambda ctx, source=None, n=None: fictional_passages(
        n or ctx.profile.seal_n
    )
    real_remember = AblationContext.remember

    def remember(self, key, compute):
        def padded():
            time.sleep(PAD)
            return compute()

        return real_remember(self, key, padded)

    AblationContext.remember = remember
    PROFILES["kill"] = SMOKE.with_overrides(name="kill", model=model, bootstrap_iters=100)
    run_all("kill", only="performance,forgetting", out=out, resume=resume, allow_dirty=True)


def _seal_config(model: str, out: str):
    return tiny_seal_config(model, out, n_train=3)


def _drive_restem(model: str, out: str) -> None:
    """Two ReST-EM rounds over three tiny passages. The inner updates and closed-book answers
    are real; the reward of a valid self-edit is replaced by one that grows with its length,
    because a random tiny model answers nothing right and would keep no pair: with this
    reward every round keeps pairs and fine-tunes the generator, so round 2 samples from G(1)."""
    import t2bench.seal.restem as restem

    restem.load_passages = lambda source, split, n, seed: fictional_passages(n)
    real = restem.score_self_edit

    def score(updater, tok, passage, text, *, qa_max_new_tokens):
        s = real(updater, tok, passage, text, qa_max_new_tokens=qa_max_new_tokens)
        time.sleep(PAD)
        return s if s["reward"] is None else s | {"reward": min(1.0, len(text) / 100)}

    restem.score_self_edit = score
    restem.train_seal(_seal_config(model, out))


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _install_kill(point: str) -> None:
    """SIGKILL this process right after a given write (the tests then reshape the folder into
    the state a kill a moment earlier, inside that write, leaves):

    - ``memo-3``: the third memo record (forgetting's SVF sequence) is written;
    - ``table-forgetting``: the forgetting table is written;
    - ``round-2-adapter``: round 2's generator adapter is saved, its ``round.json`` is not
      (a real state, no reshaping needed)."""
    import t2bench.seal.restem as restem
    from t2bench.ablations.context import AblationContext
    from t2bench.core.tables import Table

    if point == "memo-3":
        real_remember, written = AblationContext.remember, []

        def remember(self, key, compute):
            new = key not in self.memo
            rec = real_remember(self, key, compute)
            written.extend([key] if new else [])
            if len(written) == 3:
                _die()
            return rec

        AblationContext.remember = remember
    elif point == "table-forgetting":
        real_write = Table.write

        def write(self, *args, **kw):
            paths = real_write(self, *args, **kw)
            if self.name == "seal-forgetting":
                _die()
            return paths

        Table.write = write
    elif point == "round-2-adapter":
        real_save = restem._save_adapter

        def save(peft_model, folder):
            real_save(peft_model, folder)
            if Path(folder).parent.name == "round-2":
                _die()

        restem._save_adapter = save
    else:
        raise SystemExit(f"unknown kill point {point!r}")


def _main(argv: list[str]) -> None:
    import torch

    torch.set_num_threads(1)
    if argv[:1] == ["--kill-at"]:
        _install_kill(argv[1])
        argv = argv[2:]
    what, *args = argv
    if what == "ablations":
        model, out, *resume = args
        _drive_ablations(model, out, resume[0] if resume else None)
    elif what == "restem":
        _drive_restem(*args)
    else:
        raise SystemExit(f"unknown driver {what!r}")


# --------------------------------------------------------------------------- running, killing


def _env() -> dict:
    # the checkout under test first (an editable install may point at another checkout)
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return os.environ | {
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": path,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }


def _run(args: list[str], log: Path) -> None:
    """One whole run of the driver; its output goes to ``log`` (shown if it fails)."""
    with open(log, "ab") as fh:
        rc = subprocess.run(
            [sys.executable, str(HERE), *args],
            env=_env(),
            cwd=REPO,
            stdout=fh,
            stderr=subprocess.STDOUT,
        ).returncode
    assert rc == 0, f"driver {args[0]} failed (rc {rc}):\n{log.read_text()[-4000:]}"


def _run_and_kill(args: list[str], events, seed: int, most: int, log: Path) -> int:
    """Start the driver, SIGKILL it after a seed-chosen number (1..``most``) of ``events()``
    plus a seed-chosen delay of up to MAX_DELAY; returns the number of events seen at the kill.
    ``most`` leaves at least one padded piece of work (PAD > MAX_DELAY) after it, so the kill
    lands before the run ends."""
    rng = random.Random(seed)
    after, delay = rng.randint(1, most), rng.uniform(0.0, MAX_DELAY)
    with open(log, "ab") as fh:
        proc = subprocess.Popen(
            [sys.executable, str(HERE), *args],
            env=_env(),
            cwd=REPO,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
        # a safety net against a hung run, not a claim about speed
        deadline = time.monotonic() + 600
        try:
            while events() < after:
                if proc.poll() is not None:
                    raise AssertionError(
                        f"the run ended (rc {proc.returncode}) before {after} events:\n"
                        + log.read_text()[-4000:]
                    )
                if time.monotonic() > deadline:
                    raise AssertionError(f"no {after} events in 600 s:\n{log.read_text()[-4000:]}")
                time.sleep(0.01)
            time.sleep(delay)
            assert proc.poll() is None, f"the run finished before the kill (after {after} events)"
            proc.send_signal(signal.SIGKILL)
            assert proc.wait() == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return events()


def _run_killed_at(point: str, args: list[str], log: Path) -> None:
    """Run the driver until it kills itself at ``point`` (see ``_install_kill``)."""
    with open(log, "ab") as fh:
        rc = subprocess.run(
            [sys.executable, str(HERE), "--kill-at", point, *args],
            env=_env(),
            cwd=REPO,
            stdout=fh,
            stderr=subprocess.STDOUT,
        ).returncode
    assert rc == -signal.SIGKILL, f"expected a kill at {point}, got rc {rc}:\n{log.read_text()}"


def _lines(path: Path) -> int:
    """Complete lines of a file being appended to (0 while it does not exist)."""
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _strip(obj):
    """``obj`` without the timing and where/when keys of :data:`VOLATILE`, at any depth."""
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in VOLATILE}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


# --------------------------------------------------------------------------- ablations


def _ablation_folder(out: Path) -> Path:
    (folder,) = [p for p in out.iterdir() if p.is_dir()]  # one run per --out in these tests
    return folder


def _ablation_numbers(folder: Path) -> dict:
    """What an ablation run published: each table's JSON, the memo by key (its records are
    the per-item results the tables are computed from) and each table's status."""
    memo = {r["key"]: r for r in _jsonl(folder / "evaluations.jsonl")}
    run = json.loads((folder / "run.json").read_text())
    return _strip(
        {
            "tables": {t: json.loads((folder / f"{t}.json").read_text()) for t in TABLES},
            "memo": memo,
            "status": {k: v["ok"] for k, v in run["status"].items()},
            "modules": run["modules"],
        }
    )


@pytest.fixture(scope="module")
def ablation_reference(char_llama_dir, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("ablation-ref")
    _run(["ablations", char_llama_dir, str(out / "runs")], out / "driver.log")
    numbers = _ablation_numbers(_ablation_folder(out / "runs"))
    assert all(numbers["status"].values()), numbers["status"]
    return numbers


@pytest.mark.parametrize("seed", SEEDS)
def test_killed_ablation_run_resumes_to_the_same_tables(
    char_llama_dir, ablation_reference, tmp_path, seed
):
    out = tmp_path / "runs"
    out.mkdir()
    log = tmp_path / "driver.log"

    def events() -> int:  # memo lines + table files written so far
        folders = [p for p in out.iterdir() if p.is_dir()]
        if not folders:
            return 0
        f = folders[0]
        files = sum((f / f"{t}.{x}").exists() for t in TABLES for x in ("md", "csv", "json"))
        return _lines(f / "evaluations.jsonl") + files

    # 3 performance files, then 3 memo lines of forgetting (edits, LoRA, SVF), then its table:
    # up to 5 events leaves the SVF merges' memo record (padded) between the kill and the end
    seen = _run_and_kill(["ablations", char_llama_dir, str(out)], events, seed, 5, log)
    folder = _ablation_folder(out)
    assert not (folder / "run.json").exists(), f"killed after {seen} events, yet finished"
    _run(["ablations", char_llama_dir, str(out), str(folder)], log)
    assert _ablation_numbers(folder) == ablation_reference, f"killed after {seen} events"


@pytest.mark.parametrize("point", ["memo-3", "table-forgetting"])
def test_ablation_killed_inside_a_write_resumes_to_the_same_tables(
    char_llama_dir, ablation_reference, tmp_path, point
):
    out, log = tmp_path / "runs", tmp_path / "driver.log"
    _run_killed_at(point, ["ablations", char_llama_dir, str(out)], log)
    folder = _ablation_folder(out)
    if point == "memo-3":  # killed while writing the third memo record: half of it is there
        memo = folder / "evaluations.jsonl"
        data = memo.read_bytes()
        last = data.rstrip(b"\n").rfind(b"\n") + 1
        memo.write_bytes(data[: last + (len(data) - last) // 2])
    else:  # killed between the table's CSV and its JSON (Table.write writes the JSON last)
        (folder / "seal-forgetting.json").unlink()
    _run(["ablations", char_llama_dir, str(out), str(folder)], log)
    assert _ablation_numbers(folder) == ablation_reference


# --------------------------------------------------------------------------- ReST-EM


def _restem_numbers(run: Path) -> dict:
    """A finished ReST-EM run: every scored self-edit record, each round's summary, each
    round's generator adapter (its tensors as lists; compared exactly) and the summary."""
    from safetensors.torch import load_file

    rounds = sorted(run.glob("round-*"))
    adapters = {
        r.name: {
            k: v.flatten().tolist()
            for k, v in load_file(str(r / "adapter" / "adapter_model.safetensors")).items()
        }
        for r in rounds
    }
    return _strip(
        {
            "records": _jsonl(run / "records.jsonl"),
            "rounds": {r.name: json.loads((r / "round.json").read_text()) for r in rounds},
            "adapters": adapters,
            "summary": json.loads((run / "summary.json").read_text()),
        }
    )


@pytest.fixture(scope="module")
def restem_reference(char_llama_dir, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("restem-ref")
    _run(["restem", char_llama_dir, str(out / "run")], out / "driver.log")
    numbers = _restem_numbers(out / "run")
    # the reward makes both rounds keep pairs: the generator really changes in each round
    assert all(r["kept"] > 0 for r in numbers["summary"]["rounds"]), numbers["summary"]
    assert all(any(any(v) for v in a.values()) for a in numbers["adapters"].values())
    return numbers


@pytest.mark.parametrize("seed", SEEDS)
def test_killed_restem_run_resumes_to_the_same_generator(
    char_llama_dir, restem_reference, tmp_path, seed
):
    run = tmp_path / "run"
    log = tmp_path / "driver.log"

    def events() -> int:  # scored passages + finished rounds
        return _lines(run / "records.jsonl") + len(list(run.glob("round-*/round.json")))

    # 3 records, round 1's files, 3 records, round 2's files: up to 6 events leaves the third
    # scored passage of round 2 (padded) and round 2's generator fine-tune before the end
    seen = _run_and_kill(["restem", char_llama_dir, str(run)], events, seed, 6, log)
    assert not (run / "summary.json").exists(), f"killed after {seen} events, yet finished"
    _run(["restem", char_llama_dir, str(run)], log)  # the same command again resumes it
    assert _restem_numbers(run) == restem_reference, f"killed after {seen}"


def test_restem_killed_between_adapter_and_round_file_resumes(
    char_llama_dir, restem_reference, tmp_path
):
    run, log = tmp_path / "run", tmp_path / "driver.log"
    _run_killed_at("round-2-adapter", ["restem", char_llama_dir, str(run)], log)
    assert (run / "round-2" / "adapter" / "adapter_config.json").is_file()
    assert not (run / "round-2" / "round.json").exists()
    _run(["restem", char_llama_dir, str(run)], log)
    assert _restem_numbers(run) == restem_reference


if __name__ == "__main__":
    _main(sys.argv[1:])
