"""Former location of :mod:`vlpbench.devkit.testing_official` (moved into ``vlpbench/devkit/`` by issue 23).

Kept so that code written against the old path (``import vlpbench.testing_official``) keeps working: this module
*is* the new one (same objects, so monkeypatching either name patches both). New code, and
everything inside this repository, imports :mod:`vlpbench.devkit.testing_official`.
"""

import sys

from vlpbench.devkit import testing_official as _moved

sys.modules[__name__] = _moved
