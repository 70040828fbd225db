"""Benchmarks, run from the repository root.

``python -m scripts.bench.replay`` (whole replay against tcpdump and dpkt), and
``.decode``, ``.walk``, ``.live``, ``.flood`` for one stage or one condition each.
"""
