"""``python -m noisyclip_metrics.cli`` (what ``torchrun -m`` needs)."""

import sys

from . import main

sys.exit(main())
