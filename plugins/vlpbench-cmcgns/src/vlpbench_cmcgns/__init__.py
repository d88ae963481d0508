"""CM-CGNS (arXiv 2506.11674; official code violet-42/CM-CGNS) as vlpbench components."""

__version__ = "0.2.0"
