"""The pretraining objective: global loss + positive miner + negative weightings + local heads."""
