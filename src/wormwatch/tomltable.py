"""Reading one TOML table of the config, key by key, with one-line errors.

In: a parsed TOML table (``tomllib``), the file's path and the table's
section name. Out: checked values (numbers in range, CIDR lists, sub-tables)
or a :class:`~wormwatch.errors.WormwatchError` naming the file, the section
and the key. :mod:`wormwatch.config` reads every section with it, and
:mod:`wormwatch.cluster.settings` the ``[cluster]`` table.
"""

from __future__ import annotations

import ipaddress
import json
import math
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from wormwatch.errors import WormwatchError
from wormwatch.nets import Network

T = TypeVar("T")


def _show(value: object) -> str:
    """A value as it would look in TOML, for error messages."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


class TableReader:
    """Reads one TOML table, checking each key; remembers which were read.

    ``homes`` maps a key to the section it belongs in, for the hint on a key
    put in the wrong section.
    """

    def __init__(
        self, path: str, section: str, table: Mapping[str, Any], *, homes: Mapping[str, str]
    ) -> None:
        self.path = path
        self.homes = homes
        self.section = section
        self.table = table
        self.seen: set[str] = set()

    def fail(self, key: str, what: str, value: object) -> WormwatchError:
        # a top-level key has no section to name ("[] detect must be a table")
        where = f"[{self.section}] " if self.section else ""
        return WormwatchError(f"config {self.path}: {where}{key} {what}, got {_show(value)}")

    def get(self, key: str, default: T, check: Callable[[Any], T | None], what: str) -> T:
        self.seen.add(key)
        if key not in self.table:
            return default
        value = self.table[key]
        checked = check(value)
        if checked is None:
            raise self.fail(key, what, value)
        return checked

    def positive_int(self, key: str, default: int, hi: int | None = None) -> int:
        """A positive integer (at most ``hi``)."""

        def check(v: Any) -> int | None:
            ok = isinstance(v, int) and not isinstance(v, bool) and 0 < v <= (hi or v)
            return v if ok else None

        what = "must be a positive integer" + (f" up to {hi:,}" if hi else "")
        return self.get(key, default, check, what)

    def boolean(self, key: str, default: bool) -> bool:
        def check(v: Any) -> bool | None:
            return v if isinstance(v, bool) else None

        return self.get(key, default, check, "must be true or false")

    def number(self, key: str, default: float, lo: float, hi: float) -> float:
        def check(v: Any) -> float | None:
            if isinstance(v, bool) or not isinstance(v, int | float):
                return None
            v = float(v)
            return v if math.isfinite(v) and lo <= v <= hi else None

        hi_text = "" if math.isinf(hi) else f" and {hi:g}"
        what = f"must be a number between {lo:g}{hi_text}" if hi_text else f"must be >= {lo:g}"
        return self.get(key, default, check, what)

    def networks(self, key: str) -> tuple[Network, ...]:
        self.seen.add(key)
        value = self.table.get(key, [])
        if not isinstance(value, list):
            raise self.fail(key, "must be a list of CIDR strings", value)
        out: list[Network] = []
        for item in value:
            if not isinstance(item, str):
                raise self.fail(key, "must be a list of CIDR strings", item)
            try:
                out.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise self.fail(key, "holds a bad CIDR (e.g. 192.0.2.0/24)", item) from None
        return tuple(out)

    def sub(self, key: str) -> TableReader:
        self.seen.add(key)
        value = self.table.get(key, {})
        if not isinstance(value, dict):
            raise self.fail(key, "must be a table", value)
        name = f"{self.section}.{key}" if self.section else key
        return TableReader(self.path, name, value, homes=self.homes)

    def done(self) -> None:
        unknown = sorted(set(self.table) - self.seen)
        if unknown:
            where = f"[{self.section}] " if self.section else ""
            known = ", ".join(sorted(self.seen)) or "none"
            home = self.homes.get(unknown[0])
            hint = f"; {unknown[0]} belongs in [{home}]" if home and home != self.section else ""
            raise WormwatchError(
                f"config {self.path}: {where}unknown key {_show(unknown[0])} (known: {known}){hint}"
            )
