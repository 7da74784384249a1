"""``python -m veilnet`` is the ``veilnet`` command; ``torchrun ... -m veilnet train ...`` starts it once per process."""

import sys

from veilnet.cli import main

sys.exit(main())
