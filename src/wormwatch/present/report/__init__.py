"""The offline report: a finished run as one HTML page with the study's figures.

In: the :class:`~wormwatch.pipeline.RunResult` of a replay
(:func:`wormwatch.runner.report` runs it). Out: ``index.html``, PNG figures
and ``hosts.jsonl`` in one directory. :mod:`.write` picks what each figure
shows and writes the files; :mod:`.data` holds what the page shows;
:mod:`.page` and :mod:`.sections` render HTML through :mod:`.htmlkit`;
:mod:`.plots` draws with matplotlib; :mod:`.prefixes` computes the
name-prefix tables.
"""
