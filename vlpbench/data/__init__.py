"""Data sources: the embedded SynthCXR generator and the tensors fed to pretraining."""
