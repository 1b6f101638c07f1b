"""Applications on a pretraining run, above engine, eval and viz: the monitors a run is started
with (:mod:`attmask.runs.monitors`) and the HTML run report (:mod:`attmask.runs.report`)."""
