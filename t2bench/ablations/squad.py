"""SEAL knowledge incorporation on real text: the knowledge table's conditions on held-out
SQuAD passages (the packaged SQuAD validation, split by article; ``t2bench.seal.data``).

The SEAL paper's setting is SQuAD; here the ReST-EM generator was trained on generated
fictional passages, so its rows measure whether the learnt self-edit skill transfers to real
text, and the base model may already know some answers from pre-training.
"""

from __future__ import annotations

from t2bench.ablations.seal import knowledge_table
from t2bench.core.tables import Table

NAME = "seal-knowledge-squad"


def run(ctx) -> Table:
    return knowledge_table(
        ctx,
        NAME,
        "SEAL knowledge incorporation on held-out SQuAD passages (closed-book QA)",
        source="squad",
        n=ctx.profile.seal_squad_n,
    )
