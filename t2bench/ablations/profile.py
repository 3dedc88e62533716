"""What an ablation run evaluates and how much of it: the CPU profile (2 cores, n chosen for power,
the packaged models) and the paper profile (the paper's models and full test sets, for a GPU
machine with a model hub)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from t2bench.core.io import results_path
from t2bench.errors import ConfigError
from t2bench.tasks.lettered import TWINS
from t2bench.vlm.recipes import EXPERTS_DIR as VLM_EXPERTS_DIR
from t2bench.vlm.recipes import PROFILE_DIRS as VLM_PROFILE_DIRS


@dataclass(frozen=True)
class AblationProfile:
    name: str
    model: str | None = None  # None: the embedded default (SmolLM2-135M-Instruct)
    #: differently shaped model for shape-adaptive transfer (None: skip)
    transfer_target: str | None = "gemma-3-270m"
    #: same-shape model for the paper's transfer (None: none available, rows say so)
    same_shape_target: str | None = None
    experts: str = str(results_path("experts"))
    table4_experts: str = str(results_path("experts/table4"))
    #: experts trained on the transfer target (for target → model transfer); None: skip
    target_experts: str | None = None
    #: Table 1 / Table 4: items of each training task's held-out test split (None: all)
    heldout_n: dict[str, int | None] = field(default_factory=dict)
    #: the test split's difficulty per task (math: "mix", the split the math expert's training
    #: distribution has a test split of 1200 items for; default elsewhere)
    heldout_difficulty: dict[str, str] = field(default_factory=dict)
    #: Table 1: per training task, a multiple-choice lm-eval task of the same test data scored
    #: by log-likelihood, and its first n docs (None: all): knowledge beside the greedy answer
    knowledge: dict[str, tuple[str, int | None]] = field(default_factory=dict)
    #: Table 2: the first n documents of each unseen lm-eval task (None: all)
    unseen: dict[str, int | None] = field(default_factory=dict)
    #: Table 2: each unseen task's generation twin (same documents, lettered choices, the
    #: letter a greedy completion names; t2bench.tasks.lettered): format vs knowledge
    generation: dict[str, str] = field(default_factory=dict)
    #: Table 2: the LoRA baseline evaluated on each unseen task (matched by category)
    lora_for: dict[str, str] = field(default_factory=dict)
    #: Table 3: the first n documents of each task whose first- and second-pass times are
    #: compared (the paper's tasks, for its ratios); empty: Table 2's unseen tasks
    cost_tasks: dict[str, int | None] = field(default_factory=dict)
    #: cap on generated tokens per unseen or cost task (None: the task's own)
    max_gen_toks: dict[str, int | None] = field(default_factory=dict)
    #: CEM options (dispatch spec) per unseen or cost task
    cem: dict[str, str] = field(default_factory=dict)
    #: transfer: the task, its n, the expert that is transferred, CEM options on the target
    transfer_task: str = "arc_challenge"
    transfer_n: int | None = 60
    transfer_expert: str = "reasoning-svf-pg"
    transfer_cem: str = "shots=5;population=6;iterations=2"
    shuffle_seeds: tuple[int, ...] = (0, 1, 2)
    #: VLM row: the first n test documents of t2vqa_text (None: all 300) and the VLM runs
    vlm_n: int | None = None
    vlm_experts: str = str(VLM_EXPERTS_DIR)
    #: SEAL: the ReST-EM run, the eval passages (source, first n), self-edit variant (and
    #: the variants compared with it), inner-update steps, the passages of the sequential-edit
    #: (forgetting) table, and the first n SQuAD eval passages of the SQuAD table
    seal_run: str = str(results_path("seal/restem"))
    seal_source: str = "fictional"
    seal_n: int | None = 34  # 102 questions (3 per passage) in 34 passages
    seal_variant: str = "implications"
    seal_compare_variants: tuple[str, ...] = ("rewrite", "qa")
    seal_inner_steps: int = 8
    seal_forget_n: int = 6
    seal_squad_n: int | None = 12
    batch_size: int = 16
    #: held-out generation (Tables 1 and 4): float32, bfloat16, or auto (bf16 where the device
    #: computes it natively, :func:`t2bench.train.policy.bf16_pays`). Adapted weights are
    #: formed in fp32 and the model cast once, as ``t2bench heldout --compute-dtype`` does
    compute_dtype: str = "float32"
    #: the SEAL knowledge tables (self-edits, inner updates, questions; never forgetting, which
    #: merges edits into fp32 weights), same values. float32 on every profile: bf16 ran only
    #: 1.6x faster there, at -3.1 [-9.4, +3.1] points on 96 question pairs
    #: (results/bench/seal-dtype-20261207T021515Z.json), too little gain for a shift the
    #: table's ~20-point MDD could not rule out
    seal_compute_dtype: str = "float32"
    #: every ``lm_eval --model t2`` run of Tables 1 (log-likelihood), 2, 3, transfer and α, and
    #: the first passes they time: float32, bfloat16, or auto (bf16 where the device computes it
    #: natively). bf16 loads the model in bf16 (``dtype=bfloat16`` in the model arguments, which
    #: the memo keys contain, so a run resumed on another kind of machine recomputes rather
    #: than mixes); float32 leaves the model arguments as they were
    lmeval_dtype: str = "float32"
    #: flush denormal floats to zero on CPU (torch.set_flush_denormal): padded batched
    #: generation produces denormals that made ARC prompt first passes ~6x slower
    flush_denormal: bool = True
    bootstrap_iters: int = 10_000
    seed: int = 0

    @property
    def timed_tasks(self) -> dict[str, int | None]:
        """Table 3's tasks: :attr:`cost_tasks`, else Table 2's unseen tasks."""
        return self.cost_tasks or self.unseen

    def with_overrides(self, **kw) -> AblationProfile:
        return replace(self, **kw)


_CEM_GEN = "shots=3;population=4;iterations=1;max_gen_toks=64"

_CEM_LL = "shots=5;population=6;iterations=2"
#: The paper's unseen tasks, small: Table 3 times the first pass against the paper's ratios
#: there. At 135M MATH and HumanEval score 0 for every variant, so Table 2 does not use them.
_PAPER_TASKS_CPU = {"arc_challenge": 60, "humaneval": 12, "minerva_math_prealgebra": 20}
#: Table 2's unseen tasks at 135M: one per expert category, each of ~1000 multiple-choice
#: documents on which the base model is above chance (t2bench.tasks.unseen), disjoint from
#: every training source
_UNSEEN_CPU = {"sciq": None, "t2_basic_arithmetic": None, "t2_basic_coding": None}

CPU = AblationProfile(
    name="cpu",
    target_experts=str(results_path("experts-gemma-3-270m")),
    # power first: whole test sets where they exist (ARC-Easy 2376; MBPP 311-510 has 200),
    # 1000 of the 1200 generated arithmetic test items
    heldout_n={"reasoning": None, "math": 1000, "code": None},
    heldout_difficulty={"math": "mix"},
    knowledge={"reasoning": ("arc_easy", None)},
    unseen=_UNSEEN_CPU,
    generation={task: TWINS[task][0] for task in _UNSEEN_CPU},
    lora_for={
        "sciq": "reasoning-lora-ntp",
        "t2_basic_arithmetic": "math-lora-ntp",
        "t2_basic_coding": "code-lora-ntp",
    },
    cost_tasks=_PAPER_TASKS_CPU,
    # bf16 generation halves the held-out tables' time on AVX-512 BF16 CPUs; fp32 vs bf16 on
    # the same items is measured in results/experts (heldout --compute-dtype)
    compute_dtype="auto",
    # the same for the lm-eval tables: a SciQ log-likelihood run of 1000 documents took 717 s
    # of one fp32 AVX2 core, and Table 2 and transfer hold dozens of them
    lmeval_dtype="auto",
    # transfer on a task both models are above chance on (ARC-C sits at chance for both), all
    # 1000 docs, 5 shuffled-σ seeds
    transfer_task="sciq",
    transfer_n=None,
    # the VLM experts retrained with the text experts' signal and budget (group advantages,
    # 4800 samples each: `t2bench vlm train --profile cpu-groups`)
    vlm_experts=str(VLM_PROFILE_DIRS["cpu-groups"]),
    transfer_cem=_CEM_LL,
    shuffle_seeds=(0, 1, 2, 3, 4),
    max_gen_toks={
        **dict.fromkeys(_UNSEEN_CPU),
        "arc_challenge": None,
        "humaneval": 96,
        "minerva_math_prealgebra": 96,
    },
    cem={
        **dict.fromkeys(_UNSEEN_CPU, _CEM_LL),
        "arc_challenge": _CEM_LL,
        "humaneval": _CEM_GEN,
        "minerva_math_prealgebra": _CEM_GEN,
    },
)

#: MATH as its seven subjects: per-document scores are read per lm-eval task, not per group
MATH_SUBJECTS = tuple(
    f"minerva_math_{s}"
    for s in (
        "algebra",
        "counting_and_prob",
        "geometry",
        "intermediate_algebra",
        "num_theory",
        "prealgebra",
        "precalc",
    )
)
_PAPER_CEM = "shots=10;population=32;elite_ratio=0.2;iterations=50"
_PAPER_UNSEEN = ("arc_challenge", "humaneval", *MATH_SUBJECTS)

PAPER = AblationProfile(
    name="paper",
    model="meta-llama/Meta-Llama-3-8B-Instruct",
    transfer_target=None,
    same_shape_target="mistralai/Mistral-7B-Instruct-v0.3",
    experts=str(results_path("experts-llama3-8b")),
    table4_experts=str(results_path("experts-llama3-8b/table4")),
    heldout_n={"reasoning": None, "math": None, "code": None},
    knowledge={"reasoning": ("arc_easy", None)},
    unseen=dict.fromkeys(_PAPER_UNSEEN),
    lora_for={
        t: "reasoning-lora-ntp"
        if t == "arc_challenge"
        else "code-lora-ntp"
        if t == "humaneval"
        else "math-lora-ntp"
        for t in _PAPER_UNSEEN
    },
    max_gen_toks=dict.fromkeys(_PAPER_UNSEEN),
    cem=dict.fromkeys(_PAPER_UNSEEN, _PAPER_CEM),
    transfer_n=None,
    transfer_cem=_PAPER_CEM,
    shuffle_seeds=(0, 1, 2, 3, 4),
    batch_size=32,
)

PROFILES = {"cpu": CPU, "paper": PAPER}


def get_profile(name: str) -> AblationProfile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ConfigError(f"unknown profile {name!r}: use one of {', '.join(PROFILES)}") from None


#: a few documents per table: checks the whole pipeline end to end in minutes (tests, CI)
SMOKE = CPU.with_overrides(
    name="smoke",
    # the first committed experts (the training smoke profile): always there, so the smoke
    # tables run on any checkout, also while results/experts is being retrained
    experts=str(results_path("experts-smoke")),
    table4_experts=str(results_path("experts-smoke/table4")),
    vlm_experts=str(VLM_EXPERTS_DIR),
    heldout_n={"reasoning": 4, "math": 2, "code": 2},
    knowledge={"reasoning": ("arc_easy", 4)},
    unseen=dict.fromkeys(_UNSEEN_CPU, 4),
    cost_tasks={"arc_challenge": 4, "humaneval": 2, "minerva_math_prealgebra": 2},
    max_gen_toks={
        **dict.fromkeys(_UNSEEN_CPU),
        "arc_challenge": None,
        "humaneval": 16,
        "minerva_math_prealgebra": 16,
    },
    cem={
        **dict.fromkeys(_UNSEEN_CPU, "shots=2;population=2;iterations=1"),
        "arc_challenge": "shots=2;population=2;iterations=1",
        "humaneval": "shots=1;population=2;iterations=1;max_gen_toks=8",
        "minerva_math_prealgebra": "shots=1;population=2;iterations=1;max_gen_toks=8",
    },
    transfer_n=4,
    transfer_cem="shots=2;population=2;iterations=1",
    shuffle_seeds=(0, 1),
    seal_n=2,
    seal_compare_variants=("qa",),
    seal_inner_steps=2,
    seal_forget_n=2,
    seal_squad_n=2,
    bootstrap_iters=1000,
)
PROFILES["smoke"] = SMOKE
