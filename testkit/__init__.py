"""The shared test kit: what tests/ and scripts/ both need to make and check traffic.

Not part of the installed package (it imports scapy and dpkt, which only the ``test``
extra installs). It lives at the repository root beside ``src/``, ``tests/`` and
``scripts/``, so that ``pytest`` (``pythonpath = ["."]`` in pyproject.toml) and
``python -m scripts.bench.replay`` run from the root both import it as ``testkit``
without any ``sys.path`` edit.

- :mod:`testkit.paths`: where the repository, the sample and the real captures are.
- :mod:`testkit.reference` (+ ``reference_io``, ``reference_reassembly``): the slow,
  obvious dpkt reference decoder that says what every packet should count as.
- :mod:`testkit.decode_compare`: the numba decoder and the reference side by side.
- :mod:`testkit.pcapfile_craft`, :mod:`testkit.flood`: capture files built by hand.
- :mod:`testkit.hoststates`, :mod:`testkit.tui_fakes`: host states and snapshots for
  detector and live-table tests.
- :mod:`testkit.netns`: network namespaces for live-capture tests and benchmarks.
"""
