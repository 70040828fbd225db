"""Benchmarks, run from the repository root.

``python -m scripts.bench.replay`` (whole replay against tcpdump and dpkt), and
``.decode``, ``.walk``, ``.live``, ``.flood`` for one stage or one condition each.
"""

import argparse
from pathlib import Path


def baseline_tree(text: str) -> Path:
    """``--baseline DIR``: another checkout, whose ``src/wormwatch`` the benchmark runs.

    Checked here: a child with a missing ``DIR/src`` on its path would import the
    installed wormwatch instead and report it as the baseline without a word.
    """
    tree = Path(text)
    if not (tree / "src" / "wormwatch" / "__init__.py").is_file():
        raise argparse.ArgumentTypeError(f"{text}: not a wormwatch checkout (no src/wormwatch)")
    return tree
