"""The pieces every resumable run shares (RL and NTP training, vision pre-training, ReST-EM):
:class:`RunFolder` (its JSONL log, checkpoint folders, the check that a resumed run has the
settings it was started with, the stop on a non-finite value, the summary written last) and the
seeded batch order.

A run folder holds ``log.jsonl`` (one record per line, fsynced), ``checkpoints/<name>/``
(each written whole by :func:`t2bench.core.io.replacing`; complete when its marker file exists)
and a summary written last. A kill at any moment leaves the newest complete checkpoint and the
log records up to it; rerunning the same command resumes there."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TypeVar

from t2bench.core.io import (
    output_errors,
    replacing,
    utc_stamp,
    write_atomic,
    write_json_atomic,
)
from t2bench.errors import ConfigError, T2BenchError

T = TypeVar("T")


class DamagedCheckpointError(ConfigError):
    """A checkpoint folder is complete (its marker exists) but a file in it cannot be read."""

    def __init__(self, checkpoint: Path, cause: BaseException | str, fix: str = ""):
        self.checkpoint, self.cause = Path(checkpoint), cause
        self.reason = f"checkpoint {checkpoint} is damaged ({cause})"
        fix = fix or "delete that folder (or move it away) to resume from the one before it"
        super().__init__(f"{self.reason}; {fix}")


class NonFiniteError(T2BenchError, FloatingPointError):
    """A loss, gradient or reward became NaN or infinite; the run stopped before using it."""


def finite_or_raise(
    value,
    what: str,
    *,
    where: str,
    checkpoints: Sequence[Path],
    fix: str,
    error: type[NonFiniteError] = NonFiniteError,
) -> None:
    """Raise ``error`` naming ``what`` at ``where``, the checkpoint that is kept and ``fix``
    when any element of the tensor ``value`` is not finite."""
    import torch

    if bool(torch.isfinite(value).all()):
        return
    kept = (
        f"the last good checkpoint {checkpoints[-1]} is kept"
        if checkpoints
        else "no checkpoint was written yet"
    )
    shown = value.detach().flatten()[:4].tolist()
    raise error(f"{where}: the {what} is not finite ({shown}); the run stopped and {kept}. {fix}")


class JsonlLog:
    """An append-only JSONL file whose records survive a kill: every line is flushed to disk,
    and a last line cut by a kill is dropped when the log is read again."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)

    def records(self) -> list[dict]:
        """The complete records; a cut or unreadable tail is removed from the file."""
        if not self.path.is_file():
            return []
        records, good = [], 0
        data = self.path.read_bytes()
        for line in data.splitlines(keepends=True):
            if not line.endswith(b"\n"):
                break
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                break
            good += len(line)
        if good != len(data):
            with self.path.open("r+b") as fh:
                fh.truncate(good)
        return records

    def keep(self, predicate: Callable[[dict], bool]) -> list[dict]:
        """Rewrite the log with the complete records ``predicate`` accepts (the records up to
        the checkpoint a run resumes from); returns them."""
        kept = [r for r in self.records() if predicate(r)]
        write_atomic(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        return kept

    def append(self, record: dict, *, default: Callable | None = None) -> None:
        """Add one record; a full or read-only disk raises OutputError and leaves the log as it
        was (``default`` as for :func:`json.dumps`) (a partly written line is cut off again)."""
        line = (json.dumps(record, default=default) + "\n").encode()
        with output_errors(self.path, "the log holds every record before this one"):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("ab", buffering=0) as fh:  # unbuffered: nothing left to flush
                size = fh.seek(0, os.SEEK_END)
                try:
                    view = memoryview(line)
                    while view:  # a short write is followed by the write that fails
                        view = view[fh.write(view) :]
                    os.fsync(fh.fileno())
                except OSError:
                    fh.truncate(size)
                    raise


def complete_checkpoints(
    root: Path, marker: str, *, name_ok: Callable[[str], bool], order: Callable[[Path], object]
) -> list[Path]:
    """Checkpoint folders under ``root`` that hold ``marker`` and whose name ``name_ok``
    accepts, oldest first by ``order`` (temporary leftovers are ignored)."""
    if not root.is_dir():
        return []
    done = [p for p in root.iterdir() if name_ok(p.name) and (p / marker).is_file()]
    return sorted(done, key=order)


def prune_checkpoints(done: Sequence[Path], keep: int) -> None:
    """Remove all but the newest ``keep`` of ``done`` (oldest first); ``keep <= 0`` keeps all."""
    for old in done[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)


def config_differences(
    now: dict, saved: dict, *, free: Iterable[str] = (), prefix: str = ""
) -> list[str]:
    """``key: now …, checkpoint …`` for every setting (nested dicts by dotted key) that differs
    between a run's current config and the one it was started with; top-level keys in ``free``
    (output folder, logging) may change on resume."""
    free = set(free)
    diffs = []
    for key in sorted(set(now) | set(saved)):
        if not prefix and key in free:
            continue
        a, b = now.get(key), saved.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += config_differences(a, b, prefix=f"{prefix}{key}.")
        elif a != b:
            diffs.append(f"{prefix}{key}: now {a!r}, checkpoint {b!r}")
    return diffs


def refuse_other_settings(out: Path, diffs: list[str], what: str) -> None:
    """The one error a run gives when asked to resume with other settings."""
    if diffs:
        raise ConfigError(
            f"{out} holds a {what} started with other settings ({'; '.join(diffs)}): rerun with "
            "the same settings to resume it, or pass a new output folder"
        )


def epoch_order(
    first: int, count: int, n: int, permutation: Callable[[int], Sequence[int]]
) -> list[int]:
    """Items ``first .. first + count - 1`` of the endless stream that reads one seeded
    permutation of ``range(n)`` per epoch (``permutation(epoch)``): a pure function of the
    position, so a resumed run reads exactly the batches an uninterrupted one would."""
    out = []
    for pos in range(first, first + count):
        epoch, offset = divmod(pos, n)
        out.append(int(permutation(epoch)[offset]))
    return out


class RunFolder:
    """The folder of one resumable run, and everything a run does with it.

    ``what`` names the run in messages ("training run", "pre-training run", "SEAL run").
    Checkpoints are folders under ``checkpoints/`` whose name ``checkpoint_ok`` accepts, ordered
    by ``checkpoint_order``; each is complete once its ``state.json`` (written last) exists.
    ``summary.json`` marks a finished run, which is never overwritten."""

    LOG = "log.jsonl"
    SUMMARY = "summary.json"
    CONFIG = "config.json"
    CHECKPOINTS = "checkpoints"
    STATE = "state.json"

    def __init__(
        self,
        path: str | os.PathLike[str],
        what: str,
        *,
        log: str = LOG,
        checkpoint_ok: Callable[[str], bool] = lambda name: True,
        checkpoint_order: Callable[[Path], object] = lambda p: p.name,
    ):
        self.path = Path(path)
        self.what = what
        self.log = JsonlLog(self.path / log)
        self._ok, self._order = checkpoint_ok, checkpoint_order

    # ---------------------------------------------------------------- finished or not

    @property
    def summary_path(self) -> Path:
        return self.path / self.SUMMARY

    def refuse_finished(self) -> None:
        """Refuse to run again into a folder whose run has finished."""
        if self.summary_path.exists():
            raise ConfigError(
                f"{self.path} already holds a finished {self.what} ({self.SUMMARY}); results "
                "are never overwritten: pass a new output_dir, or delete that folder to redo it"
            )

    def write_summary(self, summary: dict) -> Path:
        """Write the summary (atomically) that marks the run finished."""
        return write_json_atomic(self.summary_path, summary)

    # ---------------------------------------------------------------- settings

    def check_settings(self, now: dict, saved: dict, *, free: Iterable[str] = ()) -> None:
        """Refuse to resume a run started with settings other than ``now`` (keys in ``free``
        may change on resume)."""
        refuse_other_settings(self.path, config_differences(now, saved, free=free), self.what)

    def pin_config(self, now: dict, *, free: Iterable[str] = ()) -> None:
        """Write ``config.json`` on the first session; check ``now`` against it on later ones."""
        path = self.path / self.CONFIG
        if path.is_file():
            self.check_settings(now, json.loads(path.read_text()), free=free)
        else:
            write_json_atomic(path, now)

    # ---------------------------------------------------------------- checkpoints

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / self.CHECKPOINTS

    def checkpoints(self) -> list[Path]:
        """Complete checkpoint folders, oldest first (temporary leftovers are ignored)."""
        return complete_checkpoints(
            self.checkpoint_dir, self.STATE, name_ok=self._ok, order=self._order
        )

    def save_checkpoint(
        self, name: str, state: dict, write: Callable[[Path], None], *, keep: int
    ) -> Path:
        """Write checkpoint ``name`` whole: ``write(folder)`` adds its tensors, then
        ``state.json`` goes in last and the folder is renamed into place (a kill leaves the
        complete checkpoint or none); all but the newest ``keep`` are removed."""
        final = self.checkpoint_dir / name
        done = self.checkpoints()
        kept = (
            f"the last complete checkpoint {done[-1].name} is kept: rerun the same command to "
            "resume from it"
            if done
            else "no checkpoint was written yet"
        )
        # a full or read-only disk: the temporary folder is removed, the error names the cause
        with output_errors(final, f"nothing partial was left; {kept}", "checkpoint"):
            # the same step redone after a crash writes the same content and replaces it
            with replacing(final, folder=True) as tmp:
                write(tmp)
                (tmp / self.STATE).write_text(json.dumps(state, indent=1))
        prune_checkpoints(self.checkpoints(), keep)
        return final

    DAMAGED = "damaged-checkpoints"

    def latest_checkpoint(
        self, load: Callable[[Path], T], *, set_aside: bool = True, say=None
    ) -> T | None:
        """``load`` of the newest checkpoint that loads; None when there is none.

        A checkpoint ``load`` reports as damaged (:class:`DamagedCheckpointError`: a truncated
        or unreadable file) is skipped for the complete one before it and (``set_aside``; one
        process of a data-parallel run does it) moved to ``damaged-checkpoints/`` beside
        ``checkpoints/``: kept for inspection, out of the rotation. ``say`` (default: print to
        stderr) tells which checkpoint was skipped and which one the run resumes from. A
        damaged checkpoint with none before it is an error (the run is not silently restarted).
        """
        say = say or (lambda msg: print(msg, file=sys.stderr, flush=True))
        done = self.checkpoints()
        for i in range(len(done) - 1, -1, -1):
            path = done[i]
            try:
                return load(path)
            except DamagedCheckpointError as exc:
                if i == 0:
                    raise DamagedCheckpointError(
                        path,
                        exc.cause,
                        f"there is no complete checkpoint before it: move that folder away to "
                        f"start the {self.what} over",
                    ) from None
                where = path
                if set_aside:
                    where = self.path / self.DAMAGED / path.name
                    if where.exists():
                        where = where.with_name(f"{path.name}-{utc_stamp()}")
                    where.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(path, where)
                say(
                    f"warning: {exc.reason}; resuming from the previous complete checkpoint "
                    f"{done[i - 1].name} (the damaged one is kept at {where})"
                )
        return None

    @classmethod
    def read_state(cls, checkpoint: Path) -> dict:
        """The ``state.json`` of a checkpoint folder (what its writer passed as ``state``)."""
        return json.loads((Path(checkpoint) / cls.STATE).read_text())

    def remove_checkpoints(self) -> None:
        """Drop the checkpoints once the run's result and summary are written."""
        shutil.rmtree(self.checkpoint_dir, ignore_errors=True)

    # ---------------------------------------------------------------- non-finite values

    def check_finite(
        self,
        value,
        what: str,
        *,
        where: str,
        fix: str,
        error: type[NonFiniteError] = NonFiniteError,
    ) -> None:
        """Stop the run (``error``) when ``value`` holds NaN or inf, naming the checkpoint kept."""
        finite_or_raise(
            value, what, where=where, checkpoints=self.checkpoints(), fix=fix, error=error
        )
