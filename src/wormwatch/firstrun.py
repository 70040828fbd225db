"""The second process of a first run, and the claims that split the compiling between two.

In: the warm-up steps a first run leaves to a second process (:mod:`wormwatch.warmup`).
Out: those kernels in numba's cache, each compiled once by whichever process got to it
first.

Each step is claimed before it compiles: a folder per step, made in a folder the two
processes share (``mkdir`` either makes it or finds it made, atomically). The second
process goes through its steps in order and passes over those this one has claimed;
this one, needing a step, compiles it itself unless the second process has claimed it,
and then waits for that process to say it is done and loads it from the cache. So no
kernel compiles twice and neither process sits idle while the other has a step it
has not started (the 20,000-packet bench file's first batch needs the DNS-over-TCP
flows and the name score at once: one compiles here, the other there).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from typing import Any


class Claims:
    """The steps taken so far, one folder each under ``folder``."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def take(self, name: str) -> bool:
        """Claim step ``name``; False when the other process has claimed it."""
        try:
            os.mkdir(os.path.join(self.folder, name))
        except FileExistsError:
            return False
        except OSError:
            # the folder is gone: the second process has ended, every step it took is
            # in the cache (a "compile" here then loads it)
            return True
        return True

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


class SecondProcess:
    """The second process of a first run: compiles the steps it can claim into the
    shared cache, in order, and says, a line each, which it has done."""

    def __init__(self, names: Sequence[str]) -> None:
        self.claims = Claims(tempfile.mkdtemp(prefix="wormwatch-first-run-"))
        # its own session: a Ctrl-C at the terminal reaches only this process, which
        # then ends it (see warm_up); it runs on if this process ends first, to fill
        # the cache for the next run, and removes the claims when it is done
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "wormwatch.warmup", self.claims.folder, *names],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        self._done: set[str] = set()
        # the steps this process took with take_unclaimed
        self._taken: set[str] = set()
        self._lock = threading.Lock()

    def wait_for(self, name: str) -> None:
        """Until the second process has compiled ``name`` or has ended without (then
        the kernel is compiled here, as if there were no second process)."""
        with self._lock:
            out = self._proc.stdout
            assert out is not None  # a pipe, above
            while name not in self._done:
                line = out.readline()
                if not line:
                    return
                self._done.add(line.strip())

    def run_step(self, name: str, step: Callable[[], Any]) -> None:
        """Step ``name``: compiled here unless the second process has claimed it, then
        loaded from the cache once it is done there."""
        if name in self._taken:
            return
        if not self.claims.take(name):
            self.wait_for(name)
        step()

    def take_unclaimed(self, names: Sequence[str], steps: dict[str, Callable[[], Any]]) -> None:
        """Compiles here those of ``names`` the second process has not claimed (rather
        than wait for it to reach them after the ones it is on); :meth:`run_step` then
        passes over them."""
        for name in names:
            if self.claims.take(name):
                steps[name]()
                self._taken.add(name)

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        self.claims.remove()

    def at_first_use(
        self, name: str, kernels: Sequence[tuple[str, str]], step: Callable[[], Any]
    ) -> None:
        """Makes the first call of any of ``kernels`` (module, name), step ``name``'s,
        run the step through :meth:`run_step`: it compiles once, here or there.

        numba compiles (or loads) a kernel through its dispatcher's ``compile`` when no
        loaded signature fits the call: shadowed here, for that first time, on every
        kernel the step makes (whichever the run calls first).
        """
        dispatchers = [getattr(importlib.import_module(m), attr) for m, attr in kernels]

        def unhook() -> None:
            for dispatcher in dispatchers:
                with contextlib.suppress(AttributeError):
                    del dispatcher.compile

        def hook(dispatcher: Any) -> Callable[[Any], Any]:
            def compile_once(sig: Any) -> Any:
                unhook()
                self.run_step(name, step)
                return dispatcher.compile(sig)

            return compile_once

        for dispatcher in dispatchers:
            dispatcher.compile = hook(dispatcher)


def compile_claimed(
    claims: Claims, names: Sequence[str], steps: dict[str, Callable[[], Any]]
) -> None:
    """The second process: runs each of ``names`` it can claim, in order, and writes
    its name as a line to standard output once it is done; then removes the claims."""
    report: Any = sys.stdout
    try:
        for name in names:
            if not claims.take(name):
                continue
            steps[name]()
            if report is not None:
                try:
                    print(name, file=report, flush=True)
                except OSError:
                    # the first process has ended: its cache is still worth filling
                    report = None
    finally:
        claims.remove()
