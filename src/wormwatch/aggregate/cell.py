"""Sensor side of the delta API: the aggregate of one open bin (a *cell*).

In: the events of one bin, as :meth:`Aggregator.ingest` takes them. Out, for
:mod:`~wormwatch.aggregate.export`: what the bin saw as sets (the aggregate's
tables), and beside them when each sample name was first seen, where an
NXDOMAIN sample's registrable domain starts, and the name score of each
registrable domain new in the bin.
"""

from __future__ import annotations

import numpy as np

from wormwatch.aggregate import Aggregator, Renumbering
from wormwatch.answers import SCORE_UNITS
from wormwatch.dganame import score_batch
from wormwatch.model import BOOL, I32, I64, Events


class CellAggregator(Aggregator):
    """An aggregate of one bin that also keeps when each sample was first seen,
    where an NXDOMAIN sample's registrable domain starts, and the name score of
    each registrable domain new in the bin (the score is the domain's); its
    keyword names are kept apart, for the merging side's count of them."""

    keyword_names_apart = True

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.sample_us: dict[int, list[int]] = {}
        self.mx_sample_us: dict[int, list[int]] = {}
        self.nx_sample_us: dict[int, list[int]] = {}
        self.nx_sample_reg: dict[int, list[int]] = {}
        # registrable domain hash -> name score in thousandths, of the new domains
        self.domain_scores: dict[int, int] = {}

    def _take_samples(
        self,
        ev: Events,
        host: I64,
        is_new: BOOL,
        n_taken: I64,
        store: dict[int, list[bytes]],
    ) -> None:
        reg = None
        if store is self._nx_samples:
            reg = self._score_domains(ev, is_new & (host >= 0))
        hosts = np.unique(host[is_new & (host >= 0)])
        before = n_taken[hosts].copy()
        super()._take_samples(ev, host, is_new, n_taken, store)
        gained = n_taken[hosts] - before
        changed = np.nonzero(gained)[0]
        if changed.shape[0] == 0:
            return
        # the base class takes a host's first new names in event order
        idx = np.nonzero(is_new & np.isin(host, hosts[changed]))[0]
        idx = idx[np.argsort(host[idx], kind="stable")]
        starts = np.searchsorted(host[idx], hosts[changed])
        times = {id(self._samples): self.sample_us, id(self._mx_samples): self.mx_sample_us}
        when = times.get(id(store), self.nx_sample_us)
        for h, s, m in zip(
            hosts[changed].tolist(), starts.tolist(), gained[changed].tolist(), strict=True
        ):
            when.setdefault(h, []).extend(ev.ts_us[idx[s : s + m]].tolist())
            if reg is not None:
                self.nx_sample_reg.setdefault(h, []).extend(reg[idx[s : s + m]].tolist())

    def _follow(self, renumbering: Renumbering) -> None:
        """The samples' first-seen times and domain starts follow their hosts too."""
        super()._follow(renumbering)
        self.sample_us = renumbering.follow(self.sample_us)
        self.mx_sample_us = renumbering.follow(self.mx_sample_us)
        self.nx_sample_us = renumbering.follow(self.nx_sample_us)
        self.nx_sample_reg = renumbering.follow(self.nx_sample_reg)

    def _score_domains(self, ev: Events, new: BOOL) -> I32:
        """Score the answers whose registrable domain is new to their host in
        the bin (each domain once per host), keeping each domain's score;
        returns where each event's registrable domain starts (0 if not new)."""
        reg = np.zeros(ev.n, np.int32)
        sel = np.flatnonzero(new)
        if sel.shape[0] == 0:
            return reg
        scored = score_batch(
            ev.names[sel], ev.name_lens[sel], int(sel.shape[0]), private_suffixes=False
        )
        milli = np.rint(scored.scores * SCORE_UNITS).astype(np.int64)
        for k, v in zip(scored.reg_hashes.tolist(), milli.tolist(), strict=True):
            self.domain_scores[k] = v
        reg[sel] = scored.reg_starts
        return reg
