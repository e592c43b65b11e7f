"""``python -m trioflow.cli``: the ``trioflow`` command (nannies start workers this way)."""

import sys

from .tools import main

sys.exit(main())
