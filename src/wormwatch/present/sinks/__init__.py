"""Sinks: what a run writes out besides the live table.

In: records shaped by :mod:`wormwatch.records`, each batch's events, and the
finished run's host views. Out: JSON lines appended to files (:mod:`.jsonl`,
the one writer, with SIGHUP reopen), the host summary (:mod:`.summary`), one
line per counted event (:mod:`.events`, ``--events``), Prometheus metrics over HTTP
(:mod:`.metrics`, families in :mod:`.metric_families`), and the plain
end-of-run text on standard output (:mod:`.text`).
"""
