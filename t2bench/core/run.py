"""The pieces every resumable run shares (RL and NTP training, vision pre-training, ReST-EM):
its JSONL log, its checkpoint folders, the check that a resumed run has the settings it was
started with, the stop on a non-finite value, and the seeded batch order.

A run folder holds ``log.jsonl`` (one record per line, fsynced), ``checkpoints/<name>/``
(each written whole by :func:`t2bench.core.io.replacing`; complete when its marker file exists)
and a summary written last. A kill at any moment leaves the newest complete checkpoint and the
log records up to it; rerunning the same command resumes there."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from t2bench.errors import ConfigError, T2BenchError


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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        return kept

    def append(self, record: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as fh:
            fh.write(json.dumps(record) + "\n")
            fh.flush()
            os.fsync(fh.fileno())


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
