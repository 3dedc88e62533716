"""t2bench: train, dispatch and evaluate Transformer²-style SVF experts.

Importing the package is cheap: heavy modules (torch, transformers) load only when used.
"""

__version__ = "0.1.0"
