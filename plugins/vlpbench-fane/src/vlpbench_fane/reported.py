"""Published downstream numbers: FaNe's, and the baselines FaNe's paper reports beside it.

MGCA's downstream protocol on the real datasets at 1 % / 10 % / 100 % labels (linear probe
AUROC / accuracy; segmentation Dice; detection mAP). Values ×100, as printed in the paper.
"""

from __future__ import annotations

CITATION = "FaNe, arXiv:2511.12215 (AAAI-26), downstream tables"
FRACTIONS = ("1%", "10%", "100%")


def _entry(method: str, dataset: str, task: str, metric: str, values: tuple[float, float, float],
           protocol: str = "MGCA's protocol") -> dict:
    return {"method": method, "dataset": dataset, "task": task, "metric": metric, "protocol": protocol,
            "values": dict(zip(FRACTIONS, values)),
            "citation": CITATION if method.startswith("FaNe") else f"{method}, as reported in {CITATION}"}


REPORTED = [
    _entry("FaNe ViT-B/16", "chexpert", "linear_probe", "AUROC", (89.7, 90.4, 90.8)),
    _entry("FaNe ViT-B/16", "rsna_pneumonia", "linear_probe", "AUROC", (89.3, 90.2, 93.1)),
    _entry("FaNe ViT-B/16", "covidx", "linear_probe", "accuracy", (79.5, 90.7, 95.5)),
    _entry("FaNe ResNet-50", "chexpert", "linear_probe", "AUROC", (88.2, 89.1, 89.9)),
    _entry("FaNe ResNet-50", "rsna_pneumonia", "linear_probe", "AUROC", (88.9, 89.8, 92.6)),
    _entry("FaNe ResNet-50", "covidx", "linear_probe", "accuracy", (78.2, 89.1, 94.0)),
    _entry("GLoRIA", "chexpert", "linear_probe", "AUROC", (86.6, 87.8, 88.1)),
    _entry("GLoRIA", "rsna_pneumonia", "linear_probe", "AUROC", (86.1, 88.0, 88.6)),
    _entry("ConVIRT", "chexpert", "linear_probe", "AUROC", (85.9, 86.8, 87.3)),
    _entry("ConVIRT", "rsna_pneumonia", "linear_probe", "AUROC", (77.4, 80.1, 81.3)),
    _entry("FaNe", "rsna_pneumonia", "segmentation", "Dice", (69.5, 72.4, 74.1)),
    _entry("FaNe", "siim_pneumothorax", "segmentation", "Dice", (54.1, 62.3, 68.8)),
    _entry("FaNe", "rsna_pneumonia", "detection", "mAP", (16.4, 20.6, 27.2)),
]
