"""FaNe (arXiv 2511.12215, AAAI-26; official code Aventador8/FaNe) as vlpbench components."""

__version__ = "0.2.0"
