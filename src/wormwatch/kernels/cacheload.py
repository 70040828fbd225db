"""Loading kernels from numba's cache without numba's whole set-up.

Before its first cache load numba "refreshes" its target context: it imports and
registers the lowering of every feature it has (unicode, typed containers, linear
algebra, random numbers, jitclass ...) and fills the typing context with them. A
compile needs all of that; loading a cached kernel needs only the code generator,
which exists once the context does, and the NRT's symbols (the kernels allocate). On a
warm start that set-up was ~0.14 s of CPU, a quarter of a small replay's whole process.

:func:`install` makes a cache load initialise only the NRT. The full set-up still runs
before anything compiles (numba's compiler refreshes both contexts itself), so a kernel
missing from the cache compiles as before. Applied only to the numba versions whose
cache code this was read against; any other keeps numba's own behaviour.

A cached kernel also carries the environment (a module's namespace and constants) of
each numba helper compiled into it (array allocation, builtins), and loading it
imported each helper's module only to hand its namespace to that environment:
``numba.np.arrayobj``, ``numba.np.npyimpl``, ``numba.cpython.builtins`` and what they
import, ~20 ms of a warm start. Only object-mode code reads an environment's namespace
(numba's ``pylowering``); these helpers are nopython code. :func:`install` gives a
numba module not yet imported an environment that names the module and holds no
namespace; everything else is rebuilt as numba does.
"""

from __future__ import annotations

import pickle
import sys
from typing import Any

import numba
from numba.core import caching, environment
from numba.core.runtime.nrt import rtsys

# numba releases whose Cache.load_overload refreshes then calls _load_overload, as read
_KNOWN = ((0, 60), (0, 69))


def _version() -> tuple[int, int]:
    major, minor = numba.__version__.split(".")[:2]
    return int(major), int(minor)


def _load_overload(self: Any, sig: Any, target_context: Any) -> Any:
    """``Cache.load_overload`` less the target context's refresh (see the module doc)."""
    rtsys.initialize(target_context)
    with self._guard_against_spurious_io_errors():
        return self._load_overload(sig, target_context)
    # None when the guard swallowed an I/O error (numba then compiles)
    return None


def _rebuild_env(modname: str, consts: Any, env_name: str) -> Any:
    """``environment._rebuild_env`` (what unpickling an environment calls) without
    importing a numba module for a helper's environment (see the module doc)."""
    env = _memo.get(env_name)
    if env is not None:
        return env
    if not modname.startswith("numba.") or modname in sys.modules:
        return _numba_rebuild_env(modname, consts, env_name)
    env = environment.Environment({"__name__": modname})
    env.consts[:] = consts
    env.env_name = env_name
    _memo[env_name] = env
    return env


# numba's own: its environments by name, and how it rebuilds one
_memo: Any = environment.Environment._memo
_numba_rebuild_env: Any = environment._rebuild_env


def is_cached(kernel: Any) -> bool | None:
    """Whether numba's cache holds ``kernel`` compiled from its current source (some
    signature of it), without loading it; None where this numba's cache is not the
    one read (then only a load can tell)."""
    index = getattr(getattr(kernel, "_cache", None), "_cache_file", None)
    load_index = getattr(index, "_load_index", None)
    if load_index is None:
        return None
    try:
        # {} when missing, of another numba, or stale (the source changed since)
        return bool(load_index())
    except (OSError, EOFError, pickle.UnpicklingError):
        return False


def install() -> bool:
    """Use the light cache load (once per process); False where the version is unknown."""
    low, high = _KNOWN
    cache = caching.Cache
    if not (low <= _version() < high and hasattr(cache, "_guard_against_spurious_io_errors")):
        return False
    cache.load_overload = _load_overload  # type: ignore[method-assign]
    # unpickling looks the function up by name: this one is found from now on
    environment._rebuild_env = _rebuild_env
    return True
