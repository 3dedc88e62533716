"""Where the base weights of the adapted matrices are kept while an expert is applied.

Every apply composes W' from the base W, and every restore writes W back, so the patcher
needs W after it has overwritten it. Three places, one per ``snapshot=`` option:

- ``device``: a copy next to the weight (the default): no transfer per apply, but the
  adapted matrices take twice their memory on the accelerator.
- ``cpu``: a copy in host memory: the accelerator holds each matrix once; every apply and
  restore copies the matrices over, one at a time. On a model that runs on the CPU this is
  the same memory as ``device``.
- ``disk``: no copy: the matrices are read again from the model's safetensors files, one at a
  time, on each apply and restore. Checked bit for bit against the loaded weights when the
  store is built, so a file that does not hold exactly the loaded weights (another dtype
  rounding, a merged adapter, a changed file) is refused up front, not discovered in scores.

Each holds exactly the bits of W, so restore is bit-exact with every option. Recomposing W
from the cached U, σ, Vᵀ instead would need no memory but is not exact (fp32 round-off of
the SVD), so it is not offered.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import safe_open

from t2bench.errors import ConfigError

SNAPSHOTS = ("device", "cpu", "disk")


class BaseStore:
    """The base value of each adapted weight (by target key), on demand on its device."""

    kind = ""

    def take(self, weights: Mapping[str, torch.Tensor]) -> None:
        """Record the base weights; called once, before the first write to them."""

    def get(self, key: str, weight: torch.Tensor) -> torch.Tensor:
        """The base value of ``weight`` (key ``key``) on ``weight``'s device and dtype."""
        raise NotImplementedError

    def nbytes(self) -> dict[str, int]:
        """Bytes this store holds, by device type (``{"cuda": ..}``, ``{"cpu": ..}``)."""
        return {}


class CopyStore(BaseStore):
    """A copy of every adapted matrix on ``device`` (None: each weight's own device)."""

    def __init__(self, device: str | torch.device | None = None):
        self.kind = "device" if device is None else "cpu"
        self.device = None if device is None else torch.device(device)
        self._base: dict[str, torch.Tensor] = {}

    def take(self, weights: Mapping[str, torch.Tensor]) -> None:
        if not self._base:
            self._base = {
                # copy=True: .to() returns the weight itself when it is already on that device
                k: w.detach().clone()
                if self.device is None
                else w.detach().to(self.device, copy=True)
                for k, w in weights.items()
            }

    def get(self, key: str, weight: torch.Tensor) -> torch.Tensor:
        return self._base[key].to(weight.device)  # no copy when already there

    def nbytes(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self._base.values():
            out[t.device.type] = out.get(t.device.type, 0) + t.numel() * t.element_size()
        return out


def _file_state(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


class FileStore(BaseStore):
    """Base weights read back from a model folder's ``*.safetensors`` files.

    ``weights`` (module name + ``.weight`` → live tensor, by target key) are located in the
    files at construction: the tensor of the same name, else the one unique tensor whose name
    ends like it (checkpoints of image-text models prefix their towers differently from the
    loaded modules). Each is then compared with the live weight bit for bit, after the same
    cast to the weight's dtype that loading did; any difference is a ConfigError.
    """

    kind = "disk"

    def __init__(self, folder: str | os.PathLike[str], names: Mapping[str, str], weights):
        folder = Path(folder)
        files = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
        if not files:
            raise ConfigError(
                f"snapshot=disk: no *.safetensors files in {folder}; the base weights can only be "
                "read back from a local safetensors model folder. Use snapshot=cpu or device"
            )
        index: dict[str, Path] = {}
        for f in files:
            with safe_open(str(f), framework="pt") as fh:
                index.update(dict.fromkeys(fh.keys(), f))
        self.files = {f: _file_state(f) for f in files}
        self.where: dict[str, tuple[Path, str]] = {}
        for key, module_name in names.items():
            self.where[key] = self._locate(module_name, index, folder)
        for key, weight in weights.items():  # bit-exact or refused, before anything is written
            if not torch.equal(self.get(key, weight), weight.detach()):
                path, name = self.where[key]
                raise ConfigError(
                    f"snapshot=disk: {name} in {path.name} is not bit-identical to the loaded "
                    f"weight of {names[key]} (dtype {weight.dtype}); restoring from the file "
                    "would not give back the evaluated base model. Use snapshot=cpu or device"
                )

    @staticmethod
    def _locate(module_name: str, index: Mapping[str, Path], folder: Path) -> tuple[Path, str]:
        full = f"{module_name}.weight"
        if full in index:
            return index[full], full
        parts = full.split(".")
        for i in range(1, len(parts) - 1):  # ever shorter tails, while they name one tensor
            tail = ".".join(parts[i:])
            hits = [k for k in index if k == tail or k.endswith("." + tail)]
            if len(hits) == 1:
                return index[hits[0]], hits[0]
            if len(hits) > 1:
                break  # shorter tails can only match more tensors
        raise ConfigError(
            f"snapshot=disk: no tensor for {module_name}.weight in the safetensors files of "
            f"{folder}. Use snapshot=cpu or device"
        )

    def get(self, key: str, weight: torch.Tensor) -> torch.Tensor:
        path, name = self.where[key]
        if _file_state(path) != self.files[path]:
            raise ConfigError(
                f"snapshot=disk: {path} changed after the model was loaded; the base weights "
                "can no longer be restored from it. Reload the model"
            )
        with safe_open(str(path), framework="pt", device=str(weight.device)) as fh:
            return fh.get_tensor(name).to(weight.dtype)


def make_store(
    kind: str,
    *,
    folder: str | os.PathLike[str] | None = None,
    names: Mapping[str, str] | None = None,
    weights: Mapping[str, torch.Tensor] | None = None,
) -> BaseStore:
    """The store for a ``snapshot=`` option; ``disk`` needs the model folder and, by key, the
    adapted modules' names and live weights."""
    if kind == "device":
        return CopyStore()
    if kind == "cpu":
        return CopyStore("cpu")
    if kind == "disk":
        if folder is None or names is None or weights is None:
            raise ConfigError(
                "snapshot=disk needs the folder the model was loaded from; this model was not "
                "loaded from a local folder. Use snapshot=cpu or device"
            )
        return FileStore(folder, names, weights)
    raise ConfigError(f"unknown snapshot={kind!r}: use one of {', '.join(SNAPSHOTS)}")
