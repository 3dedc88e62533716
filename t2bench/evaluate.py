"""`t2bench eval`: lm-eval's own CLI with t2's defaults (``--model t2``, the offline tasks).

Unlike plain ``lm_eval``, results that were not saved are an error: the output location is
checked before anything is evaluated (a read-only or full folder fails in a second, not after
the run), results are written atomically (a disk that fills up mid-write leaves no truncated
``results_*.json``), and a failed save exits non-zero after lm-eval has printed its table,
naming the cause and where a rescue copy went."""

from __future__ import annotations

import json
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

from t2bench.core.io import check_writable, write_new
from t2bench.errors import OutputError
from t2bench.tasks import tasks_dir


def lm_eval_argv(args: list[str]) -> list[str]:
    """Add ``--model t2`` and ``--include_path <tasks>`` unless the caller gave them."""
    out = list(args)
    if not any(a == "--model" or a.startswith("--model=") for a in out):
        out = ["--model", "t2", *out]
    if not any(a == "--include_path" or a.startswith("--include_path=") for a in out):
        out += ["--include_path", str(tasks_dir())]
    return out


def output_folder(output_path: str) -> Path:
    """The folder lm-eval writes into for ``--output_path`` (a ``*.json`` path: its folder)."""
    path = Path(output_path)
    return path.parent if path.suffix == ".json" else path


def run(args: list[str]) -> None:
    """Run ``lm_eval run <args>`` in this process, with t2's backends registered; raise
    OutputError when the output location is unusable or the results could not be saved."""
    from lm_eval.__main__ import cli_evaluate

    from t2bench.backends import register

    register()
    argv = lm_eval_argv(args)
    out = _option(argv, "--output_path")
    if out:  # before the model loads: a read-only or full location costs a second, not a run
        check_writable(output_folder(out), "--output_path folder")
    # a bad model_arg, expert file or dispatch fails here in a second, before lm-eval indexes
    # its tasks and logs its set-up
    from t2bench.backends.precheck import check_model_args

    check_model_args(_option(argv, "--model"), _option(argv, "--model_args"))
    saved_argv, sys.argv = sys.argv, ["lm_eval", "run", *argv]  # lm-eval's CLI reads sys.argv
    try:
        with strict_tracker() as trackers:
            cli_evaluate()
    finally:
        sys.argv = saved_argv
    failures = [f for t in trackers for f in t.failures]
    if failures:
        rescued = [p for t in trackers for p in t.rescued]
        copy = (
            f"a copy of what was not saved is in {rescued[0].parent}"
            if rescued
            else "the table above is the only copy of the numbers"
        )
        raise OutputError(f"results were not saved: {failures[0]}; {copy}")
    written = [
        p
        for t in trackers
        for p in t.written
        if p.name.startswith("results_") and p.suffix == ".json"
    ]
    if out and written:
        from t2bench.core.provenance import write_lm_eval_provenance
        from t2bench.tasks.code_exec import runners_used

        # humaneval/mbpp: which runner executed the model's programs (bwrap or unisolated)
        extra = {"code_runners": runners_used()} if runners_used() else None
        for path in write_lm_eval_provenance(Path(out), written, extra):
            print(f"provenance: {path}")


@contextmanager
def strict_tracker():
    """Within the block, lm-eval's CLI builds :func:`strict_tracker_class` trackers (lm-eval's
    own tracker catches every save error and only logs a warning); yields the list of trackers
    made, to read their failures afterwards. lm-eval itself is not modified: the class its CLI
    looks up (``lm_eval.loggers.EvaluationTracker``) is swapped for the block only."""
    import lm_eval.loggers as loggers

    made: list = []
    original = loggers.EvaluationTracker
    strict = strict_tracker_class(original)

    class Recorded(strict):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            made.append(self)

    loggers.EvaluationTracker = Recorded
    try:
        yield made
    finally:
        loggers.EvaluationTracker = original


def strict_tracker_class(base):
    """An lm-eval ``EvaluationTracker`` subclass whose local saves are atomic and whose
    failures are recorded (``failures``: one line each; ``rescued``: copies written to the
    temporary folder instead) rather than swallowed. Saving follows lm-eval 0.4.13's
    ``save_results_aggregated`` / ``save_results_samples`` (same file names, same JSON);
    pushes to the Hugging Face hub are left to lm-eval's own methods."""
    from lm_eval.utils import handle_non_serializable, hash_string, sanitize_list

    class StrictEvaluationTracker(base):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.failures: list[str] = []
            self.rescued: list[Path] = []
            self.written: list[Path] = []

        def _hub(self) -> bool:
            return bool(self.api and (self.push_results_to_hub or self.push_samples_to_hub))

        def _folder(self) -> Path:
            path = Path(self.output_path)
            if path.suffix == ".json":
                return path.parent
            return path / str(self.general_config_tracker.model_name_sanitized)

        def _save(self, path: Path, text: str) -> None:
            """Write ``path`` whole; after a failure (this file or an earlier one), write it
            to the rescue folder in the temporary directory instead."""
            if not self.failures:
                try:
                    self.written.append(write_new(path, text))
                    return
                except OSError as exc:  # OutputError for a full / read-only / forbidden place
                    self.failures.append(str(exc))
            rescue = Path(tempfile.gettempdir()) / f"t2bench-unsaved-{self.date_id}" / path.name
            try:
                self.rescued.append(write_new(rescue, text))
            except OSError:
                pass  # the error then says that the table is the only copy

        def save_results_aggregated(self, results: dict, samples: dict | None = None) -> None:
            if not self.output_path or self._hub():
                return super().save_results_aggregated(results, samples)
            self.general_config_tracker.log_end_time()
            task_hashes = {}
            for task_name, task_samples in (samples or {}).items():
                joined = "".join(
                    s["doc_hash"] + s["prompt_hash"] + s["target_hash"] for s in task_samples
                )
                task_hashes[task_name] = hash_string(joined)
            results.update({"task_hashes": task_hashes})
            results.update(asdict(self.general_config_tracker))
            dumped = json.dumps(
                results, indent=2, default=handle_non_serializable, ensure_ascii=False
            )
            self.date_id = datetime.now().isoformat().replace(":", "-")
            path = Path(self.output_path)
            if path.suffix == ".json":
                target = path.with_name(f"{path.stem}_{self.date_id}.json")
            else:
                target = self._folder() / f"results_{self.date_id}.json"
            self._save(target, dumped)

        def save_results_samples(self, task_name: str, samples: dict) -> None:
            if not self.output_path or self._hub():
                return super().save_results_samples(task_name, samples)
            lines = []
            for sample in samples:  # lm-eval's sanitising, so that datasets can load the file
                arguments = {}
                for i, arg in enumerate(sample["arguments"]):
                    arguments[f"gen_args_{i}"] = {f"arg_{j}": tmp for j, tmp in enumerate(arg)}
                sample["resps"] = sanitize_list(sample["resps"])
                sample["filtered_resps"] = sanitize_list(sample["filtered_resps"])
                sample["arguments"] = arguments
                sample["target"] = str(sample["target"])
                lines.append(
                    json.dumps(sample, default=handle_non_serializable, ensure_ascii=False) + "\n"
                )
            self._save(self._folder() / f"samples_{task_name}_{self.date_id}.jsonl", "".join(lines))

    return StrictEvaluationTracker


def _option(argv: list[str], name: str) -> str | None:
    for i, a in enumerate(argv):
        if a == name and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return None
