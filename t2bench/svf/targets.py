"""Which weight matrices SVF adapts: module sets, layer selections, and finding them in a model.

Matrices are named by a canonical key ``layers.<i>.<role>`` (role in q, k, v, o, gate, up,
down) rather than by the module path, so an expert fits any model with the same shapes
whatever prefix its architecture uses (``model.layers``, ``model.language_model.layers``, ...).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

from torch import nn

from t2bench.errors import ConfigError

# Llama-style projection names, shared by Llama, Mistral, Qwen2/3, Gemma 1-3, SmolLM, OLMo, ...
ROLE_SUFFIXES: dict[str, str] = {
    "q": "q_proj",
    "k": "k_proj",
    "v": "v_proj",
    "o": "o_proj",
    "gate": "gate_proj",
    "up": "up_proj",
    "down": "down_proj",
}
ROLE_ORDER = tuple(ROLE_SUFFIXES)

MODULE_SETS: dict[str, tuple[str, ...]] = {
    "mlp": ("gate", "up", "down"),
    "attn": ("q", "v"),
    "attn-all": ("q", "k", "v", "o"),
    "mlp+attn": ("q", "v", "gate", "up", "down"),
    "all": ROLE_ORDER,
}

LAYER_WORDS = ("all", "even", "odd", "first-half", "last-half")

_LAYER_RE = re.compile(r"(?:^|\.)layers\.(\d+)\.(?:.*\.)?(\w+)$")


def parse_module_set(modules: str) -> tuple[str, ...]:
    """Roles for a named module set, or for a comma list of roles such as ``q,v,down``."""
    name = modules.strip().lower()
    if name in MODULE_SETS:
        return MODULE_SETS[name]
    roles = tuple(r.strip() for r in name.split(",") if r.strip())
    bad = [r for r in roles if r not in ROLE_SUFFIXES]
    if not roles or bad:
        raise ConfigError(
            f"unknown module set {modules!r}: use one of {', '.join(MODULE_SETS)} "
            f"or a comma list of roles from {', '.join(ROLE_ORDER)} (e.g. 'q,v,down')"
        )
    return tuple(r for r in ROLE_ORDER if r in roles)


def parse_layers(layers: str | Iterable[int], num_layers: int) -> list[int]:
    """Layer indices for a spec: all, even, odd, first-half, last-half, '0,2,5', '0-15', '0-15:2'.

    ``even`` is every other layer starting at 0 (what the paper did for its 70B model and VLM).
    """
    if not isinstance(layers, str):
        chosen = sorted(set(int(i) for i in layers))
    else:
        spec = layers.strip().lower()
        if spec == "all":
            chosen = list(range(num_layers))
        elif spec == "even":
            chosen = list(range(0, num_layers, 2))
        elif spec == "odd":
            chosen = list(range(1, num_layers, 2))
        elif spec == "first-half":
            chosen = list(range(num_layers // 2))
        elif spec == "last-half":
            chosen = list(range(num_layers // 2, num_layers))
        else:
            chosen = sorted(set(_parse_layer_list(spec, layers)))
    out_of_range = [i for i in chosen if not 0 <= i < num_layers]
    if out_of_range or not chosen:
        raise ConfigError(
            f"layer spec {layers!r} selects {out_of_range or 'no'} layers outside 0..{num_layers - 1}; "
            f"use {', '.join(LAYER_WORDS)}, a list '0,2,5' or a range '0-15' / '0-15:2'"
        )
    return chosen


def _parse_layer_list(spec: str, original: object) -> list[int]:
    out: list[int] = []
    try:
        for part in spec.split(","):
            part = part.strip()
            if not part:
                continue
            step = 1
            if ":" in part:
                part, step_s = part.split(":", 1)
                step = int(step_s)
            if "-" in part:
                lo, hi = part.split("-", 1)
                out.extend(range(int(lo), int(hi) + 1, step))
            else:
                out.append(int(part))
    except ValueError:
        raise ConfigError(
            f"cannot read layer spec {original!r}: use {', '.join(LAYER_WORDS)}, "
            f"a list '0,2,5' or a range '0-15' / '0-15:2'"
        ) from None
    return out


#: Which stack of an image-text model SVF adapts: the language model (default), the vision
#: tower, or both. Text-only models have only a language stack.
TOWERS = ("language", "vision", "both")
#: Module-path parts that mark a vision encoder or projector inside an image-text model.
_VISION_PART = re.compile(
    r"(?:^|\.)(?:vision_tower|vision_model|visual|image_encoder|multi_modal_projector)(?:\.|$)"
)
#: Projection names of ViT/SigLIP/CLIP encoders, mapped onto the same roles.
VISION_SUFFIXES: dict[str, str] = {
    "q_proj": "q",
    "k_proj": "k",
    "v_proj": "v",
    "out_proj": "o",
    "o_proj": "o",
    "fc1": "up",
    "fc2": "down",
    "up_proj": "up",
    "down_proj": "down",
    "gate_proj": "gate",
}
VISION_PREFIX = "vision."


@dataclass(frozen=True)
class TargetSpec:
    """Which matrices to adapt: a module set (or role list), a layer selection and a tower.

    ``layers`` selects language-model layers; with ``tower="vision"`` or ``"both"`` every
    vision-encoder layer is adapted too (keys ``vision.layers.<i>.<role>``; an encoder MLP's
    fc1/fc2 count as up/down, its out_proj as o).
    """

    modules: str = "mlp"
    layers: str = "all"
    tower: str = "language"

    def __post_init__(self) -> None:
        if self.tower not in TOWERS:
            raise ConfigError(f"unknown tower {self.tower!r}: use one of {', '.join(TOWERS)}")

    def roles(self) -> tuple[str, ...]:
        return parse_module_set(self.modules)


@dataclass(frozen=True)
class Target:
    """One adapted matrix: its canonical key, module path and (out, in) shape."""

    key: str
    module_name: str
    layer: int
    role: str
    shape: tuple[int, int]

    @property
    def rank(self) -> int:
        return min(self.shape)


def _collect(model: nn.Module, roles: tuple[str, ...], vision: bool):
    """{layer: {role: (name, module)}}, the number of layers and all per-layer suffixes seen."""
    suffix_roles = VISION_SUFFIXES if vision else {v: k for k, v in ROLE_SUFFIXES.items()}
    wanted = set(roles)
    by_layer: dict[int, dict[str, tuple[str, nn.Linear]]] = {}
    seen_suffixes: set[str] = set()
    num_layers = 0
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear) or bool(_VISION_PART.search(name)) != vision:
            continue
        m = _LAYER_RE.search(name)
        if not m:
            continue
        layer, suffix = int(m.group(1)), m.group(2)
        seen_suffixes.add(suffix)
        num_layers = max(num_layers, layer + 1)
        role = suffix_roles.get(suffix)
        if role is None or role not in wanted:
            continue
        slot = by_layer.setdefault(layer, {})
        if role in slot:
            raise ConfigError(
                f"two modules map to layers.{layer}.{role}: {slot[role][0]} and {name}; "
                "this architecture has several decoder stacks, which t2bench does not support yet"
            )
        slot[role] = (name, module)
    return by_layer, num_layers, seen_suffixes


def find_targets(model: nn.Module, spec: TargetSpec) -> list[Target]:
    """The Linear modules of ``model`` selected by ``spec``, ordered by layer then role."""
    roles = spec.roles()
    targets: list[Target] = []
    if spec.tower in ("language", "both"):
        by_layer, num_layers, seen_suffixes = _collect(model, roles, vision=False)
        if not by_layer:
            raise ConfigError(
                f"module set {spec.modules!r} ({', '.join(ROLE_SUFFIXES[r] for r in roles)}) matched no "
                f"Linear layer in {type(model).__name__}; its per-layer Linear modules are "
                f"{sorted(seen_suffixes) or 'none'}. t2bench supports Llama-style projection names."
            )
        for layer in parse_layers(spec.layers, num_layers):
            slot = by_layer.get(layer, {})
            missing = [r for r in roles if r not in slot]
            if missing:
                raise ConfigError(
                    f"layer {layer} of {type(model).__name__} has no "
                    f"{', '.join(ROLE_SUFFIXES[r] for r in missing)}"
                )
            for role in roles:
                name, module = slot[role]
                shape = (module.out_features, module.in_features)
                targets.append(Target(f"layers.{layer}.{role}", name, layer, role, shape))
    if spec.tower in ("vision", "both"):
        by_layer, _, seen_suffixes = _collect(model, roles, vision=True)
        if not by_layer:
            raise ConfigError(
                f"tower={spec.tower!r} but {type(model).__name__} has no vision-encoder layer with "
                f"the {spec.modules!r} roles (vision per-layer Linear modules: "
                f"{sorted(seen_suffixes) or 'none'}). Use tower=language for a text-only model."
            )
        for layer in sorted(by_layer):
            for role in roles:
                if role in by_layer[layer]:  # encoders have no gate: mlp means fc1/fc2 there
                    name, module = by_layer[layer][role]
                    shape = (module.out_features, module.in_features)
                    targets.append(
                        Target(f"{VISION_PREFIX}layers.{layer}.{role}", name, layer, role, shape)
                    )
    return targets


def tower_of_keys(keys: Iterable[str]) -> str:
    """The tower an expert's keys cover (for rebuilding its TargetSpec)."""
    keys = list(keys)
    vision = any(k.startswith(VISION_PREFIX) for k in keys)
    language = any(not k.startswith(VISION_PREFIX) for k in keys)
    return "both" if vision and language else "vision" if vision else "language"


def shape_fingerprint(shapes: dict[str, tuple[int, int]] | list[Target]) -> str:
    """A short hash of the adapted matrices' keys and shapes: equal iff an expert fits."""
    if isinstance(shapes, list):
        shapes = {t.key: t.shape for t in shapes}
    payload = json.dumps(sorted((k, list(v)) for k, v in shapes.items()))
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
