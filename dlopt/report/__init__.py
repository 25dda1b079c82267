"""Reports of a gate run, rendered from its `report.json` dict (so `dlopt report` can re-render).

The dict (versioned by `schema_version`) holds: `schema_version`, `verdict`,
`exit_code`, `config`, `created_utc`, `machine`, `rows` (one per variant x backend: status,
latency statistics and raw samples, speedup with its interval, memory, size, drift, task
metrics), `gates` (one per variant x backend x gate: measured, threshold, interval, verdict),
`recommendation` (per backend: the artifact to ship, or the nearest miss) and `diagnoses` (per
failed accuracy gate: the layers adding the most error and what to try); `explain.py` renders
those two for Markdown and HTML.
"""
