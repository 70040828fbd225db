"""Present: the last stage, the only place rich (and matplotlib) is imported.

In: snapshots while the run goes on, records as they are made, and the
finished :class:`~wormwatch.pipeline.RunResult`. Three rooms, one per
audience, each importing only the shared modules below and never another
room:

* :mod:`.live` -- the operator's terminal table (rich.live, keys);
* :mod:`.report` -- the analyst's offline HTML report (matplotlib);
* :mod:`.sinks` -- files and endpoints machines read: JSON lines, the
  summary, the event log, Prometheus metrics, the end-of-run text.

Shared by the rooms: :mod:`.safe` (untrusted text made fit for a terminal
cell; the escaping rule itself is :mod:`wormwatch.text`).
"""
