"""Parameter counts of SVF, LoRA and IA3 from a model config alone (no weights needed).

Shapes follow the Llama-style layout: q (H·d × h), k and v (KV·d × h), o (h × H·d),
gate and up (I × h), down (h × I), with d = head_dim (or h / H when the config has none).
"""

from __future__ import annotations

from dataclasses import dataclass

from t2bench.svf.targets import ROLE_ORDER, parse_layers, parse_module_set

# peft's IA3 defaults for Llama-style models: scale k, v outputs and the down_proj input.
IA3_ROLES = ("k", "v", "down")
IA3_FEEDFORWARD = ("down",)


@dataclass(frozen=True)
class LayerShapes:
    """(out, in) of each role in one decoder layer, and the number of layers."""

    shapes: dict[str, tuple[int, int]]
    num_layers: int


def layer_shapes(config) -> LayerShapes:
    """Per-layer matrix shapes of a transformers config (text part for multimodal configs)."""
    cfg = config.get_text_config() if hasattr(config, "get_text_config") else config
    h = cfg.hidden_size
    heads = cfg.num_attention_heads
    kv = getattr(cfg, "num_key_value_heads", None) or heads
    d = getattr(cfg, "head_dim", None) or h // heads
    inter = cfg.intermediate_size
    shapes = {
        "q": (heads * d, h),
        "k": (kv * d, h),
        "v": (kv * d, h),
        "o": (h, heads * d),
        "gate": (inter, h),
        "up": (inter, h),
        "down": (h, inter),
    }
    return LayerShapes(shapes, cfg.num_hidden_layers)


def _selected(config, modules: str, layers: str):
    ls = layer_shapes(config)
    roles = parse_module_set(modules)
    n_layers = len(parse_layers(layers, ls.num_layers))
    return ls, roles, n_layers


def svf_params(config, modules: str = "mlp", layers: str = "all") -> int:
    """Σ min(m, n) over the adapted matrices."""
    ls, roles, n = _selected(config, modules, layers)
    return n * sum(min(ls.shapes[r]) for r in roles)


def lora_params(config, rank: int = 16, modules: str = "q,v", layers: str = "all") -> int:
    """Σ r·(m + n) over the adapted matrices (A is r×n, B is m×r)."""
    ls, roles, n = _selected(config, modules, layers)
    return n * sum(rank * sum(ls.shapes[r]) for r in roles)


def ia3_params(config, modules: str = ",".join(IA3_ROLES), layers: str = "all") -> int:
    """One scale per output feature (per input feature for feed-forward modules), as peft's IA3."""
    ls, roles, n = _selected(config, modules, layers)
    return n * sum(ls.shapes[r][1] if r in IA3_FEEDFORWARD else ls.shapes[r][0] for r in roles)


def tinylora_params(
    config, u: int = 64, tying: float = 0.0, modules: str = "mlp", layers: str = "all"
) -> int:
    """u per group of adapted matrices, as peft's TinyLoRA groups them: max(1, round(M·(1 −
    tying))) groups of the M matrices (tying 0: one vector per matrix; 1: one for all)."""
    ls, roles, n = _selected(config, modules, layers)
    return u * max(1, round(n * len(roles) * (1.0 - tying)))


def count_table(
    config, modules: str = "mlp", lora_rank: int = 16, layers: str = "all"
) -> dict[str, int]:
    """The counts `t2bench params` prints."""
    return {
        f"svf[{modules}]": svf_params(config, modules, layers),
        "svf[mlp]": svf_params(config, "mlp", layers),
        "svf[attn]": svf_params(config, "attn", layers),
        "svf[all]": svf_params(config, "all", layers),
        f"lora[r{lora_rank},q,v]": lora_params(config, lora_rank, "q,v", layers),
        f"lora[r{lora_rank},q,v+mlp]": lora_params(config, lora_rank, "q,v,gate,up,down", layers),
        "ia3[k,v,down]": ia3_params(config, layers=layers),
    }


__all__ = [
    "ROLE_ORDER",
    "LayerShapes",
    "layer_shapes",
    "svf_params",
    "lora_params",
    "ia3_params",
    "tinylora_params",
    "count_table",
]
