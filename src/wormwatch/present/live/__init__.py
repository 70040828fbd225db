"""The live table: what an operator watches while the sensor runs.

In: :class:`~wormwatch.model.Snapshot` objects from the pipeline a few times
per wall second, and keys from the terminal. Out: the screen. Data flows
snapshot -> :mod:`.rows` (plain numbers per host) -> :mod:`.view` (sort,
filter, selection from keys) -> :mod:`.table` (a pure ``build_screen`` ->
rich renderable, with :mod:`.detail` panels) -> :mod:`.tui` (``rich.live``,
redraw rate, the terminal via :mod:`.terminal` and :mod:`.keys`).
:mod:`.cluster` is the ``view`` command's screen of the multi-sensor mode,
:mod:`.sensors` its sensors panel (``central`` shows it too); :mod:`.loading`
the progress bar while the kernels load.
"""
