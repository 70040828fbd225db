"""``python -m wormwatch``."""

from wormwatch.cli import console

raise SystemExit(console())
