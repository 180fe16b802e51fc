"""``python -m audiocnn``: see ``audiocnn.cli``."""

import sys

from .cli import main

sys.exit(main())
