"""``python -m monitoring``: the command line (PRODUCT.md §6)."""

from monitoring.cli import main

raise SystemExit(main())
