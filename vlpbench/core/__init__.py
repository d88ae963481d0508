"""The core: the component registry and its kinds, plugin loading (pluggy hooks), building
components, the tensors between them (features), errors and what components are built with."""
