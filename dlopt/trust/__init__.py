"""Trust in what dlopt reads and writes: model files checked before anything unpickles them
(`pickle_safety`), artifacts stripped of what they say about the build machine
(`metadata_strip`), manifests with portable paths and a seal (`provenance`), artifacts
re-hashed along their parent chain (`verify`), encryption at rest (`encryption`, `keys`).
The gate's signed release attestation is `dlopt.gate.attestation`."""
