"""Training data: the train / validation / held-out test splits every expert is trained,
selected and scored on (:mod:`.splits`), and the generated math word problems (:mod:`.wordproblems`)."""
