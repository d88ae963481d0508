"""Building blocks that local-alignment heads share (vectorised over the batch, padding masked)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def within_report_infonce(queries: Tensor, keys: Tensor, mask: Tensor, temperature: float) -> Tensor:
    """Symmetric InfoNCE between matching rows of ``queries`` and ``keys`` [B,T,D], per report.

    Negatives are only the other valid rows of the same report (``mask`` [B,T]); both directions
    are averaged per row, rows averaged per report. Returns the loss of each report [B] (0 for a
    report without valid rows). Padding rows keep only their diagonal, so every value stays finite
    and no NaN reaches the gradients.
    """
    logits = F.normalize(queries, dim=-1) @ F.normalize(keys, dim=-1).transpose(1, 2) / temperature  # [B,T,T]
    eye = torch.eye(mask.shape[1], dtype=torch.bool, device=mask.device)
    valid = (mask.unsqueeze(2) & mask.unsqueeze(1)) | eye
    logits = logits.masked_fill(~valid, float("-inf"))
    diagonal = logits.diagonal(dim1=1, dim2=2)
    per_row = 0.5 * ((torch.logsumexp(logits, 2) - diagonal) + (torch.logsumexp(logits, 1) - diagonal))
    per_row = torch.where(mask, per_row, torch.zeros_like(per_row))
    return per_row.sum(1) / mask.sum(1).clamp_min(1)


def mean_over_reports(per_report: Tensor, reports: Tensor) -> Tensor:
    """Mean of a per-report value over the reports flagged in ``reports`` [B] (bool)."""
    weights = reports.to(per_report.dtype)
    return (per_report * weights).sum() / weights.sum().clamp_min(1.0)


def masked_mean(values: Tensor, mask: Tensor, dims: tuple[int, ...]) -> Tensor:
    """Mean of ``values`` over ``dims`` counting only entries where ``mask`` is true."""
    mask = mask.to(values.dtype)
    return (values * mask).sum(dims) / mask.sum(dims).clamp_min(1.0)
