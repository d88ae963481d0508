"""MGCA (Wang et al., NeurIPS 2022; official code HKU-MedAI/MGCA) as vlpbench components."""

__version__ = "0.1.0"
