"""``preset: cmcgns``: CLIP InfoNCE (τ 0.1, learnable) + the local cross-attention head; CM-MIR from a
third of the run on (the official schedule is 10 stage-1 epochs then 20 with reconstruction,
``cgns_module.py:607-612,746-747``). The global report vector is the attention pool over the
sentence vectors, which are the means of the L2-normalised word tokens (``cgns_module.py:73,
295-300,375-379``).

Negative scope (METHODS.md): the official global InfoNCE gathers across GPUs, so the preset's is
``gathered``; the local head's sentence loss and its k-means stay per process (``local``).
Not in the preset: the stage-2 optimiser rebuild (Adam, lr 1e-5, a fresh warm-up;
``cgns_module.py:546-579``), which belongs to the training schedule."""

CMCGNS = {
    "model.text_encoder.pooling": "sentence_attention",
    "model.text_encoder.sentence_vectors": "unit_word_mean",
    "objective.global": {"name": "infonce", "temperature": 0.1},
    "objective.negative_scope": "gathered",
    "objective.positive_miner": {"name": "identity"},
    "objective.local_heads": [{"name": "cmcgns.cross_attention", "scope": "local"}],
    "objective.auxiliaries": [{"name": "cmcgns.mir", "start": 0.3333}],
}
