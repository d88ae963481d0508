"""ConVIRT (Zhang et al., 2020) as vlpbench components, following ViLMedic/BenchX's ConVIRTLoss."""

__version__ = "0.1.0"
