"""``preset: cmcgns``: CLIP InfoNCE (τ 0.1, learnable) + the local cross-attention head; CM-MIR from a
third of the run on (the official schedule is 10 stage-1 epochs then 20 with reconstruction,
``cgns_module.py:607-612,746-747``). The global report vector is the attention pool over the
sentence vectors, which are the means of the L2-normalised word tokens (``cgns_module.py:73,
295-300,375-379``).

Negative scope (METHODS.md): the official global InfoNCE gathers across GPUs, so the preset's is
``gathered``; the local head's sentence loss and its k-means stay per process (``local``).
The two-stage schedule (``cgns_module.py:546-579,662-714``): each stage builds a fresh
``torch.optim.Adam`` (coupled weight decay) with pl_bolts' linear warm-up from 1e-7 and cosine to 0
over the stage — stage 1 a tenth of its epochs of warm-up (1 of 10), stage 2 a twentieth (1 of 20),
fresh moments at the switch. The peak learning rate is the experiment's ``pretrain.lr`` (the
official 1e-5 is tuned to MIMIC-CXR at batch 64 for 30 epochs; set ``pretrain.lr`` to use it) and
so is the weight decay (official 1e-6, vlpbench's default too). The official code's attempt to
reload the best stage-1 checkpoint at the switch discards its result (a no-op), so nothing is
reloaded here either."""

CMCGNS = {
    "model.text_encoder.pooling": "sentence_attention",
    "model.text_encoder.sentence_vectors": "unit_word_mean",
    "objective.global": {"name": "infonce", "temperature": 0.1},
    "objective.negative_scope": "gathered",
    "objective.positive_miner": {"name": "identity"},
    "objective.local_heads": [{"name": "cmcgns.cross_attention", "scope": "local"}],
    "objective.auxiliaries": [{"name": "cmcgns.mir", "start": 0.3333}],
    "pretrain.stages": [
        {"name": "stage1", "start": 0.0, "optimizer": "adam", "warmup": 0.1, "warmup_start_lr": 1.0e-7, "min_lr": 0.0},
        {"name": "stage2", "start": 0.3333, "optimizer": "adam", "warmup": 0.05, "warmup_start_lr": 1.0e-7,
         "min_lr": 0.0},
    ],
}
