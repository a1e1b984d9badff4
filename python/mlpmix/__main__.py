"""``python -m mlpmix``: the ``mlpmix`` command."""

import sys

from .cli import main

sys.exit(main())
