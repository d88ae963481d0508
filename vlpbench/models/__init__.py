"""Built-in encoders (timm image encoders, transformers text encoders)."""
