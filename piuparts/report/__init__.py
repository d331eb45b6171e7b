"""Reporters: they format results, nothing else."""
