"""Python's garbage collector around start-up and exit of the ``wormwatch`` command.

Start-up (numpy, numba's type system and the kernels loaded from its cache) builds a
few hundred thousand objects that all live until the process ends. Left running, the
collector walks them again and again while they are built, and walks them once more
at exit: measured on a warm 20,000-packet replay, about a third of the whole
process's CPU (0.95 -> 0.62 s). The console script holds the collector off until the
kernels are warm (:func:`hold`, :func:`release`), moves what start-up made out of its
sight (``gc.freeze``), and freezes everything again just before the interpreter exits.

Only the console script holds it: code that imports wormwatch as a library, and the
tests, keep the collector as they set it.
"""

from __future__ import annotations

import gc

_held = False


def hold() -> None:
    """Collect nothing until :func:`release` (the console script, before its imports)."""
    global _held
    if gc.isenabled():
        gc.disable()
        _held = True


def release() -> None:
    """Start-up is over: freeze what it made (never collected again) and collect again.

    A no-op unless :func:`hold` turned the collector off.
    """
    global _held
    if _held:
        _held = False
        gc.freeze()
        gc.enable()


def freeze_for_exit() -> None:
    """Just before the interpreter exits: spare it walking every live object again.

    Everything the run opened is closed by then; what is left is freed by reference
    counting as modules are torn down.
    """
    release()
    gc.freeze()
