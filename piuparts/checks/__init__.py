"""Checks: one module each; each turns observations into Findings."""
