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

The NRT itself is a small LLVM module that numba compiles in every process (~19 ms of
a warm start). The first cache load keeps its machine code beside the kernels' cache
entries, for this numba and this CPU (numba's own key for cached code), and later
processes load it from there (~3 ms); any problem reading it compiles it as before.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import pickle
import sys
import tempfile
from typing import Any

import numba
from numba.core import caching, environment
from numba.core.compiler_lock import global_compiler_lock
from numba.core.runtime.nrt import rtsys

# numba's internals the NRT's set-up reads (untyped)
_ll: Any = importlib.import_module("llvmlite.binding")
_config: Any = importlib.import_module("numba.core.config")
_nrt_python: Any = importlib.import_module("numba.core.runtime._nrt_python")
_nrtdynmod: Any = importlib.import_module("numba.core.runtime.nrtdynmod")

# numba releases whose Cache.load_overload refreshes then calls _load_overload, as read
_KNOWN = ((0, 60), (0, 69))


def _version() -> tuple[int, int]:
    major, minor = numba.__version__.split(".")[:2]
    return int(major), int(minor)


def _load_overload(self: Any, sig: Any, target_context: Any) -> Any:
    """``Cache.load_overload`` less the target context's refresh (see the module doc)."""
    if not rtsys._init:
        _initialize_nrt(target_context, os.path.join(self._cache_path, _NRT_FILE))
    with self._guard_against_spurious_io_errors():
        return self._load_overload(sig, target_context)
    # None when the guard swallowed an I/O error (numba then compiles)
    return None


_NRT_FILE = f"nrt-{numba.__version__}.nbo"


def _initialize_nrt(target_context: Any, path: str) -> None:
    """``rtsys.initialize``, with the NRT's machine code from ``path`` when it holds
    this CPU's, else compiled and kept there (see the module doc)."""
    with global_compiler_lock:
        if not rtsys._init:
            _set_up_nrt(target_context, path)


def _set_up_nrt(target_context: Any, path: str) -> None:
    if _config.NRT_STATS:
        _nrt_python.memsys_enable_stats()
    for name, address in _nrt_python.c_helpers.items():
        _ll.add_symbol(name if name.startswith("_") else "NRT_" + name, address)
    codegen = target_context.codegen()
    key = (_ll.llvm_version_info, codegen.magic_tuple())
    try:
        with open(path, "rb") as f:
            kept_key, state = pickle.load(f)
        library = codegen.unserialize_library(state) if kept_key == key else None
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError):
        library = None
    if library is None:
        module, library = _nrtdynmod.create_nrt_module(target_context)
        library.enable_object_caching()
        library.add_ir_module(module)
        library.finalize()
        _keep(path, (key, library.serialize_using_object_code()))
    rtsys._library = library
    rtsys._init = True


def _keep(path: str, data: Any) -> None:
    """Writes ``data`` to ``path`` whole or not at all (a read-only install: not)."""
    try:
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
    except OSError:
        return
    try:
        with os.fdopen(fd, "wb") as f:
            pickle.dump(data, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


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


_KERNELS = os.path.dirname(os.path.abspath(__file__))


@functools.cache
def _kernels_stamp() -> tuple[tuple[str, int, int], ...]:
    """(name, mtime, size) of every source file of this package, once per process."""
    with os.scandir(_KERNELS) as entries:
        files = sorted((e for e in entries if e.name.endswith(".py")), key=lambda e: e.name)
        return tuple((e.name, e.stat().st_mtime_ns, e.stat().st_size) for e in files)


def _with_package_stamp(source_stamp: Any) -> Any:
    """numba's source stamp of a kernel's file, extended with every kernel file's.

    numba checks a cache entry against the stamp of the file that defines the kernel
    only, but a kernel compiles in the helpers it calls from the other files of this
    package (the decode layers, the DNS message reader, the flow table): an edit to one
    of those must reach every kernel built from it, not only those in its own file. So
    any edit here invalidates every kernel's entries (a whole recompile, ~15 s of CPU,
    once); an installed package never changes, and loads as before.
    """

    def get_source_stamp(self: Any) -> Any:
        stamp = source_stamp(self)
        path = getattr(self, "_py_file", "")
        if os.path.dirname(os.path.abspath(path)) == _KERNELS:
            return stamp, _kernels_stamp()
        return stamp

    return get_source_stamp


def install() -> bool:
    """Use the light cache load (once per process); False where the version is unknown.

    The cache stamp of every kernel covers the whole package (:func:`_with_package_stamp`)
    whatever numba's version."""
    mixin = caching._SourceFileBackedLocatorMixin
    if not getattr(mixin.get_source_stamp, "covers_package", False):
        mixin.get_source_stamp = _with_package_stamp(mixin.get_source_stamp)  # type: ignore[method-assign]
        mixin.get_source_stamp.covers_package = True  # type: ignore[attr-defined]
    low, high = _KNOWN
    cache = caching.Cache
    if not (low <= _version() < high and hasattr(cache, "_guard_against_spurious_io_errors")):
        return False
    cache.load_overload = _load_overload  # type: ignore[method-assign]
    # unpickling looks the function up by name: this one is found from now on
    environment._rebuild_env = _rebuild_env
    return True
