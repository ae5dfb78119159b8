"""The store benchmarks' parts: a synthetic run of any size written straight into the migrated schema
(``synth``) and the timed reads of the dashboard and the API against the bare SQL for the same rows
(``probes``)."""
