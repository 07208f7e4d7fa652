"""``python -m bot`` is ``pira``."""

import sys

from bot.cli import main

sys.exit(main())
