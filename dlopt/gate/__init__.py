"""The release gate: one TOML config (`config.py`) names the model, the data, the variants
(`recipes.py` makes each with an optimize step) and the thresholds; `pipeline.py` runs the flow
and the benches; `judge.py` turns each bench row into verdicts (`verdicts.py`: pass, fail,
inconclusive, skipped) that decide the exit code and fill the reports; `diagnose.py` runs a
layer diff for each failed accuracy gate and says what to try, and `recommend.py` picks the
artifact to ship on each backend.

To add a threshold: a field in `config.Thresholds`, one line in `judge.py`'s table.
"""
