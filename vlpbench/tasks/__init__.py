"""Downstream tasks: each scores a frozen image encoder under a recorded protocol."""
