"""``python -m gfncp_pyro ...`` is the ``gfncp`` command (also under ``torchrun``)."""

import sys

from .cli import main

sys.exit(main())
