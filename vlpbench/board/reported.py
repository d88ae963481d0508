"""Published numbers, labelled as *reported by the papers* — never as reproduced here.

From ``METHODS.md`` ("Published numbers"). Protocol: MGCA's linear-probe / fine-tuning protocol on
the real datasets (CheXpert 5-label AUROC, RSNA binary AUROC, COVIDx 3-class accuracy; RSNA and
SIIM segmentation Dice; RSNA detection mAP) at 1 % / 10 % / 100 % labels. These are not SynthCXR
numbers and are never ranked with measured ones.
"""

from __future__ import annotations

import pandas as pd

PROTOCOL = ("reported by the papers (not reproduced here); MGCA's downstream protocol on the real "
            "datasets at 1 / 10 / 100 % labels")

CLASSIFICATION = [
    # method, CheXpert AUC 1/10/100, RSNA AUC 1/10/100, COVIDx ACC 1/10/100
    ("FaNe ViT-B/16", "89.7 / 90.4 / 90.8", "89.3 / 90.2 / 93.1", "79.5 / 90.7 / 95.5"),
    ("FaNe ResNet-50", "88.2 / 89.1 / 89.9", "88.9 / 89.8 / 92.6", "78.2 / 89.1 / 94.0"),
    ("GLoRIA", "86.6 / 87.8 / 88.1", "86.1 / 88.0 / 88.6", "–"),
    ("ConVIRT", "85.9 / 86.8 / 87.3", "77.4 / 80.1 / 81.3", "–"),
]
DENSE = [
    # method, RSNA seg Dice, SIIM seg Dice, RSNA det mAP (1/10/100)
    ("FaNe", "69.5 / 72.4 / 74.1", "54.1 / 62.3 / 68.8", "16.4 / 20.6 / 27.2"),
]


def reported_tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    classification = pd.DataFrame(CLASSIFICATION, columns=["method", "CheXpert AUROC", "RSNA AUROC", "COVIDx ACC"])
    dense = pd.DataFrame(DENSE, columns=["method", "RSNA seg Dice", "SIIM seg Dice", "RSNA det mAP"])
    return classification.set_index("method"), dense.set_index("method")


def reported_markdown() -> str:
    classification, dense = reported_tables()
    return ("## Reported numbers\n\n"
            f"Protocol: {PROTOCOL}. SISTA and CM-CGNS numbers: not available.\n\n"
            + classification.to_markdown() + "\n\n" + dense.to_markdown() + "\n")


def reported_html() -> str:
    classification, dense = reported_tables()
    return (f"<h2>Reported numbers</h2><p>Protocol: {PROTOCOL}. SISTA and CM-CGNS numbers: not available.</p>"
            + classification.to_html(border=0) + dense.to_html(border=0))
