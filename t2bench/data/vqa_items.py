"""The ``vqa`` task's splits: the generated text-in-image set of :mod:`t2bench.tasks.textimages`
with its default config, each item carrying its image, in the ``t2vqa_text`` lm-eval prompt."""

from __future__ import annotations

import hashlib

from t2bench.data.items import SPLIT_NAMES, Splits, TrainItem

#: The prompt of the ``t2vqa_text`` lm-eval task (tasks/t2vqa_text.yaml), kept identical.
VQA_PROMPT = "<image>Question: {question}\nAnswer with a single word or number.\nAnswer:"


def pixels_digest(item: TrainItem) -> str:
    """sha256 of an item's image pixels (the splits' disjointness check compares them)."""
    return hashlib.sha256(item.image.tobytes()).hexdigest()


def vqa_item(raw: dict) -> TrainItem:
    return TrainItem(
        uid=raw["id"],
        task="vqa",
        prompt=VQA_PROMPT.format(question=raw["question"]),
        target=raw["answer"],
        # the continuation as the model writes it after "Answer:" (the task stops at "\n")
        reference=f" {raw['answer']}\n",
        image=raw["image"],
    )


def vqa_splits() -> Splits:
    from t2bench.tasks.textimages import TextImageConfig, dataset_metadata, make_split

    cfg = TextImageConfig()
    parts = {name: [vqa_item(r) for r in make_split(cfg, name)] for name in SPLIT_NAMES}
    description = {
        "task": "vqa",
        "source": "t2bench.tasks.textimages (generated text-in-image VQA)",
        "generator": dataset_metadata(cfg),
        "splits": {
            name: {
                "source": f"textimages split {name!r} (its own seed stream)",
                "size": len(parts[name]),
            }
            for name in SPLIT_NAMES
        },
        "disjointness": "uids and image pixels are checked across splits",
    }
    return Splits("vqa", parts["train"], parts["valid"], parts["test"], description)
