"""Where things are: the repository, its sample captures, the real captures beside it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PCAPS = REPO / "pcaps"
DEMO = PCAPS / "demo.pcap"
# the config `wormwatch demo` uses (its mail server and resolvers allowlisted)
DEMO_CONFIG = REPO / "src" / "wormwatch" / "data" / "demo.toml"
MANIFEST = PCAPS / "MANIFEST.toml"
GOLDEN = REPO / "tests" / "golden"
# The real captures are not committed: they sit in a shared folder beside the checkout
# (WORMWATCH_REAL_PCAPS points elsewhere, e.g. at nothing to see what skips without them).
REAL_PCAPS = Path(os.environ.get("WORMWATCH_REAL_PCAPS", REPO.parent / "shared" / "pcaps" / "real"))


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a child ``python -m testkit...``/``scripts...``: the root importable."""
    env = dict(os.environ, **extra)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env


def python_m(module: str, *args: str) -> list[str]:
    """argv running ``python -m module args`` with this interpreter, the root importable.

    Through ``env`` so that it survives ``ip netns exec`` and the like, which pass argv on.
    """
    return ["env", f"PYTHONPATH={REPO}", sys.executable, "-m", module, *args]


REAL_MISSING = (
    f"real captures not found at {REAL_PCAPS} (the shared folder beside the repository root)"
)


def real_captures() -> list[Path]:
    """Every real capture file (empty when the folder is absent)."""
    return sorted(p for p in REAL_PCAPS.glob("*.pcap*") if p.is_file())
