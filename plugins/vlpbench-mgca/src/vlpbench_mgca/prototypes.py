"""MGCA's cross-modal prototype alignment, CPA [code: mgca/models/mgca/mgca_module.py:229-291].

Prototypes C ∈ R^{K×D} (K = 500), the weight of a bias-free Linear(D, K). Before each use its rows
are L2-normalised and written back into the parameter without gradient (lines 230-233), so the
gradient is taken with respect to the normalised rows. With L2-normalised v and t:

    s_v = v Cᵀ, s_t = t Cᵀ
    q_v = Sinkhorn(exp(s_v/ε)ᵀ, 3), q_t likewise     (codes, no gradient; ε = 0.05)
    P_v = softmax(s_v/0.2), P_t = softmax(s_t/0.2)
    L = ½ (−mean_b Σ_k q_v log P_t − mean_b Σ_k q_t log P_v)     (swapped prediction)

Sinkhorn–Knopp (lines 266-291): Q ← Q/ΣQ; 3 × {rows ← rows·(1/K)/rowsum; columns ← columns·(1/B)/colsum};
return the columns normalised to 1, transposed.

The prototypes are frozen for the first ``frozen_until`` of the steps (official: gradients set to
None during the first of 50 epochs, lines 54, 340-343 → 0.02): the loss still trains the encoders,
the prototypes get no gradient (so AdamW skips them, weight decay included); the row normalisation
runs at every step, as in the code.

Negative scope: the Sinkhorn normalises over the batch. ``local`` (official) uses the process's
batch; ``gathered`` gathers v and t of every process first.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from vlpbench.plugin_api import AlignmentInputs, BuildContext, ModuleComponent, gather_rows


@torch.no_grad()
def sinkhorn(scores: Tensor, iterations: int) -> Tensor:
    """Sinkhorn–Knopp on Q [K, B] = exp(s/ε)ᵀ → codes [B, K] (rows sum to 1), as the official code."""
    q = scores / scores.sum()
    k, b = q.shape
    r = torch.ones(k, dtype=q.dtype, device=q.device) / k
    c = torch.ones(b, dtype=q.dtype, device=q.device) / b
    for _ in range(iterations):
        q = q * (r / q.sum(dim=1)).unsqueeze(1)
        q = q * (c / q.sum(dim=0)).unsqueeze(0)
    return (q / q.sum(dim=0, keepdim=True)).t()


class PrototypeAlignment(ModuleComponent["PrototypeAlignment.Params"]):
    """CPA (see the module docstring); term ``proto``."""

    reference = "Wang et al., MGCA, NeurIPS 2022"
    official_code = "https://github.com/HKU-MedAI/MGCA"

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        num_prototypes: int = Field(500, ge=2, description="K")
        epsilon: float = Field(0.05, gt=0, description="ε of the Sinkhorn codes exp(s/ε)")
        iterations: int = Field(3, ge=1, description="Sinkhorn–Knopp iterations")
        temperature: float = Field(0.2, gt=0, description="τ of the swapped prediction softmax")
        frozen_until: float = Field(0.02, ge=0, le=1, description="fraction of the steps with frozen prototypes "
                                                                    "(official: the first of 50 epochs)")

    def __init__(self, params: "PrototypeAlignment.Params", context: BuildContext | None = None) -> None:
        super().__init__(params, context)
        dim = context.embed_dim if context is not None else 128
        self.prototypes = nn.Linear(dim, params.num_prototypes, bias=False)

    def forward(self, inputs: AlignmentInputs) -> dict[str, Tensor]:
        p = self.params
        with torch.no_grad():
            self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=1))
        weight = self.prototypes.weight
        if inputs.progress < p.frozen_until:
            weight = weight.detach()
        image = F.normalize(inputs.image.global_emb, dim=-1)
        text = F.normalize(inputs.text.global_emb, dim=-1)
        if inputs.scope == "gathered" and inputs.world.distributed:
            image = gather_rows(image, inputs.gradient, inputs.world)
            text = gather_rows(text, inputs.gradient, inputs.world)
        image_scores, text_scores = image @ weight.t(), text @ weight.t()  # [B, K]
        image_codes = sinkhorn(torch.exp(image_scores.detach() / p.epsilon).t(), p.iterations)
        text_codes = sinkhorn(torch.exp(text_scores.detach() / p.epsilon).t(), p.iterations)
        image_log_prob = torch.log_softmax(image_scores / p.temperature, dim=1)
        text_log_prob = torch.log_softmax(text_scores / p.temperature, dim=1)
        i2t = -(image_codes * text_log_prob).sum(1).mean()
        t2i = -(text_codes * image_log_prob).sum(1).mean()
        return {"proto": (i2t + t2i) / 2}
