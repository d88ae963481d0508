"""Where runs execute: in this process (``local``, :mod:`vlpbench.engine.runner`) or on Slurm (``slurm``)."""
