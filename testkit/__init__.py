"""The shared test kit: what tests/ and scripts/ both need to make and check traffic.

Not part of the installed package (it imports dpkt, hypothesis, pyte and trustme, which
only the ``test`` extra installs). It lives at the repository root beside ``src/``, ``tests/`` and
``scripts/``, so that ``pytest`` (``pythonpath = ["."]`` in pyproject.toml) and
``python -m scripts.bench.replay`` run from the root both import it as ``testkit``
without any ``sys.path`` edit.

- :mod:`testkit.paths`: where the repository, the sample and the real captures are.
- :mod:`testkit.pcap`: the one pcap/pcapng writer and reader (and dpkt's reading).
- :mod:`testkit.frames`: frames built with ``struct``, and batches of them.
- :mod:`testkit.reference` (+ ``reference_reassembly``, ``reference_dnstcp``,
  ``reference_dganame``): the slow, obvious reference decoder that says what every
  packet should count as.
- :mod:`testkit.decode_compare`: the numba decoder and the reference side by side.
- :mod:`testkit.flood`, :mod:`testkit.dgagen`: floods and generated names, fast.
- :mod:`testkit.events`: event columns from rows, or from a capture via the real path.
- :mod:`testkit.hoststates`, :mod:`testkit.tui_fakes`: host states and snapshots for
  detector and live-table tests.
- :mod:`testkit.terminal`: a child on a real pseudo-terminal, read through pyte.
- :mod:`testkit.netns`: network namespaces for live-capture tests and benchmarks.
- :mod:`testkit.fakes`: a source, keys, a clock and a sink for the pipeline's seams.
- :mod:`testkit.behaviours`, :mod:`testkit.profiles`: worm and benign behaviours as
  packets, judged by the real pipeline; :mod:`testkit.dgahosts`, :mod:`testkit.dgasweep`
  the dga-nx hosts and sweep.
- :mod:`testkit.deltas`: a capture's events as one sensor's deltas.
- :mod:`testkit.natsbroker`, :mod:`testkit.natsauth`, :mod:`testkit.natsrun`: a real
  nats-server, throwaway credentials, and sensors and centrals as child processes.
"""
