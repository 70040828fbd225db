"""Many sensors, one view: sensors publish per-host deltas to NATS JetStream,
central processes merge them, judge and alert, a view shows the ranking.

``settings`` (the ``[cluster]`` config and the broker's names), ``broker``
(connecting), ``publisher`` and ``sensor`` (sensor side), ``central`` and
``consume`` (merging side), ``top`` (what a central publishes for the view),
``view`` (the merged table's data), ``run`` (the ``central`` and ``view``
commands). See docs/CLUSTER.md.
"""
