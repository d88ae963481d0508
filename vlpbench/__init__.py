"""vlpbench: a plugin-based benchmark registry for medical vision-language pretraining.

Importing the package is cheap on purpose (no torch): the CLI's ``--help`` and ``plugins``
commands must start in well under a second.
"""

__version__ = "0.2.0"
