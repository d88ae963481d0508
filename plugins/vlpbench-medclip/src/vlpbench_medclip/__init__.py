"""MedCLIP (Wang et al., EMNLP 2022; official code RyanWangZf/MedCLIP) as vlpbench components."""

__version__ = "0.1.0"
