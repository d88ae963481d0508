"""What components are built with: sizes, the corpus and the run's schedule."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class BuildContext:
    embed_dim: int = 128
    image_size: int = 64
    #: (h, w) of the image encoder's patch grid at ``image_size`` (set once the encoder is built).
    patch_grid: tuple[int, int] | None = None
    corpus: list[str] = field(default_factory=list)  # pretraining reports (tokenizer, TF-IDF)
    #: the same reports as lists of sentences (frozen report encoders under the sentence shuffle)
    corpus_sentences: list[list[str]] = field(default_factory=list)
    label_names: tuple[str, ...] = ()
    total_steps: int = 1
    seed: int = 0
    run_dir: Path | None = None
    device: Any = "cpu"
    #: Filled as components are built, so later ones can look at earlier ones (e.g. a miner that
    #: reuses the text encoder's tokenizer).
    built: dict[str, Any] = field(default_factory=dict)
