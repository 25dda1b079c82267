"""Reports of a gate run, rendered from its `report.json` dict (so `dlopt report` can re-render).

The dict (versioned by `schema_version`) holds: `schema_version`, `verdict`,
`exit_code`, `config`, `created_utc`, `machine`, `rows` (one per variant x backend: status,
latency statistics and raw samples, speedup with its interval, memory, size, drift, task
metrics) and `gates` (one per variant x backend x gate: measured, threshold, interval, verdict).
"""
