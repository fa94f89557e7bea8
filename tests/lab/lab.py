"""The test lab's command line, and the name the tests import it by.

``python3 tests/lab/lab.py CMD`` (``deps``, ``daemons``, ``daemons-stop``,
``image``, ``stack``, ``stack-stop``, ``cleanup``, ``up``, ``status``,
``smoke``; ``--help``) and ``import lab`` (``tests/lab`` on ``sys.path``) are
the package ``kslab`` beside this file: its ``__init__.py`` describes the lab,
each of its modules one part (image, daemons, stack, domains, ...).
"""

from __future__ import annotations

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:  # imported as tests.lab.lab
    sys.path.insert(0, _HERE)

# pylint: disable=wildcard-import,unused-wildcard-import,wrong-import-position
from kslab import *  # noqa: E402,F401,F403  (every public name of the lab, and _run, _libvirt)
from kslab import __all__  # noqa: E402,F401
from kslab.cli import main  # noqa: E402
# the small helpers of lab.py's time, for tests and benchmarks that reach for them
from kslab.common import _locked, _makedirs, _mounts_below, _pid_alive, _read_pidfile, _rmtree  # noqa: E402,F401  # pylint: disable=unused-import

if __name__ == '__main__':
    sys.exit(main())
