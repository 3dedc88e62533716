"""Singular value decomposition of the adapted matrices, cached on disk by content.

Each matrix's SVD (U, σ, Vᵀ in fp32) is stored under the sha256 of the matrix itself, so a
cache entry can never be used for other weights, and module sets that share matrices
(``mlp`` and ``all``) share entries. The model fingerprint is the hash of those hashes.
"""

from __future__ import annotations

import hashlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from t2bench.assets import cache_root  # no heavy imports: assets is pure Python
from t2bench.core.io import replacing
from t2bench.svf.targets import Target, TargetSpec, find_targets, shape_fingerprint

CACHE_FORMAT = "svd-v1"


@dataclass
class MatrixSVD:
    """W = U diag(S) Vh with U (m×r), S (r), Vh (r×n), r = min(m, n); fp32."""

    U: torch.Tensor
    S: torch.Tensor
    Vh: torch.Tensor


@dataclass
class Decomposition:
    """The SVDs of one model's adapted matrices, plus what identifies them."""

    targets: list[Target]
    svd: dict[str, MatrixSVD]
    matrix_hashes: dict[str, str]
    spec: TargetSpec
    model_id: str = "unknown"
    stats: dict[str, float] = field(default_factory=dict)

    @property
    def keys(self) -> list[str]:
        return [t.key for t in self.targets]

    @property
    def shapes(self) -> dict[str, tuple[int, int]]:
        return {t.key: t.shape for t in self.targets}

    @property
    def shape_fingerprint(self) -> str:
        return shape_fingerprint(self.targets)

    @property
    def fingerprint(self) -> str:
        """Content fingerprint of the adapted weights (same weights ⇔ same fingerprint)."""
        payload = "\n".join(f"{k}:{self.matrix_hashes[k]}" for k in self.keys)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    @property
    def layers(self) -> list[int]:
        return sorted({t.layer for t in self.targets})

    def sigmas(self) -> dict[str, torch.Tensor]:
        return {k: v.S for k, v in self.svd.items()}

    def num_parameters(self) -> int:
        return sum(t.rank for t in self.targets)

    def nbytes(self) -> dict[str, int]:
        """Bytes of the held U, σ, Vᵀ by device type: with r = min(m, n) and fp32, more than
        the adapted matrices themselves (m·r + r + r·n against m·n elements)."""
        out: dict[str, int] = {}
        for s in self.svd.values():
            for t in (s.U, s.S, s.Vh):
                out[t.device.type] = out.get(t.device.type, 0) + t.numel() * t.element_size()
        return out


def default_cache_dir() -> Path:

    return cache_root() / "svd"


def matrix_hash(weight: torch.Tensor) -> str:
    """sha256 of a weight's dtype, shape and raw bytes."""
    t = weight.detach().to("cpu").contiguous()
    h = hashlib.sha256(f"{t.dtype}|{tuple(t.shape)}|".encode())
    h.update(t.view(torch.uint8).numpy().data)
    return h.hexdigest()


def svd_fp32(weight: torch.Tensor) -> MatrixSVD:
    """Thin SVD in fp32 on the weight's own device."""
    U, S, Vh = torch.linalg.svd(weight.detach().float(), full_matrices=False)
    return MatrixSVD(U.contiguous(), S.contiguous(), Vh.contiguous())


def _cache_path(cache_dir: Path, digest: str) -> Path:
    return cache_dir / CACHE_FORMAT / digest[:2] / f"{digest}.safetensors"


def _load_cached(path: Path, weight: torch.Tensor) -> MatrixSVD | None:
    try:
        d = load_file(str(path), device=str(weight.device))
        svd = MatrixSVD(d["U"], d["S"], d["Vh"])
    except Exception as exc:  # a damaged cache entry is recomputed, never trusted
        print(f"t2bench: ignoring unreadable SVD cache entry {path} ({exc})", file=sys.stderr)
        return None
    m, n = weight.shape
    r = min(m, n)
    if svd.U.shape != (m, r) or svd.S.shape != (r,) or svd.Vh.shape != (r, n):
        print(f"t2bench: ignoring SVD cache entry {path} with wrong shapes", file=sys.stderr)
        return None
    return svd


def _store(path: Path, svd: MatrixSVD) -> None:
    tensors = {"U": svd.U.cpu(), "S": svd.S.cpu(), "Vh": svd.Vh.cpu()}
    with replacing(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": CACHE_FORMAT})


def decompose(
    model: nn.Module,
    spec: TargetSpec | None = None,
    *,
    model_id: str | None = None,
    cache_dir: Path | str | None = None,
    use_cache: bool = True,
    progress: bool = True,
) -> Decomposition:
    """SVD of every matrix ``spec`` selects in ``model``, read from or written to the cache.

    ``cache_dir=None`` uses ``$T2BENCH_HOME/svd``; ``use_cache=False`` computes everything
    and writes nothing.
    """
    spec = spec or TargetSpec()
    targets = find_targets(model, spec)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    modules = dict(model.named_modules())
    svds: dict[str, MatrixSVD] = {}
    hashes: dict[str, str] = {}
    hits = 0
    t_hash = t_svd = t_io = 0.0
    for t in tqdm(targets, desc="SVD", unit="matrix", disable=not progress, leave=False):
        weight = modules[t.module_name].weight
        t0 = time.perf_counter()
        digest = matrix_hash(weight)
        t_hash += time.perf_counter() - t0
        hashes[t.key] = digest
        path = _cache_path(cache, digest)
        svd = None
        if use_cache and path.exists():
            t0 = time.perf_counter()
            svd = _load_cached(path, weight)
            t_io += time.perf_counter() - t0
            hits += svd is not None
        if svd is None:
            t0 = time.perf_counter()
            svd = svd_fp32(weight)
            t_svd += time.perf_counter() - t0
            if use_cache:
                t0 = time.perf_counter()
                _store(path, svd)
                t_io += time.perf_counter() - t0
        svds[t.key] = svd
    name = model_id or getattr(getattr(model, "config", None), "_name_or_path", None) or "unknown"
    stats = {
        "matrices": float(len(targets)),
        "cache_hits": float(hits),
        "hash_s": t_hash,
        "svd_s": t_svd,
        "io_s": t_io,
    }
    return Decomposition(targets, svds, hashes, spec, model_id=str(name), stats=stats)
