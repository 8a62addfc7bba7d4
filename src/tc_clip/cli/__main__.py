"""``python -m tc_clip.cli ...`` is ``tc-clip ...``."""

import sys

from tc_clip.cli import main

sys.exit(main())
