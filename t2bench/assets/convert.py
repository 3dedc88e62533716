"""Conversion: de-quantize a GGUF file once into an ordinary float32 Hugging Face folder.

The only module that uses torch and transformers, imported inside the function so that
importing :mod:`t2bench.assets` stays cheap. Tests replace :func:`_convert_gguf`
(``monkeypatch.setattr(convert, "_convert_gguf", ...)``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from t2bench.assets import store


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
    store._log(f"converting {gguf_path.name} (de-quantizing to float32) ...")
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
    store._log(f"  converted in {total:.1f} s (model {t_model:.1f} s, tokenizer {t_tok:.1f} s)")
    return {
        "architectures": list(getattr(model.config, "architectures", None) or []),
        "num_parameters": int(sum(p.numel() for p in model.parameters())),
        "dtype": "float32",
        "has_chat_template": bool(getattr(tokenizer, "chat_template", None)),
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "conversion_seconds": round(total, 2),
    }
