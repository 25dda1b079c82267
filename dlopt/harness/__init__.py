"""Measuring: latency, memory, metrics (drift and task metrics) and the isolated worker."""
