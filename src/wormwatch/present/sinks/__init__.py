"""Sinks: what a run writes out, apart from the live table.

In: records shaped by :mod:`wormwatch.records` and the finished run's host
views. Out: JSON lines appended to files (:mod:`.jsonl`), the host summary
file written whole and renamed into place (:mod:`.summary`), and the plain
end-of-run text on standard output (:mod:`.text`).
"""
