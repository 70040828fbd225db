"""Tools around wormwatch, run from the repository root with ``python -m scripts.<package>.<tool>``.

- :mod:`scripts.samples`: the deterministic generator of the sample captures in ``pcaps/``.
- :mod:`scripts.bench`: benchmarks (replay, decode, pcap walk, live capture, floods).
- :mod:`scripts.fuzz`: coverage-guided fuzzing of the decode stage.

Shared building blocks (pcap writers and readers, the reference decoder, fakes) are in
the top-level :mod:`testkit` package, which the tests use too.
"""
