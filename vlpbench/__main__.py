"""``python -m vlpbench`` is the same as the ``vlpbench`` console script."""

from vlpbench.cli import main

raise SystemExit(main())
