"""File I/O every layer shares: atomic replacement, file hashes, UTC stamps, record files that
are never overwritten, and the results root.

An interrupted process never leaves a half-written file or folder under its final name: writes
go to a hidden sibling first, are flushed to disk, and are renamed over the target last. A full,
read-only or forbidden output location is one :class:`~t2bench.errors.OutputError` naming the
place, the cause (the OS's words and errno name) and the fix; :func:`check_writable` finds it
before any work is done."""

from __future__ import annotations

import datetime as _dt
import errno
import hashlib
import json
import os
import re
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
    """Replace ``path`` with ``data`` (text as UTF-8) atomically.

    A full, read-only or forbidden location raises :class:`~t2bench.errors.OutputError`
    naming ``path`` and the cause; the previous file (if any) is unchanged and no temporary
    is left."""
    with output_errors(path), replacing(path) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    return Path(path)


def write_new(path: str | os.PathLike[str], data: str | bytes) -> Path:
    """Write ``data`` to ``path``, which must not exist yet (a published file is never
    replaced: FileExistsError), atomically: a full disk or a kill leaves no partial file."""
    path = Path(path)
    taken = f"{path} exists; published files are never overwritten"
    if path.exists():
        raise FileExistsError(taken)
    tmp = path.with_name(f".{path.name}.new{os.getpid()}")
    with output_errors(path):  # outside the clean-up: the free space it reports is real
        try:
            tmp.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as fh:
                fh.write(data.encode() if isinstance(data, str) else data)
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, path)  # refuses (FileExistsError) a file published meanwhile
            except FileExistsError:
                raise FileExistsError(taken) from None
            except OSError:  # a file system without hard links: check, then rename
                if path.exists():
                    raise FileExistsError(taken) from None
                os.replace(tmp, path)
            fsync_path(path.parent)
        finally:
            tmp.unlink(missing_ok=True)
    return path


def save_tensors(path: str | os.PathLike[str], tensors: dict, metadata: dict | None = None) -> Path:
    """safetensors' ``save_file``, written through :func:`write_atomic`: a full disk raises
    :class:`~t2bench.errors.OutputError` naming the file and the cause (safetensors' own writer
    raises a bare ``SafetensorError``)."""
    from safetensors.torch import save

    return write_atomic(path, save(tensors, metadata=metadata))


def load_tensors(path: str | os.PathLike[str]) -> dict:
    """safetensors' ``load_file``, with a damaged file named in the error (safetensors' own
    ``SafetensorError`` names neither the file nor that it is truncated): raises ValueError."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except SafetensorError as exc:
        raise ValueError(
            f"{Path(path).name}: {exc}; the file is truncated or not safetensors"
        ) from None


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


def new_record_with_markdown(
    folder: str | os.PathLike[str], stem: str, payload: dict, text: str
) -> Path:
    """:func:`new_record`, and ``text`` (its Markdown rendering) beside it as ``.md``."""
    path = new_record(folder, stem, payload)
    write_atomic(path.with_suffix(".md"), text)
    return path


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


# --------------------------------------------------------------------------- output locations

#: errno values that mean "this location cannot take the output" (a full, read-only or
#: forbidden location), as opposed to a bug: these become one line naming cause and place.
WRITE_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}
)


def _existing(path: Path) -> Path:
    """``path`` or its nearest existing ancestor."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def free_bytes(path: str | os.PathLike[str]) -> int | None:
    """Bytes free on the file system that holds (or would hold) ``path``; None if unknown."""
    try:
        return shutil.disk_usage(_existing(Path(path))).free
    except OSError:
        return None


def _size(n: int | None) -> str:
    if n is None:
        return "unknown"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def write_error_message(exc: OSError, target: str | os.PathLike[str] | None, what: str = "") -> str:
    """One line: what could not be written (``what``, e.g. "output folder", then the path), why
    (the OS's words and errno name) and the fix."""
    target = target if target is not None else (exc.filename or "the output location")
    cause = exc.strerror or str(exc)
    code = errno.errorcode.get(exc.errno or -1)
    cause = f"{cause} ({code})" if code else cause
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        fix = (
            f"{_size(free_bytes(target))} free on that file system: free space there or "
            "pass another output location"
        )
    elif exc.errno == errno.EROFS:
        fix = "that file system is mounted read-only: pass a writable output location"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        fix = "no permission to write there: pass a writable output location"
    else:
        fix = "pass a writable output location"
    return f"cannot write {what + ' ' if what else ''}{target}: {cause}; {fix}"


def as_output_error(
    exc: OSError, target: str | os.PathLike[str] | None, note: str = "", what: str = ""
):
    """``exc`` as an :class:`~t2bench.errors.OutputError` naming ``what`` and ``target`` (with
    ``note``, e.g. what was kept) when it is a full / read-only / forbidden location; otherwise
    ``exc`` itself."""
    from t2bench.errors import OutputError

    if exc.errno not in WRITE_ERRNOS:
        return exc
    err = OutputError(write_error_message(exc, target, what) + (f"; {note}" if note else ""))
    err.errno, err.strerror, err.filename = exc.errno, exc.strerror, str(target)
    return err


def os_error_of(exc: BaseException) -> OSError | None:
    """The OSError behind ``exc``: ``exc`` itself, or the ``(os error N)`` that Rust-backed
    libraries (safetensors, tokenizers) put in their own exception's message."""
    if isinstance(exc, OSError):
        return exc
    found = re.search(r"\(os error (\d+)\)", str(exc))
    if found:
        code = int(found.group(1))
        return OSError(code, os.strerror(code))
    return None


@contextmanager
def output_errors(target: str | os.PathLike[str], note: str = "", what: str = ""):
    """Inside the block, a full, read-only or forbidden location (an OSError, or a Rust
    library's ``(os error N)``) becomes :class:`~t2bench.errors.OutputError` naming ``what``,
    ``target``, the cause, the fix and ``note`` (what was kept); other errors pass unchanged."""
    try:
        yield
    except Exception as exc:
        os_exc = os_error_of(exc)
        if os_exc is None or os_exc.errno not in WRITE_ERRNOS:
            raise
        raise as_output_error(os_exc, target, note, what) from exc


def check_writable(folder: str | os.PathLike[str], what: str = "output folder") -> Path:
    """Create ``folder`` if needed and write, flush and remove a small probe file in it, so that
    a read-only, full or forbidden location is refused before any work is done (raises
    :class:`~t2bench.errors.OutputError` naming ``what``, the folder and the cause). Folders it
    created are removed again when the check fails."""
    folder = Path(folder)
    first_missing = None
    probe_at = Path(os.path.abspath(folder))
    while not probe_at.exists() and probe_at != probe_at.parent:
        first_missing, probe_at = probe_at, probe_at.parent
    probe = folder / f".t2bench-write-test-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        try:
            with open(probe, "wb") as fh:
                fh.write(b"t2bench checks that this folder takes output\n")
                fh.flush()
                os.fsync(fh.fileno())
        finally:
            probe.unlink(missing_ok=True)
    except OSError as exc:
        if first_missing is not None:  # leave the tree as it was
            for made in [folder, *folder.parents]:
                if made == first_missing.parent:
                    break
                try:
                    made.rmdir()
                except OSError:
                    break
        raise as_output_error(exc, folder, what=what) from None
    return folder
