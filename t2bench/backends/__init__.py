"""lm-eval backends and their registration.

lm-eval 0.4.13 reads no plugin entry points, and registering a name before lm_eval.models is
imported hides every built-in backend. So ``register()`` imports lm_eval.models first, then
adds lazy placeholders ("module:Class"): nothing heavy is imported until a backend is used.
Newer lm-eval releases find the same targets through the ``lm_eval.models`` entry points.
"""

from __future__ import annotations

BACKENDS = {"t2": "t2bench.backends.text:T2LM", "t2-vlm": "t2bench.backends.vlm:T2VLM"}


def register() -> None:
    """Register t2bench's backends with lm-eval (idempotent; built-ins stay visible)."""
    import lm_eval.models  # noqa: F401  (the built-in table, registered first)
    from lm_eval.api.registry import model_registry

    for name, target in BACKENDS.items():
        if name not in model_registry:
            model_registry.register(name, target=target)
