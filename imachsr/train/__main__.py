"""``python -m imachsr.train ...`` (and ``torchrun ... -m imachsr.train ...``)."""

import sys

from .command_line import main

sys.exit(main())
