"""Vision-language models: the VQA metric, generated text-in-image data, a locally assembled
LLaVA-style model, projector pre-training, and SVF/LoRA on the language model.

Submodules import torch / transformers / Pillow lazily where they can.
"""
