"""The model_args of ``--model t2`` / ``t2-vlm`` checked before lm-eval starts.

lm-eval indexes every task it knows (tens of seconds) and logs its set-up before it builds the
model, so a typo in ``model_args`` surfaced only after that wait and a screen of log lines.
``t2bench eval`` calls :func:`check_model_args` first: unknown argument names, the
``snapshot=`` value, every expert file (missing, truncated, not safetensors) and, for ``t2``,
the dispatch strategy and its options are checked in about a second, with the same errors the
backend raises. What needs the model itself (an expert of another model) is still checked
when the backend loads it.
"""

from __future__ import annotations

from t2bench.errors import ConfigError

MODELS = ("t2", "t2-vlm")


def parse_model_args(model_args: str | None) -> dict | None:
    """``k=v,k=v`` as lm-eval reads it; None when lm-eval's parser does not take the string
    (lm-eval then reports it itself)."""
    from lm_eval.utils import simple_parse_args_string

    try:
        return simple_parse_args_string(model_args or "")
    except Exception:  # noqa: BLE001 - lm-eval's own error is the one to show
        return None


def check_model_args(model: str | None, model_args: str | None) -> None:
    """Raise the backend's ConfigError for a bad argument of ``--model t2`` / ``t2-vlm``
    without loading the model; other models are left to lm-eval."""
    if model not in MODELS:
        return
    args = parse_model_args(model_args)
    if args is None:
        return
    from t2bench.backends.adapt import check_snapshot, default_dispatch, split_expert_paths

    if model == "t2":
        from t2bench.backends.text import valid_model_args as valid
    else:
        from t2bench.backends.vlm import valid_vlm_args as valid
    unknown = sorted(set(args) - set(valid()))
    if unknown:
        raise ConfigError(
            f"unknown model_args for {model}: {', '.join(unknown)}. Valid: {', '.join(valid())}"
        )
    check_snapshot(args.get("snapshot"))
    from t2bench.svf import load_experts

    experts = {}
    for path in split_expert_paths(args.get("experts")):
        experts.update({e.meta.name: e for e in load_experts(path)})
    if model == "t2":  # t2-vlm's strategies are checked by its backend
        import t2bench.dispatch  # noqa: F401 - registers the strategies
        from t2bench.dispatch.base import make_dispatcher

        make_dispatcher(default_dispatch(args.get("dispatch"), experts), experts)
