"""Running experiments: pretraining, checkpoints, downstream tasks, results on disk."""
