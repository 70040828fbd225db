"""``python -m wormwatch``."""

from wormwatch.cli import main

raise SystemExit(main())
