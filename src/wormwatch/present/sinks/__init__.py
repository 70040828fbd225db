"""Sinks: what a run writes out, apart from the live table.

In: records shaped by :mod:`wormwatch.records` and the finished run's host
views, and each batch's events. Out: JSON lines appended to files
(:mod:`.jsonl`), the per-event log (:mod:`.events`, ``--events``), the host summary
file written whole and renamed into place (:mod:`.summary`), and the plain
end-of-run text on standard output (:mod:`.text`).
"""
