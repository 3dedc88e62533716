"""File I/O every layer shares: atomic replacement, file hashes, UTC stamps, record files that
are never overwritten, and the results root.

An interrupted process never leaves a half-written file or folder under its final name: writes
go to a hidden sibling first, are flushed to disk, and are renamed over the target last."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: The environment variable that moves every default output folder (``results/`` otherwise,
#: relative to the working directory).
RESULTS_ENV = "T2BENCH_RESULTS"
_CHUNK = 1 << 20


def results_root() -> Path:
    """Where results go by default: ``$T2BENCH_RESULTS`` or ``./results``."""
    return Path(os.environ.get(RESULTS_ENV) or "results")


def results_path(*parts: str) -> Path:
    """A default output path under :func:`results_root` (``results_path("experts")``)."""
    return results_root().joinpath(*parts)


def utc_stamp() -> str:
    """The current UTC time as ``20261205T175305Z`` (file names sort by time)."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def utc_iso() -> str:
    """The current UTC time as ``2026-12-05T17:53:05Z`` (records)."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def fsync_path(path: str | os.PathLike[str]) -> None:
    """Flush a file or a folder entry to disk; silently skipped where the OS refuses."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def replacing(path: str | os.PathLike[str], *, folder: bool = False) -> Iterator[Path]:
    """Yield a hidden temporary sibling of ``path`` to write; on success flush it and rename it
    onto ``path`` (a folder replaces any folder of that name), on failure remove it.

    ``folder=True`` yields an empty folder and flushes every file written into it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    _remove(tmp)
    if folder:
        tmp.mkdir()
    try:
        yield tmp
        for f in tmp.iterdir() if folder else [tmp]:
            fsync_path(f)
        if folder and path.exists():
            shutil.rmtree(path)  # the same content rewritten after a crash
        os.replace(tmp, path)
        fsync_path(path.parent)
    finally:
        _remove(tmp)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def write_atomic(path: str | os.PathLike[str], data: str | bytes) -> Path:
    """Replace ``path`` with ``data`` (text as UTF-8) atomically."""
    with replacing(path) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    return Path(path)


def write_json_atomic(path: str | os.PathLike[str], obj, indent: int | None = 2) -> Path:
    """Replace ``path`` with ``obj`` as JSON (non-JSON values as ``str``) atomically."""
    return write_atomic(path, json.dumps(obj, indent=indent, default=str) + "\n")


def new_record(folder: str | os.PathLike[str], stem: str, payload: dict) -> Path:
    """Write ``payload`` as JSON to a new ``<stem>-<UTC stamp>.json`` under ``folder``;
    ``-1``, ``-2`` … are appended when a name is taken: an existing record is never replaced."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = utc_stamp()
    path = folder / f"{stem}-{stamp}.json"
    n = 1
    while path.exists():
        path = folder / f"{stem}-{stamp}-{n}.json"
        n += 1
    return write_json_atomic(path, payload)


def new_folder(root: str | os.PathLike[str], stem: str) -> Path:
    """Create and return a new ``<stem>-<UTC stamp>`` folder under ``root`` (``-1``, ``-2`` …
    when taken): a run never writes into an earlier run's folder."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    stamp = utc_stamp()
    path, n = root / f"{stem}-{stamp}", 1
    while True:
        try:
            path.mkdir()
            return path
        except FileExistsError:
            path, n = root / f"{stem}-{stamp}-{n}", n + 1
