"""Former location of :mod:`vlpbench.core.plugins` (moved into ``vlpbench/core/`` by issue 23).

Kept so that code written against the old path (``import vlpbench.plugins``) keeps working: this module
*is* the new one (same objects, so monkeypatching either name patches both). New code, and
everything inside this repository, imports :mod:`vlpbench.core.plugins`.
"""

import sys

from vlpbench.core import plugins as _moved

sys.modules[__name__] = _moved
