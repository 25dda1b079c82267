"""Optimization steps: artifact in, artifact out (export, quantize, prune)."""
