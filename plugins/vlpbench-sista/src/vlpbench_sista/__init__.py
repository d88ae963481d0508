"""SISTA (arXiv 2601.08165; no public code) as vlpbench components, interpreted from its abstract."""

__version__ = "0.1.0"
