"""``python -m vlpbench.cli`` (e.g. ``torchrun --nproc_per_node=N -m vlpbench.cli run FILE``)."""

from vlpbench.cli import main

raise SystemExit(main())
