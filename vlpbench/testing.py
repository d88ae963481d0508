"""Former location of :mod:`vlpbench.devkit.testing` (moved into ``vlpbench/devkit/`` by issue 23).

Kept so that code written against the old path (``import vlpbench.testing``) keeps working: this module
*is* the new one (same objects, so monkeypatching either name patches both). New code, and
everything inside this repository, imports :mod:`vlpbench.devkit.testing`.
"""

import sys

from vlpbench.devkit import testing as _moved

sys.modules[__name__] = _moved
