"""SVF math: decompose, experts, expert files, patching, parameter counts.

Imports neither lm-eval nor accelerate.
"""

from t2bench.svf.counts import (
    count_table,
    ia3_params,
    layer_shapes,
    lora_params,
    svf_params,
    tinylora_params,
)
from t2bench.svf.decompose import Decomposition, MatrixSVD, decompose
from t2bench.svf.expert import (
    PARAMETERISATIONS,
    Expert,
    ExpertMeta,
    effective_z,
    identity_expert,
    mix,
    permute,
    sigmoid_scale,
)
from t2bench.svf.files import load_expert, load_experts, save_expert
from t2bench.svf.patch import SVFPatcher, check_fits, compose
from t2bench.svf.snapshot import SNAPSHOTS
from t2bench.svf.targets import (
    MODULE_SETS,
    Target,
    TargetSpec,
    find_targets,
    parse_layers,
    parse_module_set,
)
from t2bench.svf.transfer import resample_vector, shuffled_transfer, transfer_expert

__all__ = [
    "MODULE_SETS",
    "PARAMETERISATIONS",
    "SNAPSHOTS",
    "Decomposition",
    "Expert",
    "ExpertMeta",
    "MatrixSVD",
    "SVFPatcher",
    "Target",
    "TargetSpec",
    "check_fits",
    "compose",
    "count_table",
    "decompose",
    "effective_z",
    "find_targets",
    "ia3_params",
    "identity_expert",
    "layer_shapes",
    "load_expert",
    "load_experts",
    "lora_params",
    "tinylora_params",
    "mix",
    "parse_layers",
    "parse_module_set",
    "permute",
    "resample_vector",
    "save_expert",
    "shuffled_transfer",
    "sigmoid_scale",
    "svf_params",
    "transfer_expert",
]
