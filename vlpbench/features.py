"""Former location of :mod:`vlpbench.core.features` (moved into ``vlpbench/core/`` by issue 23).

Kept so that code written against the old path (``import vlpbench.features``) keeps working: this module
*is* the new one (same objects, so monkeypatching either name patches both). New code, and
everything inside this repository, imports :mod:`vlpbench.core.features`.
"""

import sys

from vlpbench.core import features as _moved

sys.modules[__name__] = _moved
