"""``python -m groot_ft.stats ...``: an alias of ``groot-ft stats ...``."""

from groot_ft.stats.cli import main

raise SystemExit(main())
